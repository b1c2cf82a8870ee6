"""MutatingAdmissionPolicy and MutatingAdmissionPolicyBinding (admissionregistration.k8s.io/v1beta1).

As kube's ``admission/plugin/policy/mutating``: the first mutating step of the chain, before the
mutating webhooks. A binding names a policy; a CREATE or UPDATE (never a DELETE) that matches the
policy's ``matchConstraints`` and the binding's ``matchResources`` is mutated by each of the
policy's ``mutations`` in order, per param (``paramKind``/``paramRef`` as for validating
policies), after its ``matchConditions`` and ``variables``. A mutation is a CEL expression
(kinds/_cel_mutation.py) that gives JSON patch operations (``[JSONPatch{op, path, value}]``,
applied with actors/_patch.py) or an apply configuration (``Object{spec: Object.spec{...}}``,
merged with structured-merge-diff's merge and the kind's list types, kinds/_fieldpath.py); the
next mutation sees the object the previous one produced. Policies run in name order, bindings in
name order. ``reinvocationPolicy: IfNeeded`` runs a policy once more after the mutating webhooks
when they changed the object (:meth:`MutatingPolicyDispatcher.reinvoke`).

Errors (an expression that does not compile or errs, a patch that does not apply, a binding
without its params) follow the policy's ``failurePolicy``: under Fail the write is refused
(kube's Forbidden-shaped Status, 422 Invalid), under Ignore the mutation is skipped.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus import Key
from kinds import Registry, ResourceDef
from kinds._cel import CelError, CelProgram, authorizing
from kinds._cel_mutation import APPLY_CONFIGURATION, JSON_PATCH, Mutation, compile_mutation
from kinds._errors import ApiError, Cause, Forbidden
from kinds._fieldpath import merge
from kinds._schemas import schema_for
from projections import Projection

from ._admission import Attributes
from ._admission_match import request_object
from ._admission_policies import (
    PolicyDispatcher,
    _Binding,
    _ConfigError,
    _policy_head,
    authorizer_for,
    bind_variables,
)
from ._apply import apply_type
from ._patch import MalformedPatch, PatchError, apply_json_patch

GROUP = "admissionregistration.k8s.io"
_decode = msgspec.json.decode
_json = msgspec.json.Encoder()


class _MutatingPolicy:
    def __init__(self, obj: dict[str, Any]) -> None:
        spec = _policy_head(self, obj)
        self.reinvoke = spec.get("reinvocationPolicy") == "IfNeeded"
        #: (patch type, expression) of each mutation.
        self.mutations: list[tuple[str, str]] = []
        for m in spec.get("mutations") or []:
            if not isinstance(m, dict):
                continue
            pt = str(m.get("patchType") or "")
            field = "jsonPatch" if pt == JSON_PATCH else "applyConfiguration"
            body = m.get(field) if isinstance(m.get(field), dict) else {}
            self.mutations.append((pt, str(body.get("expression") or "")))
        # Compiled per kind (the types an apply configuration constructs come from its schema).
        self._compiled: dict[tuple[str, str, str], list[Mutation | str]] = {}

    def compiled(self, rdef: ResourceDef) -> list[Mutation | str]:
        key = (rdef.group, rdef.version, rdef.kind)
        got = self._compiled.get(key)
        if got is None:
            schema = rdef.schema if rdef.crd else schema_for(rdef.group, rdef.version, rdef.kind)
            got = []
            for pt, expr in self.mutations:
                if pt not in (JSON_PATCH, APPLY_CONFIGURATION):
                    got.append(f"unsupported patchType {pt!r}")
                    continue
                try:
                    got.append(compile_mutation(expr, pt, schema))
                except CelError as e:
                    got.append(f"compilation failed: {e}")
            self._compiled[key] = got
        return got


class _Failed(Exception):
    pass


class MutatingPolicyDispatcher(PolicyDispatcher):
    """Applies the tenant's bound MutatingAdmissionPolicies to a write (the params, authorizer
    and configuration caching of :class:`PolicyDispatcher`)."""

    def __init__(self, projection: Projection, registry: Registry) -> None:
        super().__init__(projection, registry)
        self._mcache: dict[str, tuple[tuple[int, int], dict[str, _MutatingPolicy], list[_Binding]]] = {}

    def _mconfig(self, tenant: str) -> tuple[dict[str, _MutatingPolicy], list[_Binding]]:
        return self._load(self._mcache, tenant, "mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
                          _MutatingPolicy, sort_bindings=True)

    def active(self, tenant: str) -> bool:
        policies, bindings = self._mconfig(tenant)
        return bool(policies and bindings)

    async def mutate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None, *,
                     only: frozenset[str] | None = None) -> tuple[dict[str, Any] | None, list[str]]:
        """The object after every matching (policy, binding); and the names of the policies that
        matched and ask ``reinvocationPolicy: IfNeeded``. ``only``: run just these (a reinvocation)."""
        if obj is None or a.operation not in ("CREATE", "UPDATE") or a.subresource not in ("", "status"):
            # Never a DELETE (kube's validation refuses such rules); a scale, binding, eviction or
            # token body is another kind than the resource's: left alone.
            return obj, []
        policies, bindings = self._mconfig(a.tenant)
        reinvocable: list[str] = []
        namespace_object: dict[str, Any] | None = None
        if a.rdef.namespaced and a.namespace:
            entry = self.projection.get(Key(a.tenant, "", "namespaces", "", a.namespace))
            namespace_object = _decode(entry.data) if entry is not None else None
        errors: list[ApiError] = []
        for name in sorted(policies):
            if only is not None and name not in only:
                continue
            p = policies[name]
            if not await p.match.matches(self.projection, a, obj, old):
                continue
            for b in bindings:
                if b.policy != name:
                    continue
                if b.match is not None and not await b.match.matches(self.projection, a, obj, old):
                    continue
                try:
                    params = self._params(a, p, b)  # type: ignore[arg-type]
                except _ConfigError as e:
                    if p.failure_policy != "Ignore":
                        errors.append(_denial(a, p, b, str(e), ""))
                    continue
                for param in params:
                    try:
                        obj = self._apply(a, p, b, obj, old, param, namespace_object)
                    except ApiError as e:
                        errors.append(e)
                if p.reinvoke and name not in reinvocable:
                    reinvocable.append(name)
        if errors:
            # kube's generic policy dispatcher: every failure is a cause, the first one the message.
            first = errors[0]
            first.causes = tuple(c for e in errors for c in e.causes)
            raise first
        return obj, reinvocable

    def _apply(self, a: Attributes, p: _MutatingPolicy, b: _Binding, obj: dict[str, Any], old: dict[str, Any] | None,
               param: dict[str, Any] | None, namespace_object: dict[str, Any] | None) -> dict[str, Any]:
        uses_authz = p.conditions.uses_authorizer or any(
            "authorizer" in m.used for m in p.compiled(a.rdef) if isinstance(m, Mutation)) or any(
            isinstance(prog, CelProgram) and "authorizer" in prog.used for _, prog in p.variables)
        data: dict[str, Any] = {"object": obj, "oldObject": old, "request": request_object(a, obj, old),
                                "params": param, "namespaceObject": namespace_object,
                                "authorizer": authorizer_for(a) if uses_authz else None}
        try:
            with authorizing(self._authz_check(a)):
                ok, err = p.conditions.evaluate(data) if (p.conditions.programs or p.conditions.error) \
                    else (True, "")
                if err:
                    raise _Failed(err)
                if not ok:
                    return obj
                bind_variables(p.variables, data)
                failed: list[str] = []
                for m in p.compiled(a.rdef):
                    # As kube: a mutation that fails is skipped and the next one runs; the
                    # failures then refuse the write under failurePolicy Fail.
                    try:
                        if isinstance(m, str):
                            raise _Failed(m)
                        data["object"] = obj = self._mutate(a, m, data, obj)
                    except _Failed as e:
                        failed.append(str(e))
                if failed and p.failure_policy != "Ignore":
                    raise _Failed(failed[0])
        except _Failed as e:
            if p.failure_policy == "Ignore":
                return obj
            raise _denial(a, p, b, str(e)) from None
        return obj

    @staticmethod
    def _mutate(a: Attributes, m: Mutation, data: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        try:
            result = m.evaluate(data)
        except CelError as e:
            raise _Failed(f"expression '{m.expression}' resulted in error: {e}") from None
        if m.patch_type == JSON_PATCH:
            try:
                patched = apply_json_patch(obj, result)
            except (MalformedPatch, PatchError) as e:
                raise _Failed(f"JSON Patch: {e}") from None
        else:
            patched = merge(obj, result, apply_type(a.rdef))
            patched = _decode(_json.encode(patched))  # the merge shares parts of both: a copy of its own
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise _Failed("the mutated object is not an object")
        return patched


def _denial(a: Attributes, p: _MutatingPolicy, b: _Binding, message: str, reason: str = "Invalid") -> ApiError:
    """kube's generic policy dispatcher: a Forbidden (403) whose message is the policy error's and
    whose reason is Invalid for an evaluation error, Forbidden for a binding's configuration."""
    denied = f"policy '{p.name}' with binding '{b.name}' denied request: {message}"
    r = a.rdef
    err = Forbidden(denied, name=a.name, group=r.group, kind=r.plural, causes=(Cause("", denied),))
    if reason:
        err.reason = reason
    return err


__all__ = ["MutatingPolicyDispatcher"]
