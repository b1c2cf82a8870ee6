"""The projection: follows the log into a :class:`Store`; answers reads; serves watches.

``run`` is the only task that writes the store. Reads are synchronous lookups after an optional
bounded wait for the store to reach a sequence (the KEP-2340 consistent read: read the stream
head from the leader, wait until applied >= head).
"""

from __future__ import annotations

import base64
import collections
import heapq
import itertools
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, aclosing, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import NoReturn

import msgspec
import trio

from bus import (
    ANY_TENANT,
    BusError,
    Histogram,
    Key,
    Log,
    LogMessage,
    LogReader,
    all_filter,
    object_subject,
    resource_filter,
)
from kinds import CLUSTER_ANNOTATION

from ._crds import CRD_KEY, CrdView
from ._errors import BadContinue, ContinueExpired, ResourceVersionTooLarge, TooOldResourceVersion
from ._feed import ChangeFeed, ChangeFilter, _Listener
from ._history import check_retained, check_still_retained, rows_at, rows_indexed
from ._history import decode_message as _decode
from ._rbac import RBAC_GROUP, RbacIndex
from ._snapshot import Snapshots, SnapshotSettings, rebuild_views
from ._store import ADDED, DELETED, INDEX_MAX_REVISIONS, Change, Entry, ResourceState, Store
from ._watch import BATCH, BOOKMARK, WatchBatches, WatchFilter, WatchStream

_log = logging.getLogger("jetkube.projections")


_NO_SPAN = nullcontext()  # reusable: holds no state

