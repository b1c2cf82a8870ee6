"""admissionregistration.k8s.io/v1: webhook configurations and ValidatingAdmissionPolicies.

Defaulting as kube's ``pkg/apis/admissionregistration/v1/defaults.go`` and the validation
that matters for dispatch (``pkg/apis/admissionregistration/validation``): sideEffects,
timeoutSeconds, admissionReviewVersions, failurePolicy, validationActions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._errors import Cause
from ._strategy import Strategy
from ._validation import validate_object_meta

__all__ = ["ADMISSION_STRATEGIES", "MAX_TYPES_TO_CHECK", "POLICY_VARIABLES", "default_rule_scope", "policy_type_check",
           "types_to_check"]

GROUP = "admissionregistration.k8s.io"


def default_rule_scope(rule: dict[str, Any]) -> None:
    if isinstance(rule, dict):
        rule.setdefault("scope", "*")


def _default_match_resources(mr: Any) -> None:
    if not isinstance(mr, dict):
        return
    mr.setdefault("namespaceSelector", {})
    mr.setdefault("objectSelector", {})
    mr.setdefault("matchPolicy", "Equivalent")
    for key in ("resourceRules", "excludeResourceRules"):
        for r in mr.get(key) or []:
            default_rule_scope(r)


def _default_webhooks(obj: dict[str, Any], mutating: bool) -> None:
    for wh in obj.get("webhooks") or []:
        if not isinstance(wh, dict):
            continue
        wh.setdefault("failurePolicy", "Fail")
        wh.setdefault("matchPolicy", "Equivalent")
        wh.setdefault("namespaceSelector", {})
        wh.setdefault("objectSelector", {})
        wh.setdefault("timeoutSeconds", 10)
        if mutating:
            wh.setdefault("reinvocationPolicy", "Never")
        for r in wh.get("rules") or []:
            default_rule_scope(r)
        svc = (wh.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)


def _validate_webhooks(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, wh in enumerate(obj.get("webhooks") or []):
        if not isinstance(wh, dict):
            continue
        base = f"webhooks[{i}]"
        name = wh.get("name") or ""
        if not name:
            causes.append(Cause("FieldValueRequired", "Required value", f"{base}.name"))
        elif name.count(".") < 2:
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": should be a domain with at least '
                                                     f'three segments separated by dots', f"{base}.name"))
        elif name in names:
            causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"{base}.name"))
        names.add(name)
        se = wh.get("sideEffects")
        if se is None:
            causes.append(Cause("FieldValueRequired", "Required value", f"{base}.sideEffects"))
        elif se not in ("None", "NoneOnDryRun"):
            causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{se}": supported values: "None", '
                                                          f'"NoneOnDryRun"', f"{base}.sideEffects"))
        t = wh.get("timeoutSeconds")
        if isinstance(t, int) and not 1 <= t <= 30:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {t}: the timeout value must be between 1 and "
                                                     f"30 seconds", f"{base}.timeoutSeconds"))
        if not wh.get("admissionReviewVersions"):
            causes.append(Cause("FieldValueRequired", "Required value: must specify one of v1, v1beta1",
                                f"{base}.admissionReviewVersions"))
        fp = wh.get("failurePolicy")
        if fp not in ("Fail", "Ignore"):
            causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{fp}": supported values: "Fail", '
                                                          f'"Ignore"', f"{base}.failurePolicy"))
        cc = wh.get("clientConfig") or {}
        if bool(cc.get("url")) == bool(cc.get("service")):
            causes.append(Cause("FieldValueRequired", "Required value: exactly one of url or service is required",
                                f"{base}.clientConfig"))
        if len(wh.get("matchConditions") or []) > 64:
            causes.append(Cause("FieldValueTooMany", "Too many: must have at most 64 items",
                                f"{base}.matchConditions"))
    return causes


class _WebhookConfigStrategy(Strategy):
    def __init__(self, mutating: bool) -> None:
        self.mutating = mutating

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _default_webhooks(obj, self.mutating)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _default_webhooks(new, self.mutating)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: Any) -> list[Cause]:
        return [*validate_object_meta(obj.get("metadata"), namespaced=False, name_rule=rdef.name_rule),
                *_validate_webhooks(obj)]


class _PolicyStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("failurePolicy", "Fail")
            _default_match_resources(spec.get("matchConstraints"))

    prepare_for_update = lambda self, new, old: self.prepare_for_create(new)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: Any) -> list[Cause]:
        causes = validate_object_meta(obj.get("metadata"), namespaced=False, name_rule=rdef.name_rule)
        spec = obj.get("spec") or {}
        if not spec.get("validations") and not spec.get("auditAnnotations"):
            causes.append(Cause("FieldValueRequired", "Required value: validations or auditAnnotations must "
                                                      "contain at least one item", "spec.validations"))
        for i, v in enumerate(spec.get("validations") or []):
            if not isinstance(v, dict) or not v.get("expression"):
                causes.append(Cause("FieldValueRequired", "Required value", f"spec.validations[{i}].expression"))
        causes.extend(_compile_errors(spec))
        return causes


def _compile_errors(spec: dict[str, Any]) -> list[Cause]:
    """kube's validation of a policy's CEL: each expression must compile (with dynamic types:
    the type checking against the matched kinds is the status controller's, a warning)."""
    from ._cel import CelError, compile_cel

    causes: list[Cause] = []
    fields = [("validations", "expression"), ("validations", "messageExpression"),
              ("matchConditions", "expression"), ("variables", "expression"),
              ("auditAnnotations", "valueExpression")]
    for list_name, key in fields:
        items = spec.get(list_name)
        for i, item in enumerate(items if isinstance(items, list) else []):
            expr = item.get(key) if isinstance(item, dict) else None
            if not isinstance(expr, str) or not expr:
                continue
            try:
                compile_cel(expr, POLICY_VARIABLES)
            except CelError as e:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {_quote(expr)}: compilation failed: {e}",
                                    f"spec.{list_name}[{i}].{key}"))
    return causes


