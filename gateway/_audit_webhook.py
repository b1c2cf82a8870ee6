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
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import ssl
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import msgspec
import trio
import yaml

from bus import BusError, LeasedCursor, Log, LogMessage, is_system_subject
from kinds import Registry
from projections import Policy, record_from_event

_log = logging.getLogger("jetkube.audit.webhook")
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

LEASE_S = 15.0
MAX_BACKOFF_S = 60.0
POST_TIMEOUT_S = 30.0


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


@dataclass
class WebhookTarget:
    url: str
    verify: ssl.SSLContext
    headers: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=self.verify, headers=self.headers,
                                 limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))


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
                    await self._forward(client, int(state["log"]), int(state["audit"]))
                except _LeaseLost:
                    _log.info("audit webhook: the lease went to another gateway")
                    backoff = 0.5
                except Exception as e:  # noqa: BLE001 - a reader's or the bus's failure (maybe grouped): resume
                    _log.warning("audit webhook: following the streams failed (%r); resuming", e)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                self.stats.leader = False

    async def _forward(self, client: httpx.AsyncClient, log_pos: int, audit_pos: int) -> None:
        lease_s = self.options.lease_s
        self.stats.position = {"log": log_pos, "audit": audit_pos}
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
        try:
            async with out:
                while True:
                    for m in await reader.next_batch():
                        self.stats.head[name] = max(self.stats.head[name], m.seq + max(0, reader.pending))
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

    def _record(self, log: Log, name: str, m: LogMessage, versions: dict[tuple[str, str], str]) -> (
            dict[str, Any] | None):
        try:
            if name == "audit":
                return dict(_dec.decode(m.data))
            if is_system_subject(log.prefix, m.subject):
                return None
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
            try:
                await self.cursor.claim(self.holder, lease_s, dict(pos))
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


def parse_duration(value: str) -> float:
    """Seconds of a Go-style duration (``30s``, ``500ms``, ``1m``, ``1h``) or a plain number."""
    v = value.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if v.endswith(suffix) and not (suffix == "s" and v.endswith("ms")):
            return float(v[: -len(suffix)]) * mult
    return float(v)
