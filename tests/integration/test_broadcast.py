"""bus.Broadcast on a real nats-server: best-effort fan-out between bridges, bounded, never waiting."""

from __future__ import annotations

import pytest
import trio

from bus import Broadcast, open_bridge

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
