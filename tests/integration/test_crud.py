"""CRUD semantics through the real HTTP face, actor pipeline and JetStream log."""

from __future__ import annotations

import base64

import httpx
import pytest
import trio

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
J = {"Content-Type": "application/json"}


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_create_get_list_update_patch_delete(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await api.post(CM, json=cm("c1", k="v"))
        assert r.status_code == 201, r.text
        created = r.json()
        meta = created["metadata"]
        assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"].endswith("Z")
        rv1 = meta["resourceVersion"]
        assert rv1.isdigit()
        assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"

        r = await api.get(f"{CM}/c1")
        assert r.status_code == 200 and r.json() == created

        r = await api.get(CM)
        body = r.json()
        # The namespace also holds kube-root-ca.crt, published by the root-CA controller before ready.
        assert body["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in body["items"]] == [
            "c1", "kube-root-ca.crt"]
        assert int(body["metadata"]["resourceVersion"]) >= int(rv1)

        upd = dict(created, data={"k": "v2"})
        r = await api.put(f"{CM}/c1", json=upd)
        assert r.status_code == 200, r.text
        rv2 = r.json()["metadata"]["resourceVersion"]
        assert int(rv2) > int(rv1) and r.json()["metadata"]["uid"] == meta["uid"]

        # A stale resourceVersion is a 409 Conflict with the apiserver's wording.
        r = await api.put(f"{CM}/c1", json=upd)
        assert r.status_code == 409 and r.json()["reason"] == "Conflict"
        assert "the object has been modified" in r.json()["message"]

        r = await api.patch(f"{CM}/c1", content=b'{"data":{"m":"1"}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200 and r.json()["data"] == {"k": "v2", "m": "1"}
        r = await api.patch(f"{CM}/c1", content=b'[{"op":"replace","path":"/data/k","value":"j"}]',
                            headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 200 and r.json()["data"]["k"] == "j"
        r = await api.patch(f"{CM}/c1", content=b'{"data":{"s":"x","m":null}}',
                            headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert r.status_code == 200 and r.json()["data"] == {"k": "j", "s": "x"}
        r = await api.patch(f"{CM}/c1", content=b'[{"op":"test","path":"/data/k","value":"nope"}]',
                            headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 422

        # A no-op update writes nothing and keeps the version.
        cur = (await api.get(f"{CM}/c1")).json()
        r = await api.put(f"{CM}/c1", json=cur)
        assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"]

        r = await api.delete(f"{CM}/c1")
        assert r.status_code == 200 and r.json()["status"] == "Success"
        assert r.json()["details"]["uid"] == meta["uid"]
        r = await api.get(f"{CM}/c1")
        assert r.status_code == 404 and r.json()["message"] == 'configmaps "c1" not found'
        r = await api.delete(f"{CM}/c1")
        assert r.status_code == 404

        # Create over a tombstone works (CAS expects the tombstone's sequence).
        r = await api.post(CM, json=cm("c1", again="yes"))
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["uid"] != meta["uid"]


async def test_generate_name_dry_run_and_put_create(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await api.post(CM, json={"metadata": {"generateName": "gen-"}, "data": {"a": "b"}})
        assert r.status_code == 201 and r.json()["metadata"]["name"].startswith("gen-")
        assert len(r.json()["metadata"]["name"]) == len("gen-") + 5
        r = await api.post(CM + "?dryRun=All", json=cm("dry"))
        assert r.status_code == 201 and r.json()["metadata"]["name"] == "dry"
        assert (await api.get(f"{CM}/dry")).status_code == 404
        # PUT does not create a ConfigMap (as kube-apiserver), but does create a Lease.
        r = await api.put(f"{CM}/nothere", json=cm("nothere"))
        assert r.status_code == 404
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l1"},
                 "spec": {"holderIdentity": "me"}}
        r = await api.put("/apis/coordination.k8s.io/v1/namespaces/default/leases/l1", json=lease)
        assert r.status_code == 201, r.text
        r = await api.get("/apis/coordination.k8s.io/v1/namespaces/default/leases/l1")
        assert r.json()["spec"]["holderIdentity"] == "me"


async def test_concurrent_updates_one_wins(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        created = (await api.post(CM, json=cm("race", n="0"))).json()
        codes: list[int] = []

        async def one(i: int) -> None:
            r = await api.put(f"{CM}/race", json=dict(created, data={"n": str(i + 1)}))  # no no-op among them
            codes.append(r.status_code)

        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(one, i)
        assert sorted(codes) == [200] + [409] * 49


async def test_concurrent_creates_one_wins(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        results: list[httpx.Response] = []

        async def one(i: int) -> None:
            results.append(await api.post(CM, json=cm("twin", who=str(i))))

        async with trio.open_nursery() as n:
            for i in range(2):
                n.start_soon(one, i)
        assert sorted(r.status_code for r in results) == [201, 409]
        loser = next(r for r in results if r.status_code == 409).json()
        assert loser["reason"] == "AlreadyExists" and loser["message"] == 'configmaps "twin" already exists'


async def test_unconditional_patches_all_apply(api: httpx.AsyncClient) -> None:
    """Patches without a resourceVersion retry on conflict (GuaranteedUpdate): none is lost."""
    with trio.fail_after(30):
        await api.post(CM, json=cm("counter"))

        async def one(i: int) -> None:
            r = await api.patch(f"{CM}/counter", content=b'{"data":{"k%d":"v"}}' % i,
                                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text

        async with trio.open_nursery() as n:
            for i in range(20):
                n.start_soon(one, i)
        data = (await api.get(f"{CM}/counter")).json()["data"]
        assert sorted(data) == sorted(f"k{i}" for i in range(20))


async def test_secret_string_data_and_types(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        path = "/api/v1/namespaces/default/secrets"
        r = await api.post(path, json={"metadata": {"name": "s1"}, "data": {"a": base64.b64encode(b"x").decode()},
                                       "stringData": {"b": "plain"}})
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["type"] == "Opaque" and "stringData" not in s
        assert base64.b64decode(s["data"]["b"]) == b"plain" and base64.b64decode(s["data"]["a"]) == b"x"
        r = await api.post(path, json={"metadata": {"name": "s2"}, "data": {"a": "%%%"}})
        assert r.status_code == 400
        r = await api.get(path + "?fieldSelector=type%3DOpaque")
        assert [i["metadata"]["name"] for i in r.json()["items"]] == ["s1"]


async def test_finalizers_keep_object_until_removed(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        body = cm("fin")
        body["metadata"]["finalizers"] = ["example.com/hold"]
        await api.post(CM, json=body)
        r = await api.delete(f"{CM}/fin")
        assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
        obj = (await api.get(f"{CM}/fin")).json()
        assert obj["metadata"]["deletionTimestamp"]
        r = await api.patch(f"{CM}/fin", content=b'{"metadata":{"finalizers":["example.com/more"]}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 422
        r = await api.patch(f"{CM}/fin", content=b'{"metadata":{"finalizers":null}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200
        assert (await api.get(f"{CM}/fin")).status_code == 404


async def test_delete_preconditions_and_collection(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        c = (await api.post(CM, json=cm("p1"))).json()
        r = await api.request("DELETE", f"{CM}/p1", json={"preconditions": {"uid": "not-it"}})
        assert r.status_code == 409 and "Precondition failed" in r.json()["message"]
        r = await api.request("DELETE", f"{CM}/p1", json={"preconditions": {"resourceVersion": "1"}})
        assert r.status_code == 409
        r = await api.request("DELETE", f"{CM}/p1", json={"preconditions": {"uid": c["metadata"]["uid"]},
                                                         "propagationPolicy": "Background"})
        assert r.status_code == 200
        for i in range(3):
            b = cm(f"dc{i}")
            b["metadata"]["labels"] = {"grp": "x" if i < 2 else "y"}
            await api.post(CM, json=b)
        r = await api.delete(CM + "?labelSelector=grp%3Dx")
        assert r.status_code == 200 and sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["dc0", "dc1"]
        names = [i["metadata"]["name"] for i in (await api.get(CM)).json()["items"]]
        assert "dc2" in names and "dc0" not in names


async def test_list_pages_and_resource_version_rules(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for i in range(5):
            await api.post(CM, json=cm(f"p{i}", v="0"))
        first = (await api.get(CM + "?limit=2")).json()
        # kube-root-ca.crt (published before ready) sorts first.
        assert [i["metadata"]["name"] for i in first["items"]] == ["kube-root-ca.crt", "p0"]
        assert first["metadata"]["remainingItemCount"] == 4
        rv = first["metadata"]["resourceVersion"]
        # Changes after the first page do not leak into later pages: they are served at the same version.
        await api.patch(f"{CM}/p2", content=b'{"data":{"v":"1"}}',
                        headers={"Content-Type": "application/merge-patch+json"})
        await api.post(CM, json=cm("p9"))
        second = (await api.get(CM + f"?limit=2&continue={first['metadata']['continue']}")).json()
        assert [i["metadata"]["name"] for i in second["items"]] == ["p1", "p2"]
        assert second["items"][1]["data"] == {"v": "0"} and second["metadata"]["resourceVersion"] == rv
        third = (await api.get(CM + f"?limit=3&continue={second['metadata']['continue']}")).json()
        assert [i["metadata"]["name"] for i in third["items"]] == ["p3", "p4"] and "continue" not in third["metadata"]
        # Exact reads come from the log's history; NotOlderThan and 0 from memory.
        exact = (await api.get(CM + f"?resourceVersion={rv}&resourceVersionMatch=Exact")).json()
        assert sorted(i["metadata"]["name"] for i in exact["items"]) == ["kube-root-ca.crt"] + [
            f"p{i}" for i in range(5)]
        assert exact["metadata"]["resourceVersion"] == rv
        newer = (await api.get(CM + f"?resourceVersion={rv}&resourceVersionMatch=NotOlderThan")).json()
        assert "p9" in [i["metadata"]["name"] for i in newer["items"]]
        assert "p9" in [i["metadata"]["name"] for i in (await api.get(CM + "?resourceVersion=0")).json()["items"]]
        got = await api.get(f"{CM}/p2?resourceVersion=0")
        assert got.status_code == 200 and got.json()["data"] == {"v": "1"}
