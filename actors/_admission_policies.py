"""ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding (admissionregistration.k8s.io/v1).

As kube's ``admission/plugin/policy/validating``: a binding names a policy; the write must match
both the policy's ``matchConstraints`` and the binding's ``matchResources``; ``paramKind`` with
the binding's ``paramRef`` (by name, or by selector: the policy is evaluated once per param and
every one must pass; none found is ``parameterNotFoundAction``); ``matchConditions`` then
``validations`` in CEL (kinds/_cel.py) over ``object``, ``oldObject``, ``request``, ``params``,
``namespaceObject`` and ``variables``. A failed validation is acted on by the binding's
``validationActions``: Deny (kube's Forbidden-shaped Status with the validation's reason, 422
Invalid by default), Warn (a Warning header) or Audit (logged: jetkube has no audit
annotations yet). An expression that errs follows the policy's ``failurePolicy``.

The configuration is compiled once per change of either resource (the projection's versions).
``authorizer`` is not offered: an expression that uses it does not compile and is reported as
a failure under the policy's failurePolicy.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from bus import Key
from kinds import Registry, ResourceDef
from kinds._cel import CelError, CelProgram, compile_cel
from kinds._errors import ApiError, Cause
from projections import Projection

from ._admission import Attributes, add_warning
from ._admission_match import (
    Conditions,
    namespace_selected,
    object_selected,
    request_object,
    rule_matches,
    selector,
)

log = logging.getLogger("jetkube.admission")

GROUP = "admissionregistration.k8s.io"
VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables")
_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}
_decode = msgspec.json.decode


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


class _Policy:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.name = obj["metadata"]["name"]
        spec = obj.get("spec") or {}
        self.failure_policy = spec.get("failurePolicy") or "Fail"
        pk = spec.get("paramKind") if isinstance(spec.get("paramKind"), dict) else None
        self.param_kind: tuple[str, str] | None = (str(pk.get("apiVersion", "")), str(pk.get("kind", ""))) \
            if pk else None
        self.match = _Match(spec.get("matchConstraints"))
        self.conditions = Conditions(spec.get("matchConditions"), VARIABLES)
        self.variables = [(str(v.get("name", "")), _compile(v.get("expression")))
                          for v in spec.get("variables") or [] if isinstance(v, dict)]
        self.validations: list[tuple[CelProgram | str, dict[str, Any], CelProgram | str | None]] = []
        for v in spec.get("validations") or []:
            if isinstance(v, dict):
                me = v.get("messageExpression")
                self.validations.append((_compile(v.get("expression")), v, _compile(me) if me else None))
        programs = [*(prog for _, prog in self.conditions.programs), *(prog for _, prog in self.variables),
                    *(x for val, _, me in self.validations for x in (val, me))]
        # The AdmissionRequest is built only for a policy whose expressions read it.
        self.uses_request = any(isinstance(x, CelProgram) and "request" in x.used for x in programs)


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


class _Denied(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message, self.reason = message, reason


class PolicyDispatcher:
    """Evaluates the tenant's bound ValidatingAdmissionPolicies on a write."""

    def __init__(self, projection: Projection, registry: Registry) -> None:
        self.projection = projection
        self._kinds: dict[tuple[str, str], ResourceDef] = {}
        for d in registry.defs:
            self._kinds.setdefault((d.api_version, d.kind), d)
        self._cache: dict[str, tuple[tuple[int, int], dict[str, _Policy], list[_Binding]]] = {}

    def _version(self, tenant: str, plural: str) -> int:
        st = self.projection.state(tenant, GROUP, plural)
        return st.ring[-1].seq if st.ring else -st.count

    def _config(self, tenant: str) -> tuple[dict[str, _Policy], list[_Binding]]:
        version = (self._version(tenant, "validatingadmissionpolicies"),
                   self._version(tenant, "validatingadmissionpolicybindings"))
        cached = self._cache.get(tenant)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        policies = {name: _Policy(_decode(e.data)) for _ns, name, e in
                    self.projection.state(tenant, GROUP, "validatingadmissionpolicies").iter_entries(None)}
        bindings = [_Binding(_decode(e.data)) for _ns, _name, e in
                    self.projection.state(tenant, GROUP, "validatingadmissionpolicybindings").iter_entries(None)]
        self._cache[tenant] = (version, policies, bindings)
        return policies, bindings

    def active(self, tenant: str) -> bool:
        policies, bindings = self._config(tenant)
        return bool(policies and bindings)

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        policies, bindings = self._config(a.tenant)
        namespace_object: dict[str, Any] | None = None
        if a.rdef.namespaced and a.namespace:
            entry = self.projection.get(Key(a.tenant, "", "namespaces", "", a.namespace))
            namespace_object = _decode(entry.data) if entry is not None else None
        request: dict[str, Any] | None = None
        for b in bindings:
            p = policies.get(b.policy)
            if p is None or not await p.match.matches(self.projection, a, obj, old):
                continue
            if b.match is not None and not await b.match.matches(self.projection, a, obj, old):
                continue
            if request is None and p.uses_request:
                request = request_object(a, obj, old)
            try:
                for params in self._params(a, p, b):
                    data = {"object": obj, "oldObject": old, "request": request, "params": params,
                            "namespaceObject": namespace_object}
                    self._evaluate(p, data)
            except _Denied as d:
                self._act(a, p, b, d)

    def _params(self, a: Attributes, p: _Policy, b: _Binding) -> list[dict[str, Any] | None]:
        if p.param_kind is None:
            return [None]
        rdef = self._kinds.get(p.param_kind)
        ref = b.param_ref
        if rdef is None or ref is None:
            raise _Denied(f"failed to configure binding: {'paramRef' if ref is None else 'paramKind'} is not "
                          f"valid", "Invalid")
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
            raise _Denied("no params found for policy binding with `Deny` parameterNotFoundAction", "Invalid")
        return found

    def _evaluate(self, p: _Policy, data: dict[str, Any]) -> None:
        """Raise :class:`_Denied` for the first failed validation (or an error under Fail)."""
        ok, err = p.conditions.evaluate(data) if (p.conditions.programs or p.conditions.error) else (True, "")
        if err:
            if p.failure_policy == "Ignore":
                return
            raise _Denied(err, "Invalid")
        if not ok:
            return
        variables: dict[str, Any] = {}
        data["variables"] = variables
        for name, prog in p.variables:
            if isinstance(prog, CelProgram):
                try:
                    variables[name] = prog.evaluate(data)
                except CelError:
                    pass  # an expression that reads it errs in turn
        for prog, v, message_expr in p.validations:
            if isinstance(prog, str):
                if p.failure_policy == "Fail":
                    raise _Denied(f"{prog}", "Invalid")
                continue
            try:
                result = prog.evaluate(data)
            except CelError as e:
                if p.failure_policy == "Ignore":
                    continue
                raise _Denied(f"expression '{prog.expression}' resulted in error: {e}", "Invalid") from None
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
            raise _Denied(message, str(v.get("reason") or "Invalid"))

    def _act(self, a: Attributes, p: _Policy, b: _Binding, d: _Denied) -> None:
        if "Warn" in b.actions:
            add_warning(f"Validation failed for ValidatingAdmissionPolicy '{p.name}' with binding '{b.name}': "
                        f"{d.message}")
        if "Audit" in b.actions:
            log.info("ValidatingAdmissionPolicy %r with binding %r: validation failed: %s", p.name, b.name,
                     d.message)
        if "Deny" in b.actions:
            denied = f"ValidatingAdmissionPolicy '{p.name}' with binding '{b.name}' denied request: {d.message}"
            r = a.rdef
            resource = f"{r.plural}.{r.group}" if r.group else r.plural
            err = ApiError(f'{resource} "{a.name}" is forbidden: {denied}', name=a.name, group=r.group,
                           kind=r.plural, causes=(Cause("", denied),))
            err.reason = d.reason
            err.code = _CODES.get(d.reason, 422)
            raise err


__all__ = ["PolicyDispatcher"]
