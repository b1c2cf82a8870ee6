"""The generic subresource semantics (kinds/_subresources.py): status/spec split, generation,
Scale, binding, the PodDisruptionBudget arithmetic of eviction."""

from __future__ import annotations

import pytest

from kinds import Registry
from kinds._errors import Conflict, Invalid, TooManyRequests
from kinds._subresources import (
    apply_scale,
    bind,
    can_ignore_pdb,
    decrement_budget,
    format_label_selector,
    prepare_create,
    prepare_update,
    to_scale,
)

REG = Registry()
DEPLOY = REG.get("apps", "v1", "deployments")
PODS = REG.get("", "v1", "pods")
NODES = REG.get("", "v1", "nodes")
RC = REG.get("", "v1", "replicationcontrollers")
CM = REG.get("", "v1", "configmaps")


def dep(**over: object) -> dict:
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "d", "labels": {"a": "1"}, "annotations": {"n": "1"}, "generation": 4},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "1"}}}, "status": {"replicas": 1}}
    d.update(over)
    return d


def test_create_resets_status_and_sets_generation() -> None:
    obj = dep()
    prepare_create(DEPLOY, obj)
    assert obj["status"] == {} and obj["metadata"]["generation"] == 1
    pod = {"metadata": {}, "spec": {}, "status": {"phase": "Running", "podIP": "1.2.3.4"}}
    prepare_create(PODS, pod)
    assert pod["status"] == {"phase": "Pending"} and pod["metadata"]["generation"] == 1
    node = {"metadata": {}, "status": {"capacity": {"cpu": "4"}}}
    prepare_create(NODES, node)
    assert node["status"] == {"capacity": {"cpu": "4"}} and "generation" not in node["metadata"]
    rc = {"metadata": {}, "spec": {}}
    prepare_create(RC, rc)
    assert rc["status"] == {"replicas": 0}


def test_main_write_keeps_status_and_counts_generation() -> None:
    old, new = dep(), dep(status={"replicas": 9})
    prepare_update(DEPLOY, "", new, old)
    assert new["status"] == {"replicas": 1} and new["metadata"]["generation"] == 4
    new = dep(spec={"replicas": 2, "selector": {"matchLabels": {"a": "1"}}})
    prepare_update(DEPLOY, "", new, old)
    assert new["metadata"]["generation"] == 5
    new = dep()
    new["metadata"] = {**new["metadata"], "annotations": {"n": "2"}}
    prepare_update(DEPLOY, "", new, old)
    assert new["metadata"]["generation"] == 5  # a Deployment's annotations count
    new = dep()
    new["metadata"] = {**new["metadata"], "labels": {"b": "2"}}
    prepare_update(DEPLOY, "", new, old)
    assert new["metadata"]["generation"] == 4  # labels do not


def test_status_write_keeps_everything_but_status() -> None:
    old = dep()
    new = dep(spec={"replicas": 5}, status={"replicas": 3}, extra="x")
    new["metadata"] = {**new["metadata"], "labels": {"changed": "1"}, "annotations": {"n": "2"}}
    prepare_update(DEPLOY, "status", new, old)
    assert new["spec"] == old["spec"] and new["status"] == {"replicas": 3} and "extra" not in new
    assert new["metadata"]["labels"] == {"a": "1"}  # apps kinds: labels reset
    assert new["metadata"]["annotations"] == {"n": "2"}  # annotations go through
    assert new["metadata"]["generation"] == 4
    pod_old = {"metadata": {"ownerReferences": [{"name": "rs"}], "generation": 1}, "spec": {"nodeName": "n"},
               "status": {"phase": "Pending"}}
    pod_new = {"metadata": {"ownerReferences": [], "generation": 1}, "spec": {}, "status": {"phase": "Running"}}
    prepare_update(PODS, "status", pod_new, pod_old)
    assert pod_new == {"metadata": {"ownerReferences": [{"name": "rs"}], "generation": 1},
                       "spec": {"nodeName": "n"}, "status": {"phase": "Running"}}


def test_kinds_without_status_subresource_are_untouched() -> None:
    old = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    new = {"metadata": {"name": "c"}, "data": {"a": "2"}, "status": {"x": 1}}
    prepare_update(CM, "", new, old)
    assert new == {"metadata": {"name": "c"}, "data": {"a": "2"}, "status": {"x": 1}}


