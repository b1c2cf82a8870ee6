"""bench's request bodies: templates cut at their markers, the ConfigMap and Pod loads, the Pod a
real server would accept (kinds' defaulting and validation)."""

from __future__ import annotations

import copy
import json

from bench._util import (
    NAME,
    POD_REV_ANNOTATION,
    RV,
    TIME,
    cm_body,
    cm_object,
    cm_target,
    fill_body,
    pod_object,
    pod_target,
    split_body,
)
from bench._wrk import lua_body
from kinds import Registry, ResourceDef
from kinds import _subresources as subresources
from kinds._strategy import strategy_for

PODS: ResourceDef = Registry().get("", "v1", "pods")  # type: ignore[assignment]


def test_split_and_fill_round_trip_every_marker_in_order() -> None:
    tmpl = {"a": NAME, "b": {"c": RV, "d": [1, TIME]}, "e": RV}
    parts, slots = split_body(tmpl)
    assert slots == (NAME, RV, TIME, RV) and len(parts) == len(slots) + 1
    body = fill_body(parts, slots, {NAME: b"x-1", RV: b"42", TIME: b"1.5"})
    assert json.loads(body) == {"a": "x-1", "b": {"c": "42", "d": [1, "1.5"]}, "e": "42"}


def test_configmap_bodies_keep_their_size_and_slots() -> None:
    for size in (512, 1024, 2048):
        body = cm_body("b1", "cm-7", size)
        assert abs(len(body) - size) < 64, (size, len(body))
        obj = json.loads(body)
        assert obj["metadata"] == {"name": "cm-7", "namespace": "b1", "labels": {"app": "bench", "tier": "load"}}
    assert split_body(cm_object("b1", with_rv=True))[1] == (NAME, RV, RV)
    assert split_body(cm_object("b1", with_time=True))[1] == (NAME, TIME)
    updated = json.loads(cm_body("b3", "u-1", 1024, rv=17))
    assert updated["metadata"]["resourceVersion"] == "17" and updated["data"]["rev"] == "17"
    t = cm_target("b1")
    assert t["collection"] == "/api/v1/namespaces/b1/configmaps"
    assert split_body(t["create"])[1] == (NAME,) and split_body(t["update"])[1] == (NAME, RV, RV)


def _filled_pod(name: str = "web-7d9f8c6b5d-x2k4p") -> dict:
    parts, slots = split_body(pod_object("b1p"))
    return json.loads(fill_body(parts, slots, {NAME: name.encode()}))


def test_pod_body_is_about_3kb_and_passes_kube_defaulting_and_validation() -> None:
    parts, slots = split_body(pod_object("b1p"))
    assert slots == (NAME,)
    size = len(fill_body(parts, slots, {NAME: b"p-0-1"}))
    assert 2800 <= size <= 3600, size
    pod = _filled_pod()
    assert len(pod["spec"]["containers"]) == 2 and len(pod["spec"]["initContainers"]) == 1
    subresources.prepare_create(PODS, pod)
    strategy_for(PODS).prepare_for_create(pod)
    assert strategy_for(PODS).validate(pod, None, PODS) == []
    spec = pod["spec"]  # defaulted as kube defaults it
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert spec["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert pod["status"]["qosClass"] == "Burstable"


def test_pod_update_template_is_a_read_modify_write_of_the_stored_pod() -> None:
    stored = _filled_pod("gp-0")
    subresources.prepare_create(PODS, stored)
    strategy_for(PODS).prepare_for_create(stored)
    stored["metadata"].update(uid="u-1", resourceVersion="9", creationTimestamp="2026-11-29T00:00:00Z")
    t = pod_target("b3p", stored)
    assert t["collection"] == "/api/v1/namespaces/b3p/pods"
    parts, slots = split_body(t["update"])
    assert slots == (NAME, RV, RV)
    new = json.loads(fill_body(parts, slots, {NAME: b"gp-3", RV: b"123"}))
    assert "status" not in new and "uid" not in new["metadata"] and "creationTimestamp" not in new["metadata"]
    assert new["metadata"]["name"] == "gp-3" and new["metadata"]["resourceVersion"] == "123"
    assert new["metadata"]["annotations"][POD_REV_ANNOTATION] == "123"
    assert new["spec"] == stored["spec"]  # nothing immutable changes
    old = copy.deepcopy(stored)
    new["metadata"] = {**old["metadata"], **new["metadata"]}
    strategy_for(PODS).prepare_for_update(new, old)
    assert strategy_for(PODS).validate(new, old, PODS) == []


def test_lua_body_joins_the_same_parts_as_the_python_generator() -> None:
    parts, slots = split_body(cm_object("b3", with_rv=True))
    expr, decls = lua_body(parts, slots, {NAME: "nm", RV: "rvs[i]"})
    assert expr == "p1 .. nm .. p2 .. rvs[i] .. p3 .. rvs[i] .. p4"
    assert decls.count("local p") == 4 and "]==]" in decls
