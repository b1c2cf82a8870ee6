"""The official `kubernetes` Python client against a running jetkube, over HTTPS, with the
generated kubeconfig: create, list, watch, patch and delete configmaps."""

from __future__ import annotations

import threading
from typing import Any

import kubernetes
import pytest
import trio

from gateway import Running

pytestmark = pytest.mark.e2e


def _core(running: Running) -> Any:
    api_client = kubernetes.config.new_client_from_config(config_file=str(running.kubeconfig))
    return kubernetes.client.CoreV1Api(api_client)


async def test_python_client_configmap_lifecycle(server: Running) -> None:
    v1 = await trio.to_thread.run_sync(_core, server)
    ns = "default"
    body = {"metadata": {"name": "py", "labels": {"x": "1"}}, "data": {"k": "v"}}

    def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        created = v1.create_namespaced_config_map(ns, body)
        out["created_rv"] = created.metadata.resource_version
        try:
            v1.create_namespaced_config_map(ns, body)
        except kubernetes.client.ApiException as e:
            out["dup_status"] = e.status
            out["dup_reason"] = __import__("json").loads(e.body)["reason"]
        lst = v1.list_namespaced_config_map(ns, label_selector="x=1", limit=10)
        out["listed"] = [i.metadata.name for i in lst.items]
        out["list_rv"] = lst.metadata.resource_version
        v1.patch_namespaced_config_map("py", ns, {"data": {"k": "v2"}})
        v1.patch_namespaced_config_map("py", ns, [{"op": "add", "path": "/data/j", "value": "1"}])
        out["data"] = v1.read_namespaced_config_map("py", ns).data
        got = v1.read_namespaced_config_map("py", ns)
        got.data["put"] = "yes"
        out["replaced"] = v1.replace_namespaced_config_map("py", ns, got).data
        v1.delete_namespaced_config_map("py", ns, propagation_policy="Foreground")
        try:
            # As on kube: gone, or still there marked for deletion until the garbage collector
            # removes its foregroundDeletion finalizer.
            marked = v1.read_namespaced_config_map("py", ns)
            out["after_delete"] = 404 if marked.metadata.deletion_timestamp else 200
        except kubernetes.client.ApiException as e:
            out["after_delete"] = e.status
        return out

    with trio.fail_after(60):
        out = await trio.to_thread.run_sync(scenario)
    assert out["dup_status"] == 409 and out["dup_reason"] == "AlreadyExists"
    assert out["listed"] == ["py"]
    assert out["data"] == {"k": "v2", "j": "1"}
    assert out["replaced"] == {"k": "v2", "j": "1", "put": "yes"}
    assert out["after_delete"] == 404

    # Watch from the list's resourceVersion: the client sees exactly the changes that followed.
    def watch() -> list[tuple[str, str]]:
        w = kubernetes.watch.Watch()
        seen: list[tuple[str, str]] = []
        for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=out["list_rv"], timeout_seconds=20):
            seen.append((ev["type"], ev["object"].data.get("k") if ev["object"].data else ""))
            if ev["type"] == "DELETED":
                w.stop()
        return seen

    with trio.fail_after(60):
        seen = await trio.to_thread.run_sync(watch)
    # The foreground delete marks the object (deletionTimestamp, foregroundDeletion), then it goes.
    assert seen == [("MODIFIED", "v2"), ("MODIFIED", "v2"), ("MODIFIED", "v2"), ("MODIFIED", "v2"), ("DELETED", "v2")]


async def test_python_client_watch_live(server: Running) -> None:
    v1 = await trio.to_thread.run_sync(_core, server)
    await trio.to_thread.run_sync(lambda: v1.create_namespaced_config_map("default", {"metadata": {"name": "live"}}))
    seen_added = threading.Event()

    def watch() -> list[str]:
        w = kubernetes.watch.Watch()
        types: list[str] = []
        for ev in w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=20,
                           field_selector="metadata.name=live"):
            types.append(ev["type"])
            if ev["type"] == "ADDED":
                seen_added.set()
            if ev["type"] == "DELETED":
                w.stop()
        return types

    result: list[list[str]] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as n:

            async def run_watch() -> None:
                result.append(await trio.to_thread.run_sync(watch))

            n.start_soon(run_watch)
            # The watch starts with a synthetic ADDED for the existing object; then we delete it.
            assert await trio.to_thread.run_sync(seen_added.wait, 30)
            await trio.to_thread.run_sync(lambda: v1.delete_namespaced_config_map("live", "default"))
    assert result == [["ADDED", "DELETED"]]