def _quote(s: str) -> str:
    """Go's %q of a string, as kube's field.Invalid prints a value."""
    import json

    return json.dumps(s, ensure_ascii=False)


class _BindingStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            _default_match_resources(spec.get("matchResources"))

    prepare_for_update = lambda self, new, old: self.prepare_for_create(new)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: Any) -> list[Cause]:
        causes = validate_object_meta(obj.get("metadata"), namespaced=False, name_rule=rdef.name_rule)
        spec = obj.get("spec") or {}
        if not spec.get("policyName"):
            causes.append(Cause("FieldValueRequired", "Required value", "spec.policyName"))
        actions = spec.get("validationActions") or []
        if not actions:
            causes.append(Cause("FieldValueRequired", "Required value", "spec.validationActions"))
        for a in actions:
            if a not in ("Deny", "Warn", "Audit"):
                causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{a}": supported values: '
                                                              f'"Audit", "Deny", "Warn"', "spec.validationActions"))
        if "Deny" in actions and "Warn" in actions:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {actions!r}: must not contain both Deny "
                                                     f"and Warn (repeating the same validation failure "
                                                     f"information in the API response and headers serves no "
                                                     f"purpose)", "spec.validationActions"))
        return causes


class _MutatingPolicyStrategy(_PolicyStrategy):
    """MutatingAdmissionPolicy (v1beta1): the ValidatingAdmissionPolicy's defaults (failurePolicy,
    matchConstraints) and the checks that matter for dispatch."""

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: Any) -> list[Cause]:
        from ._cel import CelError
        from ._cel_mutation import APPLY_CONFIGURATION, JSON_PATCH, compile_mutation

        causes = validate_object_meta(obj.get("metadata"), namespaced=False, name_rule=rdef.name_rule)
        spec = obj.get("spec") or {}
        if spec.get("reinvocationPolicy") not in ("Never", "IfNeeded"):
            causes.append(Cause("FieldValueRequired", "Required value", "spec.reinvocationPolicy")
                          if spec.get("reinvocationPolicy") is None else
                          Cause("FieldValueNotSupported", f'Unsupported value: "{spec.get("reinvocationPolicy")}": '
                                                          f'supported values: "IfNeeded", "Never"',
                                "spec.reinvocationPolicy"))
        mc = spec.get("matchConstraints")
        if not isinstance(mc, dict) or not mc.get("resourceRules"):
            causes.append(Cause("FieldValueRequired", "Required value", "spec.matchConstraints.resourceRules"))
        else:
            for i, rule in enumerate(mc.get("resourceRules") or []):
                for op in (rule.get("operations") or []) if isinstance(rule, dict) else []:
                    if op not in ("CREATE", "UPDATE", "*"):
                        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{op}": supported '
                                                                      f'values: "*", "CREATE", "UPDATE"',
                                            f"spec.matchConstraints.resourceRules[{i}].operations"))
        mutations = spec.get("mutations") or []
        if not mutations:
            causes.append(Cause("FieldValueRequired", "Required value", "spec.mutations"))
        for i, m in enumerate(mutations):
            base = f"spec.mutations[{i}]"
            pt = m.get("patchType") if isinstance(m, dict) else None
            if pt not in (JSON_PATCH, APPLY_CONFIGURATION):
                causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{pt}": supported values: '
                                                              f'"ApplyConfiguration", "JSONPatch"', f"{base}.patchType"))
                continue
            field = "jsonPatch" if pt == JSON_PATCH else "applyConfiguration"
            expr = (m.get(field) or {}).get("expression") if isinstance(m.get(field), dict) else None
            if not expr:
                causes.append(Cause("FieldValueRequired", "Required value", f"{base}.{field}.expression"))
                continue
            try:
                compile_mutation(str(expr), pt, None)
            except CelError as e:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {_quote(str(expr))}: compilation failed: {e}",
                                    f"{base}.{field}.expression"))
        causes.extend(_compile_errors({k: spec.get(k) for k in ("matchConditions", "variables")}))
        return causes


