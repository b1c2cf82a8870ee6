"""``/clusters/*/`` beyond plain LIST and WATCH, on a real nats-server and two gateways (one with a
ring of 4 changes, so that its reads of the past go to the log): pages across tenants (limit and
continue, alternating gateways, while objects change, with selectors, remainingItemCount), Exact
reads (and the legacy resourceVersion + limit), 410 for a continue token older than the log keeps,
Tables with a Cluster column, PartialObjectMetadata(List), OpenAPI v2/v3 of the kinds served there,
kubectl (`get -A` table, wide, `--chunk-size`, `explain`) and the Python client on a kubeconfig at
``/clusters/*``, and watches of a custom resource ended when two tenants' CRDs diverge (and in a
tenant, when its CRD is deleted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import trio

from tests.conftest import Running, StartServer, client_for, poll_until
from tests.e2e.test_kubectl import kubectl_binary
from tests.integration.test_crd import CRDS
from tests.integration.test_tenancy import cm, create_tenant, t
from tests.integration.test_tenancy_crds import t2_widget_crd
from tests.integration.test_tenancy_wildcard import ALL, CLUSTER, _kubeconfig_at, tiered, widgets_in

pytestmark = pytest.mark.integration

CMS = "/clusters/*/api/v1/configmaps"
TENANTS = ("w1", "w2", "w3")
N = 12  # widgets in the watch test: 6 per tenant, more than a ring of 4
NAMESPACES = ("default", "kube-public")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
META_LIST = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
             "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")
META = META_LIST.replace("MetadataList", "Metadata")


def keyed(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(tenant, namespace, name) of listed objects, in the order listed."""
    return [(i["metadata"]["annotations"][CLUSTER], i["metadata"]["namespace"], i["metadata"]["name"])
            for i in items]


def many(name: str, i: int) -> dict[str, Any]:
    body = cm(name, i=str(i))
    body["metadata"]["labels"] = {"app": "many", "tier": "even" if i % 2 == 0 else "odd"}
    return body


async def write_many(clients: list[httpx.AsyncClient], per_tenant: int) -> set[tuple[str, str, str]]:
    """``per_tenant`` labelled configmaps in each tenant, spread over two namespaces, written through
    every client in turn, 8 at a time."""
    wanted = [(tn, NAMESPACES[i % 2], f"{tn}-cm{i:02d}", i) for tn in TENANTS for i in range(per_tenant)]
    limiter = trio.CapacityLimiter(8)

    async def one(k: int, tn: str, ns: str, name: str, i: int) -> None:
        async with limiter:
            r = await clients[k % len(clients)].post(t(tn, f"/api/v1/namespaces/{ns}/configmaps"), json=many(name, i))
            assert r.status_code == 201, r.text

    async with trio.open_nursery() as n:
        for k, w in enumerate(wanted):
            n.start_soon(one, k, *w)
    return {(tn, ns, name) for tn, ns, name, _ in wanted}


