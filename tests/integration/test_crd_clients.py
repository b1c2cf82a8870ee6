"""Custom resources through the official Python client: ``CustomObjectsApi`` (create, list with a
label selector, patch, watch, status) and the dynamic client; a CRD's schema change applying to
later writes; creates refused while the CRD is terminating."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes
import pytest
import trio
from kubernetes.dynamic import DynamicClient

from gateway import Running
from tests.integration.test_crd import CRDS, established, widget, widget_crd

pytestmark = pytest.mark.integration

G, V, P = "example.com", "v1", "widgets"


def clients(server: Running) -> tuple[Any, Any]:
    api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
    return api, kubernetes.client.CustomObjectsApi(api)


async def test_custom_objects_api_and_dynamic_client(server: Running) -> None:
    def scenario() -> None:
        api, _ = clients(server)
        ext = kubernetes.client.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(widget_crd())

    with trio.fail_after(60):
        await trio.to_thread.run_sync(scenario)
        from tests.conftest import client_for
        async with client_for(server) as h:
            await established(h, "widgets.example.com")

        def objects() -> None:
            api, co = clients(server)
            ext = kubernetes.client.ApiextensionsV1Api(api)
            for i in range(6):
                body = widget(f"p{i}", size=i + 1)
                body["metadata"]["labels"] = {"tier": "a" if i % 2 else "b"}
                co.create_namespaced_custom_object(G, V, "default", P, body)
            listed = co.list_namespaced_custom_object(G, V, "default", P, label_selector="tier=a")
            assert [o["metadata"]["name"] for o in listed["items"]] == ["p1", "p3", "p5"]
            assert listed["kind"] == "WidgetList" and listed["apiVersion"] == "example.com/v1"
            got = co.patch_namespaced_custom_object(G, V, "default", P, "p1", {"spec": {"size": 9}})
            assert got["spec"]["size"] == 9 and got["metadata"]["generation"] == 2
            got = co.patch_namespaced_custom_object_status(G, V, "default", P, "p1",
                                                           {"status": {"phase": "Ready", "replicas": 2}})
            assert got["status"] == {"phase": "Ready", "replicas": 2} and got["metadata"]["generation"] == 2
            assert co.get_namespaced_custom_object_status(G, V, "default", P, "p1")["status"]["phase"] == "Ready"

            # Watch: the list's version, then a change and a deletion.
            rv = listed["metadata"]["resourceVersion"]
            co.delete_namespaced_custom_object(G, V, "default", P, "p3")
            w = kubernetes.watch.Watch()
            seen = []
            for ev in w.stream(co.list_namespaced_custom_object, G, V, "default", P, label_selector="tier=a",
                               resource_version=rv, timeout_seconds=10):
                seen.append((ev["type"], ev["object"]["metadata"]["name"]))
                if ev["type"] == "DELETED":
                    w.stop()
            assert seen == [("MODIFIED", "p1"), ("MODIFIED", "p1"), ("DELETED", "p3")], seen

            # The dynamic client finds the kind by discovery.
            dyn = DynamicClient(api)
            res = dyn.resources.get(api_version="example.com/v1", kind="Widget")
            assert res.namespaced and res.name == "widgets"
            obj = res.create(body=widget("d1", size=2), namespace="default")
            assert obj.spec.color == "red"
            items = res.get(namespace="default", label_selector="app=w").items
            assert "d1" in [i.metadata.name for i in items]
            res.delete(name="d1", namespace="default")

            # A schema change applies to later writes (the stored objects are served as they are).
            crd = ext.read_custom_resource_definition("widgets.example.com")
            crd_d = api.sanitize_for_serialization(crd)
            new = copy.deepcopy(crd_d)
            new["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"][
                "maximum"] = 5
            new["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["added"] = {
                "type": "string", "default": "yes"}
            ext.replace_custom_resource_definition("widgets.example.com", new)

        await trio.to_thread.run_sync(objects)

        async with client_for(server) as h:
            async def tightened() -> bool:
                r = await h.post("/apis/example.com/v1/namespaces/default/widgets", json=widget("big", size=6))
                return r.status_code == 422 and "should be less than or equal to 5" in r.json()["message"]
            from tests.conftest import poll_until
            await poll_until(tightened)
            got = (await h.get("/apis/example.com/v1/namespaces/default/widgets/p1")).json()
            assert got["spec"]["size"] == 9 and got["spec"]["added"] == "yes"  # defaulted on read
            listed = (await h.get("/apis/example.com/v1/namespaces/default/widgets")).json()["items"]
            assert all(i["spec"]["added"] == "yes" for i in listed)

            # Terminating: creates refused (405), the rest served until the objects are gone; an
            # object's own finalizer holds the CRD until it is removed.
            w = "/apis/example.com/v1/namespaces/default/widgets"
            merge = {"Content-Type": "application/merge-patch+json"}
            r = await h.patch(f"{w}/p1", content=b'{"metadata":{"finalizers":["example.com/hold"]}}', headers=merge)
            assert r.status_code == 200, r.text
            r = await h.patch(f"{w}/p1", content=b'{"spec":{"size":1}}',
                              headers={"Content-Type": "application/strategic-merge-patch+json"})
            assert r.status_code == 415, r.text
            assert (await h.delete(f"{CRDS}/widgets.example.com")).status_code == 200

            async def terminating() -> bool:
                crd = (await h.get(f"{CRDS}/widgets.example.com")).json()
                return any(c["type"] == "Terminating" and c["status"] == "True"
                           for c in crd.get("status", {}).get("conditions") or ())
            await poll_until(terminating)

            async def only_p1_left() -> bool:
                return [i["metadata"]["name"] for i in (await h.get(w)).json()["items"]] == ["p1"]
            await poll_until(only_p1_left)
            r = await h.post(w, json=widget("late", size=1))
            assert r.status_code == 405, r.text
            assert r.json()["message"] == "create not allowed while custom resource definition is terminating"
            r = await h.patch(f"{w}/p1", content=b'{"metadata":{"finalizers":null}}', headers=merge)
            assert r.status_code == 200, r.text

            async def gone() -> bool:
                return (await h.get(f"{CRDS}/widgets.example.com")).status_code == 404
            await poll_until(gone)
            assert (await h.get(w)).status_code == 404
