"""The HTTP face: one catch-all Quart route that turns Kubernetes REST into pipeline requests.

Every request: parse the route, decode the body once, send a :class:`Request` in at the authn
actor; reads come back ``Allowed`` and are answered from the projection, writes come back as the
resource actor's domain results (``write_response`` maps them). Every error goes through ``status_for``.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

import msgspec
import trio
from quart import request
from quart.wrappers.response import IterableBody
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors import (
    APF_DUMPS,
    JWKS_PATH,
    MASTERS,
    Admission,
    Allowed,
    ApiError,
    BadRequest,
    Conflict,
    Converter,
    Deleted,
    DeletedCollection,
    Forbidden,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    Pipeline,
    Request,
    RequestEntityTooLarge,
    Stored,
    bearer_token,
    jwks,
    openid_configuration,
    tenant_exists,
    tenant_not_found,
    warning_header,
)
from bus import ANY_TENANT, ROOT_TENANT, Key
from kinds import Registry, ResourceDef
from kinds._uid import new_uid
from projections import Change, Projection, now_micro

from . import _discovery as discovery
from . import _history as history
from . import _openapi as openapi
from . import _ui as ui
from ._audit import (
    AUDIT_EVENTS,
    AUDIT_EVENTS_PATH,
    AuditNote,
    AuditRefused,
    AuditSink,
    audit_gone,
    audit_received,
    audit_request,
    audit_watch_body,
    audit_watch_end,
    parse_query,
)
from ._audit import query as audit_query
from ._codec import YAML as YAML_CT
from ._codec import decode_body_strict, encode_yaml, query_bool
from ._fast import FastPath
from ._gate import AUTHENTICATED, SEATS_UNTIL_SENT, Gate, error_answer
from ._logging import begin_request, note_user
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import ServerMetrics, request_labels
from ._openapi_cache import OpenAPICache
from ._options import write_options
from ._protobuf import CONTENT_TYPE as PROTOBUF_CT
from ._protobuf import ProtobufError
from ._protobuf_write import WATCH_CONTENT_TYPE as PROTOBUF_WATCH_CT
from ._protobuf_write import encode_json_object, encode_watch_lines
from ._reads import (
    WatchLines,
    get_object,
    list_body,
    list_objects,
    parse_list_options,
    read_deadline,
    resource_version_param,
    rewritten,
    scale_of,
    served_line,
    served_list,
    served_object,
    served_objects,
    watch_lines,
)
from ._routes import CLUSTERS_PREFIX, parse, split_tenant
from ._settings import Settings
from ._status import ApiResponse as Response
from ._status import BodyTimeout, write_response
from ._table import (
    NOT_ACCEPTABLE,
    NOT_ACCEPTABLE_STREAM,
    OPENAPI_V2_PROTOBUF,
    OPENAPI_V3_PROTOBUF,
    ROUTE_MEDIA_TYPES,
    ROUTE_STREAM_MEDIA_TYPES,
    VERSION_MEDIA_TYPES,
    View,
    acceptable,
    check_acceptable,
    check_route,
    check_view,
    list_in_view,
    metadata_api_version,
    metadata_for_list,
    metadata_for_object,
    metadata_watch_line,
    object_in_view,
    openapi_media,
    parse_include_object,
    plain_yaml,
    table_content_type,
    table_for_list,
    table_for_object,
    table_watch_line,
    view_content_type,
    view_for,
    wants_metadata,
    wants_protobuf,
    wants_table,
    wants_yaml,
)
from ._wildcard import list_every_tenant, still_served

JSON_CT = "application/json"
#: A JSON answer up to this size is made YAML in the event loop's thread; a larger one in a worker thread.
#: 8 KiB (one object, a short list): PyYAML's encode is ~0.3 ms of CPU per KiB, so a 64 KiB answer was
#: one ~20 ms step of the loop (231 ConfigMaps, 65,219 bytes: 19.9 ms, review s8b LOW 8).
YAML_INLINE_BYTES = 8 * 1024
#: Worker threads making large answers YAML at once (``Context.yaml_slots``), a limiter of their own:
#: never trio's default one (40 threads, which the snapshot writer needs). Two, not more: the encode holds
#: the GIL nearly all the time (PyYAML's representer is Python), so more threads would not make it faster,
#: only take the event loop's share of the GIL; two, not one, so that a modest list is not queued behind
#: one huge one. A request waits for a slot, and encodes, in its flow control seat (as kube serializes in its).
YAML_THREADS = 2
_enc = msgspec.json.Encoder()
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass
class Context:
    settings: Settings
    registry: Registry
    pipeline: Pipeline
    projection: Projection
    server_address: str = ""
    draining: bool = False  # shutdown began: /readyz answers 503 while requests are still served
    openapi: OpenAPICache = field(default_factory=lambda: OpenAPICache())
    watches: WatchStreams = field(default_factory=lambda: WatchStreams())
    audit: AuditSink | None = None
    #: Conversion of stored objects to the version a read asks for (CRD conversion webhooks).
    converter: Converter = field(default_factory=lambda: Converter())
    #: The worker threads for large YAML answers (see YAML_THREADS).
    yaml_slots: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(YAML_THREADS))
    metrics: ServerMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics(self.pipeline, self.projection, self.registry)
        self.metrics.audit = self.audit
        self.projection.crds.on_change(self.watches.kinds_changed)


class WatchEnd:
    """When one watch response ends: at its deadline, or when :class:`WatchStreams` ends it.

    The stream's body is an async generator: a cancel scope held across its ``yield`` would be
    exited by whoever closes it (the client gone while a chunk was being written), with that task's
    own scopes still open above it, and trio refuses ("Cancel scope stack corrupted", seen in CI).
    So no scope is open while the body yields. Before each chunk, :meth:`over` says whether the
    watch goes on. A chunk already made (its events queued) is taken without a wait. A wait for the
    watcher's queue alone (the stream ``live``) needs no scope when :meth:`WatchStreams.run` ends
    watches at their deadlines: ending a watch calls :attr:`stop`, which closes that queue. Any other
    wait runs in a scope of its own (``with end as scope``: one per wait), which
    ending the watch cancels, as does the deadline."""

    __slots__ = ("_step", "cancel_called", "deadline", "stop")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cancel_called = False
        self._step: trio.CancelScope | None = None
        #: Ends the stream's wait for its watcher's queue (``WatchLines.stop``), while it is open.
        self.stop: Callable[[], None] | None = None

    def cancel(self) -> None:
        self.cancel_called = True
        if self._step is not None:
            self._step.cancel()
        if self.stop is not None:
            self.stop()

    def over(self) -> bool:
        """Ended, or past the deadline (what a scope entered now would be cancelled by at once)."""
        return self.cancel_called or trio.current_time() >= self.deadline

    def __enter__(self) -> trio.CancelScope:
        """A scope for one wait: cancelled at the deadline or when the watch is ended."""
        scope = trio.CancelScope(deadline=self.deadline)
        scope.__enter__()
        if self.cancel_called:
            scope.cancel()
        self._step = scope
        return scope

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        scope, self._step = self._step, None
        assert scope is not None
        return scope.__exit__(etype, exc, tb)


class WatchStreams:
    """The open watch responses, so that shutdown can end them cleanly (as kube does): each one
    finishes its chunked body instead of being cut when the graceful timeout runs out; and, while
    :meth:`run` runs, each one's end at its deadline."""

    def __init__(self) -> None:
        self._ends: set[WatchEnd] = set()
        self.stopping = False
        # Watches of a custom resource, with the check saying whether its kind is still served as
        # when the watch began (gateway/_wildcard.py ``still_served``).
        self._served: dict[WatchEnd, Callable[[], bool]] = {}
        # The open watches' deadlines (a heap; a closed watch's entry stays until it is popped or
        # the heap is rebuilt, at twice the open watches), and run()'s sleep until the first. (The
        # bus bridge keeps its requests' deadlines the same way, bus/_bridge.py ``_t_timer``: a shared
        # helper would put this one on the bridge's hot path; not done.)
        self._deadlines: list[tuple[float, int, WatchEnd]] = []
        self._tie = itertools.count()
        self._clock: trio.CancelScope | None = None

    @property
    def timed(self) -> bool:
        """Whether :meth:`run` ends the watches at their deadlines (a wait needs no scope for it)."""
        return self._clock is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """End each watch at its deadline: one timer for all of them, so that a watch waiting for its
        next event needs no cancel scope of its own for it (one per event otherwise). When it stops
        (the server's end), it ends the watches still open: their deadlines were its to keep."""
        task_status.started()  # (its scope is entered before any other task runs: timed from now)
        try:
            while True:
                first = self._deadlines[0][0] if self._deadlines else math.inf
                with trio.CancelScope(deadline=first) as self._clock:
                    await trio.sleep_forever()
                now = trio.current_time()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, end = heapq.heappop(self._deadlines)
                    if end in self._ends:
                        end.cancel()
        finally:
            self._clock = None
            self._deadlines.clear()  # (nothing reads them once the clock has stopped)
            for end in tuple(self._ends):
                end.cancel()

    def end_all(self) -> None:
        """End every open watch stream now, and every one opened from now on at once."""
        self.stopping = True
        for end in self._ends:
            end.cancel()

    def open(self, timeout_s: float, served: Callable[[], bool] | None = None) -> WatchEnd:
        end = WatchEnd(trio.current_time() + timeout_s)
        if self.stopping or (served is not None and not served()):
            end.cancel()
        self._ends.add(end)
        if served is not None:
            self._served[end] = served
        if self._clock is not None:
            if len(self._deadlines) >= 2 * len(self._ends) + 64:
                self._deadlines = [entry for entry in self._deadlines if entry[2] in self._ends]
                heapq.heapify(self._deadlines)
            heapq.heappush(self._deadlines, (end.deadline, next(self._tie), end))
            self._clock.deadline = min(self._clock.deadline, end.deadline)
        return end

    def close(self, end: WatchEnd) -> None:
        end.stop = None  # (its entry among the deadlines holds nothing of the stream)
        self._ends.discard(end)
        self._served.pop(end, None)

    def kinds_changed(self) -> None:
        """A tenant's served kinds changed (projections CrdView): end, cleanly, each watch whose
        kind is no longer served as it was."""
        for end, served in tuple(self._served.items()):
            if not served():
                end.cancel()
                del self._served[end]


