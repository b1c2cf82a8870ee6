"""The reject gate: flow control's 429s answered at the ASGI level, before Quart.

Under a flood most answers are flow control's rejections, and through Quart one costs about twice a
no-op request (request and response objects, the app context, the handler's task). While flow
control is rejecting (it rejected something in the last second), :class:`Gate` looks at each
bodiless read (GET/HEAD) itself: it authenticates it, routes it, classifies it and asks flow
control whether it would be rejected at once (its queue full, or its Reject level out of room,
:meth:`actors.FlowControl.refuse_nowait`). If so it writes the same 429 the handler would (kube's
plain text, ``Retry-After``, ``X-Kubernetes-PF-FlowSchema-UID``, ``X-Kubernetes-PF-PriorityLevel-UID``,
``Audit-Id``), counted in the same metrics, audited and logged the same way. Anything else, and
anything the gate is unsure of (another method, an error, a tenant this gateway has not seen,
impersonation, a client certificate, the audit webhook's blocking modes), goes to the app unchanged,
which decides as before: the gate only ever answers what the app would have answered with a
rejection at that instant.

Writes are not gated: a write's 429 sent before its body is read must close an HTTP/1.x connection
(see ``_app._close_connection``), which the app does, and so does the fast path (``gateway._fast``)
for the JSON creates and updates it serves: their 429s never reach Quart either.

A read the gate authenticated but does not refuse carries its authenticated request on, in the
scope under :data:`AUTHENTICATED`: the fast path (``gateway._fast``) and the app use it instead of
authenticating again.
"""

from __future__ import annotations

import functools
import time
from contextlib import nullcontext
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from actors import APF_DUMPS, Admission, Rejected, Request, bearer_token, tenant_exists
from bus import ANY_TENANT
from kinds._uid import new_uid
from projections import now_micro

from . import _history as history
from . import _loopprobe as loopprobe
from . import _ui as ui
from ._audit import AUDIT_EVENTS_PATH, AuditNote, audit_request
from ._hypercorn_ext import PACE_KEY, PACE_RELEASE, PACE_REPLAY, PROBE_MARKS
from ._logging import begin_request, note_user
from ._metrics import request_labels
from ._pacing import pace_key
from ._routes import parse, split_tenant
from ._status import CACHE_CONTROL, status_for

_READS = ("GET", "HEAD")
#: What :meth:`Gate._reject` reads of a scope (a replay's scope keeps these only).
_REPLAY_SCOPE = frozenset(("type", "method", "path", "raw_path", "query_string", "client", "headers", "scheme",
                           "http_version"))
#: The scope key of the request the gate authenticated, as it was before (see :meth:`Gate._replay`).
_UNAUTHENTICATED = "jetkube.gate_unauthenticated"
#: The scope key of a request the gate authenticated (an ``actors.Request`` with its user; no
#: impersonation, front proxy or client certificate): see the module docstring.
AUTHENTICATED = "jetkube.authenticated"


@functools.cache
def rejected(retry_after_s: int) -> tuple[int, bytes, dict[str, str]]:
    """Flow control's 429 (kube's plain text: gateway/_status.py), encoded once per Retry-After
    value (1..32 s): a flood's rejections are the most frequent response there is."""
    return status_for(Rejected(retry_after_s))


def error_answer(exc: BaseException) -> tuple[int, bytes, dict[str, str]]:
    """(code, body, extra headers) of an error, as the app answers it (flow control's rejections
    from the cache)."""
    if type(exc) is Rejected:
        return rejected(exc.retry_after_s)
    return status_for(exc)


def response_headers(body: bytes, extra: dict[str, str], audit_id: str, adm: Admission,
                     warnings: tuple[str, ...] = ()) -> list[tuple[bytes, bytes]]:
    """The ASGI headers of an answer as the app sends them through Quart: Content-Type (JSON,
    unless ``extra`` has one), Content-Length, Cache-Control (kube's default: ``_status.CACHE_CONTROL``),
    the rest of ``extra`` (e.g. Retry-After), ``Warning`` headers (values as sent), Audit-Id, then flow
    control's two UIDs."""
    out = [(b"content-type", extra.get("Content-Type", "application/json").encode()),
           (b"content-length", b"%d" % len(body)), CACHE_CONTROL]
    if extra:
        out += [(k.lower().encode(), v.encode()) for k, v in extra.items() if k != "Content-Type"]
    if warnings:
        out += [(b"warning", w.encode()) for w in warnings]
    out.append((b"audit-id", audit_id.encode()))
    if adm.schema_uid:
        out.append((b"x-kubernetes-pf-flowschema-uid", adm.schema_uid.encode()))
    if adm.level_uid:
        out.append((b"x-kubernetes-pf-prioritylevel-uid", adm.level_uid.encode()))
    return out


#: A request's scope key: what gives back the flow control seats a handler holds until its answer
#: is sent (kube's handler holds its seats while it writes the answer: APF releases them when the
#: handler returns). Quart sends the answer after the handler returns, so the handler leaves the
#: release here and :class:`Gate` calls it once the app is done.
SEATS_UNTIL_SENT = "jetkube.seats_until_sent"


