"""Each small response in one socket write (gateway/_hypercorn_ext.py ``ReasonPhraseH11Protocol``):
the bytes on the wire are hypercorn's own (with the reason phrase), only written together; streams
(no Content-Length) still send their head first; large bodies are not copied into one write."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from gateway._hypercorn_ext import HOLD_MAX, ReasonPhraseH11Protocol


def _app(status: int, body: bytes, *, length: bool = True, chunks: int = 1, gate: trio.Event | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json")]
        if length:
            headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        step = max(1, len(body) // chunks)
        parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
        for i, part in enumerate(parts):
            if gate is not None and i == 1:
                await gate.wait()
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def _serve(protocol: type[H11Protocol], app: Any, request: bytes,
                 seen: list[bytes] | None = None, wrote: trio.Event | None = None) -> list[bytes]:
    """The socket writes of ``protocol`` answering ``request`` (HTTP/1.1) with ``app`` (``wrote``:
    set at the first write)."""
    sent: list[bytes] = [] if seen is None else seen
    config = Config()
    config.include_date_header = False

    async def send(event: Any) -> None:
        if isinstance(event, RawData):
            sent.append(event.data)
            if wrote is not None:
                wrote.set()

    async with TaskGroup() as tg:
        p = protocol(ASGIWrapper(app), config, WorkerContext(None), tg, ConnectionState({}), False,
                     ("127.0.0.1", 1000), ("127.0.0.1", 80), send)
        await p.handle(RawData(request))
    await p.handle(Closed())
    return sent


def _hypercorns(writes: list[bytes]) -> bytes:
    """hypercorn's own writes with the reason phrase the extension adds to the status line."""
    data = b"".join(writes)
    line, rest = data.split(b"\r\n", 1)
    code = int(line.split()[1])
    return line.rstrip() + b" " + HTTPStatus(code).phrase.encode() + b"\r\n" + rest


GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
HEAD = b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(("status", "body", "request_"), [
    (200, b'{"kind":"ConfigMap"}' * 10, GET),
    (404, b'{"kind":"Status","code":404}', GET),
    (200, b"", GET),
    (200, b'{"kind":"ConfigMap"}', HEAD),
    (200, b"x" * (HOLD_MAX - 200), GET),
])
async def test_a_small_response_is_one_write_of_hypercorns_bytes(status: int, body: bytes, request_: bytes) -> None:
    ours = await _serve(ReasonPhraseH11Protocol, _app(status, body), request_)
    theirs = await _serve(H11Protocol, _app(status, body), request_)
    assert len(ours) == 1, [len(w) for w in ours]
    assert len(theirs) == (3 if body and request_ is GET else 2)  # head, body (if any), end of message
    assert ours[0] == _hypercorns(theirs)
    if request_ is GET:
        assert ours[0].endswith(b"\r\n\r\n" + body)


async def test_a_large_body_goes_out_after_its_head_uncopied() -> None:
    body = b"y" * (HOLD_MAX * 3)
    ours = await _serve(ReasonPhraseH11Protocol, _app(200, body), GET)
    theirs = await _serve(H11Protocol, _app(200, body), GET)
    assert b"".join(ours) == _hypercorns(theirs)
    assert len(ours) == 2 and ours[1] == body  # the head alone, then the body as the app gave it (no b"" after)
    # In chunks: held up to HOLD_MAX, then each as it comes.
    ours = await _serve(ReasonPhraseH11Protocol, _app(200, body, chunks=6), GET)
    assert b"".join(ours) == _hypercorns(await _serve(H11Protocol, _app(200, body, chunks=6), GET))
    assert all(len(w) <= HOLD_MAX + 200 for w in ours[:1]) and len(ours) < 7


async def test_a_stream_sends_its_head_before_its_first_chunk() -> None:
    """A watch (chunked, no Content-Length): the head is on the wire while the app waits for events."""
    gate = trio.Event()
    seen: list[bytes] = []
    body = b'{"type":"ADDED"}\n' * 4
    wrote = trio.Event()
    async with trio.open_nursery() as n:
        n.start_soon(_serve, ReasonPhraseH11Protocol, _app(200, body, length=False, chunks=4, gate=gate), GET, seen,
                     wrote)
        with trio.fail_after(5):
            await wrote.wait()  # while the app waits for its second chunk
        assert seen[0].startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in seen[0]
        gate.set()
    theirs = await _serve(H11Protocol, _app(200, body, length=False, chunks=4), GET)
    assert b"".join(seen) == _hypercorns(theirs)


def test_the_date_header_is_hypercorns_formatted_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from gateway._hypercorn_ext import ClientCertConfig

    ours, theirs = ClientCertConfig(), Config()
    for now in (1_700_000_000.2, 1_700_000_000.9, 1_700_000_001.0, 1_700_000_059.5):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        monkeypatch.setattr("hypercorn.config.time", lambda now=now: now)
        for protocol in ("h11", "h2"):
            assert ours.response_headers(protocol) == theirs.response_headers(protocol)
    ours.include_server_header = theirs.include_server_header = False
    assert ours.response_headers("h11") == theirs.response_headers("h11")
