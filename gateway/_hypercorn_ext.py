"""Fixes to hypercorn's protocols and extensions, for the hypercorn version pinned here
(``HYPERCORN_VERSION``).

- HTTP/1.1 status lines with their reason phrase (``HTTP/1.1 409 Conflict``): hypercorn builds
  every ``h11.Response`` without one, so h11 writes ``HTTP/1.1 409 ``, and clients print it (the
  official Python client's ``ApiException`` says ``Error from server ()``, not ``(Conflict)``).
  :class:`ReasonPhraseH11Protocol` fills in the standard phrase (``http.HTTPStatus``).
- HTTP/2 request data after the response: the gateway answers some requests before reading
  their body (401, 403, 413, ...). hypercorn then drops the stream, and a DATA frame for it still
  on the way raises a KeyError that resets the whole connection, every other stream with it.
  :class:`EarlyResponseH2Protocol` acknowledges and drops such data, so the connection's
  flow-control window stays open. (It does not reset the stream with NO_ERROR, which RFC 9113
  section 8.1 allows: httpx/httpcore then fail the request instead of returning its answer.)
- The TLS client certificate in the ASGI scope: hypercorn never passes it to the app (upstream
  issue pgjones/hypercorn#62). :class:`ClientCertTCPServer` completes the handshake, reads the
  peer's leaf certificate (``getpeercert(binary_form=True)`` on the transport) and puts it into
  ``scope["extensions"]["tls"]`` as the ASGI TLS extension specifies (``client_cert_chain``, PEM,
  leaf first), for every request of that connection.

- Accepting: :class:`BatchAcceptListener` takes every connection the kernel has queued when the
  listening socket becomes readable (trio's listener takes one per turn of the run queue: under a
  flood of connections a quiet client's connection waited in the kernel's queue for seconds).
- Idle keep-alive connections: :class:`ClientCertTCPServer` times them with one task per
  connection that reads the state at its deadline, instead of hypercorn's task started at every
  response's end and cancelled at every request's start.
- Pacing of rejected connections (gateway/_pacing.py): after a 429 a connection's next request is
  read once its tenant has a slot and the loop is idle (:meth:`ClientCertTCPServer._read_data`);
  the same request again, byte for byte, is handed to the app's replay (:data:`PACE_REPLAY`, the
  reject gate's) before h11 parses it, and its 429 written by :class:`_ReplaySend`.
- Turns of the run queue per response: a write takes a free send lock without yielding
  (:meth:`ClientCertTCPServer.protocol_send`), and a message for the app goes into its queue
  without yielding while the queue has room (:class:`PutNowaitTaskGroup`): the task answering a
  request took three turns to write a response (the lock, the write, ``http.disconnect``), now one
  (two over TLS: trio's ``SSLStream`` takes a lock of its own).
- The loop probe's per-connection marks (gateway/_loopprobe.py, ``JETKUBE_LOOP_PROBE_TRACE``).

Client certificates are requested, not verified, in the handshake, as kube-apiserver's
``tls.RequestClientCert``: :func:`request_client_certificates`. The app verifies them against the
client CA (``actors._authn.CertificateAuthority``), so a certificate from another CA, or an expired
one, is a 401 (and a bearer token on the same connection still counts), not a failed handshake.
Python's ``ssl`` has no such mode (``CERT_OPTIONAL`` aborts the handshake on a certificate it cannot
verify), so OpenSSL's ``SSL_CTX_set_verify`` is called through ctypes with a callback that accepts
the chain; a test checks it on this Python.

hypercorn has no setting for these, so :func:`install` makes its protocol wrapper and its trio
worker build these subclasses (and its trio worker see :class:`BatchAcceptListener` as
``trio.SocketListener``), which override private methods: a test asserts the version, so an upgrade is
checked again rather than silently losing the fixes.
"""

from __future__ import annotations

import _ssl
import ctypes
import errno
import logging
import os
import socket
import ssl
import sys
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from itertools import chain
from math import inf
from typing import Any
from wsgiref.handlers import format_date_time

import h2.events
import h11
import hypercorn.protocol
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
from cryptography import x509
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup, _handle
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.typing import H11SendableEvent

from . import _loopprobe as loopprobe
from ._pacing import HOLD_S, RejectPacer, first_request_key

