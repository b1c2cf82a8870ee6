"""bus.Broadcast on a real nats-server: best-effort fan-out between bridges, bounded, never waiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trio

from bus import Broadcast, open_bridge, run_nats_server

pytestmark = pytest.mark.integration


async def test_broadcast_reaches_every_subscriber_and_drops_when_full(nats_url: str) -> None:
    with trio.fail_after(20):
        async with open_bridge(nats_url) as b1, open_bridge(nats_url) as b2:
            one, two = Broadcast(b1, "t-apf.fleet"), Broadcast(b2, "t-apf.fleet", max_pending=4)
            await one.open(timeout_s=5)
            await two.open(timeout_s=5)
            try:
                for i in range(3):
                    assert one.publish(f"m{i}".encode())  # returns at once, nothing awaited
                got = [await two.received.receive() for _ in range(3)]
                assert got == [b"m0", b"m1", b"m2"]
                # The sender hears itself too (the fleet view ignores its own reports).
                assert [await one.received.receive() for _ in range(3)] == got
                # Nobody reads ``two``: beyond its 4 slots, messages are dropped and counted.
                for i in range(20):
                    one.publish(f"x{i}".encode())

                async def dropped() -> None:
                    while two.dropped < 16:
                        await trio.sleep(0.01)

                await dropped()
                assert [two.received.receive_nowait() for _ in range(4)] == [b"x0", b"x1", b"x2", b"x3"]
            finally:
                await one.aclose()
                await two.aclose()
            assert not one.publish(b"after close")


async def test_a_bridge_closed_under_cancellation_after_nats_went_away_leaves_nothing(tmp_path: Path) -> None:
    """NATS goes away under a bridge with a subscription (its nats-py task waiting for messages) and
    a task nothing will cancel (as a subscription's that the drain gave up on, seen by the garbage
    collector as "Exception ignored in Subscription._wait_for_msgs: Event loop is closed"); the
    bridge is then closed inside a cancelled scope (a nursery torn down): the close still joins the
    NATS thread and removes its flush hook, and no asyncio task is left suspended."""
    with trio.fail_after(30):
        server = run_nats_server(tmp_path / "nats")
        url = await server.__aenter__()
        try:
            bridge_cm = open_bridge(url)
            b = await bridge_cm.__aenter__()
            sub = Broadcast(b, "t-gone")
            await sub.open(timeout_s=5)
            tasks = [t.get_coro().__qualname__ for t in asyncio.all_tasks(b.loop) if not t.done()]
            assert "Subscription._wait_for_msgs" in tasks, tasks

            async def strand() -> asyncio.Task[bool]:
                return asyncio.get_running_loop().create_task(asyncio.Event().wait())
            stranded = await b.run_coro(strand(), timeout_s=5)
        finally:
            await server.__aexit__(None, None, None)
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            await bridge_cm.__aexit__(None, None, None)
    assert not b._thread.is_alive()
    assert b._flush_hook is None
    assert stranded.cancelled()
    assert [t.get_coro().__qualname__ for t in asyncio.all_tasks(b.loop) if not t.done()] == []
