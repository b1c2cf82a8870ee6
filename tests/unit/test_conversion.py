"""Conversions between served versions (kinds/_conversion.py): round trips lose nothing, and the
fields land where kube-apiserver puts them."""

from __future__ import annotations

import copy
import json

from kinds import BUILTIN, Registry
from kinds._conversion import convert

REG = Registry(BUILTIN)
HPA_V1 = REG.get("autoscaling", "v1", "horizontalpodautoscalers")
HPA_V2 = REG.get("autoscaling", "v2", "horizontalpodautoscalers")
EV_CORE = REG.get("", "v1", "events")
EV_NEW = REG.get("events.k8s.io", "v1", "events")


def test_storage_versions() -> None:
    assert REG.storage_of(HPA_V1) is HPA_V2 and REG.storage_of(HPA_V2) is HPA_V2
    assert REG.storage_of(EV_NEW) is EV_CORE and REG.storage_of(EV_CORE) is EV_CORE
    assert REG.by_resource("autoscaling", "horizontalpodautoscalers") is HPA_V2  # preferred: v2
    # Every definition with a storage version names a served one of the same plural.
    for d in BUILTIN:
        if d.storage:
            assert REG.get(*d.storage, d.plural) is not None


def hpa_v2(**status: object) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "namespace": "default", "resourceVersion": "7"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 10,
                     "metrics": [
                         {"type": "Resource", "resource": {"name": "cpu", "target": {
                             "type": "Utilization", "averageUtilization": 50}}},
                         {"type": "Resource", "resource": {"name": "memory", "target": {
                             "type": "AverageValue", "averageValue": "100Mi"}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, **status}}


def test_hpa_v2_to_v1_and_back() -> None:
    v2 = hpa_v2(currentMetrics=[{"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": 40, "averageValue": "200m"}}}],
        conditions=[{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}])
    before = copy.deepcopy(v2)
    v1 = convert(v2, HPA_V1)
    assert v2 == before  # the input is not changed
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"] == {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                          "minReplicas": 1, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50}
    assert v1["status"] == {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 40}
    ann = v1["metadata"]["annotations"]
    assert json.loads(ann["autoscaling.alpha.kubernetes.io/metrics"]) == [before["spec"]["metrics"][1]]
    assert json.loads(ann["autoscaling.alpha.kubernetes.io/behavior"]) == before["spec"]["behavior"]
    assert json.loads(ann["autoscaling.alpha.kubernetes.io/conditions"]) == before["status"]["conditions"]
    back = convert(v1, HPA_V2)
    # Only the CPU current metric's averageValue has no place in v1 (as in kube).
    before["status"]["currentMetrics"][0]["resource"]["current"].pop("averageValue")
    assert back == before


def test_hpa_v1_to_v2_and_back() -> None:
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
          "metadata": {"name": "h", "annotations": {"team": "a"}},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                   "targetCPUUtilizationPercentage": 80},
          "status": {"currentReplicas": 0, "desiredReplicas": 0}}
    v2 = convert(v1, HPA_V2)
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert "targetCPUUtilizationPercentage" not in v2["spec"]
    assert v2["metadata"]["annotations"] == {"team": "a"}
    assert v2["status"] == {"desiredReplicas": 0}
    assert convert(v2, HPA_V1) == v1
    # Without a CPU target there are no metrics in v2 either.
    bare = copy.deepcopy(v1)
    del bare["spec"]["targetCPUUtilizationPercentage"]
    assert "metrics" not in convert(bare, HPA_V2)["spec"]
    assert convert(convert(bare, HPA_V2), HPA_V1) == bare


def test_event_core_and_events_k8s_io() -> None:
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started",
            "message": "Started container", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z", "count": 3,
            "type": "Normal", "eventTime": None, "reportingComponent": "kubelet", "reportingInstance": "n1"}
    new = convert(core, EV_NEW)
    assert new["apiVersion"] == "events.k8s.io/v1"
    assert new["regarding"] == core["involvedObject"] and new["note"] == "Started container"
    assert new["deprecatedSource"] == core["source"] and new["deprecatedCount"] == 3
    assert new["deprecatedFirstTimestamp"] == core["firstTimestamp"]
    assert new["reportingController"] == "kubelet" and new["reportingInstance"] == "n1"
    assert not {"involvedObject", "message", "source", "count", "reportingComponent"} & set(new)
    assert convert(new, EV_CORE) == core
    series = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "s"},
              "eventTime": "2024-01-01T00:00:00.000000Z", "series": {"count": 2,
                                                                     "lastObservedTime": "2024-01-01T00:00:01.000000Z"},
              "reportingController": "c", "reportingInstance": "i", "action": "Pull", "reason": "R",
              "regarding": {"kind": "Node", "name": "n"}, "note": "n", "type": "Warning"}
    assert convert(convert(series, EV_CORE), EV_NEW) == series