HYPERCORN_VERSION = "0.18.0"
_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}
log = logging.getLogger("jetkube")


#: Up to this many bytes of a response with a Content-Length are written together (see
#: :class:`ReasonPhraseH11Protocol`); a larger body goes out as it comes, after its head.
HOLD_MAX = 64 * 1024


class ReasonPhraseH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, sending the standard reason phrase with every status, and
    each small response in one write.

    hypercorn writes a response's head when the app starts it, then each body chunk, then the end
    of the message: two socket writes and a third (empty) send per response, each a trio
    checkpoint under the connection's send lock. A response with a ``Content-Length`` (the app's
    whole body known: every answer but a stream) is held from its head until its end, or until
    :data:`HOLD_MAX` bytes are held, and written at once. ASGI lets a server hold the head until the
    first body message; the end of the body follows it in the same ``app_send``, so nothing waits
    on the app. Streams (watches: chunked, no length) are written as before, head first."""

    _held: bytearray | None = None
    #: After a 429 with Retry-After: the pacing key of this connection's next request (the tenant
    #: flow control charged the rejected one to: the scope's :data:`PACE_KEY`; see gateway/_pacing.py),
    #: taken by the read loop (:class:`ClientCertTCPServer`).
    rejected: str | None = None
    #: The scope of the connection's current request (set by :class:`_ConnScope`).
    request_scope: dict[str, Any] | None = None
    #: What to do when this connection's next response starts (give back its tenant's pacing slot), once.
    on_response: list[Callable[[], None]] | None = None
    #: The bytes of the request being served if they were one whole bodiless request head read at once
    #: (set by the read loop, :class:`ClientCertTCPServer`), else None.
    last_data: bytes | None = None
    #: After a 429 the app can answer again without parsing (the scope's :data:`PACE_REPLAY`): (the
    #: rejected request's bytes, the app's replay); the read loop calls it when the same bytes come.
    replay: tuple[bytes, Callable[[Any, dict[str, Any]], Awaitable[bool]]] | None = None
    #: What a declined replay left for the scope of the request it lets be parsed (see :data:`PACE_REPLAY`):
    #: (the bytes read, the scope's additions); applied only to the request those very bytes make.
    carry: tuple[bytes, dict[str, Any]] | None = None

    def _on_response(self, event: Response) -> None:
        self.released()
        self.replay = None
        if event.status_code == 429 and self.request_scope is not None and any(k == b"retry-after" for k, _ in event.headers):
            self.rejected = self.request_scope.get(PACE_KEY)
            again = self.request_scope.get(PACE_REPLAY)
            if again is not None and self.last_data is not None:
                self.replay = (self.last_data, again)

    def released(self) -> None:
        """Run (and forget) what waits for the next response's start."""
        todo, self.on_response = self.on_response, None
        for release in todo or ():
            release()

    def when_responding(self, release: Callable[[], None]) -> None:
        if self.on_response is None:
            self.on_response = []
        self.on_response.append(release)

    def _encode(self, event: H11SendableEvent) -> bytes | None:
        """``event`` as h11 writes it (None: the peer already broke the connection), as
        ``_send_h11_event`` does."""
        if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
            event = type(event)(headers=event.headers, status_code=event.status_code,
                                http_version=event.http_version, reason=_PHRASES.get(event.status_code, b""))
        try:
            return self.connection.send(event)  # type: ignore[no-any-return]
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return None

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        data = self._encode(event)
        if data:  # (the end of a body with a Content-Length is b"": nothing to write)
            await self.send(RawData(data=data))

    async def stream_send(self, event: StreamEvent) -> None:
        if type(event) is Response:
            self._on_response(event)
        held = self._held
        if held is None:
            if type(event) is Response and event.status_code >= 200 and _has_length(event.headers):
                # As H11Protocol.stream_send, the head kept back.
                headers = list(chain(event.headers, self.config.response_headers("h11")))
                if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                    headers.append((b"connection", b"close"))
                data = self._encode(h11.Response(headers=headers, status_code=event.status_code))
                if data is not None:
                    self._held = bytearray(data)
                return
            return await super().stream_send(event)
        if type(event) is Body:
            data = self._encode(h11.Data(data=event.data))
            if data is not None and len(held) + len(data) <= HOLD_MAX:
                held += data
                return
            self._held = None
            await self.send(RawData(data=bytes(held)))
            if data is not None:
                await self.send(RawData(data=data))
            return
        self._held = None
        if type(event) is EndBody:
            held += self._encode(h11.EndOfMessage()) or b""
            await self.send(RawData(data=bytes(held)))
            return
        await self.send(RawData(data=bytes(held)))  # anything else: what is held goes first
        await super().stream_send(event)


