"""Server-side apply through the real HTTP face, actor pipeline and JetStream log: ownership and
conflicts across managers, force, list-maps merged by key, removal of fields an applier stops
applying, create on apply, /status and /scale, dryRun, and managedFields of plain updates."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import yaml

from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
CMS = "/api/v1/namespaces/default/configmaps"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def deployment(name: str, replicas: int | None = 1, containers: list[dict[str, Any]] | None = None,
               **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    d: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                         "spec": {"selector": {"matchLabels": labels},
                                  "template": {"metadata": {"labels": labels},
                                               "spec": {"containers": containers or [{"name": "c", "image": "nginx"}]}},
                                  **spec}}
    if replicas is not None:
        d["spec"]["replicas"] = replicas
    return d


async def apply(api: httpx.AsyncClient, url: str, obj: dict[str, Any], manager: str, *, force: bool = False,
                as_json: bool = False, **q: str) -> httpx.Response:
    params = {"fieldManager": manager, **q}
    if force:
        params["force"] = "true"
    body = json.dumps(obj) if as_json else yaml.safe_dump(obj)
    return await api.patch(url, content=body, headers=APPLY, params=params)


def managers(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"]
            for e in obj["metadata"].get("managedFields") or []}


async def test_apply_create_conflict_force_and_removal(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(60):
            for i in range(3):
                name, url = f"d{i}", f"{DEPLOY}/d{i}"
                # Create on apply: 201, the applier owns exactly what it applied.
                r = await apply(api, url, deployment(name, replicas=2), "alice", as_json=i == 1)
                assert r.status_code == 201, r.text
                d = r.json()
                assert d["spec"]["replicas"] == 2 and d["metadata"]["uid"]
                (entry,) = d["metadata"]["managedFields"]
                assert entry["manager"] == "alice" and entry["operation"] == "Apply"
                assert entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1" and entry["time"]
                assert entry["fieldsV1"]["f:spec"]["f:replicas"] == {}
                assert entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
                    'k:{"name":"c"}': {".": {}, "f:image": {}, "f:name": {}}}
                assert "f:name" in entry["fieldsV1"]["f:metadata"] if "f:metadata" in entry["fieldsV1"] else True
                # Another manager changing replicas with an update takes it over (no conflict for updates).
                r = await api.patch(url, json={"spec": {"replicas": 5}}, headers=MERGE,
                                    params={"fieldManager": "bob"})
                assert r.status_code == 200, r.text
                m = managers(r.json())
                assert m[("bob", "Update", "")] == {"f:spec": {"f:replicas": {}}}
                assert "f:replicas" not in m[("alice", "Apply", "")]["f:spec"]
                # Alice applying replicas again conflicts with bob.
                r = await apply(api, url, deployment(name, replicas=3), "alice")
                assert r.status_code == 409, r.text
                st = r.json()
                assert st["reason"] == "Conflict"
                assert st["message"] == ('Apply failed with 1 conflict: conflict with "bob" using apps/v1: '
                                         '.spec.replicas')
                assert st["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                                    "message": 'conflict with "bob" using apps/v1',
                                                    "field": ".spec.replicas"}]
                # Applying the same value bob set is no conflict: both own it.
                r = await apply(api, url, deployment(name, replicas=5), "alice")
                assert r.status_code == 200, r.text
                m = managers(r.json())
                assert m[("bob", "Update", "")] == {"f:spec": {"f:replicas": {}}}
                assert "f:replicas" in m[("alice", "Apply", "")]["f:spec"]
                # Force takes the field over.
                r = await apply(api, url, deployment(name, replicas=4), "alice", force=True)
                assert r.status_code == 200, r.text
                assert r.json()["spec"]["replicas"] == 4
                assert ("bob", "Update", "") not in managers(r.json())
                # Leaving a field out of the applied configuration removes it (nobody else owns it).
                r = await apply(api, url, deployment(name, replicas=None, minReadySeconds=3), "alice")
                assert r.status_code == 200, r.text
                # replicas left alone by alice: removed, then defaulted back to 1 by the strategy.
                assert r.json()["spec"]["replicas"] == 1 and r.json()["spec"]["minReadySeconds"] == 3
                r = await apply(api, url, deployment(name, replicas=None), "alice")
                assert "minReadySeconds" not in r.json()["spec"] or r.json()["spec"]["minReadySeconds"] == 0


async def test_two_appliers_share_a_list_map(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(60):
            for i in range(3):
                url = f"{DEPLOY}/l{i}"
                r = await apply(api, url, deployment(f"l{i}", containers=[{"name": "app", "image": "app:1"}]),
                                "team-app")
                assert r.status_code == 201, r.text
                # A second applier adds its sidecar: containers merge by name.
                side = deployment(f"l{i}", replicas=None, containers=[{"name": "sidecar", "image": "proxy:1"}])
                del side["spec"]["selector"]
                side["spec"]["template"]["metadata"] = {}
                r = await apply(api, url, side, "team-mesh")
                assert r.status_code == 200, r.text
                cs = r.json()["spec"]["template"]["spec"]["containers"]
                assert [(c["name"], c["image"]) for c in cs] == [("app", "app:1"), ("sidecar", "proxy:1")]
                m = managers(r.json())
                own = m[("team-mesh", "Apply", "")]["f:spec"]["f:template"]["f:spec"]["f:containers"]
                assert list(own) == ['k:{"name":"sidecar"}']
                # The first applier updates its container: the sidecar stays.
                r = await apply(api, url, deployment(f"l{i}", containers=[{"name": "app", "image": "app:2"}]),
                                "team-app")
                cs = r.json()["spec"]["template"]["spec"]["containers"]
                assert [(c["name"], c["image"]) for c in cs] == [("app", "app:2"), ("sidecar", "proxy:1")]
                # The mesh changing the app's image conflicts with its owner.
                side["spec"]["template"]["spec"]["containers"].append({"name": "app", "image": "evil"})
                r = await apply(api, url, side, "team-mesh")
                assert r.status_code == 409
                assert r.json()["message"] == ('Apply failed with 1 conflict: conflict with "team-app": '
                                               '.spec.template.spec.containers[name="app"].image')
                # The mesh drops its sidecar: it goes; the app container stays.
                side["spec"]["template"]["spec"]["containers"] = []
                r = await apply(api, url, side, "team-mesh")
                assert r.status_code == 200, r.text
                cs = r.json()["spec"]["template"]["spec"]["containers"]
                assert [c["name"] for c in cs] == ["app"]


async def test_apply_messages_status_scale_and_dry_run(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(60):
            url = f"{DEPLOY}/s"
            # A fieldManager is required; apiVersion and kind are.
            r = await api.patch(url, content=yaml.safe_dump(deployment("s")), headers=APPLY)
            assert r.status_code == 422
            assert r.json()["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                           'is required for apply patch')
            bad = deployment("s")
            del bad["apiVersion"]
            r = await apply(api, url, bad, "m")
            assert r.status_code == 400 and "Incorrect version specified in apply patch" in r.json()["message"]
            r = await apply(api, url, {**deployment("s"), "metadata": {"name": "other"}}, "m")
            assert r.status_code == 400
            r = await api.patch(url, json={"spec": {}}, headers=MERGE, params={"force": "true"})
            assert r.status_code == 422
            # dryRun: nothing written.
            r = await apply(api, url, deployment("s"), "m", dryRun="All")
            assert r.status_code == 201
            assert (await api.get(url)).status_code == 404
            r = await apply(api, url, deployment("s"), "m")
            assert r.status_code == 201
            rv = r.json()["metadata"]["resourceVersion"]
            r = await apply(api, url, deployment("s", replicas=9), "m", dryRun="All")
            assert r.status_code == 200 and r.json()["spec"]["replicas"] == 9
            got = (await api.get(url)).json()
            assert got["spec"]["replicas"] == 1 and got["metadata"]["resourceVersion"] == rv
            # A resourceVersion in the configuration is a precondition.
            stale = deployment("s")
            stale["metadata"]["resourceVersion"] = "1"
            r = await apply(api, url, stale, "m")
            assert r.status_code == 409 and "the object has been modified" in r.json()["message"]
            # A no-op apply writes nothing.
            r = await apply(api, url, deployment("s"), "m")
            assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == rv
            # Apply to /status: the controller owns the status, under subresource status.
            status = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
                      "status": {"replicas": 1, "readyReplicas": 1}}
            r = await apply(api, f"{url}/status", status, "ctrl")
            assert r.status_code == 200, r.text
            d = r.json()
            assert d["status"]["readyReplicas"] == 1 and d["metadata"]["generation"] == 1
            assert managers(d)[("ctrl", "Apply", "status")] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
            # Status through the main resource is not owned (reset fields).
            r = await apply(api, url, {**deployment("s"), "status": {"replicas": 7}}, "m")
            assert r.json()["status"]["replicas"] == 1
            assert "f:status" not in managers(r.json())[("m", "Apply", "")]
            # Apply to /scale: spec.replicas owned by the manager with subresource scale; conflicts.
            scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "s"},
                     "spec": {"replicas": 4}}
            r = await apply(api, f"{url}/scale", scale, "hpa")
            assert r.status_code == 409, r.text
            assert r.json()["message"] == 'Apply failed with 1 conflict: conflict with "m": .spec.replicas'
            r = await apply(api, f"{url}/scale", scale, "hpa", force=True)
            assert r.status_code == 200 and r.json()["kind"] == "Scale" and r.json()["spec"]["replicas"] == 4
            d = (await api.get(url)).json()
            assert d["spec"]["replicas"] == 4
            m = managers(d)
            assert m[("hpa", "Apply", "scale")] == {"f:spec": {"f:replicas": {}}}
            assert "f:replicas" not in m[("m", "Apply", "")]["f:spec"]
            # kubectl scale (a patch of /scale) is recorded with subresource scale too.
            r = await api.patch(f"{url}/scale", json={"spec": {"replicas": 2}}, headers=MERGE,
                                params={"fieldManager": "kubectl-scale"})
            assert r.status_code == 200
            m = managers((await api.get(url)).json())
            assert m[("kubectl-scale", "Update", "scale")] == {"f:spec": {"f:replicas": {}}}
            assert ("hpa", "Apply", "scale") not in m


async def test_updates_record_and_merge_per_manager(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for i in range(3):
            url = f"{CMS}/u{i}"
            r = await api.post(CMS, json={"metadata": {"name": f"u{i}"}, "data": {"a": "1"}},
                               params={"fieldManager": "one"})
            assert managers(r.json()) == {("one", "Update", ""): {"f:data": {".": {}, "f:a": {}}}}
            r = await api.patch(url, json={"data": {"b": "2"}}, headers=MERGE, params={"fieldManager": "two"})
            r = await api.patch(url, json={"data": {"c": "3"}}, headers=MERGE, params={"fieldManager": "one"})
            assert managers(r.json()) == {("one", "Update", ""): {"f:data": {".": {}, "f:a": {}, "f:c": {}}},
                                          ("two", "Update", ""): {"f:data": {"f:b": {}}}}
            # Removing a key removes it from its owner.
            r = await api.patch(url, json={"data": {"b": None}}, headers=MERGE, params={"fieldManager": "one"})
            assert ("two", "Update", "") not in managers(r.json())
            # A no-op keeps the times; a reset with [{}] clears managedFields, and then updates stay untracked.
            before = r.json()["metadata"]["managedFields"]
            r = await api.patch(url, json={"data": {"a": "1"}}, headers=MERGE, params={"fieldManager": "one"})
            assert r.json()["metadata"]["managedFields"] == before
            r = await api.patch(url, json={"metadata": {"managedFields": [{}]}}, headers=MERGE)
            assert "managedFields" not in r.json()["metadata"]
            r = await api.patch(url, json={"data": {"z": "1"}}, headers=MERGE)
            assert "managedFields" not in r.json()["metadata"]
            # The first apply then gives what was there to before-first-apply.
            r = await apply(api, url, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"u{i}"},
                                       "data": {"z": "2"}}, "ap")
            assert r.status_code == 409
            assert 'conflict with "before-first-apply" using v1: .data.z' in r.json()["message"]


async def test_client_side_apply_upgrade(api: httpx.AsyncClient) -> None:
    """kubectl's apply --server-side over an object that client-side apply wrote: the fields of the
    last-applied annotation move to "kubectl" without conflicts; changed fields still conflict."""
    with trio.fail_after(30):
        for i in range(3):
            name = f"csa{i}"
            last = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
                    "data": {"a": "1", "b": "2"}}
            body = {**last, "metadata": {**last["metadata"], "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(last)}}}
            r = await api.post(CMS, json=body, params={"fieldManager": "kubectl-client-side-apply"})
            assert r.status_code == 201
            wanted = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                      "data": {"a": "10", "b": "2"}}
            r = await apply(api, f"{CMS}/{name}", wanted, "kubectl")
            assert r.status_code == 200, r.text
            d = r.json()
            assert d["data"] == {"a": "10", "b": "2"}
            ann = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
            assert ann["data"] == {"a": "10", "b": "2"}
            assert managers(d)[("kubectl", "Apply", "")]["f:data"] == {"f:a": {}, "f:b": {}}
            # Another manager changes a field: kubectl now conflicts on it.
            await api.patch(f"{CMS}/{name}", json={"data": {"b": "x"}}, headers=MERGE, params={"fieldManager": "o"})
            r = await apply(api, f"{CMS}/{name}", {**wanted, "data": {"a": "10", "b": "3"}}, "kubectl")
            assert r.status_code == 409 and '"o" using v1: .data.b' in r.json()["message"]


async def test_defaulted_keys_and_atomic_fields(api: httpx.AsyncClient) -> None:
    """Ports applied without their protocol are the live ports (TCP by default): re-applying keeps
    one entry; an atomic map (the selector) is owned and replaced whole."""
    with trio.fail_after(30):
        for i in range(3):
            url = f"/api/v1/namespaces/default/services/svc{i}"
            svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{i}"},
                   "spec": {"selector": {"app": "a", "tier": "web"}, "ports": [{"port": 80, "targetPort": 80}]}}
            r = await apply(api, url, svc, "ops")
            assert r.status_code == 201, r.text
            assert r.json()["spec"]["ports"][0]["protocol"] == "TCP"
            svc["spec"]["ports"][0]["targetPort"] = 8080
            svc["spec"]["selector"] = {"app": "b"}
            r = await apply(api, url, svc, "ops")
            assert r.status_code == 200, r.text
            spec = r.json()["spec"]
            assert [(p["port"], p["protocol"], p["targetPort"]) for p in spec["ports"]] == [(80, "TCP", 8080)]
            assert spec["selector"] == {"app": "b"}
            own = managers(r.json())[("ops", "Apply", "")]["f:spec"]
            assert 'k:{"port":80,"protocol":"TCP"}' in own["f:ports"]
            d = deployment(f"ports{i}", containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}])
            r = await apply(api, f"{DEPLOY}/ports{i}", d, "ops")
            assert r.status_code == 201, r.text
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "http"
            r = await apply(api, f"{DEPLOY}/ports{i}", d, "ops")
            assert r.status_code == 200, r.text
            ports = r.json()["spec"]["template"]["spec"]["containers"][0]["ports"]
            assert ports == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]


async def test_concurrent_appliers_on_two_gateways(start_server: StartServer) -> None:
    """Two managers applying their own fields of the same objects at once, each through its own
    gateway: every apply lands (the CAS retry decides again on the winner's state) and each
    manager ends owning exactly its field."""
    g1, g2 = await start_server(), await start_server()
    async with client_for(g1) as a1, client_for(g2) as a2:
        with trio.fail_after(90):
            names = [f"cc{i}" for i in range(4)]

            async def run(api: httpx.AsyncClient, manager: str, key: str) -> None:
                for n in range(8):
                    for name in names:
                        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                              "data": {key: str(n)}}
                        r = await apply(api, f"{CMS}/{name}", cm, manager)
                        assert r.status_code in (200, 201), r.text

            async with trio.open_nursery() as n:
                n.start_soon(run, a1, "left", "a")
                n.start_soon(run, a2, "right", "b")
            for name in names:
                got = (await a1.get(f"{CMS}/{name}")).json()
                assert got["data"] == {"a": "7", "b": "7"}
                m = managers(got)
                assert m[("left", "Apply", "")] == {"f:data": {"f:a": {}}}
                assert m[("right", "Apply", "")] == {"f:data": {"f:b": {}}}


async def test_apply_to_a_custom_resource_merges_by_its_crd_schema(api: httpx.AsyncClient) -> None:
    """A custom resource's merge type is its CRD's schema: a ``x-kubernetes-list-type: map`` list is
    shared by key between two appliers, a ``set`` by value; a conflict names the other manager."""
    from tests.integration.test_crd import CRDS, established

    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                      "x-kubernetes-list-map-keys": ["name"],
                                      "items": {"type": "object", "required": ["name"], "properties": {
                                          "name": {"type": "string"}, "port": {"type": "integer"}}}},
                            "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                     "items": {"type": "string"}}}}}}}}]}}
    url = "/apis/example.com/v1/namespaces/default/gadgets/g1"
    with trio.fail_after(60):
        assert (await api.post(CRDS, json=crd)).status_code == 201
        await established(api, "gadgets.example.com")

        def gadget(ports: list[dict[str, Any]], tags: list[str]) -> dict[str, Any]:
            return {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"},
                    "spec": {"ports": ports, "tags": tags}}

        r = await apply(api, url, gadget([{"name": "a", "port": 1}], ["x"]), "alpha")
        assert r.status_code == 201, r.text
        r = await apply(api, url, gadget([{"name": "b", "port": 2}], ["y"]), "beta")
        assert r.status_code == 200, r.text
        spec = r.json()["spec"]
        assert spec["ports"] == [{"name": "a", "port": 1}, {"name": "b", "port": 2}]
        assert sorted(spec["tags"]) == ["x", "y"]
        r = await apply(api, url, gadget([{"name": "a", "port": 1}, {"name": "b", "port": 3}], ["x"]), "alpha")
        assert r.status_code == 409, r.text
        assert 'conflict with "beta"' in r.json()["message"] and '.spec.ports[name="b"].port' in r.json()["message"]
        r = await apply(api, url, gadget([{"name": "a", "port": 1}], []), "alpha")  # alpha drops its tag
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["tags"] == ["y"] and len(r.json()["spec"]["ports"]) == 2
