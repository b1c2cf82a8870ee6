"""The projection's change feeds for controllers: a subscription (``Projection.subscribe_changes``,
``Projection.feed``) is a bounded channel the fold sends to without waiting, so a change is dropped
when the channel is full; :class:`ChangeFeed` remembers that it was and has its controller resync
from the projection's state as soon as it has handled what was queued (client-go's reflector
relists after a watch error the same way), rather than at the next periodic resync."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from ._store import Change

_log = logging.getLogger("jetkube.projections")

Item = tuple[tuple[str, str, str], Change]

#: A change subscription's test (``Projection.subscribe_changes``): ((tenant, group, resource), change) -> send it.
ChangeFilter = Callable[[tuple[str, str, str], Change], bool]


class _Listener:
    """One change subscription (``Projection.subscribe_changes``): its channel, its filter, and what
    went wrong sending to it. :meth:`offer` runs in the fold and never raises: the fold of a batch
    is never stopped half-way by a subscriber."""

    __slots__ = ("accept", "dropped", "filter_errors", "on_drop", "send")

    def __init__(self, send: trio.MemorySendChannel[Any], accept: ChangeFilter | None,
                 on_drop: Callable[[], object] | None) -> None:
        self.send = send
        self.accept = accept
        self.on_drop = on_drop
        self.dropped = 0
        self.filter_errors = 0

    def offer(self, item: tuple[tuple[str, str, str], Change]) -> None:
        accept = self.accept
        if accept is not None:
            try:
                if not accept(*item):
                    return
            except Exception:  # noqa: BLE001 - a subscriber's bug must not stop the fold
                # Fail open: the subscriber makes its own tests on what it is sent.
                self.filter_errors += 1
                if self.filter_errors == 1:
                    _log.exception("a change filter (%r) raised on %s/%s; sending its changes when it raises "
                                   "(logged once per subscription)", accept, item[0], item[1].name)
        try:
            self.send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1  # the subscriber resyncs from state (see subscribe_changes)
            if self.on_drop is not None:
                try:
                    self.on_drop()
                except Exception:  # noqa: BLE001 - a subscriber's bug must not stop the fold
                    _log.exception("a change subscription's on_drop raised")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the subscriber is gone


async def follow_changes(changes: trio.MemoryReceiveChannel[tuple[tuple[str, str, str], Change]],
                         handle: Callable[[tuple[str, str, str], Change], object]) -> None:
    """Call ``handle`` with every change of a subscription, until its channel closes. ``async for``
    over a memory channel yields to the scheduler once per item; here the changes queued when the
    task wakes are taken together, up to ``FOLLOW_BATCH`` per scheduling round (so a burst is not
    one long step of the loop)."""
    async for item in changes:
        handle(*item)
        for _ in range(FOLLOW_BATCH - 1):
            try:
                item = changes.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break  # (a closed channel: the next receive ends the loop)
            handle(*item)


#: Changes :func:`follow_changes` hands on per scheduling round at most.
FOLLOW_BATCH = 64


#: What :meth:`ChangeFeed.lose` sends to wake a follower waiting on an empty channel (never handed on).
_LOST: tuple[tuple[str, str, str], Change | None] = (("", "", ""), None)


class ChangeFeed:
    """One controller's change feed, lossy when full, and the repair of a loss: :meth:`follow`
    hands every change to the controller and, after a loss (:meth:`lose`: a change dropped because
    the channel was full, here or upstream), calls its ``resync`` as soon as the channel is drained.
    The changes still queued then are older than the projection's state, so the resync comes after
    them (what it builds from the state is not overwritten by them); the changes dropped are in that
    state. One loss or many before the drain: one resync.

    Made by ``Projection.feed`` (the fold sends to it), or by a router that hands changes on from a
    feed of its own (:meth:`offer`; the tenancy controller's per-tenant routes)."""

    def __init__(self, max_queued: int) -> None:
        self._send, self.receive = trio.open_memory_channel[tuple[tuple[str, str, str], Change | None]](max_queued)
        self.lost = False  # changes lost since the last resync (cleared when it is made)
        self.dropped = 0  # changes :meth:`offer` could not send (a full channel)
        self.resyncs = 0  # resyncs made after a loss

    def offer(self, item: Item) -> bool:
        """Send ``item`` without waiting; False when it was not sent (then a full channel is a
        loss, repaired by a resync; a closed one has no follower left)."""
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1
            self.lost = True  # (no sentinel: the channel is full, the follower checks after each change)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def lose(self) -> None:
        """Changes were lost for this feed: the follower resyncs once it has handled what is queued.
        Cheap and never raises (the projection calls it in its fold)."""
        self.lost = True
        try:
            self._send.send_nowait(_LOST)  # wakes a follower waiting on an empty channel
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a full channel: the follower has changes to take, and checks after each

    async def follow(self, handle: Callable[[tuple[str, str, str], Change], object], resync: Callable[[], object],
                     *, name: str = "a controller") -> None:
        """Call ``handle`` with every change, and ``resync()`` after a loss once the channel is
        drained (see the class), until the channel closes. ``name`` is for the log."""
        receive = self.receive

        def on(key: tuple[str, str, str], ch: Change | None) -> None:
            if ch is not None:
                handle(key, ch)
            if self.lost and receive.statistics().current_buffer_used == 0:
                self.lost = False
                self.resyncs += 1
                _log.info("the change feed of %s dropped changes (channel full): resyncing", name)
                resync()

        await follow_changes(receive, on)  # type: ignore[arg-type]