def _has_length(headers: Any) -> bool:
    return any(k == b"content-length" for k, _ in headers)


class EarlyResponseH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, tolerating request data for a stream it already answered."""

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # Whether a stream is still open depends on the events before it in the batch, so the
        # batch is handed on in runs that end at each DATA event.
        run: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                if run:
                    await super()._handle_events(run)
                    run = []
                if event.stream_id not in self.streams:
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    await self._flush()
                    continue
            run.append(event)
        if run:
            await super()._handle_events(run)


_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    """The ASGI TLS extension (asgiref ``specs/tls.rst``) of a TLS connection after its handshake."""
    der = stream.getpeercert(binary_form=True)
    name = None
    if der:
        try:
            name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            name = None
    return {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": name, "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(stream.version() or ""), "cipher_suite": None}


#: The scope key of the loop probe's marks of a request's connection (see :class:`_ConnScope`).
PROBE_MARKS = "jetkube.probe_marks"
#: The scope key of the pacing flow of a request (gateway/_pacing.py ``pace_key``: the tenant flow
#: control charges it to; None: never paced), set by the app (gateway/_gate.py) for every request:
#: a connection answered 429 with Retry-After is paced by it.
PACE_KEY = "jetkube.pace_key"
#: The scope key of the app's "answer this request again" (gateway/_gate.py ``Gate._replay``), set with a
#: 429: called with an ASGI ``send`` and a ``carry`` dict when the same request (byte for byte) comes
#: again on the connection, before it is parsed; True: answered (again a 429), False: parse and serve
#: it as usual, with what the replay put in ``carry`` added to its scope (the gate: its authentication).
PACE_REPLAY = "jetkube.pace_replay"
#: The scope key of a paced request's "give the slot back now" (gateway/_pacing.py): the app calls it
#: once it will not answer at once with a rejection (the request goes on to wait in flow control's
#: queues, not runnable, or to be served); else the slot goes back when the answer starts.
PACE_RELEASE = "jetkube.pace_release"


class _ConnScope:
    """A connection's app wrapper, adding to every request's scope what hypercorn does not: the ASGI
    TLS extension (a TLS connection), the loop probe's marks of the connection (accepted, last read:
    ``JETKUBE_LOOP_PROBE_TRACE``, gateway/_loopprobe.py), and on HTTP/1.x the pacing's hooks: the
    protocol keeps the scope (its :data:`PACE_KEY` read at a 429), and a request holding a pacing
    slot gets :data:`PACE_RELEASE`."""

    __slots__ = ("conn", "inner", "probe", "tls")

    def __init__(self, inner: Any, conn: ClientCertTCPServer, tls: dict[str, Any] | None, probe: bool) -> None:
        self.inner, self.conn, self.tls, self.probe = inner, conn, tls, probe

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any) -> None:
        conn = self.conn
        if self.tls is not None and scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        if self.probe:
            scope[PROBE_MARKS] = {"accepted": conn._accepted, "read": conn._read}
        h11p = conn._h11
        if h11p is not None:
            h11p.request_scope = scope
            carried = h11p.carry
            if carried is not None:
                h11p.carry = None
                if carried[0] is h11p.last_data:  # this request is the one those bytes made (else: dropped)
                    scope.update(carried[1])
            if h11p.on_response:
                scope[PACE_RELEASE] = h11p.released
        await self.inner(scope, receive, send, sync_spawn, call_soon)


def _one_head(proto: ReasonPhraseH11Protocol, data: bytes) -> bool:
    """Whether ``data`` is one whole request head read at once, h11 between requests (nothing buffered)."""
    conn = proto.connection
    return (conn.their_state is h11.IDLE and data.endswith(b"\r\n\r\n") and data.find(b"\r\n\r\n") == len(data) - 4
            and not conn.trailing_data[0])


class _ReplaySend:
    """The ASGI ``send`` of a replayed 429 (:data:`PACE_REPLAY`): the head encoded here (the reason
    phrase, the app's headers, hypercorn's Date and Server), written with the body in one write; h11
    never sees the request or its answer, so its state stays between requests."""

    __slots__ = ("head", "proto", "server", "written")

    def __init__(self, server: ClientCertTCPServer, proto: ReasonPhraseH11Protocol) -> None:
        self.server, self.proto, self.head = server, proto, b""
        self.written = False  # some of the answer may be on the wire

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.proto.released()  # the answer starts: the pacing slot goes back
            status = message["status"]
            out = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b""))]
            for k, v in chain(message["headers"], self.server.config.response_headers("h11")):
                out += (k, b": ", v, b"\r\n")
            out.append(b"\r\n")
            self.head = b"".join(out)
        elif message["type"] == "http.response.body":
            self.written = True
            await self.server.protocol_send(RawData(data=self.head + message.get("body", b"")))


class _StartSoon:
    """hypercorn's ``TrioSingleTask`` for the one idle-timer task of a connection: started without
    waiting for it (``nursery.start`` costs the new connection a round trip through the run queue),
    never stopped (it ends by itself; the connection's task group waits for it, as for hypercorn's)."""

    async def restart(self, task_group: Any, action: Callable[[], Any]) -> None:
        task_group._nursery.start_soon(action)

    async def stop(self) -> None:
        return None


class ClientCertTCPServer(TCPServer):
    """hypercorn's trio connection handler, passing the client certificate to the app, pacing
    rejected connections (:meth:`_read_data`), and timing a keep-alive connection's idleness with
    one task per connection instead of one per idle period (:meth:`_idle_timeout`)."""

    _accepted: tuple[float, int] | None = None
    _read: tuple[float, int] | None = None
    #: Since when the connection is idle (no request in flight; trio's clock); None: busy.
    _idle_since: float | None = None
    _idle_wake: trio.Event | None = None
    _watching = False
    _h11: ReasonPhraseH11Protocol | None = None  # the connection's HTTP/1.x protocol, once made
    #: While this connection holds a pacing slot: when the slot is taken back if still held
    #: (:data:`~gateway._pacing.HOLD_S`), so that a connection dribbling its request cannot keep it.
    _pace_deadline: float | None = None
    _watch_scope: trio.CancelScope | None = None
    #: The read loop has ended (the client closed, or the connection was closed): the idle-timer
    #: task ends too (the connection's task group waits for it; hypercorn's closes as it ends).
    _conn_done = False
    #: The read loop waits for a pacing slot, the bytes read not yet parsed: not idle meanwhile.
    _pacing = False

    async def protocol_send(self, event: Event) -> None:
        if type(event) is RawData:
            # As hypercorn's, without its extra turn of the run queue: ``async with send_lock``
            # yields even when the lock is free (trio's ``Lock.acquire`` checkpoints), so each write
            # cost the sending task two turns, the write's own and the lock's. Under load a turn is
            # every other runnable task's step (~1 ms on a busy gateway). A free lock is taken
            # without yielding; a held one (HTTP/2 streams writing at once) is waited for as before;
            # a cancelled writer raises before it writes, as at the lock (trio's acquire).
            await trio.lowlevel.checkpoint_if_cancelled()  # (no yield unless cancelled)
            lock = self.send_lock
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:
                return await super().protocol_send(event)
            try:
                try:
                    with trio.CancelScope(shield=True):
                        await self.stream.send_all(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
            finally:
                lock.release()
            return None
        if type(event) is not Updated:
            return await super().protocol_send(event)
        # hypercorn restarts a task (``nursery.start``: a round trip through the run queue for the
        # app's task sending the response) at each response's end and cancels it at each request's
        # start; here one task per connection reads the state when its deadline comes.
        if event.idle:
            self._idle_since = trio.current_time()
            if self._idle_wake is not None:
                self._idle_wake.set()
        else:
            self._idle_since = None
        if not self._watching:
            self._watching = True
            await self.idle_task.restart(self._task_group, self._idle_timeout)

    def _pace_done(self) -> None:
        self._pace_deadline = None

    async def _idle_timeout(self) -> None:
        """Close the connection once it has been idle for ``keep_alive_timeout``, or at once when
        the server terminates (a busy one when it becomes idle), as hypercorn's does."""
        keep_alive = self.config.keep_alive_timeout
        terminated = self.context.terminated
        while True:
            if self._conn_done:
                return  # nothing more to read: the connection closes when its answer (if any) ends
            since = None if self._pacing else self._idle_since
            now = trio.current_time()
            if self._pace_deadline is not None and now >= self._pace_deadline:
                self._pace_deadline = None
                if self._h11 is not None:
                    self._h11.released()  # held too long: the slot goes back (the request goes on)
            if since is not None and (terminated.is_set() or now >= since + keep_alive):
                break
            if terminated.is_set():  # busy at shutdown: closed when its answer is complete
                self._idle_wake = trio.Event()
                await self._idle_wake.wait()
                self._idle_wake = None
                continue
            deadline = since + keep_alive if since is not None else now + keep_alive
            if self._pace_deadline is not None:
                deadline = min(deadline, self._pace_deadline)
            with trio.move_on_at(deadline) as self._watch_scope:
                await terminated.wait()
            self._watch_scope = None
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    async def run(self) -> None:
        self._idle_since = trio.current_time()  # no request yet
        self._watching = True  # hypercorn starts the idle task (once, here) after the protocol is made
        self.idle_task = _StartSoon()  # type: ignore[assignment]
        self._accepted = loopprobe.mark()
        probe = self._accepted is not None and loopprobe.ACTIVE is not None and bool(loopprobe.ACTIVE.trace_match)
        tls = None
        if isinstance(self.stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()  # idempotent: hypercorn's own call returns at once
            except (trio.BrokenResourceError, trio.TooSlowError):
                await trio.aclose_forcefully(self.stream)
                return
            tls = tls_extension(self.stream)
        self.app = _ConnScope(self.app, self, tls, probe)  # type: ignore[assignment]
        await super().run()

    async def _read_data(self) -> None:
        """hypercorn's read loop (``TCPServer._read_data``), pacing a connection that was just
        answered 429, or whose first request is for a tenant being paced (gateway/_pacing.py: its
        bytes go to the parser once its tenant has a slot), and marking each read for the loop probe."""
        pacer: RejectPacer | None = getattr(self.config, "pacer", None)
        h11p = self.protocol.protocol if type(self.protocol.protocol) is ReasonPhraseH11Protocol else None
        self._h11 = h11p
        client = self.protocol.client
        source = client[0] if client else ""  # the client's address (a Unix socket's: "")
        first = True
        try:
            while True:
                try:
                    with trio.fail_after(self.config.read_timeout or inf):
                        data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                    break
                proto = self.protocol.protocol
                if data and pacer is not None and type(proto) is ReasonPhraseH11Protocol:
                    key = proto.rejected
                    if key is None and first:
                        k = first_request_key(data)
                        if k is not None and pacer.active(k, source):
                            key = k
                    if key is not None:
                        proto.rejected = None
                        # Waiting for a slot, then answered by a replay: not closed as idle meanwhile
                        # (at shutdown the idle timer would otherwise cut the replay mid-answer).
                        self._pacing = True
                        try:
                            await pacer.acquire(key, source)
                            proto.when_responding(partial(pacer.release, key, source))
                            proto.when_responding(self._pace_done)
                            await pacer.when_due(key)  # at most PACE_RATE a second per tenant
                            await pacer.when_idle()  # parsed when nothing else waits for the loop
                            replayed = await self._replayed(proto, data)
                        finally:
                            self._pacing = False
                        if replayed is None:
                            break  # the replay failed after writing: this connection ends (only it)
                        if replayed:
                            proto.rejected = key  # answered 429 again: its next request is paced too
                            # Idle again, as after any answer: the timer applies the keep-alive from
                            # now, or (the server terminated meanwhile) closes the connection now.
                            self._idle_since = trio.current_time()
                            if self._idle_wake is not None:
                                self._idle_wake.set()
                            continue
                        if self._idle_since is not None:
                            # Still idle until these bytes complete a request head: the keep-alive
                            # timer applies from now (a client sending part of a head and stopping is
                            # closed, as an unpaced one).
                            self._idle_since = trio.current_time()
                            if self._idle_wake is not None:
                                self._idle_wake.set()
                        self._pace_deadline = trio.current_time() + HOLD_S
                        if self._watch_scope is not None:
                            self._watch_scope.deadline = min(self._watch_scope.deadline, self._pace_deadline)
                first = False
                self._read = loopprobe.mark()
                if h11p is not None:
                    h11p.last_data = data if _one_head(h11p, data) else None
                await self.protocol.handle(RawData(bytes(data)))
                if data == b"":
                    break
        finally:
            if h11p is not None:
                h11p.released()  # a slot still held: the connection ended before its answer
            self._end_idle_timer()
        await self.protocol.handle(Closed())

    async def _replayed(self, proto: ReasonPhraseH11Protocol, data: bytes) -> bool | None:
        """Whether the app answered ``data`` (a paced connection's next bytes) again without their
        being parsed: the same bytes as the request it just rejected, h11 between requests, the
        connection's request count below hypercorn's limit (its answer would close the connection).

        The replay runs app code in this read loop, outside hypercorn's guard of the app's task (which
        logs an error and answers 500), and ``TCPServer.run`` catches only ``OSError``: an error here
        would end every connection of the server. So an error is logged (one line: its type and where)
        and, if nothing was written yet, the request is parsed and served as usual (False); else this
        connection ends (None). (``trio.Cancelled`` is no ``Exception``: it goes on.)"""
        replay = proto.replay
        conn = proto.connection
        if (replay is None or data != replay[0] or conn.our_state is not h11.IDLE or conn.their_state is not h11.IDLE
                or proto.keep_alive_requests + 1 >= self.config.keep_alive_max_requests):
            return False
        send = _ReplaySend(self, proto)
        carry: dict[str, Any] = {}
        through = getattr(self.config, "replay_through", None)
        try:
            if not await (replay[1](send, carry) if through is None else through(replay[1], send, carry)):
                proto.carry = (data, carry) if carry else None  # for the request these bytes make
                return False
        except Exception as e:  # noqa: BLE001 - see above
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb is not None else "?"
            log.error("replaying a 429 failed (%s at %s): %s", type(e).__name__, where,
                      "the connection is closed" if send.written else "the request is served as usual")
            if send.written:
                return None
            proto.replay = None  # (not tried again on this connection until its next 429)
            return False
        proto.keep_alive_requests += 1
        return True

    def _end_idle_timer(self) -> None:
        """Let the idle-timer task end: no request can follow once the read loop has ended. (A client
        closing mid-request gets no ``Updated(idle=True)``: the task would wait for it forever, and
        the connection's task group, so its handler, with it.)"""
        self._conn_done = True
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        if self._idle_wake is not None:
            self._idle_wake.set()


# OpenSSL's verify callback: int (*)(int preverify_ok, X509_STORE_CTX *). Accepting every chain
# makes the server request a certificate without verifying it (Go's tls.RequestClientCert). A
# failed check leaves its errors on OpenSSL's per-thread error queue, where _ssl would find them on
# the next read of the connection and fail it: the callback clears them.
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_libssl = ctypes.CDLL(_ssl.__file__)  # dlsym through _ssl finds the libssl/libcrypto it is linked to
_libssl.ERR_clear_error.argtypes, _libssl.ERR_clear_error.restype = [], None
_SSL_VERIFY_PEER = 0x01


def _accept(ok: int, store: int | None) -> int:
    if not ok:
        _libssl.ERR_clear_error()
    return 1


_accept_chain = _VERIFY_CB(_accept)


def request_client_certificates(context: ssl.SSLContext) -> None:
    """Make a server ``context`` ask for a client certificate and accept whatever is sent; the
    application verifies it. ``PySSLContext`` holds its ``SSL_CTX *`` right after the object
    header (CPython 3.11-3.13)."""
    if hasattr(sys, "getobjects"):  # a Py_TRACE_REFS build: another object header size
        raise RuntimeError("client certificates need a release build of CPython")
    set_verify = _libssl.SSL_CTX_set_verify
    set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
    set_verify.restype = None
    get_options = _libssl.SSL_CTX_get_options
    get_options.argtypes, get_options.restype = [ctypes.c_void_p], ctypes.c_uint64
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ssl_ctx or get_options(ssl_ctx) != context.options:  # the same SSL_CTX as Python's
        raise RuntimeError("no SSL_CTX found in this SSLContext")
    set_verify(ssl_ctx, _SSL_VERIFY_PEER, _accept_chain)
    if context.verify_mode != ssl.CERT_OPTIONAL:  # the same SSL_CTX read back through Python
        raise RuntimeError("SSL_CTX_set_verify did not take effect")


class ClientCertConfig(Config):
    """hypercorn's Config whose TLS context requests client certificates (see above), listening with
    the kernel's largest accept queue (as Go's net.Listen, so kube-apiserver: somaxconn) instead of
    hypercorn's 100: under a flood of new connections a full queue drops SYNs, and every client
    connecting then waits the kernel's SYN retransmissions (1 s, 3 s, 7 s)."""

    backlog = socket.SOMAXCONN
    _date: tuple[int, bytes] = (-1, b"")
    #: What a replay (:data:`PACE_REPLAY`) is run through, as the app's outer ASGI wrappers run every
    #: request: called with the replay, its ``send`` and ``carry`` (gateway/_server.py ``InFlight.replay``:
    #: counted in flight, a worker's header added); None: the replay is called as it is.
    replay_through: Callable[[Callable[[Any, dict[str, Any]], Awaitable[bool]], Any, dict[str, Any]],
                             Awaitable[bool]] | None = None
    _pacer: RejectPacer | None = None

    @property
    def pacer(self) -> RejectPacer:
        """This server's pacing of rejected connections (gateway/_pacing.py)."""
        if self._pacer is None:
            self._pacer = RejectPacer()
        return self._pacer

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        """hypercorn's headers of every response (Date, Server), the Date formatted once a second:
        ``format_date_time`` per response was a tenth of a GET's samples."""
        if not self.include_date_header or self.alt_svc_headers or self._quic_addresses:
            return super().response_headers(protocol)
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, format_date_time(now).encode("ascii"))
        headers = [(b"date", self._date[1])]
        if self.include_server_header:
            headers.append((b"server", b"hypercorn-" + protocol.encode("ascii")))
        return headers

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        if context is not None:
            request_client_certificates(context)
        return context


