"""The gateway's audit: the audit stream writer, and the query that merges it with the log.

Two sources, one trail (projections/_audit.py builds the records):

- accepted writes are on the log: their audit records are derived from the events there when the
  trail is read, under the server's policy. A write that was appended is audited even if the
  gateway died before it answered, and no buffer can drop it.
- everything else (reads, 401/403/429 and admission denials, other refused writes, dry runs,
  reviews and token requests, which never reach the log) is written by the gateway to a second
  JetStream stream, ``<stream>_AUDIT``, with its own retention (``--audit-max-age``,
  ``--audit-max-bytes``).

The writer is off the request path: a request hands its record to a bounded queue
(``--audit-queue-size``) and one background task appends from it: whatever was queued while its last
appends were in flight goes in one message per tenant (a JSON array of the records when there are
several: :func:`projections.encode_records`), so a busy gateway stores one message and pays one
round trip per batch of reads, not per read, and a tenant's records stay in their order. When the
queue is full a read's record is dropped at once (kube's batch backend drops, too) and a denial's
waits up to 100 ms for room, then is dropped; both are counted
(``jetkube_audit_events_dropped_total{kind}``). Appends that fail are counted the same way.

With ``--audit-webhook-mode blocking``/``blocking-strict`` (gateway/_audit_webhook.py), the request
path also sends its events to the webhook and waits: :func:`audit_received` at ``RequestReceived``
(which, when strict, refuses the request if that fails) and :func:`audit_request` at the end.

A watch's ``ResponseComplete`` is recorded when its stream ends (:func:`audit_watch_body`), and a
request whose client went away gets kube's ``ResponseComplete`` (:func:`audit_gone`); both may run
while the task is being cancelled: the webhook send is shielded and bounded by ``END_SEND_S``.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import msgspec
import trio
from quart import request

from actors import BadRequest, Request, UserInfo
from bus import (
    ROOT_TENANT,
    BusError,
    BusTimeout,
    BusUnavailable,
    JetStreamError,
    Log,
    LogMessage,
    NoResponders,
    is_system_subject,
    system_subject,
    tenant_token,
)
from kinds import Registry, ResourceDef
from projections import (
    DEFAULT_POLICY,
    Attributes,
    Policy,
    decision_key,
    decode_records,
    encode_records,
    level_and_stages,
    names_matter,
    now_micro,
    record_for_request,
    record_from_event,
)
from projections import parse_time as _parse_time

from ._audit_webhook import SENT_MARK, SENT_SUFFIX, BlockingWebhook

_log = logging.getLogger("jetkube.audit")
_enc = msgspec.json.Encoder()

DENIAL_WAIT_S = 0.1
DECISIONS_CACHED = 4096
MAX_QUERY_EVENTS = 10_000
DEFAULT_QUERY_EVENTS = 1_000


class AuditSink:
    """The bounded queue in front of the audit stream, and its writer task (:meth:`run`)."""

    def __init__(self, log: Log | None, policy: Policy = DEFAULT_POLICY, *, queue_size: int = 10_000) -> None:
        self.log = log
        self.policy = policy
        self._send, self._recv = trio.open_memory_channel[_Item](queue_size)
        self.written = 0
        #: Records not written, by why: "read" (queue full), "denial" (queue full past the wait), "failed".
        self.dropped = {"read": 0, "denial": 0, "failed": 0}
        #: The webhook's blocking modes' request side (gateway/_audit_webhook.py); None: batch or off.
        self.blocking: BlockingWebhook | None = None
        # The policy's decisions by what they depend on (projections.decision_key), bounded.
        self._decided: dict[tuple[Any, ...], tuple[str, frozenset[str], bool]] = {}
        self._decided_for: tuple[Policy, bool] | None = None

    def decide(self, attrs: Attributes) -> tuple[str, frozenset[str], bool]:
        """``projections.level_and_stages(self.policy, attrs)``, remembered."""
        policy = self.policy
        if self._decided_for is None or self._decided_for[0] is not policy:
            self._decided.clear()
            self._decided_for = (policy, names_matter(policy))
        key = decision_key(attrs, self._decided_for[1])
        got = self._decided.get(key)
        if got is None:
            if len(self._decided) >= DECISIONS_CACHED:
                self._decided.clear()
            got = self._decided[key] = level_and_stages(policy, attrs)
        return got

    def _subject(self, tenant: str) -> str:
        assert self.log is not None
        return f"{self.log.prefix}.{tenant_token(tenant or ROOT_TENANT)}"

    def submit(self, record: dict[str, Any], tenant: str, *, sent: bool = False) -> None:
        """A read's record: queued if there is room, else dropped and counted. Never waits.
        ``sent``: the webhook already has it (blocking modes: its forwarder skips it)."""
        if self.log is None:
            return
        try:
            self._send.send_nowait(self._item(record, tenant, sent))
        except trio.WouldBlock:
            self.dropped["read"] += 1

    def submit_sent(self, audit_id: str, seqs: list[int]) -> None:
        """Blocking modes: the webhook accepted the records of these log sequences (a write's), so the
        forwarder skips them. Dropped when the queue is full: they are then sent again, not lost."""
        if self.log is None or not seqs:
            return
        item = (system_subject(self.log.prefix, SENT_MARK), _enc.encode({"seqs": seqs}), f"{audit_id}:{SENT_MARK}",
                False)
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            pass

    async def submit_denial(self, record: dict[str, Any], tenant: str, *, sent: bool = False) -> None:
        """A denial's record: waits up to ``DENIAL_WAIT_S`` for room in the queue, then drops it."""
        if self.log is None:
            return
        item = self._item(record, tenant, sent)
        try:
            self._send.send_nowait(item)
            return
        except trio.WouldBlock:
            pass
        with trio.move_on_after(DENIAL_WAIT_S):
            await self._send.send(item)
            return
        self.dropped["denial"] += 1

    def _item(self, record: dict[str, Any], tenant: str, sent: bool = False) -> _Item:
        # The Msg-Id makes a retried append of the same record a duplicate, never a second record.
        return self._subject(tenant), _enc.encode(record), f"{record.get('auditID', '')}:{record.get('stage', '')}", sent

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Append queued records to the audit stream, forever: whatever is queued when the previous
        appends were acknowledged (up to ``BATCH_RECORDS`` records / ``BATCH_BYTES``), one message
        per tenant (two or more when the webhook already has some of its records and not others:
        :func:`_messages`), and one per webhook mark. The tenants' messages are appended
        concurrently, one tenant's one after another, within one deadline (:meth:`_append_in_order`).
        One writer: a tenant's records are stored in the order they were queued."""
        task_status.started()
        log = self.log
        recv = self._recv
        async for first in recv:
            if log is None:
                continue
            items, size = [first], len(first[1])
            while len(items) < BATCH_RECORDS and size < BATCH_BYTES:
                try:
                    item = recv.receive_nowait()
                except trio.WouldBlock:
                    break
                items.append(item)
                size += len(item[1])
            lanes = _messages(items)
            if len(lanes) == 1:
                await self._append_in_order(log, lanes[0])
            else:
                async with trio.open_nursery() as nursery:
                    for lane in lanes:
                        nursery.start_soon(self._append_in_order, log, lane)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _append_in_order(self, log: Log, messages: list[_Message]) -> None:
        """A lane's messages, the next one after this one's ack: stored in this order. One deadline
        (``APPEND_DEADLINE_S``) for the whole lane, so a stalled stream holds the writer that long
        per batch, not once per message. An append that fails with an error that may pass
        (:func:`_transient`: not connected, the connection dropped, no responders, a timeout, a
        JetStream 5xx) while the deadline still has time is tried again, with the same Msg-Id (an
        append that was stored after all is a duplicate, not a second record), after a pause that
        doubles from ``RETRY_PAUSE_S`` up to ``RETRY_PAUSE_MAX_S``. Any other error (a Msg-Id
        collision, a JetStream 4xx answer such as a stream limit) would fail the same way again: the
        lane is given up at once. What is given up (the message that failed last and the lane's later
        ones) is not appended: counted in ``dropped["failed"]`` and logged once with the failure,
        never dropped silently. Nothing is stored after a message given up, so a tenant's records
        keep their order."""
        deadline = trio.current_time() + APPEND_DEADLINE_S
        for i, m in enumerate(messages):
            pause = RETRY_PAUSE_S
            while True:
                try:
                    await self._append(log, *m, deadline_s=max(0.0, deadline - trio.current_time()))
                    break
                except BusError as e:
                    if not _transient(e) or deadline - trio.current_time() <= pause:
                        lost = sum(later[3] for later in messages[i:])
                        self.dropped["failed"] += lost
                        _log.warning("%d audit record(s) not written: %s", lost, e)
                        return
                    await trio.sleep(pause)
                    pause = min(2 * pause, RETRY_PAUSE_MAX_S)

    async def _append(self, log: Log, subject: str, payload: bytes, msg_id: str, records: int, *,
                      deadline_s: float) -> None:
        await log.append(subject, payload, msg_id=msg_id, expected_seq=None, deadline_s=deadline_s)
        self.written += records


def _transient(e: BusError) -> bool:
    """Whether an append's error may pass, so that trying again can succeed: not connected, the
    connection dropped or no answer in time (``BusTimeout``), nothing answering the subject (no
    stream leader), or a JetStream 5xx (e.g. 503: no leader, insufficient resources). Not: the log
    closed by us (``BusClosed``, at shutdown), a Msg-Id collision, a 4xx answer."""
    return (isinstance(e, (BusUnavailable, BusTimeout, NoResponders))
            or (isinstance(e, JetStreamError) and e.code >= 500))


#: How long one batch's appends may take, per lane (a lane's messages share it): a stream that does not
#: acknowledge holds the writer (and fills the queue) this long per batch at most.
APPEND_DEADLINE_S = 10.0
#: After a failed append with time left in its lane's deadline: the first pause before it is tried
#: again, doubled at each failure up to the second (``Log.append`` itself retries "no responders"
#: and timeouts within the deadline; these pauses are for the errors it raises at once).
RETRY_PAUSE_S = 0.05
RETRY_PAUSE_MAX_S = 1.0
#: A queued audit stream message: (subject, encoded record, Msg-Id, sent to the webhook already).
_Item = tuple[str, bytes, str, bool]
#: At most this many records (or about these many bytes) in one audit stream message.
BATCH_RECORDS = 256
BATCH_BYTES = 256 * 1024


#: An audit stream message: (subject, payload, Msg-Id, records in it).
_Message = tuple[str, bytes, str, int]


def _messages(items: list[_Item]) -> list[list[_Message]]:
    """``items`` as audit stream messages (subject, payload, Msg-Id, records), in lanes: a lane's
    messages are to be appended one after another, lanes concurrently. One lane per subject (a
    tenant): its records in their order, a message for each run of consecutive records of the same
    webhook state (blocking modes: sent or not), so one message unless the webhook failed for some
    of them (records A-sent, B-unsent, C-sent: three messages, in that order). A webhook mark is a
    message and a lane alone (marks need no order). Records share a message through
    :func:`projections.encode_records`; a message of several has the first one's Msg-Id with ``+n``
    (a retried append of the same batch is a duplicate; no two batches start with the same record)."""
    lanes: list[list[_Message]] = []
    runs: dict[str, list[list[_Item]]] = {}
    for item in items:
        subject, payload, msg_id, sent = item
        if msg_id.endswith(SENT_MARK_ID):
            lanes.append([(subject, payload, msg_id, 1)])
            continue
        subject_runs = runs.setdefault(subject, [])
        if subject_runs and subject_runs[-1][-1][3] == sent:
            subject_runs[-1].append(item)
        else:
            subject_runs.append([item])
    for subject, subject_runs in runs.items():
        lane = []
        for run in subject_runs:
            n, sent = len(run), run[0][3]
            msg_id = run[0][2] if n == 1 else f"{run[0][2]}+{n}"
            lane.append((subject, encode_records([r[1] for r in run]), msg_id + (SENT_SUFFIX if sent else ""), n))
        lanes.append(lane)
    return lanes


SENT_MARK_ID = f":{SENT_MARK}"


# ---- the query --------------------------------------------------------------------------------------


class Query(msgspec.Struct, frozen=True):
    user: str = ""
    verb: str = ""
    resource: str = ""
    namespace: str = ""
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    limit: int = DEFAULT_QUERY_EVENTS

    def matches(self, rec: dict[str, Any]) -> bool:
        ref = rec.get("objectRef") or {}
        if self.user and rec.get("user", {}).get("username") != self.user:
            return False
        if self.verb and rec.get("verb") != self.verb:
            return False
        if self.resource and ref.get("resource") != self.resource:
            return False
        if self.namespace and ref.get("namespace") != self.namespace:
            return False
        t = rec.get("stageTimestamp") or rec.get("requestReceivedTimestamp")
        if t and (self.since or self.until):
            when = _parse_time(t)
            if (self.since and when < self.since) or (self.until and when > self.until):
                return False
        return True


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")


def parse_when(value: str, now: datetime.datetime) -> datetime.datetime:
    """An RFC 3339 time, or a duration ago (``90s``, ``15m``, ``2h``, ``7d``); ValueError otherwise."""
    m = _DURATION.match(value)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - datetime.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    return _parse_time(value)


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: A record is stored at most this long after its ``stageTimestamp`` (its wait in the audit queue and
#: its append's deadline, ``APPEND_DEADLINE_S``; a write's event is appended within its request's
#: deadline): a query that reached its limit reads the stream this far (in record time) past it.
LATE_S = 30.0


async def _collect(log: Log, filter_subject: str, q: Query, deadline: float,
                   convert: Callable[[LogMessage], list[dict[str, Any]]]) -> list[tuple[str, int, dict[str, Any]]]:
    """The first ``q.limit`` records in time order (``stageTimestamp``, then sequence) of those that
    ``convert`` makes of the messages of ``log`` stored from ``q.since`` on (up to its head as of now)
    and that match ``q``, as (time, seq, record), oldest first.

    Stream order is not time order (two gateways append concurrently; a batch of the audit stream
    holds records of the time its append waited), but a record is stored after its time, by at most
    ``LATE_S``: so a record read after one of time T is no older than T - ``LATE_S``, and reading stops
    once the records' times are ``LATE_S`` past the ``limit``-th oldest found (or past ``q.until``).
    Memory: at most 2 x ``limit`` records held (cut back to the ``limit`` oldest as they reach that),
    plus the reader's batch. A record stored more than ``LATE_S`` after its time (an audit stream
    stalled that long, or gateways' clocks that far apart) may be left out of an answer that reached
    its limit."""
    head = int((await log.stream_state()).get("last_seq", 0))
    start = 1
    if q.since is not None:
        found = await log.seq_at_time(_rfc3339(q.since))
        if found is None:
            return []
        start = found
    out: list[tuple[str, int, dict[str, Any]]] = []
    limit = q.limit
    if head < start or limit <= 0:
        return out
    stop_after = _rfc3339(q.until + datetime.timedelta(seconds=LATE_S)) if q.until is not None else None
    kth: str | None = None  # the limit-th oldest time found, once ``limit`` were: later ones cannot be in
    newest = ""  # the newest record time read

    def cut() -> None:
        nonlocal kth, stop_after
        out.sort(key=_time_seq)
        del out[limit:]
        if kth != out[-1][0]:
            kth = out[-1][0]
            try:
                late = _rfc3339(_parse_time(kth) + datetime.timedelta(seconds=LATE_S))
            except ValueError:
                return  # (a record without a time: read on)
            stop_after = late if stop_after is None else min(stop_after, late)

    reader = await log.open_reader(filter_subject, start)
    try:
        with trio.move_on_after(max(0.0, deadline - trio.current_time())):
            while True:
                batch = await reader.next_batch()
                at_head = batch[-1].seq >= head or (reader.pending == 0 and reader.buffered == 0)
                for m in batch:
                    if m.seq > head:
                        break
                    for rec in convert(m):
                        t = rec.get("stageTimestamp", "")
                        newest = max(newest, t)
                        if (kth is None or t <= kth) and q.matches(rec):
                            out.append((t, m.seq, rec))
                            if len(out) >= 2 * limit:
                                cut()
                if len(out) >= limit:
                    cut()
                if at_head or (stop_after is not None and newest > stop_after):
                    break
    finally:
        await reader.aclose()
    if len(out) >= limit:
        cut()
    else:
        out.sort(key=_time_seq)
    return out


def _time_seq(t: tuple[str, int, dict[str, Any]]) -> tuple[str, int]:
    return t[0], t[1]


async def query(main: Log, audit_log: Log | None, registry: Registry, policy: Policy, q: Query, *,
                tenant: str = ROOT_TENANT, timeout_s: float) -> list[bytes]:
    """kube's audit JSON lines matching ``q``, oldest first: the writes derived from ``main`` under
    ``policy`` merged by time with the audit stream; at most ``q.limit``. Bounded by ``timeout_s``
    (a partial answer when reading runs out of time)."""
    deadline = trio.current_time() + timeout_s
    versions = {(d.group, d.plural): d.version for d in registry.defs if d.stored}

    def from_log(m: LogMessage) -> list[dict[str, Any]]:
        if is_system_subject(main.prefix, m.subject):
            return []
        rec = record_from_event(main.prefix, m, policy, versions)
        return [] if rec is None else [rec]

    # One tenant's trail: its objects' subjects and its records in the audit stream.
    writes = await _collect(main, f"{main.prefix}.{tenant_token(tenant)}.>", q, deadline, from_log)
    others = [] if audit_log is None else await _collect(audit_log, f"{audit_log.prefix}.{tenant_token(tenant)}",
                                                         q, deadline, lambda m: decode_records(m.data))
    return [_enc.encode(rec) + b"\n" for rec in by_time(writes, others, limit=q.limit)]


def by_time(*found: list[tuple[str, int, dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The records of ``found`` ((stageTimestamp, sequence, record), each list at most a query's
    limit long), oldest first, at most ``limit``. Stream order is not time order: two gateways
    append concurrently, and a batch of reads (:class:`AuditSink`) holds records of the time its
    append waited, so every list is sorted, not merged as it is."""
    merged = sorted(itertools.chain(*found), key=_time_seq)
    return [rec for _, _, rec in merged[:limit]]


# ---- the gateway's side of a request ------------------------------------------------------------

AUDIT_EVENTS_PATH = "/apis/audit.jetkube.io/v1/events"
#: What a query of the audit trail is authorized as: a ``list`` of ``events.audit.jetkube.io``.
AUDIT_EVENTS = ResourceDef("audit.jetkube.io", "v1", "Event", "events", "event", False, verbs=("list",),
                           stored=False)


class AuditNote:
    """What the request handler learned about a request, for its audit record."""

    __slots__ = ("annotations", "ending", "logged", "rdef", "received", "refused", "req", "submitted", "tenant", "user",
                 "verb")

    def __init__(self, verb: str) -> None:
        self.verb = verb
        #: Admission's audit annotations of a request that did not reach the log (a denial's).
        self.annotations: dict[str, str] = {}
        self.user: UserInfo | None = None
        self.tenant = ""
        self.req: Request | None = None
        self.rdef: ResourceDef | None = None
        #: An accepted write that reached the log: audited from its event there, not here.
        self.logged = False
        #: When the request arrived (its requestReceivedTimestamp).
        self.received = ""
        #: blocking-strict refused it (its RequestReceived was not sent): no other stage is.
        self.refused = False
        #: A watch answered 200: its ResponseComplete, built with its ResponseStarted, recorded when
        #: the stream ends (:func:`audit_watch_body`); None: none due (or the policy omits it).
        self.ending: dict[str, Any] | None = None
        #: Handed to the actors (a write may be on the log from then on, whatever the client does).
        self.submitted = False

    def resource_request(self, req: Request) -> None:
        self.req, self.rdef, self.verb = req, req.rdef, req.verb

    def failed(self, error: BaseException) -> None:
        """A request answered with ``error``: keep the audit annotations admission gave it."""
        self.annotations = dict(getattr(error, "audit_annotations", None) or {})

    def written(self, req: Request, code: int, annotations: dict[str, str] | None = None) -> None:
        self.annotations = dict(annotations or {})
        rdef = req.rdef
        dry = req.dry_run  # from the query or a DELETE's DeleteOptions body
        self.logged = (code < 300 and rdef is not None and rdef.stored and not dry
                       and req.subresource not in ("token",))


def _decision(code: int) -> str:
    return "forbid" if code == 403 else "" if code == 401 else "allow"


class AuditRefused(Exception):
    """blocking-strict: the RequestReceived stage could not be sent; kube's audit filter answers
    ``responsewriters.InternalError``: 500, text/plain, this body."""

    def __init__(self, uri: str) -> None:
        super().__init__("failed to store audit event")
        # Go's %#v of the request URI: a double-quoted string literal.
        self.body = f"Internal Server Error: {json.dumps(uri, ensure_ascii=False)}: failed to store audit event"


async def audit_received(sink: AuditSink | None, note: AuditNote, audit_id: str,
                         http: tuple[str, str, str, str] | None = None) -> None:
    """Blocking modes only: send the request's ``RequestReceived`` event and wait (unless the policy
    omits that stage or audits nothing of it); a write's events are followed from here on. Raises
    :class:`AuditRefused` when strict and the webhook did not take it: nothing else is done."""
    b = None if sink is None else sink.blocking
    if b is None:
        return
    assert sink is not None
    req = note.req
    if req is not None and req.rdef is not None and req.rdef.stored and req.verb not in _READS:
        b.expect(audit_id)
    rec, uri = _build(sink, note, audit_id, 0, note.received, http, "RequestReceived")
    if rec is None:
        return
    rec.pop("responseStatus", None)
    rec["stageTimestamp"] = rec["requestReceivedTimestamp"]  # as kube's, for this stage
    if not await b.send([rec]) and b.strict:
        note.refused = True
        b.drop(audit_id)
        raise AuditRefused(uri)


_READS = frozenset({"get", "list", "watch"})


async def audit_request(sink: AuditSink, note: AuditNote, audit_id: str, code: int, received: str,
                        http: tuple[str, str, str, str] | None = None) -> None:
    """Record a finished request on the audit stream, unless its write is on the log. Reads never
    wait (dropped and counted when the queue is full); denials (>= 400) wait briefly, except flow
    control's 429s, which are a flood's answers: they never wait either. Never fails
    the request: a record that cannot be built is logged (without it) and counted. ``http``: (path,
    URI, source address, User-Agent) for a request answered outside Quart (the gateway's gate);
    otherwise Quart's current request's."""
    if note.refused:
        return
    b = sink.blocking
    if note.logged:
        if b is not None:
            # Blocking modes: the write's records, derived from its events, before the answer.
            try:
                sink.submit_sent(audit_id, await b.deliver_write(audit_id))
            except Exception as e:  # noqa: BLE001 - the forwarder sends them; the answer stands
                _log.error("audit webhook: request %s's events not sent: %s", audit_id, type(e).__name__)
        return
    if b is not None:
        b.drop(audit_id)  # a write that did not reach the log (refused, failed, dry run)
    try:
        await _audit_request(sink, note, audit_id, code, received, http)
    except Exception as e:  # noqa: BLE001 - the answer is already decided; the audit must not change it
        sink.dropped["failed"] += 1
        _log.error("no audit record for request %s: %s", audit_id, type(e).__name__)


def _build(sink: AuditSink, note: AuditNote, audit_id: str, code: int, received: str,
           http: tuple[str, str, str, str] | None, stage: str) -> tuple[dict[str, Any] | None, str]:
    """The record of ``stage`` of a request that is not audited from the log, and its URI."""
    user, req, rdef = note.user, note.req, note.rdef
    if http is None:
        # The request URI as kube records it, query included (tokens travel in headers, never here).
        uri = request.full_path.rstrip("?") if hasattr(request, "full_path") else request.path
        http = (request.path, uri, request.remote_addr or "", request.headers.get("User-Agent", ""))
    path, uri, source, user_agent = http
    attrs = Attributes(
        user.name if user else "", tuple(user.groups) if user else (), note.verb, rdef is not None,
        rdef.group if rdef else "", rdef.plural if rdef else "", req.subresource if req else "",
        req.namespace if req else "", req.name if req else "", path)
    rec = record_for_request(sink.policy, attrs, audit_id=audit_id, uid=user.uid if user else "",
                             source=source, user_agent=user_agent,
                             code=code, received=received, version=rdef.version if rdef else "", uri=uri,
                             decision=_decision(code) if code else "", stage=stage, tenant=note.tenant,
                             impersonator=user.impersonator if user else "",
                             annotations=note.annotations if code else None, decided=sink.decide(attrs))
    return rec, uri


async def _audit_request(sink: AuditSink, note: AuditNote, audit_id: str, code: int, received: str,
                         http: tuple[str, str, str, str] | None) -> None:
    stage = "ResponseComplete"
    if note.verb == "watch" and code == 200:
        # kube's auditResponseWriter: ResponseStarted as the headers go out, ResponseComplete with
        # the same status when the handler returns (the stream ended); each under the policy's
        # omitStages. Built now, while the request's attributes are at hand.
        stage = "ResponseStarted"
        note.ending, _ = _build(sink, note, audit_id, code, received, http, "ResponseComplete")
    rec, _ = _build(sink, note, audit_id, code, received, http, stage)
    if rec is None:
        return
    # Blocking modes: the webhook has it before the answer goes out (or the forwarder sends it later).
    sent = sink.blocking is not None and await sink.blocking.send([rec])
    if code >= 400 and code != 429:
        await sink.submit_denial(rec, note.tenant, sent=sent)
    else:
        sink.submit(rec, note.tenant, sent=sent)


#: How long a request's last stage may wait for the webhook (blocking modes) once its stream has
#: ended or its client has gone: shielded from cancellation, so this bounds how long a watch's end
#: or a cancelled request (and so shutdown) can be held up by a slow webhook. Not accepted within
#: it: the record goes to the audit stream unmarked, and the forwarder sends it later.
END_SEND_S = 2.0

#: kube's status of a request answered with nothing (its client went away): WithAudit's
#: ``fakedSuccessStatus``.
CLOSED_EARLY = {"metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200}


async def _record_end(sink: AuditSink, tenant: str, records: list[dict[str, Any]]) -> None:
    """Record a request's last stage(s) (in order), whatever is cancelling this task: blocking modes
    send them first, shielded and bounded by ``min(END_SEND_S, blocking_timeout_s)``; then (or in
    batch mode only) they go to the audit stream's queue, which never waits. A caller being
    cancelled is cancelled again at its next checkpoint after this returns: nothing is swallowed."""
    sent = False
    b = sink.blocking
    if b is not None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + END_SEND_S):
            sent = await b.send(records)
    for rec in records:
        sink.submit(rec, tenant, sent=sent)


async def audit_watch_body(sink: AuditSink, note: AuditNote, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``body`` (a watch answered 200, its ResponseStarted recorded), with its ResponseComplete
    recorded once it ends, however it ends (its timeout, shutdown, the client going away), after
    ``body`` is closed. Closes ``body``."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await body.aclose()  # type: ignore[attr-defined]
        await audit_watch_end(sink, note)


async def audit_watch_end(sink: AuditSink, note: AuditNote) -> None:
    """A watch's ResponseComplete (prepared by :func:`audit_request`), once; nothing if none is due."""
    rec, note.ending = note.ending, None
    if rec is None:
        return
    rec["stageTimestamp"] = now_micro()
    try:
        await _record_end(sink, note.tenant, [rec])
    except Exception as e:  # noqa: BLE001 - the stream is over; the audit must not fail it
        sink.dropped["failed"] += 1
        _log.error("no ResponseComplete for watch %s: %s", rec.get("auditID", ""), type(e).__name__)


async def audit_gone(sink: AuditSink | None, note: AuditNote, audit_id: str, received: str,
                     http: tuple[str, str, str, str] | None = None) -> None:
    """A request whose client went away before its answer (its handler cancelled, a 499 in the
    request log): its ResponseComplete as kube's WithAudit records it when the handler returns with
    nothing written (status 200 "Connection closed early"; a watch's ResponseStarted first). None
    for a request not yet authenticated (kube audits after authentication), one strict mode refused,
    or a write of a stored kind once submitted: if it reached the log it is audited from its event there."""
    if sink is None or note.refused or note.user is None:
        return
    req = note.req
    if req is not None and req.rdef is not None and req.rdef.stored and note.verb not in _READS and not req.dry_run:
        if sink.blocking is not None:
            # Nobody waits for its events now: on the log or not, the tap stops keeping them (a write
            # that reached the log is audited from it by the forwarder, as its path sent none).
            sink.blocking.drop(audit_id)
        if note.submitted:
            return
    try:
        stages = ("ResponseStarted", "ResponseComplete") if note.verb == "watch" else ("ResponseComplete",)
        records = []
        for stage in stages:
            # (no code: no authorization decision or admission annotation is claimed for it)
            rec, _ = _build(sink, note, audit_id, 0, received, http, stage)
            if rec is not None:
                rec["responseStatus"] = dict(CLOSED_EARLY)
                records.append(rec)
        if records:
            await _record_end(sink, note.tenant, records)
    except Exception as e:  # noqa: BLE001 - the request is over; the audit must not change that
        sink.dropped["failed"] += 1
        _log.error("no ResponseComplete for request %s: %s", audit_id, type(e).__name__)


def parse_query(q: dict[str, str]) -> Query:
    now = datetime.datetime.now(datetime.UTC)
    try:
        since = parse_when(q["since"], now) if q.get("since") else None
        until = parse_when(q["until"], now) if q.get("until") else None
    except ValueError as e:
        raise BadRequest(f"invalid time: {e}") from None
    limit = DEFAULT_QUERY_EVENTS
    if q.get("limit"):
        try:
            limit = int(q["limit"])
        except ValueError:
            raise BadRequest(f"invalid limit {q['limit']!r}") from None
    return Query(user=q.get("user", ""), verb=q.get("verb", ""), resource=q.get("resource", ""),
                 namespace=q.get("namespace", ""), since=since, until=until,
                 limit=max(1, min(limit, MAX_QUERY_EVENTS)))
