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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import msgspec
import trio

from bus import Event, Key, Log, LogMessage, decode_event, object_bytes, parse_subject

from ._errors import ResourceVersionTooLarge, TooOldResourceVersion
from ._store import ADDED, DELETED, MODIFIED, Entry

#: Subjects per ``multi_last`` request (the server refuses more than 1,024 matches) and requests in
#: flight for one page.
SUBJECTS_PER_READ = 256
READS_IN_FLIGHT = 4
MAX_HISTORY_PAGE = 1000


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


def _revision(m: LogMessage, previous: dict[str, Any] | None) -> Revision:
    ev = decode_event(m.data)
    obj = msgspec.json.decode(object_bytes(ev, m.seq))
    before = previous if previous is not None else {}
    patch = [] if ev.type == "delete" else list(jsonpatch.make_patch(before, obj))
    return Revision(m.seq, ev, m.stored_at, obj, patch)


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


def row_key(namespace: str, name: str) -> str:
    """The sort and continue key of an object: NUL sorts first, so string order == (ns, name) order."""
    return f"{namespace}\x00{name}"


async def check_retained(log: Log, seq: int) -> int:
    """Raise 410 (TooOldResourceVersion) when the state at ``seq`` may not be in the log any more, and
    ResourceVersionTooLarge beyond its last sequence; return the last sequence.

    The state at ``seq`` needs, for every object, its last revision <= ``seq``. A purge of the log's
    first messages (``first_seq`` > 1) may have removed such revisions of any object, so until the
    log has retention that keeps every live object's latest revision and says up to where it
    compacted (issue 14, "retention"), any purge expires every past version, as the fold from
    sequence 1 did before."""
    state = await log.stream_state()
    first, last = int(state.get("first_seq", 1)), int(state.get("last_seq", 0))
    if first > 1 or seq < first:
        raise TooOldResourceVersion(seq, first)
    if seq > last:
        raise ResourceVersionTooLarge(seq, last)
    return last


async def rows_at(log: Log, filter_subject: str, seq: int, *, start_after: str, limit: int,
                  keep: Callable[[str, str, Entry], bool]) -> tuple[list[tuple[str, Entry]], bool]:
    """The objects under ``filter_subject`` as they were at ``seq``, in key order after
    ``start_after``, that ``keep`` accepts: up to ``limit`` (0: all) as (key, entry), and whether
    candidate subjects remain after the last one returned. Objects deleted at ``seq`` and objects
    created after it are absent. The caller bounds the time (a request deadline)."""
    prefix = log.prefix
    subjects = await log.subjects(filter_subject)
    keyed = []
    for subject in subjects:
        k = parse_subject(prefix, subject)
        rk = row_key(k.namespace, k.name)
        if rk > start_after:
            keyed.append((rk, subject))
    keyed.sort()
    out: list[tuple[str, Entry]] = []
    # A page reads about as many subjects as it returns: the first window is the limit's size, and
    # each next one doubles (selectors, deleted objects) up to READS_IN_FLIGHT reads of 256.
    full = SUBJECTS_PER_READ * READS_IN_FLIGHT
    window = min(full, limit + 1) if limit else full
    w = 0
    while w < len(keyed):
        chunk = keyed[w:w + window]
        found: dict[str, LogMessage] = {}

        async def read(part: list[tuple[str, str]], found: dict[str, LogMessage] = found) -> None:
            for m in await log.last_messages_at([s for _, s in part], seq):
                found[m.subject] = m

        async with trio.open_nursery() as nursery:
            for i in range(0, len(chunk), SUBJECTS_PER_READ):
                nursery.start_soon(read, chunk[i:i + SUBJECTS_PER_READ])
        for idx, (rk, subject) in enumerate(chunk):
            m = found.get(subject)
            if m is None:
                continue
            key, entry, kind = decode_message(prefix, m)
            if kind == DELETED or not keep(key.namespace, key.name, entry):
                continue
            out.append((rk, entry))
            if limit and len(out) >= limit:
                return out, w + idx + 1 < len(keyed)
        w += len(chunk)
        window = min(full, window * 2)
    return out, False
