"""History retention: purge old revisions from the log in the background, and record the compaction point.

``jetkube serve --history-max-age D --history-max-revisions-per-object N`` (both off by default: the
log keeps everything). A pass, every ``interval_s``:

1. plans, for each object subject, the sequence below which its messages go:

   - age: with T the last sequence stored before now - D, every revision at or before T except the
     last one at or before T (the object's state at T, kept whole) — and that one too when it is a
     tombstone (a deleted object is forgotten once its deletion is older than D). So the state at
     every version >= T is still exact.
   - revisions: everything but the subject's last N messages (the N-th from last is the oldest kept).

   The latest revision of a live object is never purged (N >= 1; age keeps the last revision <= T
   and everything after T).
2. records the compaction point C = max(T, the oldest kept revision of every subject over N) on the
   log (``Log.raise_compaction_point``, CAS: it only grows, whichever gateway moves it) *before*
   purging anything, with H, the highest sequence of a tombstone the pass purges. Of all the
   messages purged, only such tombstones change what folding the log gives (every other purged
   message has a later revision of its object kept), so a projection snapshot at a sequence >= H
   plus the log after it still folds to the log's state; one below H is not used
   (projections/_snapshot.py). Reads at a version below C answer 410 Expired as kube does after an etcd
   compaction (``too old resource version: X (C)``); a read checks C before and after it reads, so
   a purge that starts during the read is seen (projections/_history.check_retained).
3. purges subject by subject (JetStream purge with a ``filter`` and ``seq``), at most
   ``purges_in_flight`` at once: each one is a short stream operation, so writes interleave with
   them; nothing holds the stream for the whole pass.

Of the gateways started with the flags, only the one holding the purger's lease runs passes: the key
``purger`` of the KV bucket ``<stream>_RETENTION``, a :class:`bus.LeasedCursor` (the lease the
snapshot writer and the audit webhook forwarder hold too). The holder renews it every
``lease_s / 3``; the others look as often and take over when it lapses (``lease_s`` after a holder
died) or at once when the holder stops and releases it. Correctness never depends on the lease: a
pass is idempotent (a second purger's plan finds nothing left to purge) and the CAS on the record
orders the compaction points; the lease saves the duplicated reads and purges.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import msgspec
import trio

from bus import (
    BusError,
    LeasedCursor,
    Log,
    LogMessage,
    WrongLastSequence,
    all_filter,
    decode_event,
    is_system_subject,
)
from projections import states_at

_log = logging.getLogger("jetkube.retention")

#: Messages of one subject read per request when finding its oldest kept revision.
_PAGE = 1000


@dataclass(frozen=True)
class RetentionSettings:
    max_age_s: float = 0.0  # 0: no age limit
    max_revisions: int = 0  # 0: no per-object limit
    interval_s: float = 60.0
    purges_in_flight: int = 8
    lease_s: float = 30.0  # the purger's lease (renewed every third of it)

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0 or self.max_revisions > 0


@dataclass
class Plan:
    """What one pass does: the compaction point to record, and per subject the sequence below which its
    messages are purged."""

    point: int = 0
    below: dict[str, int] = field(default_factory=dict)
    #: The highest sequence of a tombstone purged (H): the only purged messages that change a fold.
    tombstones: int = 0

    def purge(self, subject: str, seq: int, point: int) -> None:
        if seq > self.below.get(subject, 0):
            self.below[subject] = seq
        self.point = max(self.point, point)


@dataclass
class RetentionStats:
    passes: int = 0
    purged_messages: int = 0
    compaction_point: int = 0
    last_error: str = ""
    lease_held: bool = False


async def cut_sequence(log: Log, now: datetime, max_age_s: float) -> int:
    """T: the last sequence stored before ``now - max_age_s`` (0 when none is that old)."""
    cutoff = (now - timedelta(seconds=max_age_s)).astimezone(UTC)
    first_after = await log.seq_at_time(cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    if first_after is None:
        return int((await log.stream_state())["last_seq"])
    return first_after - 1


async def plan(log: Log, settings: RetentionSettings, *, now: datetime,
               done: dict[str, int] | None = None) -> Plan:
    """The plan of one pass (reads only). ``done``: subject -> the purge already applied, skipped."""
    prefix = log.prefix
    counts = {s: n for s, n in (await log.subjects(all_filter(prefix))).items() if not is_system_subject(prefix, s)}
    out = Plan()
    if settings.max_revisions > 0:
        keep = settings.max_revisions
        for subject, n in counts.items():
            if n <= keep:
                continue
            # The oldest revision kept is the subject's (n - keep + 1)-th message.
            nth, start = n - keep + 1, 1
            while True:
                msgs, _ = await log.subject_messages(subject, start, limit=min(_PAGE, nth))
                if not msgs:
                    break
                if len(msgs) >= nth:
                    oldest_kept = msgs[nth - 1].seq
                    out.purge(subject, oldest_kept, oldest_kept)
                    break
                nth -= len(msgs)
                start = msgs[-1].seq + 1
    if settings.max_age_s > 0:
        t = await cut_sequence(log, now, settings.max_age_s)
        if t > 0:
            found = await states_at(log, all_filter(prefix), list(counts), t)
            for subject, m in found.items():
                if not isinstance(m, LogMessage):  # pragma: no cover - an Entry only with a projection's
                    continue
                try:
                    tombstone = decode_event(m.data).type == "delete"
                except msgspec.MsgspecError:
                    continue  # not an event of ours (the projections skip it too): left alone
                if tombstone:
                    out.purge(subject, t + 1, t)
                    out.tombstones = max(out.tombstones, m.seq)
                elif counts.get(subject, 0) > 1:
                    out.purge(subject, m.seq, t)
            out.point = max(out.point, t)
    if done is not None:
        for gone in [s for s in done if s not in counts]:  # bounded by the subjects the log holds
            del done[gone]
        out.below = {s: q for s, q in out.below.items() if q > done.get(s, 0)}
    return out


async def record(log: Log, point: int, tombstones: int = 0) -> int:
    """Make the recorded compaction point at least ``point`` and H at least ``tombstones``; return the
    recorded point."""
    for _ in range(5):
        current, horizon, at = await log.compaction_record()
        if current >= point and horizon >= tombstones:
            return current
        try:
            await log.raise_compaction_point(max(current, point), record_seq=at, tombstones=max(horizon, tombstones))
            return max(current, point)
        except WrongLastSequence:
            continue  # another gateway moved it: read it again
    raise BusError("the compaction point kept moving under this gateway")


async def run_pass(log: Log, settings: RetentionSettings, stats: RetentionStats, *, now: datetime,
                   done: dict[str, int]) -> Plan:
    p = await plan(log, settings, now=now, done=done)
    if p.point:
        stats.compaction_point = await record(log, p.point, p.tombstones)
    if not p.below:
        return p
    limiter = trio.CapacityLimiter(settings.purges_in_flight)

    async def purge(subject: str, seq: int) -> None:
        async with limiter:
            n = await log.purge_below(subject, seq)
            stats.purged_messages += n  # after the await: ``x += await f()`` loses concurrent updates
            done[subject] = seq

    async with trio.open_nursery() as nursery:
        for subject, seq in p.below.items():
            nursery.start_soon(purge, subject, seq)
    return p


async def run_retention(log: Log, settings: RetentionSettings, stats: RetentionStats,
                        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """Purge every ``interval_s`` forever while this gateway holds the purger's lease (see the
    module's doc); a failed pass is logged and retried at the next one. Cancelled, it gives the
    lease up (a shielded release bounded at 2 s) so another gateway takes over at once."""
    lease = LeasedCursor(log.bridge, f"{log.stream}_RETENTION", "purger", replicas=log.config.replicas,
                         description="jetkube: which gateway purges old revisions (history retention)")
    holder = str(uuid.uuid4())
    done: dict[str, int] = {}
    next_pass = 0.0
    task_status.started()
    try:
        while True:
            try:
                held = await lease.claim(holder, settings.lease_s) is not None
            except BusError as e:
                held = False  # unknown: no pass now (it may still be ours; then it lapses)
                _log.warning("history retention: the purger's lease is not available: %s", e)
            if held and not stats.lease_held:
                _log.info("history retention: this gateway purges (it holds the lease)")
                next_pass = 0.0  # a new holder passes at once: the previous one's period is not known
            stats.lease_held = held
            if held and trio.current_time() >= next_pass:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_renew, lease, holder, settings.lease_s)  # a pass may outlast it
                        await run_pass(log, settings, stats, now=datetime.now(UTC), done=done)
                        nursery.cancel_scope.cancel()
                    stats.passes += 1
                    stats.last_error = ""
                except (BusError, trio.TooSlowError) as e:
                    stats.last_error = str(e)
                    _log.warning("history retention pass failed: %s", e)
                next_pass = trio.current_time() + settings.interval_s
            # The pass period (--history-max-age's granularity), and the lease's renewal or look.
            await trio.sleep(min(settings.interval_s, settings.lease_s / 3))
    finally:
        if stats.lease_held:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await lease.release(holder)
                except BusError:
                    pass  # it lapses by itself
            stats.lease_held = False


async def _renew(lease: LeasedCursor, holder: str, lease_s: float) -> NoReturn:
    """Keep the purger's lease while a pass runs (renewed every third of it; a failed renewal is left
    to the next one: the pass is idempotent, a second purger would only repeat work)."""
    while True:
        await trio.sleep(lease_s / 3)
        try:
            await lease.claim(holder, lease_s)
        except BusError as e:
            _log.warning("history retention: renewing the purger's lease failed: %s", e)