def _record_horizon(data: bytes) -> int:
    """H, the highest purged tombstone, of a compaction point record (its ``seq`` when it has none,
    as ``Log.compaction_record`` reads an old record); 0 if unreadable."""
    try:
        doc = json.loads(data)
        return int(doc.get("tombstones", doc["seq"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0


def _record_seq(data: bytes) -> int:
    """The sequence of a compaction point record (bus ``Log.raise_compaction_point``); 0 if unreadable."""
    try:
        return int(json.loads(data)["seq"])
    except (ValueError, KeyError, TypeError):
        return 0


@dataclass(frozen=True)
class ListResult:
    items: list[bytes]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass(frozen=True)
class ProjectionSettings:
    consistent_wait_s: float = 3.0  # the cacher's blockTimeout
    ring_size: int = 10_000  # recent changes kept per resource for watch resume
    watch_queue: int = 10_000  # events one watcher may fall behind before it is cut off
    bookmark_interval_s: float = 60.0
    reader_batch: int = 1024
    #: The follower applies a batch from the reader in slices of at most this many messages, with a
    #: checkpoint between them: a catch-up batch (up to ``reader_batch``, or more after a pause) is
    #: not one long step that every request on the loop waits behind. Waiters are released per slice.
    apply_slice: int = 64
    history_objects: int = 10_000  # objects whose last state a watch read from the log remembers
    stall_check_s: float = 1.5  # the stall detector looks this often ...
    stall_checks: int = 2  # ... and resubscribes after this many checks without progress behind the head
    #: Stop at this sequence (``jetkube serve --read-only --at RV``): the state as it was then, frozen;
    #: the head of every consistent read is at most this. 0: follow the log forever.
    stop_at: int = 0
    #: Answer Exact reads older than the rings from the store's revision index (projections/_revindex.py);
    #: False: ask the log which messages hold the state (projections/_history.rows_at).
    revision_index: bool = True
    #: The revision indexes' bound in revisions, all resources together (projections/_store.py
    #: ``Store.index_max_revisions``): past it, Exact reads of the oldest versions take the log's path.
    revision_index_max: int = INDEX_MAX_REVISIONS
    #: Start from the newest valid snapshot and write them in the background (projections/_snapshot.py);
    #: None: fold from sequence 1 and write none.
    snapshots: SnapshotSettings | None = None


class Projection:
    def __init__(self, log: Log, settings: ProjectionSettings = ProjectionSettings()) -> None:
        self.log = log
        self.settings = settings
        self.store = Store(log.prefix, ring_size=settings.ring_size,
                           index_max_revisions=settings.revision_index_max)
        self._waiters: list[tuple[int, int, trio.Event]] = []
        self._tie = itertools.count()
        self.ready = trio.Event()
        #: Set when a revision index trim has steps left (``_trim_revisions`` does them).
        self._trim_wanted = trio.Event()
        #: False from a reconnect to the log until the store has caught up with the head again.
        self.following = True
        #: Time consistent reads spend reading the head and waiting for it (KEP-2340's figure).
        self.consistent_wait = Histogram((0.001, 0.005, 0.01, 0.025, 0.05, 0.11, 0.25, 0.5, 1.0, 3.0))
        #: Set when tracing is on: opens a span around each consistent-read wait, a child of the
        #: waiting task's current span (the request's, or an actor stage's); None: off.
        self.trace_wait: Callable[[], AbstractContextManager[object]] | None = None
        #: Watches started, by where their first events came from: the current state (no
        #: resourceVersion), the ring of recent changes, or the log (older than the ring).
        self.watch_starts = {"state": 0, "ring": 0, "log": 0}
        #: Exact LISTs (and pages of them), by where they were answered from: the ring of recent changes,
        #: the revision index + the log's messages it names, or the log alone.
        self.exact_reads = {"ring": 0, "index": 0, "log": 0}
        self.start_head = 0
        #: Times the stall detector replaced the log reader.
        self.stalls = 0
        self._reading = trio.CancelScope()
        #: Change subscriptions (``subscribe_changes``): each channel with the test of what it is sent.
        self._listeners: list[_Listener] = []
        self._feeds: list[ChangeFeed] = []  # (those of :meth:`feed`, also among the listeners)
        #: Roles, ClusterRoles and bindings indexed by subject: applied with the store, before
        #: waiters for a sequence are released (see _rbac).
        self.rbac = RbacIndex()
        #: CustomResourceDefinitions, and the kinds the established ones define (see _crds).
        self.crds = CrdView()
        #: The log's compaction point as applied (actors/_retention.py records it before purging):
        #: a watch from below it is 410 even when the ring still holds its events, as on every gateway.
        self.compacted = 0
        self._compaction_subject = log.compaction_subject
        #: The tombstone horizon H this store has accounted for (see _forget_purged), and whether the
        #: reader skipped a sequence since (purged messages: it lagged behind a purge).
        self.tombstones = 0
        self._gap = False
        #: Snapshots of the store (see _snapshot); None when off.
        self.snapshots = None if settings.snapshots is None else Snapshots(log, settings.snapshots)
        #: The last start: seconds from ``run`` to caught up, and the events the log was folded from.
        self.start_s = 0.0
        self.start_from = 0

    # ---- following the log ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Follow the log forever; ``started`` once caught up with the head captured at start.

        The reader rebuilds its consumer by itself after a reconnect; if it fails for good (e.g. the
        stream vanished and came back), a new one resumes from the last applied sequence + 1.
        """
        t0 = trio.current_time()
        snaps = self.snapshots
        # The tombstone horizon before reading anything (see _forget_purged).
        while True:
            try:
                _, horizon, _ = await self.log.compaction_record()
                self.tombstones = horizon
                break
            except (BusError, trio.TooSlowError) as e:
                _log.warning("reading the compaction record failed: %s", e)
                await trio.sleep(0.25)  # backoff against a log that is still starting
        # Without a valid snapshot the log is folded from sequence 1, as without snapshots.
        if snaps is not None and snaps.settings.load and not self.store.applied and await snaps.load(self.store):
            rebuild_views(self.store, self.rbac, self.crds)
            # The compaction point's record may lie at or below the snapshot's sequence: the
            # fold from the snapshot never sees it, so it is read from the log once here.
            while True:
                try:
                    point, _ = await self.log.compaction_point()
                    break
                except (BusError, trio.TooSlowError) as e:
                    _log.warning("reading the compaction point failed: %s", e)
                    await trio.sleep(0.25)  # backoff against a log that is still starting
            self.compacted = max(self.compacted, point)
            self.store.trim_revisions(point)  # (a carried revision index: what reads at or above it need)
            if self.store.trimming:
                self._trim_wanted.set()
        self.start_from = self.store.applied
        # A cluster that is (re)starting may answer the head but not yet create consumers (the
        # stream still electing its leader): retry both with backoff; the caller bounds the start.
        while True:
            try:
                self.start_head = await self.head()
                break
            except (BusError, trio.TooSlowError) as e:
                _log.warning("reading the log head failed: %s", e)
                await trio.sleep(0.25)  # backoff against a log that is still starting
        reader = await self._reopen_reader(0.0)
        started = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._bookmark_ticker)
            nursery.start_soon(self._catch_up_after_reconnects)
            nursery.start_soon(self._trim_revisions)
            if self.start_head <= self.store.applied:
                self._started(nursery, t0)
                task_status.started()
                started = True
            nursery.start_soon(self._detect_stalls)
            delay = 0.1
            while True:
                with trio.CancelScope() as self._reading:
                    try:
                        while True:
                            batch = await reader.next_batch()
                            delay = 0.1
                            stop = self.settings.stop_at
                            if stop and batch[-1].seq >= stop:
                                await self._apply_sliced([m for m in batch if m.seq <= stop])
                                self._freeze(stop)
                                if not started:
                                    self._started(nursery, t0)
                                    task_status.started()
                                    started = True
                                await trio.sleep_forever()  # frozen at ``stop_at``: nothing more to apply
                            if started:
                                await self._apply(batch)
                            else:
                                await self._apply_sliced(batch)
                            if not started and self.store.applied >= self.start_head:
                                await self._forget_purged(horizon)
                                self._gap = False
                                self._started(nursery, t0)
                                task_status.started()
                                started = True
                    except BusError as e:
                        _log.warning("log reader failed (%s); resuming after sequence %d", e, self.store.applied)
                    finally:
                        await reader.aclose()
                reader = await self._reopen_reader(delay)
                delay = min(delay * 2, 5.0)

    async def _forget_purged(self, horizon: int) -> None:
        """Once a start caught up, before anything reads the store: history retention may have purged
        tombstones (and everything before them on their subjects) while the fold was reading, ahead of
        it, after it had applied an earlier revision of their objects; such an object was deleted
        and the log has no message of it left. When the compaction record's tombstone horizon H moved
        past ``horizon`` (the one read before the start), every object at or below the new H whose
        subject the log no longer holds is dropped. (Any other purge leaves the object's last
        revision, which the fold applies.) A failure to look is logged: the start goes on."""
        try:
            _, h, _ = await self.log.compaction_record()
            if h <= horizon:
                return
            present = await self.log.subjects(all_filter(self.log.prefix))
        except (BusError, trio.TooSlowError) as e:
            _log.warning("checking for objects purged during the start failed: %s", e)
            return
        self.tombstones = max(self.tombstones, h)
        self._drop_absent(h, present, 0)

    async def _apply(self, batch: list[LogMessage]) -> None:
        """:meth:`apply_batch` for a store that is serving. The same race as a start's (see
        _forget_purged) while running: a reader that lagged behind a purge never sees the purged
        tombstones. It sees the compaction record, appended before the purge and after them, and it
        sees the gap the purge left in the sequences. So when a record raises H after a gap, the
        objects at or below H whose subject the log no longer holds are dropped first, with a
        DELETED change at the record's sequence for their watchers; then the record is applied."""
        nxt = self.store.applied + 1
        if not self._gap and batch[0].seq == nxt and batch[-1].seq - nxt + 1 == len(batch):
            # No sequence skipped since the last look (the usual case, O(1)): nothing was missed.
            # ``tombstones`` may stay behind a record here: the next look after a gap then looks.
            await self._apply_sliced(batch)
            return
        cs = self._compaction_subject
        start = 0
        for i, m in enumerate(batch):
            if m.seq != nxt:
                self._gap = True
            nxt = m.seq + 1
            if m.subject == cs and (h := _record_horizon(m.data)) > self.tombstones:
                if not self._gap:
                    self.tombstones = h  # read every message since the last look: nothing was missed
                    continue
                await self._apply_sliced(batch[start:i])
                start = i
                try:
                    present = await self.log.subjects(all_filter(self.log.prefix))
                except (BusError, trio.TooSlowError) as e:
                    _log.warning("checking for objects whose tombstone was purged failed: %s", e)
                    continue  # still a gap: the next record looks again
                self._drop_absent(h, present, m.seq)
                self.tombstones, self._gap = h, False
        await self._apply_sliced(batch[start:] if start else batch)

    def _drop_absent(self, h: int, present: dict[str, int], at: int) -> None:
        """Drop the objects last applied at or below ``h`` whose subject is not in ``present``
        (``Store.forget``, at ``at``), from the RBAC and CRD views and for the change listeners too."""
        prefix = self.log.prefix
        gone = [Key(t, g, r, ns, n) for (t, g, r), st in self.store.resources.items()
                for ns, n, e in st.iter_entries(None)
                if e.seq <= h and object_subject(prefix, Key(t, g, r, ns, n)) not in present]
        for key in gone:
            self.store.forget(key, at=at)
            if key.group == RBAC_GROUP:
                self.rbac.apply(key.tenant, key.resource, key.namespace, key.name, None)
            elif (key.group, key.resource) == CRD_KEY:
                self.crds.apply(key.tenant, key.name, None)
            ring = self.store.peek(key.tenant, key.group, key.resource).ring
            if at and self._listeners and ring and ring[-1].seq == at and ring[-1].name == key.name:
                item = ((key.tenant, key.group, key.resource), ring[-1])
                for lst in self._listeners:
                    lst.offer(item)
        if gone:
            _log.info("%d objects whose tombstone history retention purged before this store read it dropped%s",
                      len(gone), f" at sequence {at}" if at else " (start)")

    async def head(self) -> int:
        """The log's head, or ``stop_at`` when this projection stops there."""
        head = await self.log.head()
        return min(head, self.settings.stop_at) if self.settings.stop_at else head

    def _freeze(self, seq: int) -> None:
        """The state at ``seq`` is complete (the reader passed it): its version is ``seq``."""
        self.store.applied = max(self.store.applied, seq)
        w = self._waiters
        while w and w[0][0] <= self.store.applied:
            heapq.heappop(w)[2].set()

    def _started(self, nursery: trio.Nursery, t0: float) -> None:
        self.start_s = trio.current_time() - t0
        _log.info("projection caught up with sequence %d in %.2fs (from sequence %d)", self.store.applied,
                  self.start_s, self.start_from)
        self.ready.set()
        if self.snapshots is not None and self.snapshots.settings.write:
            nursery.start_soon(self.snapshots.run, lambda: self.store)

    async def _detect_stalls(self) -> NoReturn:
        """The stall detector: when the store has not moved for ``stall_checks`` checks in a row while
        the stream's head is beyond it, the reader is replaced by a new one from the last applied
        sequence + 1. The reader recovers from the failures it can see (gaps, deleted consumers,
        silence, reconnects); this catches the ones it cannot, e.g. a consumer that still answers
        heartbeats but delivers nothing after its node left the cluster."""
        last, strikes = -1, 0
        while True:
            await trio.sleep(self.settings.stall_check_s)
            applied = self.store.applied
            if applied != last:
                last, strikes = applied, 0
                continue
            head = -1
            with trio.move_on_after(self.settings.stall_check_s):
                try:
                    head = await self.head()
                except BusError:
                    pass  # the log is down: nothing to compare; the reader recovers on reconnect
            strikes = strikes + 1 if head > applied else 0
            if strikes >= self.settings.stall_checks:
                _log.warning("the log reader stalled at sequence %d while the stream is at %d: resubscribing",
                             applied, head)
                self.stalls += 1
                self._reading.cancel()
                strikes = 0

    async def _catch_up_after_reconnects(self) -> NoReturn:
        """After every reconnect (the log may have been restarted), ``following`` is false until the
        store has applied the head read from the log: readiness waits for the projection, too."""
        bridge = self.log.bridge
        seen = bridge.connections
        while True:
            await bridge.wait_connections(seen + 1)
            seen = bridge.connections
            self.following = False
            while not self.following:
                try:
                    await self.wait_for(await self.head())
                    self.following = True
                except (BusError, ResourceVersionTooLarge) as e:
                    _log.info("catching up after a reconnect: %s", e)
                    await trio.sleep(0.2)  # backoff against a log that is still starting

    async def _reopen_reader(self, delay: float) -> LogReader:
        while True:
            await trio.sleep(delay)  # backoff between attempts against a log that is down
            try:
                return await self.log.open_reader(all_filter(self.log.prefix), self.store.applied + 1,
                                                  batch=self.settings.reader_batch)
            except (BusError, trio.TooSlowError) as e:
                _log.warning("reopening the log reader failed: %s", e)
                delay = min(max(delay * 2, 0.1), 5.0)

    async def _apply_sliced(self, batch: list[LogMessage]) -> None:
        """:meth:`apply_batch` in slices of ``apply_slice`` messages with a checkpoint between them. The
        store is whole at every slice's end (its ``applied`` is the slice's last sequence), so a read
        or a watch registered between slices sees a state the log had. A cancellation between slices
        (the stall detector replacing the reader) loses nothing: the next reader starts after
        ``applied``."""
        n = self.settings.apply_slice
        if len(batch) <= n:
            self.apply_batch(batch)
            return
        for i in range(0, len(batch), n):
            if i:
                await trio.lowlevel.checkpoint()
            self.apply_batch(batch[i:i + n])

    def apply_batch(self, batch: list[LogMessage]) -> None:
        store = self.store
        rbac = self.rbac
        for m in batch:
            applied = store.apply(m)
            if applied is None:
                if m.subject == self._compaction_subject:
                    point = _record_seq(m.data)
                    if point > self.compacted:
                        self.compacted = point
                        self.store.trim_revisions(point)
                continue
            if applied[0][1] == RBAC_GROUP:
                (tenant, _, resource), ch = applied
                rbac.apply(tenant, resource, ch.namespace, ch.name, None if ch.type == DELETED else ch.entry.data)
            elif applied is not None and applied[0][1:] == CRD_KEY:
                self.crds.apply(applied[0][0], applied[1].name, None if applied[1].type == DELETED
                                else applied[1].entry.data)
            if applied is not None and self._listeners:
                for lst in self._listeners:
                    # A listener is sent only what it acts on: one not sent a change is not woken for it
                    # (a task step per change and listener; seven listeners on every change before).
                    lst.offer(applied)
        applied = store.applied
        w = self._waiters
        while w and w[0][0] <= applied:
            heapq.heappop(w)[2].set()
        if store.trimming:
            self._trim_wanted.set()

    async def _trim_revisions(self) -> NoReturn:
        """Finish the revision indexes' trims (projections/_store.py ``Store.trim_step``): one bounded
        step at a time, a checkpoint between steps, so a trim of many objects is never one long step."""
        while True:
            await self._trim_wanted.wait()
            self._trim_wanted = trio.Event()
            while self.store.trimming:
                await trio.lowlevel.checkpoint()
                self.store.trim_step()

    async def _bookmark_ticker(self) -> NoReturn:
        while True:
            await trio.sleep(self.settings.bookmark_interval_s)
            self.store.bookmark_all()

    def subscribe_changes(self, max_queued: int = 10_000, *, accept: ChangeFilter | None = None,
                          on_drop: Callable[[], object] | None = None,
                          ) -> trio.MemoryReceiveChannel[tuple[tuple[str, str, str], Change]]:
        """((tenant, group, resource), change) as applied. Lossy when full: a subscriber must
        resync from state (controllers use :meth:`feed`, which does as soon as it is drained).

        ``accept((tenant, group, resource), change)``: whether to send a change (None: every one),
        called as the change is applied, so on the store's state then; it must accept at least what
        the subscriber acts on (a superset of its own tests, which it still makes). Not sending
        what a subscriber would drop spares its task a scheduling round per change. A filter that
        raises fails open: the change is sent, the fold goes on, and the error is logged (once per
        subscription; ``filter_errors`` counts them all).

        ``on_drop()``: called in the fold when a change accepted for this subscription was not sent
        because its channel was full (e.g. to resync once the channel is drained); it must be cheap
        (set a flag). ``dropped`` counts those changes."""
        send, recv = trio.open_memory_channel[tuple[tuple[str, str, str], Change]](max_queued)
        self._listeners.append(_Listener(send, accept, on_drop))
        return recv

    def feed(self, max_queued: int = 10_000, *, accept: ChangeFilter | None = None) -> ChangeFeed:
        """A controller's subscription (as :meth:`subscribe_changes`, ``accept`` alike) whose losses
        are repaired: :meth:`ChangeFeed.follow` resyncs the controller once it has handled what was
        queued when a change was dropped, not at its next periodic resync."""
        feed = ChangeFeed(max_queued)
        self._listeners.append(_Listener(feed._send, accept, feed.lose))
        self._feeds.append(feed)
        return feed

    @property
    def feed_resyncs(self) -> int:
        """Resyncs the controllers' feeds made after a loss (all feeds)."""
        return sum(f.resyncs for f in self._feeds)

    @property
    def feed_drops(self) -> int:
        """Changes not sent to a subscription because its channel was full (all subscriptions)."""
        return sum(lst.dropped for lst in self._listeners)

    @property
    def filter_errors(self) -> int:
        """Times a subscription's ``accept`` raised (the change was sent)."""
        return sum(lst.filter_errors for lst in self._listeners)

    # ---- consistency ------------------------------------------------------------------------------

    async def wait_for(self, seq: int, timeout_s: float | None = None) -> None:
        """Wait until the store has applied ``seq``; raise ResourceVersionTooLarge after the bound."""
        if self.store.applied >= seq:
            return
        ev = trio.Event()
        heapq.heappush(self._waiters, (seq, next(self._tie), ev))
        with trio.move_on_after(self.settings.consistent_wait_s if timeout_s is None else timeout_s):
            await ev.wait()
            return
        raise ResourceVersionTooLarge(seq, self.store.applied)

    async def wait_for_entry(self, key: Key, timeout_s: float) -> Entry | None:
        """The entry of ``key`` once the store holds it, waking at each sequence applied, or None
        after ``timeout_s``: for an object a controller is about to write (a new namespace's
        default ServiceAccount, which kube's ServiceAccount plugin waits for too)."""
        with trio.move_on_after(timeout_s):
            while (entry := self.store.get(key)) is None:
                await self.wait_for(self.store.applied + 1, math.inf)
            return entry
        return self.store.get(key)

    async def consistent(self) -> int:
        """Wait until the store reflects the log head as of now; return the applied sequence."""
        t0 = trio.current_time()
        try:
            with _NO_SPAN if self.trace_wait is None else self.trace_wait():
                await self.wait_for(await self.head())
        finally:
            self.consistent_wait.observe(trio.current_time() - t0)
        return self.store.applied

    # ---- reads ------------------------------------------------------------------------------------

    def state(self, tenant: str, group: str, resource: str) -> ResourceState:
        """For reading: allocates nothing (see ``Store.peek``)."""
        return self.store.peek(tenant, group, resource)

    def get(self, key: Key) -> Entry | None:
        return self.store.get(key)

    def list(self, tenant: str, group: str, resource: str, flt: WatchFilter, *, limit: int = 0,
             continue_token: str = "") -> ListResult:
        """The current state, filtered; pages of ``limit`` (0 = all) with continue tokens.

        A continue token pins the list's resourceVersion; a later page is served from memory
        while the resource has not changed since, otherwise the caller must read history
        (:meth:`list_at`), which :class:`ContinueNeedsHistory` signals.
        """
        st = self.store.peek(tenant, group, resource)
        rv = self.store.applied
        start_after = ""
        if continue_token:
            rv, start_after = decode_continue(continue_token)
            last = st.ring[-1].seq if st.ring else st.ring_floor
            if last > rv:
                raise ContinueNeedsHistory(rv, start_after)
        return _paginate(((ns, n, e.data, e) for ns, n, e in st.iter_entries(flt.namespace)), flt, limit,
                         start_after, rv)

    async def get_at(self, key: Key, seq: int) -> Entry | None:
        """The object as it was at ``seq`` (None: absent then), from the log: one direct get."""
        await check_retained(self.log, seq)
        store = self.store
        st = store.resources.get((key.tenant, key.group, key.resource))
        if st is not None and self.settings.revision_index and store.applied >= seq >= st.revs.floor:
            # The revision index names the message (projections/_revindex.py): no read when the current
            # entry is it, else a direct get by sequence (no walk of the subject's history).
            entry = st.get(key.namespace, key.name)
            if entry is None or entry.seq > seq:
                at = st.revs.at(key.namespace, key.name, seq)
                got = await self.log.message_and_previous(at) if at else None
                if got is not None:
                    entry = _decode(self.log.prefix, got[0])[1]
                else:  # absent then, or (when ``at``) purged meanwhile: then the log's way decides
                    entry = await self._get_from_log(key, seq) if at else None
            await check_still_retained(self.log, seq)
            return entry
        entry = await self._get_from_log(key, seq)
        await check_still_retained(self.log, seq)
        return entry

    async def _get_from_log(self, key: Key, seq: int) -> Entry | None:
        m = await self.log.last_message_at(self.log.subject(key), seq)
        if m is None:
            return None
        _, entry, kind = _decode(self.log.prefix, m)
        return None if kind == DELETED else entry

    async def list_at(self, tenant: str, group: str, resource: str, flt: WatchFilter, seq: int, *,
                      limit: int = 0, start_after: str = "") -> ListResult:
        """The state exactly as of ``seq`` (resourceVersionMatch=Exact, and continue tokens of pages
        older than the ring), read from the log's per-subject history (projections/_history.py): one
        point-in-time read per page of subjects, never a fold from sequence 1."""
        await check_retained(self.log, seq)
        recent = self._list_from_ring(tenant, group, resource, flt, seq, limit=limit, start_after=start_after)
        if recent is not None:
            self.exact_reads["ring"] += 1
            return recent
        filter_subject = resource_filter(self.log.prefix, tenant, group, resource, flt.namespace)
        # The filter subject already selects the namespace: without selectors every row is kept.
        keep = None if flt.labels.empty and flt.fields.empty else flt.matches
        store = self.store
        st = store.resources.get((tenant, group, resource))
        got = None
        if st is not None and self.settings.revision_index and store.applied >= seq >= st.revs.floor:
            got = await rows_indexed(self.log, filter_subject, st, seq, namespace=flt.namespace, start_after=start_after,
                                     limit=limit, keep=keep, share=st.revs.density(store.applied))
        if got is not None:
            self.exact_reads["index"] += 1
            rows, more = got
        else:
            self.exact_reads["log"] += 1
            # An entry written at or before ``seq`` is the state at ``seq`` (projections/_history.states_at),
            # once this projection has applied ``seq``: entries only move forward.
            current = store.peek(tenant, group, resource).get if store.applied >= seq else None
            rows, more = await rows_at(self.log, filter_subject, seq, start_after=start_after, limit=limit,
                                       keep=keep, current=current)
        await check_still_retained(self.log, seq)
        items = [e.data for _, e in rows]
        if more and rows:
            return ListResult(items, seq, encode_continue(seq, rows[-1][0]))
        return ListResult(items, seq)

    def _list_from_ring(self, tenant: str, group: str, resource: str, flt: WatchFilter, seq: int, *,
                        limit: int, start_after: str) -> ListResult | None:
        """The state at ``seq`` from memory, when the resource's ring holds every change after it
        (None otherwise): the current objects, with each one changed since replaced by the state
        before its first change after ``seq`` (absent when that change created it). Synchronous, so
        the store does not move under it; costs the ring's changes after ``seq`` plus a current LIST."""
        store = self.store
        st = store.resources.get((tenant, group, resource))
        if st is None or store.applied < seq or seq < st.ring_floor:
            return None  # a resource without a state here may have been pruned: its ring is gone
        before: dict[tuple[str, str], Entry | None] = {}
        for ch in reversed(st.ring):  # newest first: the oldest change after ``seq`` is written last
            if ch.seq <= seq:
                break
            before[(ch.namespace, ch.name)] = ch.prev
        if not before:
            rows = ((ns, n, e.data, e) for ns, n, e in st.iter_entries(flt.namespace))
            return _paginate(rows, flt, limit, start_after, seq)
        merged = [(ns, n, e) for ns, n, e in st.iter_entries(flt.namespace) if (ns, n) not in before]
        merged += [(ns, n, e) for (ns, n), e in before.items()
                   if e is not None and (flt.namespace is None or ns == flt.namespace)]
        merged.sort(key=lambda r: (r[0], r[1]))
        return _paginate(((ns, n, e.data, e) for ns, n, e in merged), flt, limit, start_after, seq)

    # ---- watches ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(self, tenant: str, group: str, resource: str, flt: WatchFilter, *,
                    resource_version: int | None, send_initial: bool, bookmarks: bool) -> AsyncIterator[WatchBatches]:
        """Open a watch; iterate batches of ``(type, Change | seq)`` pairs (or take one already
        queued with ``WatchBatches.ready``).

        ``resource_version`` None (or 0) starts with synthetic ADDED events for the current
        state; N delivers exactly the changes after N, from the ring when it still holds them,
        otherwise from the log. ``send_initial`` adds the initial-events-end bookmark (as
        ``("BOOKMARK_END", seq)``). The stream ends when the watcher falls behind (check
        ``overflowed``) or when the caller leaves the block.
        """
        if tenant == ANY_TENANT:
            async with self._watch_tenants(group, resource, flt, resource_version=resource_version,
                                           send_initial=send_initial, bookmarks=bookmarks) as gen:
                yield gen
            return
        st = self.store.resource(tenant, group, resource)
        stream = WatchStream(flt, bookmarks=bookmarks, max_queued=self.settings.watch_queue)
        if resource_version:
            await self.wait_for(resource_version)
            if resource_version < self.compacted:
                raise TooOldResourceVersion(resource_version, self.compacted)
        gen = self._iterate(st, stream, tenant, group, resource, resource_version, send_initial)
        try:
            yield WatchBatches(gen, stream)
        finally:
            st.watchers.discard(stream)
            stream.close()
            await gen.aclose()

    @asynccontextmanager
    async def _watch_tenants(self, group: str, resource: str, flt: WatchFilter, *, resource_version: int | None,
                             send_initial: bool, bookmarks: bool) -> AsyncIterator[WatchBatches]:
        """:meth:`watch` across every tenant (kcp's ``/clusters/*/``): each object carries its
        tenant in the ``tenancy.jetkube.io/cluster`` annotation. A resourceVersion older than a ring
        holds (e.g. from before the snapshot this projection started from) is served from the log,
        every tenant's subjects in one read, then from the rings, as a single tenant's watch is."""
        stream = _TenantsStream(flt, bookmarks=bookmarks, max_queued=self.settings.watch_queue)
        if resource_version:
            await self.wait_for(resource_version)
            if resource_version < self.compacted:
                raise TooOldResourceVersion(resource_version, self.compacted)
        chunk = BATCH

        def states() -> list[tuple[str, ResourceState]]:
            return [(t, st) for (t, g, r), st in self.store.resources.items() if (g, r) == (group, resource)]

        async def gen() -> AsyncIterator[list[tuple[str, object]]]:
            first: list[tuple[str, object]] = []
            if not resource_version:
                self.watch_starts["state"] += 1
                for t, st in states():
                    first += [(ADDED, _in_tenant(t, Change(e.seq, ADDED, ns, n, e, None)))
                              for ns, n, e in st.iter_entries(flt.namespace) if flt.matches(ns, n, e)]
                at = self.store.applied
            else:
                after = resource_version
                # The rings' floor; resources first seen later start at the snapshot's sequence or the last
                # prune (a deleted tenant's changes before it are in no ring).
                floor = max([st.ring_floor for _, st in states()] + [self.store.ring_floor])
                self.watch_starts["log" if after < floor else "ring"] += 1
                while after < floor:
                    async with aclosing(self._log_batches(stream, ANY_TENANT, group, resource, after,
                                                          chunk)) as batches:
                        async for after, batch in batches:
                            if batch:
                                yield batch
                    floor = max([st.ring_floor for _, st in states()] + [self.store.ring_floor])
                # From here to the registration, no checkpoint: nothing is missed or repeated.
                backlog: list[tuple[int, str, Change]] = []
                for t, st in states():
                    backlog += [(ch.seq, t, ch) for ch in st.changes_after(after)]
                for _, t, ch in sorted(backlog, key=lambda x: x[0]):
                    ty = stream.classify(ch)
                    if ty is not None:
                        first.append((ty, _in_tenant(t, ch)))
                at = max(after, self.store.applied)
            self.store.cross.setdefault((group, resource), set()).add(stream)
            if send_initial:
                first.append(("BOOKMARK_END", at))
            for i in range(0, len(first), chunk):
                yield first[i:i + chunk]
            stream.live = True
            receive = stream.receive
            while True:
                try:
                    first_item = await receive.receive()
                except trio.EndOfChannel:
                    break
                yield stream.batch(first_item)
            if stream.overflowed:
                yield [("OVERFLOW", self.store.applied)]

        it = gen()
        try:
            yield WatchBatches(it, stream)
        finally:
            watchers = self.store.cross.get((group, resource))
            if watchers is not None:
                watchers.discard(stream)
                if not watchers:
                    del self.store.cross[(group, resource)]
            stream.close()
            await it.aclose()

    async def _iterate(self, st: ResourceState, stream: WatchStream, tenant: str, group: str, resource: str,
                       rv: int | None, send_initial: bool) -> AsyncIterator[list[tuple[str, object]]]:
        """Batches of ``(type, Change | seq)``: everything available at once goes out together, so a
        busy watcher costs one write per batch, not one per event."""
        chunk = BATCH
        starts = self.watch_starts
        if not rv:
            starts["state"] += 1
            # Snapshot and registration with no checkpoint between them: nothing is missed.
            initial: list[tuple[str, object]] = [
                (ADDED, Change(e.seq, ADDED, ns, n, e, None)) for ns, n, e in st.iter_entries(stream.filter.namespace)
                if stream.filter.matches(ns, n, e)]
            at = self.store.applied
            st.watchers.add(stream)
            if send_initial:
                initial.append(("BOOKMARK_END", at))
            for i in range(0, len(initial), chunk):
                yield initial[i:i + chunk]
        else:
            after = rv
            starts["log" if after < st.ring_floor else "ring"] += 1
            while after < st.ring_floor:
                async with aclosing(self._log_batches(stream, tenant, group, resource, after, chunk)) as batches:
                    async for after, batch in batches:
                        if batch:
                            yield batch
            backlog: list[tuple[str, object]] = []
            for ch in st.changes_after(after):
                t = stream.classify(ch)
                if t is not None:
                    backlog.append((t, ch))
            st.watchers.add(stream)
            if send_initial:
                backlog.append(("BOOKMARK_END", max(after, self.store.applied)))
            for i in range(0, len(backlog), chunk):
                yield backlog[i:i + chunk]
        stream.live = True  # (from here, what it is sent is its queue alone: WatchStream.ready)
        receive = stream.receive
        while True:
            try:
                first = await receive.receive()
            except trio.EndOfChannel:
                break
            yield stream.batch(first)
        if stream.overflowed:
            yield [("OVERFLOW", self.store.applied)]

    async def _log_batches(self, stream: WatchStream, tenant: str, group: str, resource: str, after: int,
                           chunk: int) -> AsyncIterator[tuple[int, list[tuple[str, object]]]]:
        """:meth:`_from_log` in batches of at most ``chunk`` changes, each with the sequence
        everything up to which it delivers; a batch ends early when the log says how far it has
        read, and the last (possibly empty) batch carries where the read ended."""
        async with aclosing(self._from_log(stream, tenant, group, resource, after)) as from_log:
            pending: list[tuple[str, object]] = []
            async for item in from_log:
                if isinstance(item, int):
                    after = item
                else:
                    after = item[1].seq
                    pending.append(item)
                if len(pending) >= chunk or (pending and isinstance(item, int)):
                    yield after, pending
                    pending = []
            yield after, pending

    async def _from_log(self, stream: WatchStream, tenant: str, group: str, resource: str,
                        after: int) -> AsyncIterator[tuple[str, Change] | int]:
        """Changes after ``after`` read from the log, then the sequence everything up to which
        has been delivered (yielded as a bare int)."""
        state = await self.log.stream_state()
        first = int(state.get("first_seq", 1))
        point, _ = await self.log.compaction_point()
        if point and after < point:  # history retention purged revisions below it (actors/_retention.py)
            raise TooOldResourceVersion(after, point)
        if not point and after < first - 1:
            raise TooOldResourceVersion(after, first)
        target = self.store.applied
        reader = await self.log.open_reader(
            resource_filter(self.log.prefix, tenant, group, resource, stream.filter.namespace), after + 1,
            batch=self.settings.reader_batch)
        flt = stream.filter
        # Selectors classify on the state before each change (kube's prevObject), which the log
        # gives as the subject's previous message: remembered once seen in this read, fetched for
        # the others. Most recently changed last; at most ``history_objects`` remembered.
        need_prev = not (flt.labels.empty and flt.fields.empty)
        known: collections.OrderedDict[str, Entry | None] = collections.OrderedDict()
        try:
            while not (reader.pending == 0 and reader.buffered == 0):
                batch = await reader.next_batch()
                if need_prev:
                    await self._states_before(known, batch)
                for m in batch:
                    if m.seq > target:
                        await check_still_retained(self.log, after)  # no purge began while reading
                        yield target
                        return
                    key, entry, kind = _decode(self.log.prefix, m)
                    change = Change(m.seq, kind, key.namespace, key.name, entry, known.pop(m.subject, None))
                    if need_prev:
                        known[m.subject] = None if kind == DELETED else entry
                    t = stream.classify(change)
                    if t is None:
                        yield m.seq
                    elif tenant == ANY_TENANT:
                        yield t, _in_tenant(key.tenant, change)
                    else:
                        yield t, change
                while len(known) > self.settings.history_objects:
                    known.popitem(last=False)
            await check_still_retained(self.log, after)  # a purge that began meanwhile may have cut events
            yield target
        finally:
            await reader.aclose()

    async def _states_before(self, known: collections.OrderedDict[str, Entry | None],
                             batch: Sequence[LogMessage]) -> None:
        """Add to ``known`` the state, before ``batch``, of each subject in it not known yet (None:
        absent): its last message up to the batch's first sequence - 1, which is also its state
        before its first change in the batch. One direct get per subject, 32 in flight."""
        missing = {m.subject for m in batch} - known.keys()
        if not missing:
            return
        upto = batch[0].seq - 1
        limiter = trio.CapacityLimiter(32)

        async def fetch(subject: str) -> None:
            async with limiter:
                m = await self.log.last_message_at(subject, upto)
            if m is None:
                known[subject] = None
            else:
                _, entry, kind = _decode(self.log.prefix, m)
                known[subject] = None if kind == DELETED else entry

        async with trio.open_nursery() as nursery:
            for subject in sorted(missing):
                nursery.start_soon(fetch, subject)


class ContinueNeedsHistory(Exception):
    def __init__(self, rv: int, start_after: str) -> None:
        super().__init__(rv)
        self.rv = rv
        self.start_after = start_after


def encode_continue(rv: int, start_after: str) -> str:
    raw = json.dumps({"v": "jk1", "rv": rv, "start": start_after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, last key) of a token from :func:`encode_continue`; BadContinue (400) for
    anything else: the version must be a JSON integer from 1 to int64's maximum (not ``1e400``,
    ``-5``, ``true`` or ``"1"``), the key a string."""
    try:
        obj = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        rv, start = obj["rv"], obj["start"]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise BadContinue(f"invalid continue token: {e}") from None
    if type(rv) is not int or not 0 < rv < 2**63 or type(start) is not str:
        raise BadContinue("invalid continue token: incorrect encoded start resourceVersion")
    return rv, start


def _paginate(rows, flt: WatchFilter, limit: int, start_after: str, rv: int) -> ListResult:  # type: ignore[no-untyped-def]
    if not limit and not start_after and flt.labels.empty and flt.fields.empty:
        return ListResult([data for _, _, data, _ in rows], rv)  # the common LIST: no filter, no page
    items: list[bytes] = []
    last_key = ""
    remaining = 0
    more = False
    for ns, name, data, entry in rows:
        k = f"{ns}\x00{name}"  # NUL sorts first: string order == (ns, name) order
        if start_after and k <= start_after:
            continue
        if not flt.matches(ns, name, entry):
            continue
        if limit and len(items) >= limit:
            more = True
            remaining += 1
            continue
        items.append(data)
        last_key = k
    if more:
        return ListResult(items, rv, encode_continue(rv, last_key), remaining)
    return ListResult(items, rv)


__all__ = [
    "BOOKMARK",
    "DELETED",
    "ContinueExpired",
    "ContinueNeedsHistory",
    "ListResult",
    "Projection",
    "ProjectionSettings",
]


def _annotated(tenant: str, data: bytes) -> bytes:
    obj = msgspec.json.decode(data)
    meta = obj.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), CLUSTER_ANNOTATION: tenant}
    return msgspec.json.encode(obj)


def _in_tenant(tenant: str, ch: Change) -> Change:
    """``ch`` with its objects annotated with their tenant (for a watch across tenants)."""
    def entry(e: Entry) -> Entry:
        return Entry(e.seq, _annotated(tenant, e.data), dict(e.labels), dict(e.fields))
    return Change(ch.seq, ch.type, ch.namespace, ch.name, entry(ch.entry), None if ch.prev is None else entry(ch.prev))


class _TenantsStream(WatchStream):
    """A :class:`WatchStream` offered every tenant's changes (``Store.cross``)."""

    def offer_in(self, tenant: str, change: Change) -> None:
        if self.overflowed or self.classify(change) is None:
            return
        self.offer(_in_tenant(tenant, change))