#: At most this many queued connections are accepted per wake-up of a listener (see
#: :class:`BatchAcceptListener`).
ACCEPT_BATCH = 64
#: :meth:`BatchAcceptListener.accept` yields to the run queue after this many refills in a row
#: that found connections queued (each handed out without a checkpoint otherwise).
REFILLS_PER_YIELD = 4
_CLOSED_ERRNOS = {errno.EBADF, errno.ENOTSOCK}
_IGNORED_ACCEPT_ERRNOS = {getattr(errno, n) for n in ("ECONNABORTED", "EPERM", "EPROTO") if hasattr(errno, n)}


class BatchAcceptListener(trio.abc.Listener[trio.SocketStream]):
    """``trio.SocketListener``, accepting every connection the kernel has queued (up to
    :data:`ACCEPT_BATCH`) when the listening socket becomes readable, and handing them out one per
    :meth:`accept` without a trio checkpoint (a refill checks for cancellation; every
    :data:`REFILLS_PER_YIELD` refills in a row that found connections, it yields).

    ``trio.serve_listeners`` accepts one connection per checkpoint, so one per turn of the run queue.
    Under a flood of connections (B12: 1,000 per gateway) a turn is tens of milliseconds, so the
    kernel's accept queue held 450-650 connections for the whole flood and a quiet client's new
    connection waited behind all of them (B's p99 of seconds; the ``ss -ltn`` Recv-Q and the loop
    probe's traces showed it: no connection of B's was accepted until the flood ended). Go's
    ``net/http`` (kube-apiserver) accepts in a loop of its own, as fast as connections come; this does
    the same for a single-threaded loop. The listening socket is read through a ``dup`` of it (a
    plain non-blocking socket: trio's socket object has no non-blocking accept)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock
        self._std = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        self._std.setblocking(False)
        self._ready: deque[socket.socket] = deque()
        self._refills = 0  # refills since the listener last waited for the socket or yielded

    def _fill(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self._std.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS:
                    raise trio.ClosedResourceError from None
                if exc.errno in _IGNORED_ACCEPT_ERRNOS:
                    continue
                if self._ready:  # hand out what was accepted; the error comes back on the next call
                    return
                raise
            self._ready.append(conn)

    async def accept(self) -> trio.SocketStream:
        while not self._ready:
            if self.socket.fileno() < 0:
                raise trio.ClosedResourceError
            await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller gets no connection
            self._fill()
            if not self._ready:
                self._refills = 0
                await trio.lowlevel.wait_readable(self.socket)
                continue
            self._refills += 1
            if self._refills >= REFILLS_PER_YIELD:
                # A steady stream of connections never leaves the kernel's queue empty at a refill:
                # the accepting task still yields to the run queue now and then.
                self._refills = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        return trio.SocketStream(trio.socket.from_stdlib_socket(self._ready.popleft()))

    async def aclose(self) -> None:
        self.socket.close()
        self._std.close()
        while self._ready:
            self._ready.popleft().close()
        await trio.lowlevel.checkpoint()


class PutNowaitTaskGroup(TaskGroup):
    """hypercorn's trio task group, whose ``spawn_app`` hands the protocol a put into the app's
    queue that does not yield while the queue has room, and that nobody waits on once the app has
    returned.

    hypercorn puts each message for the app (the request's body, ``http.disconnect`` at the end of
    every response) with ``MemorySendChannel.send``, a checkpoint even when the message goes
    straight in: one more turn of the run queue for the task writing the response, after its last
    write. The queue is bounded (``max_app_queue_size``); when full the put waits, as hypercorn's.

    hypercorn never closes the app's queue: an app that answered without reading a body whose
    messages filled the queue (a 401 or a 429 before the body: the fast path) left the reader parked
    in its put, and the app's own task parked in its ``http.disconnect`` put as its answer ended (it
    waited for itself): the connection held (on HTTP/2, every stream of it) until shutdown. A put that
    does not yield lets the reader queue one read's frames at once, which made that likely with small
    HTTP/2 DATA frames. Here ``http.disconnect`` into a full queue is put by a task of its own, and the
    queue's reading end is closed when the app returns: a put parked on it, and any later one, is
    dropped (nobody will read it)."""

    async def spawn_app(self, app: Any, config: Config, scope: Any,
                        send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        # As TaskGroup.spawn_app (hypercorn 0.18.0), with the queue's reading end closed after the app.
        channel, queue = trio.open_memory_channel[Any](config.max_app_queue_size)

        async def app_then_close(*args: Any) -> None:
            try:
                await app(*args)
            finally:
                queue.close()

        assert self._nursery is not None
        self._nursery.start_soon(_handle, app_then_close, config, scope, queue.receive, send,
                                 trio.to_thread.run_sync, trio.from_thread.run)

        async def put_nowait(message: Any) -> None:
            await trio.lowlevel.checkpoint_if_cancelled()  # as ``send``: a cancelled put raises
            try:
                channel.send_nowait(message)
            except trio.WouldBlock:
                if message.get("type") == "http.disconnect":
                    # Put by the app's own task as its answer ends (hypercorn's StreamClosed): waiting
                    # here for the app to read would wait for ever. Queued by a task of its own, which
                    # ends when the app reads it or returns (one per request).
                    nursery.start_soon(_put_or_drop, channel, message)
                    return
                await _put_or_drop(channel, message)
            except trio.BrokenResourceError:
                pass  # the app has returned: nothing reads its queue any more

        nursery = self._nursery
        return put_nowait


async def _put_or_drop(channel: trio.MemorySendChannel[Any], message: Any) -> None:
    """Wait for room in an app's queue; drop the message if the app returns first."""
    try:
        await channel.send(message)
    except trio.BrokenResourceError:
        pass


class _HypercornTrio(types.ModuleType):
    """The ``trio`` module as hypercorn's ``trio.run`` sees it: every name trio's, except
    ``SocketListener``, which is :class:`BatchAcceptListener`."""

    SocketListener = BatchAcceptListener

    def __getattr__(self, name: str) -> Any:
        return getattr(trio, name)


def install() -> None:
    """Serve HTTP/1.1 and HTTP/2 through the classes above from now on, pass client
    certificates to the app, and accept connections in batches (idempotent)."""
    hypercorn.protocol.H11Protocol = ReasonPhraseH11Protocol  # type: ignore[misc]
    hypercorn.protocol.H2Protocol = EarlyResponseH2Protocol  # type: ignore[misc]
    hypercorn.trio.run.TCPServer = ClientCertTCPServer  # type: ignore[misc]
    hypercorn.trio.tcp_server.TaskGroup = PutNowaitTaskGroup  # type: ignore[misc]
    hypercorn.trio.run.trio = _HypercornTrio("trio")  # type: ignore[attr-defined]
