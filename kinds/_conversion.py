"""Conversion between the served versions of a kind: pure functions, registered per kind.

A kind is stored in one version (its definition without ``storage``); a definition with
``storage = (group, version)`` is served by converting to and from that one, on every write, read
and watch event. Conversions are registered by (from apiVersion, to apiVersion, kind); a pair with
no conversion is the identity with the new apiVersion (same schema under another group-version).

Registered here, as kube-apiserver converts them:

- ``autoscaling/v2`` <-> ``autoscaling/v1`` HorizontalPodAutoscaler: v1 has one metric, the CPU
  utilization target; every other v2 field travels in v1 as the JSON annotations kube uses
  (``autoscaling.alpha.kubernetes.io/{metrics,current-metrics,conditions,behavior}``), so v2 -> v1
  -> v2 loses nothing;
- ``v1`` <-> ``events.k8s.io/v1`` Event (kube's ``events/v1`` conversion: involvedObject/regarding,
  message/note, source/deprecatedSource, firstTimestamp/deprecatedFirstTimestamp, ...).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from ._defs import ResourceDef

Converter = Callable[[dict[str, Any]], dict[str, Any]]
_CONVERSIONS: dict[tuple[str, str, str], Converter] = {}


def register(from_api_version: str, to_api_version: str, kind: str) -> Callable[[Converter], Converter]:
    def add(fn: Converter) -> Converter:
        _CONVERSIONS[(from_api_version, to_api_version, kind)] = fn
        return fn

    return add


def convert(obj: dict[str, Any], to: ResourceDef) -> dict[str, Any]:
    """``obj`` (of any served version of ``to``'s kind) in ``to``'s version; ``obj`` is not changed."""
    src = obj.get("apiVersion") or to.api_version
    if src == to.api_version:
        return obj
    fn = _CONVERSIONS.get((src, to.api_version, to.kind))
    out = fn(copy.deepcopy(obj)) if fn is not None else copy.deepcopy(obj)
    out["apiVersion"], out["kind"] = to.api_version, to.kind
    return out


# ---- HorizontalPodAutoscaler ------------------------------------------------------------------------

_METRICS = "autoscaling.alpha.kubernetes.io/metrics"
_CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
_CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
_BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"


def _is_cpu_utilization(m: Any, part: str) -> bool:
    if not isinstance(m, dict) or m.get("type") != "Resource":
        return False
    res = m.get("resource") or {}
    value = res.get(part) or {}
    return res.get("name") == "cpu" and (part == "current" or value.get("type") == "Utilization") and \
        value.get("averageUtilization") is not None


def _annotate(meta: dict[str, Any], key: str, value: Any) -> None:
    if value:
        meta.setdefault("annotations", {})[key] = json.dumps(value, separators=(",", ":"))


def _take(meta: dict[str, Any], key: str) -> Any:
    annotations = meta.get("annotations") or {}
    raw = annotations.pop(key, None)
    if not annotations:
        meta.pop("annotations", None)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


@register("autoscaling/v2", "autoscaling/v1", "HorizontalPodAutoscaler")
def hpa_v2_to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    spec = obj.get("spec") or {}
    metrics = spec.pop("metrics", None) or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m, "target")), None)
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    _annotate(meta, _METRICS, [m for m in metrics if m is not cpu])
    _annotate(meta, _BEHAVIOR, spec.pop("behavior", None))
    status = obj.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        cpu_now = next((m for m in current if _is_cpu_utilization(m, "current")), None)
        if cpu_now is not None:
            status["currentCPUUtilizationPercentage"] = cpu_now["resource"]["current"]["averageUtilization"]
        _annotate(meta, _CURRENT_METRICS, [m for m in current if m is not cpu_now])
        _annotate(meta, _CONDITIONS, status.pop("conditions", None))
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)
    return obj


@register("autoscaling/v1", "autoscaling/v2", "HorizontalPodAutoscaler")
def hpa_v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    target = spec.pop("targetCPUUtilizationPercentage", None)
    metrics = []
    if target is not None:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": target}}})
    metrics += _take(meta, _METRICS) or []
    if metrics:
        spec["metrics"] = metrics
    behavior = _take(meta, _BEHAVIOR)
    if behavior:
        spec["behavior"] = behavior
    current_metrics = _take(meta, _CURRENT_METRICS) or []
    conditions = _take(meta, _CONDITIONS)
    status = obj.get("status")
    if isinstance(status, dict):
        cpu_now = status.pop("currentCPUUtilizationPercentage", None)
        current = []
        if cpu_now is not None:
            current.append({"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": cpu_now}}})
        current += current_metrics
        if current:
            status["currentMetrics"] = current
        if conditions:
            status["conditions"] = conditions
        if not status.get("currentReplicas"):
            status.pop("currentReplicas", None)  # omitempty in v2
    return obj


# ---- Event ----------------------------------------------------------------------------------------------

# core/v1 field -> events.k8s.io/v1 field (kube's events/v1 conversion).
_EVENT_FIELDS = (
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)


@register("v1", "events.k8s.io/v1", "Event")
def event_core_to_events(obj: dict[str, Any]) -> dict[str, Any]:
    return _rename(obj, {core: events for core, events in _EVENT_FIELDS})


@register("events.k8s.io/v1", "v1", "Event")
def event_events_to_core(obj: dict[str, Any]) -> dict[str, Any]:
    return _rename(obj, {events: core for core, events in _EVENT_FIELDS})


def _rename(obj: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The fields renamed, in their order (a field already in the target's name is dropped)."""
    out = {}
    for k, v in obj.items():
        if k in names:
            out[names[k]] = v
        elif k not in names.values():
            out[k] = v
    return out