def _json_response(body: bytes, code: int = 200, headers: dict[str, str] | None = None) -> Response:
    r = Response(body, status=code, content_type=JSON_CT)
    if headers:
        for k, v in headers.items():
            r.headers[k] = v
    return r


def _error_response(exc: BaseException, audit_id: str = "", *, yaml: bool = False) -> Response:
    """``exc`` as its Status; in YAML when ``yaml`` (a Status is small: made YAML in the loop).
    Flow control's rejection is plain text, whatever the client accepts (kube's ``http.Error``)."""
    code, body, headers = error_answer(exc)
    r = _json_response(body, code, headers)  # (a Content-Type in ``headers`` replaces the JSON one)
    if yaml and r.mimetype == JSON_CT:
        r.set_data(encode_yaml(body))
        r.content_type = YAML_CT
    if audit_id:
        r.headers["Audit-Id"] = audit_id
    return r


def _verb(method: str, has_name: bool, watch: bool) -> str:
    if method in ("GET", "HEAD"):
        return "get" if has_name else ("watch" if watch else "list")
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")


class _CatchAllAdapter:
    """Every request goes to the one catch-all view, which routes Kubernetes paths itself: this
    skips werkzeug's rule matcher (9% of a create's CPU in the benchmark profile)."""

    __slots__ = ("path", "rule")

    def __init__(self, rule: Any, path: str) -> None:
        self.rule, self.path = rule, path

    def match(self, return_rule: bool = True) -> tuple[Any, dict[str, str]]:
        return self.rule, {"path": self.path}


class _App(QuartTrio):
    catch_all_rule: Any = None
    response_class = Response  # (Quart's own answers too: kube's Cache-Control, gateway/_status.py)

    def create_url_adapter(self, request: Any) -> Any:
        if request is not None and self.catch_all_rule is not None:
            return _CatchAllAdapter(self.catch_all_rule, request.path.lstrip("/"))
        return super().create_url_adapter(request)