class Gate:
    """ASGI middleware around the Quart app (``app.asgi_app``): see the module docstring."""

    def __init__(self, ctx: Any, app: Any) -> None:
        self.ctx = ctx  # gateway._app.Context (not imported: _app imports this module)
        self.app = app
        # A replayed 429's request span (gateway._tracing.Tracing.request_span); None: tracing is off.
        self._request_span = getattr(getattr(ctx.pipeline, "spans", None), "request_span", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        marks = scope.get(PROBE_MARKS)
        if marks is not None:  # the loop probe traces this connection's requests (JETKUBE_LOOP_PROBE_TRACE)
            marks["app"] = loopprobe.mark()
            try:
                return await self._call(scope, receive, send)
            finally:
                marks["app_end"] = loopprobe.mark()
                loopprobe.trace(scope["path"], marks)
        return await self._call(scope, receive, send)

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        """The app, then the flow control seats a handler left held until its answer was sent
        (:data:`SEATS_UNTIL_SENT`), given back however the sending ended."""
        try:
            await self.app(scope, receive, send)
        finally:
            release = scope.pop(SEATS_UNTIL_SENT, None)
            if release is not None:
                release()

    async def _call(self, scope: Any, receive: Any, send: Any) -> None:
        # A paced request (gateway/_pacing.py) holds its tenant's slot while it may be answered 429
        # here, at once; a request going on to the app gives it back first (it may wait in flow
        # control's queues, where it is not runnable).
        paced = scope.pop(PACE_RELEASE, None)
        if scope["type"] == "http":
            # The flow a 429 paces this connection by (gateway/_pacing.py): the tenant flow control
            # charges the request to, from the routed (decoded) path; none for the probes.
            scope[PACE_KEY] = pace_key(scope["path"])
        if scope["type"] != "http" or scope["method"] not in _READS or not self.ctx.pipeline.flow_control.rejecting():
            if paced is not None:
                paced()
            return await self._app(scope, receive, send)
        audit = self.ctx.audit
        if audit is not None and audit.blocking is not None:
            # The audit webhook's blocking modes: kube sends RequestReceived before flow control
            # answers, and waits for it; the app does that (gateway/_audit.py audit_received).
            if paced is not None:
                paced()
            return await self._app(scope, receive, send)
        decided = await self._decide(scope)
        if decided is None:
            if paced is not None:
                paced()
            return await self._app(scope, receive, send)
        await self._reject(scope, send, *decided)

    async def _decide(self, scope: Any) -> tuple[Request, Any, Admission, int, dict[str, str], dict[bytes, bytes]] | None:
        """(request, route, UIDs, Retry-After, query, headers) of a request flow control refuses
        now; None: the app decides."""
        ctx = self.ctx
        path: str = scope["path"]
        if ui.handles(path):
            return None
        headers: dict[bytes, bytes] = {}
        for k, v in scope["headers"]:
            if k.startswith((b"impersonate-", b"x-remote-")) or k in (b"content-length", b"transfer-encoding"):
                return None  # the app's cases: impersonation, a front proxy, a body
            headers.setdefault(k, v)  # the first of repeated headers, as werkzeug's Headers.get
        if ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain"):
            return None  # authenticated by a client certificate: the app's
        tenant, inner = split_tenant(path)
        if tenant == ANY_TENANT or history.handles(inner) or inner.rstrip("/") == AUDIT_EVENTS_PATH:
            return None
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if not token:
            return None
        q: dict[str, str] = {}
        for k, v in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            q.setdefault(k, v)
        who = scope.get(AUTHENTICATED)
        if who is None:
            method = scope["method"]
            client = scope.get("client")
            base = Request(verb=method.lower(), token=token, audit_id="", source=(client or ["<local>"])[0],
                           user_agent=headers.get(b"user-agent", b"").decode("latin-1"), query=q, path=inner,
                           tenant=tenant)
            try:
                who = ctx.pipeline.authenticate(base)
            except Exception:  # noqa: BLE001 - a 401/403/400: the app answers it
                return None
            if who.user is None:
                return None
            scope[_UNAUTHENTICATED] = base  # (a rejection's replay authenticates it again)
            scope[AUTHENTICATED] = who  # not refused: the request goes on authenticated
        # (else a declined replay of these very bytes authenticated it just now: ``_replay``'s carry)
        if not await tenant_exists(ctx.projection, tenant):
            return None  # (a known tenant does not wait: the projection has it)
        route = parse(path, ctx.registry)
        if route.kind == "metrics" or path in APF_DUMPS:
            return None
        if route.kind != "resource":
            if route.kind == "unknown":
                return None
            req = msgspec.structs.replace(who, verb="get")
        else:
            rdef = route.rdef
            if rdef is None or not rdef.stored or (route.subresource and (
                    route.subresource not in rdef.subresources or not route.name)):
                return None
            watch = route.legacy_watch or q.get("watch", "").lower() in ("true", "1")
            verb = "get" if route.name else ("watch" if watch else "list")
            if (verb not in rdef.subresources[route.subresource]) if route.subresource else (verb not in rdef.verbs):
                return None
            req = msgspec.structs.replace(who, verb=verb, rdef=rdef, namespace=route.namespace or "",
                                          name=route.name, subresource=route.subresource)
        adm = Admission()
        retry_after_s = ctx.pipeline.flow_control.refuse_nowait(req, adm)
        if not retry_after_s:
            return None
        return req, route, adm, retry_after_s, q, headers

    async def _replay(self, scope: Any, req: Request, route: Any, q: dict[str, str], headers: dict[bytes, bytes],
                      send: Any, carry: dict[str, Any]) -> bool:
        """The same request again, byte for byte, on the connection this gate just answered 429
        (gateway/_hypercorn_ext.py: a paced connection's next bytes, before they are parsed): if flow
        control refuses it now, answer it through ``send`` as :meth:`_reject` does (the same 429,
        metrics, log line and audit record; its authentication, route and flow taken from the first
        answer, its user authenticated again) and return True; else False, and the request is parsed and
        served as any other (authenticated again unless flow control let it through: then ``carry``
        holds its authentication, for its scope, and it is not authenticated twice)."""
        ctx = self.ctx
        pipeline = ctx.pipeline
        fc = pipeline.flow_control
        audit = ctx.audit
        if not fc.rejecting() or (audit is not None and audit.blocking is not None):
            return False
        rdef = route.rdef if route.kind == "resource" else None
        if rdef is not None and ctx.registry.for_tenant(req.tenant).get(rdef.group, rdef.version, rdef.plural) is not rdef:
            return False  # its kind changed (a CRD's): routed again
        # Authenticated again, as every request, before flow control is asked: ``refuse_nowait`` counts
        # a rejection (metrics, the tenant's borrowing), so a token revoked or expired since (the app's
        # 401) or now another user's is never counted as one.
        base = scope[_UNAUTHENTICATED]
        try:
            who = pipeline.authenticate(base)
        except Exception:  # noqa: BLE001 - a 401/403/400: the app answers it
            return False
        if who.user != req.user:
            return False
        adm = Admission()
        retry_after_s = fc.refuse_nowait(req, adm)
        if not retry_after_s:
            # The same bytes on the same connection: the request parsed from them is this one, just
            # authenticated (``_decide``, the fast path and the app take it from the scope).
            carry[_UNAUTHENTICATED], carry[AUTHENTICATED] = base, who
            return False
        # A span as any request's (the ASGI wrapper's, which a replay does not go through), if tracing is on.
        with nullcontext(send) if self._request_span is None else self._request_span(scope, send) as answer:
            await self._reject(scope, answer, req, route, adm, retry_after_s, q, headers)
        return True

    async def _reject(self, scope: Any, send: Any, req: Request, route: Any, adm: Admission, retry_after_s: int,
                      q: dict[str, str], headers: dict[bytes, bytes]) -> None:
        """The handler's 429, its metrics, request-log line and audit record. The scope gets
        :data:`PACE_REPLAY`: the same request again on this connection is answered by
        :meth:`_replay` before it is parsed."""
        ctx = self.ctx
        if PACE_REPLAY not in scope:  # (a replay's scope, a copy, has it: None)
            copy = {k: v for k, v in scope.items() if k in _REPLAY_SCOPE}
            copy[PACE_REPLAY] = None
            copy[_UNAUTHENTICATED] = scope[_UNAUTHENTICATED]
            scope[PACE_REPLAY] = functools.partial(self._replay, copy, req, route, q, headers)
        metrics = ctx.metrics
        received = now_micro()
        started = time.perf_counter()
        audit_id = new_uid()
        user_agent = headers.get(b"user-agent", b"").decode("latin-1")
        line = begin_request(ctx.settings.request_log, audit_id, scope, user_agent)
        assert req.user is not None
        note_user(req.user.name)
        method = scope["method"]
        kind = metrics.begin(method)
        code, body, extra = rejected(retry_after_s)
        out = response_headers(body, extra, audit_id, adm)
        try:
            await send({"type": "http.response.start", "status": code, "headers": out})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        finally:
            metrics.end(kind)
        note = AuditNote(method.lower())
        note.user, note.tenant = req.user, req.tenant
        if route.kind == "resource":
            note.resource_request(req)
        metrics.tenant_request(req.tenant, note.verb, code)
        if ctx.audit is not None:
            qs = scope["query_string"].decode("latin-1")
            path = scope["path"]
            await audit_request(ctx.audit, note, audit_id, code, received,
                                (path, f"{path}?{qs}" if qs else path, req.source, user_agent))
        dry = [v for k, v in parse_qsl(scope["query_string"].decode("latin-1")) if k == "dryRun"]
        labels = request_labels(method, route, watch=q.get("watch"), content_type=_str(headers.get(b"content-type")),
                                dry_run=dry, code=code)
        metrics.observe(labels, code, time.perf_counter() - started, len(body), req.tenant)
        line.end(labels[0], code)


def _str(v: bytes | None) -> str | None:
    return v.decode("latin-1") if v is not None else None

