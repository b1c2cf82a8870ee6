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


def _requests(spec: dict, n: int) -> list[bytes]:
    """What the Python load generator sends, without sockets: its first ``n`` requests."""
    import asyncio

    from bench._loadgen import HttpConn, HttpRun

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        run = HttpRun({"token": "t", "connections": 2, "duration_s": 1, **spec})
        out = []
        for i in range(n):
            c = HttpConn(run, i % 2)
            c.n = i // 2
            out.append(run.build(c)[0])
        return out
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _split_request(raw: bytes) -> tuple[bytes, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_loadgen_builds_pod_creates_and_updates_on_the_pod_collection() -> None:
    stored = _filled_pod("gp-0")
    target = pod_target("b3p", stored)
    line, body = _split_request(_requests({"op": "create", "prefix": "b1p", "target": target}, 3)[2])
    assert line == b"POST /api/v1/namespaces/b3p/pods HTTP/1.1"
    assert body["metadata"]["name"] == "b1p-0-1" and body["kind"] == "Pod"
    reqs = _requests({"op": "update", "target": target, "objects": [["up-0", 5], ["up-1", 6]]}, 2)
    line, body = _split_request(reqs[1])
    assert line == b"PUT /api/v1/namespaces/b3p/pods/up-1 HTTP/1.1"
    assert body["metadata"]["resourceVersion"] == "6" and body["metadata"]["annotations"][POD_REV_ANNOTATION] == "6"
    get = _requests({"op": "get", "target": target, "names_prefix": "gp-", "names_count": 10}, 1)[0]
    assert get.startswith(b"GET /api/v1/namespaces/b3p/pods/gp-0 HTTP/1.1\r\n")


def test_loadgen_defaults_to_configmaps_with_the_send_time_when_asked() -> None:
    line, body = _split_request(_requests({"op": "create", "ns": "b6", "prefix": "w", "embed_time": True}, 1)[0])
    assert line == b"POST /api/v1/namespaces/b6/configmaps HTTP/1.1"
    assert body["metadata"]["name"] == "w-0-0" and float(body["data"]["sent"]) > 0
    line, body = _split_request(_requests({"op": "update", "ns": "b3", "objects": [["u-1", 9]]}, 1)[0])
    assert line == b"PUT /api/v1/namespaces/b3/configmaps/u-1 HTTP/1.1" and body["data"]["rev"] == "9"


def test_loadgen_apply_sends_the_update_body_as_a_forced_apply_and_bc_targets_fill() -> None:
    from bench._crbench import cm_target as bc_cm_target
    from bench._crbench import cr_target

    target = bc_cm_target("bsa")
    reqs = _requests({"op": "apply", "target": target, "objects": [["bs-0", 5], ["bs-1", 6]]}, 2)
    head, _, raw = reqs[1].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"PATCH /api/v1/namespaces/bsa/configmaps/bs-1?fieldManager=bench-apply&force=true HTTP/1.1"
    assert b"Content-Type: application/apply-patch+yaml" in head
    body = json.loads(raw)
    assert body["metadata"]["resourceVersion"] == "6" and body["data"]["rev"] == "6"
    # The custom resource's update changes a CEL-checked list with the resourceVersion (digits match its rule).
    update = _requests({"op": "update", "target": cr_target("bccr"), "objects": [["bcg-0", 12]]}, 1)[0]
    line, body = _split_request(update)
    assert line == b"PUT /apis/bench.example.com/v1/namespaces/bccr/apps/bcg-0 HTTP/1.1"
    assert body["spec"]["tags"] == ["a", "b-c", "12"] and body["kind"] == "App"