def create_app(ctx: Context) -> QuartTrio:
    app = _App("jetkube")
    # Bodies over max_body_bytes are drained (up to this cap) and answered 413: a client that sends
    # without Expect: 100-continue is still writing, and stopping to read would deadlock it.
    app.config["MAX_CONTENT_LENGTH"] = max(ctx.settings.max_body_bytes * 8, 32 * 1024 * 1024)
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = ctx.settings.request_timeout_s
    app.url_map.strict_slashes = False

    @app.errorhandler(HTTPException)
    async def _http_error(e: HTTPException) -> Response:
        from actors import ApiError

        # (in YAML when asked, as every Status: kube negotiates its errors, without views)
        yaml = plain_yaml(request.headers.get("Accept"))
        if e.code == 413:
            r = _error_response(RequestEntityTooLarge(
                f"the request body is larger than {ctx.settings.max_body_bytes} bytes"), yaml=yaml)
            _close_connection(r)
            return r
        err = ApiError(e.description or "error")
        err.code, err.reason = e.code or 400, "BadRequest"
        return _error_response(err, yaml=yaml)

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS)
    async def handle(path: str) -> Response:
        if ui.handles(request.path):
            # The static page only (no data, no credentials needed): its data calls are API requests.
            try:
                return ui.response(request.path, request.method)
            except ApiError as e:
                return _error_response(e)
        audit_id = new_uid()
        line = begin_request(ctx.settings.request_log, audit_id, request.scope,
                             request.headers.get("User-Agent", ""))
        intake = _Intake()
        note = AuditNote(request.method.lower())
        received = note.received = now_micro()
        metrics = ctx.metrics
        started = time.perf_counter()
        kind = metrics.begin(request.method)
        resp: Response | None = None
        answered = False
        try:
            try:
                try:
                    resp = await _dispatch(ctx, audit_id, intake, note)
                except HTTPException:
                    raise
                except AuditRefused as e:  # blocking-strict, as kube's audit filter answers
                    resp = Response(e.body, 500, content_type="text/plain")
                    resp.headers["X-Content-Type-Options"] = "nosniff"
                    resp.headers["Audit-Id"] = audit_id
                except Exception as e:  # noqa: BLE001 - every error becomes a Status
                    resp = _error_response(e, audit_id)
                    note.failed(e)
                else:
                    resp.headers["Audit-Id"] = audit_id
                accept = request.headers.get("Accept")
                if resp.mimetype == JSON_CT and not _is_stream(resp) and (
                        plain_yaml(accept) if resp.status_code >= 400 else note.rdef is not None and wants_yaml(accept)):
                    # kube's YAML serializer: a resource request's answer (a view too), and any error
                    # Status (negotiated without views, as kube's ErrorNegotiated), in YAML when asked; made
                    # here, in the request's flow control seat (kube's handler serializes in its).
                    # (Discovery documents are made YAML where they are answered.)
                    await _in_yaml(resp, ctx.yaml_slots)
                answered = True
            except (trio.Cancelled, KeyboardInterrupt) as e:
                metrics.abort(labels := _request_labels(ctx, 499), note.tenant or ROOT_TENANT)
                line.end(labels[0], 499)
                if isinstance(e, trio.Cancelled):  # the client went away: kube's ResponseComplete still
                    await audit_gone(ctx.audit, note, audit_id, received)  # (shielded, bounded)
                raise
            except HTTPException as e:
                metrics.observe(labels := _request_labels(ctx, e.code or 500), e.code or 500,
                                time.perf_counter() - started, None, note.tenant or ROOT_TENANT)
                line.end(labels[0], e.code or 500)
                if ctx.audit is not None:  # (a body too large or too slow: answered by Quart's handler)
                    await audit_request(ctx.audit, note, audit_id, e.code or 500, received)
                raise
        finally:
            metrics.end(kind)
            # Seats back once the answer is sent (kube's handler holds them while it writes it: Quart
            # sends after this returns, so the gate gives them back then), or now when the request
            # failed or its client went away; a stream's (a watch's) now, or once its initial events
            # are sent: its long life is outside flow control, as kube's.
            if answered and not _is_stream(resp):
                request.scope[SEATS_UNTIL_SENT] = partial(ctx.pipeline.release, intake.flow)
            elif not (intake.initial_events and _is_stream(resp)):
                ctx.pipeline.release(intake.flow)
        assert resp is not None
        _pf_headers(resp, intake.flow)
        # The request's tenant once it is known to exist, else root: no label from a made-up name.
        tenant = note.tenant or ROOT_TENANT
        metrics.tenant_request(tenant, note.verb, resp.status_code)
        if ctx.audit is not None:
            await audit_request(ctx.audit, note, audit_id, resp.status_code, received)
        if not intake.body_read and _has_body(request.headers):
            _close_connection(resp)
        # Recorded once, at the end: a watch when its stream ends (as kube does), anything else now.
        labels = _request_labels(ctx, resp.status_code)
        if labels[0] == "WATCH" and resp.status_code == 200 and isinstance(resp.response, IterableBody):
            if intake.initial_events:
                resp.response = IterableBody(_seat_until_initial_events(
                    resp.response.iter, partial(ctx.pipeline.release, intake.flow)))
            resp.response = IterableBody(line.watch_body(metrics.watch_body(
                resp.response.iter, labels, _watch_kind(ctx, labels), started, time.perf_counter, tenant), labels[0]))
            if ctx.audit is not None and note.ending is not None:  # its ResponseComplete when it ends
                resp.response = IterableBody(audit_watch_body(ctx.audit, note, resp.response.iter))
        else:
            if ctx.audit is not None and note.ending is not None:
                await audit_watch_end(ctx.audit, note)  # (a watch answered without a stream)
            metrics.observe(labels, resp.status_code, time.perf_counter() - started, resp.content_length, tenant)
            line.end(labels[0], resp.status_code)
        return resp

    app.catch_all_rule = next(r for r in app.url_map.iter_rules() if r.rule == "/<path:path>")
    # Before Quart: flow control's 429s for reads while it is rejecting (the gate), then plain JSON
    # reads of resources (the fast path); everything else is the handler's above.
    app.asgi_app = Gate(ctx, FastPath(ctx, app.asgi_app))  # type: ignore[method-assign]
    return app


async def _in_yaml(resp: Response, slots: trio.CapacityLimiter, content_type: str = YAML_CT) -> None:
    """``resp``'s JSON body made YAML (kube's YAML serializer), sent as ``content_type``: in the event
    loop up to ``YAML_INLINE_BYTES``, a larger one in a worker thread of ``slots`` (the loop serves
    others meanwhile)."""
    try:
        data = await resp.get_data()
        resp.set_data(encode_yaml(data) if len(data) < YAML_INLINE_BYTES
                      else await trio.to_thread.run_sync(encode_yaml, data, limiter=slots))
        resp.content_type = content_type
    except msgspec.DecodeError:  # (a body that is not JSON after all: sent as it is)
        pass


def _is_stream(resp: Response | None) -> bool:
    return resp is not None and resp.status_code == 200 and isinstance(resp.response, IterableBody)


async def _seat_until_initial_events(chunks: Any, release: Callable[[], None]) -> AsyncIterator[bytes]:
    """A watch with ``sendInitialEvents=true`` holds its seats until the initial-events-end
    bookmark is sent (kube's watch initialization), or until it ends, whichever is first."""
    held = True
    try:
        async for chunk in chunks:
            yield chunk
            if held and INITIAL_EVENTS_END in chunk:
                held = False
                release()
    finally:
        if held:
            release()


INITIAL_EVENTS_END = b"k8s.io/initial-events-end"


def _pf_headers(resp: Response, adm: Admission) -> None:
    """kube's ``X-Kubernetes-PF-*`` headers: the matched FlowSchema's and level's UIDs."""
    if adm.schema_uid:
        resp.headers["X-Kubernetes-PF-FlowSchema-UID"] = adm.schema_uid
    if adm.level_uid:
        resp.headers["X-Kubernetes-PF-PriorityLevel-UID"] = adm.level_uid


