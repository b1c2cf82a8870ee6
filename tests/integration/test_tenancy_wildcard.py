"""``/clusters/*/`` (every tenant at once, kcp's wildcard cluster) serving custom resources, on a
real nats-server and two gateways: a CRD established in several tenants with the same definition
is listed and watched across them (each object's tenant in ``tenancy.jetkube.io/cluster``), with
label and field selectors, from a resourceVersion, in a version served by conversion; through
httpx, the official Python client and kubectl. A CRD name another tenant defines differently is
refused (409) until the definitions agree again; only root's system:masters may look."""

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
import yaml

from tests.conftest import Running, StartServer, client_for, poll_until, watch_until
from tests.integration.test_crd import CRDS, widget, widget_crd
from tests.integration.test_tenancy import TOKENS, as_user, create_tenant, t
from tests.integration.test_tenancy_crds import crd_condition, t2_widget_crd

pytestmark = pytest.mark.integration

ALL = "/clusters/*/apis/example.com/v1/widgets"
CLUSTER = "tenancy.jetkube.io/cluster"


def where(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """{(tenant, name)} of listed or watched objects."""
    return {(i["metadata"]["annotations"][CLUSTER], i["metadata"]["name"]) for i in items}


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def widgets_in(where: list[tuple[httpx.AsyncClient, str]], clients: list[httpx.AsyncClient]) -> None:
    """The same widgets CRD established in each (client, tenant), then served across tenants by
    every one of ``clients``."""
    for c, tenant in where:
        r = await c.post(t(tenant, CRDS), json=widget_crd())
        assert r.status_code == 201, r.text
        await crd_condition(c, tenant, "widgets.example.com", "Established", "True")
    for c in clients:
        async def served(c: httpx.AsyncClient = c) -> bool:
            return (await c.get(ALL)).status_code == 200
        await poll_until(served)


def tiered(name: str, i: int) -> dict[str, Any]:
    w = widget(name, size=i + 1, color="blue" if i % 3 == 0 else "green")
    w["metadata"]["labels"]["tier"] = "even" if i % 2 == 0 else "odd"
    return w


async def test_custom_resources_across_tenants_on_two_gateways(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw_a = await start_server(token_file=str(tokens))
    gw_b = await start_server(token_file=str(tokens))
    async with client_for(gw_a) as a, client_for(gw_b) as b, as_user(gw_a, "alice-token") as alice:
        with trio.fail_after(120):
            await create_tenant(a, "t1", wait_on=[a, b])
            await create_tenant(a, "t2", wait_on=[a, b])
            await create_tenant(a, "t3", wait_on=[a, b])
            # Before any CRD: an unknown resource across tenants.
            assert (await a.get(ALL)).status_code == 404
            # The same CRD in t1 (through A) and t2 (through B).
            await widgets_in([(a, "t1"), (b, "t2")], [a, b])
            # 6 widgets per tenant, written through both gateways.
            for tenant in ("t1", "t2"):
                for i in range(6):
                    c = a if i % 2 else b
                    r = await c.post(t(tenant, "/apis/example.com/v1/namespaces/default/widgets"),
                                     json=tiered(f"{tenant}-w{i}", i))
                    assert r.status_code == 201, r.text
            everything = {(tn, f"{tn}-w{i}") for tn in ("t1", "t2") for i in range(6)}
            # LIST on both gateways (a consistent read: each waits until it has applied the writes).
            for c in (a, b):
                r = await c.get(ALL)
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["kind"] == "WidgetList" and body["apiVersion"] == "example.com/v1"
                assert where(body["items"]) == everything
                assert {i["spec"]["maxSize"] for i in body["items"]} == {10}  # defaults as stored
                r = await c.get("/clusters/*/apis/example.com/v1/namespaces/default/widgets")
                assert where(r.json()["items"]) == everything
                assert r.json()["items"] and not (await c.get(
                    "/clusters/*/apis/example.com/v1/namespaces/other/widgets")).json()["items"]
                # Selectors: labels, the CRD's selectable field, metadata fields.
                r = await c.get(ALL, params={"labelSelector": "tier=even"})
                assert where(r.json()["items"]) == {(tn, f"{tn}-w{i}") for tn in ("t1", "t2") for i in (0, 2, 4)}
                r = await c.get(ALL, params={"fieldSelector": "spec.color=blue"})
                assert where(r.json()["items"]) == {(tn, f"{tn}-w{i}") for tn in ("t1", "t2") for i in (0, 3)}
                r = await c.get(ALL, params={"fieldSelector": "metadata.name=t2-w5"})
                assert where(r.json()["items"]) == {("t2", "t2-w5")}
                r = await c.get(ALL, params={"labelSelector": "tier=odd", "fieldSelector": "spec.color=green"})
                assert where(r.json()["items"]) == {(tn, f"{tn}-w{i}") for tn in ("t1", "t2") for i in (1, 5)}
                # Another served version, converted.
                r = await c.get("/clusters/*/apis/example.com/v1beta1/widgets")
                assert r.status_code == 200 and where(r.json()["items"]) == everything
                assert {i["apiVersion"] for i in r.json()["items"]} == {"example.com/v1beta1"}
            # Discovery across tenants: what is served there (list and watch, no subresources).
            for c in (a, b):
                r = await c.get("/clusters/*/apis/example.com/v1")
                assert r.status_code == 200, r.text
                assert [(x["name"], x["verbs"]) for x in r.json()["resources"]] == [("widgets", ["list", "watch"])]
                r = await c.get("/clusters/*/apis", headers={
                    "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
                assert "example.com" in {g["metadata"]["name"] for g in r.json()["items"]}
                r = await c.get("/clusters/*/api/v1")
                assert {x["name"] for x in r.json()["resources"]} >= {"configmaps", "pods", "namespaces"}
                assert all(x["verbs"] == ["list", "watch"] for x in r.json()["resources"])
                assert "bindings" not in {x["name"] for x in r.json()["resources"]}
            rv = (await b.get(ALL)).json()["metadata"]["resourceVersion"]
            # Paged (tests/integration/test_tenancy_wildcard_pages.py has more): pages of 5 on the other gateway.
            pages: list[dict[str, Any]] = []
            params = {"limit": "5"}
            while True:
                r = await (a if len(pages) % 2 else b).get(ALL, params=params)
                assert r.status_code == 200, r.text
                pages += r.json()["items"]
                if not r.json()["metadata"].get("continue"):
                    break
                params = {"limit": "5", "continue": r.json()["metadata"]["continue"]}
            assert [(i["metadata"]["annotations"][CLUSTER], i["metadata"]["name"]) for i in pages] == sorted(everything)
            r = await a.get(ALL, params={"continue": "abc", "limit": "2"})
            assert r.status_code == 400 and r.json()["reason"] == "BadRequest", r.text
            # A LIST not older than a resourceVersion the other gateway answered.
            r = await a.get(ALL, params={"resourceVersion": rv})
            assert int(r.json()["metadata"]["resourceVersion"]) >= int(rv) and where(r.json()["items"]) == everything

            # Changes after rv, through both gateways: a create in t1, an update and a delete in t2.
            r = await a.post(t("t1", "/apis/example.com/v1/namespaces/default/widgets"), json=tiered("t1-new", 0))
            assert r.status_code == 201, r.text
            r = await b.patch(t("t2", "/apis/example.com/v1/namespaces/default/widgets/t2-w1"),
                              json={"metadata": {"labels": {"tier": "even"}}},
                              headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            assert (await a.delete(t("t2", "/apis/example.com/v1/namespaces/default/widgets/t2-w2"))).status_code == 200
            changes = [("ADDED", "t1", "t1-new"), ("MODIFIED", "t2", "t2-w1"), ("DELETED", "t2", "t2-w2")]

            def seen(evs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
                return [(e["type"], e["object"]["metadata"]["annotations"][CLUSTER], e["object"]["metadata"]["name"])
                        for e in evs]

            # WATCH from rv on each gateway: the changes in order, each with its tenant.
            for c in (a, b):
                got = await watch_until(c, ALL, {"resourceVersion": rv}, lambda evs: len(evs) >= 3)
                assert seen(got) == changes
                # With a label selector: t2-w1 enters tier=even (ADDED to this watch), t2-w2 was even.
                got = await watch_until(c, ALL, {"resourceVersion": rv, "labelSelector": "tier=even"},
                                        lambda evs: len(evs) >= 3)
                assert seen(got) == [("ADDED", "t1", "t1-new"), ("ADDED", "t2", "t2-w1"), ("DELETED", "t2", "t2-w2")]
                got = await watch_until(c, ALL, {"resourceVersion": rv, "fieldSelector": "metadata.name=t2-w1"},
                                        lambda evs: len(evs) >= 1)
                assert seen(got) == [("MODIFIED", "t2", "t2-w1")]
            # WATCH without a resourceVersion: every tenant's current objects, then live changes.
            now = everything - {("t2", "t2-w2")} | {("t1", "t1-new")}
            initial_done = trio.Event()
            result: list[list[dict[str, Any]]] = []

            def live_done(evs: list[dict[str, Any]]) -> bool:
                if len(evs) >= len(now):
                    initial_done.set()  # every tenant's current objects came first
                return ("ADDED", "t2", "t2-live") in seen(evs)

            async def live() -> None:
                result.append(await watch_until(b, ALL, {"labelSelector": "app=w"}, live_done))

            async with trio.open_nursery() as n:
                n.start_soon(live)
                await initial_done.wait()
                r = await a.post(t("t2", "/apis/example.com/v1/namespaces/default/widgets"), json=tiered("t2-live", 1))
                assert r.status_code == 201, r.text
            got = seen(result[0])
            assert {(tn, nm) for _, tn, nm in got[:len(now)]} == now and got[len(now):] == [("ADDED", "t2", "t2-live")]
            now |= {("t2", "t2-live")}

            # Authorization as for the built-in kinds: root's system:masters only; reads only.
            r = await alice.get(ALL)
            assert r.status_code == 403, r.text
            r = await alice.get(ALL, params={"watch": "1"})
            assert r.status_code == 403, r.text
            r = await a.post("/clusters/*/apis/example.com/v1/namespaces/default/widgets", json=tiered("x", 0))
            assert r.status_code == 405, r.text
            assert (await a.get("/clusters/*/apis/example.com/v1/namespaces/default/widgets/t1-w0")).status_code == 405

            # t3 defines widgets.example.com with another schema: not served across tenants (409) ...
            r = await b.post(t("t3", CRDS), json=t2_widget_crd())
            assert r.status_code == 201, r.text
            await crd_condition(b, "t3", "widgets.example.com", "Established", "True")
            for c in (a, b):
                async def refused(c: httpx.AsyncClient = c) -> bool:
                    return (await c.get(ALL)).status_code == 409
                await poll_until(refused)
                for path, params in ((ALL, {}), (ALL, {"watch": "1"}),
                                     ("/clusters/*/apis/example.com/v1/namespaces/default/widgets", {}),
                                     ("/clusters/*/apis/example.com/v1/watch/widgets", {})):
                    r = await c.get(path, params=params)
                    assert r.status_code == 409, (path, r.text)
                    status = r.json()
                    assert status["kind"] == "Status" and status["reason"] == "Conflict"
                    assert status["message"].startswith(
                        "widgets.example.com cannot be listed or watched across logical clusters: its "
                        'CustomResourceDefinition differs between the logical clusters "t1", "t2", "t3"'), status
                r = await c.get("/clusters/*/apis/example.com/v1")  # not in discovery either
                assert r.status_code == 404, r.text
                # ... while each tenant serves its own, and other kinds across tenants are unaffected.
                assert (await c.get(t("t3", "/apis/example.com/v1/widgets"))).status_code == 200
                assert (await c.get("/clusters/*/api/v1/configmaps")).status_code == 200
            # A non-master learns nothing of it.
            assert (await alice.get(ALL)).status_code == 403
            # t3's CRD goes: served across tenants again.
            assert (await b.delete(t("t3", f"{CRDS}/widgets.example.com"))).status_code == 200
            for c in (a, b):
                async def back(c: httpx.AsyncClient = c) -> bool:
                    return (await c.get(ALL)).status_code == 200
                await poll_until(back)
                assert where((await c.get(ALL)).json()["items"]) == now


async def test_across_tenants_with_the_python_client_and_kubectl(start_server: StartServer, tmp_path: Path) -> None:
    gw = await start_server()
    gw2 = await start_server()
    async with client_for(gw) as a:
        with trio.fail_after(120):
            for tenant in ("p1", "p2"):
                await create_tenant(a, tenant)
                r = await a.post(t(tenant, CRDS), json=widget_crd())
                assert r.status_code == 201, r.text
                await crd_condition(a, tenant, "widgets.example.com", "Established", "True")
            for tenant in ("p1", "p2"):
                for i in range(4):
                    r = await a.post(t(tenant, "/apis/example.com/v1/namespaces/default/widgets"),
                                     json=tiered(f"{tenant}-w{i}", i))
                    assert r.status_code == 201, r.text
            everything = {(tn, f"{tn}-w{i}") for tn in ("p1", "p2") for i in range(4)}
            await poll_until(lambda: _serves(gw2, everything))
            await trio.to_thread.run_sync(_python_client, gw, gw2, everything, tmp_path)
            if shutil.which("kubectl") is not None:
                await trio.to_thread.run_sync(_kubectl, gw, tmp_path, everything)


async def _serves(gw: Running, want: set[tuple[str, str]]) -> bool:
    async with client_for(gw) as c:
        r = await c.get(ALL)
        return r.status_code == 200 and where(r.json()["items"]) == want


def _kubeconfig_at(gw: Running, path: Path, tenant: str = "*") -> Path:
    """``gw``'s kubeconfig with its root cluster's server at ``/clusters/<tenant>`` (``*``: as a
    system controller watching every tenant would be configured)."""
    doc = yaml.safe_load(gw.kubeconfig.read_text())
    for c in doc["clusters"]:
        if c["name"] == "jetkube":
            c["cluster"]["server"] += f"/clusters/{tenant}"
    path.write_text(yaml.safe_dump(doc))
    return path


def _python_client(gw: Running, gw2: Running, everything: set[tuple[str, str]], tmp_path: Path) -> None:
    """kubernetes' CustomObjectsApi on a kubeconfig whose server is .../clusters/* (no discovery
    needed): list with selectors, then watch from the list's resourceVersion."""
    clients = []
    for i, g in enumerate((gw, gw2)):
        api = kubernetes.config.new_client_from_config(
            config_file=str(_kubeconfig_at(g, tmp_path / f"all-{i}.yaml")), context="jetkube")
        clients.append(kubernetes.client.CustomObjectsApi(api))
    co, co2 = clients
    listed = co.list_cluster_custom_object("example.com", "v1", "widgets")
    assert where(listed["items"]) == everything
    even = co2.list_cluster_custom_object("example.com", "v1", "widgets", label_selector="tier=even")
    assert where(even["items"]) == {(tn, f"{tn}-w{i}") for tn in ("p1", "p2") for i in (0, 2)}
    blue = co.list_namespaced_custom_object("example.com", "v1", "default", "widgets",
                                            field_selector="spec.color=blue")
    assert where(blue["items"]) == {(tn, f"{tn}-w{i}") for tn in ("p1", "p2") for i in (0, 3)}
    rv = listed["metadata"]["resourceVersion"]
    # Writes in both tenants through the per-tenant contexts, then a watch from rv on the other gateway.
    for tenant in ("p1", "p2"):
        api_t = kubernetes.config.new_client_from_config(
            config_file=str(_kubeconfig_at(gw, tmp_path / f"{tenant}.yaml", tenant)), context="jetkube")
        body = tiered(f"{tenant}-py", 0)
        kubernetes.client.CustomObjectsApi(api_t).create_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", body)
    w = kubernetes.watch.Watch()
    got = []
    for ev in w.stream(co2.list_cluster_custom_object, "example.com", "v1", "widgets", resource_version=rv,
                       label_selector="tier=even", timeout_seconds=30):
        got.append((ev["type"], ev["object"]["metadata"]["annotations"][CLUSTER], ev["object"]["metadata"]["name"]))
        if len(got) == 2:
            w.stop()
    assert got == [("ADDED", "p1", "p1-py"), ("ADDED", "p2", "p2-py")]
    # Deny for a tenant's user is covered with httpx; a wrong path is a 404 ApiException.
    try:
        co.list_cluster_custom_object("example.com", "v1", "nothings")
    except kubernetes.client.ApiException as e:
        assert e.status == 404, e
    else:
        raise AssertionError("an unknown resource was listed across tenants")


def _kubectl(gw: Running, tmp_path: Path, everything: set[tuple[str, str]]) -> None:
    """kubectl on a kubeconfig whose server is .../clusters/* (discovery, get -A), and --raw paths
    (list with a selector, watch from a resourceVersion) on the root one."""
    env = {**os.environ, "KUBECONFIG": str(gw.kubeconfig), "KUBECACHEDIR": str(tmp_path / "kube-cache")}

    def kubectl(*args: str) -> str:
        p = subprocess.run(("kubectl", *args), capture_output=True, text=True, env=env, timeout=60, check=False)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    listed = json.loads(kubectl("get", "--raw", ALL))
    mine = {(tn, nm) for tn, nm in where(listed["items"]) if not nm.endswith("-py")}
    assert mine == everything
    odd = json.loads(kubectl("get", "--raw", f"{ALL}?labelSelector=tier%3Dodd"))
    assert {nm for _, nm in where(odd["items"])} == {f"{tn}-w{i}" for tn in ("p1", "p2") for i in (1, 3)}
    rv = listed["metadata"]["resourceVersion"]
    # Objects created with kubectl in each tenant, then a watch from rv (ended by the server's timeout).
    doc = yaml.safe_load(gw.kubeconfig.read_text())
    for tenant in ("p1", "p2"):
        p = subprocess.run(("kubectl", "--server", f"{_server(doc)}/clusters/{tenant}", "create", "-f", "-"),
                           input=yaml.safe_dump(tiered(f"{tenant}-kc", 1)), capture_output=True, text=True, env=env,
                           timeout=60, check=False)
        assert p.returncode == 0, p.stderr
    out = kubectl("get", "--raw", f"{ALL}?watch=1&resourceVersion={rv}&timeoutSeconds=2")
    assert [(e["type"], e["object"]["metadata"]["annotations"][CLUSTER], e["object"]["metadata"]["name"])
            for e in events(out)] == [("ADDED", "p1", "p1-kc"), ("ADDED", "p2", "p2-kc")]
    out = kubectl("get", "--raw", f"{ALL}?watch=1&resourceVersion={rv}&timeoutSeconds=1&fieldSelector=metadata.name%3Dp2-kc")
    assert [e["object"]["metadata"]["annotations"][CLUSTER] for e in events(out)] == ["p2"]
    # A kubeconfig at /clusters/*: kubectl's discovery, then its resource commands.
    every = str(_kubeconfig_at(gw, tmp_path / "kubectl-all.yaml"))
    out = kubectl("--kubeconfig", every, "api-resources", "--api-group=example.com", "-o", "wide")
    assert "widgets" in out and "list,watch" in out, out
    got = json.loads(kubectl("--kubeconfig", every, "get", "widgets", "-A", "-l", "tier=odd", "-o", "json"))
    assert where(got["items"]) == {(tn, f"{tn}-w{i}") for tn in ("p1", "p2") for i in (1, 3)} | {
        ("p1", "p1-kc"), ("p2", "p2-kc")}
    out = kubectl("--kubeconfig", every, "get", "configmaps", "-A", "--field-selector", "metadata.name=kube-root-ca.crt",
                  "-o", "jsonpath={range .items[*]}{.metadata.annotations.tenancy\\.jetkube\\.io/cluster} {end}")
    assert {"p1", "p2", "root"} <= set(out.split()), out
    p = subprocess.run(("kubectl", "--kubeconfig", every, "delete", "widgets", "p1-kc", "-n", "default"),
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode != 0, p.stdout


def _server(doc: dict[str, Any]) -> str:
    return next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == "jetkube")
