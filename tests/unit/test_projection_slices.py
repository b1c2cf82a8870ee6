"""The follower applies a big batch in slices: the loop keeps turning while it catches up.

``Projection.run`` against a fake log whose reader hands over one huge batch: other tasks run between
the slices (measured with a trio Instrument on the follower's task steps), every state they see is
whole (``applied`` at a slice's end, each object present up to it), and a consistent-read waiter for
a sequence in the middle of the batch is released before the batch's end is applied.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from bench.watch_cost import change
from bus import LogMessage
from projections import Projection, ProjectionSettings

N = 5_000


class _Bridge:
    connections = 1

    async def wait_connections(self, n: int) -> None:
        await trio.sleep_forever()


class _Reader:
    def __init__(self, batches: list[list[LogMessage]]) -> None:
        self.batches = batches

    async def next_batch(self) -> list[LogMessage]:
        await trio.lowlevel.checkpoint()
        if self.batches:
            return self.batches.pop(0)
        await trio.sleep_forever()
        raise AssertionError

    async def aclose(self) -> None:
        pass


class _Log:
    prefix = "jk"
    compaction_subject = "jk.$sys.compaction"

    def __init__(self, batches: list[list[LogMessage]], head: int) -> None:
        self.bridge = _Bridge()
        self.reader = _Reader(batches)
        self._head = head

    async def compaction_record(self) -> tuple[int, int, int]:
        await trio.lowlevel.checkpoint()
        return 0, 0, 0

    async def head(self) -> int:
        await trio.lowlevel.checkpoint()
        return self._head

    async def open_reader(self, subject: str, start: int, **kw: Any) -> _Reader:
        await trio.lowlevel.checkpoint()
        assert start == 1
        return self.reader


class _Steps(trio.abc.Instrument):
    """Counts the follower's task steps and what the store had applied before each."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.projection: Projection | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("Projection.run") and self.projection is not None:
            self.seen.append(self.projection.store.applied)


async def test_a_huge_batch_is_applied_in_slices_and_other_tasks_run_between() -> None:
    log = _Log([[change(i) for i in range(1, N + 1)]], head=N)
    p = Projection(log, ProjectionSettings(apply_slice=64))  # type: ignore[arg-type]
    steps = _Steps()
    steps.projection = p
    observed: list[int] = []
    middle_released_at: list[int] = []

    async def observe() -> None:
        # Runs whenever the follower checkpoints: each state it sees must be whole.
        while p.store.applied < N:
            a = p.store.applied
            observed.append(a)
            if a:
                st = p.state("root", "", "configmaps")
                assert st.get("d", f"cm-{a}") is not None
                assert st.get("d", f"cm-{a + 1}") is None
            await trio.lowlevel.checkpoint()

    async def middle_waiter() -> None:
        await p.wait_for(N // 2, timeout_s=30)
        middle_released_at.append(p.store.applied)

    trio.lowlevel.add_instrument(steps)
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(middle_waiter)
                await trio.testing.wait_all_tasks_blocked()  # the waiter is registered
                nursery.start_soon(observe)
                await nursery.start(p.run)
                assert p.store.applied == N
                nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(steps)
    intermediate = sorted({a for a in observed if 0 < a < N})
    # Every state seen between slices is at a slice's end, and the loop turned many times.
    assert all(a % 64 == 0 for a in intermediate), intermediate[:10]
    assert len(intermediate) >= N // 64 // 2
    # No step of the follower applied more than one slice.
    applied_per_step = [b - a for a, b in zip(steps.seen, steps.seen[1:], strict=False)]
    assert applied_per_step and max(applied_per_step) <= 64
    # The waiter for the middle was let go well before the end of the batch.
    assert middle_released_at and N // 2 <= middle_released_at[0] < N


async def test_a_small_batch_is_one_step() -> None:
    log = _Log([[change(i) for i in range(1, 41)]], head=40)
    p = Projection(log, ProjectionSettings(apply_slice=64))  # type: ignore[arg-type]
    steps = _Steps()
    steps.projection = p
    trio.lowlevel.add_instrument(steps)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(p.run)
                nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert p.store.applied == 40
    assert 40 in [b - a for a, b in zip(steps.seen, steps.seen[1:], strict=False)]  # all in one step
