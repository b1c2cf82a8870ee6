"""Admission webhooks: Mutating/ValidatingWebhookConfigurations called over HTTPS.

The configurations are read from the projection (every gateway folds the same log, so a change
is seen by all at once) and compiled once per change of either resource: sorted by
configuration name, webhooks in list order, selectors parsed and matchConditions compiled.

A call is an ``AdmissionReview`` v1 POSTed with httpx (its trio backend: the loop never blocks)
to ``clientConfig.url``, or to ``https://<service>.<namespace>.svc:<port><path>`` for a service
reference, trusting ``caBundle`` (the system roots without one). Each webhook has its own
bound on calls in flight; a call is bounded by ``timeoutSeconds``. A slow or dead webhook costs
only the requests it matches. Failures follow ``failurePolicy``: ``Fail`` answers kube's
InternalError ``failed calling webhook "x": ...``; ``Ignore`` goes on and counts the failure
(``apiserver_admission_webhook_fail_open_count``).
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
import uuid
from typing import Any

import httpx
import msgspec
import trio

from kinds import Registry, ResourceDef
from kinds._cel import authorizing
from kinds._conversion import convert
from kinds._errors import ApiError, BadRequest, Forbidden, InternalError
from projections import Projection

from ._admission import Attributes, add_audit_annotation, add_warning
from ._admission_match import (
    Conditions,
    namespace_selected,
    object_selected,
    request_object,
    rule_matches,
    selector,
)
from ._patch import MalformedPatch, PatchError, apply_json_patch

log = logging.getLogger("jetkube.admission")

GROUP = "admissionregistration.k8s.io"
MAX_IN_FLIGHT_PER_WEBHOOK = 64
_json = msgspec.json.Encoder()
_decode = msgspec.json.decode
MUTATION_ANNOTATION_PREFIX = "mutation.webhook.admission.k8s.io/"
# The name part of a qualified name (an audit annotation key is "<webhook name>/<key>").
_ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class _Hook:
    """One webhook of a configuration, compiled."""

    def __init__(self, config: str, spec: dict[str, Any], mutating: bool) -> None:
        self.config = config
        self.mutating = mutating
        self.name = str(spec.get("name", ""))
        self.rules = [r for r in spec.get("rules") or [] if isinstance(r, dict)]
        self.namespace_selector = selector(spec.get("namespaceSelector"))
        self.object_selector = selector(spec.get("objectSelector"))
        self.failure_policy = spec.get("failurePolicy") or "Fail"
        self.side_effects = spec.get("sideEffects") or ""
        self.timeout_s = float(min(max(int(spec.get("timeoutSeconds") or 10), 1), 30))
        self.reinvoke = mutating and spec.get("reinvocationPolicy") == "IfNeeded"
        self.match_policy = spec.get("matchPolicy") or "Equivalent"
        self.conditions = Conditions(spec.get("matchConditions"))
        cc = spec.get("clientConfig") or {}
        self.ca_bundle = cc.get("caBundle") or ""
        svc = cc.get("service")
        if isinstance(svc, dict):
            path = svc.get("path") or ""
            self.url = f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port') or 443}{path}"
        else:
            self.url = str(cc.get("url") or "")
        self.limit = trio.Semaphore(MAX_IN_FLIGHT_PER_WEBHOOK)

    @property
    def kind(self) -> str:
        return "admit" if self.mutating else "validating"


class _CallError(Exception):
    pass


def tls_client(ca_bundle: str) -> httpx.AsyncClient:
    """An HTTPS client for webhooks (admission, CRD conversion) trusting ``ca_bundle`` (base64 PEM,
    as a ``clientConfig`` holds it; the system roots without one); ValueError for a bad bundle."""
    if ca_bundle:
        try:
            ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
        except (ValueError, ssl.SSLError) as e:
            raise ValueError(f"invalid caBundle: {e}") from None
    else:
        ctx = ssl.create_default_context()
    return httpx.AsyncClient(verify=ctx, limits=httpx.Limits(max_connections=256,
                                                             max_keepalive_connections=MAX_IN_FLIGHT_PER_WEBHOOK))


class WebhookDispatcher:
    """Matches and calls the webhooks of a tenant."""

    def __init__(self, projection: Projection, registry: Registry) -> None:
        self.projection = projection
        self.registry = registry
        # Served versions of each (group, resource), for matchPolicy Equivalent, per served set
        # (id(defs) -> (defs, versions)): rebuilt when a tenant's definitions change (a CRD created
        # or updated after this dispatcher); tenants without CRDs share the built-in set.
        self._versions: dict[int, tuple[tuple[ResourceDef, ...], dict[tuple[str, str], list[ResourceDef]]]] = {}
        self._cache: dict[str, tuple[tuple[int, int], list[_Hook], list[_Hook]]] = {}
        self._clients: dict[str, httpx.AsyncClient] = {}
        #: (webhook name, "admit" | "validating", tenant) -> failures let through under failurePolicy
        #: Ignore. The tenant is the request's: one that exists (its webhook configurations were read).
        self.fail_open: dict[tuple[str, str, str], int] = {}
        #: (webhook name, "admit" | "validating", operation, code, tenant) -> requests the webhook denied.
        self.rejections: dict[tuple[str, str, str, int, str], int] = {}
        #: The server's authorizer behind matchConditions' ``authorizer`` (None: its checks err).
        self.authorizer: Any = None

    # ---- configuration -------------------------------------------------------------------------

    def _version(self, tenant: str, plural: str) -> int:
        st = self.projection.state(tenant, GROUP, plural)
        return st.ring[-1].seq if st.ring else -st.count

    def _hooks(self, tenant: str) -> tuple[list[_Hook], list[_Hook]]:
        version = (self._version(tenant, "mutatingwebhookconfigurations"),
                   self._version(tenant, "validatingwebhookconfigurations"))
        cached = self._cache.get(tenant)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        old = {(h.config, h.name, h.mutating): h for h in (cached[1] + cached[2] if cached else [])}
        lists: list[list[_Hook]] = []
        for plural, mutating in (("mutatingwebhookconfigurations", True), ("validatingwebhookconfigurations", False)):
            hooks: list[_Hook] = []
            for _ns, name, entry in self.projection.state(tenant, GROUP, plural).iter_entries(None):
                cfg = _decode(entry.data)
                for spec in cfg.get("webhooks") or []:
                    if isinstance(spec, dict):
                        h = _Hook(name, spec, mutating)
                        prev = old.get((h.config, h.name, mutating))
                        if prev is not None:
                            h.limit = prev.limit  # calls in flight stay counted across a reconfiguration
                        hooks.append(h)
            lists.append(hooks)
        self._cache[tenant] = (version, lists[0], lists[1])
        return lists[0], lists[1]

    def active(self, tenant: str) -> bool:
        m, v = self._hooks(tenant)
        return bool(m or v)

    # ---- matching ------------------------------------------------------------------------------

    def _served_versions(self, tenant: str, group: str, plural: str) -> list[ResourceDef]:
        """The served versions of (group, plural) in ``tenant`` (its CRDs' kinds are its own)."""
        defs = self.registry.for_tenant(tenant).defs
        hit = self._versions.get(id(defs))
        if hit is None or hit[0] is not defs:
            if len(self._versions) >= 64:
                self._versions.clear()  # bounded: rebuilt on use
            versions: dict[tuple[str, str], list[ResourceDef]] = {}
            for d in defs:
                versions.setdefault((d.group, d.plural), []).append(d)
            hit = self._versions[id(defs)] = (defs, versions)
        return hit[1].get((group, plural), [])

    def _view(self, h: _Hook, a: Attributes) -> ResourceDef | None:
        """The version the webhook is sent: the written one when a rule names it, else (with
        ``matchPolicy: Equivalent``) another served version of the same resource a rule names."""
        rdef = a.rdef

        def named(d: ResourceDef) -> bool:
            return any(rule_matches(r, a.operation, d.group, d.version, d.plural, a.subresource, d.namespaced)
                       for r in h.rules)

        if named(rdef):
            return rdef
        if h.match_policy != "Exact":
            for d in self._served_versions(a.tenant, rdef.group, rdef.plural):
                if d is not rdef and named(d):
                    return d
        return None

    async def _matches(self, h: _Hook, a: Attributes, obj: dict[str, Any] | None,
                       old: dict[str, Any] | None) -> ResourceDef | None:
        """The version to send the webhook when it is to be called, else None."""
        view = self._view(h, a)
        if view is None:
            return None
        if not await namespace_selected(self.projection, h.namespace_selector, a, obj, old):
            return None
        if not object_selected(h.object_selector, obj, old):
            return None
        if h.conditions.programs or h.conditions.error:
            data = {"object": obj, "oldObject": old, "request": request_object(a, obj, old)}
            if h.conditions.uses_authorizer:  # kube's authorizer library, over the server's authorizer
                from ._admission_policies import authorizer_for, authz_check

                data["authorizer"] = authorizer_for(a)
                with authorizing(authz_check(self.authorizer, a)):
                    ok, err = h.conditions.evaluate(data)
            else:
                ok, err = h.conditions.evaluate(data)
            if err:
                if h.failure_policy == "Ignore":
                    self._count_fail_open(h, a, err)
                    return None
                raise Forbidden(f'failed calling webhook "{h.name}": failed evaluating match conditions, failing '
                                f"closed: {err}")
            return view if ok else None
        return view

    def _count_fail_open(self, h: _Hook, a: Attributes, err: str) -> None:
        key = (h.name, h.kind, a.tenant)
        self.fail_open[key] = self.fail_open.get(key, 0) + 1
        log.warning("failed calling webhook %r, failing open: %s", h.name, err)

    # ---- calls ---------------------------------------------------------------------------------

    def _client(self, ca_bundle: str) -> httpx.AsyncClient:
        client = self._clients.get(ca_bundle)
        if client is None:
            try:
                client = self._clients[ca_bundle] = tls_client(ca_bundle)
            except ValueError as e:
                raise _CallError(str(e)) from None
        return client

    async def _call(self, h: _Hook, a: Attributes, obj: dict[str, Any] | None,
                    old: dict[str, Any] | None, view: ResourceDef | None = None) -> dict[str, Any]:
        """The webhook's ``response`` (verified); :class:`_CallError` for anything that is not one."""
        if not h.url.startswith("https://"):
            raise _CallError(f'failed to call webhook: Post "{h.url}": unsupported protocol scheme')
        uid = str(uuid.uuid4())
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {**request_object(a, obj, old, view), "uid": uid}}
        url = f"{h.url}{'&' if '?' in h.url else '?'}timeout={int(h.timeout_s)}s"
        body = _json.encode(review)
        client = self._client(h.ca_bundle)
        with trio.move_on_after(h.timeout_s) as scope:
            async with h.limit:
                try:
                    r = await client.post(url, content=body, headers={"Content-Type": "application/json",
                                                                      "Accept": "application/json"})
                except httpx.HTTPError as e:
                    raise _CallError(f'failed to call webhook: Post "{url}": {e or type(e).__name__}') from None
        if scope.cancelled_caught:
            raise _CallError(f'failed to call webhook: Post "{url}": context deadline exceeded')
        if r.status_code != 200:
            raise _CallError(f"received invalid webhook response: the server responded with status code "
                             f"{r.status_code}")
        try:
            got = _decode(r.content)
        except msgspec.DecodeError as e:
            raise _CallError(f"received invalid webhook response: {e}") from None
        if not isinstance(got, dict) or got.get("apiVersion") != "admission.k8s.io/v1" \
                or got.get("kind") != "AdmissionReview":
            raise _CallError("received invalid webhook response: expected admission.k8s.io/v1 AdmissionReview")
        resp = got.get("response")
        if not isinstance(resp, dict):
            raise _CallError("received invalid webhook response: webhook response was absent")
        if resp.get("uid") != uid:
            raise _CallError(f"expected response.uid={uid!r}, got {resp.get('uid')!r}")
        has_patch, has_type = bool(resp.get("patch")), bool(resp.get("patchType"))
        if has_patch != has_type:
            raise _CallError("webhook returned " + ("patch but not patchType" if has_patch
                                                    else "patchType but not patch"))
        if has_type and resp.get("patchType") != "JSONPatch":
            raise _CallError(f'webhook returned invalid patchType: "{resp.get("patchType")}"')
        if has_patch and not h.mutating:
            raise _CallError("validating webhook may not return a patch")
        return resp

    async def _invoke(self, h: _Hook, a: Attributes, obj: dict[str, Any] | None,
                      old: dict[str, Any] | None, view: ResourceDef | None = None) -> dict[str, Any] | None:
        """Call one matching webhook: the patched object (mutating) or None; raises its denial,
        or its failure under ``failurePolicy: Fail``. With ``view`` (an equivalent version), the
        webhook sees the objects converted to it, and its patch is converted back."""
        if a.dry_run and h.side_effects not in ("None", "NoneOnDryRun"):
            raise BadRequest(f'admission webhook "{h.name}" does not support dry run')
        written = obj
        if view is not None and view is not a.rdef:
            obj = convert(obj, view) if obj is not None else None
            old = convert(old, view) if old is not None else None
        try:
            resp = await self._call(h, a, obj, old, view)
            for w in resp.get("warnings") or []:
                add_warning(str(w))
            annotations = resp.get("auditAnnotations")
            for k, v in (annotations.items() if isinstance(annotations, dict) else ()):
                # As kube: kept as "<webhook name>/<key>"; a key that is not a qualified name is dropped.
                if isinstance(k, str) and _ANNOTATION_KEY.match(k):
                    add_audit_annotation(f"{h.name}/{k}", str(v))
                else:
                    log.warning("webhook %r returned an invalid audit annotation key %r", h.name, k)
            if not resp.get("allowed"):
                raise self._denial(h, a, resp.get("status"))
            if resp.get("patch"):
                if obj is None:
                    raise _CallError("admission webhook returned a patch for a request without an object")
                try:
                    ops = _decode(base64.b64decode(resp["patch"]))
                    patched = apply_json_patch(obj, ops)
                except (ValueError, msgspec.DecodeError, MalformedPatch, PatchError) as e:
                    raise _CallError(f"received invalid webhook response: invalid patch: {e}") from None
                if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                    raise _CallError("received invalid webhook response: the patched object is not an object")
                return convert(patched, a.rdef) if view is not None and view is not a.rdef else patched
            return written
        except _CallError as e:
            if h.failure_policy == "Ignore":
                self._count_fail_open(h, a, str(e))
                return written
            raise InternalError(f'failed calling webhook "{h.name}": {e}') from None

    def _denial(self, h: _Hook, a: Attributes, status: Any) -> ApiError:
        status = status if isinstance(status, dict) else {}
        code = status.get("code") if isinstance(status.get("code"), int) else 0
        code = max(code, 400)
        msg = str(status.get("message") or "")
        denied = f'admission webhook "{h.name}" denied the request'
        err = ApiError(f"{denied}: {msg}" if msg else f"{denied} without explanation")
        err.code = code
        err.reason = str(status.get("reason") or "")
        key = (h.name, h.kind, a.operation, code, a.tenant)
        self.rejections[key] = self.rejections.get(key, 0) + 1
        return err

    # ---- the two phases ------------------------------------------------------------------------

    async def mutate(self, a: Attributes, obj: dict[str, Any] | None,
                     old: dict[str, Any] | None) -> dict[str, Any] | None:
        hooks, _ = self._hooks(a.tenant)
        # IfNeeded webhooks with the object as they left it: run once more if a later one changed it.
        reinvocable: list[tuple[int, _Hook, ResourceDef, bytes]] = []
        for i, h in enumerate(hooks):
            view = await self._matches(h, a, obj, old)
            if view is not None:
                before = obj
                obj = await self._invoke(h, a, obj, old, view)
                _mutation_annotation(0, i, h, obj is not before)
                if h.reinvoke:
                    reinvocable.append((i, h, view, _json.encode(obj)))
        if reinvocable:
            final = _json.encode(obj)
            first = next((n for n, (_, _, _, seen) in enumerate(reinvocable) if seen != final), None)
            if first is not None:
                for i, h, view, _seen in reinvocable[first:]:
                    before = obj
                    obj = await self._invoke(h, a, obj, old, view)
                    _mutation_annotation(1, i, h, obj is not before)
        return obj

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        _, hooks = self._hooks(a.tenant)
        matched = []
        for h in hooks:
            view = await self._matches(h, a, obj, old)
            if view is not None:
                matched.append((h, view))
        if not matched:
            return
        if len(matched) == 1:
            await self._invoke(matched[0][0], a, obj, old, matched[0][1])
            return
        errors: list[BaseException | None] = [None] * len(matched)

        async def one(i: int, h: _Hook, view: ResourceDef) -> None:
            try:
                await self._invoke(h, a, obj, old, view)
            except ApiError as e:
                errors[i] = e

        async with trio.open_nursery() as nursery:
            for i, (h, view) in enumerate(matched):
                nursery.start_soon(one, i, h, view)
        for e in errors:
            if e is not None:
                raise e


def _mutation_annotation(round_: int, index: int, h: _Hook, mutated: bool) -> None:
    """kube's ``mutation.webhook.admission.k8s.io/round_<r>_index_<i>`` audit annotation for each
    mutating webhook called (``mutated``: it returned a patch)."""
    value = _json.encode({"configuration": h.config, "webhook": h.name, "mutated": mutated}).decode()
    add_audit_annotation(f"{MUTATION_ANNOTATION_PREFIX}round_{round_}_index_{index}", value)
