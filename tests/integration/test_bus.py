"""The bus against a real nats-server: appends with CAS and Msg-Id, head, ordered readers."""

from __future__ import annotations

import pytest
import trio

from bus import Key, StreamConfig, WrongLastSequence, open_bridge, open_log, resource_filter

pytestmark = pytest.mark.integration


async def test_append_cas_and_dedupe(nats_url: str) -> None:
    with trio.fail_after(20):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="T1", prefix="t1"))
            subj = log.subject(Key("default", "", "configmaps", "ns", "a.b"))
            s1 = await log.append(subj, b"one", msg_id="m1", expected_seq=0)
            assert s1 == 1
            # The same Msg-Id again is not applied twice.
            assert await log.append(subj, b"one", msg_id="m1", expected_seq=0) == 1
            with pytest.raises(WrongLastSequence) as e:
                await log.append(subj, b"two", msg_id="m2", expected_seq=0)
            assert e.value.current == 1
            s2 = await log.append(subj, b"two", msg_id="m3", expected_seq=1)
            assert s2 == 2
            assert await log.head() == 2
            last = await log.last_message(subj)
            assert last is not None and last[0] == 2 and last[1] == "m3" and last[2] == b"two"


async def test_concurrent_cas_exactly_one_wins(nats_url: str) -> None:
    with trio.fail_after(20):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="T2", prefix="t2"))
            subj = log.subject(Key("default", "", "configmaps", "ns", "x"))
            await log.append(subj, b"v0", msg_id="init", expected_seq=0)
            wins: list[int] = []
            losses: list[int] = []

            async def writer(i: int) -> None:
                try:
                    wins.append(await log.append(subj, b"v%d" % i, msg_id=f"w{i}", expected_seq=1))
                except WrongLastSequence:
                    losses.append(i)

            async with trio.open_nursery() as n:
                for i in range(50):
                    n.start_soon(writer, i)
            assert len(wins) == 1 and len(losses) == 49


async def test_reader_in_order_from_any_start(nats_url: str) -> None:
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="T3", prefix="t3"))
            for i in range(300):
                ns = "a" if i % 2 else "b"
                await log.append(log.subject(Key("default", "", "configmaps", ns, f"o{i}")), b"%d" % i,
                                 msg_id=f"id{i}", expected_seq=None)
            reader = await log.open_reader(resource_filter("t3", "default", "", "configmaps", "a"), 100, batch=16)
            try:
                seen: list[int] = []
                while not seen or seen[-1] < 300:
                    seen += [m.seq for m in await reader.next_batch()]
                assert seen == list(range(100, 301, 2))
                # Live: a new append arrives on the open reader.
                await log.append(log.subject(Key("default", "", "configmaps", "a", "live")), b"x",
                                 msg_id="live", expected_seq=0)
                batch = await reader.next_batch()
                assert [m.seq for m in batch] == [301]
            finally:
                await reader.aclose()


async def test_head_caller_cancelled_mid_query_does_not_fail_its_round(nats_url: str) -> None:
    """Callers share head queries; the one running a round's query may be cancelled by its own
    request deadline: the others of that round get the head from a later query, not an error."""
    from trio.lowlevel import Task, current_task
    from trio.testing import wait_all_tasks_blocked

    with trio.fail_after(20):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="T9", prefix="t9"))
            await log.append(log.subject(Key("default", "", "configmaps", "ns", "h")), b"v", msg_id="h1",
                             expected_seq=0)
            real = log.stream_state
            gate1, entered1, entered2 = trio.Event(), trio.Event(), trio.Event()
            runners: list[Task] = []

            async def gated() -> dict[str, object]:
                runners.append(current_task())
                if len(runners) == 1:
                    entered1.set()
                    await gate1.wait()
                elif len(runners) == 2:
                    entered2.set()
                    await trio.sleep_forever()  # until its caller is cancelled
                return await real()

            log.stream_state = gated  # type: ignore[method-assign]
            scopes: dict[Task, trio.CancelScope] = {}
            results: dict[str, int] = {}

            async def caller(name: str) -> None:
                with trio.CancelScope() as cs:
                    scopes[current_task()] = cs
                    results[name] = await log.head()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller, "a")
                await entered1.wait()
                nursery.start_soon(caller, "b")
                nursery.start_soon(caller, "c")
                await wait_all_tasks_blocked()  # b and c wait for a's query: both in the next round
                gate1.set()
                await entered2.wait()
                scopes[runners[1]].cancel()
            assert results.pop("a") == 1
            assert list(results.values()) == [1]  # the one not cancelled, answered by a third query
            assert len(runners) == 3
