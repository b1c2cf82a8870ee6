"""Authorization: kube's authorizer chain over the RBAC projection, and RBAC's escalation checks.

- :class:`Attributes` are kube's ``authorizer.Attributes`` (verb, apiGroup, resource, subresource,
  name, namespace; path for a non-resource request); :func:`attributes_of` makes them from a
  :class:`Request` as kube's RequestInfo does (a namespace's own name is its namespace).
- :meth:`Authorizer.authorize` is the union authorizer (``union.go``): ``system:masters`` first
  (kube-apiserver always puts the privileged-groups authorizer first), then each
  ``--authorization-mode`` in order; the first Allow or Deny wins, all NoOpinion is a deny.
  Plain, synchronous and cheap (dict lookups in the projection's index): impersonation checks,
  reviews and escalation checks call it too.
- :meth:`Authorizer.check` is what the authz actor runs for each request: a request RBAC does
  not allow is looked at again after a consistent read of the log (the projection caught up with
  the stream's head), so a binding created through any gateway applies to the next request on
  every gateway; the 403 is then kube's, word for word (``responsewriters.forbiddenMessage``).
- Escalation prevention (``pkg/registry/rbac/*/policybased``, ``validation.ConfirmNoEscalation``,
  ``policy_comparator.go`` ``Covers``) runs in the resource actor on the final object, as kube
  does it in storage: :meth:`Authorizer.guard`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec
import trio

from bus import BusError
from kinds._errors import BadRequest, Forbidden
from projections import RBAC_GROUP, Projection, ProjectionError, RbacIndex, Rule, TenantRbac

from ._runtime import Actor, ReplySlot
from .messages import Allowed, Request, UserInfo

MASTERS = "system:masters"
RBAC, ALWAYS_ALLOW, ALWAYS_DENY = "RBAC", "AlwaysAllow", "AlwaysDeny"
#: The --authorization-mode values kube-apiserver knows; the ones we serve, the others refused.
KNOWN_MODES = ("AlwaysAllow", "AlwaysDeny", "ABAC", "Webhook", "RBAC", "Node")
SUPPORTED_MODES = (ALWAYS_ALLOW, ALWAYS_DENY, RBAC)
#: Decisions remembered until the next RBAC change (then all are dropped), and at most this many.
DECISION_CACHE_SIZE = 16_384
#: Sub-rules (group x resource x verb x name) an escalation check may expand a role into; a
#: larger role is refused rather than compared (BreakdownRule is a cartesian product).
MAX_BREAKDOWN = 100_000
_ROLE_KINDS = {"roles", "clusterroles"}
_BINDING_KINDS = {"rolebindings", "clusterrolebindings"}
_FULL_AUTHORITY = ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]})


def parse_modes(value: str) -> tuple[str, ...]:
    """``--authorization-mode``: a comma list, in order, each at most once (kube's validation)."""
    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    if not modes:
        raise ValueError("at least one authorization-mode must be passed")
    for m in modes:
        if m not in KNOWN_MODES:
            raise ValueError(f"authorization-mode {m!r} is not a valid mode")
        if m not in SUPPORTED_MODES:
            raise ValueError(f"authorization-mode {m!r} is not supported by jetkube (supported: "
                             f"{', '.join(SUPPORTED_MODES)})")
    if len(set(modes)) != len(modes):
        raise ValueError(f"authorization-mode {value!r} has mode specified more than once")
    return modes


class Attributes(msgspec.Struct, frozen=True, kw_only=True):
    """kube's ``authorizer.Attributes`` (the user is passed beside them)."""

    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""


class Decision(msgspec.Struct, frozen=True):
    """Allow, or not (``denied``: an explicit Deny; otherwise no authorizer had an opinion)."""

    allowed: bool
    reason: str = ""
    denied: bool = False


_ALLOW_MASTERS = Decision(True)
_ALLOW_ALWAYS = Decision(True)
_DENY_ALWAYS = Decision(False, "", True)


def attributes_of(req: Request) -> Attributes:
    rdef = req.rdef
    if rdef is None:
        return Attributes(verb=req.verb, resource_request=False, path=req.path)
    ns = req.namespace if rdef.namespaced else ""
    if rdef.is_namespace and req.name:
        ns = req.name  # kube's RequestInfo: /api/v1/namespaces/<n> is in the namespace <n>
    # No path for a resource request: RBAC does not look at it, and decisions are cached by attributes.
    return Attributes(verb=req.verb, api_group=rdef.group, resource=rdef.plural, subresource=req.subresource,
                      name=req.name, namespace=ns)


def forbidden_message(user: UserInfo, a: Attributes, reason: str = "") -> str:
    """``responsewriters.forbiddenMessage`` + reason, inside ``errors.NewForbidden``'s wording."""
    if not a.resource_request:
        msg = f'User "{user.name}" cannot {a.verb} path "{a.path}"'
    else:
        resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        msg = f'User "{user.name}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" {scope}'
    if reason:
        msg = f"{msg}: {reason}"
    return _wrap_forbidden(a, msg)


def _wrap_forbidden(a: Attributes, msg: str) -> str:
    if not a.resource_request or not a.resource:
        return f"forbidden: {msg}"
    qualified = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    if a.name:
        return f'{qualified} "{a.name}" is forbidden: {msg}'
    return f"{qualified} is forbidden: {msg}"


def forbidden(user: UserInfo, a: Attributes, reason: str = "") -> Forbidden:
    """The 403 for a request ``a`` that ``user`` may not make, with kube's message and details."""
    if not a.resource_request:
        return Forbidden(forbidden_message(user, a, reason))
    return Forbidden(forbidden_message(user, a, reason), name=a.name, group=a.api_group, kind=a.resource)


def _aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one error alone, several in brackets."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _missing_role(kind: str, name: str) -> str:
    plural = "clusterroles" if kind == "ClusterRole" else "roles"
    return f'{plural}.{RBAC_GROUP} "{name}" not found'


class Authorizer:
    """The union of ``modes`` behind ``system:masters``, over ``index`` (the projection's RBAC view).
    ``projection`` (optional) is waited on before a request is refused (see :meth:`check`)."""

    def __init__(self, index: RbacIndex, modes: tuple[str, ...] = (RBAC,), *,
                 projection: Projection | None = None) -> None:
        for m in modes:
            if m not in SUPPORTED_MODES:
                raise ValueError(f"authorization mode {m!r} is not supported")
        self.index = index
        self.modes = modes
        self.projection = projection
        self._rbac_only = modes == (RBAC,)
        # (tenant, user, groups, attributes) -> RBAC's decision, valid for one index generation: a
        # repeated request costs a dict lookup, not a walk of the user's bindings.
        self._cache: dict[tuple[str, str, tuple[str, ...], Attributes], Decision] = {}
        self._cache_gen = -1

    # ---- decisions --------------------------------------------------------------------------------

    def authorize(self, user: UserInfo, a: Attributes) -> Decision:
        """kube's union authorizer for ``user`` doing ``a``; synchronous, no I/O."""
        if MASTERS in user.groups:
            return _ALLOW_MASTERS
        if self._rbac_only:
            return self._rbac(user, a)
        reasons: list[str] = []
        for mode in self.modes:
            if mode == ALWAYS_ALLOW:
                return _ALLOW_ALWAYS
            if mode == ALWAYS_DENY:
                return _DENY_ALWAYS
            d = self._rbac(user, a)
            if d.allowed:
                return d
            if d.reason:
                reasons.append(d.reason)
        return Decision(False, "\n".join(reasons))

    def _rbac(self, user: UserInfo, a: Attributes) -> Decision:
        """RBAC's decision, from the cache while no RBAC change was applied since it was made."""
        gen = self.index.generation
        if gen != self._cache_gen:
            self._cache.clear()
            self._cache_gen = gen
        key = (user.tenant, user.name, user.groups, a)
        d = self._cache.get(key)
        if d is None:
            d = self._rbac_decide(user, a)
            if len(self._cache) >= DECISION_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = d
        return d

    def _rbac_decide(self, user: UserInfo, a: Attributes) -> Decision:
        """``RBACAuthorizer.Authorize``: Allow with the binding that allowed it, else NoOpinion
        (with the roles that could not be found as its reason)."""
        t = self.index.tenant(user.tenant)
        errors: list[str] = []
        if a.resource_request:
            verb, group, resource, sub, name = a.verb, a.api_group, a.resource, a.subresource, a.name
            for b, desc, rules in t.visit(user.name, user.groups, a.namespace):
                if rules is None:
                    errors.append(_missing_role(b.role_kind, b.role_name))
                    continue
                for r in rules:
                    if r.allows_resource(verb, group, resource, sub, name):
                        return Decision(True, f"RBAC: allowed by {b.describe(desc)}")
        else:
            for b, desc, rules in t.visit(user.name, user.groups, ""):
                if rules is None:
                    errors.append(_missing_role(b.role_kind, b.role_name))
                    continue
                for r in rules:
                    if r.allows_path(a.verb, a.path):
                        return Decision(True, f"RBAC: allowed by {b.describe(desc)}")
        return Decision(False, f"RBAC: {_aggregate(errors)}" if errors else "")

    async def authorize_fresh(self, user: UserInfo, a: Attributes) -> Decision:
        """:meth:`authorize`; a refusal is decided again once the projection has caught up with the
        log's head, so it is never based on RBAC state older than the request."""
        d = self.authorize(user, a)
        if d.allowed or d.denied or self.projection is None:
            return d
        try:
            await self.projection.consistent()
        except (BusError, ProjectionError, trio.TooSlowError):
            return d  # the log is out of reach or far ahead: refuse on what this gateway has (kube's cache)
        return self.authorize(user, a)

    def scope(self, user: UserInfo, req: Request) -> UserInfo:
        """``user`` as it acts in the request's tenant (identities are global, permissions per
        tenant: RBAC is read from ``UserInfo.tenant``). A service account exists in one tenant
        only: elsewhere it may do nothing (403), whatever that tenant's bindings name."""
        if user.tenant == req.tenant:
            return user
        if user.name.startswith("system:serviceaccount:"):
            a = attributes_of(req)
            raise forbidden(user, a, f'service account of logical cluster "{user.tenant}" cannot act in '
                                     f'logical cluster "{req.tenant}"')
        return msgspec.structs.replace(user, tenant=req.tenant)

    def authorize_request(self, req: Request, user: UserInfo) -> None:
        """Return when ``user`` may make ``req`` (as :func:`attributes_of` reads it), else kube's
        403: synchronous, on this gateway's RBAC state, for checks made inside authentication
        (impersonation's ``impersonate`` verb: ``authorize(Request(verb="impersonate", rdef=...),
        user)``), the signature of the interim ``_auth.authorize``."""
        user = self.scope(user, req)
        if MASTERS in user.groups:
            return
        a = attributes_of(req)
        d = self.authorize(user, a)
        if not d.allowed:
            raise forbidden(user, a, d.reason)

    async def check(self, req: Request) -> None:
        """The authz actor's step: return when ``req.user`` may make ``req``, else kube's 403."""
        user = req.user
        assert user is not None
        if MASTERS in user.groups:
            return
        a = attributes_of(req)
        d = await self.authorize_fresh(user, a)
        if not d.allowed:
            raise forbidden(user, a, d.reason)

    # ---- rules -----------------------------------------------------------------------------------

    def rules(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
        """``RulesFor``: every rule that applies to ``user`` in ``namespace`` (cluster-wide rules
        included), and the roles that could not be found."""
        t: TenantRbac = self.index.tenant(user.tenant)
        out: list[Rule] = []
        errors: list[str] = []
        for b, _, rules in t.visit(user.name, user.groups, namespace, dedupe=True):
            if rules is None:
                errors.append(_missing_role(b.role_kind, b.role_name))
            else:
                out.extend(rules)
        return out, errors

    def rules_review(self, user: UserInfo, namespace: str) -> dict[str, Any]:
        """A SelfSubjectRulesReview's status."""
        resource: list[dict[str, Any]] = []
        non_resource: list[dict[str, Any]] = []
        if MASTERS in user.groups:
            resource.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            non_resource.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        if ALWAYS_ALLOW in self.modes:
            resource.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            non_resource.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        rules, errors = self.rules(user, namespace) if RBAC in self.modes else ([], [])
        for r in rules:
            raw = r.raw
            if raw.get("resources"):
                rr = {"verbs": list(raw.get("verbs") or [])}
                for k in ("apiGroups", "resources", "resourceNames"):
                    if raw.get(k):
                        rr[k] = list(raw[k])
                resource.append(rr)
            if raw.get("nonResourceURLs"):
                non_resource.append({"verbs": list(raw.get("verbs") or []),
                                     "nonResourceURLs": list(raw["nonResourceURLs"])})
        status: dict[str, Any] = {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}
        if errors:
            status["evaluationError"] = _aggregate(errors)
        return status

    # ---- escalation prevention ---------------------------------------------------------------------

    def guard(self, req: Request, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The resource actor's check of a Role/ClusterRole/binding write (create, update, patch),
        on the object as it would be stored: no permission may be granted that the writer does not
        hold, unless they may ``escalate`` (roles) or ``bind`` (bindings)."""
        rdef = req.rdef
        if rdef is None or rdef.group != RBAC_GROUP:
            return
        user = req.user
        if user is None or MASTERS in user.groups:
            return  # rbacregistry.EscalationAllowed
        if old is not None and _only_gc_fields_change(obj, old):
            return
        plural = rdef.plural
        name = (obj.get("metadata") or {}).get("name") or req.name
        ns = req.namespace if rdef.namespaced else ""
        qualified = f'{plural}.{RBAC_GROUP} "{name}"'
        if plural in _ROLE_KINDS:
            if self.authorize(user, Attributes(verb="escalate", api_group=RBAC_GROUP, resource=plural, name=name,
                                               namespace=ns)).allowed:
                return
            self._confirm_no_escalation(user, ns, _rule_dicts(obj.get("rules")), qualified, name, plural)
            if plural == "clusterroles" and obj.get("aggregationRule"):
                owner, _ = self.rules(user, "")
                if _uncovered(owner, _FULL_AUTHORITY):
                    raise Forbidden(f"{qualified} is forbidden: must have cluster-admin privileges to use the "
                                    "aggregationRule", name=name, group=RBAC_GROUP, kind=plural)
        elif plural in _BINDING_KINDS:
            ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
            kind, role = ref.get("kind") or "", ref.get("name") or ""
            if self.authorize(user, Attributes(
                    verb="bind", api_group=RBAC_GROUP, resource="clusterroles" if kind == "ClusterRole" else "roles",
                    name=role, namespace=ns)).allowed:
                return
            rules = self.index.tenant(req.tenant).role_rules(kind, role, ns)
            if rules is None:
                raise Forbidden(f"{qualified} is forbidden: {_missing_role(kind, role)}", name=name,
                                group=RBAC_GROUP, kind=plural)
            self._confirm_no_escalation(user, ns, [r.raw for r in rules], qualified, name, plural)

    def _confirm_no_escalation(self, user: UserInfo, namespace: str, rules: list[dict[str, Any]], qualified: str,
                               name: str, plural: str) -> None:
        owner, errors = self.rules(user, namespace)
        missing = _uncovered(owner, rules)
        if not missing:
            return
        groups = "[" + " ".join(json.dumps(g) for g in user.groups) + "]"
        lines = sorted({compact_string(r) for r in compact_rules(missing)})
        msg = (f'user "{user.name}" (groups={groups}) is attempting to grant RBAC permissions not currently held:\n'
               + "\n".join(lines))
        if errors:
            msg += f"; resolution errors: [{' '.join(errors)}]"  # a Go []error printed with %v
        raise Forbidden(f"{qualified} is forbidden: {msg}", name=name, group=RBAC_GROUP, kind=plural)


READ_VERBS = frozenset({"get", "list", "watch"})


def authz_handler(authorizer: Authorizer, next_actor: Actor[Request], reviews: Actor[Request]):  # type: ignore[no-untyped-def]
    """The authz actor: authorize, then answer a read (the gateway serves it; a watch is
    authorized once, at its start) or pass a write on (virtual kinds and tokens to reviews)."""
    async def handle(req: Request, reply: ReplySlot) -> None:
        assert req.user is not None
        # From here on the user is the one of the request's tenant (reviews answer for that tenant).
        req = msgspec.structs.replace(req, user=authorizer.scope(req.user, req))
        await authorizer.check(req)
        if req.rdef is None or req.verb in READ_VERBS:
            reply.set(Allowed(req.user))
        elif not req.rdef.stored or req.subresource == "token":
            reviews.forward(req, reply)
        else:
            await next_actor.hand_off(req, reply)  # admission, in this worker's task when it can

    return handle


def _rule_dicts(rules: Any) -> list[dict[str, Any]]:
    return [r for r in rules or () if isinstance(r, dict)]


def _only_gc_fields_change(obj: dict[str, Any], old: dict[str, Any]) -> bool:
    """``IsOnlyMutatingGCFields``: the two differ at most in ownerReferences and finalizers (and
    the fields the server sets)."""
    def strip(o: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (o.get("metadata") or {}).items()
                if k not in ("ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation",
                             "creationTimestamp", "uid")}
        return {**{k: v for k, v in o.items() if k != "metadata"}, "metadata": meta}
    return strip(obj) == strip(old)


# ---- Covers (policy_comparator.go) ----------------------------------------------------------------


def breakdown(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """``BreakdownRule``: one sub-rule per group x resource x verb (x name), and per URL x verb."""
    groups, resources = rule.get("apiGroups") or [], rule.get("resources") or []
    verbs, names, urls = rule.get("verbs") or [], rule.get("resourceNames") or [], rule.get("nonResourceURLs") or []
    size = len(groups) * len(resources) * len(verbs) * max(1, len(names)) + len(urls) * len(verbs)
    if size > MAX_BREAKDOWN:
        raise BadRequest(f"a rule with {size} combinations of groups, resources, verbs and names is too large to "
                         f"check for escalation (at most {MAX_BREAKDOWN})")
    out: list[dict[str, Any]] = []
    for g in groups:
        for r in resources:
            for v in verbs:
                if names:
                    out.extend({"apiGroups": [g], "resources": [r], "verbs": [v], "resourceNames": [n]} for n in names)
                else:
                    out.append({"apiGroups": [g], "resources": [r], "verbs": [v]})
    for u in urls:
        for v in verbs:
            out.append({"nonResourceURLs": [u], "verbs": [v]})
    return out


def _covers_rule(owner: Rule, sub: dict[str, Any]) -> bool:
    """``ruleCovers`` for a broken-down sub-rule (one of each)."""
    if not (owner.all_verbs or set(sub["verbs"]) <= owner.verbs):
        return False
    groups = sub.get("apiGroups") or []
    if groups and not (owner.all_groups or set(groups) <= owner.groups):
        return False
    for res in sub.get("resources") or []:
        if owner.all_resources or res in owner.resources:
            continue
        if "/" not in res or "*/" + res.split("/", 1)[1] not in owner.resources:
            return False
    names = sub.get("resourceNames") or []
    if owner.names and (not names or not set(names) <= owner.names):
        return False
    for url in sub.get("nonResourceURLs") or []:
        if not any(o == url or (o.endswith("*") and url.startswith(o.rstrip("*"))) for o in owner.urls):
            return False
    return True


def _uncovered(owner: list[Rule], rules: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``Covers``: the broken-down sub-rules of ``rules`` no single owner rule covers."""
    missing: list[dict[str, Any]] = []
    for rule in rules:
        for sub in breakdown(rule):
            if not any(_covers_rule(o, sub) for o in owner):
                missing.append(sub)
    return missing


def compact_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``CompactRules``: simple rules (one group, one resource, at most one name) merged by verbs."""
    simple: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for r in rules:
        names = r.get("resourceNames") or []
        if (len(names) > 1 or r.get("nonResourceURLs") or len(r.get("apiGroups") or []) != 1
                or len(r.get("resources") or []) != 1):
            out.append(r)
            continue
        key = (r["apiGroups"][0], r["resources"][0], names[0] if names else None)
        if key in simple:
            simple[key]["verbs"] = [*simple[key]["verbs"], *r.get("verbs", [])]
        else:
            simple[key] = {**r, "verbs": list(r.get("verbs") or [])}
            out.append(simple[key])
    return out


def compact_string(r: dict[str, Any]) -> str:
    """``PolicyRule.CompactString``: ``{APIGroups:["g"], Resources:["r"], Verbs:["get" "list"]}``."""
    def q(values: list[str]) -> str:
        return "[" + " ".join(json.dumps(v) for v in values) + "]"
    parts = [f"{label}:{q(r[key])}" for key, label in (
        ("apiGroups", "APIGroups"), ("resources", "Resources"), ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"), ("verbs", "Verbs")) if r.get(key)]
    return "{" + ", ".join(parts) + "}"
