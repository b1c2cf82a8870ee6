"""``Log.head`` under a slow answer: a caller arriving while a query is in flight waits for it to end
(its answer may predate the caller's write) unless it has been in flight ``HEAD_PIPELINE_AFTER_S``;
then the caller's round sends at once, up to ``HEAD_MAX_IN_FLIGHT`` queries in flight. No caller
ever takes the answer of a query sent before it arrived."""

from __future__ import annotations

import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from bus import StreamConfig, _log
from bus._log import Log


def _gated_log() -> tuple[Log, list[trio.Event]]:
    log = Log(None, StreamConfig(name="T", prefix="t"))  # type: ignore[arg-type]  # head needs no bridge here
    gates: list[trio.Event] = []

    async def gated() -> dict[str, object]:
        """Query k answers k (the k-th state of the stream) when the test lets it go."""
        gate = trio.Event()
        gates.append(gate)
        k = len(gates)
        await gate.wait()
        return {"last_seq": k}

    log.stream_state = gated  # type: ignore[method-assign]
    return log, gates


async def test_a_round_behind_an_overdue_query_sends_at_once_up_to_the_bound(
        mock_clock: trio.testing.MockClock) -> None:
    assert _log.HEAD_MAX_IN_FLIGHT == 2
    after = _log.HEAD_PIPELINE_AFTER_S
    log, gates = _gated_log()
    results: dict[str, int] = {}

    async def caller(name: str) -> None:
        results[name] = await log.head()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, "a")  # sends query 1
        await wait_all_tasks_blocked()
        nursery.start_soon(caller, "b")  # arrives while 1 is in flight: must not take 1's answer
        nursery.start_soon(caller, "b2")
        await wait_all_tasks_blocked()
        mock_clock.jump(after / 2)
        await wait_all_tasks_blocked()
        assert len(gates) == 1  # 1 is not overdue yet: b's round waits
        mock_clock.jump(after)
        await wait_all_tasks_blocked()
        assert len(gates) == 2  # 1 is overdue: b's round sent query 2 beside it
        nursery.start_soon(caller, "c")  # two in flight: c's round waits for one to end
        await wait_all_tasks_blocked()
        mock_clock.jump(10 * after)
        await wait_all_tasks_blocked()
        assert len(gates) == 2
        gates[1].set()  # query 2 answers first: b's round has its answer; c's round sends 3
        await wait_all_tasks_blocked()
        assert results == {"b": 2, "b2": 2} and len(gates) == 3
        nursery.start_soon(caller, "d")  # arrives after 3 was sent
        await wait_all_tasks_blocked()
        gates[0].set()  # query 1, sent before anyone but a arrived
        await wait_all_tasks_blocked()
        assert results == {"a": 1, "b": 2, "b2": 2} and len(gates) == 4  # d's round sent 4 once 1 ended
        gates[2].set()
        gates[3].set()
    assert results == {"a": 1, "b": 2, "b2": 2, "c": 3, "d": 4}
    assert log._head_busy == 0


async def test_a_query_answered_in_time_is_not_doubled(mock_clock: trio.testing.MockClock) -> None:
    """The round behind a query in flight sends when that one ends, not before (one in flight)."""
    log, gates = _gated_log()
    results: dict[str, int] = {}

    async def caller(name: str) -> None:
        results[name] = await log.head()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, "a")
        await wait_all_tasks_blocked()
        for name in ("b", "c"):
            nursery.start_soon(caller, name)
        await wait_all_tasks_blocked()
        mock_clock.jump(_log.HEAD_PIPELINE_AFTER_S / 2)
        gates[0].set()
        await wait_all_tasks_blocked()
        assert results == {"a": 1} and len(gates) == 2
        gates[1].set()
    assert results == {"a": 1, "b": 2, "c": 2}


async def test_a_leader_cancelled_while_it_waits_leaves_the_round_to_the_others(
        mock_clock: trio.testing.MockClock) -> None:
    log, gates = _gated_log()
    results: dict[str, int] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def caller(name: str) -> None:
        with trio.CancelScope() as cs:
            scopes[name] = cs
            results[name] = await log.head()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, "a")
        await wait_all_tasks_blocked()
        for name in ("leader", "b"):
            nursery.start_soon(caller, name)
            await wait_all_tasks_blocked()
        scopes["leader"].cancel()
        await wait_all_tasks_blocked()
        assert len(gates) == 1
        mock_clock.jump(2 * _log.HEAD_PIPELINE_AFTER_S)  # 1 overdue: b's new round sends
        await wait_all_tasks_blocked()
        assert len(gates) == 2
        gates[1].set()
        gates[0].set()
    assert results == {"a": 1, "b": 2}