def _request_labels(ctx: Context, code: int) -> tuple[str, str, str, str, str, str, str]:
    """kube's request-metric labels for the current request (its route parsed again: a few
    microseconds, and the handler's own parse stays the handler's)."""
    route = parse(request.path, ctx.registry)
    args = request.args
    return request_labels(request.method, route, watch=args.get("watch"),
                          content_type=request.headers.get("Content-Type"),
                          dry_run=args.getlist("dryRun") if "dryRun" in args else (), code=code)


def _watch_kind(ctx: Context, labels: tuple[str, ...]) -> str:
    rdef = ctx.registry.for_tenant(split_tenant(request.path)[0]).get(labels[2], labels[3], labels[4])
    return rdef.kind if rdef is not None else ""


class _Intake:
    """What the handler did with the request body: a response sent before it was read must close
    the connection."""

    __slots__ = ("body_read", "flow", "initial_events")

    def __init__(self) -> None:
        self.body_read = False
        self.flow = Admission()  # API Priority and Fairness: the seats held, the UIDs for the headers
        self.initial_events = False  # a watch that holds its seats while it sends its initial events


def _close_connection(resp: Response) -> None:
    """For a response sent before the request body was read (401, 403, 404, 408, 413, ...): on
    HTTP/1.x the client may still be sending it, so the connection cannot carry another request;
    say so. HTTP/2 ends just the stream (and forbids a Connection header)."""
    if request.http_version in ("1.0", "1.1"):
        resp.headers["Connection"] = "close"


def _has_body(headers: Any) -> bool:
    length = headers.get("Content-Length")
    return (length is not None and length.strip() != "0") or "Transfer-Encoding" in headers


def _impersonation(headers: Any) -> tuple[tuple[str, str], ...]:
    """The Impersonate-* headers (User, Group, Uid, Extra-<key>), each value, names lower-cased."""
    found = [(k.lower(), v) for k, v in headers.items() if k[:12].lower() == "impersonate-"]
    return tuple(found)


def _remote_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    """The front-proxy headers (X-Remote-User, -Group, -Extra-<key>), each value, names lower-cased."""
    return tuple((k.lower(), v) for k, v in headers.items() if k[:9].lower() == "x-remote-")


