"""The fast path: the hottest requests answered at the ASGI level, before Quart.

Most requests a cluster serves are reads and writes of single objects as JSON (controllers' and
kubectl's GETs, LISTs, creates and updates), and through Quart each one pays for the framework's
per-request machinery (request and response objects, the app and request contexts, the handler's
task, werkzeug's header classes) about as much as for jetkube's own work on a read.
:class:`FastPath` serves the common cases itself, in the task hypercorn gave the request, with the
same stages in the same order as the app's handler (``gateway._app.create_app``'s ``handle`` and
``_dispatch``): authentication, the tenant, API Priority and Fairness seats, authorization (and for
a write its body, decoded once, then admission and the resource actor), the answer, then the
request's metrics, audit record and request-log line. Its answers are the app's, byte for byte
(status, headers, body), and so are its side effects; tests send the same requests through both
paths and compare them (``tests/integration/test_fast_path.py``).

Served here, in a tenant or root, answered as JSON:

- ``GET``/``HEAD`` of one object or of a collection (not a watch);
- ``POST`` (create) to a collection and ``PUT`` (update) of one object, with a JSON body whose
  ``Content-Length`` is within ``--max-body-bytes``;
- ``PATCH`` of one object with a body of one of the patch media types (JSON patch, merge patch,
  strategic merge patch, apply patch) within ``--max-body-bytes``;
- ``DELETE`` of one object, without a body or with a JSON one (``DeleteOptions``) within it.

Everything else goes to the app unchanged, decided from the request alone before anything is done
(counted, logged, asked): other methods, a chunked or oversized body, a body on a read,
impersonation, a front proxy's headers, a client certificate, no bearer token, a body of another
media type (YAML, protobuf; a patch's unknown type), a DELETE of a collection, an ``Accept`` with
anything but plain JSON or wildcards (Tables, PartialObjectMetadata, protobuf, YAML), a watch, a subresource, ``/clusters/*/``,
non-resource paths, a read-only server's writes, the audit webhook's blocking modes, and any route or verb the app refuses before its
stages (unknown paths, verbs a kind does not serve, a namespaced kind without its namespace, a path
Quart would read differently).

Requests the reject gate (``gateway._gate``) already authenticated come with their user
(``AUTHENTICATED`` in the ASGI scope): neither path authenticates them again.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import trio
import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" codec error handler request.args uses

from actors import (
    Admission,
    Allowed,
    Request,
    ask_timeout,
    bearer_token,
    tenant_exists,
    tenant_not_found,
    warning_header,
)
from bus import ANY_TENANT, ROOT_TENANT, Key
from kinds._uid import new_uid
from projections import now_micro

from . import _history as history
from . import _ui as ui
from ._audit import AUDIT_EVENTS_PATH, AuditNote, audit_gone, audit_request
from ._codec import PATCH_TYPES, decode_body_strict, media_type, query_bool
from ._gate import AUTHENTICATED, error_answer, response_headers
from ._logging import begin_request, note_user
from ._metrics import request_labels
from ._options import write_options
from ._reads import (
    ListOptions,
    get_object,
    list_body,
    list_objects,
    parse_list_options,
    resource_version_param,
    served_list,
    served_objects,
)
from ._routes import Routes, split_tenant
from ._status import BodyTimeout, ReadTimeout, write_response

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")


class _Plan:
    """A request the fast path serves, as read from its scope (see :meth:`FastPath._plan`)."""

    __slots__ = ("headers", "length", "pairs", "q", "route", "tenant", "token", "verb")

    def __init__(self, route: Any, tenant: str, token: str, q: dict[str, str], pairs: list[tuple[str, str]],
                 headers: dict[bytes, str], verb: str, length: int) -> None:
        self.route, self.tenant, self.token, self.q, self.pairs = route, tenant, token, q, pairs
        self.headers, self.verb, self.length = headers, verb, length


def _http(scope: Any, source: str, user_agent: str) -> tuple[str, str, str, str]:
    """A request's (path, URI, source, User-Agent) for its audit record: the URI as the app records
    it (werkzeug's full_path, a bare "?" dropped)."""
    path = scope["path"]
    return path, f"{path}?{scope['query_string'].decode()}".rstrip("?"), source, user_agent


class _Gone(Exception):
    """The client went away: the app's handler is cancelled when hypercorn says so (quart-trio
    listens for ``http.disconnect`` beside it); here it is looked for between the stages (see
    :func:`_gone`), and the request ends as the app's cancelled one does (counted as aborted, its
    request line with 499, its audit ResponseComplete as kube's, no answer)."""


class FastPath:
    """ASGI middleware in front of the Quart app (``app.asgi_app``): see the module docstring."""

    #: Tests switch this off to send the same requests through the app and compare.
    enabled = True

    def __init__(self, ctx: Any, app: Any) -> None:
        self.ctx = ctx  # gateway._app.Context (not imported: _app imports this module)
        self.app = app
        self._routes = Routes()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.enabled or scope["type"] != "http" or scope["method"] not in _METHODS:
            return await self.app(scope, receive, send)
        plan = self._plan(scope)
        if plan is None:
            return await self.app(scope, receive, send)
        await self._serve(scope, receive, send, plan)

    def _plan(self, scope: Any) -> _Plan | None:
        """The request, if it is one served here; None: the app's. Pure: nothing is counted,
        logged or asked before the request is known to be ours."""
        ctx = self.ctx
        if ctx.audit is not None and ctx.audit.blocking is not None:
            return None  # the audit webhook's blocking modes (RequestReceived sent and waited for): the app's
        method: str = scope["method"]
        path: str = scope["path"]
        if not path.startswith("/") or path.startswith("//") or scope.get("root_path"):
            return None  # Quart's request.path would differ from the ASGI path
        headers: dict[bytes, str] = {}
        for k, v in scope["headers"]:
            if k.startswith((b"impersonate-", b"x-remote-")) or k == b"transfer-encoding":
                return None  # impersonation, a front proxy, a chunked body: the app's
            if k not in headers:  # the first of repeated headers, as werkzeug's Headers.get
                headers[k] = v.decode("latin-1")
            elif k == b"content-length":
                return None
        length = -1
        if b"content-length" in headers:
            if method not in _WRITES:
                return None  # a read with a body: the app's (it closes the connection)
            raw = headers[b"content-length"]
            if not raw.isdigit() or int(raw) > ctx.settings.max_body_bytes:
                return None
            length = int(raw)
            mt = media_type(headers.get(b"content-type"))
            if method == "PATCH":
                if mt not in PATCH_TYPES:
                    return None  # the app's 415
            elif mt != "application/json" and not (method == "DELETE" and length == 0):
                return None
        elif method != "DELETE" and method in _WRITES:
            return None
        if ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain"):
            return None
        accept = headers.get(b"accept")
        if accept is not None and accept != "application/json" and not _plain_json(accept):
            return None  # Tables, PartialObjectMetadata, protobuf, YAML ...: the app negotiates
        tenant, inner = split_tenant(path)
        if tenant == ANY_TENANT or history.handles(inner) or inner.rstrip("/") == AUDIT_EVENTS_PATH \
                or ui.handles(path):
            return None
        token = bearer_token(headers.get(b"authorization", ""))
        if not token:
            return None
        try:  # exactly as werkzeug reads request.args
            pairs = parse_qsl(scope["query_string"].decode(), keep_blank_values=True, errors="werkzeug.url_quote")
        except UnicodeDecodeError:
            return None
        q: dict[str, str] = {}
        for k, v in pairs:
            q.setdefault(k, v)
        route = self._routes(path, ctx.registry)
        rdef = route.rdef
        if route.kind != "resource" or rdef is None or not rdef.stored or route.subresource or route.legacy_watch:
            return None
        if method == "POST":
            if route.name or ctx.settings.read_only:
                return None
            verb = "create"
        elif method in ("PUT", "PATCH", "DELETE"):
            if not route.name or ctx.settings.read_only:
                return None  # (a DELETE of a collection: the app's deletecollection)
            verb = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        elif route.name:
            verb = "get"
        elif query_bool(q.get("watch")):
            return None
        else:
            verb = "list"
        if verb not in rdef.verbs or (rdef.namespaced and route.namespace is None and verb != "list"):
            return None  # the app's 405s
        return _Plan(route, tenant, token, q, pairs, headers, verb, length)

    async def _serve(self, scope: Any, receive: Any, send: Any, plan: _Plan) -> None:
        """The app's handler for this request: the same stages, counts, records and answer."""
        ctx = self.ctx
        method: str = scope["method"]
        headers = plan.headers
        user_agent = headers.get(b"user-agent", "")
        audit_id = new_uid()
        line = begin_request(ctx.settings.request_log, audit_id, scope, user_agent)
        note = AuditNote(method.lower())
        received = note.received = now_micro()
        metrics = ctx.metrics
        started = time.perf_counter()
        kind = metrics.begin(method)
        flow = Admission()
        source = (scope.get("client") or ["<local>"])[0]
        # A resource's labels do not depend on the answer's code (only a non-resource path's do).
        labels = request_labels(method, plan.route, watch=plan.q.get("watch"),
                                content_type=headers.get(b"content-type"),
                                dry_run=[v for k, v in plan.pairs if k == "dryRun"])
        body_read = [False]
        warnings: tuple[str, ...] = ()
        answering = False  # the seats are held until the answer is sent (below), as kube's handler holds them
        try:
            try:
                code, body, warnings = await self._handle(scope, receive, plan, audit_id, user_agent, source, note,
                                                          flow, body_read)
                extra: dict[str, str] = {}
                if _gone(receive):
                    raise _Gone
            except (trio.Cancelled, KeyboardInterrupt, _Gone) as e:
                metrics.abort(labels, note.tenant or ROOT_TENANT)
                line.end(labels[0], 499)
                if not isinstance(e, KeyboardInterrupt):  # the client went away: kube's ResponseComplete
                    await audit_gone(ctx.audit, note, audit_id, received, _http(scope, source, user_agent))
                if isinstance(e, _Gone):
                    return
                raise
            except Exception as e:  # noqa: BLE001 - every error becomes a Status, as in the app
                if _gone(receive):
                    metrics.abort(labels, note.tenant or ROOT_TENANT)
                    line.end(labels[0], 499)
                    await audit_gone(ctx.audit, note, audit_id, received, _http(scope, source, user_agent))
                    return
                code, body, extra = error_answer(e)
                note.failed(e)
            answering = True
        finally:
            metrics.end(kind)
            if not answering:
                ctx.pipeline.release(flow)
        try:
            out = response_headers(body, extra, audit_id, flow, warnings)
            tenant_label = note.tenant or ROOT_TENANT
            metrics.tenant_request(tenant_label, note.verb, code)
            if ctx.audit is not None:
                await audit_request(ctx.audit, note, audit_id, code, received, _http(scope, source, user_agent))
            if plan.length > 0 and not body_read[0] and scope["http_version"] in ("1.0", "1.1"):
                out.append((b"connection", b"close"))  # answered before its body was read (the app's rule)
            metrics.observe(labels, code, time.perf_counter() - started, len(body), tenant_label)
            line.end(labels[0], code)
            await send({"type": "http.response.start", "status": code, "headers": out})
            await send({"type": "http.response.body", "body": body})
        finally:
            ctx.pipeline.release(flow)

    async def _handle(self, scope: Any, receive: Any, plan: _Plan, audit_id: str, user_agent: str, source: str,
                      note: AuditNote, flow: Admission, body_read: list[bool]) -> tuple[int, bytes, tuple[str, ...]]:
        """The app's ``_dispatch`` for this request: (code, body, Warning headers)."""
        ctx = self.ctx
        s = ctx.settings
        method: str = scope["method"]
        tenant, route, q = plan.tenant, plan.route, plan.q
        who: Request | None = scope.get(AUTHENTICATED)
        if who is not None:  # the reject gate authenticated it: once is enough
            who = msgspec.structs.replace(who, audit_id=audit_id, query=q)
        else:
            who = ctx.pipeline.authenticate(Request(
                verb=method.lower(), token=plan.token, audit_id=audit_id, user_agent=user_agent, source=source,
                query=q, path=split_tenant(scope["path"])[1], tenant=tenant))
        note_user(who.user.name if who.user is not None else "")
        note.user = who.user
        rdef = route.rdef
        req = msgspec.structs.replace(who, verb=plan.verb, rdef=rdef, namespace=route.namespace or "",
                                      name=route.name, subresource=route.subresource)
        note.resource_request(req)  # its audit attributes from the path, as the app's (kube's RequestInfo)
        if not await tenant_exists(ctx.projection, tenant):
            raise tenant_not_found(tenant)
        note.tenant = tenant
        opts = parse_list_options(q, rdef, route.namespace) if plan.verb == "list" else None
        await ctx.pipeline.admit(req, flow)
        if method not in _WRITES:
            return await self._read(plan, req, opts)
        data = await _read_body(receive, plan.length, s.request_timeout_s)
        body_read[0] = True
        if data.strip() or method != "DELETE":  # (a DELETE's body is optional)
            body, patch_type, strict = decode_body_strict(
                data, plan.headers.get(b"content-type"), max_bytes=s.max_body_bytes, for_patch=method == "PATCH",
                strict=method != "DELETE" and q.get("fieldValidation") != "Ignore")
            req = msgspec.structs.replace(req, body=body, patch_type=patch_type, strict_errors=strict)
        req = msgspec.structs.replace(req, options=write_options(plan.verb, q, patch_type=req.patch_type,
                                                                body=req.body))
        if _gone(receive):
            raise _Gone  # (the app's handler is cancelled when its client goes: nothing is written)
        note.submitted = True
        result = await ctx.pipeline.submit_authenticated(req, timeout_s=s.request_timeout_s)
        if not isinstance(result, Allowed):
            code, body = write_response(result)
            note.written(req, code, result.audit_annotations)
            return code, body, tuple(warning_header(w) for w in result.warnings)
        raise AssertionError(f"a {plan.verb} was answered {result!r}")  # pragma: no cover - writes get a WriteResult

    async def _read(self, plan: _Plan, req: Request, opts: ListOptions | None) -> tuple[int, bytes, tuple[str, ...]]:
        """A GET or LIST once admitted: authorization, then the read from the projection, under one
        deadline (a cancel scope per stage showed in the profile of B2). Its expiry is answered as
        the app's: during authorization as the pipeline's ``Timeout``, during the read (the head
        query, the wait for the projection) as ``read_deadline``'s ``ReadTimeout``."""
        ctx = self.ctx
        timeout_s = ctx.settings.request_timeout_s
        tenant, route, q, rdef = plan.tenant, plan.route, plan.q, plan.route.rdef
        reading = False
        with trio.move_on_after(timeout_s) as deadline:
            await ctx.pipeline.submit_authenticated(req, timeout_s=None)  # a read: Allowed, or it raises
            reading = True
            proj = ctx.projection
            storage = ctx.registry.for_tenant(tenant).storage_of(rdef)
            if opts is None:
                key = Key(tenant, storage.group, storage.plural, route.namespace or "", route.name)
                data = await get_object(proj, key, rdef, resource_version_param(q), q.get("resourceVersionMatch"))
            else:
                listed = await list_objects(proj, tenant, storage, opts)
        if deadline.cancelled_caught:
            if reading:
                raise ReadTimeout(timeout_s)
            raise ask_timeout(timeout_s)
        if opts is None:
            return 200, (await served_objects(ctx.converter, [data], storage, rdef, is_list=False))[0], ()
        listed = await served_list(ctx.converter, listed, storage, rdef)
        return 200, list_body(rdef, listed), ()


async def _read_body(receive: Any, length: int, timeout_s: float) -> bytes:
    """The whole body (``length`` bytes, within ``--max-body-bytes``) within ``timeout_s``, as the
    app's ``_read_body`` reads it; :class:`_Gone` if the client goes away first. A body hypercorn
    has already queued (a small one comes with its headers) is taken without waiting: no cancel
    scope, no scheduling round."""
    chunks: list[bytes] = []
    nowait = getattr(getattr(receive, "__self__", None), "receive_nowait", None)
    if nowait is not None:
        try:
            while True:
                message = nowait()
                if message["type"] != "http.request":
                    raise _Gone
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass  # the rest is not there yet (or the channel ended: the waiting read says so)
    with trio.move_on_after(timeout_s) as scope:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Gone
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
    if scope.cancelled_caught:
        raise BodyTimeout(timeout_s)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _gone(receive: Any) -> bool:
    """Whether hypercorn has told this request its client went away (``http.disconnect`` queued
    for the app), without waiting: its receive channel read with ``receive_nowait``. The request's
    own body messages queued before it are consumed (the body is read, or a read has none)."""
    channel = getattr(receive, "__self__", None)
    nowait = getattr(channel, "receive_nowait", None)
    if nowait is None:
        return False
    try:
        while True:
            if nowait()["type"] == "http.disconnect":
                return True
    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
        return False


#: Spelled exactly so: kube's router takes no other spelling for a built-in kind (``_table.route_accepts``:
#: ``application/*`` is its 406, the app's).
_JSON_RANGES = frozenset({"application/json", "*/*"})


def _plain_json(accept: str) -> bool:
    """Whether every clause of an ``Accept`` header is plain JSON or ``*/*``, without an ``as``
    (kubectl's and client-go's JSON reads send ``application/json`` or ``application/json, */*``)."""
    for clause in accept.split(","):
        media, _, params = clause.partition(";")
        if media.strip(" ") not in _JSON_RANGES or "as=" in params.replace(" ", ""):
            return False
    return True
