"""``Log.head`` with queries in flight: a caller sends its own query at once while fewer than
``HEAD_MAX_IN_FLIGHT`` are in flight; beyond, its round waits for one to end and sends then, for
every caller that arrived meanwhile. No caller ever takes the answer of a query sent before it
arrived."""

from __future__ import annotations

import trio
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


async def test_a_caller_sends_at_once_up_to_the_bound_then_its_round_waits() -> None:
    assert _log.HEAD_MAX_IN_FLIGHT == 2
    log, gates = _gated_log()
    results: dict[str, int] = {}

    async def caller(name: str) -> None:
        results[name] = await log.head()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, "a")  # sends query 1
        await wait_all_tasks_blocked()
        nursery.start_soon(caller, "b")  # arrives while 1 is in flight: must not take 1's answer
        await wait_all_tasks_blocked()
        assert len(gates) == 2  # one in flight: b sent query 2 at once
        for name in ("c", "c2"):  # two in flight: c's round (c2 in it) waits for one to end
            nursery.start_soon(caller, name)
        await wait_all_tasks_blocked()
        assert len(gates) == 2 and log._head_busy == 2
        gates[1].set()  # query 2 answers first: b has its answer; c's round sends 3
        await wait_all_tasks_blocked()
        assert results == {"b": 2} and len(gates) == 3
        nursery.start_soon(caller, "d")  # arrives after 3 was sent, two in flight: waits
        await wait_all_tasks_blocked()
        assert len(gates) == 3
        gates[0].set()  # query 1, sent before anyone but a arrived
        await wait_all_tasks_blocked()
        assert results == {"a": 1, "b": 2} and len(gates) == 4  # d's round sent 4 once 1 ended
        gates[2].set()
        gates[3].set()
    assert results == {"a": 1, "b": 2, "c": 3, "c2": 3, "d": 4}
    assert log._head_busy == 0


async def test_a_leader_cancelled_while_it_waits_leaves_the_round_to_the_others() -> None:
    log, gates = _gated_log()
    results: dict[str, int] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def caller(name: str) -> None:
        with trio.CancelScope() as cs:
            scopes[name] = cs
            results[name] = await log.head()

    async with trio.open_nursery() as nursery:
        for name in ("a", "x", "leader", "b"):  # a and x send 1 and 2; the leader's round (b in it) waits
            nursery.start_soon(caller, name)
            await wait_all_tasks_blocked()
        assert len(gates) == 2
        scopes["leader"].cancel()  # b starts a round of its own, which waits too
        await wait_all_tasks_blocked()
        assert len(gates) == 2
        gates[0].set()  # one ends: b's round sends 3
        await wait_all_tasks_blocked()
        assert len(gates) == 3
        gates[2].set()
        gates[1].set()
    assert results == {"a": 1, "x": 2, "b": 3}
