"""``Log.head``'s rounds against a real nats-server: while a query is in flight, one caller of the
next round (its leader) waits for it and then sends the next; the round's other callers wake only
for their answer. A leader cancelled before it sent leaves the round to the others."""

from __future__ import annotations

import pytest
import trio
from trio.lowlevel import Task, current_task
from trio.testing import wait_all_tasks_blocked

from bus import StreamConfig, _log, open_bridge, open_log

pytestmark = pytest.mark.integration


class Steps(trio.abc.Instrument):
    """Task steps, by task."""

    def __init__(self) -> None:
        self.by_task: dict[Task, int] = {}

    def before_task_step(self, task: Task) -> None:
        self.by_task[task] = self.by_task.get(task, 0) + 1


async def test_the_callers_of_a_round_wake_once_and_a_cancelled_leader_leaves_it_to_the_others(
        nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # One query in flight at a time here (more in flight at once: tests/unit/test_head_pipelining.py).
    monkeypatch.setattr(_log, "HEAD_MAX_IN_FLIGHT", 1)
    with trio.fail_after(20):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="T10", prefix="t10"))
            gates: list[trio.Event] = []
            queries = [0]

            async def gated() -> dict[str, object]:
                """Query k answers k, when the test lets it go (the k-th state of the stream)."""
                gate = trio.Event()
                gates.append(gate)
                queries[0] += 1
                k = queries[0]
                await gate.wait()
                return {"last_seq": k}

            log.stream_state = gated  # type: ignore[method-assign]
            results: dict[str, int] = {}
            tasks: dict[str, Task] = {}
            scopes: dict[str, trio.CancelScope] = {}

            async def caller(name: str) -> None:
                tasks[name] = current_task()
                with trio.CancelScope() as cs:
                    scopes[name] = cs
                    results[name] = await log.head()

            steps = Steps()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller, "first")  # sends query 1
                await wait_all_tasks_blocked()
                assert len(gates) == 1
                for name in ("leader", "b", "c", "d"):  # the next round: must not take query 1's answer
                    nursery.start_soon(caller, name)
                    await wait_all_tasks_blocked()
                trio.lowlevel.add_instrument(steps)
                gates[0].set()  # query 1 answers; the leader sends query 2
                await wait_all_tasks_blocked()
                assert len(gates) == 2 and results == {"first": 1}
                gates[1].set()
                await wait_all_tasks_blocked()
                trio.lowlevel.remove_instrument(steps)
            assert results == {"first": 1, "leader": 2, "b": 2, "c": 2, "d": 2}
            # The followers woke once each (for their answer), not also when query 1 ended.
            assert [steps.by_task.get(tasks[n], 0) for n in ("b", "c", "d")] == [1, 1, 1]

            # A leader cancelled while it waits for the query in flight: the others start a new round.
            gates.clear()
            results.clear()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller, "first")
                await wait_all_tasks_blocked()
                for name in ("leader", "b", "c"):
                    nursery.start_soon(caller, name)
                    await wait_all_tasks_blocked()
                scopes["leader"].cancel()
                await wait_all_tasks_blocked()
                assert len(gates) == 1  # nothing sent by the cancelled leader
                gates[0].set()
                await wait_all_tasks_blocked()
                assert len(gates) == 2  # b or c leads the new round and sends
                gates[1].set()
            assert results == {"first": 3, "b": 4, "c": 4}
