"""The RBAC kinds' defaulting and validation, as kube's ``pkg/apis/rbac/v1/defaults.go`` and
``pkg/apis/rbac/validation/validation.go``: rules need verbs and either resources with API groups
or non-resource URLs (cluster roles only); a binding's roleRef is a Role or ClusterRole of
rbac.authorization.k8s.io and never changes; subjects are Users, Groups or ServiceAccounts."""

from __future__ import annotations

import json
from typing import Any

from ._defs import ResourceDef
from ._errors import Cause
from ._strategy import Strategy

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _go(values: Any) -> str:
    """A value as apimachinery's field errors print it (``%#v`` of a []string)."""
    if isinstance(values, list):
        return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"
    return json.dumps(values)


def _required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}" if detail else "Required value", field)


def _not_supported(field: str, value: Any, supported: tuple[str, ...]) -> Cause:
    return Cause("FieldValueNotSupported", f"Unsupported value: {json.dumps(value)}: supported values: "
                                           + ", ".join(json.dumps(s) for s in supported), field)


def validate_rules(rules: Any, *, namespaced: bool, path: str = "rules") -> list[Cause]:
    """``ValidatePolicyRule`` for each rule."""
    causes: list[Cause] = []
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict):
            continue
        at = f"{path}[{i}]"
        if not rule.get("verbs"):
            causes.append(_required(f"{at}.verbs", "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {_go(urls)}: namespaced rules cannot apply "
                                                         "to non-resource URLs", f"{at}.nonResourceURLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {_go(urls)}: rules cannot apply to both "
                                                         "regular resources and non-resource URLs",
                                    f"{at}.nonResourceURLs"))
            continue
        if not rule.get("apiGroups"):
            causes.append(_required(f"{at}.apiGroups", "resource rules must supply at least one api group"))
        if not rule.get("resources"):
            causes.append(_required(f"{at}.resources", "resource rules must supply at least one resource"))
    return causes


class RoleStrategy(Strategy):
    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        causes += validate_rules(obj.get("rules"), namespaced=rdef.namespaced)
        agg = obj.get("aggregationRule")
        if isinstance(agg, dict) and not agg.get("clusterRoleSelectors"):
            causes.append(_required("aggregationRule.clusterRoleSelectors",
                                    "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        return causes


def _default_binding(obj: dict[str, Any]) -> None:
    """``SetDefaults_RoleBinding`` / ``_ClusterRoleBinding`` / ``_Subject``: empty API groups."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


class BindingStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _default_binding(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _default_binding(new)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
        kinds = ("Role", "ClusterRole") if rdef.namespaced else ("ClusterRole",)
        if ref.get("apiGroup") != GROUP:
            causes.append(_not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (GROUP,)))
        if ref.get("kind") not in kinds:
            causes.append(_not_supported("roleRef.kind", ref.get("kind") or "", kinds))
        if not ref.get("name"):
            causes.append(_required("roleRef.name"))
        for i, s in enumerate(obj.get("subjects") or []):
            if not isinstance(s, dict):
                continue
            at = f"subjects[{i}]"
            if not s.get("name"):
                causes.append(_required(f"{at}.name"))
            kind = s.get("kind")
            if kind == "ServiceAccount":
                if s.get("apiGroup"):
                    causes.append(_not_supported(f"{at}.apiGroup", s["apiGroup"], ("",)))
                if not rdef.namespaced and not s.get("namespace"):
                    causes.append(_required(f"{at}.namespace"))
            elif kind in ("User", "Group"):
                if s.get("apiGroup") != GROUP:
                    causes.append(_not_supported(f"{at}.apiGroup", s.get("apiGroup") or "", (GROUP,)))
            else:
                causes.append(_not_supported(f"{at}.kind", kind or "", SUBJECT_KINDS))
        if old is not None:
            old_ref = old.get("roleRef") if isinstance(old.get("roleRef"), dict) else {}
            if {k: old_ref.get(k) or "" for k in ("apiGroup", "kind", "name")} != {
                    k: ref.get(k) or "" for k in ("apiGroup", "kind", "name")}:
                value = (f'rbac.RoleRef{{APIGroup:{json.dumps(ref.get("apiGroup") or "")}, Kind:'
                         f'{json.dumps(ref.get("kind") or "")}, Name:{json.dumps(ref.get("name") or "")}}}')
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: cannot change roleRef", "roleRef"))
        return causes


RBAC_STRATEGIES: dict[tuple[str, str], Strategy] = {
    (GROUP, "roles"): RoleStrategy(),
    (GROUP, "clusterroles"): RoleStrategy(),
    (GROUP, "rolebindings"): BindingStrategy(),
    (GROUP, "clusterrolebindings"): BindingStrategy(),
}
