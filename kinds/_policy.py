"""Small kinds with a little defaulting or validation: PriorityClasses (scheduling.k8s.io),
PodDisruptionBudgets (policy), Ingresses, IngressClasses and NetworkPolicies (networking.k8s.io),
HorizontalPodAutoscalers (autoscaling), EndpointSlices (discovery.k8s.io), StorageClasses and
CSIDrivers (storage.k8s.io)."""

from __future__ import annotations

from typing import Any

from ._defs import ResourceDef
from ._errors import Cause
from ._labelselector import validate_label_selector
from ._strategy import Strategy
from ._validation import field_forbidden, field_invalid, field_required, field_unsupported
from ._workloads import TemplateStrategy, decode_defaults, spec_of, validate_int_or_percent

__all__ = [
    "OTHER_STRATEGIES",
    "default_csi_driver",
    "default_hpa",
    "default_network_policy",
    "default_priority_class",
    "default_storage_class",
]

HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
_SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}


def default_priority_class(obj: dict[str, Any]) -> None:
    """``SetDefaults_PriorityClass``: PreemptLowerPriority."""
    if not obj.get("preemptionPolicy"):
        obj["preemptionPolicy"] = "PreemptLowerPriority"


class PriorityClassStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        default_priority_class(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        default_priority_class(new)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        name = (obj.get("metadata") or {}).get("name") or ""
        value = obj.get("value")
        if name in _SYSTEM_PRIORITY_CLASSES:
            if value != _SYSTEM_PRIORITY_CLASSES[name]:
                causes.append(field_forbidden("metadata.name", f"{name} is a system priority class and cannot be "
                                                               f"created with a different value"))
        elif name.startswith("system-"):
            causes.append(field_invalid("metadata.name", name,
                                        "priority class names with 'system-' prefix are reserved"))
        elif isinstance(value, int) and value > HIGHEST_USER_DEFINABLE_PRIORITY:
            causes.append(field_forbidden("value", f"maximum allowed value of a user defined priority is "
                                                   f"{HIGHEST_USER_DEFINABLE_PRIORITY}"))
        pp = obj.get("preemptionPolicy")
        if pp not in ("PreemptLowerPriority", "Never"):
            causes.append(field_unsupported("preemptionPolicy", pp, ("Never", "PreemptLowerPriority")))
        if old is not None:
            if obj.get("value") != old.get("value"):
                causes.append(field_forbidden("value", "may not be changed in an update."))
            if obj.get("preemptionPolicy") != old.get("preemptionPolicy"):
                causes.append(field_invalid("preemptionPolicy", pp, "field is immutable"))
        return causes


class PodDisruptionBudgetStrategy(TemplateStrategy):
    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes: list[Cause] = []
        mi, mu = spec.get("minAvailable"), spec.get("maxUnavailable")
        if mi is not None and mu is not None:
            causes.append(field_invalid("spec", "", "minAvailable and maxUnavailable cannot be both set"))
        if mi is not None:
            causes += validate_int_or_percent(mi, "spec.minAvailable")
        if mu is not None:
            causes += validate_int_or_percent(mu, "spec.maxUnavailable")
        causes += validate_label_selector(spec.get("selector"), "spec.selector")
        upp = spec.get("unhealthyPodEvictionPolicy")
        if upp is not None and upp not in ("AlwaysAllow", "IfHealthyBudget"):
            causes.append(field_unsupported("spec.unhealthyPodEvictionPolicy", upp, ("AlwaysAllow", "IfHealthyBudget")))
        return causes

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        super().prepare_for_create(obj)
        # PodDisruptionBudgetStatus writes its counters even when zero.
        obj["status"] = {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}


_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")


class IngressStrategy(TemplateStrategy):

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes: list[Cause] = []
        if not spec.get("rules") and not spec.get("defaultBackend"):
            causes.append(field_invalid("spec.rules", spec.get("rules") or [],
                                        "either `defaultBackend` or `rules` must be specified"))
        for i, rule in enumerate(spec.get("rules") or []):
            http = (rule or {}).get("http")
            if not isinstance(http, dict):
                continue
            if not http.get("paths"):
                causes.append(field_required(f"spec.rules[{i}].http.paths"))
            for j, p in enumerate(http.get("paths") or []):
                if not isinstance(p, dict):
                    continue
                pp = f"spec.rules[{i}].http.paths[{j}]"
                pt = p.get("pathType")
                if not pt:
                    causes.append(field_required(f"{pp}.pathType", "pathType must be specified"))
                elif pt not in _PATH_TYPES:
                    causes.append(field_unsupported(f"{pp}.pathType", pt, _PATH_TYPES))
                path = p.get("path")
                if pt in ("Exact", "Prefix") and not (isinstance(path, str) and path.startswith("/")):
                    causes.append(field_invalid(f"{pp}.path", path, "must be an absolute path"))
                backend = p.get("backend")
                if not isinstance(backend, dict) or (not backend.get("service") and not backend.get("resource")):
                    causes.append(field_invalid(f"{pp}.backend", "", "one backend must be specified"))
        return causes


def _scaling_rules(given: Any, default: dict[str, Any]) -> dict[str, Any]:
    out = dict(default)
    if isinstance(given, dict):
        out.update({k: v for k, v in given.items() if v is not None})
    return out


_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
# No stabilization window: the controller's --horizontal-pod-autoscaler-downscale-stabilization
# applies when it is unset.
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_hpa(obj: dict[str, Any]) -> None:
    """``SetDefaults_HorizontalPodAutoscaler``: minReplicas 1; in autoscaling/v2 an empty metric
    list means 80% CPU utilisation, and a ``behavior`` gets its unset rules filled in."""
    spec = spec_of(obj)
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not str(obj.get("apiVersion", "")).endswith("/v2"):
        return
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _scaling_rules(behavior.get("scaleUp"), _SCALE_UP)
        behavior["scaleDown"] = _scaling_rules(behavior.get("scaleDown"), _SCALE_DOWN)


class HorizontalPodAutoscalerStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_hpa(obj)

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        super().prepare_for_create(obj)
        # Go writes these counters even when zero: both in v1, desiredReplicas alone in v2.
        v2 = str(obj.get("apiVersion", "")).endswith("/v2")
        obj["status"] = {"desiredReplicas": 0} if v2 else {"currentReplicas": 0, "desiredReplicas": 0}

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes: list[Cause] = []
        ref = spec.get("scaleTargetRef")
        if not isinstance(ref, dict):
            causes.append(field_required("spec.scaleTargetRef"))
        else:
            for k in ("kind", "name"):
                if not ref.get(k):
                    causes.append(field_required(f"spec.scaleTargetRef.{k}"))
        mn, mx = spec.get("minReplicas"), spec.get("maxReplicas")
        if isinstance(mn, int) and mn < 1:
            causes.append(field_invalid("spec.minReplicas", mn, "must be greater than or equal to 1"))
        if not isinstance(mx, int) or mx < 1:
            causes.append(field_invalid("spec.maxReplicas", mx, "must be greater than 0"))
        elif isinstance(mn, int) and mn > mx:
            causes.append(field_invalid("spec.minReplicas", mn, "must be less than or equal to `maxReplicas`"))
        return causes


_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")


def _default_endpoint_slice(obj: dict[str, Any]) -> None:
    for p in obj.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("name", "")
            if not p.get("protocol"):
                p["protocol"] = "TCP"


class EndpointSliceStrategy(Strategy):

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, _default_endpoint_slice)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        decode_defaults(new, _default_endpoint_slice)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        at = obj.get("addressType")
        if not at:
            causes.append(field_required("addressType"))
        elif at not in _ADDRESS_TYPES:
            causes.append(field_unsupported("addressType", at, _ADDRESS_TYPES))
        elif old is not None and at != old.get("addressType"):
            causes.append(field_invalid("addressType", at, "field is immutable"))
        for i, ep in enumerate(obj.get("endpoints") or []):
            if isinstance(ep, dict) and not ep.get("addresses"):
                causes.append(field_required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
        return causes


def default_storage_class(obj: dict[str, Any]) -> None:
    """``SetDefaults_StorageClass``: Delete, Immediate."""
    if obj.get("reclaimPolicy") is None:
        obj["reclaimPolicy"] = "Delete"
    if obj.get("volumeBindingMode") is None:
        obj["volumeBindingMode"] = "Immediate"


def default_csi_driver(obj: dict[str, Any]) -> None:
    """``SetDefaults_CSIDriver`` (1.33, its gates GA): attach required, no pod info, no capacity
    tracking, fsGroup for RWO with an fsType, persistent volumes, no republish."""
    spec = spec_of(obj)
    for k, v in (("attachRequired", True), ("podInfoOnMount", False), ("storageCapacity", False),
                 ("fsGroupPolicy", "ReadWriteOnceWithFSType"), ("requiresRepublish", False)):
        if spec.get(k) is None:
            spec[k] = v
    if not spec.get("volumeLifecycleModes"):
        spec["volumeLifecycleModes"] = ["Persistent"]


def default_network_policy(obj: dict[str, Any]) -> None:
    """``SetDefaults_NetworkPolicy``: policyTypes [Ingress] (and Egress with egress rules);
    ports' protocol TCP."""
    spec = spec_of(obj)
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for p in (rule or {}).get("ports") or [] if isinstance(rule, dict) else []:
                if isinstance(p, dict) and p.get("protocol") is None:
                    p["protocol"] = "TCP"


def _default_ingress_class(obj: dict[str, Any]) -> None:
    params = spec_of(obj).get("parameters")
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


class DefaultingStrategy(Strategy):
    """A kind whose only special behaviour is a ``SetDefaults_*`` on every write."""

    def __init__(self, default: Any) -> None:
        self._default = default

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, self._default)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        decode_defaults(new, self._default)


