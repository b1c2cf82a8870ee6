"""The webhook audit backend: ``--audit-webhook-config-file``, as kube-apiserver's.

The file is a kubeconfig naming the webhook (its current context's, else its first, cluster and
user): the server URL, ``certificate-authority``/``-data`` (or ``insecure-skip-tls-verify``) and a
client certificate (``client-certificate``/``-key``, or their ``-data``) or a bearer token
(``token``/``tokenFile``). Audit events are POSTed to the URL as one ``audit.k8s.io/v1`` EventList
per batch, as kube's batch backend does (``--audit-webhook-batch-max-size``, 400: a batch is sent
when it holds that many events, or ``--audit-webhook-batch-max-wait``, 30s, after its first event
arrived; ``--audit-webhook-batch-throttle-qps``/``-burst``, 10/15, bound the POSTs per second).

Unlike kube's, nothing is kept in a memory buffer that can overflow: the events are the ones the
gateway already keeps (gateway/_audit.py) - accepted writes derived from their events on the log
under the policy, reads and denials from the audit stream - and :class:`AuditForwarder` *follows
both streams*. The streams are the buffer; it holds at most ``--audit-webhook-batch-buffer-size``
(10,000) events read ahead, and when that is full it simply reads no further. So nothing is dropped
(no drop counter: there are no drops; a record the audit stream itself dropped is counted there,
``jetkube_audit_events_dropped_total``) and a dead webhook never blocks a request: the forwarder
falls behind, its lag is in /metrics, and it catches up when the webhook is back.

Delivery is at least once. A batch is retried until the webhook answers 2xx, after
``--audit-webhook-initial-backoff`` (kube's default 10s) growing by 1.5x up to 60 s between tries
(kube gives up after a few tries and drops the batch; here the log still has it, so there is no
reason to). Only after a batch was accepted are the positions reached in the two streams written
to a KV key (bus/_cursor.py), so a restart resumes from there and resends at most the batch in
flight. That key is also a lease: of a fleet of gateways exactly one forwards while its lease is
fresh (15 s, renewed every 5 s), another takes over from the positions written when it lapses.
A cursor that does not exist yet starts at the streams' heads (the webhook gets the events from when
it was configured on, as kube's).

``--audit-webhook-mode blocking`` and ``blocking-strict`` (kube's): the request path itself sends its
events, one EventList per stage, and waits for the webhook before it goes on (:class:`BlockingWebhook`):
``RequestReceived`` once the request is authenticated and routed (unless the policy omits that stage)
and ``ResponseComplete`` (``ResponseStarted`` for a watch) before the response goes out - so a client
has its answer only after the webhook accepted the request's events. A POST is tried as kube's
webhook client does (5 tries, ``--audit-webhook-initial-backoff`` growing 1.5x), all bounded by
``blocking_timeout_s`` (30 s, kube's webhook request timeout). A failure is logged and counted, and the
request goes on; in ``blocking-strict`` a ``RequestReceived`` that could not be sent fails the request
before anything is done, as kube's audit filter does: 500, ``Internal Server Error: "<URI>": failed to
store audit event`` (text/plain).

The trail stays whole: a write's ``ResponseComplete`` is still derived from its event on the log (the
request path reads its own events back from a follower of the log on every gateway, ``_WriteTap``, and
sends exactly the records the forwarder would), and a read's or a denial's still goes to the audit
stream. The forwarder still runs and sends everything the request paths did not: the request path
marks what the webhook accepted (a read's record is appended with a ``:webhook`` Msg-Id; a write's
log sequences go to the audit stream's ``_sys.webhook-sent`` subject) and the forwarder skips what is
marked. It reads the log ``blocking_timeout_s + mark_grace_s`` behind the writes' times, so that a
mark is there before it decides. A write whose gateway died between the append and the answer has no
mark: the forwarder sends it then. A forwarder taking over reads again the marks its predecessor
had read for writes past the log position it saved (the cursor keeps where the first of them is in
the audit stream), so a hand-over sends nothing twice. Delivery stays at least once: a mark lost (the
audit queue full, more than ``MAX_MARKS`` pending, the audit stream's retention, a takeover that
could not read them in time) means a record sent twice, never one missing. A ``RequestReceived`` that failed
in ``blocking`` mode is not sent later (kube drops it too; it is in no trail).
"""