def _client_cert(scope: Any) -> bytes:
    """The connection's client certificate (DER), from the ASGI TLS extension (see
    ``_hypercorn_ext``); b"" without one."""
    tls = (scope.get("extensions") or {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    return ssl.PEM_cert_to_DER_cert(chain[0]) if chain else b""


def _request_info(ctx: Context, who: Request, method: str, tenant: str, path: str,
                  q: dict[str, str]) -> Request | None:
    """The resource request ``who`` makes, read from the path alone (kube's RequestInfo, which its
    audit policy is evaluated on before anything is routed or refused): the same attributes the
    handler sets later for the request it serves; None for a non-resource request. Pure."""
    try:
        if history.handles(path):
            rdef, namespace, name = history.parse_target(ctx.registry.for_tenant(tenant), path)
            return history.authorization_request(who, rdef, namespace, name)
        if path.rstrip("/") == AUDIT_EVENTS_PATH:
            return msgspec.structs.replace(who, verb="list", rdef=AUDIT_EVENTS, namespace="", name="")
        if request.path in APF_DUMPS:
            return None
        route = parse(request.path, ctx.registry)
        if route.kind != "resource" or route.rdef is None:
            return None
        watch = route.legacy_watch or (method in ("GET", "HEAD") and query_bool(q.get("watch")))
        verb = _verb(method, bool(route.name), watch)
    except ApiError:
        return None
    return msgspec.structs.replace(who, verb=verb, rdef=route.rdef, namespace=route.namespace or "",
                                   name=route.name, subresource=route.subresource)


async def _dispatch(ctx: Context, audit_id: str, intake: _Intake, note: AuditNote) -> Response:
    s = ctx.settings
    method = request.method
    q = {k: v for k, v in request.args.items()}
    token = bearer_token(request.headers.get("Authorization", ""))
    # The tenant (logical cluster) is resolved here, once, from the path: /clusters/<tenant>/...;
    # everything below sees the path inside the tenant.
    tenant, path = split_tenant(request.path)
    # Authentication comes first, from the headers alone (kube's filter chain): a request without a
    # valid token is answered 401 before its path, query or body is looked at.
    who = request.scope.get(AUTHENTICATED)
    refused: ApiError | None = None  # impersonation refused: audited as the requester's, then answered
    if who is not None:  # the reject gate authenticated it (no impersonation, proxy or certificate)
        who = msgspec.structs.replace(who, audit_id=audit_id, query=q)
    else:
        asked = Request(
            verb=method.lower(), token=token, audit_id=audit_id, user_agent=request.headers.get("User-Agent", ""),
            source=request.remote_addr or "", query=q, path=path, tenant=tenant,
            impersonate=_impersonation(request.headers), client_cert=(cert := _client_cert(request.scope)),
            remote_headers=_remote_headers(request.headers) if cert else ())
        try:
            who = ctx.pipeline.authenticate(asked)
        except ApiError as e:
            if not asked.impersonate or e.code == 401:
                raise
            # kube checks Impersonate-* headers after its audit filter: the requester is known and audited.
            who = ctx.pipeline.authenticate(msgspec.structs.replace(asked, impersonate=()))
            refused = e
    note_user(who.user.name if who.user is not None else "")
    note.user = who.user
    # kube's audit filter sits right after authentication (before impersonation, flow control,
    # authorization and the handler's routing), with the request's attributes read from its path
    # alone (RequestInfo): every authenticated request's RequestReceived is sent here, whatever
    # answers it later (an unknown tenant, a refused route, a 429, a 403). Blocking webhook modes only.
    info = _request_info(ctx, who, method, tenant, path, q)
    if info is not None:
        note.resource_request(info)
    await audit_received(ctx.audit, note, audit_id)
    if refused is not None:
        raise refused
    if tenant == ANY_TENANT:
        # kcp's /clusters/*/: list and watch across every tenant, for root's system:masters only.
        if who.user is None or MASTERS not in who.user.groups:
            raise Forbidden(f'User "{who.user.name if who.user else ""}" cannot access every logical cluster: '
                            f'only "{MASTERS}" of the "{ROOT_TENANT}" logical cluster may')
    elif not await tenant_exists(ctx.projection, tenant):
        raise tenant_not_found(tenant)  # audited and counted as root's: no label from a made-up name
    note.tenant = tenant
    if history.handles(path):
        if tenant == ANY_TENANT:
            raise NotFound("the server could not find the requested resource")
        return await _history(ctx, who, q, note, path)
    if path.rstrip("/") == AUDIT_EVENTS_PATH:
        if tenant == ANY_TENANT:
            raise NotFound("the server could not find the requested resource")
        return await _audit_events(ctx, who, q, note)
    if request.path in APF_DUMPS and method in ("GET", "HEAD"):
        # kube's debug handlers: a nonResourceURL get, flow-controlled and authorized like any other.
        await ctx.pipeline.admit(get := msgspec.structs.replace(who, verb="get"), intake.flow)
        await ctx.pipeline.submit_authenticated(get, timeout_s=s.request_timeout_s)
        r = Response(APF_DUMPS[request.path](ctx.pipeline.flow_control, who.tenant), 200)
        r.headers["Content-Type"] = "text/plain; charset=utf-8"
        return r
    route = parse(request.path, ctx.registry)
    if route.kind == "conflict" and method in ("GET", "HEAD"):
        raise Conflict(route.name)  # a custom resource two tenants define differently (gateway/_routes.py)
    if tenant == ANY_TENANT and route.kind == "unknown":
        raise NotFound("the server could not find the requested resource")
    if tenant == ANY_TENANT and (route.kind not in ("resource", "discovery", "version", "openapi")
                                 or method not in ("GET", "HEAD")
                                 or route.name and route.kind == "resource"):
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")
    if route.kind == "metrics" and tenant != ROOT_TENANT:
        # The server's metrics count every tenant's objects: root's alone.
        raise NotFound("the server could not find the requested resource")
    if route.kind != "resource":
        if method not in ("GET", "HEAD"):
            if route.kind == "unknown":
                raise NotFound("the server could not find the requested resource")
            raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")
        await ctx.pipeline.admit(get := msgspec.structs.replace(who, verb="get"), intake.flow)
        await ctx.pipeline.submit_authenticated(get, timeout_s=s.request_timeout_s)
        return await _non_resource(ctx, route)

    rdef = route.rdef
    assert rdef is not None
    if route.subresource and (route.subresource not in rdef.subresources or not route.name):
        raise NotFound("the server could not find the requested resource")
    if not rdef.stored and method != "POST":
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")
    opts = None
    if method in ("GET", "HEAD") and not route.name:
        opts = parse_list_options(q, rdef, route.namespace, force_watch=route.legacy_watch)
    verb = _verb(method, bool(route.name), opts is not None and opts.watch)
    if route.subresource and verb not in rdef.subresources[route.subresource]:
        # As kube-apiserver: a subresource's routes exist only for the verbs its storage implements.
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")
    if not route.subresource and verb not in rdef.verbs:
        if rdef.crd:  # a terminating CRD's kind (kube's crdHandler)
            raise MethodNotAllowed(f"{verb} not allowed while custom resource definition is terminating")
        # As kube-apiserver, whose routes exist only for the verbs a storage implements.
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")
    if rdef.namespaced and route.namespace is None and verb not in ("list", "watch"):
        raise MethodNotAllowed(f"{rdef.plural} is namespaced: use /namespaces/<namespace>/{rdef.plural}")
    req = msgspec.structs.replace(who, verb=verb, rdef=rdef, namespace=route.namespace or "", name=route.name,
                                  subresource=route.subresource)
    note.resource_request(req)
    if s.read_only and method in ("POST", "PUT", "PATCH", "DELETE") and rdef.stored:
        # jetkube serve --read-only: no write reaches the log. 405 as kube-apiserver answers a verb a
        # storage does not implement (the server cannot do it, whoever asks: not a 403, which RBAC
        # could lift); reviews (TokenReview, SubjectAccessReview, ...) store nothing and still work.
        at = f" as of resourceVersion {ctx.projection.settings.stop_at}" if ctx.projection.settings.stop_at else ""
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method} "
                               f"(a read-only server{at})")
    intake.initial_events = opts is not None and opts.watch and bool(opts.send_initial)
    # Flow control before the body is read or decoded (kube's chain: authentication, audit,
    # impersonation, priority and fairness, authorization, then the handler reads the body): a
    # rejected request costs no body read and no JSON parsing.
    await ctx.pipeline.admit(req, intake.flow)
    view: View | None = None
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        try:
            _check_route(rdef, route, verb, method)
            if not acceptable(request.headers.get("Accept")):
                raise NotAcceptable(NOT_ACCEPTABLE)
            view = _write_view(request.headers.get("Accept"), q, verb, route.subresource, rdef)
        except ApiError:
            # kube authorizes (its filter chain) before the handler negotiates the answer's media type
            # and view: a user who may not gets the 403, not this 406 or 400.
            authorizer = ctx.pipeline.authorizer
            assert who.user is not None
            await authorizer.check(msgspec.structs.replace(req, user=authorizer.scope(who.user, req)))
            raise
        data = await _read_body(s.max_body_bytes, s.request_timeout_s)
        intake.body_read = True
        if data.strip() or method != "DELETE":
            ctype = request.headers.get("Content-Type")
            # Only the raw body shows repeated keys: found here, decided on by the resource actor.
            body, patch_type, strict = decode_body_strict(
                data, ctype, max_bytes=s.max_body_bytes, for_patch=method == "PATCH",
                strict=method != "DELETE" and q.get("fieldValidation") != "Ignore")
            req = msgspec.structs.replace(req, body=body, patch_type=patch_type, strict_errors=strict)
        req = msgspec.structs.replace(req, options=write_options(verb, q, patch_type=req.patch_type, body=req.body))
    note.submitted = True
    result = await ctx.pipeline.submit_authenticated(req, timeout_s=s.request_timeout_s)
    if not isinstance(result, Allowed):
        code, body = write_response(result)
        ctype = JSON_CT
        if view is not None:
            body, ctype = _write_in_view(view, rdef, route.subresource, result, body)
        note.written(req, code, result.audit_annotations)
        r = Response(body, status=code, content_type=ctype)
        for w in result.warnings:
            r.headers.add("Warning", warning_header(w))
        return r
    assert isinstance(result, Allowed)
    proj = ctx.projection
    _check_route(rdef, route, verb, method)
    check_acceptable(request.headers.get("Accept"))  # 406 for an Accept kube serves nothing of
    table = wants_table(request.headers.get("Accept"))
    include = ""
    if table:  # (before a YAML watch's 406: kube reads the Table's options first, optionsForTransform)
        try:
            include = parse_include_object(q.get("includeObject"))
        except ValueError as e:
            raise BadRequest(str(e)) from None
    if verb == "watch" and wants_yaml(request.headers.get("Accept")):
        raise NotAcceptable(NOT_ACCEPTABLE_STREAM)  # kube: YAML (a YAML Table too) has no stream serializer
    # PartialObjectMetadata(List): its apiVersion (406 when a list asks for the single kind or not).
    metadata = not table and wants_metadata(request.headers.get("Accept"))
    meta_version = metadata_api_version(metadata, is_list=verb == "list") if metadata else ""
    # Protobuf answers for kinds that have a message (built-in kinds); others get JSON, as CRDs do.
    protobuf = (not table and not metadata and rdef.protobuf_message is not None
                and wants_protobuf(request.headers.get("Accept")))
    # A version served by conversion reads the storage version's objects, converted.
    storage = ctx.registry.for_tenant(tenant).storage_of(rdef)
    if verb == "get":
        key = Key(tenant, storage.group, storage.plural, route.namespace or "", route.name)
        async with read_deadline(s.request_timeout_s):
            data = await get_object(proj, key, rdef, resource_version_param(q), q.get("resourceVersionMatch"))
        data = (await served_objects(ctx.converter, [data], storage, rdef, is_list=False))[0]
        if route.subresource == "scale":  # a Scale: its metadata when asked, never a Table
            scale = scale_of(rdef, data)
            return _json_response(metadata_for_object(scale, api_version=meta_version) if meta_version else scale)
        if table:
            return _table_response(table_for_object(rdef, data, api_version=table, include_object=include,
                                                    now=_now()), table)
        if meta_version:
            return _json_response(metadata_for_object(data, api_version=meta_version))
        if protobuf:
            return _protobuf_response(data)
        return _json_response(data)
    assert opts is not None
    if verb == "list":
        async with read_deadline(s.request_timeout_s):
            if tenant == ANY_TENANT:
                listed = await list_every_tenant(proj, storage, opts)
            else:
                listed = await list_objects(proj, tenant, storage, opts)
        listed = await served_list(ctx.converter, listed, storage, rdef)
        if table:
            return _table_response(table_for_list(
                rdef, listed.items, api_version=table, include_object=include,
                resource_version=str(listed.resource_version), continue_token=listed.continue_token,
                remaining=listed.remaining, now=_now(), tenant_column=tenant == ANY_TENANT), table)
        if meta_version:
            return _json_response(metadata_for_list(
                listed.items, api_version=meta_version, resource_version=str(listed.resource_version),
                continue_token=listed.continue_token, remaining=listed.remaining))
        body = list_body(rdef, listed)
        return _protobuf_response(body) if protobuf else _json_response(body)
    timeout = opts.timeout_s if opts.timeout_s is not None else int(s.min_request_timeout_s *
                                                                  (1 + random.random()))
    # A custom resource's watch ends once its kind is no longer served there as it was.
    served = still_served(ctx.registry, tenant, rdef, storage) if rdef.crd else None
    if table:
        first = [True]

        def encode(t: str, ch: Change) -> bytes:
            line = table_watch_line(rdef, t, served_object(ch.object(t), storage, rdef), api_version=table, include_object=include, now=_now(),
                                    headers=first[0], tenant_column=tenant == ANY_TENANT)
            first[0] = False
            return line

        return _stream(ctx.watches, watch_lines(proj, tenant, rdef, opts, encode, storage, ctx.converter), timeout,
                       table_content_type(table), served)
    if meta_version:
        def encode_metadata(t: str, ch: Change) -> bytes:
            return metadata_watch_line(t, served_object(ch.object(t), storage, rdef), api_version=meta_version)

        return _stream(ctx.watches, watch_lines(proj, tenant, rdef, opts, encode_metadata, storage, ctx.converter),
                       timeout, served=served)
    if protobuf:
        lines = (watch_lines(proj, tenant, rdef, opts, served_line(storage, rdef), storage) if storage is not rdef
                 else watch_lines(proj, tenant, rdef, opts))
        return _stream(ctx.watches, _ProtobufFrames(lines), timeout, PROTOBUF_WATCH_CT, served)
    if rewritten(storage, rdef) or ctx.converter.needed(storage, rdef):
        return _stream(ctx.watches, watch_lines(proj, tenant, rdef, opts, served_line(storage, rdef), storage,
                                                ctx.converter), timeout, served=served)
    return _stream(ctx.watches, watch_lines(proj, tenant, rdef, opts), timeout, served=served)


