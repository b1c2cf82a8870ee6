"""Write-path defects of issue 7, each through the real HTTP face, actors and JetStream log."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from actors import SYSTEM_USER, Forbidden, Pipeline, Request, SigningKey, TokenAuthenticator
from bus import Key, StreamConfig, open_bridge, open_log
from kinds import Registry
from projections import Projection
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
CR = "/apis/rbac.authorization.k8s.io/v1/clusterroles"


def cm(name: str, labels: dict[str, str] | None = None,
       finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


ROOT_CA = "kube-root-ca.crt"  # the root-CA publisher's ConfigMap, in every namespace as in kube


def names(body: dict[str, Any]) -> list[str]:
    """The test's own objects in a list (the root-CA publisher's ConfigMap aside)."""
    return sorted(i["metadata"]["name"] for i in body["items"] if i["metadata"]["name"] != ROOT_CA)


async def watch_deleted(api: httpx.AsyncClient, url: str, want: int, started: trio.Event,
                        seen: list[str]) -> None:
    """Record the names of DELETED events on ``url`` until ``want`` of them arrived."""
    async with api.stream("GET", url) as r:
        assert r.status_code == 200
        started.set()
        async for line in r.aiter_lines():
            if not line:
                continue
            ev = json.loads(line)
            if ev["type"] == "DELETED":
                seen.append(ev["object"]["metadata"]["name"])
                if len(seen) >= want:
                    return


# ---- 1. deletecollection deletes every match, each with its own identity on the log ----------------

async def test_deletecollection_deletes_every_match_and_watchers_see_each(start_server: StartServer) -> None:
    with trio.fail_after(60):
        a, b = await start_server(), await start_server()
        async with client_for(a) as api, client_for(b) as other:
            await api.post("/api/v1/namespaces", json={"metadata": {"name": "elsewhere"}})
            for i in range(7):
                assert (await api.post(CM, json=cm(f"x{i}", {"x": "1"}))).status_code == 201
            for i in range(3):
                assert (await api.post(CM, json=cm(f"keep{i}", {"x": "2"}))).status_code == 201
            r = await api.post("/api/v1/namespaces/elsewhere/configmaps", json=cm("far", {"x": "1"}))
            assert r.status_code == 201
            rv = (await api.get(CM)).json()["metadata"]["resourceVersion"]
            seen_here: list[str] = []
            seen_there: list[str] = []
            started = [trio.Event(), trio.Event()]
            async with trio.open_nursery() as n:
                url = f"{CM}?watch=1&resourceVersion={rv}"
                n.start_soon(watch_deleted, api, url, 7, started[0], seen_here)
                n.start_soon(watch_deleted, other, f"{url}&labelSelector=x%3D1", 7, started[1], seen_there)
                for s in started:
                    await s.wait()
                r = await api.delete(f"{CM}?labelSelector=x%3D1")
                assert r.status_code == 200, r.text
                assert r.json()["kind"] == "ConfigMapList"
                assert names(r.json()) == [f"x{i}" for i in range(7)]
            assert sorted(seen_here) == sorted(seen_there) == [f"x{i}" for i in range(7)]
            # Read on the other gateway: exactly the unselected ones remain.
            assert names((await other.get(CM)).json()) == ["keep0", "keep1", "keep2"]
            assert names((await other.get("/api/v1/namespaces/elsewhere/configmaps")).json()) == ["far"]

            # Without a selector: everything in the namespace, nothing elsewhere.
            r = await other.delete(CM)
            assert r.status_code == 200 and names(r.json()) == ["keep0", "keep1", "keep2"]
            assert names((await api.get(CM)).json()) == []  # (the root-CA publisher may have re-created its own)
            assert names((await api.get("/api/v1/namespaces/elsewhere/configmaps")).json()) == ["far"]


async def test_deletecollection_cluster_scoped(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        before = names((await api.get(CR)).json())
        for i in range(6):
            body = {"metadata": {"name": f"cr{i}", "labels": {"t": "a" if i < 5 else "b"}}, "rules": []}
            assert (await api.post(CR, json=body)).status_code == 201
        r = await api.delete(f"{CR}?labelSelector=t%3Da")
        assert r.status_code == 200 and names(r.json()) == [f"cr{i}" for i in range(5)]
        assert names((await api.get(CR)).json()) == sorted([*before, "cr5"])
        r = await api.delete(f"{CR}?labelSelector=t")
        assert r.status_code == 200 and names(r.json()) == ["cr5"]
        assert names((await api.get(CR)).json()) == before


async def test_deletecollection_with_finalizers_marks_some_deletes_others(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for i in range(6):
            fins = ["example.com/hold"] if i % 2 else None
            assert (await api.post(CM, json=cm(f"f{i}", {"g": "f"}, fins))).status_code == 201
        r = await api.delete(f"{CM}?labelSelector=g%3Df")
        assert r.status_code == 200 and names(r.json()) == [f"f{i}" for i in range(6)]
        marked = {i["metadata"]["name"]: i["metadata"].get("deletionTimestamp") for i in r.json()["items"]}
        assert all(marked[f"f{i}"] for i in (1, 3, 5)) and not any(marked[f"f{i}"] for i in (0, 2, 4))
        left = (await api.get(f"{CM}?labelSelector=g%3Df")).json()["items"]
        assert names({"items": left}) == ["f1", "f3", "f5"]
        assert all(i["metadata"]["deletionTimestamp"] for i in left)
        # Again: the marked ones stay as they are (no new write), nothing else is touched.
        r = await api.delete(f"{CM}?labelSelector=g%3Df")
        assert r.status_code == 200 and names(r.json()) == ["f1", "f3", "f5"]
        for i in (1, 3, 5):
            r = await api.patch(f"{CM}/f{i}", content=b'{"metadata":{"finalizers":null}}',
                                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200
        assert (await api.get(f"{CM}?labelSelector=g%3Df")).json()["items"] == []


# ---- 2. the namespaces collection cannot be deleted; items pass admission ------------------------------

async def test_namespaces_collection_delete_is_method_not_allowed(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        await api.post("/api/v1/namespaces", json={"metadata": {"name": "n1", "labels": {"a": "b"}}})
        await api.post("/api/v1/namespaces/default/configmaps", json=cm("stays"))
        for url in ("/api/v1/namespaces", "/api/v1/namespaces?labelSelector=a%3Db"):
            r = await api.delete(url)
            assert r.status_code == 405, r.text
            assert r.json()["reason"] == "MethodNotAllowed"
        ns = names((await api.get("/api/v1/namespaces")).json())
        assert {"default", "kube-system", "kube-public", "n1"} <= set(ns)
        for n in ("default", "n1"):
            assert (await api.get(f"/api/v1/namespaces/{n}")).json()["status"]["phase"] == "Active"
        assert (await api.get("/api/v1/namespaces/default/configmaps/stays")).status_code == 200
        # Discovery agrees: no deletecollection on namespaces, as kube-apiserver.
        res = (await api.get("/api/v1")).json()["resources"]
        verbs = next(r["verbs"] for r in res if r["name"] == "namespaces")
        assert "deletecollection" not in verbs and "delete" in verbs
        assert "deletecollection" in next(r["verbs"] for r in res if r["name"] == "configmaps")


async def test_each_deletecollection_item_passes_admission(nats_url: str) -> None:
    """Past the gateway (as a controller would ask), a kind that did allow deletecollection still
    gets every item admitted as a single delete: the immortal namespaces are refused."""
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge, trio.open_nursery() as nursery:
            log = await open_log(bridge, StreamConfig(name="ADM", prefix="adm"))
            projection = Projection(log)
            await nursery.start(projection.run)
            key = SigningKey(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            pipeline = Pipeline(log, projection, Registry(), TokenAuthenticator({}), key)
            await nursery.start(pipeline.run)
            ns_def = Registry().by_resource("", "namespaces")
            assert ns_def is not None and "deletecollection" not in ns_def.verbs
            every = msgspec.structs.replace(ns_def, verbs=(*ns_def.verbs, "deletecollection"))
            req = Request(verb="deletecollection", rdef=every, user=SYSTEM_USER, audit_id="adm-1")
            with pytest.raises(Forbidden, match='namespaces "default" is forbidden'):
                await pipeline.resource.ask(req, timeout_s=20)
            await projection.consistent()
            for n in ("default", "kube-system", "kube-public"):
                entry = projection.get(Key("default", "", "namespaces", "", n))
                assert entry is not None and entry.fields["status.phase"] == "Active"
            nursery.cancel_scope.cancel()


# ---- 10. preconditions beyond the log's head; deletecollection's selectors ----------------------------

async def test_preconditions_beyond_the_head_conflict_at_once(start_server: StartServer) -> None:
    with trio.fail_after(30):
        a, b = await start_server(), await start_server()
        async with client_for(a) as api, client_for(b) as other:
            for i in range(3):
                assert (await api.post(CM, json=cm(f"pre{i}"))).status_code == 201
            for c in (api, other):
                for i in range(3):
                    cur = (await c.get(f"{CM}/pre{i}")).json()
                    cur["metadata"]["resourceVersion"] = "999999999"
                    with trio.fail_after(1.5):  # the consistent-read wait is 3 s: no waiting at all
                        r = await c.put(f"{CM}/pre{i}", json=cur)
                    assert r.status_code == 409 and r.json()["reason"] == "Conflict", r.text
                    with trio.fail_after(1.5):
                        r = await c.request("DELETE", f"{CM}/pre{i}",
                                            json={"preconditions": {"resourceVersion": "999999999"}})
                    assert r.status_code == 409 and "Precondition failed" in r.json()["message"], r.text
            # Nothing was written; a fresh precondition written on one gateway holds on the other.
            for i in range(3):
                cur = (await api.get(f"{CM}/pre{i}")).json()
                assert cur["data"] == {"k": f"pre{i}"}
                cur["data"] = {"k": "new"}
                r = await other.put(f"{CM}/pre{i}", json=cur)
                assert r.status_code == 200, r.text
                pre = {"preconditions": {"resourceVersion": r.json()["metadata"]["resourceVersion"]}}
                r = await api.request("DELETE", f"{CM}/pre{i}", json=pre)
                assert r.status_code == 200, r.text


@pytest.mark.parametrize("query", ["labelSelector=a%20in%20(", "labelSelector=a%3D%3D%3Db",
                                   "fieldSelector=spec.nope%3D1", "fieldSelector=data.k%3Dx1",
                                   "fieldSelector=metadata.name"])
async def test_deletecollection_bad_selectors_are_400_as_list(api: httpx.AsyncClient, query: str) -> None:
    with trio.fail_after(30):
        for i in range(4):
            assert (await api.post(CM, json=cm(f"s{i}", {"a": "b"}))).status_code == 201
        listed = await api.get(f"{CM}?{query}")
        assert listed.status_code == 400, listed.text
        r = await api.delete(f"{CM}?{query}")
        assert r.status_code == 400, r.text
        assert r.json()["reason"] == "BadRequest" and r.json()["message"] == listed.json()["message"]
        assert names((await api.get(CM)).json()) == ["s0", "s1", "s2", "s3"]
        # A known field selector works and deletes only what it selects.
        r = await api.delete(f"{CM}?fieldSelector=metadata.name%3Ds2")
        assert r.status_code == 200 and names(r.json()) == ["s2"]
        assert names((await api.get(CM)).json()) == ["s0", "s1", "s3"]


# ---- 3. names validated per kind before any subject is built -------------------------------------------

ROLES = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


async def head_rv(api: httpx.AsyncClient) -> str:
    """The log's head once the controllers' start-up writes (the default ServiceAccount of each of
    the four initial namespaces) are in: from then on only the test writes."""
    url = "/api/v1/serviceaccounts?watch=1&fieldSelector=metadata.name%3Ddefault"
    async with api.stream("GET", url) as r:
        seen: set[str] = set()
        async for line in r.aiter_lines():
            if line:
                seen.add(json.loads(line)["object"]["metadata"]["namespace"])
                if len(seen) == 4:
                    break
    return (await api.get(CM)).json()["metadata"]["resourceVersion"]


# httpx refuses URLs over 64 KiB, so the longest name tried in a URL is 60,000 characters.
@pytest.mark.parametrize("name", ["ü" * 700, "r" * 60_000, "x" * 254])
async def test_overlong_names_are_invalid_and_never_reach_the_log(api: httpx.AsyncClient, name: str) -> None:
    with trio.fail_after(30):
        before = await head_rv(api)
        role = {"metadata": {"name": name}, "rules": []}
        r = await api.post(ROLES, json=role)
        assert r.status_code == 422 and r.json()["reason"] == "Invalid", r.text[:300]
        assert r.json()["message"] == (f'Role.rbac.authorization.k8s.io "{name}" is invalid: metadata.name: '
                                       f'Invalid value: "{name}": must be no more than 253 characters')
        causes = r.json()["details"]["causes"]
        assert [(c["field"], c["reason"]) for c in causes] == [("metadata.name", "FieldValueInvalid")]
        r = await api.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", json=role)
        assert r.status_code == 422
        r = await api.post(ROLES, json={"metadata": {"name": name * 2 + "z" * 100_000}, "rules": []})
        assert r.status_code == 422
        r = await api.post(CM, json=cm(name))
        assert r.status_code == 422
        assert {c["message"].rsplit(": ", 1)[-1][:30] for c in r.json()["details"]["causes"]} >= {
            "must be no more than 253 chara"}
        # Leases are created by PUT: the same validation, before the log.
        r = await api.put(f"{LEASES}/{name}", json={"metadata": {"name": name}, "spec": {}})
        assert r.status_code == 422, r.text[:300]
        # A name that cannot exist is not found, for every verb that names it in the URL.
        for url in (f"{ROLES}/{name}", f"{CM}/{name}"):
            assert (await api.get(url)).status_code == 404
            assert (await api.delete(url)).status_code == 404
            r = await api.patch(url, content=b'{"metadata":{"labels":{"a":"b"}}}',
                                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 404
            r = await api.put(url, json={"metadata": {"name": name}})
            assert r.status_code == 404
        assert await head_rv(api) == before
        assert (await api.post(ROLES, json={"metadata": {"name": "fine"}, "rules": []})).status_code == 201


async def test_path_segment_and_label_names(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        before = await head_rv(api)
        for bad, why in (("..", "may not be '..'"), (".", "may not be '.'"), ("a%b", "may not contain '%'")):
            r = await api.post(ROLES, json={"metadata": {"name": bad}, "rules": []})
            assert r.status_code == 422 and r.json()["message"].endswith(
                f'metadata.name: Invalid value: "{bad}": {why}'), r.text
        ok = "Ü:system:weird name" + "y" * 200  # path segment rules: anything else, up to 253 bytes
        r = await api.post(ROLES, json={"metadata": {"name": ok}, "rules": []})
        assert r.status_code == 201, r.text
        assert (await api.get(f"{ROLES}/{ok}")).json()["metadata"]["name"] == ok
        r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "n" * 64}})
        assert r.status_code == 422
        assert r.json()["details"]["causes"][0]["message"].endswith("must be no more than 63 characters")
        # Namespaced writes into a namespace that cannot exist are refused before the log, too.
        long_ns = "/api/v1/namespaces/" + "n" * 60_000 + "/configmaps"
        assert (await api.post(long_ns, json=cm("c"))).status_code == 404
        assert (await api.delete(f"{long_ns}/c")).status_code == 404
        assert (await api.put(f"{long_ns}/c", json=cm("c"))).status_code == 404
        lease_ns = "/apis/coordination.k8s.io/v1/namespaces/" + "ü" * 700 + "/leases/l"
        r = await api.put(lease_ns, json={"metadata": {"name": "l"}, "spec": {}})
        assert r.status_code == 404
        after = await head_rv(api)
        assert int(after) == int(before) + 1  # only the one good Role


async def test_put_that_creates_is_admitted_as_a_create(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        lease = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}
        for ns in ("missing", "ü" * 700, "n" * 40_000):
            r = await api.put(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l", json=lease)
            assert r.status_code == 404 and r.json()["message"] == f'namespaces "{ns}" not found', r.text[:300]
        assert (await api.get("/apis/coordination.k8s.io/v1/leases")).json()["items"] == []
        assert (await api.put(f"{LEASES}/l", json=lease)).status_code == 201


async def test_generate_name_is_cut_to_leave_room_for_the_suffix(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        r = await api.post(ROLES, json={"metadata": {"generateName": "g" * 250}, "rules": []})
        assert r.status_code == 201, r.text[:300]
        got = r.json()["metadata"]["name"]
        assert len(got) == 63 and got.startswith("g" * 58)


# ---- 11. wrong successes: ownerReferences, binaryData, fieldManager, int64 ------------------------------

async def test_owner_references_need_api_version_kind_name_uid(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        before = await head_rv(api)
        body = cm("own")
        body["metadata"]["ownerReferences"] = [{"x": 1}]
        r = await api.post(CM, json=body)
        assert r.status_code == 422, r.text
        assert [(c["field"], c["message"]) for c in r.json()["details"]["causes"]] == [
            ("metadata.ownerReferences.apiVersion", 'Invalid value: "": version must not be empty'),
            ("metadata.ownerReferences.kind", 'Invalid value: "": must not be empty'),
            ("metadata.ownerReferences.name", 'Invalid value: "": must not be empty'),
            ("metadata.ownerReferences.uid", 'Invalid value: "": must not be empty')]
        # An owner of a kind this server does not serve: the garbage collector cannot resolve it and
        # leaves the dependent alone (an absent Deployment would get it collected at once, as on kube).
        good = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "d", "uid": "u1", "controller": True}
        for refs in ([{**good, "uid": ""}], [good, {**good, "name": "e", "uid": "u2"}],
                     [{**good, "apiVersion": "v1", "kind": "Event", "controller": False}]):
            body["metadata"]["ownerReferences"] = refs
            r = await api.post(CM, json=body)
            assert r.status_code == 422, r.text
        assert "Only one reference can have Controller set to true" in (await api.post(CM, json={
            **body, "metadata": {**body["metadata"], "ownerReferences": [good, {**good, "name": "e"}]}})).text
        assert await head_rv(api) == before
        body["metadata"]["ownerReferences"] = [good, {**good, "name": "e", "uid": "u2", "controller": False}]
        r = await api.post(CM, json=body)
        assert r.status_code == 201 and r.json()["metadata"]["ownerReferences"][0]["uid"] == "u1"
        # Updates and patches are held to the same rules.
        r = await api.patch(f"{CM}/own", content=b'{"metadata":{"ownerReferences":[{"name":"x"}]}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 422, r.text


async def test_config_map_binary_data_must_be_base64(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        before = await head_rv(api)
        for bad in ("not base64!", "aGVsbG8", "aGVs bG8="):
            body = {"metadata": {"name": "bin"}, "binaryData": {"b": bad}}
            r = await api.post(CM, json=body)
            assert r.status_code == 400, r.text
            cannot = 'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
            assert r.json()["message"].startswith(cannot + "illegal base64 data at input byte ")
        assert await head_rv(api) == before
        r = await api.post(CM, json={"metadata": {"name": "bin"}, "binaryData": {"b": "aGVs\nbG8=\n"}})
        assert r.status_code == 201 and r.json()["binaryData"] == {"b": "aGVsbG8="}
        r = await api.patch(f"{CM}/bin", content=b'{"binaryData":{"c":"%%%"}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 400, r.text


@pytest.mark.parametrize("manager,why", [("m" * 129, "fieldManager: Too long: must have at most 128 bytes"),
                                         ("bell\x07", 'invalid character U+0007 (at position 4)'),
                                         ("tab\there", "invalid character U+0009 (at position 3)")])
async def test_field_manager_is_validated(api: httpx.AsyncClient, manager: str, why: str) -> None:
    with trio.fail_after(30):
        assert (await api.post(CM, json=cm("fm"))).status_code == 201
        before = await head_rv(api)
        q = {"fieldManager": manager}
        r = await api.post(CM, json=cm("fm2"), params=q)
        assert r.status_code == 422 and why in r.json()["message"], r.text
        assert r.json()["message"].startswith('CreateOptions.meta.k8s.io "" is invalid: fieldManager: ')
        cur = (await api.get(f"{CM}/fm")).json()
        r = await api.put(f"{CM}/fm", json={**cur, "data": {"a": "b"}}, params=q)
        assert r.status_code == 422
        assert r.json()["message"].startswith('UpdateOptions.meta.k8s.io "" is invalid')
        r = await api.patch(f"{CM}/fm", content=b'{"data":{"a":"b"}}', params=q,
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 422
        assert r.json()["message"].startswith('PatchOptions.meta.k8s.io "" is invalid')
        assert await head_rv(api) == before
        r = await api.post(CM, json=cm("fm3"), params={"fieldManager": "m" * 128})
        assert r.status_code == 201 and r.json()["metadata"]["managedFields"][0]["manager"] == "m" * 128


async def test_integers_beyond_int64_are_bad_requests(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        before = await head_rv(api)
        big = 10**26
        r = await api.post(CM, content=b'{"metadata":{"name":"g","generation":%d},"data":{}}' % big,
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        msg = r.json()["message"]
        assert f"cannot unmarshal number {big} into Go struct field" in msg, msg
        assert "metadata.generation of type int64" in msg, msg
        lease = b'{"metadata":{"name":"l"},"spec":{"leaseDurationSeconds":%d}}'
        r = await api.post(LEASES, content=lease % (2**31), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "of type int32" in r.json()["message"], r.text
        r = await api.post(CM, content=b'{"metadata":{"name":"g","generation":-%d}}' % (2**63 + 1),
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert await head_rv(api) == before
        r = await api.post(LEASES, content=lease % (2**31 - 1), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text


# ---- 12. Secret data as Go's base64 decoder reads it ----------------------------------------------------

async def test_secret_data_with_line_breaks_is_stored_canonically(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        secrets = "/api/v1/namespaces/default/secrets"
        data = {"a": "aGVs\nbG8=\n", "b": "aGVs\r\nbG8=", "c": "aGVsbG8="}
        r = await api.post(secrets, json={"metadata": {"name": "s1"}, "data": data})
        assert r.status_code == 201, r.text
        assert r.json()["data"] == {"a": "aGVsbG8=", "b": "aGVsbG8=", "c": "aGVsbG8="}
        assert (await api.get(f"{secrets}/s1")).json()["data"]["a"] == "aGVsbG8="
        for bad in ("aGVs bG8=", "aGVsbG8", "a\tGVsbG8=", "####"):
            r = await api.post(secrets, json={"metadata": {"name": "s2"}, "data": {"a": bad}})
            assert r.status_code == 400, r.text
            assert r.json()["message"].startswith(
                'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte ')
        r = await api.put(f"{secrets}/s1", json={"metadata": {"name": "s1"}, "data": {"a": "d29y\nbGQ="}})
        assert r.status_code == 200 and r.json()["data"] == {"a": "d29ybGQ="}


# ---- 9. the stored object's size ------------------------------------------------------------------------

async def test_objects_past_the_storage_limit_are_refused(start_server: StartServer) -> None:
    with trio.fail_after(60):
        a, b = await start_server(), await start_server()
        async with client_for(a) as api, client_for(b) as other:
            chunk = "x" * (500 * 1024)
            four = {"a": chunk, "b": chunk, "c": chunk, "d": chunk}
            r = await api.post(CM, json={"metadata": {"name": "big"}, "data": four})
            assert r.status_code == 413 and r.json()["message"] == "etcdserver: request is too large", r.text
            assert r.json()["reason"] == "RequestEntityTooLarge"
            r = await api.post(CM, json={"metadata": {"name": "big"}, "data": {"a": chunk}})
            assert r.status_code == 201
            rv = r.json()["metadata"]["resourceVersion"]
            r = await other.patch(f"{CM}/big", content=json.dumps({"data": {"b": chunk}}).encode(),
                                  headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200
            rv = r.json()["metadata"]["resourceVersion"]
            grow = json.dumps({"data": {"c": chunk, "d": chunk}}).encode()
            for c, ctype in ((other, "application/merge-patch+json"),
                             (api, "application/strategic-merge-patch+json")):
                r = await c.patch(f"{CM}/big", content=grow, headers={"Content-Type": ctype})
                assert r.status_code == 413, r.text
            cur = (await api.get(f"{CM}/big")).json()
            assert cur["metadata"]["resourceVersion"] == rv and sorted(cur["data"]) == ["a", "b"]
            r = await other.put(f"{CM}/big", json={**cur, "data": {**cur["data"], "c": chunk, "d": chunk}})
            assert r.status_code == 413
            assert (await other.get(f"{CM}/big")).json()["metadata"]["resourceVersion"] == rv


async def test_unicode_digits_are_not_resource_versions_in_bodies(api: httpx.AsyncClient) -> None:
    """``int()`` reads "١" as 1; a resourceVersion is ASCII digits only, in a body as in a query."""
    with trio.fail_after(20):
        r = await api.post(CM, json=cm("uni"))
        assert r.status_code == 201, r.text
        rv = r.json()["metadata"]["resourceVersion"]
        for bad in ("١", "²", " 1", "1_0"):
            body = {**cm("uni"), "metadata": {"name": "uni", "resourceVersion": bad}}
            r = await api.put(f"{CM}/uni", json=body)
            assert r.status_code == 400 and r.json()["reason"] == "BadRequest", (bad, r.text)
            r = await api.request("DELETE", f"{CM}/uni", json={"preconditions": {"resourceVersion": bad}})
            assert r.status_code == 400 and r.json()["reason"] == "BadRequest", (bad, r.text)
        assert (await api.get(f"{CM}/uni")).json()["metadata"]["resourceVersion"] == rv
