"""Garbage collection (issue 11): ownerReferences and DELETE's propagationPolicy, as kube's garbage
collector and the apiserver's delete path behave: Background, Foreground (with chains and
blockOwnerDeletion), Orphan, cluster-scoped owners, stale uids, two gateways, a restart of the
collector midway, and ``kubectl delete --cascade=…``. Waits poll the API (external state) under
``fail_after``; deletion order is read from a watch."""

from __future__ import annotations

import json
import os
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, default_service_account, kubectl, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/{ns}/configmaps"


def ref(owner: dict[str, Any], *, block: bool | None = None) -> dict[str, Any]:
    r = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
         "uid": owner["metadata"]["uid"]}
    if block is not None:
        r["blockOwnerDeletion"] = block
    return r


async def make_cm(api: httpx.AsyncClient, ns: str, name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name}, "data": {"k": name}}
    if owners:
        body["metadata"]["ownerReferences"] = list(owners)
    r = await api.post(CM.format(ns=ns), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def names(api: httpx.AsyncClient, ns: str, prefix: str) -> set[str]:
    r = await api.get(CM.format(ns=ns))
    assert r.status_code == 200
    return {i["metadata"]["name"] for i in r.json()["items"] if i["metadata"]["name"].startswith(prefix)}


async def wait_names(api: httpx.AsyncClient, ns: str, prefix: str, want: set[str]) -> None:
    async def probe() -> bool:
        return await names(api, ns, prefix) == want
    await poll_until(probe)


async def make_ns(api: httpx.AsyncClient, ns: str) -> None:
    r = await api.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
    assert r.status_code == 201, r.text


async def test_background_default_deletes_dependents_and_grand_dependents(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(30):
            await make_ns(api, "bg")
            owner = await make_cm(api, "bg", "o")
            deps = [await make_cm(api, "bg", f"d{i}", ref(owner)) for i in range(4)]
            for i, d in enumerate(deps):
                await make_cm(api, "bg", f"g{i}", ref(d))
            keep = await make_cm(api, "bg", "other")
            # Two owners, one survives: the dependent stays, losing only the dead owner's reference.
            both = await make_cm(api, "bg", "d-both", ref(owner), ref(keep))
            r = await api.delete(CM.format(ns="bg") + "/o")  # no policy: the kind's default, Background
            assert r.status_code == 200 and r.json()["kind"] == "Status", r.text
            await wait_names(api, "bg", "d", {"d-both"})
            await wait_names(api, "bg", "g", set())
            async def ref_dropped() -> bool:
                got = (await api.get(CM.format(ns="bg") + "/d-both")).json()
                return [o["uid"] for o in got["metadata"].get("ownerReferences", [])] == [keep["metadata"]["uid"]]
            await poll_until(ref_dropped)
            assert (await api.get(CM.format(ns="bg") + "/d-both")).json()["metadata"]["uid"] == \
                both["metadata"]["uid"]


async def _deleted_order(api: httpx.AsyncClient, ns: str, rv: str, count: int, out: list[str],
                         done: trio.Event) -> None:
    async with api.stream("GET", CM.format(ns=ns) + f"?watch=1&resourceVersion={rv}") as r:
        async for line in r.aiter_lines():
            if not line:
                continue
            ev = json.loads(line)
            if ev["type"] == "DELETED":
                out.append(ev["object"]["metadata"]["name"])
                if len(out) == count:
                    done.set()
                    return


async def test_foreground_chain_deletes_blocking_dependents_first(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api, client_for(server) as watcher:
        with trio.fail_after(40):
            await make_ns(api, "fg")
            owner = await make_cm(api, "fg", "o")
            deps = [await make_cm(api, "fg", f"d{i}", ref(owner, block=True)) for i in range(3)]
            grands = [await make_cm(api, "fg", f"g{i}", ref(d, block=True)) for i, d in enumerate(deps)]
            loose = await make_cm(api, "fg", "loose", ref(owner))  # no blockOwnerDeletion: deleted, not waited for
            rv = loose["metadata"]["resourceVersion"]
            order: list[str] = []
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_deleted_order, watcher, "fg", rv, 8, order, done)
                r = await api.delete(CM.format(ns="fg") + "/o", params={"propagationPolicy": "Foreground"})
                assert r.status_code == 200, r.text
                got = r.json()
                assert got["kind"] == "ConfigMap"
                assert got["metadata"]["finalizers"] == ["foregroundDeletion"]
                assert got["metadata"]["deletionTimestamp"]
                await done.wait()
            assert set(order) == {"o", "loose", *(f"d{i}" for i in range(3)), *(f"g{i}" for i in range(3))}
            assert order[-1] == "o", order
            for i in range(3):  # each grand-dependent before its (foreground-deleted) parent
                assert order.index(f"g{i}") < order.index(f"d{i}"), order
            assert grands  # created


async def test_orphan_removes_owner_references_and_keeps_dependents(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(30):
            await make_ns(api, "or")
            owner = await make_cm(api, "or", "o")
            other = await make_cm(api, "or", "other")
            for i in range(3):
                await make_cm(api, "or", f"d{i}", ref(owner))
            await make_cm(api, "or", "d-both", ref(owner), ref(other))
            # The DeleteOptions body carries the policy this time (kubectl sends it there).
            r = await api.request("DELETE", CM.format(ns="or") + "/o",
                                  json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"})
            assert r.status_code == 200, r.text
            assert r.json()["metadata"]["finalizers"] == ["orphan"]
            await wait_names(api, "or", "o", {"other"})
            items = (await api.get(CM.format(ns="or"))).json()["items"]
            by = {i["metadata"]["name"]: i for i in items}
            for i in range(3):
                assert "ownerReferences" not in by[f"d{i}"]["metadata"], by[f"d{i}"]
            assert [o["name"] for o in by["d-both"]["metadata"]["ownerReferences"]] == ["other"]


async def test_delete_options_refusals(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        await make_ns(api, "opt")
        await make_cm(api, "opt", "x")
        r = await api.delete(CM.format(ns="opt") + "/x",
                             params={"propagationPolicy": "Foreground", "orphanDependents": "true"})
        assert r.status_code == 422, r.text
        assert r.json()["message"] == ('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
                                       '"Foreground": orphanDependents and deletionPropagation cannot be both set')
        # orphanDependents alone still works (deprecated, as kube keeps it).
        r = await api.delete(CM.format(ns="opt") + "/x", params={"orphanDependents": "true"})
        assert r.status_code == 200 and r.json()["metadata"]["finalizers"] == ["orphan"], r.text
        # orphanDependents=false on an object its finalizers keep: 202 Accepted, as kube's handler.
        r = await api.post(CM.format(ns="opt"), json={"metadata": {"name": "held", "finalizers": ["example.com/x"]}})
        assert r.status_code == 201, r.text
        r = await api.request("DELETE", CM.format(ns="opt") + "/held", json={"orphanDependents": False})
        assert r.status_code == 202 and r.json()["metadata"]["deletionTimestamp"], r.text


async def test_cluster_scoped_owner_stale_uid_and_invalid_refs(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(30):
            for ns in ("cs1", "cs2"):
                await make_ns(api, ns)
            r = await api.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", json={"metadata": {"name": "gc-owner"}})
            assert r.status_code == 201, r.text
            role = r.json()
            for ns in ("cs1", "cs2"):
                for i in range(3):
                    await make_cm(api, ns, f"cr{i}", ref(role))
            # A dependent naming an owner by name whose uid is another (a recreated owner): collected.
            live = await make_cm(api, "cs1", "live")
            stale = {**ref(live), "uid": "00000000-0000-0000-0000-000000000000"}
            await make_cm(api, "cs1", "stale", stale)
            # A cluster-scoped dependent of a namespaced kind cannot be resolved: left alone, as kube.
            r = await api.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", json={"metadata": {
                "name": "gc-bad-ref", "ownerReferences": [{**ref(live), "uid": "11111111-0000-0000-0000-000000000000"}]}})
            assert r.status_code == 201, r.text
            await wait_names(api, "cs1", "stale", set())
            # A Secret owning ConfigMaps; a reference to it from another namespace is to an absent
            # owner there (kube looks for a namespaced owner in the dependent's namespace only).
            r = await api.post("/api/v1/namespaces/cs1/secrets", json={"metadata": {"name": "sec"},
                                                                      "stringData": {"a": "b"}})
            assert r.status_code == 201, r.text
            sec = r.json()
            for i in range(3):
                await make_cm(api, "cs1", f"sec{i}", ref(sec))
            await make_cm(api, "cs2", "sec-elsewhere", ref(sec))
            await wait_names(api, "cs2", "sec", set())
            assert await names(api, "cs1", "sec") == {"sec0", "sec1", "sec2"}
            assert (await api.delete("/api/v1/namespaces/cs1/secrets/sec")).status_code == 200
            await wait_names(api, "cs1", "sec", set())
            r = await api.delete("/apis/rbac.authorization.k8s.io/v1/clusterroles/gc-owner")
            assert r.status_code == 200, r.text
            for ns in ("cs1", "cs2"):
                await wait_names(api, ns, "cr", set())
            assert (await api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/gc-bad-ref")).status_code == 200
            # ... and reported as kube does: a Warning Event on the dependent.
            events: list[dict[str, Any]] = []

            async def reported() -> bool:
                r = await api.get("/api/v1/namespaces/default/events",
                                  params={"fieldSelector": "reason=OwnerRefInvalidNamespace"})
                events[:] = r.json()["items"]
                return bool(events)

            await poll_until(reported)
            (ev,) = events
            assert ev["type"] == "Warning" and ev["involvedObject"]["name"] == "gc-bad-ref"
            assert ev["involvedObject"]["kind"] == "ClusterRole" and ev["source"]["component"] == \
                "garbage-collector-controller"
            assert ev["message"] == ('ownerRef [v1/ConfigMap, namespace: , name: live, uid: '
                                     '11111111-0000-0000-0000-000000000000] does not exist in namespace ""')
            assert (await api.get(CM.format(ns="cs1") + "/live")).status_code == 200


async def test_two_gateways_collect_together(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(60):
            await make_ns(api_a, "two")
            owners = [await make_cm(api_a, "two", f"o{i}") for i in range(6)]
            async with trio.open_nursery() as nursery:
                for i, o in enumerate(owners):
                    for j in range(5):
                        nursery.start_soon(make_cm, api_b if j % 2 else api_a, "two", f"d{i}-{j}",
                                           ref(o, block=True))
            policies = ["Background", "Foreground", "Orphan"]

            async def delete(api: httpx.AsyncClient, name: str, policy: str) -> None:
                r = await api.delete(CM.format(ns="two") + f"/{name}", params={"propagationPolicy": policy})
                assert r.status_code == 200, r.text

            rv = (await api_a.get(CM.format(ns="two"))).json()["metadata"]["resourceVersion"]
            events: list[tuple[str, str]] = []
            marker_seen = trio.Event()

            async def watch() -> None:
                async with client_for(b) as w, w.stream(
                        "GET", CM.format(ns="two") + f"?watch=1&resourceVersion={rv}") as r:
                    async for line in r.aiter_lines():
                        if not line:
                            continue
                        ev = json.loads(line)
                        name = ev["object"]["metadata"]["name"]
                        if name == "zz-marker":
                            marker_seen.set()
                            return
                        if name != "kube-root-ca.crt":
                            events.append((ev["type"], name))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with trio.open_nursery() as deletes:
                    for i in range(6):
                        deletes.start_soon(delete, api_a if i % 2 else api_b, f"o{i}", policies[i % 3])
                orphaned = {f"d{i}-{j}" for i in range(6) if policies[i % 3] == "Orphan" for j in range(5)}
                await wait_names(api_a, "two", "d", orphaned)
                await wait_names(api_b, "two", "o", set())
                for item in (await api_b.get(CM.format(ns="two"))).json()["items"]:
                    assert "ownerReferences" not in item["metadata"], item
                # Everything written up to a marker appended after the collectors were done.
                await make_cm(api_a, "two", "zz-marker")
                await marker_seen.wait()
            # Each object written once by the two collectors together: 20 dependents deleted, 10
            # orphaned (MODIFIED once), 2 Background owners deleted, 4 owners marked then deleted.
            deps = sorted(t for t, n in events if n.startswith("d"))
            assert deps == ["DELETED"] * 20 + ["MODIFIED"] * 10, events
            owners = sorted((n, t) for t, n in events if n.startswith("o"))
            assert owners == sorted([(f"o{i}", "DELETED") for i in range(6)]
                                    + [(f"o{i}", "MODIFIED") for i in range(6) if policies[i % 3] != "Background"])


async def test_collector_resumes_after_restart(start_server: StartServer, tmp_path: Path) -> None:
    """Deletions requested while no collector runs (a gateway with controllers off) are finished by
    the collector of a gateway started later: it rebuilds its index from the log."""
    first = await start_server(run_controllers=False)
    async with client_for(first) as api:
        with trio.fail_after(30):
            for ns in ("default",):
                assert (await api.get(f"/api/v1/namespaces/{ns}")).status_code in (200, 404)
            await make_ns(api, "rs")
            fg = await make_cm(api, "rs", "fg")
            bg = await make_cm(api, "rs", "bg")
            orph = await make_cm(api, "rs", "orph")
            for i in range(3):
                d = await make_cm(api, "rs", f"fg-d{i}", ref(fg, block=True))
                await make_cm(api, "rs", f"fg-g{i}", ref(d, block=True))
                await make_cm(api, "rs", f"bg-d{i}", ref(bg))
                await make_cm(api, "rs", f"orph-d{i}", ref(orph))
            assert (await api.delete(CM.format(ns="rs") + "/fg", params={"propagationPolicy": "Foreground"})).status_code == 200
            assert (await api.delete(CM.format(ns="rs") + "/bg")).status_code == 200
            assert (await api.delete(CM.format(ns="rs") + "/orph", params={"propagationPolicy": "Orphan"})).status_code == 200
            assert len(await names(api, "rs", "")) == 3 + 3 * 4 - 1  # only bg is gone
    second = await start_server()
    async with client_for(second) as api:
        with trio.fail_after(30):
            await wait_names(api, "rs", "fg", set())
            await wait_names(api, "rs", "bg", set())
            await wait_names(api, "rs", "orph", {f"orph-d{i}" for i in range(3)})


async def test_kubectl_delete_cascade(start_server: StartServer) -> None:
    binary = kubectl()
    server = await start_server()
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
    async with client_for(server) as api:
        with trio.fail_after(60):
            await make_ns(api, "kc")
            for policy in ("foreground", "orphan", "background"):
                owner = await make_cm(api, "kc", f"{policy}-o")
                for i in range(3):
                    await make_cm(api, "kc", f"{policy}-d{i}", ref(owner, block=True))
                cmd = [binary, "-n", "kc", "delete", "configmap", f"{policy}-o", f"--cascade={policy}"]
                out = await trio.to_thread.run_sync(partial(subprocess.run, cmd, check=False, env=env,
                                                            capture_output=True, text=True, timeout=50))
                assert out.returncode == 0, out.stderr
                assert out.stdout.strip() == f'configmap "{policy}-o" deleted', out.stdout
                if policy == "foreground":  # kubectl waited for the owner: its dependents went first
                    assert await names(api, "kc", "foreground") == set()
            await wait_names(api, "kc", "orphan", {f"orphan-d{i}" for i in range(3)})
            await wait_names(api, "kc", "background", set())


async def test_kubectl_delete_deployment_cascades_to_replicasets_and_pods(start_server: StartServer) -> None:
    """What workload controllers write (ownerReferences with controller and blockOwnerDeletion) is
    collected as on kube: ``kubectl delete deployment --cascade=foreground`` takes the ReplicaSets and
    their Pods first; ``--cascade=orphan`` leaves them without the reference."""
    binary = kubectl()
    server = await start_server()
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig)}
    apps = "/apis/apps/v1/namespaces/wl"
    pod_spec = {"containers": [{"name": "c", "image": "nginx"}]}

    async def deployment(api: httpx.AsyncClient, name: str) -> None:
        labels = {"app": name}
        r = await api.post(f"{apps}/deployments", json={"metadata": {"name": name}, "spec": {
            "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})
        assert r.status_code == 201, r.text
        d = r.json()
        for i in range(2):  # what the deployment controller would write
            r = await api.post(f"{apps}/replicasets", json={"metadata": {
                "name": f"{name}-rs{i}", "labels": labels,
                "ownerReferences": [{**ref(d, block=True), "controller": True}]}, "spec": {
                "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})
            assert r.status_code == 201, r.text
            rs = r.json()
            for j in range(3):
                r = await api.post("/api/v1/namespaces/wl/pods", json={"metadata": {
                    "name": f"{name}-rs{i}-p{j}", "labels": labels,
                    "ownerReferences": [{**ref(rs, block=True), "controller": True}]}, "spec": pod_spec})
                assert r.status_code == 201, r.text

    async def count(api: httpx.AsyncClient, path: str, prefix: str) -> list[dict[str, Any]]:
        items = (await api.get(path)).json()["items"]
        return [i for i in items if i["metadata"]["name"].startswith(prefix)]

    async with client_for(server) as api:
        with trio.fail_after(60):
            await make_ns(api, "wl")
            await default_service_account(api, "wl")  # before its pods (the ServiceAccount plugin)
            await deployment(api, "fg")
            await deployment(api, "or")
            for name, cascade in (("fg", "foreground"), ("or", "orphan")):
                cmd = [binary, "-n", "wl", "delete", "deployment", name, f"--cascade={cascade}"]
                out = await trio.to_thread.run_sync(partial(subprocess.run, cmd, check=False, env=env,
                                                            capture_output=True, text=True, timeout=50))
                assert out.returncode == 0, out.stderr
                assert out.stdout.strip() == f'deployment.apps "{name}" deleted'
            # kubectl waited for the foreground delete: the owner went last, after everything it owned.
            assert await count(api, f"{apps}/replicasets", "fg") == []
            assert await count(api, "/api/v1/namespaces/wl/pods", "fg") == []
            rss = await count(api, f"{apps}/replicasets", "or")
            assert len(rss) == 2 and all("ownerReferences" not in r["metadata"] for r in rss)
            pods = await count(api, "/api/v1/namespaces/wl/pods", "or")
            assert len(pods) == 6 and all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)
