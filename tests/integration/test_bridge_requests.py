"""The bridge's request path against a real nats-server: replies routed to the right caller under
concurrency, deadlines (one timer for all requests in flight), cancellation, no responders, and
requests in flight when the bridge closes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from bus import BusClosed, BusDisconnected, BusTimeout, NoResponders, open_bridge

pytestmark = pytest.mark.integration


async def _responders(bridge: Any) -> None:
    async def echo(msg: Any) -> None:
        await msg.respond(b"re:" + msg.data)

    async def silent(_msg: Any) -> None:
        return None

    async def subscribe() -> None:
        await bridge.nc.subscribe("t.echo", cb=echo)
        await bridge.nc.subscribe("t.silent", cb=silent)
        await bridge.nc.flush()

    await bridge.run_coro(subscribe(), timeout_s=5)


async def test_replies_deadlines_and_cancellation(nats_url: str) -> None:
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge:
            await _responders(bridge)
            answers: dict[int, bytes] = {}
            timed_out: dict[int, float] = {}
            cancelled: list[int] = []

            async def ask(i: int) -> None:
                r = await bridge.request("t.echo", b"%d" % i, {"Nats-Msg-Id": f"m{i}"}, timeout_s=10)
                answers[i] = r.data

            async def wait_out(i: int, timeout_s: float) -> None:
                t0 = trio.current_time()
                with pytest.raises(BusTimeout):
                    await bridge.request("t.silent", b"x", timeout_s=timeout_s)
                timed_out[i] = trio.current_time() - t0

            async def abandon(i: int, scope: trio.CancelScope) -> None:
                with scope:
                    await bridge.request("t.silent", b"x", timeout_s=60)
                cancelled.append(i)

            scopes = [trio.CancelScope() for _ in range(10)]
            async with trio.open_nursery() as n:
                for i, scope in enumerate(scopes):  # long deadlines first: later, earlier ones must still fire
                    n.start_soon(abandon, i, scope)
                await trio.testing.wait_all_tasks_blocked()
                async with trio.open_nursery() as inner:
                    for i in range(40):
                        inner.start_soon(wait_out, i, 0.2 + (i % 4) * 0.2)
                    for i in range(500):
                        inner.start_soon(ask, i)
                for scope in scopes:
                    scope.cancel()
            assert answers == {i: b"re:%d" % i for i in range(500)}
            for i, took in timed_out.items():
                assert 0.2 + (i % 4) * 0.2 <= took < 0.2 + (i % 4) * 0.2 + 3.0, (i, took)
            assert sorted(cancelled) == list(range(10))
            with pytest.raises(NoResponders):
                await bridge.request("t.nobody", b"x", timeout_s=5)
            # Still serving after all that, and nothing left parked.
            assert (await bridge.request("t.echo", b"after", timeout_s=5)).data == b"re:after"
            assert bridge._parked == 0


async def test_close_wakes_the_requests_in_flight(nats_url: str) -> None:
    """Nobody waits out a 60 s deadline for a reply that cannot come any more."""
    failures: list[BaseException] = []

    async def ask(bridge: Any) -> None:
        try:
            await bridge.request("t.silent", b"x", timeout_s=60)
        except (BusClosed, BusDisconnected) as e:  # the drain's disconnect, or the close itself
            failures.append(e)

    with trio.fail_after(20):
        async with trio.open_nursery() as n, open_bridge(nats_url) as bridge:
            await _responders(bridge)
            for _ in range(20):
                n.start_soon(ask, bridge)
            await trio.testing.wait_all_tasks_blocked()
            assert bridge._parked == 20
    assert len(failures) == 20


async def test_requests_queued_together_cross_to_the_nats_thread_together(nats_url: str) -> None:
    """The flush hook: requests queued in one trio scheduling batch share one crossing to the asyncio
    loop (not one each); a request alone still crosses at once, and every one is answered."""
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge:
            await _responders(bridge)
            for rounds in range(3):
                await trio.testing.wait_all_tasks_blocked()
                before = bridge.crossings
                answers: dict[int, bytes] = {}

                async def ask(i: int, answers: dict[int, bytes] = answers) -> None:
                    answers[i] = (await bridge.request("t.echo", b"%d" % i, timeout_s=10)).data

                async with trio.open_nursery() as n:
                    for i in range(200):
                        n.start_soon(ask, i)
                assert answers == {i: b"re:%d" % i for i in range(200)}
                # All 200 start in one batch: one crossing, or a few if the NATS thread drained early.
                assert 1 <= bridge.crossings - before <= 4, (rounds, bridge.crossings - before)
                alone = bridge.crossings
                assert (await bridge.request("t.echo", b"alone", timeout_s=10)).data == b"re:alone"
                assert bridge.crossings == alone + 1


async def test_an_urgent_request_crosses_from_its_task_and_replies_are_taken_at_the_io_wait(nats_url: str) -> None:
    """``urgent``: the request crosses to the NATS thread at once, from the task that made it (the
    head query of consistent reads), not at the end of the trio batch from the run-loop hook. And the
    hook takes the replies that came when the loop comes out of its I/O wait: a reply is delivered
    even while the delivery the asyncio side scheduled has not run."""
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge:
            await _responders(bridge)
            await trio.testing.wait_all_tasks_blocked()
            flushed_from: list[str | None] = []
            real_flush = bridge._t_flush

            def spy() -> None:
                try:
                    flushed_from.append(trio.lowlevel.current_task().name)
                except RuntimeError:  # no task runs: the run-loop hook
                    flushed_from.append(None)
                real_flush()

            bridge._t_flush = spy  # type: ignore[method-assign]

            async def urgent() -> bytes:
                return (await bridge.request("t.echo", b"u", timeout_s=10, urgent=True)).data

            assert await urgent() == b"re:u"
            assert flushed_from == [trio.lowlevel.current_task().name]
            flushed_from.clear()
            assert (await bridge.request("t.echo", b"n", timeout_s=10)).data == b"re:n"
            assert flushed_from == [None]

            # Replies: taken by the hook as the loop comes out of its I/O wait (no task runs then),
            # before the delivery the asyncio side scheduled runs (in the run_sync_soon task).
            taken_by: list[str | None] = []
            real_take = bridge._t_take_replies

            def take() -> None:
                if bridge._replies:
                    try:
                        taken_by.append(trio.lowlevel.current_task().name)
                    except RuntimeError:
                        taken_by.append(None)
                real_take()

            bridge._t_take_replies = take  # type: ignore[method-assign]
            answers = {}

            async def ask(i: int) -> None:
                answers[i] = (await bridge.request("t.echo", b"%d" % i, timeout_s=10)).data

            async with trio.open_nursery() as n:
                for i in range(50):
                    n.start_soon(ask, i)
            assert answers == {i: b"re:%d" % i for i in range(50)}
            assert taken_by.count(None) > len(taken_by) / 2, taken_by  # most by the hook
