"""Two fixes to hypercorn's protocols and one extension, for the hypercorn version pinned here
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

Client certificates are requested, not verified, in the handshake, as kube-apiserver's
``tls.RequestClientCert``: :func:`request_client_certificates`. The app verifies them against the
client CA (``actors._authn.CertificateAuthority``), so a certificate from another CA, or an expired
one, is a 401 (and a bearer token on the same connection still counts), not a failed handshake.
Python's ``ssl`` has no such mode (``CERT_OPTIONAL`` aborts the handshake on a certificate it cannot
verify), so OpenSSL's ``SSL_CTX_set_verify`` is called through ctypes with a callback that accepts
the chain; a test checks it on this Python.

hypercorn has no setting for the first two, so :func:`install` makes its protocol wrapper build these
subclasses, which override private methods: a test asserts the version, so an upgrade is
checked again rather than silently losing the fixes.
"""

from __future__ import annotations

import _ssl
import ctypes
import socket
import ssl
import sys
import time
from http import HTTPStatus
from itertools import chain
from typing import Any
from wsgiref.handlers import format_date_time

import h2.events
import h11
import hypercorn.protocol
import hypercorn.trio.run
import trio
from cryptography import x509
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import H11SendableEvent

HYPERCORN_VERSION = "0.18.0"
_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}


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


class _TLSScope:
    """A connection's app wrapper adding the ASGI TLS extension to every scope."""

    __slots__ = ("inner", "tls")

    def __init__(self, inner: Any, tls: dict[str, Any]) -> None:
        self.inner, self.tls = inner, tls

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        await self.inner(scope, receive, send, sync_spawn, call_soon)


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


class ClientCertTCPServer(TCPServer):
    """hypercorn's trio connection handler, passing the client certificate to the app."""

    async def run(self) -> None:
        if isinstance(self.stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()  # idempotent: hypercorn's own call returns at once
            except (trio.BrokenResourceError, trio.TooSlowError):
                await trio.aclose_forcefully(self.stream)
                return
            self.app = _TLSScope(self.app, tls_extension(self.stream))  # type: ignore[assignment]
        await super().run()


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


def install() -> None:
    """Serve HTTP/1.1 and HTTP/2 through the classes above from now on, and pass client
    certificates to the app (idempotent)."""
    hypercorn.protocol.H11Protocol = ReasonPhraseH11Protocol  # type: ignore[misc]
    hypercorn.protocol.H2Protocol = EarlyResponseH2Protocol  # type: ignore[misc]
    hypercorn.trio.run.TCPServer = ClientCertTCPServer  # type: ignore[misc]
