"""History straight from the log: one object's revisions, and many objects as of a past sequence.

Neither folds the log from sequence 1. An object's revisions are its subject's messages, read with a
batch direct get that walks JetStream's per-subject index (``Log.subject_messages``). The state of a
resource as of sequence N is, for each of its subjects, the last message <= N that is not a
tombstone (``Log.last_messages_at``: ``multi_last`` + ``up_to_seq``); the candidate subjects come
from the stream's subject list (``Log.subjects``), in key order, so a page costs the subjects it
covers, not the resource's whole history. Pure functions decide; the two async functions do the
reads, each bounded by the caller's deadline.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import jsonpatch
import msgspec
import trio

from bus import (
    PLACEHOLDER,
    Event,
    Key,
    Log,
    LogMessage,
    decode_event,
    decode_token,
    object_bytes,
    parse_subject,
)

from ._errors import ResourceVersionTooLarge, TooOldResourceVersion
from ._store import ADDED, DELETED, MODIFIED, Entry, ResourceState

#: Subjects per ``multi_last`` request (the server refuses more than 1,024 matches) and requests in
#: flight for one page.
SUBJECTS_PER_READ = 256
READS_IN_FLIGHT = 4
MAX_HISTORY_PAGE = 1000


class _Row(msgspec.Struct, gc=False):
    """What a LIST row needs of an event (bus.Event's fields of these names; the rest skipped)."""

    type: str
    object: msgspec.Raw
    rv_at: int
    labels: dict[str, str] = {}
    fields: dict[str, str] = {}


class _Bare(msgspec.Struct, gc=False):
    """A LIST row without selectors: not even the labels and fields."""

    type: str
    object: msgspec.Raw
    rv_at: int


_row_decoder = msgspec.json.Decoder(_Row)
_NONE: dict[str, str] = {}  # a bare row's labels and fields (never written to)
_bare_decoder = msgspec.json.Decoder(_Bare)


def row_entry(m: LogMessage, *, bare: bool = False) -> Entry | None:
    """The entry a LIST row shows for a message (None for a tombstone): decodes only what it needs
    (``bare``: no labels and fields, for a LIST without selectors)."""
    return _row_entry(m.seq, m.data, bare)


def _row_entry(seq: int, payload: bytes, bare: bool) -> Entry | None:
    ev = (_bare_decoder if bare else _row_decoder).decode(payload)
    if ev.type == "delete":
        return None
    raw = bytes(ev.object)
    data = b"%s%d%s" % (raw[:ev.rv_at], seq, raw[ev.rv_at:])
    if bare:
        return Entry(seq, data, _NONE, _NONE, ev.rv_at)
    return Entry(seq, data, ev.labels, ev.fields, ev.rv_at)  # type: ignore[attr-defined]


def decode_message(prefix: str, m: LogMessage) -> tuple[Key, Entry, str]:
    """Key, entry and watch event type of a log message (the verb tells ADDED from MODIFIED)."""
    key = parse_subject(prefix, m.subject)
    ev = decode_event(m.data)
    kind = DELETED if ev.type == "delete" else ADDED if ev.verb == "create" else MODIFIED
    return key, Entry(m.seq, object_bytes(ev, m.seq), ev.labels, ev.fields, ev.rv_at), kind


# ---- one object's revisions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """One revision of one object: the event at ``seq`` and the object it left (a tombstone's is the
    final state), with the JSON patch from the previous revision (RFC 6902; from nothing for the
    first revision read)."""

    seq: int
    event: Event
    stored_at: str
    object: dict[str, Any]
    patch: list[dict[str, Any]]
    #: The object before this revision (None: there was none, or it was deleted).
    previous: dict[str, Any] | None = None


def _revision(m: LogMessage, previous: dict[str, Any] | None) -> Revision:
    ev = decode_event(m.data)
    obj = msgspec.json.decode(object_bytes(ev, m.seq))
    before = previous if previous is not None else {}
    patch = [] if ev.type == "delete" else list(jsonpatch.make_patch(before, obj))
    return Revision(m.seq, ev, m.stored_at, obj, patch, previous)


async def revisions(log: Log, key: Key, *, after: int = 0, limit: int = 100) -> tuple[list[Revision], bool]:
    """Up to ``limit`` revisions of ``key`` with sequences > ``after``, oldest first, and whether
    more follow. The patch of the first one is against the revision at or before ``after`` (the
    subject's message before it), so every page diffs like the whole history would."""
    limit = max(1, min(limit, MAX_HISTORY_PAGE))
    subject = log.subject(key)
    previous: dict[str, Any] | None = None
    if after > 0:
        base = await log.last_message_at(subject, after)
        if base is not None:
            ev = decode_event(base.data)
            previous = None if ev.type == "delete" else msgspec.json.decode(object_bytes(ev, base.seq))
    msgs, pending = await log.subject_messages(subject, after + 1, limit=limit)
    out: list[Revision] = []
    for m in msgs:
        rev = _revision(m, previous)
        previous = None if rev.event.type == "delete" else rev.object
        out.append(rev)
    return out, pending > 0


# ---- many objects as of a past sequence -----------------------------------------------------------


@asynccontextmanager
async def _reads() -> AsyncIterator[trio.Nursery]:
    """A nursery for a read's concurrent requests to the log whose error is raised as itself (the
    first, when several failed), not in the nursery's exception group: a bus error stays the
    client's 503/504 (gateway/_status.py), a group would be a 500."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        if errors and all(isinstance(e, Exception) for e in errors):
            raise errors[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def row_key(namespace: str, name: str) -> str:
    """The sort and continue key of an object: NUL sorts first, so string order == (ns, name) order."""
    return f"{namespace}\x00{name}"


async def check_retained(log: Log, seq: int) -> int:
    """Raise 410 (TooOldResourceVersion) when the state at ``seq`` may not be in the log any more, and
    ResourceVersionTooLarge beyond its last sequence; return the last sequence.

    The state at ``seq`` needs, for every object, its last revision <= ``seq``. History retention
    (actors/_retention.py) records a compaction point C before it purges anything, and keeps every
    version >= C whole: below C is 410, as kube after an etcd compaction. A log purged by other
    means (no record, but its first messages gone) may lack such a revision of any object, so
    then every past version is 410. Call :func:`check_still_retained` after reading, too."""
    # (the two reads are independent: both in flight at once)
    got: dict[str, Any] = {}

    async def compaction() -> None:
        got["point"] = (await log.compaction_point())[0]

    async with _reads() as nursery:
        nursery.start_soon(compaction)
        state = await log.stream_state()
    first, last = int(state.get("first_seq", 1)), int(state.get("last_seq", 0))
    point = got["point"]
    if point:
        if seq < point:
            raise TooOldResourceVersion(seq, point)
    elif first > 1 or seq < first:
        raise TooOldResourceVersion(seq, first)
    if seq > last:
        raise ResourceVersionTooLarge(seq, last)
    return last


async def resolve_version(log: Log, spec: str) -> int:
    """A resourceVersion, or the last sequence stored at or before an RFC 3339 time (ValueError for
    anything else): where ``jetkube replay --to`` and ``serve --read-only --at`` take the state."""
    from ._audit import parse_time

    if spec.isdigit():
        return int(spec)
    t = parse_time(spec)  # ValueError: neither
    first_after = await log.seq_at_time(t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    return first_after - 1 if first_after is not None else int((await log.stream_state())["last_seq"])


async def check_still_retained(log: Log, seq: int) -> None:
    """After a read at ``seq``: 410 when the compaction point passed ``seq`` meanwhile (the purge that
    follows its record may have removed what the read returned); else the read was whole."""
    point, _ = await log.compaction_point()
    if point and seq < point:
        raise TooOldResourceVersion(seq, point)


#: Subjects needing the log above which a page reads the log's range below the version instead of
#: asking the server for each subject's last message up to it (see ``states_at``).
SCAN_MIN_SUBJECTS = 256
#: ... and at least 1/SCAN_MIN_SHARE of the subjects under the filter. Below that share, objects that
#: changed since the version are walked back along their appends' expected sequences instead.
SCAN_MIN_SHARE = 10
WALK_HOPS = 3
#: What walking one object back costs, in messages of a range read (two direct gets of about 170 µs
#: of CPU each against about 20 µs per message of range, measured through a gateway at load 6-8).
WALK_MESSAGES = 16
WALK_IN_FLIGHT = 64
#: The first range read back from the version, in stream sequences (each next one doubles).
SCAN_FIRST = 4096
#: nats-server's file store block for a stream with limits retention and no byte limit
#: (``defaultLargeBlockSize``); the range read stops once it covered more than one block.
STORE_BLOCK_BYTES = 8 * 1024 * 1024
#: The first range below the version: the subjects' count times the filter's share of the stream,
#: times this margin (writes are not exactly round robin). Measured on the bench's log (10,001 objects
#: rewritten in turn by 256 concurrent writers): a margin of 1.0 to 1.15 leaves the same 6-7
#: subjects unseen (objects written less often), so the margin only pays for jitter.
SCAN_MARGIN = 1.05
#: Messages per pull of a range read, three pulls outstanding (bus/_log.py ``RANGE_PULLS``).
SCAN_BATCH = 1024


async def states_at(log: Log, filter_subject: str, subjects: list[str], seq: int,
                    current: Callable[[str], Entry | None] | None = None, *, total: int = 0,
                    filter_messages: int = 0) -> dict[str, LogMessage | Entry]:
    """The last message <= ``seq`` of each of ``subjects`` (all matching ``filter_subject``), or the
    projection's entry for it; subjects with none are absent.

    Three sources, cheapest first:

    - ``current(subject)``: the projection's entry, when the caller's projection has applied
      ``seq`` or more; an entry written at or before ``seq`` *is* the state at ``seq`` (nothing
      touched the subject between), so unchanged objects cost no read at all.
    - the range just below ``seq``: when many subjects remain (more than ``SCAN_MIN_SUBJECTS``, and at
      least a tenth of the ``total`` subjects under the filter: the range holds every subject's
      messages, so a page of a few hundred among many thousands asks for its own), read the filter's
      messages of ``(seq - k, seq]`` in chunks going back (the first sized so that round-robin writes
      would cover every subject, each next one doubling), keeping each subject's last, until at most
      ``SCAN_MIN_SUBJECTS`` remain unseen or the range covered more than one store block of the stream.
    - ``multi_last`` + ``up_to_seq`` for the rest, asked at the bottom of the range read (the same
      answer, as none of them has a message above it). nats-server answers ``up_to_seq`` by walking
      back, message by message, from that sequence through its store block for every subject
      written after it in that block (measured: 10,000 subjects at a version half-way through a
      200,000-event log, about 1.7 s of server time, during which the stream's writes wait on the
      read's isolation lock); below a range wider than a block no remaining subject is written
      in that block, so each one costs a per-subject index lookup.
    """
    found: dict[str, LogMessage | Entry] = {}
    todo: list[str] = []
    changed: dict[str, int] = {}  # subject -> its current revision, written after ``seq``
    for subject in subjects:
        e = current(subject) if current is not None else None
        if e is not None and e.seq <= seq:
            found[subject] = e
        else:
            todo.append(subject)
            if e is not None:
                changed[subject] = e.seq
    # Whether this read covers a large share of the resource's subjects (a whole LIST, not a page):
    # then a range below ``seq`` costs about the same however many of them it is read for.
    whole = len(subjects) * SCAN_MIN_SHARE >= total
    walk = bool(changed) and len(changed) * SCAN_MIN_SHARE < max(total, len(subjects))
    if walk and whole and len(changed) > SCAN_MIN_SUBJECTS:
        # Walking back costs about WALK_MESSAGES range messages per object: read the range
        # instead when that is cheaper (measured: 1,000 of 10,000 objects changed, 2,000 direct gets
        # cost more than 11,500 messages of range).
        state = await log.stream_state()
        share = int(state.get("messages", 0)) / filter_messages if filter_messages else 1.0
        walk = len(changed) * WALK_MESSAGES < max(total, len(subjects)) * share * SCAN_MARGIN
    if walk:
        # Few objects changed since ``seq``: walk back from their current revision along the
        # sequences their appends expected (CAS), by direct gets by sequence (no server walk).
        resolved = await _walk_back(log, changed, seq)
        for subject, m in resolved.items():
            if m is not None:
                found[subject] = m
        todo = [s for s in todo if s not in resolved]
    bottom = seq
    # (A consumer filtered on a page's few hundred subjects instead, measured: nats-server spent 1 s
    # of CPU per 11,500 messages of range on it, 20x the filter's.)
    if len(todo) > SCAN_MIN_SUBJECTS and (len(todo) * SCAN_MIN_SHARE >= total or whole and changed and not walk):
        want = set(todo)
        state = await log.stream_state()
        msgs = int(state.get("messages", 0)) or 1
        block = max(SCAN_FIRST, STORE_BLOCK_BYTES * msgs // max(1, int(state.get("bytes", 0))))
        first = int(state.get("first_seq", 1))
        # The first range: where every wanted subject would have a message if the filter's
        # messages came round robin, spread among the stream's others (``filter_messages``: the
        # filter's share of the stream); each next range doubles.
        share = msgs / filter_messages if filter_messages else 1.0
        span = max(SCAN_FIRST, int(max(total, len(want)) * share * SCAN_MARGIN))
        # Once a range left few subjects unseen (objects written less often than the others),
        # ``multi_last`` below it costs less than reading a twice larger range for them.
        while len(want) > (SCAN_MIN_SUBJECTS if bottom < seq else 0) and bottom >= first and seq - bottom <= block:
            lo = max(first, bottom - span + 1)
            found_range = await log.last_messages_between(filter_subject, lo, bottom, batch=SCAN_BATCH)
            for subject, m in found_range.items():
                if subject in want:
                    want.discard(subject)
                    found[subject] = m
            bottom = lo - 1
            span *= 2
        todo = [s for s in todo if s in want]
    if todo and bottom > 0:

        async def read(part: list[str]) -> None:
            for m in await log.last_messages_at(part, bottom):
                found[m.subject] = m

        async with _reads() as nursery:
            limiter = trio.CapacityLimiter(READS_IN_FLIGHT)

            async def bounded(part: list[str]) -> None:
                async with limiter:
                    await read(part)

            for i in range(0, len(todo), SUBJECTS_PER_READ):
                nursery.start_soon(bounded, todo[i:i + SUBJECTS_PER_READ])
    return found


async def _walk_back(log: Log, changed: dict[str, int], seq: int) -> dict[str, LogMessage | None]:
    """For subjects whose current revision is after ``seq``: their last message <= ``seq`` (None: none
    then), found by following each append's expected last sequence back, one hop for all of them at a
    time, at most ``WALK_HOPS`` hops, and no further hop once more than half of them are still after
    ``seq`` (many revisions since: more hops would mostly be wasted); subjects not resolved so (or
    appends without an expectation) are absent, for the other paths."""
    out: dict[str, LogMessage | None] = {}
    limiter = trio.CapacityLimiter(WALK_IN_FLIGHT)
    frontier = dict(changed)
    for _ in range(WALK_HOPS):
        further: dict[str, int] = {}

        async def hop(subject: str, at: int, further: dict[str, int] = further) -> None:
            async with limiter:
                got = await log.message_and_previous(at)
                if got is None or got[1] is None:
                    return  # purged, or no expectation recorded: the other paths decide
                prev = got[1]
                if prev > seq:
                    further[subject] = prev
                elif prev == 0:
                    out[subject] = None  # created after ``seq``
                else:
                    m = await log.message_and_previous(prev)
                    if m is not None and m[0].subject == subject:
                        out[subject] = m[0]

        async with _reads() as nursery:
            for subject, at in frontier.items():
                nursery.start_soon(hop, subject, at)
        if not further or len(further) * 2 > len(frontier):
            break
        frontier = further
    return out


def _names(subject: str) -> tuple[str, str]:
    """(namespace, name) of an object subject (its last two tokens; the caller's filter fixed the rest)."""
    _, ns, name = subject.rsplit(".", 2)
    # (decode_token's own test for an escape, inlined: this runs for every subject of a LIST)
    return "" if ns == PLACEHOLDER else decode_token(ns) if "~" in ns else ns, \
        decode_token(name) if "~" in name else name


async def rows_at(log: Log, filter_subject: str, seq: int, *, start_after: str, limit: int,
                  keep: Callable[[str, str, Entry], bool] | None,
                  current: Callable[[str, str], Entry | None] | None = None) -> tuple[list[tuple[str, Entry]], bool]:
    """The objects under ``filter_subject`` (one resource of one tenant) as they were at ``seq``, in
    key order after ``start_after``, that ``keep`` accepts (None: every one, and its labels and fields
    are not decoded): up to ``limit`` (0: all) as (key, entry),
    and whether candidate subjects remain after the last one returned. Objects deleted at ``seq`` and
    objects created after it are absent. ``current``: the caller's projection entry by (namespace,
    name) (see ``states_at``). Only the rows a page returns (or tests against a selector) are
    decoded. The caller bounds the time (a request deadline)."""
    subjects = await log.subjects(filter_subject)
    filter_messages = sum(subjects.values())
    keyed = []
    names: dict[str, tuple[str, str]] = {}
    for subject in subjects:
        ns, name = names[subject] = _names(subject)
        rk = f"{ns}\x00{name}"  # row_key
        if rk > start_after:
            keyed.append((rk, subject))
    keyed.sort()
    by_subject = None if current is None else (lambda s: current(*names[s]))  # each subject parsed once
    out: list[tuple[str, Entry]] = []
    # A page reads about as many subjects as it returns: the first window is the limit's size, and
    # each next one doubles (selectors, deleted objects).
    full = max(SUBJECTS_PER_READ * READS_IN_FLIGHT, len(keyed)) if not limit else SUBJECTS_PER_READ * READS_IN_FLIGHT
    window = min(full, limit + 1) if limit else full
    w = 0
    while w < len(keyed):
        chunk = keyed[w:w + window]
        found = await states_at(log, filter_subject, [s for _, s in chunk], seq, by_subject, total=len(subjects),
                                filter_messages=filter_messages)
        for idx, (rk, subject) in enumerate(chunk):
            m = found.get(subject)
            if m is None:
                continue
            if isinstance(m, Entry):
                entry = m
            else:
                got = row_entry(m, bare=keep is None)
                if got is None:  # deleted at ``seq``
                    continue
                entry = got
            if keep is not None and not keep(*names[subject], entry):
                continue
            out.append((rk, entry))
            if limit and len(out) >= limit:
                return out, w + idx + 1 < len(keyed)
        w += len(chunk)
        window = min(full, window * 2)
    return out, False


# ---- many objects as of a past sequence, with the revision index --------------------------------

#: What reading one message by a direct get by sequence costs, in messages of a range read (one
#: request-reply through the bridge against a message of a stream the reader cuts in place).
DIRECT_GET_MESSAGES = 40
DIRECT_GETS_IN_FLIGHT = 64


async def rows_indexed(log: Log, filter_subject: str, st: ResourceState, seq: int, *, namespace: str | None,
                       start_after: str, limit: int, keep: Callable[[str, str, Entry], bool] | None,
                       share: float) -> tuple[list[tuple[str, Entry]], bool] | None:
    """As :func:`rows_at`, from the resource's revision index (projections/_revindex.py) instead of
    asking the log which messages hold the state: the caller's projection has applied ``seq`` and
    ``seq >= st.revs.floor``. An object whose current entry was written at or before ``seq`` is that
    entry (no read); for each other one the index names the sequence of its last revision <= ``seq``
    (none, or a deletion: absent), and exactly those messages are read (:func:`_read_seqs`). None
    when the log no longer holds one of them (a purge): the caller reads the log's way instead.
    ``share``: the resource's messages per stream sequence, for the cost of a range."""
    keys = st.revs.keys(namespace)
    i = bisect_right(keys, start_after, key=lambda k: k[0]) if start_after else 0
    window = limit + 1 if limit else len(keys)
    by_ns, revs_by_ns = st.by_ns, st.revs.by_ns
    bare = keep is None
    before = seq * 2 + 1  # (the index's encoding: every revision <= ``seq`` sorts below it)
    out: list[tuple[str, Entry]] = []
    while i < len(keys):
        chunk = keys[i:i + window]
        plan: list[tuple[int, str, str, str, Entry | int]] = []
        need: list[int] = []
        current_ns: str | None = None
        live: dict[str, Entry] = {}
        arrays: dict[str, array[int]] = {}
        # (``Revisions.at`` inlined, and each namespace's dicts looked up once: this runs per object)
        for idx, (rk, ns, name) in enumerate(chunk):
            if ns != current_ns:
                current_ns, live, arrays = ns, by_ns.get(ns) or {}, revs_by_ns.get(ns) or {}
            e = live.get(name)
            if e is not None and e.seq <= seq:
                plan.append((idx, rk, ns, name, e))
                continue
            a = arrays.get(name)
            if a is None:
                continue
            j = bisect_right(a, before)
            if j and not a[j - 1] & 1:
                at = a[j - 1] >> 1
                plan.append((idx, rk, ns, name, at))
                need.append(at)
        got = await _read_seqs(log, filter_subject, need, share) if need else {}
        if got is None:
            return None
        for idx, rk, ns, name, x in plan:
            if isinstance(x, Entry):
                entry = x
            else:
                row = _row_entry(x, got[x], bare)
                if row is None:  # the index names puts only
                    continue
                entry = row
            if keep is not None and not keep(ns, name, entry):
                continue
            out.append((rk, entry))
            if limit and len(out) >= limit:
                return out, i + idx + 1 < len(keys)
        i += len(chunk)
        window *= 2
    return out, False


async def _read_seqs(log: Log, filter_subject: str, need: list[int], share: float) -> dict[int, bytes] | None:
    """The payloads of the messages at ``need`` (sequences of the filter's subjects), by sequence; None when the log
    lacks one. The highest ones are read as one range (its messages of the filter, about ``share``
    per sequence), the lowest ones, when that costs less than widening the range down to them, by
    one direct get each."""
    need.sort()
    top = need[-1]
    split, best = 0, (top - need[0] + 1) * share
    # Reading the lowest j by direct gets costs j * DIRECT_GET_MESSAGES and saves at most the whole
    # range: no j beyond best / DIRECT_GET_MESSAGES can be cheaper (a dense set stops early).
    for j in range(1, min(len(need), int(best / DIRECT_GET_MESSAGES) + 1)):
        cost = (top - need[j] + 1) * share + j * DIRECT_GET_MESSAGES
        if cost < best:
            split, best = j, cost
    got = await log.messages_by_seq(filter_subject, set(need[split:]))
    if len(got) < len(need) - split:
        return None
    if split:
        missing = False
        limiter = trio.CapacityLimiter(DIRECT_GETS_IN_FLIGHT)

        async def one(s: int) -> None:
            nonlocal missing
            async with limiter:
                m = await log.message_and_previous(s)
            if m is None:
                missing = True
            else:
                got[s] = m[0].data

        async with _reads() as nursery:
            for s in need[:split]:
                nursery.start_soon(one, s)
        if missing:
            return None
    return got
