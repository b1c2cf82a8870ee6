"""``Projection.wait_for_entry``: the entry of a key once a batch applied brings it (other batches
before it wake the waiter and change nothing), at once when the store holds it, None after the
bound when it never comes; a waiter that gave up leaves nothing behind once the next batch lands."""

from __future__ import annotations

import msgspec
import trio
import trio.testing

from bus import Event, Key, LogMessage, encode_event, encode_object_with_rv_slot, object_subject
from projections import Entry
from tests.unit.test_snapshot_format import ACTOR, PREFIX, fresh_projection, make_log

SA = Key("root", "", "serviceaccounts", "late", "default")


def _sa_message(seq: int) -> LogMessage:
    obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "late"}}
    data, rv_at = encode_object_with_rv_slot(obj)
    ev = Event(type="put", object=msgspec.Raw(data), rv_at=rv_at, verb="create", audit_id=f"a{seq}",
               time="2026-12-01T00:00:00Z", actor=ACTOR, labels={}, fields={})
    return LogMessage(seq, object_subject(PREFIX, SA), encode_event(ev), f"a{seq}")


async def test_the_entry_comes_with_the_batch_that_writes_it(autojump_clock: trio.testing.MockClock) -> None:
    p = fresh_projection()
    others = make_log(300)
    got: list[Entry | None] = []

    async def wait() -> None:
        got.append(await p.wait_for_entry(SA, 2.0))

    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(wait)
        for i in range(0, 300, 100):  # three batches of other objects: the waiter wakes, looks, waits on
            await trio.testing.wait_all_tasks_blocked()
            p.apply_batch(others[i:i + 100])
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        p.apply_batch([_sa_message(301)])
    assert got[0] is not None and got[0].seq == 301
    assert trio.current_time() == t0  # no time passed: woken by the batch, not by a timer
    # Held already: at once.
    entry = await p.wait_for_entry(SA, 2.0)
    assert entry is got[0] and trio.current_time() == t0


async def test_none_after_the_bound_and_no_waiter_left(autojump_clock: trio.testing.MockClock) -> None:
    p = fresh_projection()
    others = make_log(200)
    async with trio.open_nursery() as n:
        results: list[Entry | None] = []

        async def wait() -> None:
            results.append(await p.wait_for_entry(SA, 2.0))

        t0 = trio.current_time()
        n.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        p.apply_batch(others[:100])
    assert results == [None] and trio.current_time() - t0 == 2.0
    assert len(p._waiters) == 1  # the give-up's event, dropped by the next batch
    p.apply_batch(others[100:])
    assert p._waiters == []
