"""A watch response's body closed while it yields (gateway/_app.py ``_stream``, ``WatchEnd``): the
client gone while a chunk is written; the body is closed through the wrappers that close it
(metrics, request log, audit: each closes its inner body in a shielded, bounded scope). A cancel
scope held across the body's ``yield`` was then exited below those scopes: "Cancel scope stack
corrupted" (CI, test_audit_end). Also: the deadline and ``end_all`` still end a watch."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from gateway._app import WatchStreams, _stream


async def _lines(n: int | None = None) -> Any:
    i = 0
    while n is None or i < n:
        await trio.sleep(0.01)
        yield b'{"type":"ADDED"}\n'
        i += 1


async def _wrapped(body: Any) -> Any:
    """As the metrics, request-log and audit wrappers: close the inner body shielded, bounded."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await body.aclose()


async def test_closed_while_yielding_through_shielded_wrappers(autojump_clock: Any) -> None:
    watches = WatchStreams()
    outer = _wrapped(_wrapped(_stream(watches, _lines(), 60).response.iter))
    with trio.CancelScope() as client:
        async for _ in outer:  # a chunk is being written when the client goes away
            client.cancel()
            await trio.lowlevel.checkpoint()
    with trio.CancelScope(shield=True):
        await outer.aclose()  # no "Cancel scope stack corrupted"
    assert client.cancelled_caught
    assert not watches._ends  # closed: no longer among the open watches


async def test_a_watch_ends_at_its_deadline_and_at_shutdown(autojump_clock: Any) -> None:
    watches = WatchStreams()
    got = [c async for c in _stream(watches, _lines(), 1).response.iter]
    assert 90 <= len(got) <= 100 and not watches._ends  # about 1 s of events, then a clean end
    body = _stream(watches, _lines(), 60).response.iter
    n = 0
    async for _ in body:
        n += 1
        if n == 5:
            watches.end_all()  # shutdown while the body yields: the next wait ends it
    assert n == 5 and not watches._ends
    assert [c async for c in _stream(watches, _lines(), 60).response.iter] == []  # opened after: ends at once


async def test_a_live_watch_closed_while_yielding(autojump_clock: Any) -> None:
    """The same through a real watch (bench.watch_cost's projection), whose chunks are taken when
    queued and whose waits for its queue take no scope while ``WatchStreams.run`` keeps the deadlines."""
    from bench.watch_cost import NoLog, change, watch_body
    from projections import Projection, ProjectionSettings

    p = Projection(NoLog(), ProjectionSettings())  # type: ignore[arg-type]
    p.store.apply(change(1))
    watches = WatchStreams()
    async with trio.open_nursery() as clock:
        await clock.start(watches.run)
        outer = _wrapped(_wrapped(watch_body(p, watches)))

        async def write() -> None:
            for seq in range(2, 6):
                await trio.sleep(0.01)
                p.store.apply(change(seq))

        clock.start_soon(write)
        n = 0
        with trio.CancelScope() as client:
            async for _ in outer:  # the client goes away while the third chunk is written
                n += 1
                if n == 3:
                    client.cancel()
                    await trio.lowlevel.checkpoint()
        with trio.CancelScope(shield=True):
            await outer.aclose()
        assert client.cancelled_caught and n == 3 and not watches._ends
        clock.cancel_scope.cancel()
