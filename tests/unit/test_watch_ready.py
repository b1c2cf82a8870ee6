"""A watch response takes an event already queued without waiting (gateway/_app.py ``_stream``,
gateway/_reads.py ``WatchLines.ready``, projections/_watch.py ``WatchStream.ready``): no cancel
scope entered, the events in order, and the watch still ends at once when it is ended (shutdown, its
kind no longer served, its deadline) with events queued: no chunk after the one being written.
bench/watch_cost.py times it."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from bench.watch_cost import NoLog, change, watch_body
from bus import ANY_TENANT, Key
from gateway._app import WatchEnd, WatchStreams, _ProtobufFrames, _stream
from gateway._protobuf_write import encode_watch_lines
from gateway._reads import parse_list_options, watch_lines
from kinds import Registry
from projections import Projection, ProjectionSettings


def _projection() -> Projection:
    p = Projection(NoLog(), ProjectionSettings())  # type: ignore[arg-type]
    p.store.apply(change(1))
    return p


def _names(chunk: bytes) -> list[str]:
    return [line.split(b'"name":"')[1].split(b'"')[0].decode() for line in chunk.splitlines()]


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a watch entered a scope to wait for its next chunk (``WatchEnd.__enter__``)."""
    entered = [0]
    enter = WatchEnd.__enter__

    def counted(self: WatchEnd) -> trio.CancelScope:
        entered[0] += 1
        return enter(self)

    monkeypatch.setattr(WatchEnd, "__enter__", counted)
    return entered


async def _first_while_waiting(p: Projection, body: Any) -> bytes:
    """The body's first chunk, cm-2, applied while the watcher waits for it (so it is live: what it
    is sent from now on is its queue alone)."""
    first: list[bytes] = []

    async def take_first() -> None:
        first.append(await body.__anext__())

    async with trio.open_nursery() as n:
        n.start_soon(take_first)
        await trio.testing.wait_all_tasks_blocked()  # the watcher waits, in a scope
        p.store.apply(change(2))
    return first[0]


@pytest.mark.parametrize("tenant", ["root", ANY_TENANT])
async def test_queued_events_are_taken_without_a_wait_in_order(tenant: str, waits: list[int]) -> None:
    p = _projection()
    watches = WatchStreams()
    body = watch_body(p, watches, tenant=tenant)
    assert _names(await _first_while_waiting(p, body)) == ["cm-2"]
    assert waits[0] == 1
    for seq in range(3, 6):  # queued while the chunk is written
        p.store.apply(change(seq))
    assert _names(await body.__anext__()) == ["cm-3", "cm-4", "cm-5"]  # one chunk
    assert waits[0] == 1  # taken without a scope
    p.store.apply(change(6))
    assert _names(await body.__anext__()) == ["cm-6"]
    assert waits[0] == 1
    await body.aclose()
    assert not watches._ends


@pytest.mark.parametrize("how", ["end_all", "kind_gone", "deadline"])
async def test_an_ended_watch_sends_nothing_more_with_events_queued(how: str, autojump_clock: Any,
                                                                     waits: list[int]) -> None:
    p = _projection()
    watches = WatchStreams()
    served = [True]
    rdef = Registry().get("", "v1", "configmaps")
    opts = parse_list_options({"watch": "1", "resourceVersion": "1"}, rdef, "d")
    body = _stream(watches, watch_lines(p, "root", rdef, opts), 60, served=lambda: served[0]).response.iter
    assert _names(await _first_while_waiting(p, body)) == ["cm-2"]
    for seq in range(3, 10):
        p.store.apply(change(seq))  # queued: the next chunk needs no wait
    if how == "end_all":
        watches.end_all()
    elif how == "kind_gone":
        served[0] = False
        watches.kinds_changed()
    else:
        await trio.sleep(61)  # the deadline passes while the chunk is written
    with pytest.raises(StopAsyncIteration):
        await body.__anext__()  # ended before the queued events: no chunk after the one written
    assert not watches._ends and waits[0] == 1  # (ended without a wait)


async def test_a_watcher_that_never_waits_still_ends_at_its_deadline(autojump_clock: Any) -> None:
    p = _projection()
    watches = WatchStreams()
    body = watch_body(p, watches, timeout_s=5)
    seq = 2
    chunks = 1
    await _first_while_waiting(p, body)
    seq += 1
    p.store.apply(change(seq))
    with trio.fail_after(30):  # (a watch that does not end: a failure, not a hang)
        async for _ in body:
            chunks += 1
            seq += 1
            p.store.apply(change(seq))  # always one queued: the body takes it without waiting
            await trio.sleep(0.1)  # the write
    assert 48 <= chunks <= 52 and not watches._ends  # a chunk each 0.1 s for 5 s, then a clean end


