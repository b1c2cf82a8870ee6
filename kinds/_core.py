"""core/v1 kinds with pod specs or defaults: Pods, PodTemplates, ReplicationControllers, Nodes,
PersistentVolumes and Claims, Endpoints, LimitRanges, ResourceQuotas (``pkg/apis/core/v1/
defaults.go``, ``pkg/registry/core/*/strategy.go``, ``pkg/apis/core/validation``). Services have
their own module (``_services``)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ._defs import ResourceDef
from ._errors import Cause
from ._podspec import (
    default_pod,
    default_pod_template,
    pod_qos_class,
    validate_pod_spec,
    validate_pod_spec_update,
    validate_pod_template,
)
from ._quantity import canonical_quantity, parse_quantity
from ._strategy import Strategy
from ._validation import (
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_required,
    field_unsupported,
    is_qualified_name,
    is_valid_label_value,
    validate_labels,
)
from ._workloads import TemplateStrategy, decode_defaults, spec_of, sub_dict, validate_nonnegative

__all__ = [
    "CORE_STRATEGIES",
    "default_limit_range",
    "default_persistent_volume",
    "default_persistent_volume_claim",
    "default_replication_controller",
]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")


def _canonical_list(value: Any) -> None:
    if not isinstance(value, dict):
        return
    for k, v in list(value.items()):
        canon = canonical_quantity(v)
        if canon is None:
            raise ValueError("quantities must match the regular expression "
                             "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        value[k] = canon


def _validate_resource_list(value: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for k, v in (value or {}).items() if isinstance(value, dict) else ():
        q = parse_quantity(v)
        if q is not None and q < 0:
            causes.append(field_invalid(f"{path}[{k}]", str(v), "must be greater than or equal to 0"))
    return causes


# ---- Pods -----------------------------------------------------------------------------------------


class PodStrategy(Strategy):
    """Pods: PodSpec defaults on every write, ``Pending`` with its QoS class on create, a spec
    that only changes where kube lets it. The initial ``Pending`` is the definition's."""

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, default_pod)
        status = obj.setdefault("status", {})
        status["qosClass"] = pod_qos_class(obj)
        if (obj.get("spec") or {}).get("schedulingGates"):
            # applySchedulingGatedCondition: a gated pod says why it is not scheduled.
            status["conditions"] = [{
                "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": None, "lastTransitionTime": (obj.get("metadata") or {}).get("creationTimestamp")}]

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        decode_defaults(new, default_pod)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        causes += validate_pod_spec(obj.get("spec"), "spec", resource_is_pod=True)
        if old is not None:
            causes += validate_pod_spec_update(obj.get("spec"), old.get("spec"), "spec")
        return causes


class PodTemplateStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, lambda o: default_pod_template(sub_dict(o, "template")))

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        self.prepare_for_create(new)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        return super().validate(obj, old, rdef) + validate_pod_template(obj.get("template"), "template")


# ---- ReplicationControllers ----------------------------------------------------------------------


def default_replication_controller(obj: dict[str, Any]) -> None:
    """``SetDefaults_ReplicationController``: the selector, and the object's labels, default to
    the template's labels; 1 replica."""
    spec = spec_of(obj)
    template = spec.get("template")
    labels = ((template.get("metadata") or {}).get("labels")) if isinstance(template, dict) else None
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if isinstance(template, dict):
        default_pod_template(template)


class ReplicationControllerStrategy(TemplateStrategy):

    def default(self, obj: dict[str, Any]) -> None:
        default_replication_controller(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = validate_nonnegative(spec, ("replicas", "minReadySeconds"))
        selector = spec.get("selector")
        if not selector:
            causes.append(field_required("spec.selector"))
        else:
            causes += validate_labels(selector, "spec.selector")
        template = spec.get("template")
        if not isinstance(template, dict):
            causes.append(field_required("spec.template"))
            return causes
        labels = (template.get("metadata") or {}).get("labels") or {}
        if isinstance(selector, dict) and selector and isinstance(labels, dict) and \
                any(labels.get(k) != v for k, v in selector.items()):
            causes.append(field_invalid("spec.template.metadata.labels", labels,
                                        "`selector` does not match template `labels`"))
        causes += validate_pod_template(template, "spec.template")
        tspec = template.get("spec") or {}
        if isinstance(tspec, dict):
            if tspec.get("restartPolicy") not in (None, "Always"):
                causes.append(field_unsupported("spec.template.spec.restartPolicy", tspec["restartPolicy"],
                                                ("Always",)))
            if tspec.get("activeDeadlineSeconds") is not None:
                causes.append(field_invalid("spec.template.spec.activeDeadlineSeconds",
                                            tspec["activeDeadlineSeconds"],
                                            "activeDeadlineSeconds in ReplicationController is not Supported"))
        return causes


# ---- storage --------------------------------------------------------------------------------------


def default_persistent_volume(obj: dict[str, Any]) -> None:
    """``SetDefaults_PersistentVolume``: Retain, Filesystem."""
    spec = spec_of(obj)
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    _canonical_list(spec.get("capacity"))


def default_persistent_volume_claim(obj: dict[str, Any]) -> None:
    """``SetDefaults_PersistentVolumeClaimSpec``: Filesystem."""
    spec = spec_of(obj)
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    res = spec.get("resources")
    if isinstance(res, dict):
        _canonical_list(res.get("requests"))
        _canonical_list(res.get("limits"))


def _validate_access_modes(spec: dict[str, Any], path: str, detail: str = "") -> list[Cause]:
    modes = spec.get("accessModes")
    if not modes:
        return [field_required(f"{path}.accessModes", detail)]
    return [field_unsupported(f"{path}.accessModes", m, ACCESS_MODES) for m in modes if m not in ACCESS_MODES]


_PV_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "nfs", "rbd", "iscsi", "cinder",
               "cephfs", "fc", "flocker", "flexVolume", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
               "photonPersistentDisk", "portworxVolume", "scaleIO", "local", "storageos", "csi")