def _check_route(rdef: ResourceDef, route: Any, verb: str, method: str) -> None:
    """kube's router before its handler (after authorization): a built-in kind's route takes only an Accept
    naming one of its types or ``*/*`` (:func:`check_route`), a collection's GET its stream types too; a custom
    resource's handler (apiextensions' crdHandler, not go-restful) only negotiates."""
    if rdef.crd:
        return
    stream = route.legacy_watch or verb in ("list", "watch")
    check_route(request.headers.get("Accept"), ROUTE_STREAM_MEDIA_TYPES if stream else ROUTE_MEDIA_TYPES,
                method=method, bodiless=request.headers.get("Content-Length", "") in ("", "0"))


def _write_view(accept: str | None, q: dict[str, str], verb: str, subresource: str, rdef: Any) -> View | None:
    """The view (Table, PartialObjectMetadata(List)) a write asked its answer in, checked before the
    write: kube transforms a write's answer after storing it (``transformResponseObject``), so a
    bad ``includeObject`` (400) or a view its answer cannot take (406: a list for one object, one
    object for a list) is answered after the write; here, when the answer's shape is known from
    the request, it is refused before anything is written, with kube's code and message."""
    try:
        view = view_for(accept, q.get("includeObject"))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    if view is None:
        return None
    if verb == "deletecollection":
        check_view(view, is_list=True)
    elif verb in ("create", "update", "patch") and subresource in ("", "status", "scale") and rdef.stored:
        check_view(view, is_list=False)  # always an object (bindings and evictions answer a Status)
    return view


def _write_in_view(view: View, rdef: Any, subresource: str, result: Any, body: bytes) -> tuple[bytes, str]:
    """A write's answer in ``view`` (kube's ``doTransformObject``): a Status stays a Status (a
    delete done, a binding, an eviction); an object becomes a one-row Table or its
    PartialObjectMetadata; a deletecollection's list a Table or a PartialObjectMetadataList. A
    Scale's Table is the Scale itself, as a GET of ``/scale`` answers."""
    if isinstance(result, DeletedCollection):
        return list_in_view(view, rdef, result.items, resource_version=str(result.resource_version),
                            now=_now()), view_content_type(view)
    if isinstance(result, Stored) or (isinstance(result, Deleted) and result.pending):
        if subresource == "scale" and view.kind == "Table":
            return body, JSON_CT
        return object_in_view(view, rdef, body, now=_now()), view_content_type(view)
    return body, JSON_CT


def _protobuf_response(data: bytes) -> Response:
    try:
        return Response(encode_json_object(data), status=200, content_type=PROTOBUF_CT)
    except ProtobufError:  # a stored value the message cannot carry: JSON says it as it is
        return _json_response(data)