async def test_ready_is_none_until_live_and_when_nothing_is_queued() -> None:
    p = _projection()
    rdef = Registry().get("", "v1", "configmaps")
    opts = parse_list_options({"watch": "1", "resourceVersion": "0"}, rdef, "d")  # initial state first
    lines = watch_lines(p, "root", rdef, opts)
    assert lines.ready() is None  # not open yet
    assert _names(await lines.__anext__()) == ["cm-1"]  # the initial state (ADDED)
    p.store.apply(change(2))
    assert lines.ready() is None  # still sending the initial state: queued events come after it
    assert _names(await lines.__anext__()) == ["cm-2"]  # through the iteration
    assert lines.ready() is None  # nothing queued
    p.store.apply(change(3))
    entry = p.store.get(Key("root", "", "configmaps", "d", "cm-3"))
    assert entry is not None
    frames = _ProtobufFrames(lines)  # a protobuf watch: the same chunk, re-framed
    assert frames.ready() == encode_watch_lines(b'{"type":"ADDED","object":%s}\n' % entry.data)
    assert frames.ready() is None
    await frames.aclose()


@pytest.mark.parametrize("clocked", [True, False])
@pytest.mark.parametrize("how", ["end_all", "kind_gone", "deadline"])
async def test_a_live_watcher_waits_without_a_scope_and_is_still_ended_while_waiting(
        how: str, clocked: bool, autojump_clock: Any, waits: list[int]) -> None:
    """With ``WatchStreams.run`` keeping the deadlines (as the server does), a watcher waiting for its
    queue alone waits without a scope; ending it (or its deadline) closes that queue: it ends at once.
    Without it, each wait is in a scope (which the deadline cancels)."""
    p = _projection()
    watches = WatchStreams()
    served = [True]
    rdef = Registry().get("", "v1", "configmaps")
    opts = parse_list_options({"watch": "1", "resourceVersion": "1"}, rdef, "d")
    async with trio.open_nursery() as clock:
        if clocked:
            await clock.start(watches.run)
        body = _stream(watches, watch_lines(p, "root", rdef, opts), 60, served=lambda: served[0]).response.iter
        assert _names(await _first_while_waiting(p, body)) == ["cm-2"]  # opening it waited in a scope
        ended = trio.Event()
        started = trio.current_time()

        async def consume() -> None:
            seen = [_names(chunk) async for chunk in body]
            assert seen == [["cm-3"]]
            ended.set()

        with trio.fail_after(120):
            async with trio.open_nursery() as n:
                n.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()
                p.store.apply(change(3))  # one more event, while it waits
                await trio.testing.wait_all_tasks_blocked()
                assert waits[0] == (1 if clocked else 3)  # (with the clock, the waits after cm-2 took no scope)
                if how == "end_all":
                    watches.end_all()
                elif how == "kind_gone":
                    served[0] = False
                    watches.kinds_changed()
                await ended.wait()
        assert waits[0] == (1 if clocked else 3) and not watches._ends
        # Ended at once; by the deadline at its deadline (60 s), by the clock, not by an event.
        assert trio.current_time() - started == pytest.approx(60 if how == "deadline" else 0, abs=0.5)
        clock.cancel_scope.cancel()


async def test_the_clock_ends_the_watches_when_it_stops_and_keeps_its_deadlines_bounded(
        autojump_clock: Any) -> None:
    watches = WatchStreams()
    async with trio.open_nursery() as clock:
        await clock.start(watches.run)
        for _ in range(1000):  # watches opened and closed: their deadlines are not all kept
            watches.close(watches.open(60))
        assert len(watches._deadlines) <= 64 + 2
        kept = watches.open(30)
        assert not kept.cancel_called and watches.timed
        clock.cancel_scope.cancel()
    assert kept.cancel_called and not watches.timed  # a watch left open ends with the clock


async def test_an_event_that_comes_with_the_end_is_not_sent(autojump_clock: Any, waits: list[int]) -> None:
    """The watcher is woken by an event, and ended before it runs: the end wins, nothing is sent."""
    p = _projection()
    watches = WatchStreams()
    async with trio.open_nursery() as clock:
        await clock.start(watches.run)
        body = watch_body(p, watches)
        assert _names(await _first_while_waiting(p, body)) == ["cm-2"]
        seen: list[bytes] = []

        async def consume() -> None:
            seen.extend([chunk async for chunk in body])

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()  # waiting, without a scope
                p.store.apply(change(3))  # wakes it with cm-3 ...
                watches.end_all()  # ... ended before it runs
        assert seen == [] and waits[0] == 1 and not watches._ends
        clock.cancel_scope.cancel()


@pytest.mark.parametrize("ended", [False, True])
async def test_queued_events_are_taken_after_one_checkpoint(ended: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued events are taken after one checkpoint: what else comes then joins them (as many
    chunks as when a receive's own checkpoint did it); a watch ended during it sends nothing more."""
    p = _projection()
    watches = WatchStreams()
    body = watch_body(p, watches)
    assert _names(await _first_while_waiting(p, body)) == ["cm-2"]
    p.store.apply(change(3))
    real = trio.lowlevel.checkpoint

    async def meanwhile() -> None:
        p.store.apply(change(4))  # joins the chunk ...
        if ended:
            watches.end_all()  # ... unless the watch is ended meanwhile
        await real()

    monkeypatch.setattr(trio.lowlevel, "checkpoint", meanwhile)
    if ended:
        with pytest.raises(StopAsyncIteration):
            await body.__anext__()
        assert not watches._ends
    else:
        assert _names(await body.__anext__()) == ["cm-3", "cm-4"]
        await body.aclose()