class StorageClassStrategy(DefaultingStrategy):
    def __init__(self) -> None:
        super().__init__(default_storage_class)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        if not obj.get("provisioner"):
            causes.append(field_required("provisioner"))
        rp = obj.get("reclaimPolicy")
        if rp not in ("Delete", "Retain"):
            causes.append(field_unsupported("reclaimPolicy", rp, ("Delete", "Retain")))
        vbm = obj.get("volumeBindingMode")
        if vbm not in ("Immediate", "WaitForFirstConsumer"):
            causes.append(field_unsupported("volumeBindingMode", vbm, ("Immediate", "WaitForFirstConsumer")))
        if old is not None:
            for f in ("parameters", "provisioner", "reclaimPolicy"):
                if obj.get(f) != old.get(f):
                    causes.append(field_forbidden(f, f"updates to {f} are forbidden."))
            if vbm != old.get("volumeBindingMode"):
                causes.append(field_invalid("volumeBindingMode", vbm, "field is immutable"))
        return causes


OTHER_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("storage.k8s.io", "storageclasses"): StorageClassStrategy(),
    ("storage.k8s.io", "csidrivers"): DefaultingStrategy(default_csi_driver),
    ("networking.k8s.io", "networkpolicies"): DefaultingStrategy(default_network_policy),
    ("networking.k8s.io", "ingressclasses"): DefaultingStrategy(_default_ingress_class),
    ("scheduling.k8s.io", "priorityclasses"): PriorityClassStrategy(),
    ("policy", "poddisruptionbudgets"): PodDisruptionBudgetStrategy(),
    ("networking.k8s.io", "ingresses"): IngressStrategy(),
    ("autoscaling", "horizontalpodautoscalers"): HorizontalPodAutoscalerStrategy(),
    ("discovery.k8s.io", "endpointslices"): EndpointSliceStrategy(),
}