class _ProtobufFrames:
    """JSON watch lines (WatchLines) re-framed as protobuf watch events (encoded once per protobuf
    watcher), with their :meth:`ready` chunks too."""

    __slots__ = ("_lines",)

    def __init__(self, lines: WatchLines) -> None:
        self._lines = lines

    def __aiter__(self) -> _ProtobufFrames:
        return self

    async def __anext__(self) -> bytes:
        return encode_watch_lines(await self._lines.__anext__())

    def ready(self) -> bytes | None:
        chunk = self._lines.ready()
        return None if chunk is None else encode_watch_lines(chunk)

    def queued(self) -> bool:
        return self._lines.queued()

    def live(self) -> bool:
        return self._lines.live()

    def stop(self) -> None:
        self._lines.stop()

    async def aclose(self) -> None:
        await self._lines.aclose()


async def _history(ctx: Context, who: Request, q: dict[str, str], note: AuditNote, path: str) -> Response:
    """``history.jetkube.io/v1`` (gateway/_history.py): authorized as a get of ``<object>/history``."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {request.method}")
    s = ctx.settings
    if path.rstrip("/") == history.COMPACTION:
        await ctx.pipeline.submit_authenticated(msgspec.structs.replace(who, verb="get"),
                                                timeout_s=s.request_timeout_s)
        async with read_deadline(s.request_timeout_s):
            return _json_response(await history.compaction_body(ctx.projection.log))
    if path.rstrip("/") == history.RV_AT_TIME:
        # Not about any object: a non-resource get (every authenticated user may read versions).
        await ctx.pipeline.submit_authenticated(msgspec.structs.replace(who, verb="get"),
                                                timeout_s=s.request_timeout_s)
        async with read_deadline(s.request_timeout_s):
            return _json_response(await history.resource_version_at(ctx.projection.log, q.get("time", "")))
    rdef, namespace, name = history.parse_target(ctx.registry.for_tenant(who.tenant), path)
    authz = history.authorization_request(who, rdef, namespace, name)
    note.resource_request(authz)
    allowed = await ctx.pipeline.submit_authenticated(authz, timeout_s=s.request_timeout_s)
    assert isinstance(allowed, Allowed)
    async with read_deadline(s.request_timeout_s):
        body = await history.history_body(ctx.projection.log, who.tenant, rdef, namespace, name, q)
    return _json_response(body)


async def _audit_events(ctx: Context, who: Request, q: dict[str, str], note: AuditNote) -> Response:
    """``GET /apis/audit.jetkube.io/v1/events``: kube's audit JSON lines (gateway/_audit.py),
    authorized as a ``list`` of ``events.audit.jetkube.io``."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {request.method}")
    authz = msgspec.structs.replace(who, verb="list", rdef=AUDIT_EVENTS, namespace="", name="")
    note.resource_request(authz)
    s = ctx.settings
    await ctx.pipeline.submit_authenticated(authz, timeout_s=s.request_timeout_s)
    query = parse_query(q)
    lines = await audit_query(ctx.projection.log, ctx.audit.log if ctx.audit else None,
                              ctx.registry.for_tenant(who.tenant),
                              s.audit_policy, query, tenant=who.tenant, timeout_s=s.request_timeout_s)
    return Response(b"".join(lines), status=200, content_type="application/x-ndjson")


async def _read_body(limit: int, timeout_s: float) -> bytes:
    """The whole body within ``timeout_s`` (all of it, not per chunk: kube's request timeout also
    covers the body); past ``limit`` bytes it is drained, within the same deadline, then 413."""
    chunks: list[bytes] = []
    total = 0
    with trio.move_on_after(timeout_s) as scope:
        async for chunk in request.body:
            total += len(chunk)
            if total <= limit:
                chunks.append(chunk)
    if scope.cancelled_caught:
        raise BodyTimeout(timeout_s)
    if total > limit:
        raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
    return b"".join(chunks)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _table_response(body: bytes, api_version: str) -> Response:
    return Response(body, status=200, content_type=table_content_type(api_version))


def _stream(watches: WatchStreams, lines: Any, timeout_s: int, content_type: str = JSON_CT,
            served: Callable[[], bool] | None = None) -> Response:
    async def body() -> Any:
        # Ends at the watch's timeout, at shutdown or when its kind stops being served (``served``):
        # either way the body ends normally, so the chunked response is finished and the client
        # sees a clean end of the stream.
        # Events already queued (``lines.queued``, e.g. WatchLines) are taken as a chunk without a
        # scope (``lines.ready``), after one checkpoint (what else comes meanwhile joins the chunk, as
        # it did at a receive's own checkpoint: as many writes as before), once ``end.over`` says
        # the watch goes on; a wait for the watcher's queue alone (``lines.live``) is ended by
        # ``end.stop``, when the deadline is kept by ``watches.run``; any other wait is in a scope
        # of its own (WatchEnd).
        end = watches.open(timeout_s, served)
        it = lines.__aiter__()
        queued = getattr(lines, "queued", None)
        live = getattr(lines, "live", None)
        end.stop = getattr(lines, "stop", None)
        try:
            while True:
                if end.over():
                    break
                line = None
                if queued is not None and queued():
                    await trio.lowlevel.checkpoint()
                    if end.over():
                        break
                    line = lines.ready()
                if line is None:
                    if live is not None and watches.timed and live():
                        try:
                            line = await it.__anext__()
                        except StopAsyncIteration:
                            break
                        if end.over():
                            break  # (woken by its end, or it came with it: not sent)
                    else:
                        with end as scope:  # (no scope open while this generator yields: WatchEnd)
                            try:
                                line = await it.__anext__()
                            except StopAsyncIteration:
                                break
                        if scope.cancelled_caught:
                            break
                yield line
        finally:
            watches.close(end)
        await lines.aclose()

    r = Response(body(), status=200, content_type=content_type)
    r.timeout = None
    return r


