"""Namespaces as kube-apiserver and its controllers keep them."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.integration.test_watch import read_events

pytestmark = pytest.mark.integration

NS = "/api/v1/namespaces"


async def test_default_namespaces_and_service_accounts(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        names = [n["metadata"]["name"] for n in (await api.get(NS)).json()["items"]]
        assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
        ns = (await api.get(f"{NS}/default")).json()
        assert ns["status"]["phase"] == "Active" and ns["spec"]["finalizers"] == ["kubernetes"]
        assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "default"
        # A new namespace gets its default serviceaccount from the controller that follows the log.
        rv = (await api.post(NS, json={"metadata": {"name": "team"}})).json()["metadata"]["resourceVersion"]
        events = await read_events(api, f"{NS}/team/serviceaccounts?watch=1&resourceVersion={rv}", count=1)
        assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "default"
        # Deleting it brings it back.
        sa = (await api.get(f"{NS}/team/serviceaccounts/default")).json()
        await api.delete(f"{NS}/team/serviceaccounts/default")
        events = await read_events(
            api, f"{NS}/team/serviceaccounts?watch=1&resourceVersion={sa['metadata']['resourceVersion']}",
            until_type="ADDED")
        assert events[-1]["object"]["metadata"]["uid"] != sa["metadata"]["uid"]


async def test_namespace_deletion_empties_then_removes(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        await api.post(NS, json={"metadata": {"name": "gone"}})
        for i in range(3):
            r = await api.post(f"{NS}/gone/configmaps", json={"metadata": {"name": f"c{i}"}})
            assert r.status_code == 201
        await api.post(f"{NS}/gone/secrets", json={"metadata": {"name": "s"}, "stringData": {"a": "b"}})
        rv = (await api.get(NS)).json()["metadata"]["resourceVersion"]
        r = await api.delete(f"{NS}/gone")
        assert r.status_code == 200 and r.json()["status"]["phase"] == "Terminating"
        assert r.json()["metadata"]["deletionTimestamp"]
        r = await api.post(f"{NS}/gone/configmaps", json={"metadata": {"name": "late"}})
        # kube-apiserver's NamespaceLifecycle admission: 403 Forbidden while the namespace terminates.
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "Forbidden"
        assert "unable to create new content in namespace gone because it is being terminated" in r.json()["message"]
        events = await read_events(api, f"{NS}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dgone",
                                   until_type="DELETED")
        assert [e["type"] for e in events][-1] == "DELETED"
        assert (await api.get(f"{NS}/gone")).status_code == 404
        assert (await api.get(f"{NS}/gone/configmaps")).json()["items"] == []
        # The name can be used again.
        assert (await api.post(NS, json={"metadata": {"name": "gone"}})).status_code == 201


async def test_events_field_selectors(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        path = f"{NS}/default/events"
        for i, reason in enumerate(["Created", "Failed"]):
            r = await api.post(path, json={
                "metadata": {"name": f"pod.{i}"}, "reason": reason, "type": "Normal" if i == 0 else "Warning",
                "involvedObject": {"kind": "Pod", "name": f"p{i}", "namespace": "default", "uid": f"u{i}"},
                "source": {"component": "kubelet"}})
            assert r.status_code == 201, r.text
        q = "fieldSelector=involvedObject.name%3Dp1,involvedObject.namespace%3Ddefault,involvedObject.uid%3Du1"
        assert [e["metadata"]["name"] for e in (await api.get(f"{path}?{q}")).json()["items"]] == ["pod.1"]
        assert [e["metadata"]["name"] for e in (await api.get(f"{path}?fieldSelector=type%3DWarning")).json()[
            "items"]] == ["pod.1"]
        assert len((await api.get(f"{path}?fieldSelector=reason!%3DFailed,source%3Dkubelet")).json()["items"]) == 1
        # Names containing dots round-trip through the subject encoding.
        assert (await api.get(f"{path}/pod.0")).json()["reason"] == "Created"