from __future__ import annotations

import base64
import collections
import heapq
import itertools
import logging
import os
import socket
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import msgspec
import trio
import yaml

from bus import BusError, LeasedCursor, Log, LogMessage, decode_event, is_system_subject, system_subject
from kinds import Registry
from projections import Policy, decode_records, parse_time, record_from_event

_log = logging.getLogger("jetkube.audit.webhook")
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

LEASE_S = 15.0
MAX_BACKOFF_S = 60.0
POST_TIMEOUT_S = 30.0
#: kube's ``--audit-webhook-mode`` values.
MODES = ("batch", "blocking", "blocking-strict")
#: kube's webhook client: 5 tries (``DefaultRetryBackoffWithInitialDelay``: factor 1.5, 5 steps).
BLOCKING_TRIES = 5
#: The Msg-Id suffix of an audit stream record the request path already sent (blocking modes).
SENT_SUFFIX = ":webhook"
#: The audit stream's subject (``<prefix>._sys.webhook-sent``) of the log sequences sent that way.
SENT_MARK = "webhook-sent"
#: Marks kept at most for log sequences the forwarder has not reached (older ones are dropped:
#: their records are sent twice, never lost).
MAX_MARKS = 200_000
#: Writes a gateway's request paths wait for their events at once, at most (older ones are dropped:
#: their records are left to the forwarder).
MAX_EXPECTED = 10_000


class AuditWebhookConfigError(ValueError):
    pass


@dataclass(frozen=True)
class WebhookOptions:
    """The ``--audit-webhook-*`` flags (kube's defaults)."""

    config_file: str
    mode: str = "batch"
    batch_max_size: int = 400
    batch_max_wait_s: float = 30.0
    buffer_size: int = 10_000
    throttle_qps: float = 10.0
    throttle_burst: int = 15
    initial_backoff_s: float = 10.0
    lease_s: float = LEASE_S  # not a flag: how long a forwarder's lease lasts unrenewed (tests shorten it)
    #: Not flags (blocking modes): the bound of one stage's delivery on the request path (kube's
    #: webhook request timeout), and the margin the forwarder leaves a mark after it to arrive.
    blocking_timeout_s: float = POST_TIMEOUT_S
    mark_grace_s: float = 5.0

    @property
    def blocking(self) -> bool:
        return self.mode != "batch"

    @property
    def strict(self) -> bool:
        return self.mode == "blocking-strict"


