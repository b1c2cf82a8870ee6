"""``_Client.write_now``: the bridge's commands go to the socket in the turn of the asyncio loop that
takes them, but only when nothing is queued before them (nats-py's pending commands, the
transport's buffer), so the connection's order holds; otherwise they are left to the flusher."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import nats.aio.client

from bus._bridge import _Client


class _Transport:
    def __init__(self, buffered: int = 0, closing: bool = False) -> None:
        self.buffered, self.closing = buffered, closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self, transport: _Transport | None) -> None:
        self.transport = transport
        self.written: list[bytes] = []

    def writelines(self, cmds: list[bytes]) -> None:
        self.written.extend(cmds)


def _client(writer: Any, status: int = nats.aio.client.Client.CONNECTED, pending: list[bytes] | None = None) -> _Client:
    nc = _Client()
    nc._transport = SimpleNamespace(_io_writer=writer)
    nc._status = status
    nc._pending = pending or []
    return nc


def test_written_at_once_when_nothing_is_queued_before() -> None:
    w = _Writer(_Transport())
    nc = _client(w)
    assert nc.write_now([b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"], 2)
    assert w.written == [b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"]
    assert nc.stats["out_msgs"] == 2 and nc.stats["out_bytes"] == 2


def test_left_to_the_flusher_behind_anything_queued_or_when_not_connected() -> None:
    cmds = [b"PUB a 1\r\nx\r\n"]
    cases: list[tuple[_Transport | None, dict[str, Any]]] = [
        (_Transport(), {"pending": [b"PUB earlier 0\r\n\r\n"]}),  # nats-py's pending commands
        (_Transport(buffered=10), {}),  # the transport's own buffer
        (_Transport(closing=True), {}),
        (None, {}),
        (_Transport(), {"status": nats.aio.client.Client.RECONNECTING}),
    ]
    for transport, kw in cases:
        writer = _Writer(transport)
        nc = _client(writer, **kw)
        assert not nc.write_now(cmds, 1)
        assert writer.written == [] and nc.stats["out_msgs"] == 0
    nc = _client(None)  # no transport at all (never connected)
    assert not nc.write_now(cmds, 1)
