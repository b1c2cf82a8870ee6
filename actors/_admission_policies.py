"""ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding (admissionregistration.k8s.io/v1).

As kube's ``admission/plugin/policy/validating``: a binding names a policy; the write must match
both the policy's ``matchConstraints`` and the binding's ``matchResources``; ``paramKind`` with
the binding's ``paramRef`` (by name, or by selector: the policy is evaluated once per param and
every one must pass; none found is ``parameterNotFoundAction``); ``matchConditions`` then
``validations`` in CEL (kinds/_cel.py) over ``object``, ``oldObject``, ``request``, ``params``,
``namespaceObject``, ``variables`` and ``authorizer`` (kube's authorizer library over the
server's authorizer, kinds/_cel.py). Every validation is evaluated; each failure is acted on by
the binding's ``validationActions``: Deny (kube's Forbidden-shaped Status with the validation's
reason, 422 Invalid by default; the first denial is answered), Warn (a Warning header) or Audit
(the ``validation.policy.admission.k8s.io/validation_failure`` audit annotation, a JSON list).
``auditAnnotations`` are evaluated for every matching binding and recorded as
``<policy>/<key>`` (distinct values of several bindings joined with ", "; a null value is left
out). An expression that errs, and a binding that cannot be configured (its params missing),
follow the policy's ``failurePolicy``: a denial under Fail, nothing under Ignore.

The configuration is compiled once per change of either resource (the projection's versions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from bus import Key
from kinds import Registry, ResourceDef
from kinds._cel import AuthzCheck, CelError, CelProgram, authorizer_value, authorizing, compile_cel
from kinds._errors import ApiError, Cause
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
from ._authz import Attributes as AuthzAttributes
from ._authz import Decision
from .messages import UserInfo

log = logging.getLogger("jetkube.admission")

GROUP = "admissionregistration.k8s.io"
VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables", "authorizer")
VALIDATION_FAILURE = "validation.policy.admission.k8s.io/validation_failure"
_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}
_decode = msgspec.json.decode


P = TypeVar("P")

def _compile(expr: Any) -> CelProgram | str:
    try:
        return compile_cel(str(expr or ""), VARIABLES)
    except CelError as e:
        return f"compilation failed: {e}"


class _Match:
    """A MatchResources compiled (the policy's matchConstraints or the binding's matchResources)."""

    def __init__(self, spec: Any) -> None:
        spec = spec if isinstance(spec, dict) else {}
        self.rules = [r for r in spec.get("resourceRules") or [] if isinstance(r, dict)]
        self.exclude = [r for r in spec.get("excludeResourceRules") or [] if isinstance(r, dict)]
        self.namespace_selector = selector(spec.get("namespaceSelector"))
        self.object_selector = selector(spec.get("objectSelector"))

    async def matches(self, projection: Projection, a: Attributes, obj: dict[str, Any] | None,
                      old: dict[str, Any] | None) -> bool:
        r = a.rdef

        def hit(rule: dict[str, Any]) -> bool:
            return rule_matches(rule, a.operation, r.group, r.version, r.plural, a.subresource, r.namespaced,
                                a.name)

        if not any(hit(x) for x in self.rules) or any(hit(x) for x in self.exclude):
            return False
        return (await namespace_selected(projection, self.namespace_selector, a, obj, old)
                and object_selected(self.object_selector, obj, old))


def _policy_head(p: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """What validating and mutating policies share: name, failurePolicy, paramKind,
    matchConstraints, matchConditions and variables, set on ``p``; returns the spec."""
    p.name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    p.failure_policy = spec.get("failurePolicy") or "Fail"
    pk = spec.get("paramKind") if isinstance(spec.get("paramKind"), dict) else None
    p.param_kind = (str(pk.get("apiVersion", "")), str(pk.get("kind", ""))) if pk else None
    p.match = _Match(spec.get("matchConstraints"))
    p.conditions = Conditions(spec.get("matchConditions"), VARIABLES)
    p.variables = [(str(v.get("name", "")), _compile(v.get("expression")))
                   for v in spec.get("variables") or [] if isinstance(v, dict)]
    return spec


class _Policy:
    def __init__(self, obj: dict[str, Any]) -> None:
        spec = _policy_head(self, obj)
        self.validations: list[tuple[CelProgram | str, dict[str, Any], CelProgram | str | None]] = []
        for v in spec.get("validations") or []:
            if isinstance(v, dict):
                me = v.get("messageExpression")
                self.validations.append((_compile(v.get("expression")), v, _compile(me) if me else None))
        self.audit_annotations = [(str(x.get("key", "")), _compile(x.get("valueExpression")))
                                  for x in spec.get("auditAnnotations") or [] if isinstance(x, dict)]
        programs = [*(prog for _, prog in self.conditions.programs), *(prog for _, prog in self.variables),
                    *(x for val, _, me in self.validations for x in (val, me)),
                    *(prog for _, prog in self.audit_annotations)]
        # The AdmissionRequest (and the authorizer) are built only for a policy whose expressions read it.
        self.uses_request = any(isinstance(x, CelProgram) and "request" in x.used for x in programs)
        self.uses_authorizer = any(isinstance(x, CelProgram) and "authorizer" in x.used for x in programs)


class _Binding:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.name = obj["metadata"]["name"]
        spec = obj.get("spec") or {}
        self.policy = str(spec.get("policyName") or "")
        self.actions = tuple(spec.get("validationActions") or ())
        ref = spec.get("paramRef")
        self.param_ref: dict[str, Any] | None = ref if isinstance(ref, dict) else None
        self.param_selector = selector(ref.get("selector")) if self.param_ref and ref.get("selector") else None
        mr = spec.get("matchResources")
        self.match = _Match(mr) if isinstance(mr, dict) and mr.get("resourceRules") else None


class _ConfigError(Exception):
    """A binding that cannot be evaluated (kube's addConfigError): denied under Fail."""


@dataclass(frozen=True)
class _Failure:
    """A validation that failed (false, or an error under failurePolicy Fail): kube's ActionDeny decision."""

    index: int
    message: str
    reason: str


class _Result:
    """One evaluation of a policy (one param): the failures and the audit annotations."""

    __slots__ = ("annotations", "failures")

    def __init__(self) -> None:
        self.failures: list[_Failure] = []
        #: (key, value): value None is an error (a denial under Fail).
        self.annotations: list[tuple[str, str | None, str]] = []


class SyncAuthorizer(Protocol):
    def authorize(self, user: UserInfo, a: AuthzAttributes) -> Decision: ...


class PolicyDispatcher:
    """Evaluates the tenant's bound ValidatingAdmissionPolicies on a write."""

    def __init__(self, projection: Projection, registry: Registry) -> None:
        self.projection = projection
        self._kinds: dict[tuple[str, str], ResourceDef] = {}
        for d in registry.defs:
            self._kinds.setdefault((d.api_version, d.kind), d)
        self._cache: dict[str, tuple[tuple[int, int], dict[str, _Policy], list[_Binding]]] = {}
        #: The server's authorizer behind the ``authorizer`` variable (None: every check is an error).
        self.authorizer: SyncAuthorizer | None = None

    def _version(self, tenant: str, plural: str) -> int:
        st = self.projection.state(tenant, GROUP, plural)
        return st.ring[-1].seq if st.ring else -st.count

    def _load(self, cache: dict[str, Any], tenant: str, policies_plural: str, bindings_plural: str,
              make: Callable[[dict[str, Any]], P], *, sort_bindings: bool = False) -> tuple[dict[str, P], list[_Binding]]:
        """A tenant's policies and bindings of one kind pair, decoded once per change of either."""
        version = (self._version(tenant, policies_plural), self._version(tenant, bindings_plural))
        cached = cache.get(tenant)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        policies = {name: make(_decode(e.data)) for _ns, name, e in
                    self.projection.state(tenant, GROUP, policies_plural).iter_entries(None)}
        bindings = [_Binding(_decode(e.data)) for _ns, _name, e in
                    self.projection.state(tenant, GROUP, bindings_plural).iter_entries(None)]
        if sort_bindings:
            bindings.sort(key=lambda b: b.name)
        cache[tenant] = (version, policies, bindings)
        return policies, bindings

    def _config(self, tenant: str) -> tuple[dict[str, _Policy], list[_Binding]]:
        return self._load(self._cache, tenant, "validatingadmissionpolicies", "validatingadmissionpolicybindings",
                          _Policy)

    def active(self, tenant: str) -> bool:
        policies, bindings = self._config(tenant)
        return bool(policies and bindings)

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        """kube's validating dispatcher: every matching (policy, binding) is evaluated; warnings
        and audit annotations are recorded, then the first denial (if any) is raised."""
        policies, bindings = self._config(a.tenant)
        namespace_object: dict[str, Any] | None = None
        if a.rdef.namespaced and a.namespace:
            entry = self.projection.get(Key(a.tenant, "", "namespaces", "", a.namespace))
            namespace_object = _decode(entry.data) if entry is not None else None
        request: dict[str, Any] | None = None
        authorizer: dict[str, Any] | None = None
        denied: list[tuple[_Policy, _Binding, str, str]] = []  # (policy, binding, message, reason)
        audit_failures: list[dict[str, Any]] = []
        # Policies in name order, each with its bindings (kube's per-policy annotation collector).
        by_policy: dict[str, list[_Binding]] = {}
        for b in bindings:
            if b.policy in policies:
                by_policy.setdefault(b.policy, []).append(b)
        for name in sorted(by_policy):
            p = policies[name]
            if not await p.match.matches(self.projection, a, obj, old):
                continue
            collected: dict[str, list[str]] = {}
            for b in by_policy[name]:
                if b.match is not None and not await b.match.matches(self.projection, a, obj, old):
                    continue
                if request is None and p.uses_request:
                    request = request_object(a, obj, old)
                if authorizer is None and p.uses_authorizer:
                    authorizer = authorizer_value(_request_resource(a))
                try:
                    params = self._params(a, p, b)
                except _ConfigError as e:
                    if p.failure_policy != "Ignore":
                        denied.append((p, b, f"failed to configure binding: {e}", "Invalid"))
                    continue
                for param in params:
                    data = {"object": obj, "oldObject": old, "request": request, "params": param,
                            "namespaceObject": namespace_object, "authorizer": authorizer}
                    if p.uses_authorizer:
                        with authorizing(self._authz_check(a)):
                            result = self._evaluate(p, data)
                    else:
                        result = self._evaluate(p, data)
                    for f in result.failures:
                        self._act(a, p, b, f, denied, audit_failures)
                    for key, value, error in result.annotations:
                        if value is None:
                            if error:
                                denied.append((p, b, error, "Invalid"))
                        elif value not in (seen := collected.setdefault(key, [])):
                            seen.append(value)
            for key, values in collected.items():
                add_audit_annotation(f"{p.name}/{key}", ", ".join(values))
        if audit_failures:
            add_audit_annotation(VALIDATION_FAILURE, msgspec.json.encode(audit_failures).decode())
        if denied:
            raise _denial(a, *denied[0])

    def _authz_check(self, a: Attributes) -> AuthzCheck:
        return authz_check(self.authorizer, a)

    def _params(self, a: Attributes, p: _Policy, b: _Binding) -> list[dict[str, Any] | None]:
        if p.param_kind is None:
            return [None]
        ref = b.param_ref
        if ref is None:
            return [None]  # kube: a binding without paramRef evaluates with null params
        rdef = self._kinds.get(p.param_kind)
        if rdef is None:
            raise _ConfigError(f"paramKind kind `{p.param_kind[1]}.{p.param_kind[0]}` not known")
        ns = str(ref.get("namespace") or (a.namespace if rdef.namespaced else ""))
        found: list[dict[str, Any] | None] = []
        if ref.get("name"):
            entry = self.projection.get(Key(a.tenant, rdef.group, rdef.plural, ns if rdef.namespaced else "",
                                            str(ref["name"])))
            if entry is not None:
                found.append(_decode(entry.data))
        elif (sel := b.param_selector) is not None:
            st = self.projection.state(a.tenant, rdef.group, rdef.plural)
            for _ns, _name, entry in st.iter_entries(ns if rdef.namespaced else ""):
                if sel.matches(entry.labels):
                    found.append(_decode(entry.data))
        if not found:
            if ref.get("parameterNotFoundAction") == "Allow":
                return []
            raise _ConfigError("no params found for policy binding with `Deny` parameterNotFoundAction")
        return found

    @staticmethod
    def _evaluate(p: _Policy, data: dict[str, Any]) -> _Result:
        """kube's validator: every validation (index, message, reason) and audit annotation."""
        out = _Result()
        fail = p.failure_policy != "Ignore"
        ok, err = p.conditions.evaluate(data) if (p.conditions.programs or p.conditions.error) else (True, "")
        if err:
            if fail:
                out.failures.append(_Failure(-1, err, "Invalid"))
            return out
        if not ok:
            return out
        bind_variables(p.variables, data)
        for i, (prog, v, message_expr) in enumerate(p.validations):
            if isinstance(prog, str):
                if fail:
                    out.failures.append(_Failure(i, prog, "Invalid"))
                continue
            try:
                result = prog.evaluate(data)
            except CelError as e:
                if fail:
                    out.failures.append(_Failure(i, f"expression '{prog.expression}' resulted in error: {e}",
                                                 "Invalid"))
                continue
            if result is True:
                continue
            message = str(v.get("message") or "")
            if isinstance(message_expr, CelProgram):
                try:
                    m = message_expr.evaluate(data)
                    if isinstance(m, str) and m.strip() and "\n" not in m:
                        message = m
                except CelError:
                    pass
            if not message:
                message = f"failed expression: {prog.expression}"
            out.failures.append(_Failure(i, message, str(v.get("reason") or "Invalid")))
        for key, prog in p.audit_annotations:
            if isinstance(prog, str):
                out.annotations.append((key, None, prog if fail else ""))
                continue
            try:
                value = prog.evaluate(data)
            except CelError as e:
                out.annotations.append((key, None, f"valueExpression '{prog.expression}' resulted in error: {e}"
                                        if fail else ""))
                continue
            if value is None:
                continue  # kube: a null value leaves the annotation out
            if not isinstance(value, str):
                out.annotations.append((key, None, f"valueExpression '{prog.expression}' resulted in type "
                                                   f"{type(value).__name__}, expected string" if fail else ""))
                continue
            out.annotations.append((key, value, ""))
        return out

    @staticmethod
    def _act(a: Attributes, p: _Policy, b: _Binding, f: _Failure, denied: list[tuple[_Policy, _Binding, str, str]],
             audit_failures: list[dict[str, Any]]) -> None:
        for action in b.actions:
            if action == "Deny":
                denied.append((p, b, f.message, f.reason))
            elif action == "Warn":
                add_warning(f"Validation failed for ValidatingAdmissionPolicy '{p.name}' with binding '{b.name}': "
                            f"{f.message}")
            elif action == "Audit":
                audit_failures.append({"message": f.message, "policy": p.name, "binding": b.name,
                                       "expressionIndex": max(f.index, 0), "validationActions": list(b.actions)})


def bind_variables(variables: list[tuple[str, CelProgram | str]], data: dict[str, Any]) -> None:
    """A policy's ``variables``, evaluated in order into ``data["variables"]`` (each may read the
    ones before it); one that errs is left out, so an expression that reads it errs in turn."""
    out: dict[str, Any] = {}
    data["variables"] = out
    for name, prog in variables:
        if isinstance(prog, CelProgram):
            try:
                out[name] = prog.evaluate(data)
            except CelError:
                pass


def authz_check(authorizer: SyncAuthorizer | None, a: Attributes) -> AuthzCheck:
    """The ``authorizer`` variable's checks for write ``a``, decided by ``authorizer`` (the
    server's) for the request's user, or for the service account a check names."""

    def check(attrs: dict[str, str]) -> tuple[bool, str, str]:
        if authorizer is None:
            return False, "", "no authorizer is configured"
        user = a.user
        if sa := attrs.get("serviceAccount"):
            ns, _, name = sa.partition("/")
            user = UserInfo(name=f"system:serviceaccount:{ns}:{name}", tenant=a.tenant,
                            groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"))
        if user is None:
            return False, "", "no user"
        if "path" in attrs:
            aa = AuthzAttributes(verb=attrs.get("verb", ""), resource_request=False, path=attrs["path"])
        else:
            aa = AuthzAttributes(verb=attrs.get("verb", ""), api_group=attrs.get("group", ""),
                                 resource=attrs.get("resource", ""), subresource=attrs.get("subresource", ""),
                                 name=attrs.get("name", ""), namespace=attrs.get("namespace", ""))
        d = authorizer.authorize(user, aa)
        return d.allowed, d.reason, ""

    return check


def authorizer_for(a: Attributes) -> dict[str, Any]:
    """The ``authorizer`` variable's value for write ``a``."""
    return authorizer_value(_request_resource(a))


def _request_resource(a: Attributes) -> dict[str, str]:
    r = a.rdef
    return {"group": r.group, "resource": r.plural, "subresource": a.subresource,
            "namespace": a.namespace, "name": a.name}


def _denial(a: Attributes, p: _Policy, b: _Binding, message: str, reason: str) -> ApiError:
    denied = f"ValidatingAdmissionPolicy '{p.name}' with binding '{b.name}' denied request: {message}"
    r = a.rdef
    resource = f"{r.plural}.{r.group}" if r.group else r.plural
    err = ApiError(f'{resource} "{a.name}" is forbidden: {denied}', name=a.name, group=r.group,
                   kind=r.plural, causes=(Cause("", denied),))
    err.reason = reason or "Invalid"
    err.code = _CODES.get(err.reason, 422)
    return err


__all__ = ["VALIDATION_FAILURE", "PolicyDispatcher", "authorizer_for", "authz_check"]
