"""actors._runtime.WorkQueue: the controllers' work queue (dedupe, order, bound, retry)."""

from __future__ import annotations

import trio
import trio.testing

from actors._runtime import WorkQueue


async def test_each_key_once_in_first_added_order_and_bounded() -> None:
    q: WorkQueue[str] = WorkQueue(3)
    for k in ("a", "b", "a", "c", "b", "d", "e"):
        q.add(k)
    assert len(q) == 3 and q.dropped == 2  # d and e: full
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    q.add("a")  # taken keys may come back
    assert await q.get() == "a"


async def test_get_waits_for_a_key_and_add_later_retries(autojump_clock: trio.testing.MockClock) -> None:
    q: WorkQueue[int] = WorkQueue(10)
    got: list[tuple[int, float]] = []

    async def consumer() -> None:
        for _ in range(3):
            got.append((await q.get(), trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        q.add(1)
        nursery.start_soon(q.add_later, 2, 5.0)
        nursery.start_soon(q.add_later, 3, 1.0)
    assert [k for k, _ in got] == [1, 3, 2]
    assert [t for _, t in got] == [0.0, 1.0, 5.0]


async def test_a_dropped_key_is_found_again_by_the_resync_once_drained() -> None:
    """Review of session 10, L1: a controller with no periodic resync (the CRD controllers) gives the
    queue every key it follows; after a drop, once the queue is drained, it goes through them all,
    adding them as room allows (half the bound: changes meanwhile still fit), more than the bound too."""
    every = [f"k{i}" for i in range(10)]
    q: WorkQueue[str] = WorkQueue(4, resync=lambda: every)
    for k in every[:6]:
        q.add(k)
    assert q.dropped == 2 and q.resyncs == 0
    got = [await q.get() for _ in range(4)]
    assert got == every[:4] and q.resyncs == 0  # what was queued first
    got = [await q.get() for _ in range(10)]
    assert got == every and q.resyncs == 1 and len(q) == 0  # then every key, none dropped
    q.add("new")
    assert await q.get() == "new" and q.resyncs == 1  # once: no drop since
    no_resync: WorkQueue[str] = WorkQueue(1)
    no_resync.add("a")
    no_resync.add("b")
    assert await no_resync.get() == "a" and len(no_resync) == 0 and no_resync.resyncs == 0
