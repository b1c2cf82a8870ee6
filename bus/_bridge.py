"""The trio face of nats-py, which is asyncio-only.

Why this shape (ARCHITECTURE.md, fixed decision 6): nats-py runs on an asyncio loop in a thread of
its own. Crossing between the trio thread and that loop costs a thread wake-up, so crossings are
*coalesced*: trio callers drop requests into a deque, and once per scheduling batch (a run-loop
hook, :class:`_FlushHook`) at most one drain is scheduled on the asyncio loop (an ``urgent``
request crosses at once); replies come back into another deque with at most one drain scheduled on
trio, and the same hook takes them as trio's loop comes out of its I/O wait (their tasks run in the
batch that follows, not one turn of the run queue later, after the drain's own task step). Under load one crossing carries a
whole batch of publishes or acks, and every request is a publish with a reply subject on one
wildcard inbox subscription, so nothing waits on a per-message round trip
(nats-py's ``publish_async`` hangs forever on server error replies, nats.py#985; we own deadlines).
``bench`` scenario B5 measures this bridge against raw pipelined nats-py publishes (C2).

Per request the hot path does as little as trio allows (py-spy on B5: these were two thirds of
its CPU): the caller parks once (``wait_task_rescheduled``) and is rescheduled by the reply's
delivery; one timer task and one heap serve every deadline (no cancel scope or Event per request);
a free in-flight slot costs no checkpoint. On the asyncio side the bridge builds the PUB/HPUB
bytes itself (an append's header block is built once, retries resend it) and queues a batch with
one flusher wake-up, and the reply inbox's messages come straight from nats-py's parser (no
``Msg``, queue and callback task each). B5: 84-91 -> 34-41 us of CPU per append (C2: 21-30 us).

Invariant (both directions): the producer appends to the deque *then* reads the "drain scheduled"
flag; the drain clears the flag *then* empties the deque. So an item is never left behind with no
drain scheduled, at the price of an occasional empty drain.

Connection loss: nats-py reconnects by itself after a dropped socket, but it *closes the client for
good* on any ``-ERR`` from the server other than "stale connection" (``Client._process_err``), e.g.
"maximum control line exceeded". So the bridge replaces a connection that nats-py closed under it
(new connection, new reply inbox) until the bridge itself is closed. While disconnected, requests
fail at once with :class:`BusUnavailable` (nothing sent) and requests in flight when the connection
dropped fail with :class:`BusDisconnected` (they may have been applied): nobody waits out a deadline
for a reply that cannot come. Readers register to rebuild their consumers after every reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import re
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.aio.client
import trio
from nats.aio.client import _validate_subject
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser

from ._auth import NatsAuth, redact_url, server_urls
from ._errors import BusClosed, BusDisconnected, BusRefused, BusTimeout, BusUnavailable, NoResponders

log = logging.getLogger("jetkube.bus")

_CRLF = b"\r\n"
#: The GIL switch interval the bridge sets (see ``Bridge._start``).
GIL_SWITCH_INTERVAL_S = 0.001
LEFTOVER_S = 1.0  # how long the stopped asyncio loop gives its cancelled leftover tasks to finish


class _Parser(Parser):
    """nats-py's protocol parser with a fast path for ``HMSG`` to raw subscriptions
    (``_Client.raw``): each is cut with one ``find`` and one ``split`` and handed over at once, where
    nats-py's matches a regular expression, copies the buffer twice and awaits a coroutine per
    message. Anything else (another subscription, ``MSG``, ``PING``, ``INFO``, ``-ERR``) goes to
    nats-py's parser, which carries on from the same buffer; so does a message not wholly received
    yet, whose payload the fast path takes once it is (nats-py's parser state, ``msg_arg``)."""

    async def parse(self, data: bytes = b"") -> None:
        raw = self.nc.raw
        if not raw:
            await super().parse(data)
            return
        buf = self.buf
        buf.extend(data)
        if self.state == AWAITING_MSG_PAYLOAD:
            arg = self.msg_arg
            handler = raw.get(arg["sid"])
            needed = self.needed
            if handler is None or len(buf) < needed + 2:
                await super().parse()
                return
            hn = self.header_needed
            handler(arg["subject"], arg["reply"], bytes(buf[hn:needed]), bytes(buf[:hn]) if hn else None)
            del buf[:needed + 2]
            self.header_needed = 0
            self.state = AWAITING_CONTROL_LINE
        pos = 0
        if buf.startswith(b"HMSG "):
            # One copy of the buffer, and each message's parts slices of it (a bytearray's slice
            # then ``bytes`` would copy each part twice).
            data = bytes(buf)
            size = len(data)
            find, startswith, get = data.find, data.startswith, raw.get
            while startswith(b"HMSG ", pos):
                end = find(_CRLF, pos)
                if end < 0:
                    break
                args = data[pos + 5:end].split()  # subject sid [reply] header-size total-size
                if len(args) == 5:
                    subject, sid, reply, hsize, total = args
                elif len(args) == 4:
                    subject, sid, hsize, total = args
                    reply = b""
                else:
                    break
                handler = get(int(sid))
                if handler is None:
                    break
                start = end + 2
                stop = start + int(total)
                if stop + 2 > size:
                    break
                header_end = start + int(hsize)
                handler(subject, reply, data[header_end:stop], data[start:header_end])
                pos = stop + 2
        if pos:
            del buf[:pos]
        if buf:
            await super().parse()


class _Client(nats.aio.client.Client):
    """nats-py's client with a faster header parser: its own tests each header name for whitespace
    character by character in a generator (about 70 % of the CPU of receiving a batch direct get
    of 10,000 messages, 8 headers each, measured with cProfile); this one gives the same result
    (``str.split()`` splits on exactly what ``str.isspace`` calls whitespace) at a fraction of it.

    ``raw``: subscriptions (by sid) whose messages go straight to a handler as the parser
    (``_Parser``) cut them, ``(subject, reply, payload, raw headers or None)``, called on the asyncio loop: no
    header parsing, no ``Msg`` and no trip through the subscription's queue and task (bus/_reader.py's
    ordered reads, where these were most of the CPU of receiving a message)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[int, Callable[[bytes, bytes, bytes, bytes | None], None]] = {}
        self._ps = _Parser(self)
        # sid -> handler(subject, data, headers) for subscriptions served without a Msg and queue.
        self._direct: dict[int, Callable[[bytes, bytes, dict[str, str] | None], None]] = {}

    def deliver_directly(self, sub: Any, handler: Callable[[bytes, bytes, dict[str, str] | None], None]) -> None:
        """Hand ``sub``'s messages to ``handler`` (on the loop, as they are parsed) instead of
        building a ``Msg``, queueing it and awaiting a callback task for each: the bridge's reply
        inbox. The subscription stays nats-py's (resubscribed after a reconnect, drained on close)."""
        self._direct[sub._id] = handler

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:
        raw = self.raw.get(sid)
        if raw is not None:
            raw(subject, reply, data, headers)
            return
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        hdr = await self._process_headers(headers) if headers else None
        try:
            handler(subject, data, hdr)
        except Exception:  # a fault in a handler must not reach the read loop (it would drop the connection)
            log.exception("handling a message on %r failed", subject)

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(_CRLF):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if key and key.split() != [key]:  # whitespace inside the name: invalid, skipped
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out

    def write_now(self, cmds: list[bytes], payload_bytes: int) -> bool:
        """Write ready-made commands (:func:`publish_command`) to the socket now, when nothing is
        queued before them (nats-py's pending commands, the transport's own buffer), so that they
        keep their order: :meth:`publish_commands` without its two turns of the asyncio loop (the
        publishing task's, then the flusher's), each of which retakes the GIL from the trio thread,
        which holds it while the gateway is busy (B12's quiet GET under a flood, loop probe: its
        head query 2.37 -> 1.52 ms at p50, 6.57 -> 5.04 at p99; B1's server CPU per create 13-19%
        less, alternated quick runs). False: nothing written (the caller queues them)."""
        if self._pending or self._status != nats.aio.client.Client.CONNECTED:
            return False
        writer = getattr(self._transport, "_io_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            return False
        try:
            writer.writelines(cmds)
        except Exception:  # noqa: BLE001 - a transport failing now: the flusher's path meets it too
            return False
        self.stats["out_msgs"] += len(cmds)
        self.stats["out_bytes"] += payload_bytes
        return True

    async def publish_commands(self, cmds: list[bytes], nbytes: int, payload_bytes: int) -> None:
        """Queue ready-made PUB/HPUB commands (:func:`publish_command`) and wake the flusher once:
        what ``publish`` does for each message after building its command, for a whole batch."""
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        self._pending.extend(cmds)
        self._pending_data_size += nbytes
        self.stats["out_msgs"] += len(cmds)
        self.stats["out_bytes"] += payload_bytes
        if self._max_pending_size > 0 and self._pending_data_size > self._max_pending_size:
            await self._flush_pending(force_flush=True)
        elif self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()


_HDR_LINE = b"NATS/1.0\r\n"
_HEADER_KEY_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # nats-py's check of a header name
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_header_keys: dict[str, bytes] = {}  # header name -> b"Name: " (a handful of names; bounded below)


def encode_headers(headers: dict[str, str]) -> bytes:
    """The NATS header block nats-py's ``publish`` builds from ``headers`` (names stripped, empty
    ones skipped, values stripped with CR/LF turned into spaces), with the names' bytes cached:
    built once per append (retries resend it) instead of per publish call."""
    parts = [_HDR_LINE]
    for k, v in headers.items():
        kb = _header_keys.get(k)
        if kb is None:
            key = k.strip()
            if not key:
                continue
            if not _HEADER_KEY_RE.fullmatch(key):
                raise nats.errors.BadHeaderError(key)
            kb = key.encode() + b": "
            if len(_header_keys) < 256:
                _header_keys[k] = kb
        v = v.strip()
        if "\r" in v or "\n" in v:
            v = v.translate(_HEADER_VALUE_NEWLINES)
        parts.append(kb + v.encode() + _CRLF)
    parts.append(_CRLF)
    return b"".join(parts)


_APPEND_HDR = b"NATS/1.0\r\nNats-Msg-Id: %b\r\nNats-Expected-Last-Subject-Sequence: %d\r\n\r\n"
_APPEND_HDR_NO_CAS = b"NATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n"


def encode_append_headers(msg_id: str, expected_seq: int | None) -> bytes:
    """``encode_headers`` of an append's two headers (``Nats-Msg-Id`` and, for a compare-and-swap,
    ``Nats-Expected-Last-Subject-Sequence``) in one formatting step: the same bytes."""
    msg_id = msg_id.strip()
    if "\r" in msg_id or "\n" in msg_id:
        msg_id = msg_id.translate(_HEADER_VALUE_NEWLINES)
    if expected_seq is None:
        return _APPEND_HDR_NO_CAS % msg_id.encode()
    return _APPEND_HDR % (msg_id.encode(), expected_seq)


def publish_command(subject: str, reply: str, payload: bytes, hdr: bytes | None) -> bytes:
    """The PUB (no headers) or HPUB command for one message, as nats-py's ``publish`` sends it."""
    if hdr is None:
        return b"PUB %b %b %d\r\n%b\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject.encode(), reply.encode(), len(hdr),
                                              len(hdr) + len(payload), hdr, payload)


def _is_refusal(e: Exception) -> bool:
    """An error that retrying cannot fix: credentials refused, or a certificate not trusted. (During
    CONNECT nats-py reports the server's "-ERR 'Authorization Violation'" as a plain ``Error``.)"""
    return isinstance(e, AuthorizationError | ssl.SSLError) or (
        isinstance(e, NatsError) and "authorization violation" in str(e).lower())

Headers = dict[str, str] | None


_SENT, _UNSENT, _LOST, _TIMED_OUT, _CLOSED = 0, 1, 2, 3, 4  # how a request ended: see Bridge.request


class _Pending:
    """One request in flight. ``task`` is the trio task parked on it until a reply, its deadline,
    a cancellation or the bridge's close wakes it (whichever first sets ``task`` to None)."""

    __slots__ = ("data", "failure", "headers", "many", "max_msgs", "task")

    def __init__(self, max_msgs: int = 0) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.data: bytes = b""
        self.headers: Headers = None
        self.failure = _SENT
        # A request answered by several messages (a JetStream batch direct get): the replies so far,
        # filled on the asyncio side until a status message (the end of the batch) or ``max_msgs``.
        self.many: list[Reply] | None = [] if max_msgs else None
        self.max_msgs = max_msgs


class Reply:
    """A reply: payload and headers (a ``Status`` header for server status messages)."""

    __slots__ = ("data", "headers")

    def __init__(self, data: bytes, headers: Headers) -> None:
        self.data = data
        self.headers = headers

    @property
    def status(self) -> str | None:
        return None if self.headers is None else self.headers.get("Status")


class _FlushHook(trio.abc.Instrument):
    """Crosses to the asyncio loop once per trio scheduling batch, not once per request: trio
    calls ``before_io_wait`` after running the tasks that were runnable (before it polls for I/O),
    so every request those tasks queued goes in one crossing — no task of its own, no system call
    per request. (Per append, the crossing's self-pipe write and the wake-up of the NATS thread were
    ~12 % of a busy gateway's samples.) It must not raise: trio would drop the hook."""

    __slots__ = ("bridge",)

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def before_io_wait(self, timeout: float) -> None:
        bridge = self.bridge
        if bridge._flush_due:
            try:
                bridge._t_flush()
            except Exception:  # noqa: BLE001 - a closed loop: unsent requests time out
                bridge._flush_due = False

    def after_io_wait(self, timeout: float) -> None:
        # Replies that came while the loop ran or waited: their tasks go into the batch trio is
        # about to run, not the one after the run_sync_soon task's (a turn of the run queue less
        # per request; the delivery scheduled for them finds the deque empty).
        bridge = self.bridge
        if bridge._replies:
            try:
                bridge._t_take_replies()
            except Exception:  # never raise here (trio would drop the hook, and the crossings with it)
                log.exception("taking the bridge's replies failed; the scheduled delivery takes them")


class Bridge:
    """One NATS connection, driven from trio. Create with :func:`open_bridge`."""

    def __init__(self, url: str, *, max_in_flight: int, trio_token: trio.lowlevel.TrioToken,
                 auth: NatsAuth | None = None) -> None:
        self.url = url
        self._auth = auth or NatsAuth()
        self._trio_token = trio_token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._a_run, name="nats-asyncio", daemon=True)
        self._nc: Any = None
        self._inbox = ""
        self._counter = itertools.count(1)
        # trio -> asyncio: (subject, payload, encoded header block or None, pending, timeout)
        self._outbox: collections.deque[tuple[str, bytes, bytes | None, _Pending, float]] = collections.deque()
        self._out_scheduled = False
        self._a_queueing = 0  # batches handed to nats-py's flusher path, not yet in its pending commands
        # trio side: whether requests were queued since the last crossing, and the run-loop hook
        # that crosses for them once per scheduling batch (None: not installed, cross at once).
        self._flush_due = False
        self._flush_hook: _FlushHook | None = None
        #: Crossings to the asyncio loop made for requests so far (each carries a batch of them).
        self.crossings = 0
        # asyncio -> trio
        self._replies: collections.deque[tuple[_Pending, bytes, Headers, int]] = collections.deque()
        self._reply_scheduled = False
        self._waiting: dict[int, tuple[_Pending, float]] = {}
        self._slots = trio.Semaphore(max_in_flight)
        # trio side: the deadlines of the requests in flight, one timer task for all of them (a
        # heap with lazy deletion, compacted when answered entries outnumber the waiting ones).
        self._deadlines: list[tuple[float, int, _Pending]] = []
        self._deadline_ids = itertools.count()
        self._parked = 0
        self._timer_wake: trio.CancelScope | None = None
        self._timer_life = trio.CancelScope()
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None
        self._replacer: asyncio.Task[None] | None = None
        # Written on the asyncio thread only; a plain bool read from trio (readiness, fail-fast).
        self._connected = False
        # asyncio-side callbacks run after every reconnect or replaced connection (readers).
        self._on_reconnect: list[Callable[[], Awaitable[None]]] = []
        # trio side: connections established so far (the first one included), and its change event.
        self.connections = 0
        self._connections_changed = trio.Event()

    def _a_run(self) -> None:
        """The asyncio thread: the loop until :meth:`_close` stops it; then what is left on it (the
        subscriptions' tasks when NATS was gone and the drain gave up) is cancelled and given up to
        ``LEFTOVER_S`` to finish, so that no coroutine of it is left suspended on a dead loop."""
        loop = self._loop
        loop.run_forever()
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in left:
            t.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=LEFTOVER_S))

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up right now (false while reconnecting)."""
        return self._connected and not self._closed

    async def wait_connections(self, n: int) -> None:
        """Wait until ``n`` connections have been established (reconnects included)."""
        while self.connections < n:
            await self._connections_changed.wait()

    # ---- lifecycle -------------------------------------------------------------------------

    async def _start(self, connect_timeout_s: float) -> None:
        trio.lowlevel.spawn_system_task(self._t_timer, name="jetkube-bridge-deadlines")
        self._flush_hook = _FlushHook(self)
        trio.lowlevel.add_instrument(self._flush_hook)
        # Each crossing wakes the other thread, which then waits for the GIL: while the trio thread
        # runs Python without a pause (a busy gateway), up to the interpreter's switch interval, 5 ms
        # by default, and a consistent read crosses at least twice (the head query's request and
        # reply; the reader's delivery of the messages up to the head). At most 1 ms (process-wide;
        # a lower value set by the embedder is kept). Measured: head() against a trio loop kept busy
        # by 8 tasks of 300 us steps, 5 alternations (load 9): 5 ms -> mean 20-28 ms, p99 91-132 ms;
        # 0.5-1 ms -> mean 18-22 ms, p99 44-72 ms.
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._thread.start()
        await self.run_coro(self._a_connect(connect_timeout_s), timeout_s=connect_timeout_s + 5)
        self._sweeper = await self.run_coro(self._a_start_sweeper(), timeout_s=5)

    async def _a_start_sweeper(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(self._a_sweep())

    async def _a_connect(self, connect_timeout_s: float) -> None:
        refused: list[Exception] = []
        connecting: asyncio.Task[Any] | None = None

        async def on_error(e: Exception) -> None:
            # nats-py retries a refused first connect forever: wrong credentials or an untrusted
            # certificate will not fix themselves, so give up at once and say why.
            if connecting is not None and not refused and _is_refusal(e):
                refused.append(e)
                connecting.cancel()

        # Why these numbers: SCALE.md section 1 (settings that survived every fault measured).
        # A cluster's URLs come comma-separated; nats-py fails over between the servers of a list
        # (and shuffles it, spreading gateways over the nodes) but would read one string as one server.
        client = _Client()
        connecting = asyncio.ensure_future(client.connect(
            server_urls(self.url), connect_timeout=connect_timeout_s, max_reconnect_attempts=-1,
            reconnect_time_wait=0.25, error_cb=on_error, allow_reconnect=True, ping_interval=5,
            max_outstanding_pings=2, pending_size=64 * 1024 * 1024,
            disconnected_cb=self._a_disconnected, reconnected_cb=self._a_reconnected,
            closed_cb=self._a_closed,
            **self._auth.connect_options(),
        ))
        try:
            await connecting
            nc = client
        except asyncio.CancelledError:
            if refused:
                raise BusRefused(f"NATS at {redact_url(self.url)} refused the connection: "
                                 f"{refused[0]!r}") from None
            raise
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox + ".*")
        nc.deliver_directly(sub, self._a_on_reply)
        self._nc, self._inbox = nc, inbox
        self._a_set_connected(True)

    def _a_set_connected(self, up: bool) -> None:
        self._connected = up
        if not up:
            # Nothing in flight can be answered on this connection any more.
            waiting, self._waiting = self._waiting, {}
            for p, _deadline in waiting.values():
                self._a_hand_back(p, b"", None, _LOST)
        try:
            self._trio_token.run_sync_soon(self._t_connection_changed, up)
        except RuntimeError:  # the trio run is over
            pass

    def _t_connection_changed(self, up: bool) -> None:
        if up:
            self.connections += 1
        ev, self._connections_changed = self._connections_changed, trio.Event()
        ev.set()

    async def _a_disconnected(self) -> None:
        if not self._closed:
            log.warning("lost the connection to NATS at %s; reconnecting", redact_url(self.url))
        self._a_set_connected(False)

    async def _a_reconnected(self) -> None:
        log.warning("reconnected to NATS at %s", redact_url(self.url))
        self._a_set_connected(True)
        self._a_notify_reconnect()

    def _a_notify_reconnect(self) -> None:
        for cb in list(self._on_reconnect):
            asyncio.ensure_future(cb())

    async def _a_closed(self) -> None:
        if self._closed:
            return
        # nats-py gave up on this connection (a server -ERR closes it for good): replace it.
        log.warning("NATS closed the connection (%s); opening a new one",
                    self._nc.last_error if self._nc else "")
        self._a_set_connected(False)
        if self._replacer is None or self._replacer.done():
            self._replacer = asyncio.ensure_future(self._a_replace())

    async def _a_replace(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                await self._a_connect(2.0)
            except Exception as e:  # noqa: BLE001 - retried with backoff until the bridge is closed
                log.warning("reconnecting to NATS failed: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if self._closed:
                await self._nc.close()
            else:
                self._a_notify_reconnect()
            return

    def add_reconnect_callback(self, cb: Callable[[], Awaitable[None]]) -> None:
        """Run ``cb`` (a coroutine function, on the asyncio loop) after every reconnect. Asyncio side."""
        self._on_reconnect.append(cb)

    def remove_reconnect_callback(self, cb: Callable[[], Awaitable[None]]) -> None:
        if cb in self._on_reconnect:
            self._on_reconnect.remove(cb)

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def _a_close() -> None:
            if self._sweeper is not None:
                self._sweeper.cancel()
            if self._replacer is not None:
                self._replacer.cancel()
            if self._nc is not None:
                try:
                    await asyncio.wait_for(self._nc.drain(), 2)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    await self._nc.close()

        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
                await self.run_coro(_a_close(), timeout_s=4)
            except Exception:  # noqa: BLE001, S110 - shutting down anyway
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        # Shielded as the close above: a close under cancellation (a nursery torn down) still waits
        # for the thread, then removes the flush hook, stops the timer and fails what is waiting.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join, 5)
        self._timer_life.cancel()
        if self._flush_hook is not None:
            hook, self._flush_hook = self._flush_hook, None
            try:
                trio.lowlevel.remove_instrument(hook)
            except KeyError:  # trio dropped it already
                pass
        deadlines, self._deadlines = self._deadlines, []
        for _, _, p in deadlines:  # nothing can answer them any more
            self._t_wake(p, _CLOSED)

    # ---- generic crossing for rare calls -----------------------------------------------------

    async def run_coro(self, coro: Any, *, timeout_s: float) -> Any:
        """Run an asyncio coroutine on the NATS loop and await its result from trio.

        For rare calls (connect, setup). On cancellation or timeout the coroutine is cancelled.
        """
        done = trio.Event()
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        fut.add_done_callback(lambda _f: self._trio_token.run_sync_soon(done.set))
        try:
            with trio.fail_after(timeout_s):
                await done.wait()
        except BaseException:
            fut.cancel()
            raise
        return fut.result()

    # ---- the hot path: publish with reply --------------------------------------------------------

    async def request(self, subject: str, payload: bytes, headers: Headers = None, *,
                      timeout_s: float, urgent: bool = False) -> Reply:
        """Publish ``payload`` with a reply subject and wait for the single reply.

        Raises :class:`BusTimeout` after ``timeout_s`` (the message may or may not have been
        processed: callers that append use ``Nats-Msg-Id`` so a retry is safe),
        :class:`NoResponders` when nothing listens on ``subject``, :class:`BusUnavailable` at once
        when not connected (nothing sent) and :class:`BusDisconnected` when the connection drops
        before the reply (it may have been processed). Cancellation abandons the reply; the asyncio
        side forgets it at its deadline.

        ``urgent``: cross to the NATS thread at once (with whatever is queued), not at the end of
        the trio scheduling batch: for a rare request a client waits on, e.g. the head query of
        consistent reads (``Log.head``), which a busy batch would otherwise hold back by its length.
        """
        return await self._request(subject, payload, headers, timeout_s, _Pending(), urgent)

    async def request_many(self, subject: str, payload: bytes, *, max_msgs: int,
                           timeout_s: float) -> tuple[list[Reply], Reply | None]:
        """Publish ``payload`` with a reply subject and collect the replies until a status message
        (which ends the list: JetStream's ``204 EOB`` after a batch, or ``404`` when nothing
        matched) or ``max_msgs`` replies. Errors as :meth:`request`; the whole batch is bounded
        by ``timeout_s``. Returns the replies and the status message that ended them (None when
        ``max_msgs`` ended the list)."""
        p = _Pending(max_msgs)
        last = await self._request(subject, payload, None, timeout_s, p)
        assert p.many is not None
        return p.many, last if last.status is not None else None

    async def _request(self, subject: str, payload: bytes, headers: Headers | bytes, timeout_s: float,
                       p: _Pending, urgent: bool = False) -> Reply:
        if self._closed:
            raise BusClosed("bus is closed")
        if not self._connected:
            raise BusUnavailable(f"not connected to NATS at {redact_url(self.url)}")
        hdr = encode_headers(headers) if isinstance(headers, dict) else headers
        slots = self._slots
        try:
            slots.acquire_nowait()  # no checkpoint of its own: the wait below is one
        except trio.WouldBlock:
            await slots.acquire()
        try:
            if self._closed:  # closed while this waited for a slot: nothing would time it out
                raise BusClosed("bus is closed")
            self._outbox.append((subject, payload, hdr, p, timeout_s))
            if urgent or self._flush_hook is None:  # (no hook: not started, or closing)
                self._t_flush()  # cross now, with everything queued before it
            elif not self._flush_due:
                self._flush_due = True
            p.task = trio.lowlevel.current_task()
            self._parked += 1
            deadline = trio.current_time() + timeout_s
            heap = self._deadlines
            if len(heap) > 2 * self._parked + 1024:  # bounded: drop the answered ones (amortised O(1))
                heap[:] = [e for e in heap if e[2].task is not None]
                heapq.heapify(heap)
            heapq.heappush(heap, (deadline, next(self._deadline_ids), p))
            wake = self._timer_wake
            if wake is not None and deadline < wake.deadline:
                wake.deadline = deadline

            def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
                # Cancelled: the reply is abandoned; the asyncio side forgets it at its deadline.
                p.task = None
                self._parked -= 1
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        finally:
            slots.release()
        failure = p.failure
        if failure:
            if failure == _TIMED_OUT:
                raise BusTimeout(f"no reply on {subject} within {timeout_s}s")
            if failure == _UNSENT:
                raise BusUnavailable(f"not connected to NATS at {redact_url(self.url)}")
            if failure == _LOST:
                raise BusDisconnected(f"the connection to NATS dropped before {subject} was answered")
            raise BusClosed("bus is closed")
        if p.headers is not None and p.headers.get("Status") == "503":
            raise NoResponders(f"no responders on {subject}")
        return Reply(p.data, p.headers)

    def _t_wake(self, p: _Pending, failure: int) -> None:
        """Wake the task parked on ``p`` (if it still is) with ``failure``. Trio side."""
        task = p.task
        if task is not None:
            p.task = None
            p.failure = failure
            self._parked -= 1
            trio.lowlevel.reschedule(task)

    async def _t_timer(self) -> None:
        """Times out the requests whose deadline passed: one task and one heap for all of them,
        instead of a cancel scope per request."""
        with self._timer_life:
            while True:
                heap = self._deadlines
                now = trio.current_time()
                while heap and (heap[0][2].task is None or heap[0][0] <= now):
                    self._t_wake(heapq.heappop(heap)[2], _TIMED_OUT)
                with trio.CancelScope(deadline=heap[0][0] if heap else float("inf")) as self._timer_wake:
                    await trio.sleep_forever()
                self._timer_wake = None

    def _t_flush(self) -> None:
        """Hand the outbox to the asyncio loop: one crossing (a wake-up of its thread) for every
        request queued since the last, unless a drain is already scheduled there."""
        self._flush_due = False
        if not self._out_scheduled:
            self._out_scheduled = True
            self.crossings += 1
            self._loop.call_soon_threadsafe(self._a_drain_outbox)

    def _a_drain_outbox(self) -> None:
        self._out_scheduled = False
        batch = []
        out = self._outbox
        while out:
            batch.append(out.popleft())
        if batch:
            built = self._a_commands(batch)
            # (behind a batch still on its way to nats-py's pending commands, a batch queues too: in order)
            if built is not None and (self._a_queueing or not self._nc.write_now(built[0], built[3])):
                self._a_queueing += 1
                asyncio.ensure_future(self._a_queue(*built))

    def _a_commands(self, batch: list[tuple[str, bytes, bytes | None, _Pending, float]]
                    ) -> tuple[list[bytes], list[int], int, int] | None:
        """The batch's PUB/HPUB commands, each request registered for its reply: (commands, their
        reply numbers, bytes, payload bytes); None when none is to be sent."""
        now = self._loop.time()
        nc = self._nc
        inbox = self._inbox
        waiting = self._waiting
        counter = self._counter
        max_payload = nc.max_payload
        cmds: list[bytes] = []
        sent: list[int] = []
        nbytes = payload_bytes = 0
        for subject, payload, hdr, p, timeout_s in batch:
            if not self._connected:
                # nats-py would buffer it until a reconnect: fail it now, nothing was sent.
                self._a_hand_back(p, b"", None, _UNSENT)
                continue
            try:
                _validate_subject(subject)
            except NatsError:  # the caller sees a timeout, as for any publish nats-py refused
                continue
            if len(payload) > max_payload:
                continue
            n = next(counter)
            waiting[n] = (p, now + timeout_s + 1.0)
            cmd = publish_command(subject, f"{inbox}.{n}", payload, hdr)
            cmds.append(cmd)
            sent.append(n)
            nbytes += len(cmd)
            payload_bytes += len(payload)
        return (cmds, sent, nbytes, payload_bytes) if cmds else None

    async def _a_queue(self, cmds: list[bytes], sent: list[int], nbytes: int, payload_bytes: int) -> None:
        """Commands :meth:`_Client.write_now` could not write at once: to nats-py's flusher."""
        try:
            await self._nc.publish_commands(cmds, nbytes, payload_bytes)
        except Exception:  # noqa: BLE001 - the callers see a timeout and retry with their Msg-Id
            for n in sent:
                self._waiting.pop(n, None)
        finally:
            self._a_queueing -= 1

    def _a_on_reply(self, subject: bytes, data: bytes, headers: Headers) -> None:
        try:
            n = int(subject[subject.rindex(b".") + 1:])
        except ValueError:  # not one of ours
            return
        entry = self._waiting.get(n)
        if entry is None:
            return
        p = entry[0]
        if p.many is not None and (headers is None or "Status" not in headers):
            p.many.append(Reply(data, headers))
            if len(p.many) < p.max_msgs:
                return
        del self._waiting[n]
        self._a_hand_back(p, data, headers, _SENT)

    def _a_hand_back(self, p: _Pending, data: bytes, headers: Headers, failure: int) -> None:
        self._replies.append((p, data, headers, failure))
        if not self._reply_scheduled:
            self._reply_scheduled = True
            try:
                self._trio_token.run_sync_soon(self._t_deliver)
            except RuntimeError:  # the trio run is over
                pass

    def _t_deliver(self) -> None:
        self._reply_scheduled = False
        self._t_take_replies()

    def _t_take_replies(self) -> None:
        """Wake the tasks of the replies handed back so far (from :meth:`_t_deliver`, scheduled by
        the asyncio side, or from the run-loop hook when the loop comes out of its I/O wait)."""
        replies = self._replies
        while replies:
            p, data, headers, failure = replies.popleft()
            if p.task is not None:
                p.data, p.headers = data, headers
                self._t_wake(p, failure)

    async def _a_sweep(self) -> None:
        # Bound: a reply that never comes is forgotten one second after its caller gave up.
        while True:
            await asyncio.sleep(1.0)
            now = self._loop.time()
            stale = [n for n, (_, deadline) in self._waiting.items() if deadline < now]
            for n in stale:
                self._waiting.pop(n, None)

    # ---- plumbing for readers (see _reader.py) ----------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def trio_token(self) -> trio.lowlevel.TrioToken:
        return self._trio_token

    @property
    def nc(self) -> Any:
        return self._nc


class open_bridge:
    """``async with open_bridge(url) as bridge``: connect; on exit drain and close."""

    def __init__(self, url: str, *, max_in_flight: int = 8192, connect_timeout_s: float = 10.0,
                 auth: NatsAuth | None = None) -> None:
        self._url = url
        self._auth = auth
        self._max_in_flight = max_in_flight
        self._connect_timeout_s = connect_timeout_s
        self._bridge: Bridge | None = None

    async def __aenter__(self) -> Bridge:
        self._bridge = Bridge(self._url, max_in_flight=self._max_in_flight,
                              trio_token=trio.lowlevel.current_trio_token(), auth=self._auth)
        try:
            await self._bridge._start(self._connect_timeout_s)
        except BaseException:
            await self._bridge._close()
            raise
        return self._bridge

    async def __aexit__(self, *exc: object) -> None:
        assert self._bridge is not None
        await self._bridge._close()
