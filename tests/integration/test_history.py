"""history.jetkube.io and reads at past versions, answered from the log, across two gateways."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import trio

from bus import open_bridge
from gateway._cli import _parser
from gateway._commands import run as run_command
from tests.conftest import client_for, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
H = "/apis/history.jetkube.io/v1"
J = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def token_file(tmp_path: Path) -> Path:
    f = tmp_path / "tokens.csv"
    f.write_text('alice-token,alice,uid-alice,"system:masters"\nbob-token,bob,uid-bob,"system:masters"\n'
                 "carol-token,carol,uid-carol\n")
    return f


async def test_history_of_objects_across_two_gateways_and_users(start_server, tmp_path: Path) -> None:
    tokens = token_file(tmp_path)
    g1 = await start_server(token_file=str(tokens))
    g2 = await start_server(token_file=str(tokens))
    assert g1.http_url and g2.http_url
    alice = httpx.AsyncClient(base_url=g1.http_url, headers={"Authorization": "Bearer alice-token",
                                                             "User-Agent": "alice-agent/1.0"}, timeout=30)
    bob = httpx.AsyncClient(base_url=g2.http_url, headers={"Authorization": "Bearer bob-token",
                                                           "User-Agent": "bob-agent/2.0"}, timeout=30)
    carol = httpx.AsyncClient(base_url=g2.http_url, headers={"Authorization": "Bearer carol-token"}, timeout=30)
    async with alice, bob, carol:
        with trio.fail_after(60):
            audit_ids = []
            for i in range(5):  # several objects, interleaved writes
                r = await alice.post(CM, json=cm(f"h{i}", v="0"))
                assert r.status_code == 201, r.text
                audit_ids.append(r.headers["Audit-Id"])
            for i in range(5):
                r = await bob.patch(f"{CM}/h{i}", content=b'{"data":{"v":"1","w":"x"}}', headers=MERGE)
                assert r.status_code == 200, r.text
            r = await alice.get(f"{CM}/h2")
            obj = r.json()
            obj["data"] = {"v": "2"}
            r = await alice.put(f"{CM}/h2", json=obj)
            assert r.status_code == 200, r.text
            r = await bob.delete(f"{CM}/h2")
            assert r.status_code == 200, r.text
            r = await alice.post(CM, json=cm("h2", v="again"))  # re-created
            assert r.status_code == 201

            # Read on the other gateway from each writer.
            r = await bob.get(f"{H}/namespaces/default/configmaps/h2")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["kind"] == "RevisionList" and body["apiVersion"] == "history.jetkube.io/v1"
            items = body["items"]
            assert [i["verb"] for i in items] == ["create", "patch", "update", "delete", "create"]
            assert [i["type"] for i in items] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED", "ADDED"]
            assert [i["user"]["username"] for i in items] == ["alice", "bob", "alice", "bob", "alice"]
            assert items[0]["userAgent"] == "alice-agent/1.0" and items[1]["userAgent"] == "bob-agent/2.0"
            assert items[0]["auditID"] == audit_ids[2] and items[0]["sourceIPs"] == ["127.0.0.1"]
            rvs = [int(i["resourceVersion"]) for i in items]
            assert rvs == sorted(rvs)
            assert {"op": "add", "path": "/data/w", "value": "x"} in items[1]["patch"]
            assert {"op": "replace", "path": "/data/v", "value": "1"} in items[1]["patch"]
            assert {"op": "remove", "path": "/data/w"} in items[2]["patch"]
            assert items[3]["patch"] == []
            assert "object" not in items[0]

            # Short name, paging with limit/continue, objects included; the pages join up.
            seen = []
            cont = ""
            while True:
                r = await alice.get(f"{H}/namespaces/default/cm/h2",
                                    params={"limit": 2, "includeObject": "true", **({"continue": cont} if cont else {})})
                assert r.status_code == 200, r.text
                page = r.json()
                seen += page["items"]
                cont = page["metadata"].get("continue", "")
                if not cont:
                    break
            assert [i["resourceVersion"] for i in seen] == [str(v) for v in rvs]
            assert seen[2]["patch"] == items[2]["patch"]  # diffed against the previous page's last revision
            assert seen[4]["object"]["data"] == {"v": "again"}

            # A cluster-scoped object; an unknown object; not authorized; bad paths.
            r = await alice.get(f"{H}/namespaces/default")
            assert r.status_code == 200 and r.json()["items"][0]["verb"] == "create"
            r = await alice.get(f"{H}/namespaces/default/configmaps/nope")
            assert r.status_code == 404
            r = await carol.get(f"{H}/namespaces/default/configmaps/h1")
            assert r.status_code == 403
            assert 'cannot get resource "configmaps/history"' in r.json()["message"]
            r = await alice.get(f"{H}/namespaces/default/nokind/h1")
            assert r.status_code == 404
            r = await alice.post(f"{H}/namespaces/default/configmaps/h1", json={})
            assert r.status_code == 405

            # jetkube get --at RV|TIME: the CLI's Exact reads (with g1's admin kubeconfig).
            async def cli(*argv: str) -> str:
                out = io.StringIO()
                args = _parser().parse_args([*argv, "--kubeconfig", str(g1.kubeconfig)])
                assert await trio.to_thread.run_sync(run_command, args, out) == 0
                return out.getvalue()

            updated_at = items[2]["resourceVersion"]
            assert json.loads(await cli("get", "cm/h2", "--at", updated_at, "-o", "json"))["data"] == {"v": "2"}
            listed = json.loads(await cli("get", "configmaps", "--at", items[3]["resourceVersion"], "-o", "json"))
            assert "h2" not in {i["metadata"]["name"] for i in listed["items"]}
            assert {"h0", "h1", "h3", "h4"} <= {i["metadata"]["name"] for i in listed["items"]}
            now = json.loads(await cli("get", "configmap", "h2", "--at", "2999-01-01T00:00:00Z", "-o", "json"))
            assert now["data"] == {"v": "again"}
            table = await cli("get", "ns", "--at", updated_at)
            assert "default" in table and "RESOURCEVERSION" in table


async def test_exact_reads_at_past_versions_after_many_writes(start_server) -> None:
    g1 = await start_server()
    g2 = await start_server()
    async with client_for(g1) as a, client_for(g2) as b:
        with trio.fail_after(240):
            snapshots: list[tuple[int, dict[str, dict]]] = []  # (rv, expected name -> data)
            state: dict[str, dict] = {}

            async def write(client: httpx.AsyncClient, i: int) -> None:
                name = f"x{i % 40}"
                if name in state and i % 7 == 0:
                    r = await client.delete(f"{CM}/{name}")
                    assert r.status_code == 200, r.text
                    del state[name]
                    return
                if name in state:
                    r = await client.patch(f"{CM}/{name}", content=b'{"data":{"i":"%d"}}' % i, headers=MERGE)
                else:
                    r = await client.post(CM, json=cm(name, i=str(i)))
                assert r.status_code in (200, 201), r.text
                state[name] = {"i": str(i)}

            for i in range(2000):
                await write(a if i % 2 else b, i)
                if i in (100, 700, 1500):
                    r = await a.get(CM)  # consistent: its resourceVersion covers every write so far
                    snapshots.append((int(r.json()["metadata"]["resourceVersion"]), dict(state)))
            r = await a.get(CM)
            head = int(r.json()["metadata"]["resourceVersion"])
            assert head > snapshots[-1][0]
            for at, want in snapshots:
                for client in (a, b):
                    r = await client.get(CM, params={"resourceVersion": str(at), "resourceVersionMatch": "Exact"})
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert body["metadata"]["resourceVersion"] == str(at)
                    got = {i["metadata"]["name"]: i["data"] for i in body["items"] if i["metadata"]["name"] != "kube-root-ca.crt"}
                    assert got == want
                    # Pages of an old version: the continue tokens carry it.
                    names: list[str] = []
                    cont = ""
                    while True:
                        params = {"limit": "7"}
                        params.update({"continue": cont} if cont else
                                      {"resourceVersion": str(at), "resourceVersionMatch": "Exact"})
                        r = await client.get(CM, params=params)
                        assert r.status_code == 200, r.text
                        names += [i["metadata"]["name"] for i in r.json()["items"]]
                        assert r.json()["metadata"]["resourceVersion"] == str(at)
                        cont = r.json()["metadata"].get("continue", "")
                        if not cont:
                            break
                    assert [n for n in names if n != "kube-root-ca.crt"] == sorted(want)
                    # One object at that version (GET with Exact, a jetkube extension).
                    for name in ("x1", "x7", "x14"):
                        r = await client.get(f"{CM}/{name}", params={"resourceVersion": str(at),
                                                                      "resourceVersionMatch": "Exact"})
                        if name in want:
                            assert r.status_code == 200 and r.json()["data"] == want[name], r.text
                            assert int(r.json()["metadata"]["resourceVersion"]) <= at
                        else:
                            assert r.status_code == 404, r.text
            # A label selector at a past version filters there too.
            r = await a.get(CM, params={"resourceVersion": str(snapshots[0][0]), "resourceVersionMatch": "Exact",
                                        "fieldSelector": "metadata.name=x3"})
            assert [i["metadata"]["name"] for i in r.json()["items"]] == (["x3"] if "x3" in snapshots[0][1] else [])
            # Beyond the head: too large.
            r = await a.get(CM, params={"resourceVersion": str(head + 1000), "resourceVersionMatch": "Exact"})
            assert r.status_code == 504 and r.json()["reason"] == "Timeout", r.text


async def test_exact_read_below_the_oldest_retained_sequence_is_410(server, api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        rvs = []
        for i in range(10):
            r = await api.post(CM, json=cm(f"p{i}"))
            rvs.append(int(r.json()["metadata"]["resourceVersion"]))
        # Drop everything before rvs[5] (what retention will do): older versions are gone.
        async with open_bridge(server.nats_url) as bridge:
            reply = await bridge.request("$JS.API.STREAM.PURGE.JETKUBE", json.dumps({"seq": rvs[5]}).encode(),
                                         timeout_s=5)
            assert json.loads(reply.data).get("success"), reply.data
        r = await api.get(CM, params={"resourceVersion": str(rvs[2]), "resourceVersionMatch": "Exact"})
        assert r.status_code == 410 and r.json()["reason"] == "Expired", r.text
        r = await api.get(f"{CM}/p1", params={"resourceVersion": str(rvs[2]), "resourceVersionMatch": "Exact"})
        assert r.status_code == 410
        # p0..p4 had no revision left: the state at any past version is incomplete, hence expired too
        # (until retention keeps each live object's latest revision and exposes its compaction point).
        r = await api.get(CM, params={"resourceVersion": str(rvs[7]), "resourceVersionMatch": "Exact"})
        assert r.status_code == 410
        # History of an object is its subject's messages: what the log still has.
        r = await api.get(f"{H}/namespaces/default/configmaps/p7")
        assert r.status_code == 200 and r.json()["items"][0]["resourceVersion"] == str(rvs[7])


async def test_impersonated_writes_name_both_users_in_history_and_audit(start_server, tmp_path: Path) -> None:
    """A write made through Impersonate-* headers: the history names the impersonated user and who
    impersonated them; the audit record's ``user`` is the impersonator, ``impersonatedUser`` the other
    (kube's audit Event), for writes from the log and reads from the audit stream alike."""
    g = await start_server(token_file=str(token_file(tmp_path)))
    assert g.http_url
    as_dave = {"Authorization": "Bearer alice-token", "Impersonate-User": "dave",
               "Impersonate-Group": "system:masters"}
    dave = httpx.AsyncClient(base_url=g.http_url, headers=as_dave, timeout=30)
    bob = httpx.AsyncClient(base_url=g.http_url, headers={"Authorization": "Bearer bob-token"}, timeout=30)
    async with dave, bob:
        with trio.fail_after(60):
            for i in range(3):
                r = await dave.post(CM, json=cm(f"imp{i}", v="0"))
                assert r.status_code == 201, r.text
            r = await dave.get(f"{CM}/imp0")
            assert r.status_code == 200
            read_id = r.headers["Audit-Id"]
            for i in range(3):
                r = await bob.get(f"{H}/namespaces/default/configmaps/imp{i}")
                assert r.status_code == 200, r.text
                rows = r.json()["items"]
                assert [(x["user"]["username"], x["impersonatedBy"]["username"]) for x in rows] == [("dave", "alice")]

            records: list[dict] = []

            async def read_recorded() -> bool:
                r = await bob.get("/apis/audit.jetkube.io/v1/events", params={"user": "alice"})
                assert r.status_code == 200, r.text
                records[:] = [json.loads(line) for line in r.text.splitlines() if line.strip()]
                return any(x["auditID"] == read_id for x in records)

            await poll_until(read_recorded)  # reads reach the audit stream off the request path
            assert len([x for x in records if x["verb"] == "create"]) == 3
            assert {x["user"]["username"] for x in records} == {"alice"}
            assert {x["impersonatedUser"]["username"] for x in records} == {"dave"}