@dataclass
class WebhookTarget:
    url: str
    verify: ssl.SSLContext
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, connections: int = 4) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=self.verify, headers=self.headers,
                                 limits=httpx.Limits(max_connections=connections,
                                                     max_keepalive_connections=max(2, connections // 2)))


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"], validate=True)
        except ValueError as e:
            raise AuditWebhookConfigError(f"{key}-data is not base64: {e}") from None
    if entry.get(key):
        p = Path(entry[key])
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    items = items or []
    for it in items:
        if isinstance(it, dict) and it.get("name") == name:
            return dict(it.get(what) or {})
    if not name and items and isinstance(items[0], dict):
        return dict(items[0].get(what) or {})
    raise AuditWebhookConfigError(f"no {what} named {name!r}")


def load_webhook_config(path: str) -> WebhookTarget:
    """The webhook a kubeconfig names; AuditWebhookConfigError or OSError if unusable."""
    base = Path(path).resolve().parent
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict):
        raise AuditWebhookConfigError("not a kubeconfig")
    ctx_name = doc.get("current-context") or ""
    context = _named(doc.get("contexts"), ctx_name, "context") if doc.get("contexts") else {}
    cluster = _named(doc.get("clusters"), context.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), context.get("user", ""), "user") if doc.get("users") else {}
    url = str(cluster.get("server") or "")
    if not url.startswith(("https://", "http://")):
        raise AuditWebhookConfigError(f"the cluster's server {url!r} is not an http(s) URL")
    ca = _data_or_file(cluster, "certificate-authority", base)
    try:
        ctx = ssl.create_default_context(cadata=ca.decode()) if ca else ssl.create_default_context()
    except (ValueError, ssl.SSLError) as e:
        raise AuditWebhookConfigError(f"invalid certificate-authority: {e}") from None
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = _data_or_file(user, "client-certificate", base), _data_or_file(user, "client-key", base)
    if cert and key:
        # ssl loads a chain from files only: written to a private directory, loaded, removed.
        with tempfile.TemporaryDirectory(prefix="jetkube-auditwh-") as d:
            cf, kf = Path(d) / "cert.pem", Path(d) / "key.pem"
            cf.write_bytes(cert)
            kf.write_bytes(key)
            try:
                ctx.load_cert_chain(str(cf), str(kf))
            except ssl.SSLError as e:
                raise AuditWebhookConfigError(f"invalid client certificate or key: {e}") from None
    elif cert or key:
        raise AuditWebhookConfigError("client-certificate and client-key go together")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = user.get("token") or (Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return WebhookTarget(url=url, verify=ctx, headers=headers)


@dataclass
class ForwarderStats:
    """What /metrics shows of the forwarder (gateway/_metrics.py)."""

    events_sent: int = 0
    batches_sent: int = 0
    post_failures: int = 0
    leader: bool = False
    #: Last sequence handled in each stream ("log", "audit") and each stream's head as last seen.
    position: dict[str, int] = field(default_factory=lambda: {"log": 0, "audit": 0})
    head: dict[str, int] = field(default_factory=lambda: {"log": 0, "audit": 0})


class _LeaseLost(Exception):
    pass


class _Throttle:
    """A token bucket: ``qps`` per second, ``burst`` at most (kube's batch throttle)."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.burst = qps, max(1, burst)
        self.tokens = float(self.burst)
        self.at = trio.current_time()

    async def wait(self) -> None:
        if self.qps <= 0:
            return
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.qps)
        self.at = now
        if self.tokens < 1:
            await trio.sleep((1 - self.tokens) / self.qps)
            self.tokens, self.at = 1.0, trio.current_time()
        self.tokens -= 1


class AuditForwarder:
    """Follows the log and the audit stream and POSTs their audit events to the webhook."""

    def __init__(self, target: WebhookTarget, options: WebhookOptions, main: Log, audit_log: Log,
                 registry: Registry, policy: Policy, cursor: LeasedCursor, *, holder: str = "") -> None:
        self.target, self.options = target, options
        self.main, self.audit_log = main, audit_log
        self.registry, self.policy = registry, policy
        self.cursor = cursor
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = ForwarderStats()
        self._defs: Any = None
        self._stored: dict[tuple[str, str], str] = {}
        #: Log sequences the request paths sent (blocking modes), from the audit stream's marks.
        self._sent: dict[int, None] = {}
        #: (audit stream sequence, highest log sequence) of each mark read, oldest first, while the
        #: log position saved is below that log sequence: the cursor keeps the first one's audit
        #: sequence ("marks"), from which a forwarder taking over reads the marks again (a hand-over
        #: resumes the audit stream past marks of writes the log position has not reached).
        self._mark_at: collections.deque[tuple[int, int]] = collections.deque(maxlen=MAX_MARKS)
        self._mark_subject = system_subject(audit_log.prefix, SENT_MARK)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        try:
            await self._run(task_status)
        finally:
            if self.stats.leader:  # a gateway that stops hands over at once, from the positions written
                self.stats.leader = False
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    try:
                        await self.cursor.release(self.holder)
                    except BusError:
                        pass

    async def _run(self, task_status: trio.TaskStatus[None]) -> NoReturn:
        lease_s = self.options.lease_s
        started = False
        backoff = 0.5
        async with self.target.client() as client:
            while True:
                state = None
                try:
                    state = await self.cursor.claim(self.holder, lease_s)
                    if state is not None and not {"log", "audit"} <= state.keys():
                        # a new cursor: from the heads as of now, kept before any request is served
                        state = {"log": await self.main.head(), "audit": await self.audit_log.head()}
                        state = await self.cursor.claim(self.holder, lease_s, state)
                except BusError as e:
                    _log.warning("audit webhook: the cursor is not available: %s", e)
                if not started:
                    task_status.started()
                    started = True
                if state is None:
                    self.stats.leader = False
                    await trio.sleep(lease_s / 3)
                    continue
                self.stats.leader = True
                try:
                    await self._forward(client, int(state["log"]), int(state["audit"]), int(state.get("marks", 0)))
                except _LeaseLost:
                    _log.info("audit webhook: the lease went to another gateway")
                    backoff = 0.5
                except Exception as e:  # noqa: BLE001 - a reader's or the bus's failure (maybe grouped): resume
                    _log.warning("audit webhook: following the streams failed (%r); resuming", e)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                self.stats.leader = False

    async def _forward(self, client: httpx.AsyncClient, log_pos: int, audit_pos: int, marks_from: int = 0) -> None:
        lease_s = self.options.lease_s
        self.stats.position = {"log": log_pos, "audit": audit_pos}
        if 0 < marks_from <= audit_pos:
            await self._recover_marks(marks_from, audit_pos)
        send, recv = trio.open_memory_channel[tuple[str, int, dict[str, Any] | None]](self.options.buffer_size)
        lost = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, self.main, "log", log_pos + 1, send.clone())
            nursery.start_soon(self._follow, self.audit_log, "audit", audit_pos + 1, send.clone())
            send.close()

            async def renew() -> None:
                nonlocal lost
                last_ok = trio.current_time()
                while True:
                    await trio.sleep(lease_s / 3)
                    try:
                        if await self.cursor.claim(self.holder, lease_s) is None:
                            lost = True
                            nursery.cancel_scope.cancel()
                            return
                        last_ok = trio.current_time()
                    except BusError as e:
                        _log.warning("audit webhook: renewing the lease failed: %s", e)
                        if trio.current_time() - last_ok > lease_s:
                            lost = True
                            nursery.cancel_scope.cancel()
                            return

            nursery.start_soon(renew)
            await self._send_batches(client, recv)
        if lost:
            raise _LeaseLost

    async def _follow(self, log: Log, name: str, start: int,
                      out: trio.MemorySendChannel[tuple[str, int, dict[str, Any] | None]]) -> None:
        reader = await log.open_reader(f"{log.prefix}.>", start)
        behind = self.options.blocking_timeout_s + self.options.mark_grace_s
        hold = self.options.blocking and name == "log"
        try:
            async with out:
                while True:
                    for m in await reader.next_batch():
                        self.stats.head[name] = max(self.stats.head[name], m.seq + max(0, reader.pending))
                        if hold:
                            await self._hold(log, m, behind)
                        if name == "audit" and m.data[:1] == b"[":
                            # several records in one message: the position moves past it with its
                            # last (a restart inside it sends its records again, never skips them)
                            recs = self._batch(m)
                            for i, rec in enumerate(recs, 1 - len(recs)):
                                await out.send((name, m.seq - (i < 0), rec))
                            continue
                        await out.send((name, m.seq, self._record(log, name, m, self._versions())))
        finally:
            with trio.CancelScope(shield=True):
                await reader.aclose()

    def _versions(self) -> dict[tuple[str, str], str]:
        """(group, resource) -> stored version, rebuilt when the registry's definitions change (a CRD)."""
        defs = self.registry.defs
        if defs is not self._defs:
            self._defs, self._stored = defs, {(d.group, d.plural): d.version for d in defs if d.stored}
        return self._stored

    @staticmethod
    async def _hold(log: Log, m: LogMessage, behind: float) -> None:
        """Blocking modes: wait until the write at ``m`` is ``behind`` seconds old, so that the mark
        of a request path that sent it is read before the forwarder decides."""
        if is_system_subject(log.prefix, m.subject):
            return
        try:
            written = parse_time(decode_event(m.data).time).timestamp()
        except (ValueError, msgspec.MsgspecError):
            return
        wait = written + 1.0 + behind - time.time()  # the event's time is to the second
        if wait > 0:
            await trio.sleep(min(wait, behind))

    async def _recover_marks(self, start: int, until: int) -> None:
        """A hand-over: read again the marks the audit stream holds from ``start`` (the first one the
        previous forwarder read for log sequences past its saved log position) up to ``until`` (its
        saved audit position, where this one resumes), so that their writes are not sent twice.
        Only the marks' subject is read (filtered by the server); bounded by a third of the lease
        (renewed only once forwarding starts): if that runs out, those records may be sent twice
        (never lost)."""
        found = 0
        with trio.move_on_after(self.options.lease_s / 3) as scope:
            reader = await self.audit_log.open_reader(self._mark_subject, start)
            try:
                while True:
                    batch = await reader.next_batch()
                    for m in batch:
                        if m.seq > until:
                            return
                        self._note_sent(m.data, m.seq)
                        found += 1
                    if batch[-1].seq >= until or (reader.pending == 0 and reader.buffered == 0):
                        break
            finally:
                with trio.CancelScope(shield=True):
                    await reader.aclose()
        if scope.cancelled_caught:
            _log.warning("audit webhook: the marks of the previous forwarder were not all read (%d); some records "
                         "may be sent twice", found)

    def _note_sent(self, data: bytes, at: int = 0) -> None:
        reached = self.stats.position["log"]
        top = 0
        for seq in _dec.decode(data).get("seqs", ()):
            if isinstance(seq, int) and seq > reached:
                self._sent[seq] = None
                top = max(top, seq)
        if at and top:
            self._mark_at.append((at, top))
        while len(self._sent) > MAX_MARKS:
            del self._sent[next(iter(self._sent))]

    @staticmethod
    def _batch(m: LogMessage) -> list[dict[str, Any] | None]:
        """The records of an audit stream message of several (gateway/_audit.py); none when the request
        paths sent them (blocking modes) or it cannot be read: [None], to move the position past it."""
        if m.msg_id.endswith(SENT_SUFFIX):
            return [None]
        try:
            return list(decode_records(m.data)) or [None]
        except msgspec.MsgspecError as e:
            _log.error("audit webhook: no audit events for audit sequence %d: %s", m.seq, type(e).__name__)
            return [None]

    def _record(self, log: Log, name: str, m: LogMessage, versions: dict[tuple[str, str], str]) -> (
            dict[str, Any] | None):
        try:
            if name == "audit":
                if m.subject == self._mark_subject:
                    self._note_sent(m.data, m.seq)
                    return None
                if m.msg_id.endswith(SENT_SUFFIX):
                    return None  # the request path sent it (blocking modes)
                return dict(_dec.decode(m.data))
            if is_system_subject(log.prefix, m.subject):
                return None
            if m.seq in self._sent:
                del self._sent[m.seq]
                return None  # the request path sent it (blocking modes)
            return record_from_event(log.prefix, m, self.policy, versions)
        except Exception as e:  # noqa: BLE001 - one undecodable message must not stop the trail
            _log.error("audit webhook: no audit event for %s sequence %d: %s", name, m.seq, type(e).__name__)
            return None

    async def _send_batches(self, client: httpx.AsyncClient,
                            recv: trio.MemoryReceiveChannel[tuple[str, int, dict[str, Any] | None]]) -> None:
        o = self.options
        lease_s = o.lease_s
        throttle = _Throttle(o.throttle_qps, o.throttle_burst)
        pos = dict(self.stats.position)
        while True:
            batch: list[dict[str, Any]] = []
            name, seq, rec = await recv.receive()
            pos[name] = seq
            if rec is not None:
                batch.append(rec)
            with trio.move_on_after(o.batch_max_wait_s):
                while len(batch) < o.batch_max_size:
                    name, seq, rec = await recv.receive()
                    pos[name] = seq
                    if rec is not None:
                        batch.append(rec)
            if batch:
                await throttle.wait()
                await self._post(client, batch)
            marks = self._mark_at
            while marks and marks[0][1] <= pos["log"]:
                marks.popleft()  # its writes are behind the position saved
            try:
                await self.cursor.claim(self.holder, lease_s, {**pos, "marks": marks[0][0] if marks else 0})
            except BusError as e:  # the next batch writes it; a restart resends at most these
                _log.warning("audit webhook: the position was not saved: %s", e)
            self.stats.position = dict(pos)

    async def _post(self, client: httpx.AsyncClient, items: list[dict[str, Any]]) -> None:
        """POST one EventList until the webhook accepts it (2xx), backing off between tries."""
        body = _enc.encode({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        delay = self.options.initial_backoff_s
        while True:
            err = ""
            with trio.move_on_after(POST_TIMEOUT_S) as scope:
                try:
                    r = await client.post(self.target.url, content=body)
                    if 200 <= r.status_code < 300:
                        self.stats.events_sent += len(items)
                        self.stats.batches_sent += 1
                        return
                    err = f"status {r.status_code}"
                except httpx.HTTPError as e:
                    err = type(e).__name__
            if scope.cancelled_caught:
                err = "timeout"
            self.stats.post_failures += 1
            _log.warning("audit webhook: POST of %d events failed (%s); retrying in %.1fs", len(items), err, delay)
            await trio.sleep(delay)
            delay = min(max(delay, 0.05) * 1.5, MAX_BACKOFF_S)


class _WriteTap:
    """A follower of the log on each gateway (blocking modes): keeps the messages of the writes its
    request paths wait for, by audit ID (the first part of an append's Msg-Id), so that a request can
    send the audit records derived from its own events. Holds nothing else; bounded."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.position = 0
        self._wanted: dict[str, list[LogMessage]] = {}
        self._waiters: list[tuple[int, int, trio.Event]] = []
        self._tie = itertools.count()

    def expect(self, audit_id: str) -> None:
        if audit_id in self._wanted:
            return
        while len(self._wanted) >= MAX_EXPECTED:
            del self._wanted[next(iter(self._wanted))]
        self._wanted[audit_id] = []

    def drop(self, audit_id: str) -> None:
        self._wanted.pop(audit_id, None)

    async def take(self, audit_id: str, upto: int) -> list[LogMessage] | None:
        """The messages of ``audit_id`` once the tap has read up to ``upto``; None if it was not
        expected (or dropped). The caller bounds the wait."""
        try:
            if self.position < upto:
                ev = trio.Event()
                heapq.heappush(self._waiters, (upto, next(self._tie), ev))
                await ev.wait()
            return self._wanted.get(audit_id)
        finally:
            self._wanted.pop(audit_id, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        delay = 0.1
        while True:
            try:
                self.position = await self.log.head()
                break
            except (BusError, trio.TooSlowError) as e:
                _log.warning("audit webhook: reading the log head failed: %s", e)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
        task_status.started()
        while True:
            try:
                reader = await self.log.open_reader(f"{self.log.prefix}.>", self.position + 1)
                try:
                    while True:
                        batch = await reader.next_batch()
                        wanted = self._wanted
                        if wanted:
                            for m in batch:
                                mine = wanted.get(m.msg_id.partition(":")[0])
                                if mine is not None:
                                    mine.append(m)
                        self.position = batch[-1].seq
                        w = self._waiters
                        while w and w[0][0] <= self.position:
                            heapq.heappop(w)[2].set()
                        delay = 0.1
                finally:
                    with trio.CancelScope(shield=True):
                        await reader.aclose()
            except (BusError, trio.TooSlowError) as e:
                _log.warning("audit webhook: following the log for the request paths failed (%s); resuming", e)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)


class BlockingWebhook:
    """``--audit-webhook-mode blocking|blocking-strict``: the request path's side (see the module's
    doc). :meth:`send` POSTs one stage's events and says whether the webhook accepted them."""

    def __init__(self, target: WebhookTarget, options: WebhookOptions, main: Log, registry: Registry,
                 policy: Policy, stats: ForwarderStats, applied: Callable[[], int]) -> None:
        self.target, self.options = target, options
        self.main, self.registry, self.policy = main, registry, policy
        self.stats = stats
        #: The local projection's applied sequence: a write's events are at or below it once the
        #: write answered (the resource actor waits for its projection).
        self.applied = applied
        self.tap = _WriteTap(main)
        self.strict = options.strict
        self._client: httpx.AsyncClient | None = None
        self._defs: Any = None
        self._stored: dict[tuple[str, str], str] = {}
        self._warned = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        async with self.target.client(connections=64) as client, trio.open_nursery() as nursery:
            self._client = client
            try:
                await nursery.start(self.tap.run)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._client = None

    def expect(self, audit_id: str) -> None:
        """A write begins: keep its events as the tap reads them."""
        self.tap.expect(audit_id)

    def drop(self, audit_id: str) -> None:
        self.tap.drop(audit_id)

    async def send(self, items: list[dict[str, Any]]) -> bool:
        """POST one EventList as kube's webhook client (5 tries, backing off), bounded by
        ``blocking_timeout_s``; True once the webhook accepted it (2xx)."""
        client = self._client
        if client is None:
            return False
        body = _enc.encode({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        delay = self.options.initial_backoff_s
        err = ""
        with trio.move_on_after(self.options.blocking_timeout_s) as scope:
            for attempt in range(BLOCKING_TRIES):
                try:
                    r = await client.post(self.target.url, content=body)
                    if 200 <= r.status_code < 300:
                        self.stats.events_sent += len(items)
                        self.stats.batches_sent += 1
                        return True
                    err = f"status {r.status_code}"
                except httpx.HTTPError as e:
                    err = type(e).__name__
                self.stats.post_failures += 1
                if attempt + 1 < BLOCKING_TRIES:
                    await trio.sleep(delay)
                    delay *= 1.5
            err = f"{err}, {BLOCKING_TRIES} tries"
        if scope.cancelled_caught:
            self.stats.post_failures += 1
            err = f"not accepted within {self.options.blocking_timeout_s:g}s{', ' + err if err else ''}"
        now = time.monotonic()
        if now - self._warned >= 1.0:  # one line a second at most, whatever the request rate
            self._warned = now
            _log.warning("audit webhook: a request's %d events were not accepted (%s)", len(items), err)
        return False

    def _versions(self) -> dict[tuple[str, str], str]:
        defs = self.registry.defs
        if defs is not self._defs:
            self._defs, self._stored = defs, {(d.group, d.plural): d.version for d in defs if d.stored}
        return self._stored

    async def deliver_write(self, audit_id: str) -> list[int]:
        """Send the ``ResponseComplete`` records of the write ``audit_id`` appended, derived from its
        events on the log as the forwarder derives them; the log sequences the webhook accepted
        ([] when none: the forwarder sends them later)."""
        msgs: list[LogMessage] | None = None
        with trio.move_on_after(self.options.blocking_timeout_s):
            msgs = await self.tap.take(audit_id, self.applied())
        if not msgs:
            return []
        prefix, versions = self.main.prefix, self._versions()
        records = []
        for m in msgs:
            if is_system_subject(prefix, m.subject):
                continue
            try:
                rec = record_from_event(prefix, m, self.policy, versions)
            except Exception as e:  # noqa: BLE001 - as the forwarder: one undecodable message is logged
                _log.error("audit webhook: no audit event for log sequence %d: %s", m.seq, type(e).__name__)
                return []
            if rec is not None:
                records.append(rec)
        if records and not await self.send(records):
            return []
        return [m.seq for m in msgs]


def parse_duration(value: str) -> float:
    """Seconds of a Go-style duration (``30s``, ``500ms``, ``1m``, ``1h``) or a plain number."""
    v = value.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if v.endswith(suffix) and not (suffix == "s" and v.endswith("ms")):
            return float(v[: -len(suffix)]) * mult
    return float(v)