async def pages(clients: list[httpx.AsyncClient], params: dict[str, str], *, between: Any = None,
                accept: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of a LIST across tenants (alternating clients), and each page's metadata (with its
    item count as ``count``); ``between()`` runs after the first page."""
    items: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    token = ""
    headers = {"Accept": accept} if accept else {}
    while True:
        c = clients[len(metas) % len(clients)]
        r = await c.get(CMS, params={**params, **({"continue": token} if token else {})}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        got = body["items"] if "items" in body else body["rows"]
        items += got
        metas.append({**body["metadata"], "count": len(got)})
        token = body["metadata"].get("continue", "")
        if len(metas) == 1 and between is not None:
            await between()
        if not token:
            return items, metas


async def test_pages_exact_reads_tables_and_metadata_across_tenants(start_server: StartServer) -> None:
    gw_a = await start_server()
    gw_b = await start_server(watch_ring_size=4)  # its reads of the past come from the log
    async with client_for(gw_a) as a, client_for(gw_b) as b:
        with trio.fail_after(180):
            for tn in TENANTS:
                await create_tenant(a, tn, wait_on=[a, b])
            mine = await write_many([a, b], 24)  # 72 labelled objects, besides every namespace's root CA
            sel = {"labelSelector": "app=many"}
            full = (await b.get(CMS)).json()
            rv = full["metadata"]["resourceVersion"]
            everything = keyed(full["items"])
            assert everything == sorted(everything) and len(everything) == len(set(everything))
            assert {k for k in everything if k[0] in TENANTS and "-cm" in k[2]} == mine
            labelled = keyed((await a.get(CMS, params={**sel, "resourceVersion": rv})).json()["items"])
            assert labelled == sorted(mine)

            # Pages of every size on alternating gateways, pinned to the first page's resourceVersion.
            for limit in (1, 7, 24, 25, 500):
                items, metas = await pages([a, b], {"limit": str(limit)})
                assert keyed(items) == everything, limit
                assert {m["resourceVersion"] for m in metas} == {metas[0]["resourceVersion"]}
                assert all(m["count"] == limit for m in metas[:-1]) and 0 < metas[-1]["count"] <= limit
                seen = 0
                for m in metas:
                    seen += m["count"]
                    if m.get("continue"):  # no selector: the rest is counted
                        assert m["remainingItemCount"] == len(everything) - seen, (limit, m)
                items, metas = await pages([b, a], {"limit": str(limit), **sel})
                assert keyed(items) == sorted(mine) and all("remainingItemCount" not in m for m in metas)
            items, _ = await pages([a, b], {"limit": "5", "labelSelector": "app=many,tier=odd",
                                            "fieldSelector": "metadata.namespace=kube-public"})
            assert keyed(items) == sorted(k for k in mine if k[1] == "kube-public" and int(k[2][-2:]) % 2)
            r = await a.get("/clusters/*/api/v1/namespaces/kube-public/configmaps", params={"limit": "4"})
            assert keyed(r.json()["items"]) == [k for k in everything if k[1] == "kube-public"][:4]

            # Objects change between pages (in the first and last tenant, more than B's ring holds): the
            # pages still show the state at the first page's resourceVersion, from memory, the ring or the log.
            async def churn() -> None:  # w1's kube-public ones come after the first page
                for i in range(6):
                    r = await a.patch(t("w1", f"/api/v1/namespaces/kube-public/configmaps/w1-cm{2 * i + 1:02d}"),
                                      json={"data": {"i": "changed"}},
                                      headers={"Content-Type": "application/merge-patch+json"})
                    assert r.status_code == 200, r.text
                r = await b.delete(t("w3", "/api/v1/namespaces/kube-public/configmaps/w3-cm23"))
                assert r.status_code == 200, r.text
                r = await b.post(t("w2", "/api/v1/namespaces/default/configmaps"), json=many("w2-aa-new", 0))
                assert r.status_code == 201, r.text

            for clients in ([a, b], [b, a]):
                before = keyed((await a.get(CMS, params=sel)).json()["items"])
                got, metas = await pages(clients, {"limit": "10", **sel}, between=churn)
                assert keyed(got) == before
                assert all(i["data"]["i"] != "changed" for i in got)
                rv_then = metas[0]["resourceVersion"]
                # Exact at that version on both gateways (B's from the log), and the legacy rv + limit.
                for c in (a, b):
                    r = await c.get(CMS, params={**sel, "resourceVersion": rv_then, "resourceVersionMatch": "Exact"})
                    assert r.status_code == 200, r.text
                    assert keyed(r.json()["items"]) == before and r.json()["metadata"]["resourceVersion"] == rv_then
                    r = await c.get(CMS, params={**sel, "resourceVersion": rv_then, "limit": "3"})
                    assert keyed(r.json()["items"]) == before[:3] and r.json()["metadata"]["continue"]
                # Now: the changes are there.
                now = (await b.get(CMS, params=sel)).json()["items"]
                assert sum(i["data"]["i"] == "changed" for i in now) == 6
                await churn_back(a, b)
            # NotOlderThan with a limit (kube: from the watch cache, not paged by version here either).
            r = await a.get(CMS, params={"resourceVersion": rv, "resourceVersionMatch": "NotOlderThan", "limit": "3"})
            assert r.status_code == 200 and len(r.json()["items"]) == 3 and r.json()["metadata"]["continue"]
            # Bad tokens: a tenant's own token, garbage.
            r = await a.get(t("w1", "/api/v1/configmaps"), params={"limit": "2"})
            for token in (r.json()["metadata"]["continue"], "abc"):
                r = await a.get(CMS, params={"limit": "2", "continue": token})
                assert r.status_code == 400 and r.json()["reason"] == "BadRequest", r.text
            r = await a.get(CMS, params={"resourceVersion": str(10**12), "resourceVersionMatch": "Exact"})
            assert r.status_code == 504 and "Too large resource version" in r.json()["message"], r.text

            # Tables: a Cluster column after Name, one row per object, paged too.
            for c in (a, b):
                r = await c.get(CMS, params=sel, headers={"Accept": TABLE})
                assert r.status_code == 200, r.text
                tbl = r.json()
                assert tbl["kind"] == "Table"
                assert [col["name"] for col in tbl["columnDefinitions"]] == ["Name", "Cluster", "Data", "Age"]
                rows = [(row["cells"][1], row["object"]["metadata"]["namespace"], row["cells"][0])
                        for row in tbl["rows"]]
                assert sorted(rows) == sorted(keyed((await c.get(CMS, params=sel)).json()["items"]))
                rows_paged, metas = await pages([c], {"limit": "20", **sel}, accept=TABLE)
                assert [(row["cells"][1], row["cells"][0]) for row in rows_paged] == [(k[0], k[2]) for k in sorted(rows)]
                assert len(metas) == 4
            # A tenant's own Table has no such column.
            r = await a.get(t("w1", "/api/v1/configmaps"), headers={"Accept": TABLE})
            assert [col["name"] for col in r.json()["columnDefinitions"]] == ["Name", "Data", "Age"]

            # PartialObjectMetadataList across tenants and in a tenant; a single object; 406 for the wrong kind.
            for c in (a, b):
                r = await c.get(CMS, params={**sel, "limit": "50"}, headers={"Accept": META_LIST})
                assert r.status_code == 200, r.text
                body = r.json()
                assert (body["kind"], body["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
                assert body["metadata"]["continue"] and len(body["items"]) == 50
                assert all(i["kind"] == "PartialObjectMetadata" and "data" not in i for i in body["items"])
                assert keyed(body["items"]) == sorted(keyed((await c.get(CMS, params=sel)).json()["items"]))[:50]
            r = await a.get(t("w2", "/api/v1/namespaces/default/configmaps/w2-cm00"),
                            headers={"Accept": META.replace("v=v1", "v=v1beta1")})
            assert r.status_code == 200 and r.json()["kind"] == "PartialObjectMetadata", r.text
            assert r.json()["apiVersion"] == "meta.k8s.io/v1beta1" and r.json()["metadata"]["name"] == "w2-cm00"
            assert r.json()["metadata"]["managedFields"]
            r = await a.get(CMS, headers={"Accept": META})
            assert r.status_code == 406 and r.json()["reason"] == "NotAcceptable", r.text

            # Watches across tenants as PartialObjectMetadata and as Tables (ring on A, the log on B).
            for c in (a, b):
                start = (await c.get(CMS, params=sel)).json()["metadata"]["resourceVersion"]
                r = await a.post(t("w3", "/api/v1/namespaces/default/configmaps"), json=many(f"w3-zz-{id(c)}", 1))
                assert r.status_code == 201, r.text
                for accept in (META, TABLE):
                    async with c.stream("GET", CMS, params={"watch": "1", "resourceVersion": start, **sel},
                                        headers={"Accept": accept}) as w:
                        ev = json.loads(await w.aiter_lines().__anext__())
                    assert ev["type"] == "ADDED", ev
                    if accept == META:
                        assert ev["object"]["kind"] == "PartialObjectMetadata"
                        assert ev["object"]["metadata"]["annotations"][CLUSTER] == "w3"
                    else:
                        assert ev["object"]["kind"] == "Table"
                        assert ev["object"]["columnDefinitions"][1]["name"] == "Cluster"
                        assert ev["object"]["rows"][0]["cells"][:2] == [f"w3-zz-{id(c)}", "w3"]

            # OpenAPI of the kinds served across tenants: list and watch only.
            r = await b.get("/clusters/*/openapi/v2")
            assert r.status_code == 200, r.text
            paths = r.json()["paths"]
            assert set(paths["/api/v1/configmaps"]) <= {"get", "parameters"}
            assert set(paths["/api/v1/namespaces/{namespace}/configmaps"]) <= {"get", "parameters"}
            assert not any(p.endswith("/configmaps/{name}") for p in paths)
            assert "/api/v1/namespaces/{namespace}/bindings" not in paths
            r = await a.get("/clusters/*/openapi/v3")
            assert "api/v1" in r.json()["paths"], r.text
            doc_url = r.json()["paths"]["api/v1"]["serverRelativeURL"]
            r = await a.get(f"/clusters/*{doc_url}")
            assert r.status_code == 200 and "post" not in r.json()["paths"]["/api/v1/namespaces/{namespace}/configmaps"]
            assert (await a.get("/openapi/v2")).json()["paths"]["/api/v1/namespaces/{namespace}/configmaps"]["post"]


async def churn_back(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    """Undo ``churn`` (so that it can run again)."""
    for i in range(6):
        r = await b.patch(t("w1", f"/api/v1/namespaces/kube-public/configmaps/w1-cm{2 * i + 1:02d}"),
                          json={"data": {"i": str(2 * i + 1)}}, headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
    r = await a.post(t("w3", "/api/v1/namespaces/kube-public/configmaps"), json=many("w3-cm23", 23))
    assert r.status_code == 201, r.text
    assert (await a.delete(t("w2", "/api/v1/namespaces/default/configmaps/w2-aa-new"))).status_code == 200


async def test_a_continue_token_older_than_the_log_is_410(start_server: StartServer) -> None:
    gw = await start_server(history_max_revisions=1, history_retention_interval_s=0.2)
    async with client_for(gw) as c:
        with trio.fail_after(90):
            for tn in ("x1", "x2"):
                await create_tenant(c, tn)
                for i in range(5):
                    r = await c.post(t(tn, "/api/v1/namespaces/default/configmaps"), json=many(f"{tn}-c{i}", i))
                    assert r.status_code == 201, r.text
            r = await c.get(CMS, params={"labelSelector": "app=many", "limit": "3"})
            token, old = r.json()["metadata"]["continue"], int(r.json()["metadata"]["resourceVersion"])
            for round_ in range(2):
                for tn in ("x1", "x2"):
                    for i in range(5):
                        r = await c.patch(t(tn, f"/api/v1/namespaces/default/configmaps/{tn}-c{i}"),
                                          json={"data": {"r": str(round_)}},
                                          headers={"Content-Type": "application/merge-patch+json"})
                        assert r.status_code == 200, r.text

            async def compacted() -> bool:
                r = await c.get("/apis/history.jetkube.io/v1/compaction")
                return r.status_code == 200 and int(r.json()["resourceVersion"]) > old

            await poll_until(compacted)
            r = await c.get(CMS, params={"labelSelector": "app=many", "limit": "3", "continue": token})
            assert r.status_code == 410 and r.json()["reason"] == "Expired", r.text
            assert "continue" in r.json()["message"], r.text
            r = await c.get(CMS, params={"resourceVersion": str(old), "resourceVersionMatch": "Exact"})
            assert r.status_code == 410 and r.json()["reason"] == "Expired", r.text


async def test_pages_go_on_while_a_tenant_is_deleted(start_server: StartServer) -> None:
    """A tenant deleted between two pages: its state is pruned from memory, so the later pages (and an
    Exact read at the first page's version) find it, and its objects as they were, in the log."""
    gw_a, gw_b = await start_server(), await start_server()
    sel = {"labelSelector": "app=many"}
    async with client_for(gw_a) as a, client_for(gw_b) as b:
        with trio.fail_after(120):
            for tn in TENANTS:
                await create_tenant(a, tn, wait_on=[a, b])
            mine = await write_many([a, b], 4)
            first = (await b.get(CMS, params={**sel, "limit": "3"})).json()
            assert keyed(first["items"]) == sorted(mine)[:3]
            rv = first["metadata"]["resourceVersion"]
            assert (await a.delete("/apis/tenancy.jetkube.io/v1alpha1/logicalclusters/w2")).status_code == 200
            for c in (a, b):
                async def gone(c: httpx.AsyncClient = c) -> bool:
                    r = await c.get("/apis/tenancy.jetkube.io/v1alpha1/logicalclusters/w2")
                    return r.status_code == 404 and "w2" not in {
                        k[0] for k in keyed((await c.get(CMS)).json()["items"])}
                await poll_until(gone)
            got = list(first["items"])
            token = first["metadata"]["continue"]
            while token:
                body = (await (a, b)[len(got) % 2].get(CMS, params={**sel, "limit": "3", "continue": token})).json()
                got += body["items"]
                token = body["metadata"].get("continue", "")
            assert keyed(got) == sorted(mine)
            for c in (a, b):
                r = await c.get(CMS, params={**sel, "resourceVersion": rv, "resourceVersionMatch": "Exact"})
                assert keyed(r.json()["items"]) == sorted(mine), r.text
                assert keyed((await c.get(CMS, params=sel)).json()["items"]) == sorted(k for k in mine if k[0] != "w2")


async def test_watches_of_a_custom_resource_end_when_its_kind_stops_being_served(start_server: StartServer) -> None:
    gw_a = await start_server()
    gw_b = await start_server(watch_ring_size=4)
    every = ALL
    async with client_for(gw_a) as a, client_for(gw_b) as b:
        with trio.fail_after(120):
            for tn in TENANTS:
                await create_tenant(a, tn, wait_on=[a, b])
            await widgets_in([(a, "w1"), (a, "w2")], [a, b])
            start = (await a.get(every)).json()["metadata"]["resourceVersion"]
            for i in range(N):  # more changes than B's ring: its watch from ``start`` reads the log first
                r = await (a, b)[i % 2].post(t(("w1", "w2")[i % 2], "/apis/example.com/v1/namespaces/default/widgets"),
                                             json=tiered(f"x{i}", i % 6))
                assert r.status_code == 201, r.text
            opened = trio.Semaphore(0)
            ended: list[tuple[str, int]] = []

            async def watch(c: httpx.AsyncClient, name: str, params: dict[str, str], accept: str) -> None:
                got = 0
                async with c.stream("GET", every, params={"watch": "1", **params},
                                    headers={"Accept": accept}) as w:
                    assert w.status_code == 200
                    async for line in w.aiter_lines():
                        if line.strip():
                            got += 1
                            if got == N:
                                opened.release()
                ended.append((name, got))  # the server ended the stream cleanly

            async with trio.open_nursery() as n:
                for c, name in ((a, "a"), (b, "b")):
                    n.start_soon(watch, c, f"{name}-json-rv", {"resourceVersion": start}, "application/json")
                    n.start_soon(watch, c, f"{name}-table", {}, TABLE)
                for _ in range(4):
                    await opened.acquire()  # every watch has its N objects
                # w3 defines widgets.example.com differently: no longer served across tenants.
                r = await b.post(t("w3", CRDS), json=t2_widget_crd())
                assert r.status_code == 201, r.text
            assert sorted(name for name, _ in ended) == ["a-json-rv", "a-table", "b-json-rv", "b-table"]
            assert all(got == N for _, got in ended), ended
            for c in (a, b):
                assert (await c.get(every)).status_code == 409
                # A watch of a built-in kind across tenants is not affected; a new watch of widgets is 409.
                assert (await c.get(every, params={"watch": "1"})).status_code == 409
            assert (await a.get(CMS, params={"limit": "1"})).status_code == 200
            # In a tenant too: a watch of w1's widgets sees them deleted with their CRD, then ends.
            seen: list[str] = []

            async def tenant_watch() -> None:
                async with b.stream("GET", t("w1", "/apis/example.com/v1/widgets"), params={"watch": "1"}) as w:
                    async for line in w.aiter_lines():
                        if line.strip():
                            seen.append(json.loads(line)["type"])
                            if len(seen) == N // 2:
                                opened.release()

            async with trio.open_nursery() as n:
                n.start_soon(tenant_watch)
                await opened.acquire()
                assert (await a.delete(t("w1", f"{CRDS}/widgets.example.com"))).status_code == 200
            assert seen == ["ADDED"] * (N // 2) + ["DELETED"] * (N // 2)


async def test_kubectl_and_the_python_client_across_tenants(start_server: StartServer, tmp_path: Path) -> None:
    gw = await start_server()
    gw2 = await start_server()
    async with client_for(gw) as a, client_for(gw2) as b:
        with trio.fail_after(120):
            for tn in TENANTS:
                await create_tenant(a, tn, wait_on=[a, b])
            mine = await write_many([a, b], 5)

            async def caught_up() -> bool:
                r = await b.get(CMS, params={"labelSelector": "app=many"})
                return {(k[0], k[1], k[2]) for k in keyed(r.json()["items"])} == mine
            await poll_until(caught_up)
            await trio.to_thread.run_sync(_python_client, gw2, tmp_path, mine)
            mine.add(("w2", "default", "w2-py"))  # written by the Python client
            if shutil.which("kubectl") is not None:
                await trio.to_thread.run_sync(_kubectl, gw, tmp_path, mine)


def _python_client(gw: Running, tmp_path: Path, mine: set[tuple[str, str, str]]) -> None:
    api = kubernetes.config.new_client_from_config(config_file=str(_kubeconfig_at(gw, tmp_path / "py.yaml")),
                                                   context="jetkube")
    core = kubernetes.client.CoreV1Api(api)
    got: list[tuple[str, str, str]] = []
    token = None
    rvs = set()
    while True:
        page = core.list_config_map_for_all_namespaces(label_selector="app=many", limit=4, _continue=token)
        got += [(i.metadata.annotations[CLUSTER], i.metadata.namespace, i.metadata.name) for i in page.items]
        rvs.add(page.metadata.resource_version)
        token = page.metadata._continue
        if not token:
            break
    assert got == sorted(mine) and len(rvs) == 1
    # A write in w2 through its own context, then a watch across tenants from the list's version.
    w2 = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        config_file=str(_kubeconfig_at(gw, tmp_path / "w2.yaml", "w2")), context="jetkube"))
    w2.create_namespaced_config_map("default", many("w2-py", 0))
    w = kubernetes.watch.Watch()
    seen = []
    for ev in w.stream(core.list_config_map_for_all_namespaces, label_selector="app=many,tier=even",
                       resource_version=rvs.pop(), timeout_seconds=30):
        seen.append((ev["type"], ev["object"].metadata.annotations[CLUSTER], ev["object"].metadata.name))
        w.stop()
    assert seen == [("ADDED", "w2", "w2-py")]


