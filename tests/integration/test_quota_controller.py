"""The resource quota controller: charges leaked by writes that fail after them are returned by a
recount of ``status.used`` from the stored objects, on two gateways, with several quotas and
namespaces. The gateways run with a short request timeout, which is how long a quota must be left
alone before a correction (no write can still be in flight after it)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, default_service_account, poll_until

pytestmark = pytest.mark.integration

SETTLE_S = 2.0


def pod(name: str, cpu: str = "100m") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]}}


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


async def used(api: httpx.AsyncClient, ns: str, quota: str) -> dict[str, str]:
    r = await api.get(f"/api/v1/namespaces/{ns}/resourcequotas/{quota}")
    assert r.status_code == 200, r.text
    return dict((r.json().get("status") or {}).get("used") or {})


async def wait_used(api: httpx.AsyncClient, ns: str, quota: str, want: dict[str, str]) -> None:
    async def probe() -> bool:
        return await used(api, ns, quota) == want
    try:
        await poll_until(probe)
    except trio.TooSlowError:  # pragma: no cover - the failure's message
        raise AssertionError(f"{ns}/{quota} used {await used(api, ns, quota)} != {want}") from None


async def test_leaked_charges_are_returned_on_two_gateways(start_server: StartServer) -> None:
    a = await start_server(request_timeout_s=SETTLE_S)
    b = await start_server(request_timeout_s=SETTLE_S)
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(60):
            for ns in ("qa", "qb"):
                assert (await api_a.post("/api/v1/namespaces", json={"metadata": {"name": ns}})).status_code == 201
            quotas = {("qa", "compute"): {"pods": "5", "requests.cpu": "2", "count/pods": "10"},
                      ("qa", "pods"): {"pods": "3"},
                      ("qb", "objects"): {"configmaps": "5", "count/configmaps": "10"}}
            await default_service_account(api_a, "qa")  # before its pods (the ServiceAccount plugin)
            for (ns, name), hard in quotas.items():
                r = await api_b.post(f"/api/v1/namespaces/{ns}/resourcequotas",
                                     json={"metadata": {"name": name}, "spec": {"hard": hard}})
                assert r.status_code == 201, r.text
            # A new quota's status is filled in by the controller (on whichever gateway is first),
            # counting what the namespace holds already (qb's kube-root-ca.crt ConfigMap).
            await wait_used(api_a, "qa", "compute", {"pods": "0", "requests.cpu": "0", "count/pods": "0"})
            # The controller's recounts and each admission step have their own time series.
            metrics = (await api_a.get("/metrics")).text
            for stage in ("quota-controller", "admission-mutating-plugins", "admission-validating-plugins"):
                count = [line for line in metrics.splitlines()
                         if line.startswith(f'jetkube_stage_duration_seconds_count{{stage="{stage}"}}')]
                assert count and float(count[0].split()[-1]) > 0, (stage, count)
            await wait_used(api_a, "qa", "pods", {"pods": "0"})
            await wait_used(api_b, "qb", "objects", {"configmaps": "1", "count/configmaps": "1"})
            r = await api_a.get("/api/v1/namespaces/qa/resourcequotas/compute")
            assert r.json()["status"]["hard"] == quotas[("qa", "compute")]

            for i, api in enumerate((api_a, api_b)):
                r = await api.post("/api/v1/namespaces/qa/pods", json=pod(f"p{i}", "500m"))
                assert r.status_code == 201, r.text
            assert await used(api_b, "qa", "compute") == {"pods": "2", "requests.cpu": "1", "count/pods": "2"}
            # A create that fails after its charges (the name is taken: 409) leaks them in both quotas.
            r = await api_b.post("/api/v1/namespaces/qa/pods", json=pod("p0", "500m"))
            assert r.status_code == 409, r.text
            assert await used(api_a, "qa", "compute") == {"pods": "3", "requests.cpu": "1500m", "count/pods": "3"}
            assert await used(api_a, "qa", "pods") == {"pods": "3"}
            # The leak holds the last unit of "pods" (3/3): a create is refused until the recount.
            r = await api_a.post("/api/v1/namespaces/qa/pods", json=pod("p2"))
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('pods "p2" is forbidden: exceeded quota: pods, requested: pods=1, '
                                           'used: pods=3, limited: pods=3')
            # Two leaks in the other namespace, on the other gateway.
            for i in range(2):
                assert (await api_b.post("/api/v1/namespaces/qb/configmaps", json=cm(f"c{i}"))).status_code == 201
            for _ in range(2):
                assert (await api_a.post("/api/v1/namespaces/qb/configmaps", json=cm("c0"))).status_code == 409
            assert await used(api_b, "qb", "objects") == {"configmaps": "5", "count/configmaps": "5"}
            assert (await api_b.post("/api/v1/namespaces/qb/configmaps", json=cm("c2"))).status_code == 403

            # Once the quotas have been left alone for the settle time, the recount returns the leaks.
            await wait_used(api_a, "qa", "compute", {"pods": "2", "requests.cpu": "1", "count/pods": "2"})
            await wait_used(api_b, "qa", "pods", {"pods": "2"})
            await wait_used(api_a, "qb", "objects", {"configmaps": "3", "count/configmaps": "3"})
            r = await api_a.post("/api/v1/namespaces/qa/pods", json=pod("p2"))
            assert r.status_code == 201, r.text
            assert (await api_b.post("/api/v1/namespaces/qb/configmaps", json=cm("c2"))).status_code == 201

            # Deletions return their usage (at once, by the delete's own refund; the recount agrees).
            for name in ("p0", "p1"):
                assert (await api_b.delete(f"/api/v1/namespaces/qa/pods/{name}")).status_code == 200
            assert await used(api_a, "qa", "compute") == {"pods": "1", "requests.cpu": "100m", "count/pods": "1"}
            # A pod that ends no longer counts as a pod (count/pods still counts it): kube's QuotaV1Pod.
            p2 = (await api_a.get("/api/v1/namespaces/qa/pods/p2")).json()
            p2["status"] = {"phase": "Succeeded"}
            r = await api_a.put("/api/v1/namespaces/qa/pods/p2/status", json=p2)
            assert r.status_code == 200, r.text
            await wait_used(api_b, "qa", "compute", {"pods": "0", "requests.cpu": "0", "count/pods": "1"})
            await wait_used(api_b, "qa", "pods", {"pods": "0"})
            # Its deletion then returns only what it still counted.
            assert (await api_b.delete("/api/v1/namespaces/qa/pods/p2")).status_code == 200
            await wait_used(api_a, "qa", "compute", {"pods": "0", "requests.cpu": "0", "count/pods": "0"})


async def test_a_raised_hard_limit_and_a_new_key_are_filled_in(start_server: StartServer) -> None:
    async with client_for(await start_server(request_timeout_s=SETTLE_S)) as api:
        with trio.fail_after(30):
            assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": "qc"}})).status_code == 201
            for i in range(3):
                assert (await api.post("/api/v1/namespaces/qc/configmaps", json=cm(f"c{i}"))).status_code == 201
            r = await api.post("/api/v1/namespaces/qc/resourcequotas",
                               json={"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "10"}}})
            assert r.status_code == 201, r.text
            await wait_used(api, "qc", "q", {"configmaps": "4"})  # with kube-root-ca.crt
            q = (await api.get("/api/v1/namespaces/qc/resourcequotas/q")).json()
            q["spec"]["hard"]["secrets"] = "5"
            q["spec"]["hard"]["configmaps"] = "20"
            assert (await api.put("/api/v1/namespaces/qc/resourcequotas/q", json=q)).status_code == 200

            async def filled() -> bool:
                st = (await api.get("/api/v1/namespaces/qc/resourcequotas/q")).json().get("status") or {}
                return st.get("hard") == {"configmaps": "20", "secrets": "5"} and st.get("used") == {
                    "configmaps": "4", "secrets": "0"}
            await poll_until(filled)


async def test_objects_marked_for_deletion_are_refunded_once(start_server: StartServer) -> None:
    async with client_for(await start_server(request_timeout_s=SETTLE_S)) as api:
        with trio.fail_after(30):
            assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": "qd"}})).status_code == 201
            r = await api.post("/api/v1/namespaces/qd/resourcequotas",
                               json={"metadata": {"name": "q"}, "spec": {"hard": {"persistentvolumeclaims": "5"}}})
            assert r.status_code == 201, r.text
            await wait_used(api, "qd", "q", {"persistentvolumeclaims": "0"})
            base = "/api/v1/namespaces/qd/persistentvolumeclaims"
            for name in ("c0", "c1"):
                r = await api.post(base, json={"metadata": {"name": name}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
                assert r.status_code == 201, r.text
            assert await used(api, "qd", "q") == {"persistentvolumeclaims": "2"}
            # The protection finalizer keeps c0 (marked); its delete refunds it once, however often
            # it is repeated.
            for _ in range(3):
                assert (await api.delete(f"{base}/c0")).status_code == 200
            assert (await api.get(f"{base}/c0")).json()["metadata"]["deletionTimestamp"]
            assert await used(api, "qd", "q") == {"persistentvolumeclaims": "1"}
            # A leak, returned by the recount, which does not count the marked claim either.
            r = await api.post(base, json={"metadata": {"name": "c1"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
            assert r.status_code == 409
            assert await used(api, "qd", "q") == {"persistentvolumeclaims": "2"}
            await wait_used(api, "qd", "q", {"persistentvolumeclaims": "1"})
            # Its final removal (the finalizer taken off) changes nothing.
            r = await api.patch(f"{base}/c0", headers={"Content-Type": "application/merge-patch+json"},
                                json={"metadata": {"finalizers": None}})
            assert r.status_code == 200 and (await api.get(f"{base}/c0")).status_code == 404
            assert await used(api, "qd", "q") == {"persistentvolumeclaims": "1"}
