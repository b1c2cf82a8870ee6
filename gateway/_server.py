"""``serve``: the whole server in one nursery, started in dependency order.

nats-server (embedded, unless a URL is given) -> bridge -> log (stream ensured) -> projection
(caught up with the head captured at start) -> actor pipeline (default namespaces bootstrapped)
-> HTTP listeners. Shutdown runs the other way: readiness answers 503 at once, the listeners stop
after the shutdown delay (0 by default), open watches end cleanly, other requests get the graceful window, then everything else is cancelled; the embedded nats-server is
terminated last.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.trio import serve as hypercorn_serve

from actors import (
    AllocationSettings,
    Authenticator,
    CertificateAuthority,
    FrontProxy,
    Pipeline,
    RetentionSettings,
    RetentionStats,
    SigningKey,
    TokenAuthenticator,
    UserInfo,
    parse_token_csv,
    run_retention,
)
from bus import LeasedCursor, Log, NatsAuth, StreamConfig, open_bridge, open_log, run_nats_server
from kinds import Registry, load_schemas
from projections import (
    Projection,
    ProjectionSettings,
    ResourceVersionTooLarge,
    SnapshotSettings,
    TooOldResourceVersion,
    check_retained,
    resolve_version,
)

from . import _hypercorn_ext
from ._app import Context, create_app
from ._audit import AuditSink
from ._audit_webhook import AuditForwarder, BlockingWebhook, load_webhook_config
from ._loopprobe import run_from_env as run_loop_probe
from ._pki import Pki, ensure_data_dir, ensure_pki, ensure_service_account_key, write_kubeconfig
from ._settings import AuthenticationSetup, Settings, issuer_keys, load_authentication_config

if TYPE_CHECKING:
    from ._workers import WorkerLink

log = logging.getLogger("jetkube")


@dataclass(frozen=True)
class Running:
    """What ``serve`` reports once ready."""

    https_url: str
    http_url: str | None
    kubeconfig: Path
    nats_url: str
    admin_token: str


async def serve(settings: Settings, *, shutdown: trio.Event | None = None, span_exporter: Any = None,
                worker: WorkerLink | None = None,
                task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    """Run until ``shutdown`` is set (or the task is cancelled); report :class:`Running` when ready.

    ``span_exporter`` (tests): an OpenTelemetry ``SpanExporter`` used instead of OTLP when
    ``settings.tracing`` is set. ``worker``: this is one of ``serve --workers N``'s processes
    (gateway/_workers.py): it listens on the ports its parent reserved, and leaves the
    kubeconfig to the parent."""
    gc_thresholds_from_env()  # a malformed JETKUBE_GC_THRESHOLD: refused now, not once caught up
    data_dir = Path(settings.data_dir)
    pki, tokens, signing_key, ca_pem, client_ca, proxy_ca = await trio.to_thread.run_sync(_first_start, settings)
    authn = AuthenticationSetup()
    if settings.authentication_config:  # OIDC issuers' keys may be fetched: off the event loop
        authn = await trio.to_thread.run_sync(partial(load_authentication_config, settings.authentication_config,
                                                      anonymous_flag=settings.anonymous_auth))
    authenticator = Authenticator(
        TokenAuthenticator(tokens), client_ca=CertificateAuthority(client_ca),
        front_proxy=FrontProxy(CertificateAuthority(proxy_ca), settings.requestheader_allowed_names)
        if proxy_ca else None, anonymous=settings.anonymous_auth or authn.anonymous,
        anonymous_paths=authn.anonymous_paths, oidc=authn.oidc)
    # The built-in kinds' schemas (1.4 MB of JSON): read once, here, off the trio loop, before serving.
    await trio.to_thread.run_sync(load_schemas)
    registry = Registry()
    shutdown = trio.Event() if shutdown is None else shutdown
    async with AsyncExitStack() as stack:
        tracing = None
        if settings.tracing is not None:
            from ._tracing import Tracing  # OpenTelemetry is imported only when tracing is on

            tracing = Tracing(settings.tracing, registry, exporter=span_exporter)
            stack.push_async_callback(tracing.aclose)
        nats_url, auth = settings.nats_url, settings.nats_auth
        if not nats_url:
            nats_url = await stack.enter_async_context(run_nats_server(
                data_dir / "nats", restart_delay_s=settings.nats_restart_delay_s))
            auth = NatsAuth()  # the embedded server's credentials are in its URL
        bridge = await stack.enter_async_context(open_bridge(nats_url, auth=auth))
        log_ = await open_log(bridge, StreamConfig(name=settings.stream, prefix=settings.subject_prefix,
                                                   replicas=settings.stream_replicas),
                              encryption=settings.encryption)
        audit_log = await open_log(bridge, StreamConfig(
            name=f"{settings.stream}_AUDIT", prefix=f"{settings.subject_prefix}audit",
            replicas=settings.stream_replicas, max_age_s=settings.audit_max_age_s,
            max_bytes=settings.audit_max_bytes, duplicate_window_s=min(120.0, settings.audit_max_age_s)))
        audit = AuditSink(audit_log, settings.audit_policy, queue_size=settings.audit_queue)
        at = await _read_only_at(log_, settings.read_only_at) if settings.read_only_at else 0
        projection = Projection(log_, ProjectionSettings(ring_size=settings.watch_ring_size,
                                                         watch_queue=settings.watch_queue,
                                                         bookmark_interval_s=settings.bookmark_interval_s,
                                                         stop_at=at,
                                                         # a server frozen at a past version folds
                                                         # up to it: no snapshot (they are newer)
                                                         snapshots=None if at else _snapshot_settings(settings)))
        projection.crds.attach(registry)  # CRD-defined kinds are served as their CRDs are established
        if tracing is not None:
            projection.trace_wait = partial(tracing.current_child, "consistent read wait")
        async with trio.open_nursery() as nursery:
            await nursery.start(run_loop_probe)  # JETKUBE_LOOP_PROBE: a diagnostic of loop stalls, else nothing
            await nursery.start(projection.run)
            tune_gc()  # the state folded at start lives long; then the collector's thresholds
            nursery.start_soon(pace_young_collections)  # no young generation of tens of thousands
            pipeline = Pipeline(log_, projection, registry, authenticator, signing_key,
                                root_ca_pem=ca_pem, run_controllers=settings.run_controllers and not settings.read_only,
                                spans=tracing,
                                authorization_modes=settings.authorization_modes,
                                allocation=AllocationSettings(settings.service_cluster_ip_range,
                                                              settings.service_node_port_range),
                                api_endpoint=(settings.host, settings.port or 6443),
                                server_concurrency=settings.max_requests_inflight
                                + settings.max_mutating_requests_inflight,
                                queue_wait_s=settings.request_timeout_s / 4,
                                # No write outlives its request: after that long, a quota's charges
                                # all belong to writes that ended (the quota controller's wait).
                                quota_settle_s=settings.request_timeout_s,
                                apf_fleet_period_s=settings.apf_fleet_period_s,
                                apf_fleet_lease_ttl_s=settings.apf_fleet_lease_ttl_s,
                                apf_fleet_fallback=settings.apf_fleet_fallback)
            await nursery.start(pipeline.run)
            if authn.oidc:
                nursery.start_soon(_refresh_oidc_keys, authn, settings.oidc_keys_refresh_s)
            await nursery.start(audit.run)
            ctx = Context(settings, registry, pipeline, projection, audit=audit)
            await nursery.start(ctx.watches.run)  # the watches' deadlines
            if settings.audit_webhook is not None:
                # One gateway of the fleet forwards (a KV lease), from the positions it remembers.
                forwarder = AuditForwarder(
                    load_webhook_config(settings.audit_webhook.config_file), settings.audit_webhook, log_, audit_log,
                    registry, settings.audit_policy,
                    LeasedCursor(bridge, f"{settings.stream}_AUDITWEBHOOK", "cursor", replicas=settings.stream_replicas,
                                 description="jetkube: which gateway forwards audit events to the webhook, "
                                             "and how far it got"))
                ctx.metrics.audit_webhook = forwarder.stats
                await nursery.start(forwarder.run)
                if settings.audit_webhook.blocking:
                    # The request paths send their own events and wait (before any is served).
                    audit.blocking = BlockingWebhook(
                        forwarder.target, settings.audit_webhook, log_, registry, settings.audit_policy,
                        forwarder.stats, lambda: projection.store.applied)
                    await nursery.start(audit.blocking.run)
            retention = RetentionSettings(max_age_s=settings.history_max_age_s,
                                          max_revisions=settings.history_max_revisions,
                                          interval_s=settings.history_retention_interval_s)
            if retention.enabled and not settings.read_only:
                ctx.metrics.retention = RetentionStats()
                await nursery.start(run_retention, log_, retention, ctx.metrics.retention)
            app = InFlight(create_app(ctx) if tracing is None else tracing.asgi(create_app(ctx)),
                           header=worker.header if worker is not None else None)
            config = _hypercorn_ext.ClientCertConfig()  # requests client certificates
            ctx.metrics.pacer = config.pacer  # jetkube_apf_pacing_* (gateway/_metrics.py)
            config.replay_through = app.replay  # a replayed 429 (gateway/_gate.py) as the first: see InFlight
            # A worker listens on its parent's ports with a socket of its own (SO_REUSEPORT), opened
            # now that it is ready to serve.
            fds = worker.listeners(settings.host) if worker is not None else None
            config.bind = [f"{settings.host}:{settings.port}" if fds is None else f"fd://{fds[0]}"]
            config.certfile, config.keyfile = str(pki.cert), str(pki.key)
            if settings.insecure_port is not None:
                config.insecure_bind = [f"{settings.host}:{settings.insecure_port}" if fds is None
                                        else f"fd://{fds[1]}"]
            config.graceful_timeout = settings.graceful_timeout_s
            # hypercorn's settings (the README's "HTTP server settings" says why): an idle keep-alive
            # connection is kept 75 s (hypercorn's default 5 s would make a client polling every few
            # seconds reconnect, a TLS handshake each time); no cap on the requests a connection
            # carries (hypercorn closes one after 1,000 by default; kube's Go server never does);
            # the rest are hypercorn's defaults: a request head up to 16 KiB (h11_max_incomplete_size),
            # 10 queued body messages per request, 100 concurrent HTTP/2 streams per connection.
            config.keep_alive_timeout = 75
            config.keep_alive_max_requests = sys.maxsize
            config.accesslog = None
            config.errorlog = logging.getLogger("hypercorn.error")
            _hypercorn_ext.install()  # reason phrases (HTTP/1.1), early answers (HTTP/2), client certs

            stop_listening = trio.Event()

            async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await hypercorn_serve(app, config, shutdown_trigger=stop_listening.wait,  # type: ignore[arg-type]
                                      task_status=task_status)

            binds: list[str] = await nursery.start(run_http)
            https = next(b for b in binds if b.startswith("https://"))
            http = next((b for b in binds if b.startswith("http://")), None)
            ctx.server_address = https.removeprefix("https://")
            kubeconfig = Path(settings.kubeconfig) if settings.kubeconfig else data_dir / "kubeconfig"
            if worker is None:  # a worker's parent writes it, once
                write_kubeconfig(kubeconfig, server=https, ca_cert=pki.ca_cert, token=pki.admin_token,
                                 client_cert=pki.admin_cert, client_key=pki.admin_key)
            task_status.started(Running(https, http, kubeconfig, nats_url, pki.admin_token))
            await shutdown.wait()
            # Readiness turns off first; the listeners keep serving for the shutdown delay (a load
            # balancer's health check sees 503 and sends new connections elsewhere), then close.
            ctx.draining = True
            if settings.shutdown_delay_s > 0:
                await trio.sleep(settings.shutdown_delay_s)  # kube's --shutdown-delay-duration
            stop_listening.set()
            # hypercorn stops accepting on the trigger. End the watches (cleanly: each finishes its
            # body), give other requests the graceful window to finish, then stop: what hypercorn
            # still holds then are idle keep-alive connections, which it would keep for the whole
            # graceful window (with quart-trio they are not seen as idle until terminated).
            ctx.watches.end_all()
            with trio.move_on_after(settings.graceful_timeout_s):
                await app.wait_idle()
            nursery.cancel_scope.cancel()


#: Python's cyclic collector's thresholds once the gateway has caught up (:func:`tune_gc`).
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """The one place the gateway sets up Python's cyclic garbage collector, once its projection has
    caught up (``serve`` calls it; a snapshot's restore also freezes what it loaded, at once).

    - ``gc.freeze()``: what the start built (the store folded or loaded from a snapshot, the schemas,
      the modules) lives long; later collections need not walk it. Measured: a gateway that folded
      200,000 events spent about 300 ms in each full collection, one every other Exact LIST.
    - What stays long after the start is kept out of the collector's walks where it cannot be in a
      cycle: the store's entries and the rings' changes are ``gc=False`` Structs
      (projections/_store.py). A full collection then walks what is in flight and the revision
      index's arrays: 15-21 ms of CPU in a gateway after B1 + B4 + B7 (45 ms before, growing with
      the objects stored).
    - Thresholds (10,000, 10, 10) instead of Python's (700, 10, 10): most of what a busy gateway
      allocates dies young by reference counting (young collections found 0-300 garbage objects
      each), so the default mostly walks requests in flight. Measured under B1 + B7 (4 pairs
      alternated, load 9-13, thread CPU time): the collector took 2.8-6.5% of the loop's step time
      with 587-1,844 young collections and 4-15 full ones of 25-34 ms each; 0.6-0.9% with 10,000.
      A lower one shortens each young pause but costs CPU: (2,000, 10, 10) under B1 + B4 + B7 took
      2.6-4.1% of the loop's time (1.1-1.8% with 10,000) and its longest pauses were full collections
      of 19-46 ms against 24-44 ms young and middle ones with 10,000: no clear gain in the tail.

    A threshold is never lowered below what an embedder set. ``JETKUBE_GC_THRESHOLD=a,b,c`` replaces
    the three (an experiment's knob; ``serve`` checks it at its start, :func:`gc_thresholds_from_env`).

    A full collection runs first: what the start left as cyclic garbage (the fold's, not yet reached
    by a collection) would otherwise be frozen with the live state, never to be collected."""
    env = gc_thresholds_from_env()
    gc.collect()
    gc.freeze()
    if env is not None:
        gc.set_threshold(*env)
        return
    current = gc.get_threshold()
    gc.set_threshold(*(max(want, have) for want, have in zip(thresholds, current, strict=True)))


#: The longest the young generation goes without a collection (:func:`pace_young_collections`).
YOUNG_GC_PERIOD_S = 0.1


def _collections() -> int:
    return sum(g["collections"] for g in gc.get_stats())


async def pace_young_collections(period_s: float = YOUNG_GC_PERIOD_S) -> None:
    """A young collection every ``period_s`` in which the collector ran none (of any generation).

    CPython 3.11 starts a young collection when its count passes the threshold, and counts
    allocations *minus every deallocation*, of old objects too. Under a flood, old objects dying
    (requests that waited long, their connections) hold the count under the threshold while young
    ones pile up, and the collection that finally runs walks them all at once: measured in B12's
    flood, 4.2 s without one, then a young collection of 66,475 objects taking 38.8 ms (the
    requests of every tenant wait that long). Collected at least every ``period_s``, the young
    generation holds what a tenth of a second allocates. Only the young generation: each such
    collection adds one to the middle generation's count, which only an automatic collection reads
    (it then takes the middle one, as before). Taking the middle one here every tenth time was
    measured worse in the same flood: a middle collection every 1.25 s of 14-31 ms each (they walk
    the flood's requests in flight, and found no garbage), against two in the whole run without.
    An idle gateway collects a nearly empty generation ten times a second (microseconds each); a busy
    one whose count does not reach the threshold pays here what its young collections cost (under
    B1's creates the pacer held 2.9-4.2% of the main thread's py-spy samples)."""
    seen = _collections()
    while True:
        await trio.sleep(period_s)
        now = _collections()
        if now == seen and gc.isenabled() and gc.get_threshold()[0] > 0:  # (threshold 0: collection off)
            gc.collect(0)
            now = _collections()
        seen = now


class GcThresholdError(ValueError):
    """``JETKUBE_GC_THRESHOLD`` is not three non-negative integers."""


def gc_thresholds_from_env() -> tuple[int, int, int] | None:
    """``JETKUBE_GC_THRESHOLD=a,b,c`` as three integers (None: not set); :class:`GcThresholdError`
    with a one-line message when it is malformed. ``serve`` calls it first thing, so a bad value is
    refused at start, not after the projection caught up."""
    env = os.environ.get("JETKUBE_GC_THRESHOLD")
    if not env:
        return None
    try:
        a, b, c = (int(x) for x in env.split(","))
    except ValueError:
        raise GcThresholdError(f"JETKUBE_GC_THRESHOLD={env!r}: want three integers, e.g. 10000,10,10") from None
    if min(a, b, c) < 0:
        raise GcThresholdError(f"JETKUBE_GC_THRESHOLD={env!r}: the thresholds cannot be negative")
    return a, b, c


def _snapshot_settings(settings: Settings) -> SnapshotSettings | None:
    if not settings.snapshots:
        return None
    return SnapshotSettings(write=settings.snapshot_every_events > 0, every_events=settings.snapshot_every_events,
                            every_s=settings.snapshot_every_s, min_interval_s=settings.snapshot_min_interval_s)


class InFlight:
    """An ASGI wrapper that counts the HTTP requests being served, so shutdown can tell when every
    response is complete (the ASGI call returns after the last byte of the body was sent).
    ``header``: one more response header on every answer (a worker's ``x-jetkube-worker``).

    A rejected request answered again by the reject gate's replay (gateway/_gate.py, before hypercorn
    parses it, so not through this ASGI call) goes through :meth:`replay`: counted and with the header
    too. (Not through the tracing wrapper: the gate gives a replayed 429 its span itself.)"""

    def __init__(self, app: Any, *, header: tuple[bytes, bytes] | None = None) -> None:
        self.app = app
        self.header = header
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.active += 1
        if self.active == 1:
            self._idle = trio.Event()
        try:
            if self.header is None:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, partial(_with_header, send, self.header))
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def replay(self, again: Any, send: Any, carry: dict[str, Any]) -> bool:
        """``again(send, carry)`` (a replay: True if it answered) counted as a request in flight, its
        answer with :attr:`header` (``ClientCertConfig.replay_through``)."""
        self.active += 1
        if self.active == 1:
            self._idle = trio.Event()
        try:
            return bool(await again(send if self.header is None else partial(_with_header, send, self.header), carry))
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no request is being served."""
        while self.active:
            await self._idle.wait()


async def _with_header(send: Any, header: tuple[bytes, bytes], message: Any) -> None:
    if message["type"] == "http.response.start":
        message = {**message, "headers": [*message.get("headers", ()), header]}
    await send(message)


async def _refresh_oidc_keys(authn: AuthenticationSetup, interval_s: float) -> None:
    """Fetch (or read) each OIDC issuer's keys again every ``interval_s``: a provider rotating its
    keys is followed without a restart. A failed fetch keeps the keys in use."""
    while True:
        await trio.sleep(interval_s)
        for a in authn.oidc:
            try:
                a.set_keys(await trio.to_thread.run_sync(issuer_keys, a.cfg.issuer))
            except (OSError, ValueError) as e:
                log.warning("refreshing the keys of OIDC issuer %s failed: %s; the previous keys stay", a.issuer, e)


def _first_start(settings: Settings) -> tuple[Pki, dict[str, UserInfo], SigningKey, str, bytes, bytes]:
    """Blocking file work before serving: the data dir (0700), TLS material, tokens, the signing
    key, the cluster CA (PEM) that the root-CA publisher puts in every namespace, the client CA
    bundle and the front proxy's CA bundle (b"": none)."""
    data_dir = Path(settings.data_dir)
    ensure_data_dir(data_dir)
    pki = ensure_pki(data_dir)
    tokens = parse_token_csv(pki.tokens_file.read_text())
    if settings.token_file:
        tokens.update(parse_token_csv(Path(settings.token_file).read_text()))
    key_file = Path(settings.service_account_key_file or ensure_service_account_key(data_dir))
    client_ca = Path(settings.client_ca_file or pki.ca_cert).read_bytes()
    proxy_ca = Path(settings.requestheader_client_ca_file).read_bytes() if settings.requestheader_client_ca_file else b""
    return pki, tokens, SigningKey(key_file.read_bytes()), pki.ca_cert.read_text(), client_ca, proxy_ca


class ReadOnlyAtError(Exception):
    """``serve --read-only --at``: a version the log cannot serve (beyond its head, below its compaction
    point, or not a version or time at all)."""


async def _read_only_at(log: Log, spec: str) -> int:
    try:
        at = await resolve_version(log, spec)
        await check_retained(log, at)
    except ValueError:
        raise ReadOnlyAtError(f"--at {spec!r}: want a resourceVersion or an RFC 3339 time") from None
    except (TooOldResourceVersion, ResourceVersionTooLarge) as e:
        raise ReadOnlyAtError(f"--at {spec}: {e}") from None
    return at