class _MutatingBindingStrategy(_BindingStrategy):
    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: Any) -> list[Cause]:
        causes = validate_object_meta(obj.get("metadata"), namespaced=False, name_rule=rdef.name_rule)
        if not (obj.get("spec") or {}).get("policyName"):
            causes.append(Cause("FieldValueRequired", "Required value", "spec.policyName"))
        return causes


ADMISSION_STRATEGIES: dict[tuple[str, str], Strategy] = {
    (GROUP, "mutatingadmissionpolicies"): _MutatingPolicyStrategy(),
    (GROUP, "mutatingadmissionpolicybindings"): _MutatingBindingStrategy(),
    (GROUP, "mutatingwebhookconfigurations"): _WebhookConfigStrategy(True),
    (GROUP, "validatingwebhookconfigurations"): _WebhookConfigStrategy(False),
    (GROUP, "validatingadmissionpolicies"): _PolicyStrategy(),
    (GROUP, "validatingadmissionpolicybindings"): _BindingStrategy(),
}


# ---- type checking (kube's plugin/policy/validating/typechecking.go) -------------------------------

#: The variables of a ValidatingAdmissionPolicy's expressions.
POLICY_VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables", "authorizer")
#: kube checks a policy against at most this many kinds.
MAX_TYPES_TO_CHECK = 10

#: (group, version, resource) -> the kinds served there, as (group, version, kind, schema); [] if none.
KindResolver = Callable[[str, str, str], list[tuple[str, str, str, Mapping[str, Any]]]]


def types_to_check(spec: Mapping[str, Any], resolve: KindResolver) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """The kinds a policy's ``matchConstraints.resourceRules`` name, as kube's ``typesToCheck``: a
    rule with a wildcard group or version is skipped, wildcard resources and subresources are left
    out, at most :data:`MAX_TYPES_TO_CHECK`, sorted by group, version and kind."""
    found: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    mc = spec.get("matchConstraints")
    for rule in (mc.get("resourceRules") or []) if isinstance(mc, Mapping) else []:
        if not isinstance(rule, Mapping):
            continue
        groups = [str(g) for g in rule.get("apiGroups") or []]
        versions = [str(v) for v in rule.get("apiVersions") or []]
        resources = sorted(str(r) for r in rule.get("resources") or [] if "*" not in str(r) and "/" not in str(r))
        if not groups or any("*" in g for g in groups) or not versions or any("*" in v for v in versions):
            continue
        for g in sorted(groups):
            for v in sorted(versions):
                for r in resources:
                    for group, version, kind, schema in resolve(g, v, r):
                        found.setdefault((group, version, kind), schema)
                        if len(found) == MAX_TYPES_TO_CHECK:
                            return [(*k, found[k]) for k in sorted(found)]
    return [(*k, found[k]) for k in sorted(found)]


def policy_type_check(spec: Mapping[str, Any], kinds: list[tuple[str, str, str, Mapping[str, Any]]],
                      params: Mapping[str, Any] | None, namespace: Mapping[str, Any] | None,
                      defs: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """``status.typeChecking.expressionWarnings`` of a policy: each validation's ``expression`` and
    ``messageExpression`` checked against every kind in ``kinds`` (``params``, ``namespace``: the
    schemas of the param kind and of Namespace). The warning is kube's: per kind with issues,
    ``"<group>/<version>, Kind=<kind>: <issues>\\n"``, joined by newlines."""
    from ._cel_types import check_expression, schema_types

    typed = []
    for group, version, kind, schema in kinds:
        schemas: dict[str, Any] = {"object": schema, "oldObject": schema}
        if params is not None:
            schemas["params"] = params
        if namespace is not None:
            schemas["namespaceObject"] = namespace
        types = schema_types(schemas, defs)
        variables = [(str(v.get("name", "")), str(v.get("expression", ""))) for v in spec.get("variables") or []
                     if isinstance(v, Mapping)]
        if variables:  # kube types ``variables.<name>`` by what each expression gives
            types = types.with_variables(variables, POLICY_VARIABLES)
        typed.append((f"{group}/{version}, Kind={kind}", types))
    warnings: list[dict[str, str]] = []
    for i, v in enumerate(spec.get("validations") or []):
        if not isinstance(v, Mapping):
            continue
        for field in ("expression", "messageExpression"):
            expr = v.get(field)
            if not isinstance(expr, str) or not expr:
                continue
            found = [f"{gvk}: {issues}\n" for gvk, types in typed
                     if (issues := check_expression(expr, POLICY_VARIABLES, types))]
            if found:
                warnings.append({"fieldRef": f"spec.validations[{i}].{field}", "warning": "\n".join(found)})
    return warnings
