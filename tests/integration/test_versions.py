"""Kinds served in two versions from one storage version: HorizontalPodAutoscalers (autoscaling/v1
and v2) and Events (core/v1 and events.k8s.io/v1), converted both ways on write, read and watch."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

HPA1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
HPA2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
EV_CORE = "/api/v1/namespaces/default/events"
EV_NEW = "/apis/events.k8s.io/v1/namespaces/default/events"
MERGE = {"Content-Type": "application/merge-patch+json"}
TARGET = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


async def collect(api: httpx.AsyncClient, url: str, count: int, out: list[dict[str, Any]],
                  started: trio.Event) -> None:
    async with api.stream("GET", url) as r:
        assert r.status_code == 200
        started.set()
        async for line in r.aiter_lines():
            if line:
                out.append(json.loads(line))
                if len(out) >= count:
                    return


async def test_hpa_v1_and_v2(start_server: StartServer) -> None:
    server = await start_server(watch_ring_size=3)  # early versions of the watches come from the log
    async with client_for(server) as api:
        with trio.fail_after(60):
            rv0 = (await api.get(HPA2)).json()["metadata"]["resourceVersion"]
            seen: list[str] = []
            # Written in v1 and in v2, alternately.
            for i in range(3):
                r = await api.post(HPA1, json={"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                                               "metadata": {"name": f"v1-{i}"}, "spec": {
                                                   "scaleTargetRef": TARGET, "minReplicas": 1, "maxReplicas": 5,
                                                   "targetCPUUtilizationPercentage": 60 + i}})
                assert r.status_code == 201, r.text
                h = r.json()
                assert h["apiVersion"] == "autoscaling/v1" and h["spec"]["targetCPUUtilizationPercentage"] == 60 + i
                assert h["status"] == {"currentReplicas": 0, "desiredReplicas": 0}
                seen.append(h["metadata"]["resourceVersion"])
                r = await api.post(HPA2, json={"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                               "metadata": {"name": f"v2-{i}"}, "spec": {
                                                   "scaleTargetRef": TARGET, "maxReplicas": 5, "metrics": [
                                                       {"type": "Resource", "resource": {"name": "cpu", "target": {
                                                           "type": "Utilization", "averageUtilization": 70}}},
                                                       {"type": "Resource", "resource": {"name": "memory", "target": {
                                                           "type": "AverageValue", "averageValue": "1Gi"}}}]}})
                assert r.status_code == 201, r.text
                assert r.json()["status"] == {"desiredReplicas": 0}
                seen.append(r.json()["metadata"]["resourceVersion"])
            # Read each in the other version.
            h = (await api.get(f"{HPA2}/v1-1")).json()
            assert h["apiVersion"] == "autoscaling/v2"
            assert h["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 61}}}]
            h = (await api.get(f"{HPA1}/v2-1")).json()
            assert h["apiVersion"] == "autoscaling/v1" and h["spec"]["targetCPUUtilizationPercentage"] == 70
            assert "autoscaling.alpha.kubernetes.io/metrics" in h["metadata"]["annotations"]
            # A v1 update keeps the v2-only metric (it travels in the annotation), and a v1 patch too.
            h["spec"]["maxReplicas"] = 9
            r = await api.put(f"{HPA1}/v2-1", json=h)
            assert r.status_code == 200, r.text
            seen.append(r.json()["metadata"]["resourceVersion"])
            r = await api.patch(f"{HPA1}/v2-1", json={"spec": {"targetCPUUtilizationPercentage": 75}},
                                headers=MERGE)
            assert r.status_code == 200, r.text
            assert r.json()["spec"]["targetCPUUtilizationPercentage"] == 75
            seen.append(r.json()["metadata"]["resourceVersion"])
            h = (await api.get(f"{HPA2}/v2-1")).json()
            assert h["spec"]["maxReplicas"] == 9 and [m["resource"]["name"] for m in h["spec"]["metrics"]] == [
                "cpu", "memory"]
            assert h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 75
            assert "annotations" not in h["metadata"]
            # Status through v1's /status.
            r = await api.patch(f"{HPA1}/v1-0/status", json={"status": {"currentReplicas": 2, "desiredReplicas": 3,
                                                                        "currentCPUUtilizationPercentage": 55}},
                                headers=MERGE)
            assert r.status_code == 200, r.text
            seen.append(r.json()["metadata"]["resourceVersion"])
            h = (await api.get(f"{HPA2}/v1-0")).json()
            assert h["status"]["currentMetrics"][0]["resource"]["current"] == {"averageUtilization": 55}
            # Lists in both versions hold every object, each in the version asked for.
            for url, api_version in ((HPA1, "autoscaling/v1"), (HPA2, "autoscaling/v2")):
                body = (await api.get(url)).json()
                assert body["apiVersion"] == api_version and body["kind"] == "HorizontalPodAutoscalerList"
                assert len(body["items"]) == 6 and {i["apiVersion"] for i in body["items"]} == {api_version}
            # A watch on either version sees every change, in that version.
            for url, api_version in ((HPA1, "autoscaling/v1"), (HPA2, "autoscaling/v2")):
                events: list[dict[str, Any]] = []
                await collect(api, f"{url}?watch=1&resourceVersion={rv0}", len(seen), events, trio.Event())
                assert [e["object"]["metadata"]["resourceVersion"] for e in events] == seen
                assert {e["object"]["apiVersion"] for e in events} == {api_version}
            r = await api.delete(f"{HPA1}/v2-0")
            assert r.status_code == 200 and r.json()["status"] == "Success"
            assert (await api.get(f"{HPA2}/v2-0")).status_code == 404


async def test_events_core_and_events_k8s_io(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        rv0 = (await api.get(EV_CORE)).json()["metadata"]["resourceVersion"]
        live_core: list[dict[str, Any]] = []
        live_new: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            started = [trio.Event(), trio.Event()]
            nursery.start_soon(collect, api, f"{EV_CORE}?watch=1&resourceVersion={rv0}", 4, live_core, started[0])
            nursery.start_soon(collect, api, f"{EV_NEW}?watch=1&resourceVersion={rv0}", 4, live_new, started[1])
            for s in started:
                await s.wait()
            r = await api.post(EV_CORE, json={
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "core.1"},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Pulled",
                "message": "pulled", "source": {"component": "kubelet"}, "count": 2, "type": "Normal"})
            assert r.status_code == 201, r.text
            r = await api.post(EV_NEW, json={
                "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "new.1"},
                "eventTime": "2024-05-01T10:00:00.000000Z", "reportingController": "example.com/c",
                "reportingInstance": "c-1", "action": "Scale", "reason": "Scaled", "type": "Normal",
                "regarding": {"kind": "Deployment", "name": "web", "namespace": "default"}, "note": "scaled up"})
            assert r.status_code == 201, r.text
            assert r.json()["apiVersion"] == "events.k8s.io/v1" and r.json()["note"] == "scaled up"
            r = await api.patch(f"{EV_NEW}/core.1", json={"note": "pulled again"}, headers=MERGE)
            assert r.status_code == 200, r.text
            assert r.json()["note"] == "pulled again" and r.json()["deprecatedCount"] == 2
            r = await api.delete(f"{EV_CORE}/new.1")
            assert r.status_code == 200, r.text
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in live_core] == [
            ("ADDED", "core.1"), ("ADDED", "new.1"), ("MODIFIED", "core.1"), ("DELETED", "new.1")]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in live_new] == [
            ("ADDED", "core.1"), ("ADDED", "new.1"), ("MODIFIED", "core.1"), ("DELETED", "new.1")]
        assert {e["object"]["apiVersion"] for e in live_core} == {"v1"}
        assert {e["object"]["apiVersion"] for e in live_new} == {"events.k8s.io/v1"}
        assert live_core[1]["object"]["involvedObject"]["kind"] == "Deployment"
        assert live_core[1]["object"]["message"] == "scaled up"
        assert live_core[1]["object"]["reportingComponent"] == "example.com/c"
        assert live_new[0]["object"]["regarding"]["kind"] == "Pod"
        assert live_new[2]["object"]["note"] == "pulled again"
        core = (await api.get(f"{EV_CORE}/core.1")).json()
        assert core["message"] == "pulled again" and core["source"] == {"component": "kubelet"}
        # A field selector on the core fields works on both versions.
        for url in (EV_CORE, EV_NEW):
            body = (await api.get(f"{url}?fieldSelector=involvedObject.kind%3DPod")).json()
            assert [i["metadata"]["name"] for i in body["items"]] == ["core.1"]


async def test_namespace_deletion_empties_converted_kinds(api: httpx.AsyncClient) -> None:
    """The namespace controller deletes each stored object once, whichever versions serve it."""
    with trio.fail_after(30):
        assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": "tmp"}})).status_code == 201
        hpa = HPA1.replace("/default/", "/tmp/")
        ev = EV_NEW.replace("/default/", "/tmp/")
        for i in range(3):
            r = await api.post(hpa, json={"metadata": {"name": f"h{i}"}, "spec": {
                "scaleTargetRef": TARGET, "maxReplicas": 2}})
            assert r.status_code == 201, r.text
            r = await api.post(ev, json={"metadata": {"name": f"e{i}"}, "eventTime": "2024-05-01T10:00:00.000000Z",
                                         "reportingController": "c", "reportingInstance": "i", "action": "A",
                                         "reason": "R", "type": "Normal"})
            assert r.status_code == 201, r.text
        assert (await api.delete("/api/v1/namespaces/tmp")).status_code == 200
        await poll_until(lambda: _gone(api, "/api/v1/namespaces/tmp"))
        for url in (hpa, ev, HPA2.replace("/default/", "/tmp/"), EV_CORE.replace("/default/", "/tmp/")):
            assert (await api.get(url)).json()["items"] == []


async def _gone(api: httpx.AsyncClient, url: str) -> bool:
    return (await api.get(url)).status_code == 404
