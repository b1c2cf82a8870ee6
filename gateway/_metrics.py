"""``/metrics``: kube-apiserver's series (names, labels, buckets) and jetkube's own, per server.

Each server has its own :class:`prometheus_client.CollectorRegistry` (tests run several servers in
one process; the library's global default registry is never used). Request metrics are recorded
once per request, at its end, into plain dicts keyed by label tuples (a dict lookup and a bisect,
no locks); everything else is read at scrape time from the counters the measuring objects keep
(actors, the log, the projection, the NATS bridge). Both are turned into metric families by one
collector when ``/metrics`` is scraped.

Labels follow ``k8s.io/apiserver/pkg/endpoints/metrics``: ``CleanScope`` (a name or a create is
"resource", else a namespace is "namespace", else a resource request is "cluster", else ""),
``CanonicalVerb`` (GET of a collection is LIST) and ``cleanVerb`` (``?watch=true`` or the legacy
``/watch/`` path is WATCH, an apply patch is APPLY, anything unknown is "other"; a DELETE of a
collection is reported as DELETE, as kube does). Non-resource requests carry their path as the
subresource, cut back to a fixed set of paths so that no client can grow the label space.

Tenants: every ``apiserver_*`` series about requests, watches and stored objects carries kube's
labels, unchanged, plus ``tenant`` (the logical cluster; the request's tenant once it is known to
exist, else root, so that no client can grow the label space with made-up names). Summing over
``tenant`` gives kube's series. ``apiserver_admission_webhook_*`` carry the tenant whose webhook
configuration was called (the written object's, which exists). ``apiserver_current_inflight_requests``
is the server's, not a tenant's, and has none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import trio
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from actors import Pipeline
from bus import ROOT_TENANT, BusError, Histogram
from kinds import Registry, ResourceDef
from projections import Projection

from ._routes import Route

#: The content type kube-apiserver serves ``/metrics`` with (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COMPONENT = "apiserver"
RENDER_THREADS = 2  # scrapes rendering at once (worker threads); further scrapes wait

# Buckets exactly as kube's metrics.go declares them.
REQUEST_DURATION_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10,
                            15, 20, 30, 45, 60)
REQUEST_SLI_BUCKETS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)
RESPONSE_SIZE_BUCKETS = tuple(1000.0 * 10**i for i in range(7))  # ExponentialBuckets(1000, 10, 7)
WATCH_EVENT_SIZE_BUCKETS = tuple(1024.0 * 2**i for i in range(8))  # ExponentialBuckets(1024, 2, 8)

_VALID_VERBS = frozenset({"APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH",
                          "POST", "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST"})
_READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
_APPLY_PATCH = "application/apply-patch+yaml"

#: (verb, dry_run, group, version, resource, subresource, scope): the labels of one request.
Labels = tuple[str, str, str, str, str, str, str]

_REQUEST = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
_NO_DRY_RUN = ("verb", "group", "version", "resource", "subresource", "scope", "component")
_GVK = ("group", "version", "kind")
TENANT = "tenant"


def clean_dry_run(values: Sequence[str]) -> str:
    """kube's ``cleanDryRun``: "" without the parameter, "invalid" for a value other than All,
    else the distinct values sorted and joined."""
    if not values:
        return ""
    if any(v != "All" for v in values):
        return "invalid"
    return ",".join(sorted(set(values)))


def request_labels(method: str, route: Route, *, watch: str | None = None, content_type: str | None = None,
                   dry_run: Sequence[str] = (), code: int = 200) -> Labels:
    """The labels kube-apiserver gives this request (see the module docstring); pure."""
    m = method.upper()
    dry = clean_dry_run(dry_run)
    if route.kind != "resource" or route.rdef is None:
        verb = "GET" if m in _READ_ONLY_METHODS else m
        return (verb if verb in _VALID_VERBS else "other", dry, "", "", "", _non_resource_path(route, code), "")
    rdef = route.rdef
    if route.name or m == "POST":
        scope = "resource"
    elif route.namespace:
        scope = "namespace"
    else:
        scope = "cluster"
    if m in _READ_ONLY_METHODS:
        verb = "GET" if scope == "resource" else "LIST"
        if route.legacy_watch or (watch is not None and m == "GET" and watch.lower() not in ("0", "false")):
            verb = "WATCH"
    elif m == "PATCH" and content_type == _APPLY_PATCH:
        verb = "APPLY"
    else:
        verb = m if m in _VALID_VERBS else "other"
    return (verb, dry, rdef.group, route.version, rdef.plural, route.subresource, scope)


def _non_resource_path(route: Route, code: int) -> str:
    """The path as a label, from a fixed set: served discovery and OpenAPI paths are bounded by the
    registry; anything refused or unknown falls back to its top-level path, or ""."""
    if route.kind == "health":
        return "/" + route.group
    if route.kind in ("version", "metrics"):
        return "/" + route.kind
    if route.kind in ("discovery", "openapi"):
        if code < 400:
            return route.path.rstrip("/") or "/"
        return "/" + route.path.strip("/").split("/", 1)[0]
    return ""


class ServerMetrics:
    """Everything ``/metrics`` serves for one server, on its own registry."""

    def kinds(self, tenant: str) -> dict[tuple[str, str], ResourceDef]:
        """The stored kinds of ``tenant``, its CRD-defined ones included (rebuilt when its served
        set changes; tenants without CRDs share the built-in set)."""
        defs = self._registry.for_tenant(tenant).defs
        hit = self._kinds.get(id(defs))
        if hit is None or hit[0] is not defs:
            if len(self._kinds) >= 256:
                self._kinds.clear()  # bounded: rebuilt on the next scrape
            hit = self._kinds[id(defs)] = (defs, {(d.group, d.plural): d for d in defs
                                                  if d.stored and not d.storage and not d.create_as})
        return hit[1]

    def __init__(self, pipeline: Pipeline, projection: Projection, registry: Registry) -> None:
        self.pipeline = pipeline
        self.projection = projection
        self._registry = registry
        # id(defs) -> (defs, stored kinds by (group, plural)): see kinds()
        self._kinds: dict[int, tuple[tuple[ResourceDef, ...], dict[tuple[str, str], ResourceDef]]] = {}
        # The registry, in this order, is what a scrape renders (see render: off the event loop).
        self.registry = CollectorRegistry(auto_describe=False)
        self._system = (ProcessCollector(registry=self.registry), PlatformCollector(registry=self.registry),
                        GCCollector(registry=self.registry))
        self._collector = _Collector(self)
        self.registry.register(self._collector)
        # At most two scrapes render at once (each in a worker thread); more wait for a slot.
        self._render_slots = trio.CapacityLimiter(RENDER_THREADS)
        # API Priority and Fairness: kube's apiserver_flowcontrol_* series, labelled by tenant too.
        self.flow_control = pipeline.flow_control if pipeline is not None else None  # None: per-request cost bench
        self.apf_waits: dict[tuple[str, str, str, str], Histogram] = {}
        if self.flow_control is not None:
            self.flow_control.on_wait = lambda labels, executed, s: _apf_wait(self, labels, executed, s)
        # Request metrics, by label tuple (see Labels) then the tenant; the counter's keys have the
        # code between them: (*labels, code, tenant).
        self.requests: dict[tuple[str, ...], int] = {}
        self.latency: dict[tuple[str, ...], Histogram] = {}
        self.sli_latency: dict[tuple[str, ...], Histogram] = {}
        self.response_sizes: dict[tuple[str, ...], Histogram] = {}
        self.aborts: dict[tuple[str, ...], int] = {}
        self.longrunning: dict[tuple[str, ...], int] = {}
        self.watch_events: dict[tuple[str, str, str, str], int] = {}  # (group, version, kind, tenant)
        self.watch_event_sizes: dict[tuple[str, str, str, str], Histogram] = {}
        #: Requests by (tenant, verb, code): the tenant of a request whose tenant exists, else root
        #: (labels never come from a name nobody created: bounded by the tenants).
        self.tenant_requests: dict[tuple[str, str, str], int] = {}
        #: The gateway's audit stream writer (gateway/_audit.py AuditSink), when auditing is on.
        self.audit: Any = None
        #: The webhook audit backend's counters (gateway/_audit_webhook.py ForwarderStats), when it is on.
        self.audit_webhook: Any = None
        #: History retention's counters (actors/_retention.py RetentionStats), when retention is on.
        self.retention: Any = None
        #: The pacing of rejected HTTP/1.1 connections (gateway/_pacing.py RejectPacer), once serving.
        self.pacer: Any = None
        # Requests being handled ([readOnly, mutating]) and the most seen since the last scrape
        # (kube reports the maximum over its sampling window, not the instant value).
        self.inflight = [0, 0]
        self.inflight_max = [0, 0]
        #: The log's head as read by the last scrape (None before the first, or when unreachable).
        self.head: int | None = None

    # ---- per request --------------------------------------------------------------------------

    def begin(self, method: str) -> int:
        """A request starts: count it in flight; returns its kind for :meth:`end`."""
        kind = 0 if method in _READ_ONLY_METHODS else 1
        n = self.inflight[kind] = self.inflight[kind] + 1
        self.inflight_max[kind] = max(self.inflight_max[kind], n)
        return kind

    def end(self, kind: int) -> None:
        self.inflight[kind] -= 1

    def tenant_request(self, tenant: str, verb: str, code: int) -> None:
        key = (tenant, verb, str(code))
        self.tenant_requests[key] = self.tenant_requests.get(key, 0) + 1

    def observe(self, labels: Labels, code: int, elapsed_s: float, size: int | None,
                tenant: str = ROOT_TENANT) -> None:
        """One finished request in ``tenant``: counter, latency, SLI latency (not for dry runs), and
        the response size of a GET or LIST."""
        key = (*labels, str(code), tenant)
        self.requests[key] = self.requests.get(key, 0) + 1
        full = (*labels, tenant)
        h = self.latency.get(full)
        if h is None:
            h = self.latency[full] = Histogram(REQUEST_DURATION_BUCKETS)
        h.observe(elapsed_s)
        short = (labels[0], *labels[2:], tenant)
        if not labels[1]:
            h = self.sli_latency.get(short)
            if h is None:
                h = self.sli_latency[short] = Histogram(REQUEST_SLI_BUCKETS)
            h.observe(elapsed_s)
        if size is not None and labels[0] in ("GET", "LIST"):
            h = self.response_sizes.get(short)
            if h is None:
                h = self.response_sizes[short] = Histogram(RESPONSE_SIZE_BUCKETS)
            h.observe(size)

    def abort(self, labels: Labels, tenant: str = ROOT_TENANT) -> None:
        """A request cancelled before it was answered (the client went away, or shutdown)."""
        key = (labels[0], *labels[2:], tenant)
        self.aborts[key] = self.aborts.get(key, 0) + 1

    async def watch_body(self, body: AsyncIterator[bytes], labels: Labels, kind: str,
                         started: float, clock: Any, tenant: str = ROOT_TENANT) -> AsyncIterator[bytes]:
        """``body`` (a watch stream), counted: a long-running request while it is open, every event
        line sent and its size, and the request itself (code 200) when the stream ends, as kube
        records a watch at its end. Cancellation closes ``body`` and still records the request."""
        lr = (labels[0], *labels[2:], tenant)
        gvk = (labels[2], labels[3], kind, tenant)
        self.longrunning[lr] = self.longrunning.get(lr, 0) + 1
        sizes = self.watch_event_sizes.get(gvk)
        if sizes is None:
            sizes = self.watch_event_sizes[gvk] = Histogram(WATCH_EVENT_SIZE_BUCKETS)
        sent = 0
        try:
            async for chunk in body:
                lines = chunk.split(b"\n")
                for line in lines[:-1]:  # every event is newline-terminated
                    sizes.observe(len(line) + 1)
                sent += len(lines) - 1
                yield chunk
        finally:
            self.longrunning[lr] -= 1
            self.watch_events[gvk] = self.watch_events.get(gvk, 0) + sent
            self.observe(labels, 200, clock() - started, None, tenant)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await body.aclose()  # type: ignore[attr-defined]

    # ---- per scrape ---------------------------------------------------------------------------

    async def render(self, *, head_timeout_s: float = 1.0) -> bytes:
        """The text exposition. Reads the log's head once (bounded; shared with concurrent
        consistent reads) for the projection's lag; without it the lag series is left out. The
        counters are copied in the event loop (about 1 ms for 7,000 lines) and the text is built and
        rendered in a worker thread, so that the loop keeps serving requests meanwhile (issue 15: a
        scrape was one step of 14-27 ms of CPU)."""
        self.head = None
        with trio.move_on_after(head_timeout_s):
            try:
                self.head = await self.projection.log.head()
            except BusError:
                pass
        families = list(self._collector.families())  # in the loop: copies of the live counters
        self.inflight_max = list(self.inflight)
        return await trio.to_thread.run_sync(generate_latest, _Rendering(self._system, families),
                                             limiter=self._render_slots)


class _Deferred:
    """A metric family to build later, off the event loop, from copies taken in it (``args`` hold
    no live, mutating structure: a list of items, frozen histograms, numbers)."""

    __slots__ = ("args", "build")

    def __init__(self, build: Any, *args: Any) -> None:
        self.build = build
        self.args = args

    def __call__(self) -> Metric:
        return self.build(*self.args)


def _built(families: Iterable[Metric | _Deferred]) -> Iterator[Metric]:
    for f in families:
        yield f() if isinstance(f, _Deferred) else f


class _Rendering:
    """What a scrape renders in a worker thread: the process and Python collectors (they read
    /proc and the gc's counters, safe from any thread) and the families copied in the loop."""

    def __init__(self, system: Sequence[Any], families: list[Metric | _Deferred]) -> None:
        self.system = system
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for c in self.system:
            yield from c.collect()
        yield from _built(self.families)


class _Collector:
    """Turns the server's counters into metric families at scrape time: :meth:`families`, in the
    event loop, copies what it reads (cheap: dicts copied, histograms frozen) and leaves building
    the large families to whoever renders them (a worker thread, see ServerMetrics.render)."""

    def __init__(self, m: ServerMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        """Every family built at once, in the calling thread (the registry's interface)."""
        return _built(list(self.families()))

    def families(self) -> Iterator[Metric | _Deferred]:
        m = self.m
        yield from _flowcontrol_metrics(m)
        yield from _fleet_metrics(m)
        yield from _fleet_lease_metrics(m)
        yield from _pacing_metrics(m)
        yield from self._requests(m)
        yield from self._watches(m)
        yield from self._storage(m)
        yield from self._jetkube(m)
        yield from self._admission(m)

    @staticmethod
    def _requests(m: ServerMetrics) -> Iterator[Metric | _Deferred]:
        yield _family(CounterMetricFamily, "apiserver_request_total", "[STABLE] Counter of apiserver requests "
                      "broken out for each verb, dry run value, group, version, resource, scope, component, and "
                      "HTTP response code.", (*_REQUEST, "code", TENANT), m.requests, key=_component_at(7))
        yield _histograms("apiserver_request_duration_seconds", "[STABLE] Response latency distribution in "
                          "seconds for each verb, dry run value, group, version, resource, subresource, scope "
                          "and component.", (*_REQUEST, TENANT), _with_component(m.latency))
        yield _histograms("apiserver_request_sli_duration_seconds", "[ALPHA] Response latency distribution (not "
                          "counting webhook duration and priority & fairness queue wait times) in seconds for "
                          "each verb, group, version, resource, subresource, scope and component.",
                          (*_NO_DRY_RUN, TENANT), _with_component(m.sli_latency))
        yield _histograms("apiserver_response_sizes", "[STABLE] Response size distribution in bytes for each "
                          "group, version, verb, resource, subresource, scope and component.",
                          (*_NO_DRY_RUN, TENANT), _with_component(m.response_sizes))
        g = GaugeMetricFamily("apiserver_current_inflight_requests", "[STABLE] Maximal number of currently used "
                              "inflight request limit of this apiserver per request kind in last second.",
                              labels=("request_kind",))
        g.add_metric(("readOnly",), max(m.inflight_max[0], m.inflight[0]))
        g.add_metric(("mutating",), max(m.inflight_max[1], m.inflight[1]))
        yield g
        yield _family(GaugeMetricFamily, "apiserver_longrunning_requests", "[STABLE] Gauge of all active "
                      "long-running apiserver requests broken out by verb, group, version, resource, scope and "
                      "component. Not all requests are tracked this way.", (*_NO_DRY_RUN, TENANT), m.longrunning,
                      key=_component_at(-1))
        yield _family(CounterMetricFamily, "apiserver_request_aborts_total", "[ALPHA] Number of requests which "
                      "apiserver aborted possibly due to a timeout, for each group, version, verb, resource, "
                      "subresource and scope", (*_NO_DRY_RUN[:-1], TENANT), m.aborts)

    @staticmethod
    def _watches(m: ServerMetrics) -> Iterator[Metric | _Deferred]:
        watchers: dict[tuple[str, str, str, str], int] = {}
        for (tenant, group, plural), st in m.projection.store.resources.items():
            if not st.watchers:
                continue
            rdef = m.kinds(tenant).get((group, plural))
            if rdef is not None:
                gvk = (rdef.group, rdef.version, rdef.kind, tenant)
                watchers[gvk] = watchers.get(gvk, 0) + len(st.watchers)
        for gvk in m.watch_events:
            watchers.setdefault(gvk, 0)
        yield _family(GaugeMetricFamily, "apiserver_registered_watchers", "[ALPHA] Number of currently "
                      "registered watchers for a given resources", (*_GVK, TENANT), watchers, sort=True)
        yield _family(CounterMetricFamily, "apiserver_watch_events_total", "[ALPHA] Number of events sent in "
                      "watch clients", (*_GVK, TENANT), m.watch_events)
        yield _histograms("apiserver_watch_events_sizes", "[ALPHA] Watch event size distribution in bytes",
                          (*_GVK, TENANT), m.watch_event_sizes.items())

    @staticmethod
    def _storage(m: ServerMetrics) -> Iterator[Metric | _Deferred]:
        # Every root kind, empty ones included (as kube reports every registered resource); in the
        # other tenants the kinds they have stored anything of (bounded by what the projection holds).
        counts = {(ROOT_TENANT, *k): 0 for k in m.kinds(ROOT_TENANT)}
        for (tenant, group, plural), st in m.projection.store.resources.items():
            if (group, plural) in m.kinds(tenant):
                counts[(tenant, group, plural)] = counts.get((tenant, group, plural), 0) + st.count
        yield _family(GaugeMetricFamily, "apiserver_storage_objects", "[STABLE] Number of stored objects at the "
                      "time of last check split by kind.", ("resource", TENANT), counts, sort=True, key=_resource)
        per_tenant: dict[str, int] = {}
        for (tenant, _, _), st in m.projection.store.resources.items():
            per_tenant[tenant] = per_tenant.get(tenant, 0) + st.count
        yield _family(GaugeMetricFamily, "jetkube_tenant_objects", "Objects stored per tenant (logical cluster).",
                      ("tenant",), per_tenant, sort=True, key=_one)
        yield _family(CounterMetricFamily, "jetkube_tenant_requests", "Requests served per tenant (logical "
                      "cluster), verb and HTTP code (requests to an unknown tenant count as root's).",
                      ("tenant", "verb", "code"), m.tenant_requests, sort=True)
        yield GaugeMetricFamily("jetkube_projection_resource_states", "Resource states the projection holds "
                                "(one per tenant, group and resource ever written to).",
                                value=len(m.projection.store.resources))

    @staticmethod
    def _admission(m: ServerMetrics) -> Iterator[Metric]:
        # kube names these counters without a "_total" suffix. prometheus_client writes a counter's
        # HELP and TYPE under "<name>_total", which would leave kube's sample names without help
        # text (promtool check metrics fails): they are exposed untyped, under kube's exact names.
        webhooks = m.pipeline.chain.webhooks
        name = "apiserver_admission_webhook_fail_open_count"
        c = Metric(name, "[ALPHA] Admission webhook fail open count, identified by name and broken out for each "
                   "admission type (validating or admit).", "unknown")
        for (hook, kind, tenant), n in sorted(webhooks.fail_open.items()):
            c.add_sample(name, {"name": hook, "type": kind, TENANT: tenant}, n)
        yield c
        name = "apiserver_admission_webhook_rejection_count"
        c = Metric(name, "[ALPHA] Admission webhook rejection count, identified by name and broken out for each "
                   "admission type (validating or admit) and operation.", "unknown")
        for (hook, kind, op, code, tenant), n in sorted(webhooks.rejections.items()):
            c.add_sample(name, {"name": hook, "type": kind, "operation": op, "error_type": "no_error",
                                "rejection_code": str(code), TENANT: tenant}, n)
        yield c

    @staticmethod
    def _jetkube(m: ServerMetrics) -> Iterator[Metric | _Deferred]:
        p = m.pipeline
        yield _histograms("jetkube_stage_duration_seconds", "Time a request spends in each pipeline stage "
                          "(authentication, then each actor's handler, its awaits included).", ("stage",),
                          (((s.name,), s.latency) for s in p.stages))
        g = GaugeMetricFamily("jetkube_actor_mailbox_depth", "Messages waiting in each actor's mailbox.",
                              labels=("actor",))
        cap = GaugeMetricFamily("jetkube_actor_mailbox_capacity", "The size of each actor's mailbox (a full "
                                "mailbox answers 429).", labels=("actor",))
        for a in p.actors:
            g.add_metric((a.name,), a.mailbox_depth)
            cap.add_metric((a.name,), a.mailbox_size)
        yield g
        yield cap
        log = m.projection.log
        yield _histograms("jetkube_log_append_duration_seconds", "Time from publishing an event to the log to "
                          "its acknowledgement (retries included).", (), [((), log.append_latency)])
        yield CounterMetricFamily("jetkube_log_append_conflicts_total", "Appends refused because the object "
                                  "changed since the write was decided (compare-and-swap conflicts).",
                                  value=log.conflicts)
        proj = m.projection
        applied = proj.store.applied
        yield GaugeMetricFamily("jetkube_projection_applied_sequence", "The last log sequence the projection "
                                "has applied.", value=applied)
        if m.head is not None:
            yield GaugeMetricFamily("jetkube_projection_head_sequence", "The log's last sequence, read from the "
                                    "stream leader at this scrape.", value=m.head)
            yield GaugeMetricFamily("jetkube_projection_lag_events", "Events in the log the projection has not "
                                    "applied yet (head minus applied sequence).", value=max(0, m.head - applied))
        c = CounterMetricFamily("jetkube_watch_starts_total", "Watches started, by where their first events came "
                                "from: the current state, the ring of recent changes, or the log.",
                                labels=("source",))
        for source, n in proj.watch_starts.items():
            c.add_metric((source,), n)
        yield c
        yield CounterMetricFamily("jetkube_projection_change_feed_dropped_total", "Changes not sent to a "
                                  "controller's change feed because it was full (each such feed then resyncs "
                                  "its controller from the state).", value=proj.feed_drops)
        yield CounterMetricFamily("jetkube_projection_change_feed_resyncs_total", "Resyncs of controllers from "
                                  "the state after their change feed dropped changes.", value=proj.feed_resyncs)
        yield from _snapshot_metrics(proj)
        yield _histograms("jetkube_consistent_read_wait_seconds", "Time consistent reads spend reading the log "
                          "head and waiting for the projection to apply it.", (), [((), proj.consistent_wait)])
        bridge = log.bridge
        yield GaugeMetricFamily("jetkube_nats_connected", "Whether the connection to NATS is up (1) or not (0).",
                                value=1 if bridge.connected else 0)
        yield CounterMetricFamily("jetkube_nats_connections_total", "Connections to NATS established, the first "
                                  "one included.", value=bridge.connections)
        yield CounterMetricFamily("jetkube_nats_reconnects_total", "Connections to NATS re-established after "
                                  "the first.", value=max(0, bridge.connections - 1))
        yield GaugeMetricFamily("jetkube_log_compaction_point", "The log's compaction point as this gateway applied "
                                "it: versions below it were purged by history retention and answer 410 Expired.",
                                value=proj.compacted)
        retention = m.retention
        if retention is not None:
            yield CounterMetricFamily("jetkube_history_purged_messages_total", "Old revisions this gateway purged "
                                      "from the log (--history-max-age, --history-max-revisions-per-object).",
                                      value=retention.purged_messages)
            yield CounterMetricFamily("jetkube_history_retention_passes_total", "Retention passes completed.",
                                      value=retention.passes)
            yield GaugeMetricFamily("jetkube_history_retention_lease_held", "Whether this gateway holds the lease "
                                    "to purge (1): of the gateways with retention on, one purges.",
                                    value=1 if retention.lease_held else 0)
        audit = m.audit
        if audit is not None:
            yield CounterMetricFamily("jetkube_audit_events_written_total", "Audit records the gateway wrote to "
                                      "the audit stream (writes on the log are audited from the log itself).",
                                      value=audit.written)
            c = CounterMetricFamily("jetkube_audit_events_dropped_total", "Audit records not written: the queue "
                                    "was full (read: at once; denial: after a short wait) or the append failed.",
                                    labels=("kind",))
            for kind, n in audit.dropped.items():
                c.add_metric((kind,), n)
            yield c
        wh = m.audit_webhook
        if wh is not None:
            yield CounterMetricFamily("jetkube_audit_webhook_events_sent_total", "Audit events the webhook "
                                      "accepted from this gateway (at least once: a batch may be sent again).",
                                      value=wh.events_sent)
            yield CounterMetricFamily("jetkube_audit_webhook_batches_sent_total", "EventLists the webhook accepted.",
                                      value=wh.batches_sent)
            yield CounterMetricFamily("jetkube_audit_webhook_post_failures_total", "POSTs to the audit webhook "
                                      "that failed (each retried until accepted; nothing is dropped).",
                                      value=wh.post_failures)
            yield GaugeMetricFamily("jetkube_audit_webhook_leader", "1 when this gateway is the one forwarding "
                                    "audit events to the webhook.", value=1 if wh.leader else 0)
            g = GaugeMetricFamily("jetkube_audit_webhook_lag_events", "Messages of each stream read but not yet "
                                  "forwarded, as last seen (log: writes, audit: reads and denials).",
                                  labels=("stream",))
            for name in ("log", "audit"):
                g.add_metric((name,), max(0, wh.head[name] - wh.position[name]) if wh.leader else 0)
            yield g


def _with_component(series: dict[tuple[str, ...], Histogram]) -> Iterator[tuple[tuple[str, ...], Histogram]]:
    """(kube's labels, component, tenant) for series keyed by (kube's labels, tenant)."""
    for k, h in series.items():
        yield (*k[:-1], COMPONENT, k[-1]), h


def _snapshot_metrics(proj: Any) -> Iterator[Metric]:
    """How the projection started (from a snapshot or sequence 1) and the snapshots it wrote."""
    yield GaugeMetricFamily("jetkube_projection_start_seconds", "Time the projection took at this start to be "
                            "caught up with the log (loading a snapshot included).", value=proj.start_s)
    yield GaugeMetricFamily("jetkube_projection_start_sequence", "The sequence the projection started folding "
                            "the log after: a snapshot's, or 0 (the whole log).", value=proj.start_from)
    snaps = proj.snapshots
    if snaps is None:
        return
    st = snaps.stats
    c = CounterMetricFamily("jetkube_snapshot_rejected_total", "Snapshots refused at start (never used), by "
                            "reason: corrupt, mismatch (another stream, or beyond its head), format, unreadable.",
                            labels=("reason",))
    for reason, n in sorted(st.rejected.items()):
        c.add_metric((reason,), n)
    yield c
    yield CounterMetricFamily("jetkube_snapshot_writes_total", "Projection snapshots this gateway wrote.",
                              value=st.written)
    yield CounterMetricFamily("jetkube_snapshot_write_failures_total", "Projection snapshots this gateway failed "
                              "to write (or to take the writer's lease for).", value=st.write_failures)
    yield GaugeMetricFamily("jetkube_snapshot_last_written_sequence", "The sequence of the last snapshot this "
                            "gateway wrote (0: none).", value=st.last_written_seq)
    yield GaugeMetricFamily("jetkube_snapshot_last_write_seconds", "Time the last snapshot took: capture, encode, "
                            "compress and upload.", value=st.last_write_s)
    yield GaugeMetricFamily("jetkube_snapshot_last_bytes", "Size of the last snapshot written, compressed.",
                            value=st.last_bytes)
    yield GaugeMetricFamily("jetkube_snapshot_lease_held", "Whether this gateway holds the lease to write "
                            "snapshots (1) or not (0).", value=1 if st.lease_held else 0)


def _histograms(name: str, documentation: str, labels: Sequence[str],
                series: Iterable[tuple[Sequence[str], Histogram]]) -> _Deferred:
    """A histogram family, built later from the series' histograms frozen now."""
    return _Deferred(_build_histograms, name, documentation, labels, [(values, _frozen(h)) for values, h in series])


def _build_histograms(name: str, documentation: str, labels: Sequence[str],
                      series: Iterable[tuple[Sequence[str], Histogram]]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, documentation, labels=labels)
    for values, h in series:
        fam.add_metric(list(values), [(floatToGoString(b), n) for b, n in h.cumulative()], h.total)
    return fam


def _frozen(h: Histogram) -> Histogram:
    """A copy of ``h`` as it is now (its bounds are a tuple, shared)."""
    c = Histogram.__new__(Histogram)
    c.bounds, c.counts, c.count, c.total = h.bounds, h.counts.copy(), h.count, h.total
    return c


def _family(cls: Any, name: str, documentation: str, labels: Sequence[str], values: dict[Any, float], *,
            sort: bool = False, key: Any = None) -> _Deferred:
    """A counter or gauge family of ``values`` (label values -> number, copied now), built later;
    ``key`` turns a dict key into the label values, ``sort`` orders the series by key."""
    return _Deferred(_build_family, cls, name, documentation, labels, list(values.items()), sort, key)


def _build_family(cls: Any, name: str, documentation: str, labels: Sequence[str], items: list[tuple[Any, float]],
                  sort: bool, key: Any) -> Metric:
    fam = cls(name, documentation, labels=labels)
    for k, n in sorted(items) if sort else items:
        fam.add_metric(k if key is None else key(k), n)
    return fam


def _component_at(i: int) -> Any:
    """A key with the component label inserted at ``i``."""
    return lambda k: (*k[:i], COMPONENT, *k[i:])


def _resource(k: tuple[str, str, str]) -> tuple[str, str]:
    tenant, group, plural = k
    return (f"{plural}.{group}" if group else plural, tenant)


def _one(k: str) -> tuple[str]:
    return (k,)


APF_WAIT_BUCKETS = (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
_APF = ("tenant", "priority_level", "flow_schema")


def _apf_wait(m: ServerMetrics, labels: tuple[str, str, str], executed: bool, seconds: float) -> None:
    key = (*labels, "true" if executed else "false")
    h = m.apf_waits.get(key)
    if h is None:
        h = m.apf_waits[key] = Histogram(APF_WAIT_BUCKETS)
    h.observe(seconds)


def _fleet_metrics(m: ServerMetrics) -> Iterator[Metric]:
    """``jetkube_apf_fleet_*``: the fleet-wide APF demand exchange (actors/_apf_fleet.py), when on
    (``--apf-fleet-period`` > 0). Counts only: no label names a peer or a tenant."""
    fleet = m.pipeline.apf_fleet if m.pipeline is not None else None
    if fleet is None:
        return
    st = fleet.stats()
    yield CounterMetricFamily("jetkube_apf_fleet_reports_sent", "Demand reports this gateway published to its "
                              "peers (one per period).", value=st.sent)
    yield CounterMetricFamily("jetkube_apf_fleet_reports_received", "Demand reports taken from peers (this "
                              "gateway's own echo is not counted).", value=st.received)
    c = CounterMetricFamily("jetkube_apf_fleet_reports_dropped", "Demand reports lost, by reason: unpublished "
                            "(NATS disconnected), receive_queue_full (the bounded channel from NATS), invalid "
                            "(undecodable), too_many_peers (from a peer beyond the peers kept).", labels=("reason",))
    for reason, n in sorted(st.dropped.items()):
        c.add_metric((reason,), n)
    yield c
    yield GaugeMetricFamily("jetkube_apf_fleet_peers", "Peers (other gateways) heard from within the expiry "
                            "(3 periods).", value=st.peers)
    yield GaugeMetricFamily("jetkube_apf_fleet_tenants_reported", "Tenants named in this gateway's last demand "
                            "report (those holding or waiting for seats, at most 256).", value=st.tenants_reported)
    yield GaugeMetricFamily("jetkube_apf_fleet_peer_tenants", "Distinct tenants named in the peers' latest "
                            "demand reports.", value=st.peer_tenants)
    yield GaugeMetricFamily("jetkube_apf_fleet_seats", "The fleet's seat budget as this gateway sees it: its own "
                            "plus every live peer's.", value=st.fleet_seats)


def _fleet_lease_metrics(m: ServerMetrics) -> Iterator[Metric]:
    """``jetkube_apf_fleet_lease*`` and ``_owner*``: the fleet-wide seat budgets (actors/_apf_fleet.py),
    when on (``--apf-fleet-leases``). Counts only: no label names a gateway or a tenant."""
    leases = m.pipeline.apf_leases if m.pipeline is not None else None
    if leases is None:
        return
    st = leases.stats()
    yield CounterMetricFamily("jetkube_apf_fleet_lease_requests", "Seat lease round trips to the budgets' "
                              "owners (asking, renewing, giving back).", value=st.requests)
    c = CounterMetricFamily("jetkube_apf_fleet_lease_failures", "Seat lease requests without a grant, by reason: "
                            "no_responders (no owner), timeout, unavailable (NATS), refused (the owner keeps no more "
                            "budgets), stale (from an owner that lost its lease).", labels=("reason",))
    for reason, n in sorted(st.failures.items()):
        c.add_metric((reason,), n)
    yield c
    yield CounterMetricFamily("jetkube_apf_fleet_lease_seats_granted", "Seats gained by this gateway's leases "
                              "(grants and fixed shares).", value=st.granted)
    yield CounterMetricFamily("jetkube_apf_fleet_lease_seats_returned", "Seats this gateway's leases gave up "
                              "(returned when idle, lower grants, fixed shares ended).", value=st.returned)
    yield CounterMetricFamily("jetkube_apf_fleet_lease_fallbacks", "Times a shard's owner was unreachable and "
                              "this gateway used its fixed local shares.", value=st.fallbacks)
    yield GaugeMetricFamily("jetkube_apf_fleet_leases", "Tenant priority levels whose seats this gateway leases "
                            "now.", value=st.leases)
    yield GaugeMetricFamily("jetkube_apf_fleet_leased_seats", "Seats this gateway may execute in them now.",
                            value=st.leased_seats)
    yield GaugeMetricFamily("jetkube_apf_fleet_lease_shards_down", "Shards whose owner is unreachable from this "
                            "gateway now (fixed local shares).", value=st.shards_down)
    yield GaugeMetricFamily("jetkube_apf_fleet_lease_levels_beyond_bound", "Tenant priority levels used beyond "
                            "the leases this gateway keeps (--apf-fleet-leases' bound): on their fixed local share.",
                            value=st.beyond_bound)
    yield CounterMetricFamily("jetkube_apf_fleet_lease_epoch_resets", "Times a lower owner epoch was taken: "
                              "answers of it kept coming for a TTL (the lease bucket was made again).",
                              value=st.epoch_resets)
    yield GaugeMetricFamily("jetkube_apf_fleet_owner_shards", "Shards of the tenants' seat budgets this gateway "
                            "owns (holds the KV lease of) now.", value=st.owned_shards)
    yield GaugeMetricFamily("jetkube_apf_fleet_owner_budgets", "Tenant priority level budgets this gateway keeps "
                            "as their owner.", value=st.owned_budgets)
    yield CounterMetricFamily("jetkube_apf_fleet_owner_takeovers", "Shards this gateway took ownership of.",
                              value=st.takeovers)
    yield CounterMetricFamily("jetkube_apf_fleet_owner_answers", "Seat lease requests this gateway answered as "
                              "an owner.", value=st.answered)
    yield CounterMetricFamily("jetkube_apf_fleet_owner_handovers", "Shards this gateway handed to their preferred "
                              "gateway (rendezvous hashing over the gateways heard).", value=st.handovers)


#: Tenants named in the pacing gauges (those with the most connections paced); the rest are summed
#: under :data:`OTHER_TENANTS`. The counters carry no tenant: a label per tenant ever paced would grow
#: without bound.
MAX_PACING_TENANTS = 10
OTHER_TENANTS = "_other"  # (not a tenant's name: those are DNS labels)


def _pacing_metrics(m: ServerMetrics) -> Iterator[Metric]:
    """``jetkube_apf_pacing_*``: the pacing of connections answered 429 (gateway/_pacing.py). The
    gauges by tenant (the flow control tenant charged: root's for ``/clusters/*/``), at most
    :data:`MAX_PACING_TENANTS` of them; the counters over all tenants."""
    pacer = m.pacer
    if pacer is None:
        return
    flows = sorted(pacer.flows().items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
    shown: dict[str, tuple[int, int]] = dict(flows[:MAX_PACING_TENANTS])
    if len(flows) > MAX_PACING_TENANTS:
        rest = flows[MAX_PACING_TENANTS:]
        shown[OTHER_TENANTS] = (sum(b for _, (b, _) in rest), sum(w for _, (_, w) in rest))
    waiting = GaugeMetricFamily("jetkube_apf_pacing_connections_waiting", "Connections answered 429 (or a first "
                                "request of a tenant being paced from the same client address) waiting for a "
                                f"pacing slot of their tenant now (at most {MAX_PACING_TENANTS} tenants, the rest "
                                f"as {OTHER_TENANTS}).", labels=(TENANT,))
    held = GaugeMetricFamily("jetkube_apf_pacing_slots_held", "Pacing slots held now: paced connections whose "
                             f"next request is being read or answered (at most {MAX_PACING_TENANTS} tenants, the rest "
                             f"as {OTHER_TENANTS}).", labels=(TENANT,))
    for tenant, (busy, queued) in sorted(shown.items()):
        waiting.add_metric((tenant,), queued)
        held.add_metric((tenant,), busy)
    yield waiting
    yield held
    yield CounterMetricFamily("jetkube_apf_pacing_holds", "Connections held back by the pacing: they waited for "
                              "a slot of their tenant before their next request was read.", value=pacer.paced)
    yield CounterMetricFamily("jetkube_apf_pacing_slots_taken", "Pacing slots taken (at once or after waiting).",
                              value=pacer.admitted)


def _flowcontrol_metrics(m: ServerMetrics) -> Iterator[Metric | _Deferred]:
    """kube's ``apiserver_flowcontrol_*`` series (``util/flowcontrol/metrics``), with a tenant label."""
    fc = m.flow_control
    if fc is None:
        return
    yield _family(CounterMetricFamily, "apiserver_flowcontrol_dispatched_requests", "[BETA] Number of requests "
                  "executed by API Priority and Fairness subsystem", _APF, fc.dispatched)
    yield _family(CounterMetricFamily, "apiserver_flowcontrol_rejected_requests", "[BETA] Number of requests "
                  "rejected by API Priority and Fairness subsystem", (*_APF, "reason"), fc.rejected)
    families = {
        "current_inqueue_requests": (("[BETA] Number of requests currently pending in queues of the API Priority "
                                     "and Fairness subsystem"), lambda qs: qs.queued_requests),
        "current_inqueue_seats": (("[ALPHA] Number of seats currently pending in queues of the API Priority and "
                                  "Fairness subsystem"), lambda qs: qs.queued_seats),
        "current_executing_requests": (("[BETA] Number of requests in initial (for a WATCH) or any (for a non-WATCH) "
                                       "execution stage in the API Priority and Fairness subsystem"),
                                       lambda qs: qs.executing_requests),
        "current_executing_seats": (("[BETA] Concurrency (number of seats) occupied by the currently executing "
                                    "(initial stage for a WATCH, any stage otherwise) requests in the API Priority "
                                    "and Fairness subsystem"), lambda qs: qs.executing_seats),
        "nominal_limit_seats": ("[BETA] Nominal number of execution seats configured for each priority level",
                                lambda qs: 0),
        "current_limit_seats": (("[ALPHA] current derived number of execution seats available to each priority "
                                "level"), lambda qs: qs.limit),
    }
    for name, (doc, value) in families.items():
        if name == "nominal_limit_seats":
            values = {(tenant, level): tf.nominal.get(level, 0)
                      for tenant, tf in fc.dispatcher.tenants.items() for level in tf.levels}
        elif name == "current_limit_seats":  # leased from the fleet's budget when leases are on
            values = {(tenant, level): fc.dispatcher.seat_limit(tenant, qs)
                      for tenant, tf in fc.dispatcher.tenants.items() for level, qs in tf.levels.items()}
        else:
            values = {(tenant, level): value(qs)
                      for tenant, tf in fc.dispatcher.tenants.items() for level, qs in tf.levels.items()}
        yield _family(GaugeMetricFamily, f"apiserver_flowcontrol_{name}", doc, ("tenant", "priority_level"), values)
    yield _histograms("apiserver_flowcontrol_request_wait_duration_seconds", "[BETA] Length of time a request "
                      "spent waiting in its queue", (*_APF, "execute"), m.apf_waits.items())