@pytest.mark.parametrize("selector,text", [
    ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
    ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x", "x"]},
                           {"key": "e", "operator": "Exists"}, {"key": "n", "operator": "DoesNotExist"},
                           {"key": "o", "operator": "NotIn", "values": ["q"]}]}, "e,!n,o notin (q),t in (x,y)"),
    ({}, ""),
    (None, ""),
])
def test_format_label_selector(selector: object, text: str) -> None:
    assert format_label_selector(selector) == text


def test_scale_round_trip() -> None:
    obj = dep()
    obj["metadata"].update(namespace="default", uid="u", creationTimestamp="2024-01-01T00:00:00Z")
    scale = to_scale(DEPLOY, obj, "42")
    assert scale == {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": "d", "namespace": "default", "uid": "u", "resourceVersion": "42",
                                  "creationTimestamp": "2024-01-01T00:00:00Z"},
                     "spec": {"replicas": 1}, "status": {"replicas": 1, "selector": "a=1"}}
    scale["spec"]["replicas"] = 7
    assert apply_scale(DEPLOY, obj, scale)["spec"]["replicas"] == 7 and obj["spec"]["replicas"] == 1
    with pytest.raises(Invalid) as e:
        apply_scale(DEPLOY, obj, {"spec": {"replicas": -2}})
    assert e.value.causes[0].field == "spec.replicas"
    rc = {"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": {"z": "1", "a": "b"}}}
    assert to_scale(RC, rc, "1")["status"] == {"replicas": 0, "selector": "a=b,z=1"}


def test_binding_sets_node_once() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {}}
    bound = bind(pod, {"metadata": {"name": "p", "annotations": {"x": "y"}}, "target": {"kind": "Node",
                                                                                        "name": "n1"}}, "p")
    assert bound["spec"]["nodeName"] == "n1" and bound["metadata"]["annotations"] == {"x": "y"}
    with pytest.raises(Conflict) as e:
        bind(bound, {"metadata": {"name": "p"}, "target": {"name": "n2"}}, "p")
    assert e.value.message == 'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to ' \
                              'node "n1"'
    with pytest.raises(Invalid):
        bind(pod, {"metadata": {"name": "p"}, "target": {}}, "p")


def test_disruption_budget_arithmetic() -> None:
    pdb = {"metadata": {"name": "b", "generation": 1}, "status": {
        "observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2}}
    after = decrement_budget(pdb, "p1", "2024-01-01T00:00:00Z")
    assert after["status"]["disruptionsAllowed"] == 0
    assert after["status"]["disruptedPods"] == {"p1": "2024-01-01T00:00:00Z"}
    assert after["status"]["conditions"][0]["type"] == "DisruptionAllowed"
    assert pdb["status"]["disruptionsAllowed"] == 1
    with pytest.raises(TooManyRequests) as e:
        decrement_budget(after, "p2", "2024-01-01T00:00:00Z")
    assert e.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert e.value.causes[0].reason == "DisruptionBudget"
    stale = {"metadata": {"name": "b", "generation": 2}, "status": {"observedGeneration": 1,
                                                                    "disruptionsAllowed": 5}}
    with pytest.raises(TooManyRequests) as e:
        decrement_budget(stale, "p", "t")
    assert "still being processed" in e.value.message
    assert can_ignore_pdb({"metadata": {}, "status": {"phase": "Pending"}})
    assert not can_ignore_pdb({"metadata": {}, "status": {"phase": "Running"}})


def test_selectable_field_values() -> None:
    from kinds import field_value

    pod = {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert field_value(pod, "spec.nodeName") == "n1" and field_value(pod, "spec.hostNetwork") == "false"
    assert field_value({"spec": {"hostNetwork": True}}, "spec.hostNetwork") == "true"
    assert field_value({}, "status.successful") == "0"
    assert field_value({"status": {"succeeded": 3}}, "status.successful") == "3"
    assert field_value({"status": {}}, "status.replicas") == "0"
    assert field_value({}, "spec.unschedulable") == "false"
    assert field_value({"spec": {}}, "status.podIP") == ""
