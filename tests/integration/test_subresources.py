"""Subresources through the real HTTP face, actor pipeline and JetStream log: the status/spec split
and generation, /scale, pods/binding, pods/eviction (with PodDisruptionBudgets),
pods/ephemeralcontainers and certificatesigningrequests/approval."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for
from tests.integration.test_watch import read_events

pytestmark = pytest.mark.integration

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"replicas": 99}}


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": "Running"}}


async def test_status_spec_split_and_generation(start_server: StartServer) -> None:
    # A ring of 4 changes: the early versions of the watch below come from the log, the late ones
    # from memory.
    server = await start_server(watch_ring_size=4)
    async with client_for(server) as api:
        with trio.fail_after(60):
            start_rv = (await api.get(DEPLOY)).json()["metadata"]["resourceVersion"]
            expected: list[tuple[str, str, int, Any]] = []  # (name, rv, generation, status)
            for i in range(4):
                r = await api.post(DEPLOY, json=deployment(f"d{i}"))
                assert r.status_code == 201, r.text
                d = r.json()
                # Create ignores the client's status; generation starts at 1.
                assert d["status"] == {} and d["metadata"]["generation"] == 1
                expected.append((f"d{i}", d["metadata"]["resourceVersion"], 1, {}))
            for i in range(4):
                url = f"{DEPLOY}/d{i}"
                # A write to /status changes status only: the spec and labels it carries are ignored.
                cur = (await api.get(url)).json()
                cur["status"] = {"replicas": 2, "readyReplicas": i}
                cur["spec"]["replicas"] = 7
                cur["metadata"]["labels"] = {"changed": "yes"}
                cur["metadata"]["annotations"] = {"note": "by-status"}
                r = await api.put(f"{url}/status", json=cur)
                assert r.status_code == 200, r.text
                d = r.json()
                assert d["spec"]["replicas"] == 1 and d["metadata"]["labels"] == {"app": f"d{i}"}
                assert d["metadata"]["annotations"] == {"note": "by-status"}  # kube: only labels reset
                assert d["status"] == {"replicas": 2, "readyReplicas": i} and d["metadata"]["generation"] == 1
                expected.append((f"d{i}", d["metadata"]["resourceVersion"], 1, d["status"]))
                # A write to the main resource keeps the stored status; a spec change is a generation.
                r = await api.patch(url, json={"spec": {"replicas": 3}, "status": {"replicas": 0}}, headers=MERGE)
                d = r.json()
                assert r.status_code == 200 and d["spec"]["replicas"] == 3
                assert d["status"] == {"replicas": 2, "readyReplicas": i} and d["metadata"]["generation"] == 2
                expected.append((f"d{i}", d["metadata"]["resourceVersion"], 2, d["status"]))
                # A status patch: no generation; a label change on the main resource: no generation.
                r = await api.patch(f"{url}/status", json={"status": {"observedGeneration": 2}}, headers=MERGE)
                d = r.json()
                assert d["status"]["observedGeneration"] == 2 and d["metadata"]["generation"] == 2
                expected.append((f"d{i}", d["metadata"]["resourceVersion"], 2, d["status"]))
                r = await api.patch(url, json={"metadata": {"labels": {"extra": "1"}}}, headers=MERGE)
                assert r.json()["metadata"]["generation"] == 2
                expected.append((f"d{i}", r.json()["metadata"]["resourceVersion"], 2, d["status"]))
                # A Deployment's generation also counts annotation changes (they go to its ReplicaSets).
                r = await api.patch(url, json={"metadata": {"annotations": {"a": "b"}}}, headers=MERGE)
                assert r.json()["metadata"]["generation"] == 3
                expected.append((f"d{i}", r.json()["metadata"]["resourceVersion"], 3, d["status"]))
            # A watch from before the first create sees every change, in order, ring and log alike.
            events = await read_events(api, f"{DEPLOY}?watch=true&resourceVersion={start_rv}",
                                       until_rv=expected[-1][1])
            got = [(e["object"]["metadata"]["name"], e["object"]["metadata"]["resourceVersion"],
                    e["object"]["metadata"]["generation"], e["object"]["status"]) for e in events]
            assert got == expected
            # A watch from the middle (served from memory) agrees with the tail.
            mid = expected[-6][1]
            events = await read_events(api, f"{DEPLOY}?watch=true&resourceVersion={mid}", until_rv=expected[-1][1])
            assert [e["object"]["metadata"]["resourceVersion"] for e in events] == [x[1] for x in expected[-5:]]
            # Verbs a subresource does not have, and subresources a kind does not have.
            assert (await api.post(f"{DEPLOY}/d0/status", json={})).status_code == 405
            assert (await api.get("/api/v1/namespaces/default/configmaps/x/status")).status_code == 404
            assert (await api.get(f"{DEPLOY}/d0/status")).json()["kind"] == "Deployment"


async def test_scale_subresource(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        sts = "/apis/apps/v1/namespaces/default/statefulsets"
        rcs = "/api/v1/namespaces/default/replicationcontrollers"
        for i in range(3):
            assert (await api.post(DEPLOY, json=deployment(f"s{i}", replicas=i + 1))).status_code == 201
        r = await api.get(f"{DEPLOY}/s1/scale")
        scale = r.json()
        assert r.status_code == 200 and scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
        assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 0, "selector": "app=s1"}
        dep = (await api.get(f"{DEPLOY}/s1")).json()
        assert scale["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"]
        assert scale["metadata"]["uid"] == dep["metadata"]["uid"]
        # PUT of a Scale: spec.replicas of the deployment, a spec change (generation), same version rules.
        scale["spec"]["replicas"] = 5
        r = await api.put(f"{DEPLOY}/s1/scale", json=scale)
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["replicas"] == 5 and r.json()["kind"] == "Scale"
        dep = (await api.get(f"{DEPLOY}/s1")).json()
        assert dep["spec"]["replicas"] == 5 and dep["metadata"]["generation"] == 2
        assert r.json()["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"]
        r = await api.put(f"{DEPLOY}/s1/scale", json=scale)  # stale resourceVersion
        assert r.status_code == 409 and r.json()["reason"] == "Conflict"
        for body, headers in (({"spec": {"replicas": 4}}, MERGE),
                              ([{"op": "replace", "path": "/spec/replicas", "value": 6}], JSONPATCH),
                              ({"spec": {"replicas": 0}}, {"Content-Type": "application/strategic-merge-patch+json"})):
            r = await api.patch(f"{DEPLOY}/s2/scale", json=body, headers=headers)
            assert r.status_code == 200, r.text
        dep = (await api.get(f"{DEPLOY}/s2")).json()
        assert dep["spec"]["replicas"] == 0 and dep["metadata"]["generation"] == 4
        r = await api.patch(f"{DEPLOY}/s2/scale", json={"spec": {"replicas": -1}}, headers=MERGE)
        assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.replicas"
        assert (await api.get(f"{DEPLOY}/nope/scale")).status_code == 404
        # StatefulSets and ReplicationControllers (a map selector) scale too.
        tmpl = {"metadata": {"labels": {"app": "x", "tier": "a"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        r = await api.post(sts, json={"metadata": {"name": "db"}, "spec": {
            "replicas": 1, "serviceName": "db", "template": tmpl,
            "selector": {"matchLabels": {"app": "x"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]}]}}})
        assert r.status_code == 201, r.text
        r = await api.patch(f"{sts}/db/scale", json={"spec": {"replicas": 3}}, headers=MERGE)
        assert r.json()["status"]["selector"] == "app=x,tier in (a,b)"
        assert (await api.get(f"{sts}/db")).json()["spec"]["replicas"] == 3
        r = await api.post(rcs, json={"metadata": {"name": "rc"}, "spec": {
            "replicas": 1, "selector": {"tier": "a", "app": "x"}, "template": tmpl}})
        assert r.status_code == 201, r.text
        r = await api.get(f"{rcs}/rc/scale")
        assert r.json()["status"] == {"replicas": 0, "selector": "app=x,tier=a"}


async def test_binding_once(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for i in range(3):
            r = await api.post(PODS, json=pod(f"b{i}"))
            assert r.status_code == 201, r.text
            assert r.json()["status"]["phase"] == "Pending" and r.json()["metadata"]["generation"] == 1
        for i in range(3):
            binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"b{i}"},
                       "target": {"apiVersion": "v1", "kind": "Node", "name": f"node-{i}"}}
            r = await api.post(f"{PODS}/b{i}/binding", json=binding)
            assert r.status_code == 201, r.text
            assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "code": 201}
            p = (await api.get(f"{PODS}/b{i}")).json()
            assert p["spec"]["nodeName"] == f"node-{i}" and p["metadata"]["generation"] == 1
            binding["target"]["name"] = "other"
            r = await api.post(f"{PODS}/b{i}/binding", json=binding)
            assert r.status_code == 409, r.text
            assert r.json()["reason"] == "Conflict"
            assert r.json()["message"] == (f'Operation cannot be fulfilled on pods/binding "b{i}": pod b{i} is '
                                           f'already assigned to node "node-{i}"')
        # Pod field selectors see the binding and the status.
        r = await api.get(f"{PODS}?fieldSelector=spec.nodeName%3Dnode-1")
        assert [p["metadata"]["name"] for p in r.json()["items"]] == ["b1"]
        await api.patch(f"{PODS}/b2/status", json={"status": {"phase": "Running", "podIP": "10.0.0.2"}},
                        headers=MERGE)
        for selector, names in (("status.phase%3DPending", ["b0", "b1"]), ("status.podIP%3D10.0.0.2", ["b2"]),
                                ("spec.hostNetwork%3Dfalse", ["b0", "b1", "b2"]),
                                ("spec.restartPolicy%21%3DNever,spec.nodeName%21%3Dnode-0", ["b1", "b2"])):
            r = await api.get(f"{PODS}?fieldSelector={selector}")
            assert r.status_code == 200, r.text
            assert [p["metadata"]["name"] for p in r.json()["items"]] == names, selector
        r = await api.post(f"{PODS}/b0/binding", json={"metadata": {"name": "other"}, "target": {"name": "n"}})
        assert r.status_code == 400
        r = await api.post(f"{PODS}/nope/binding", json={"metadata": {"name": "nope"}, "target": {"name": "n"}})
        assert r.status_code == 404
        # The legacy bindings resource is the same write, the pod named by the Binding.
        await api.post(PODS, json=pod("b3"))
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b3"}, "target": {"name": "n3"}}
        r = await api.post("/api/v1/namespaces/default/bindings", json=binding)
        assert r.status_code == 201 and r.json()["status"] == "Success", r.text
        assert (await api.get(f"{PODS}/b3")).json()["spec"]["nodeName"] == "n3"
        r = await api.post("/api/v1/namespaces/default/bindings", json=binding)
        assert r.status_code == 409 and "already assigned" in r.json()["message"]
        assert (await api.get("/api/v1/namespaces/default/bindings")).status_code == 405
        # Only POST: binding has no get.
        assert (await api.get(f"{PODS}/b0/binding")).status_code == 405


async def _running(api: httpx.AsyncClient, name: str, **labels: str) -> None:
    r = await api.post(PODS, json=pod(name, **labels))
    assert r.status_code == 201, r.text
    r = await api.patch(f"{PODS}/{name}/status", json={"status": {"phase": "Running"}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Running", r.text


def eviction(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}


async def test_eviction_and_disruption_budgets(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for i in range(3):
            await _running(api, f"web{i}", app="web")
        await _running(api, "free", app="other")
        # No budget selects "free": evicted (deleted) at once.
        r = await api.post(f"{PODS}/free/eviction", json=eviction("free"))
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "Success"
        assert (await api.get(f"{PODS}/free")).status_code == 404
        # A budget allowing one disruption: the first eviction goes through and uses it up.
        r = await api.post(PDBS, json={"metadata": {"name": "web"}, "spec": {
            "minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["generation"] == 1
        r = await api.patch(f"{PDBS}/web/status", headers=MERGE, json={"status": {
            "observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2,
            "expectedPods": 3}})
        assert r.status_code == 200, r.text
        r = await api.post(f"{PODS}/web0/eviction", json=eviction("web0"))
        assert r.status_code == 201, r.text
        assert (await api.get(f"{PODS}/web0")).status_code == 404
        budget = (await api.get(f"{PDBS}/web")).json()
        assert budget["status"]["disruptionsAllowed"] == 0 and "web0" in budget["status"]["disruptedPods"]
        assert budget["status"]["conditions"][0]["reason"] == "InsufficientPods"
        # None left: 429 with kube's message and cause; the pod stays.
        r = await api.post(f"{PODS}/web1/eviction", json=eviction("web1"))
        assert r.status_code == 429, r.text
        st = r.json()
        assert st["reason"] == "TooManyRequests"
        assert st["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
        assert st["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                            "The disruption budget web needs 2 healthy pods and has 3 currently"}]
        assert (await api.get(f"{PODS}/web1")).status_code == 200
        # A pending pod ignores budgets (kube's canIgnorePDB).
        r = await api.post(PODS, json=pod("web-pending", app="web"))
        r = await api.post(f"{PODS}/web-pending/eviction", json=eviction("web-pending"))
        assert r.status_code == 201, r.text
        # Dry run: nothing deleted, nothing counted.
        await api.patch(f"{PDBS}/web/status", headers=MERGE, json={"status": {"disruptionsAllowed": 1}})
        r = await api.post(f"{PODS}/web1/eviction?dryRun=All", json=eviction("web1"))
        assert r.status_code == 201, r.text
        assert (await api.get(f"{PODS}/web1")).status_code == 200
        assert (await api.get(f"{PDBS}/web")).json()["status"]["disruptionsAllowed"] == 1
        # Two budgets selecting one pod: kube's 500.
        await api.post(PDBS, json={"metadata": {"name": "web2"}, "spec": {
            "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
        r = await api.post(f"{PODS}/web1/eviction", json=eviction("web1"))
        assert r.status_code == 500 and "more than one PodDisruptionBudget" in r.json()["message"]
        r = await api.post(f"{PODS}/web1/eviction", json=eviction("wrong"))
        assert r.status_code == 400


async def test_ephemeral_containers_and_approval(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        await api.post(PODS, json=pod("e"))
        cur = (await api.get(f"{PODS}/e/ephemeralcontainers")).json()
        cur["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
        cur["spec"]["containers"][0]["image"] = "changed"
        r = await api.put(f"{PODS}/e/ephemeralcontainers", json=cur)
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["spec"]["ephemeralContainers"][0]["name"] == "debug"
        assert p["spec"]["containers"][0]["image"] == "nginx"
        csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
        r = await api.post(csrs, json={"metadata": {"name": "csr1"}, "spec": {
            "request": "LS0tLS1CRUdJTg==", "signerName": "example.com/s", "usages": ["digital signature"]},
            "status": {"certificate": "eA=="}})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == {}
        r = await api.patch(f"{csrs}/csr1/approval", headers=MERGE, json={"spec": {"signerName": "x/y"}, "status": {
            "certificate": "eA==", "conditions": [{"type": "Approved", "status": "True", "reason": "OK"}]}})
        assert r.status_code == 200, r.text
        cond = r.json()["status"]["conditions"]
        assert list(r.json()["status"]) == ["conditions"] and len(cond) == 1
        assert cond[0]["type"] == "Approved" and cond[0]["lastUpdateTime"] == cond[0]["lastTransitionTime"]
        assert r.json()["spec"]["signerName"] == "example.com/s"
        # Approved and Denied together: 422.
        r = await api.patch(f"{csrs}/csr1/approval", headers=MERGE, json={"status": {"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}})
        assert r.status_code == 422, r.text
        # Ephemeral containers are only ever added.
        cur = (await api.get(f"{PODS}/e/ephemeralcontainers")).json()
        cur["spec"]["ephemeralContainers"][0]["image"] = "other"
        r = await api.put(f"{PODS}/e/ephemeralcontainers", json=cur)
        assert r.status_code == 422 and 'existing ephemeral containers "debug" may not be changed' in r.json()["message"]
        r = await api.patch(f"{PODS}/e/ephemeralcontainers", headers=MERGE,
                            json={"spec": {"ephemeralContainers": None}})
        assert r.status_code == 422 and "may not be removed" in r.text
        r = await api.patch(f"{PODS}/e/ephemeralcontainers", headers={
            "Content-Type": "application/strategic-merge-patch+json"},
            json={"spec": {"ephemeralContainers": [{"name": "debug2", "image": "busybox"}]}})
        assert r.status_code == 200, r.text
        assert {c["name"] for c in r.json()["spec"]["ephemeralContainers"]} == {"debug", "debug2"}


STATUS_FIELDS = ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas", "unavailableReplicas")


async def test_two_gateways_scale_and_status(start_server: StartServer) -> None:
    """Subresource writes on two gateways at once: every scale and status write lands (the retry
    loop decides each against the winner), and a watch on either gateway sees them all."""
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(60):
            r = await api_a.post(DEPLOY, json=deployment("shared"))
            assert r.status_code == 201, r.text
            rv0 = r.json()["metadata"]["resourceVersion"]
            results: list[httpx.Response] = []

            async def scale_on(api: httpx.AsyncClient, n: int) -> None:
                results.append(await api.patch(f"{DEPLOY}/shared/scale", json={"spec": {"replicas": n}},
                                               headers=MERGE))

            async def status_on(api: httpx.AsyncClient, n: int) -> None:
                results.append(await api.patch(f"{DEPLOY}/shared/status", headers=MERGE,
                                               json={"status": {STATUS_FIELDS[n]: n + 1}}))

            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(scale_on, api_a if i % 2 else api_b, 10 + i)
                    nursery.start_soon(status_on, api_b if i % 2 else api_a, i)
            assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
            final = (await api_b.get(f"{DEPLOY}/shared")).json()
            # Status patches merged (the generic status/spec split applied on each), scales counted.
            assert final["status"] == {f: i + 1 for i, f in enumerate(STATUS_FIELDS)}
            assert final["metadata"]["generation"] == 1 + len({r.json()["spec"]["replicas"] for r in results
                                                                if r.json().get("kind") == "Scale"})
            for api in (api_a, api_b):
                events = await read_events(api, f"{DEPLOY}?watch=1&resourceVersion={rv0}",
                                           until_rv=final["metadata"]["resourceVersion"])
                assert len(events) == 10


async def test_concurrent_evictions_respect_the_budget(start_server: StartServer) -> None:
    """Evictions racing on two gateways: the budget's compare-and-swap lets exactly as many
    through as it allows; the others are 429 and their pods stay."""
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(60):
            for i in range(6):
                await _running(api_a, f"c{i}", app="c")
            await api_a.post(PDBS, json={"metadata": {"name": "c"}, "spec": {
                "minAvailable": 4, "selector": {"matchLabels": {"app": "c"}}}})
            r = await api_a.patch(f"{PDBS}/c/status", headers=MERGE, json={"status": {
                "observedGeneration": 1, "disruptionsAllowed": 2, "currentHealthy": 6, "desiredHealthy": 4,
                "expectedPods": 6}})
            assert r.status_code == 200, r.text
            codes: dict[str, int] = {}

            async def evict(api: httpx.AsyncClient, name: str) -> None:
                codes[name] = (await api.post(f"{PODS}/{name}/eviction", json=eviction(name))).status_code

            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(evict, api_a if i % 2 else api_b, f"c{i}")
            assert sorted(codes.values()) == [201, 201, 429, 429, 429, 429], codes
            left = {p["metadata"]["name"] for p in (await api_b.get(f"{PODS}?labelSelector=app%3Dc")).json()["items"]}
            assert left == {n for n, c in codes.items() if c == 429}
            status = (await api_b.get(f"{PDBS}/c")).json()["status"]
            assert status["disruptionsAllowed"] == 0
            assert set(status["disruptedPods"]) == {n for n, c in codes.items() if c == 201}
