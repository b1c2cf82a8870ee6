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


def test_a_batch_behind_one_on_its_way_to_the_flusher_queues_too() -> None:
    """The bridge's drain: a batch ``write_now`` refused goes to nats-py's flusher path (a task, a
    turn of the loop later); a batch drained before that task ran must not be written ahead of it,
    even when the socket could take it now."""
    import asyncio

    from bus._bridge import Bridge, _Pending

    order: list[bytes] = []

    class _Nc:
        max_payload = 1 << 20

        def __init__(self) -> None:
            self.writable = False  # the transport's buffer is not empty: the first batch queues

        def write_now(self, cmds: list[bytes], payload_bytes: int) -> bool:
            if self.writable:
                order.extend(cmds)
            return self.writable

        async def publish_commands(self, cmds: list[bytes], nbytes: int, payload_bytes: int) -> None:
            order.extend(cmds)

    async def run() -> None:
        b = Bridge("nats://127.0.0.1:1", max_in_flight=8, trio_token=None)  # type: ignore[arg-type]
        b._loop.close()
        b._loop = asyncio.get_running_loop()
        b._nc = nc = _Nc()
        b._connected, b._inbox = True, "_INBOX.t"
        b._outbox.append(("a.first", b"1", None, _Pending(), 5.0))
        b._a_drain_outbox()  # refused: queued for the flusher (a task not run yet)
        nc.writable = True  # the socket drained meanwhile
        b._outbox.append(("a.second", b"2", None, _Pending(), 5.0))
        b._a_drain_outbox()  # must queue behind the first, not be written now
        await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))  # the queued batches' tasks
        assert [c.split(b" ")[1] for c in order] == [b"a.first", b"a.second"]
        assert b._a_queueing == 0
        b._outbox.append(("a.third", b"3", None, _Pending(), 5.0))
        b._a_drain_outbox()  # nothing on its way: written at once
        assert [c.split(b" ")[1] for c in order] == [b"a.first", b"a.second", b"a.third"]

    asyncio.run(run())