class PersistentVolumeStrategy(TemplateStrategy):

    def default(self, obj: dict[str, Any]) -> None:
        default_persistent_volume(obj)

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"phase": "Pending"}
        created = (obj.get("metadata") or {}).get("creationTimestamp")
        if created:
            obj["status"]["lastPhaseTransitionTime"] = created

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = _validate_access_modes(spec, "spec")
        capacity = spec.get("capacity")
        if not capacity:
            causes.append(field_required("spec.capacity"))
        elif not isinstance(capacity, dict) or "storage" not in capacity or len(capacity) > 1:
            causes.append(field_unsupported("spec.capacity", capacity, ("storage",)))
        else:
            causes += _validate_resource_list(capacity, "spec.capacity")
        policy = spec.get("persistentVolumeReclaimPolicy")
        if policy not in ("Delete", "Recycle", "Retain"):
            causes.append(field_unsupported("spec.persistentVolumeReclaimPolicy", policy, ("Delete", "Recycle",
                                                                                           "Retain")))
        if spec.get("volumeMode") not in VOLUME_MODES:
            causes.append(field_unsupported("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES))
        sources = [s for s in _PV_SOURCES if spec.get(s) is not None]
        if not sources:
            causes.append(field_required("spec", "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(field_forbidden(f"spec.{extra}", "may not specify more than 1 volume type"))
        return causes


class PersistentVolumeClaimStrategy(TemplateStrategy):

    def default(self, obj: dict[str, Any]) -> None:
        default_persistent_volume_claim(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = _validate_access_modes(spec, "spec", "at least 1 access mode is required")
        requests = (spec.get("resources") or {}).get("requests") or {}
        if "storage" not in requests:
            causes.append(field_required("spec.resources[storage]"))
        else:
            q = parse_quantity(requests["storage"])
            if q is not None and q <= 0:
                causes.append(field_invalid("spec.resources[storage]", str(requests["storage"]),
                                            "must be greater than zero"))
        if spec.get("volumeMode") not in VOLUME_MODES:
            causes.append(field_unsupported("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES))
        if old is not None:
            ospec = spec_of(old)
            keep = ("resources", "volumeAttributesClassName", "volumeName")
            changed = any(spec.get(k) != ospec.get(k) for k in set(spec) | set(ospec) if k not in keep)
            limits_changed = (spec.get("resources") or {}).get("limits") != (ospec.get("resources") or {}).get("limits")
            volume_set = spec.get("volumeName") != ospec.get("volumeName") and ospec.get("volumeName")
            if changed or limits_changed or volume_set:
                causes.append(field_forbidden("spec", "spec is immutable after creation except resources.requests "
                                                      "and volumeAttributesClassName for bound claims"))
        return causes


# ---- nodes, endpoints, limits and quotas ----------------------------------------------------------


class NodeStrategy(Strategy):
    """``SetDefaults_NodeStatus``: allocatable defaults to capacity."""

    def _default(self, obj: dict[str, Any]) -> None:
        status = obj.get("status")
        if isinstance(status, dict):
            _canonical_list(status.get("capacity"))
            _canonical_list(status.get("allocatable"))
            if status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
                status["allocatable"] = dict(status["capacity"])

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, self._default)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        decode_defaults(new, self._default)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        seen: set[tuple[Any, Any]] = set()
        for i, taint in enumerate(spec_of(obj).get("taints") or []):
            if not isinstance(taint, dict):
                continue
            tp = f"spec.taints[{i}]"
            key, effect = taint.get("key"), taint.get("effect")
            if not key:
                causes.append(field_required(f"{tp}.key"))
            elif isinstance(key, str):
                causes += [field_invalid(f"{tp}.key", key, m) for m in is_qualified_name(key)]
            value = taint.get("value")
            if isinstance(value, str) and value:
                causes += [field_invalid(f"{tp}.value", value, m) for m in is_valid_label_value(value)]
            if not effect:
                causes.append(field_required(f"{tp}.effect"))
            elif effect not in _TAINT_EFFECTS:
                causes.append(field_unsupported(f"{tp}.effect", effect, _TAINT_EFFECTS))
            if (key, effect) in seen:
                causes.append(field_duplicate(tp, f"{key}:{effect}"))
            seen.add((key, effect))
        return causes


_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _default_endpoints(obj: dict[str, Any]) -> None:
    for subset in obj.get("subsets") or []:
        for p in (subset or {}).get("ports") or []:
            if isinstance(p, dict) and not p.get("protocol"):
                p["protocol"] = "TCP"


class EndpointsStrategy(Strategy):
    allow_create_on_update = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _default_endpoints(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _default_endpoints(new)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        for i, subset in enumerate(obj.get("subsets") or []):
            for j, p in enumerate((subset or {}).get("ports") or []):
                port = p.get("port") if isinstance(p, dict) else None
                if isinstance(port, int) and not 1 <= port <= 65535:
                    causes.append(field_invalid(f"subsets[{i}].ports[{j}].port", port,
                                                "must be between 1 and 65535, inclusive"))
            for kind in ("addresses", "notReadyAddresses"):
                for j, a in enumerate((subset or {}).get(kind) or []):
                    if not isinstance(a, dict):
                        continue
                    ip = a.get("ip")
                    if not ip:
                        causes.append(field_required(f"subsets[{i}].{kind}[{j}].ip"))
                    elif not _is_ip(ip):
                        causes.append(field_invalid(f"subsets[{i}].{kind}[{j}].ip", ip,
                                                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
        return causes


def default_limit_range(obj: dict[str, Any]) -> None:
    """``SetDefaults_LimitRangeItem``: a Container item's default limit falls back to its max,
    its default request to its default limit, then to its min."""
    for item in spec_of(obj).get("limits") or []:
        if not isinstance(item, dict):
            continue
        for k in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _canonical_list(item.get(k))
        if item.get("type") != "Container":
            continue
        default = item.setdefault("default", {})
        default_request = item.setdefault("defaultRequest", {})
        for k, v in (item.get("max") or {}).items():
            default.setdefault(k, v)
        for k, v in default.items():
            default_request.setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            default_request.setdefault(k, v)


_LIMIT_TYPES = ("Pod", "Container", "PersistentVolumeClaim")


class LimitRangeStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, default_limit_range)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        decode_defaults(new, default_limit_range)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        for i, item in enumerate(spec_of(obj).get("limits") or []):
            if not isinstance(item, dict):
                continue
            t = item.get("type")
            if t not in _LIMIT_TYPES:
                causes.append(field_unsupported(f"spec.limits[{i}].type", t, _LIMIT_TYPES))
            for k in ("max", "min", "default", "defaultRequest"):
                causes += _validate_resource_list(item.get(k), f"spec.limits[{i}].{k}")
            mins, maxs = item.get("min") or {}, item.get("max") or {}
            for res, lo in mins.items():
                hi = maxs.get(res)
                lo_q, hi_q = parse_quantity(lo), parse_quantity(hi)
                if lo_q is not None and hi_q is not None and lo_q > hi_q:
                    causes.append(field_invalid(f"spec.limits[{i}].min[{res}]", str(lo),
                                                f"min value {lo} is greater than max value {hi}"))
        return causes


class ResourceQuotaStrategy(TemplateStrategy):

    def default(self, obj: dict[str, Any]) -> None:
        _canonical_list(spec_of(obj).get("hard"))

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = _validate_resource_list(spec.get("hard"), "spec.hard")
        scopes = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
                  "CrossNamespacePodAffinity", "VolumeAttributesClass")
        for s in spec.get("scopes") or []:
            if s not in scopes:
                causes.append(field_unsupported("spec.scopes", s, scopes))
        return causes


CORE_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("", "pods"): PodStrategy(),
    ("", "podtemplates"): PodTemplateStrategy(),
    ("", "replicationcontrollers"): ReplicationControllerStrategy(),
    ("", "persistentvolumes"): PersistentVolumeStrategy(),
    ("", "persistentvolumeclaims"): PersistentVolumeClaimStrategy(),
    ("", "nodes"): NodeStrategy(),
    ("", "endpoints"): EndpointsStrategy(),
    ("", "limitranges"): LimitRangeStrategy(),
    ("", "resourcequotas"): ResourceQuotaStrategy(),
}