async def _non_resource(ctx: Context, route: Any) -> Response:
    s = ctx.settings
    if route.kind == "version":
        # kube's go-restful route, Produces JSON alone: 406 (its Status in YAML when the Accept asks YAML).
        check_route(request.headers.get("Accept"), VERSION_MEDIA_TYPES)
        return _json_response(_enc.encode(s.version_info()))
    if route.kind == "openapi":
        return await _openapi(ctx, route)
    if route.kind == "metrics":
        return Response(await ctx.metrics.render(), status=200, content_type=METRICS_CONTENT_TYPE)
    if route.kind == "oidc":
        # Service-account issuer discovery: a third party verifies our tokens with these alone.
        key = ctx.pipeline.reviews_core.key
        if route.path.rstrip("/") == JWKS_PATH:
            r = Response(_enc.encode(jwks(key)), status=200, content_type="application/jwk-set+json")
        else:
            doc = openid_configuration(key, f"https://{ctx.server_address}{JWKS_PATH}")
            r = _json_response(_enc.encode(doc))
        r.headers["Cache-Control"] = "public, max-age=3600"
        return r
    if route.kind == "health":
        # Only readiness (and an explicit /<probe>/projection or /<probe>/log check) depends on the
        # log: a connection to NATS and a projection caught up with it. Liveness does not: the bus
        # reconnects by itself, and the embedded nats-server is restarted by its supervisor.
        # A connection can look up while its server answers nothing (a frozen node): readiness
        # also asks the log for its head, bounded, as kube's etcd check does a real request.
        projected = ctx.projection.ready.is_set() and ctx.projection.following
        needs_log = route.group == "readyz" or route.name in ("projection", "log")
        connected = ctx.projection.log.bridge.connected
        connected = connected and (not needs_log or await ctx.projection.log.responds(timeout_s=1.0))
        draining = ctx.draining and route.group == "readyz"  # as kube: liveness stays ok while draining
        ok = (projected and connected and not draining) if needs_log else True
        if "verbose" in request.args:
            checks = ("[+]ping ok\n" + ("[+]log ok\n" if connected else "[-]log not connected\n") +
                      ("[+]projection ok\n" if projected else "[-]projection not caught up\n") +
                      ("[-]shutdown: draining\n" if draining else "") +
                      (f"[+]log-compaction ok (compaction point {ctx.projection.compacted})\n"
                       if ctx.projection.compacted else ""))
            text = checks + f"{route.group} {'check passed' if ok else 'check failed'}\n"
        else:
            text = "ok" if ok else "not ready"
        return Response(text, status=200 if ok else 503, content_type="text/plain; charset=utf-8")
    if route.kind == "discovery":
        return await _discovery(ctx, route)
    raise NotFound("the server could not find the requested resource")


async def _discovery(ctx: Context, route: Any) -> Response:
    """A discovery document in JSON or YAML, as negotiated (gateway/_discovery.py): the aggregated
    form's Content-Type echoes its clause; a legacy one is negotiated as kube's
    ``DefaultEndpointRestrictions`` (no ``as=`` view: 406 for an Accept with no clause kube takes,
    after the 404 of a group-version not served). YAML is made in the request's seat, a large document
    in a worker thread of ``Context.yaml_slots`` (the aggregated /apis is tens of KiB)."""
    accept = request.headers.get("Accept")
    reg = ctx.registry.for_tenant(route.tenant)  # the tenant's CRDs, and only its own
    top = route.path.rstrip("/")
    if top == "/api":
        # kube's go-restful /api route (its Produces: JSON, YAML, protobuf) before any negotiation; /apis and
        # /apis/<group> are kube-aggregator's handlers, which only negotiate (apiserver.go, handler_apis.go).
        check_route(accept, ROUTE_MEDIA_TYPES)
    if top in ("/api", "/apis"):
        variant = discovery.negotiate_discovery(accept)
        if variant is not None:
            version, content_type = variant
            doc = discovery.aggregated(reg, legacy_core=top == "/api", version=version)
            r = Response(_enc.encode(doc), status=200, content_type=content_type)
            r.headers["Vary"] = "Accept"
            if content_type.startswith(YAML_CT):
                await _in_yaml(r, ctx.yaml_slots, content_type)
            return r
    if top == "/api":
        doc: dict[str, Any] | None = discovery.api_versions(ctx.server_address)
    elif top == "/apis":
        doc = discovery.api_group_list(reg)
    elif route.group and not route.version:
        doc = discovery.api_group(reg, route.group)
    else:
        doc = discovery.api_resource_list(reg, route.group, route.version)
    if doc is None:
        raise NotFound("the server could not find the requested resource")
    if route.version and any(not d.crd for d in reg.defs if (d.group, d.version) == (route.group, route.version)):
        # A built-in group-version's discovery is a go-restful route (discovery/version.go); a custom
        # resources' group-version is apiextensions' handler, which only negotiates.
        check_route(accept, ROUTE_MEDIA_TYPES)
    check_acceptable(accept, views=False)
    r = _json_response(_enc.encode(doc))
    if plain_yaml(accept):
        await _in_yaml(r, ctx.yaml_slots)
    return r


async def _openapi(ctx: Context, route: Any) -> Response:
    # The tenant's kinds (its CRDs'); documents built on first use, off the event loop.
    reg = ctx.registry.for_tenant(route.tenant)
    sub = route.name
    accept = request.headers.get("Accept")
    if route.path.startswith("/swagger"):
        return Response(await ctx.openapi.v2(reg, protobuf=True), status=200, content_type="application/octet-stream")
    if sub == "v2":
        # kube-openapi's handler.go: JSON or the proto-openapi types, nothing else (406, no body).
        media = openapi_media(accept, OPENAPI_V2_PROTOBUF)
        if media is None:
            return _openapi_not_acceptable()
        if media != "json":
            # As kube-openapi: asked for as the proto-openapi media type, sent as octet-stream (client-go's
            # REST client cannot parse a Content-Type with '@' in it).
            return Response(await ctx.openapi.v2(reg, protobuf=True), status=200,
                            content_type="application/octet-stream")
        return _json_response(await ctx.openapi.v2(reg, protobuf=False))
    if sub == "v3":  # (kube-openapi's handler3 answers this index in JSON, whatever the Accept)
        return _json_response((await ctx.openapi.v3(reg))[1])
    if sub.startswith("v3/"):
        # handler3: JSON or its protobuf (answered in JSON here), nothing else (406, no body), before
        # the document is looked at.
        if openapi_media(accept, OPENAPI_V3_PROTOBUF) is None:
            return _openapi_not_acceptable()
        doc = (await ctx.openapi.v3(reg))[0].get(sub[3:])
        if doc is not None:
            etag = openapi.document_etag(doc)
            wanted = request.args.get("hash")
            if wanted and wanted != etag:
                r = Response(b"", status=301)
                # Resolved against the request's URL: the tenant's path prefix stays.
                prefix = "" if route.tenant == ROOT_TENANT else f"{CLUSTERS_PREFIX}{route.tenant}"
                r.headers["Location"] = f"{prefix}/openapi/{sub}?hash={etag}"
                return r
            r = _json_response(doc)
            r.headers["Etag"] = f'"{etag}"'
            if wanted:  # (else kube's default, no-cache, private)
                r.headers["Cache-Control"] = "public, immutable"
            return r
    raise NotFound("the server could not find the requested resource")


def _openapi_not_acceptable() -> Response:
    """kube-openapi's 406 for an Accept it serves nothing of (YAML among them): no body, no Content-Type."""
    r = Response(b"", status=406)
    del r.headers["Content-Type"]
    r.headers["Vary"] = "Accept"
    return r