def _kubectl(gw: Running, tmp_path: Path, mine: set[tuple[str, str, str]]) -> None:
    env = {**os.environ, "KUBECONFIG": str(_kubeconfig_at(gw, tmp_path / "kc.yaml")),
           "KUBECACHEDIR": str(tmp_path / "kube-cache")}

    def kubectl(*args: str) -> str:
        p = subprocess.run(("kubectl", *args), capture_output=True, text=True, env=env, timeout=60, check=False)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    rows = sorted(mine)
    out = kubectl("get", "cm", "-A", "-l", "app=many")
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "CLUSTER", "DATA", "AGE"], out
    assert [tuple(line.split()[:3]) for line in lines[1:]] == [(ns, name, tn) for tn, ns, name in rows]
    wide = kubectl("get", "cm", "-A", "-l", "app=many", "-o", "wide")
    assert wide.splitlines()[0].split()[:3] == ["NAMESPACE", "NAME", "CLUSTER"]
    # Pages of 3 (kubectl follows continue): the same rows.
    chunked = kubectl("get", "cm", "-A", "-l", "app=many", "--chunk-size=3")
    assert [line.split()[:3] for line in chunked.splitlines()] == [line.split()[:3] for line in lines]
    verbose = subprocess.run(("kubectl", "get", "cm", "-A", "-l", "app=many", "--chunk-size=3", "-v=6"),
                             capture_output=True, text=True, env=env, timeout=60, check=False)
    assert verbose.stderr.count("continue=") >= 4, verbose.stderr
    got = json.loads(kubectl("get", "cm", "-A", "-l", "app=many", "--chunk-size=4", "-o", "json"))
    assert [(i["metadata"]["annotations"][CLUSTER], i["metadata"]["namespace"], i["metadata"]["name"])
            for i in got["items"]] == rows
    # kubectl explain reads the OpenAPI v3 served there.
    out = kubectl("explain", "configmaps.data")
    assert "FIELD: data" in out or "data" in out, out
    # kubectl 1.27: explain from the OpenAPI v2 protobuf there, and a paged get.
    old = kubectl_binary("1.27")
    p = subprocess.run((old, "explain", "configmaps.data", "--output=plaintext-openapiv2", "-v=6"),
                       capture_output=True, text=True, timeout=60, check=False, env=env)
    assert p.returncode == 0 and "FIELD:    data <map[string]string>" in p.stdout, (p.stdout, p.stderr)
    assert "/clusters/%2A/openapi/v2?" in p.stderr, p.stderr
    p = subprocess.run((old, "get", "cm", "-A", "-l", "app=many", "--chunk-size=2"), capture_output=True, text=True,
                       timeout=60, check=False, env=env)
    assert p.returncode == 0 and [x.split()[:3] for x in p.stdout.splitlines()] == [x.split()[:3] for x in lines], p
    names = kubectl("get", "cm", "-A", "-l", "app=many,tier=odd", "-o", "name", "--chunk-size=2")
    assert len(names.split()) == sum(1 for _, _, name in rows if name[-2:].isdigit() and int(name[-2:]) % 2)
