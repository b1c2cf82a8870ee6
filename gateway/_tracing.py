"""OpenTelemetry traces (``--tracing-config-file``), as kube-apiserver exports them.

Imported only when tracing is on: nothing else in jetkube imports OpenTelemetry, so with tracing
off there is no import and no per-request work (every hook is None).

One span per HTTP request (kube's name, e.g. ``GET /api/v1/namespaces/{:namespace}/pods/{:name}``,
and its attributes), a child of the client's W3C ``traceparent`` when one is given; a child per
actor stage (authn, authz, admission, resource, reviews), the log append and the consistent-read
wait. Across tasks the trace context travels in the message (``Request.trace``); within a task it
is OpenTelemetry's current span. Spans are exported over OTLP/HTTP by a ``BatchSpanProcessor``
whose queue holds at most :data:`MAX_QUEUED_SPANS` (past that, spans are dropped, never buffered).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import trio
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from actors import NO_SPAN
from kinds import NAMESPACES, Registry

from ._routes import Route, parse
from ._settings import TracingConfig

MAX_QUEUED_SPANS = 2048  # the exporter's queue; spans past it are dropped
MAX_EXPORT_BATCH = 512
EXPORT_DELAY_MS = 5000
EXPORT_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0  # what stopping may spend flushing the queue

_propagator = TraceContextTextMapPropagator()


def span_name(method: str, route: Route) -> str:
    """kube-apiserver's request span name (``getSpanNameFromRequestInfo``): the method alone for a
    non-resource URL, else the method and the path with ``{:namespace}`` and ``{:name}``."""
    rdef = route.rdef
    if route.kind != "resource" or rdef is None:
        return method
    name = ("/api/" if not rdef.group else f"/apis/{rdef.group}/") + (route.version or rdef.version)
    # kube's RequestInfo gives /api/v1/namespaces/<name> a namespace as well as a name.
    if route.namespace or ((rdef.group, rdef.plural) == NAMESPACES and route.name):
        name += "/namespaces/{:namespace}"
    name += "/" + rdef.plural
    if route.name:
        name += "/{:name}"
    if route.subresource:
        name += "/" + route.subresource
    return f"{method} {name}"


def traceparent_of(ctx: trace.SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def context_of(traceparent: str) -> OtelContext:
    """The context whose current span is ``traceparent`` (one :func:`traceparent_of` made)."""
    parent = trace.SpanContext(int(traceparent[3:35], 16), int(traceparent[36:52], 16), is_remote=True,
                               trace_flags=trace.TraceFlags(int(traceparent[53:55], 16)))
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


class Tracing:
    """One server's tracer: implements the actors' ``Spans`` and wraps the ASGI app."""

    def __init__(self, config: TracingConfig, registry: Registry, *,
                 exporter: SpanExporter | None = None) -> None:
        self.registry = registry
        # kube's sampler: a client's sampled traceparent is followed; new traces at the configured rate.
        sampler = ParentBased(TraceIdRatioBased(config.sampling_rate_per_million / 1_000_000))
        self.provider = TracerProvider(sampler=sampler, shutdown_on_exit=False,
                                       resource=Resource.create({"service.name": "apiserver"}))
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=config.otlp_url, timeout=EXPORT_TIMEOUT_S)
        self.provider.add_span_processor(BatchSpanProcessor(
            exporter, max_queue_size=MAX_QUEUED_SPANS, max_export_batch_size=MAX_EXPORT_BATCH,
            schedule_delay_millis=EXPORT_DELAY_MS, export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000)))
        self.tracer = self.provider.get_tracer("jetkube")

    # ---- the actors' Spans ------------------------------------------------------------------------

    def child(self, name: str, traceparent: str) -> AbstractContextManager[object]:
        return self.tracer.start_as_current_span(name, context=context_of(traceparent))

    def current_child(self, name: str) -> AbstractContextManager[object]:
        if not trace.get_current_span().is_recording():
            return NO_SPAN
        return self.tracer.start_as_current_span(name)

    def current_traceparent(self) -> str:
        span = trace.get_current_span()
        return traceparent_of(span.get_span_context()) if span.is_recording() else ""

    # ---- the request span -------------------------------------------------------------------------

    def asgi(self, app: Any) -> Any:
        """``app`` with a span around each HTTP request, current while the request is served."""

        async def traced(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            with self.request_span(scope, send) as traced_send:
                await app(scope, receive, traced_send)

        return traced

    @contextmanager
    def request_span(self, scope: Any, send: Any) -> Iterator[Any]:
        """The span of the HTTP request ``scope`` (an ASGI scope, or a replayed 429's: gateway/_gate.py),
        a child of its ``traceparent`` header if any, current in this task while open; yields the
        ``send`` to answer through (noting the status code and Audit-Id on the span when sampled)."""
        parent = None
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        if carrier:
            parent = _propagator.extract(carrier)
        with self.tracer.start_as_current_span(scope["method"], context=parent, kind=trace.SpanKind.SERVER) as span:
            if not span.is_recording():
                yield send
                return
            self._start(span, scope)

            async def send_traced(message: Any) -> None:
                if message["type"] == "http.response.start":
                    _answered(span, message)
                await send(message)

            yield send_traced

    def _start(self, span: trace.Span, scope: Any) -> None:
        path = scope["path"]
        span.update_name(span_name(scope["method"], parse(path, self.registry)))
        query = scope.get("query_string", b"")
        headers = dict(scope["headers"])
        span.set_attributes({
            "http.method": scope["method"],
            "http.target": path + ("?" + query.decode("latin-1") if query else ""),
            "http.scheme": scope.get("scheme", "http"),
            "http.flavor": scope.get("http_version", ""),
            "http.user_agent": headers.get(b"user-agent", b"").decode("latin-1"),
            "net.peer.name": (scope.get("client") or ("",))[0],
        })

    async def aclose(self) -> None:
        """Export what is queued, within :data:`SHUTDOWN_TIMEOUT_S` (even when cancelled)."""
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT_S):
            await trio.to_thread.run_sync(self.provider.shutdown, abandon_on_cancel=True)


def _answered(span: trace.Span, message: Any) -> None:
    code = message["status"]
    span.set_attribute("http.status_code", code)
    for k, v in message.get("headers", ()):
        if k.lower() == b"audit-id":
            span.set_attribute("audit-id", v.decode("latin-1"))
    if code >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))
