"""CustomResourceDefinitions per tenant, on a real nats-server: a CRD created in one logical cluster
serves its kind in that tenant only (routing, legacy and aggregated discovery, OpenAPI v2 and v3,
Tables, field validation), the same CRD name defines different kinds in two tenants, name
conflicts and conditions are per tenant, deleting a CRD empties only its tenant's custom
resources; on two gateways, on a gateway started after the CRDs exist, and through kubectl's
tenant contexts and the official Python client."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import trio
import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from tests.conftest import StartServer, client_for, poll_until
from tests.conftest import kubectl as kubectl_path
from tests.integration.test_crd import CRDS, widget, widget_crd
from tests.integration.test_tenancy import create_tenant, t

pytestmark = pytest.mark.integration

WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
AGGREGATED = {"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}


def t2_widget_crd() -> dict[str, Any]:
    """The same CRD name as ``widget_crd`` with another schema: ``spec.size`` a string, other
    columns, another short name, cluster-wide categories none, one version."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wt"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object", "required": ["size"],
                    "properties": {"size": {"type": "string", "enum": ["S", "M", "L"]},
                                   "label": {"type": "string"}}}}}},
                "additionalPrinterColumns": [{"name": "Label", "type": "string", "jsonPath": ".spec.label"}],
            }],
        },
    }


def simple_crd(group: str, plural: str, kind: str, *, scope: str = "Namespaced",
               short_names: tuple[str, ...] = ()) -> dict[str, Any]:
    names: dict[str, Any] = {"plural": plural, "singular": kind.lower(), "kind": kind}
    if short_names:
        names["shortNames"] = list(short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope, "names": names, "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


def conditions(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or ()}


async def crd_condition(c: httpx.AsyncClient, tenant: str, name: str, cond: str, status: str) -> dict[str, Any]:
    """The CRD once its condition ``cond`` has ``status`` (bounded by the caller)."""
    got: dict[str, Any] = {}

    async def probe() -> bool:
        nonlocal got
        r = await c.get(t(tenant, f"{CRDS}/{name}"))
        got = r.json()
        return r.status_code == 200 and conditions(got).get(cond, {}).get("status") == status

    await poll_until(probe)
    return got


async def serves(c: httpx.AsyncClient, tenant: str, path: str, code: int = 200) -> None:
    """Until ``path`` in ``tenant`` answers ``code`` (a gateway learns a CRD from the log)."""
    async def probe() -> bool:
        return (await c.get(t(tenant, path))).status_code == code
    await poll_until(probe)


async def discovered(c: httpx.AsyncClient, tenant: str) -> dict[str, set[str]]:
    """{group/version: resource names} from legacy discovery, and the same from aggregated
    discovery (asserted equal)."""
    legacy: dict[str, set[str]] = {}
    for g in (await c.get(t(tenant, "/apis"))).json()["groups"]:
        for v in g["versions"]:
            r = await c.get(t(tenant, f"/apis/{v['groupVersion']}"))
            assert r.status_code == 200, (tenant, v, r.text)
            legacy[v["groupVersion"]] = {x["name"] for x in r.json()["resources"] if "/" not in x["name"]}
    r = await c.get(t(tenant, "/apis"), headers=AGGREGATED)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json;g=apidiscovery")
    aggregated = {f"{g['metadata']['name']}/{v['version']}": {x["resource"] for x in v["resources"]}
                  for g in r.json()["items"] for v in g["versions"]}
    assert aggregated == legacy, (tenant, set(aggregated) ^ set(legacy))
    return legacy


def v2_widget(doc: dict[str, Any]) -> dict[str, Any] | None:
    return doc["definitions"].get("com.example.v1.Widget")


async def test_crds_are_per_tenant_on_three_gateways(start_server: StartServer) -> None:
    gw_a, gw_b = await start_server(), await start_server()
    async with client_for(gw_a) as a, client_for(gw_b) as b:
        with trio.fail_after(120):
            await create_tenant(a, "t1", wait_on=[a, b])
            await create_tenant(b, "t2", wait_on=[a, b])
            # t1: widgets (integer sizes) and cluster-scoped gadgets; t2: widgets of the same CRD
            # name with another schema, and things; root: none of them.
            crds = {"t1": [widget_crd(), simple_crd("example.org", "gadgets", "Gadget", scope="Cluster")],
                    "t2": [t2_widget_crd(), simple_crd("t2.example.io", "things", "Thing", short_names=("th",))]}
            for (tenant, objs), c in zip(crds.items(), (a, b), strict=True):
                for crd in objs:
                    r = await c.post(t(tenant, CRDS), json=crd)
                    assert r.status_code == 201, r.text
            for tenant, objs in crds.items():
                for crd in objs:
                    got = await crd_condition(a, tenant, crd["metadata"]["name"], "Established", "True")
                    assert conditions(got)["NamesAccepted"]["reason"] == "NoConflicts"
            for c in (a, b):
                await serves(c, "t1", "/apis/example.org/v1/gadgets")
                await serves(c, "t2", "/apis/t2.example.io/v1/namespaces/default/things")
                await serves(c, "t2", WIDGETS)

            # Discovery (legacy and aggregated agree): each tenant its own kinds, on both gateways.
            for c in (a, b):
                d1, d2, root = await discovered(c, "t1"), await discovered(c, "t2"), await discovered(c, "root")
                assert d1["example.com/v1"] == {"widgets"} and d1["example.com/v1beta1"] == {"widgets"}
                assert d1["example.org/v1"] == {"gadgets"} and "t2.example.io/v1" not in d1
                assert d2["example.com/v1"] == {"widgets"} and "example.com/v1beta1" not in d2
                assert d2["t2.example.io/v1"] == {"things"} and "example.org/v1" not in d2
                assert not {"example.com/v1", "example.org/v1", "t2.example.io/v1"} & set(root)
                assert d1["apps/v1"] == d2["apps/v1"] == root["apps/v1"]  # built-in kinds: shared
                res = {x["name"]: x for x in (await c.get(t("t2", "/apis/example.com/v1"))).json()["resources"]}
                assert res["widgets"]["shortNames"] == ["wt"] and "widgets/status" not in res
                res = {x["name"]: x for x in (await c.get(t("t1", "/apis/example.com/v1"))).json()["resources"]}
                assert res["widgets"]["shortNames"] == ["wd"] and "widgets/status" in res
                for path in ("/apis/example.com/v1", "/apis/example.org", "/apis/t2.example.io/v1"):
                    assert (await c.get(path)).status_code == 404, path
                assert (await c.get(t("t2", "/apis/example.org/v1"))).status_code == 404
                assert (await c.get(t("t1", "/apis/t2.example.io"))).status_code == 404

            # OpenAPI v2 and v3: each tenant's schema, nothing in another's.
            for c in (a, b):
                w1 = v2_widget((await c.get(t("t1", "/openapi/v2"))).json())
                w2 = v2_widget((await c.get(t("t2", "/openapi/v2"))).json())
                assert w1 is not None and w2 is not None
                assert w1["properties"]["spec"]["properties"]["size"]["type"] == "integer"
                assert w2["properties"]["spec"]["properties"]["size"]["type"] == "string"
                assert v2_widget((await c.get("/openapi/v2")).json()) is None
                for tenant, present, absent in (("t1", "apis/example.org/v1", "apis/t2.example.io/v1"),
                                                ("t2", "apis/t2.example.io/v1", "apis/example.org/v1")):
                    paths = (await c.get(t(tenant, "/openapi/v3"))).json()["paths"]
                    assert present in paths and absent not in paths and "apis/example.com/v1" in paths
                    # As kube's: client-go joins the index's URLs to its base path (the tenant's).
                    url = paths["apis/example.com/v1"]["serverRelativeURL"]
                    assert url.startswith("/openapi/v3/apis/example.com/v1?hash="), url
                    doc = (await c.get(t(tenant, url))).json()
                    size = doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"]
                    assert size["properties"]["size"]["type"] == ("integer" if tenant == "t1" else "string")
                    stale = await c.get(t(tenant, "/openapi/v3/apis/example.com/v1"), params={"hash": "x"},
                                        follow_redirects=False)
                    assert stale.status_code == 301
                    assert stale.headers["location"].startswith(f"/clusters/{tenant}/openapi/v3/apis/example.com/v1")
                root_paths = (await c.get("/openapi/v3")).json()["paths"]
                assert not {"apis/example.com/v1", "apis/example.org/v1", "apis/t2.example.io/v1"} & set(root_paths)

            # Routing and field validation: each tenant's schema decides, root has no such kind.
            for i in range(6):
                r = await (a, b)[i % 2].post(t("t1", WIDGETS), json=widget(f"w{i}", size=i + 1))
                assert r.status_code == 201, r.text
                r = await (b, a)[i % 2].post(t("t2", WIDGETS), json=widget(f"w{i}", size="SML"[i % 3],
                                                                           label=f"l{i}"))
                assert r.status_code == 201, r.text
            r = await a.post(t("t1", WIDGETS), json=widget("bad", size="M"))
            assert r.status_code == 422 and 'spec.size in body must be of type integer: "string"' in r.json()["message"]
            r = await b.post(t("t2", WIDGETS), json=widget("bad", size=3))
            assert r.status_code == 422 and 'spec.size in body must be of type string: "integer"' in r.json()["message"], r.text
            r = await b.post(t("t2", WIDGETS), json=widget("bad", size="XL"))
            assert r.status_code == 422 and 'Unsupported value: "XL"' in r.json()["message"], r.text
            r = await a.post(t("t2", WIDGETS), params={"fieldValidation": "Strict"},
                             json=widget("bad", size="S", maxSize=3))  # t1's field, unknown in t2
            assert r.status_code == 400 and 'strict decoding error: unknown field "spec.maxSize"' in r.json()["message"], r.text
            r = await a.post(t("t1", WIDGETS), params={"fieldValidation": "Strict"},
                             json=widget("strict", size=3, label="x"))  # t2's field, unknown in t1
            assert r.status_code == 400 and 'strict decoding error: unknown field "spec.label"' in r.json()["message"], r.text
            for c in (a, b):
                for path in (WIDGETS, "/apis/example.org/v1/gadgets"):
                    r = await c.post(path, json=widget("x", size=1))
                    assert r.status_code == 404 and r.json()["reason"] == "NotFound", r.text
                assert (await c.get(t("t2", "/apis/example.org/v1/gadgets"))).status_code == 404
                assert (await c.get(t("t1", "/apis/example.com/v1beta1/namespaces/default/widgets"))).status_code \
                    == 200
                assert (await c.get(t("t2", "/apis/example.com/v1beta1/namespaces/default/widgets"))).status_code \
                    == 404
                r = await c.post(t("t1", "/apis/example.org/v1/gadgets"),
                                 json={"apiVersion": "example.org/v1", "kind": "Gadget",
                                       "metadata": {"name": "g-a" if c is a else "g-b"}})
                assert r.status_code == 201, r.text
            w1 = (await b.get(t("t1", f"{WIDGETS}/w1"))).json()
            w2 = (await a.get(t("t2", f"{WIDGETS}/w1"))).json()
            assert w1["spec"] == {"size": 2, "maxSize": 10, "color": "red", "replicas": 1}  # t1's defaults
            assert w2["spec"] == {"size": "M", "label": "l1"} and w1["metadata"]["uid"] != w2["metadata"]["uid"]

            # Tables: each tenant's printer columns.
            for c in (a, b):
                table = (await c.get(t("t1", WIDGETS), headers=TABLE)).json()
                assert [col["name"] for col in table["columnDefinitions"]] == ["Name", "Size", "Color"]
                assert sorted(row["cells"][:2] for row in table["rows"]) == [[f"w{i}", i + 1] for i in range(6)]
                table = (await c.get(t("t2", WIDGETS), headers=TABLE)).json()
                assert [col["name"] for col in table["columnDefinitions"]] == ["Name", "Label"]
                assert sorted(row["cells"][:2] for row in table["rows"]) == [[f"w{i}", f"l{i}"] for i in range(6)]

            # Name conflicts are per tenant: kind Thing is taken in t2, free in t1.
            clash = simple_crd("t2.example.io", "otherthings", "Thing")
            clash["spec"]["names"]["singular"] = "otherthing"
            for tenant, c in (("t2", a), ("t1", b)):
                r = await c.post(t(tenant, CRDS), json=clash)
                assert r.status_code == 201, r.text
            got = await crd_condition(b, "t2", "otherthings.t2.example.io", "NamesAccepted", "False")
            assert conditions(got)["NamesAccepted"]["reason"] == "KindConflict"
            assert conditions(got).get("Established", {}).get("status") != "True"
            got = await crd_condition(a, "t1", "otherthings.t2.example.io", "Established", "True")
            assert conditions(got)["NamesAccepted"]["reason"] == "NoConflicts"
            assert (await a.get(t("t2", "/apis/t2.example.io/v1/namespaces/default/otherthings"))).status_code \
                == 404

            # A gateway started now learns every tenant's CRDs from the log.
            gw_c = await start_server()
            async with client_for(gw_c) as c3:
                assert (await discovered(c3, "t2"))["t2.example.io/v1"] == {"things"}
                d1 = await discovered(c3, "t1")
                assert d1["t2.example.io/v1"] == {"otherthings"} and "things" not in d1["t2.example.io/v1"]
                assert d1["example.org/v1"] == {"gadgets"}
                table = (await c3.get(t("t2", WIDGETS), headers=TABLE)).json()
                assert [col["name"] for col in table["columnDefinitions"]] == ["Name", "Label"]
                r = await c3.post(t("t2", WIDGETS), json=widget("late", size=4))
                assert r.status_code == 422 and "must be of type string" in r.text, r.text

                # Deleting t1's widgets CRD empties t1's widgets only; t2's stay served and whole.
                r = await c3.delete(t("t1", f"{CRDS}/widgets.example.com"))
                assert r.status_code == 200, r.text
                for c in (a, b, c3):
                    await serves(c, "t1", WIDGETS, 404)
                    await serves(c, "t1", "/apis/example.com/v1", 404)
                async def crd_gone() -> bool:
                    return (await a.get(t("t1", f"{CRDS}/widgets.example.com"))).status_code == 404
                await poll_until(crd_gone)
                for c in (a, b, c3):
                    items = (await c.get(t("t2", WIDGETS))).json()["items"]
                    assert sorted(i["metadata"]["name"] for i in items) == [f"w{i}" for i in range(6)]
                    assert "example.com/v1" in await discovered(c, "t2")
                    assert "example.com/v1" not in await discovered(c, "t1")
                    assert v2_widget((await c.get(t("t1", "/openapi/v2"))).json()) is None
                    assert v2_widget((await c.get(t("t2", "/openapi/v2"))).json()) is not None
                # Created again in t1: none of the old widgets come back.
                r = await a.post(t("t1", CRDS), json=widget_crd())
                assert r.status_code == 201, r.text
                await crd_condition(a, "t1", "widgets.example.com", "Established", "True")
                await serves(b, "t1", WIDGETS)
                assert (await b.get(t("t1", WIDGETS))).json()["items"] == []
                assert len((await b.get(t("t1", "/apis/example.org/v1/gadgets"))).json()["items"]) == 2


async def test_tenant_crds_through_kubectl_and_the_python_client(start_server: StartServer, tmp_path: Path) -> None:
    kubectl_path()
    gw = await start_server()
    gw2 = await start_server()
    env = {**os.environ, "KUBECONFIG": str(gw.kubeconfig), "KUBECACHEDIR": str(tmp_path / "kube-cache")}
    jetkube = str(Path(sys.executable).parent / "jetkube")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False, input=stdin)

    async def kubectl(tenant: str, *args: str, stdin: str | None = None, ok: bool = True,
                      server: str = "") -> subprocess.CompletedProcess[str]:
        ctx = ("--context", f"jetkube@{tenant}") if tenant != "root" else ()
        srv = ("--server", server) if server else ()
        p = await trio.to_thread.run_sync(partial_run(run, stdin), "kubectl", *ctx, *srv, *args)
        if ok:
            assert p.returncode == 0, (args, p.stderr)
        return p

    with trio.fail_after(180):
        for name in ("team-a", "team-b"):
            p = await trio.to_thread.run_sync(run, jetkube, "tenant", "create", name)
            assert p.returncode == 0, p.stderr
        a_crd = widget_crd()
        b_crd = t2_widget_crd()
        b_crd["spec"]["names"]["categories"] = ["all"]
        await kubectl("team-a", "create", "-f", "-", stdin=yaml.safe_dump(a_crd))
        await kubectl("team-a", "create", "-f", "-",
                      stdin=yaml.safe_dump(simple_crd("example.org", "gadgets", "Gadget", short_names=("gd",))))
        await kubectl("team-b", "create", "-f", "-", stdin=yaml.safe_dump(b_crd))
        for tenant, names in (("team-a", ("widgets.example.com", "gadgets.example.org")),
                              ("team-b", ("widgets.example.com",))):
            for name in names:
                await kubectl(tenant, "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")

        # kubectl api-resources: each tenant's kinds only.
        a_res = (await kubectl("team-a", "api-resources", "-o", "name")).stdout.split()
        b_res = (await kubectl("team-b", "api-resources", "-o", "name")).stdout.split()
        root_res = (await kubectl("root", "api-resources", "-o", "name")).stdout.split()
        assert {"widgets.example.com", "gadgets.example.org"} <= set(a_res)
        assert "widgets.example.com" in b_res and "gadgets.example.org" not in b_res
        assert not {"widgets.example.com", "gadgets.example.org"} & set(root_res)
        p = await kubectl("team-a", "api-resources", "--api-group=example.com")
        assert "wd" in p.stdout.split() and "wt" not in p.stdout.split()
        p = await kubectl("team-b", "api-resources", "--api-group=example.com")
        assert "wt" in p.stdout.split() and "wd" not in p.stdout.split()

        # create -f and get, each tenant against its own schema; short names per tenant.
        docs_a = [widget(f"a{i}", size=i + 1) for i in range(5)]
        docs_b = [widget(f"b{i}", size="SML"[i % 3], label=f"x{i}") for i in range(5)]
        await kubectl("team-a", "create", "-f", "-", stdin=yaml.safe_dump_all(docs_a))
        await kubectl("team-b", "create", "-f", "-", stdin=yaml.safe_dump_all(docs_b))
        p = await kubectl("team-a", "create", "-f", "-", stdin=yaml.safe_dump(docs_b[0]), ok=False)
        assert p.returncode != 0 and 'unknown field "spec.label"' in p.stderr, p.stderr  # kubectl: Strict
        # Server-side apply against each tenant's schema (its merge type is built from that schema).
        applied_b = copy.deepcopy(docs_b[0])
        applied_b["spec"]["label"] = "applied"
        await kubectl("team-b", "apply", "--server-side", "--force-conflicts", "-f", "-",
                      stdin=yaml.safe_dump(applied_b))
        applied_a = copy.deepcopy(docs_a[0])
        applied_a["spec"]["size"] = 7
        await kubectl("team-a", "apply", "--server-side", "--force-conflicts", "-f", "-",
                      stdin=yaml.safe_dump(applied_a))
        p = await kubectl("team-b", "get", "widgets", "b0", "-o", "jsonpath={.spec.label}")
        assert p.stdout == "applied"
        p = await kubectl("team-a", "get", "widgets", "a0", "-o", "jsonpath={.spec.size}")
        assert p.stdout == "7"
        p = await kubectl("team-a", "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(applied_b), ok=False)
        assert p.returncode != 0 and "spec.label" in p.stderr, p.stderr  # unknown in team-a's schema
        p = await kubectl("team-a", "get", "wd", "-o", "name")
        assert p.stdout.split() == [f"widget.example.com/a{i}" for i in range(5)]
        p = await kubectl("team-b", "get", "wt")
        lines = p.stdout.splitlines()
        assert lines[0].split() == ["NAME", "LABEL"] and len(lines) == 6, p.stdout
        p = await kubectl("team-b", "get", "all", "-o", "name")  # categories: t2's widgets are in "all"
        assert "widget.example.com/b0" in p.stdout.split(), p.stdout
        p = await kubectl("team-a", "get", "all", "-o", "name")  # t1's too (widget_crd's categories)
        assert "widget.example.com/a0" in p.stdout.split() and "widget.example.com/b0" not in p.stdout.split()
        for tenant, kind in (("team-b", "gadgets"), ("team-b", "wd"), ("root", "widgets"), ("root", "gd")):
            p = await kubectl(tenant, "get", kind, ok=False)
            assert p.returncode != 0 and "the server doesn't have a resource type" in p.stderr, (tenant, p.stderr)
        # kubectl explain reads the tenant's OpenAPI v3.
        p = await kubectl("team-a", "explain", "widgets.spec.size", "-v=6")
        assert "<integer>" in p.stdout, p.stdout
        # From the tenant's OpenAPI v3 document, at the index's URL under the context's base path.
        fetched = [ln for ln in p.stderr.splitlines() if "/openapi/v3/apis/example.com/v1?hash=" in ln]
        assert fetched and all("/clusters/team-a/openapi/v3/" in ln and '"200 OK"' in ln for ln in fetched), p.stderr
        p = await kubectl("team-b", "explain", "widgets.spec.size")
        assert "<string>" in p.stdout, p.stdout

        # The second gateway, through the same tenant path.
        doc = yaml.safe_load(gw.kubeconfig.read_text())
        server2 = gw2.kubeconfig and next(c["cluster"]["server"] for c in yaml.safe_load(
            gw2.kubeconfig.read_text())["clusters"] if c["name"] == "jetkube")
        assert doc and server2
        env2 = {**env, "KUBECONFIG": str(gw2.kubeconfig)}

        def run2(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(args, capture_output=True, text=True, env=env2, timeout=60, check=False)

        p = await trio.to_thread.run_sync(run2, "kubectl", "--server", f"{server2}/clusters/team-b", "get",
                                          "widgets", "-o", "name")
        assert p.returncode == 0 and len(p.stdout.split()) == 5, p.stderr
        p = await trio.to_thread.run_sync(run2, "kubectl", "--server", f"{server2}/clusters/team-b", "get",
                                          "gadgets")
        assert p.returncode != 0 and "the server doesn't have a resource type" in p.stderr, p.stderr

        # The official Python client on each tenant's context.
        def python_client() -> None:
            api_a = kubernetes.config.new_client_from_config(config_file=str(gw.kubeconfig), context="jetkube@team-a")
            api_b = kubernetes.config.new_client_from_config(config_file=str(gw.kubeconfig), context="jetkube@team-b")
            co_a, co_b = kubernetes.client.CustomObjectsApi(api_a), kubernetes.client.CustomObjectsApi(api_b)
            listed = co_a.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
            assert sorted(o["metadata"]["name"] for o in listed["items"]) == [f"a{i}" for i in range(5)]
            body = copy.deepcopy(docs_b[0])
            body["metadata"]["name"] = "py"
            made = co_b.create_namespaced_custom_object("example.com", "v1", "default", "widgets", body)
            assert made["spec"] == {"size": "S", "label": "x0"}
            try:
                co_a.create_namespaced_custom_object("example.com", "v1", "default", "widgets", body)
            except kubernetes.client.ApiException as e:
                assert e.status == 422, e
            else:
                raise AssertionError("team-a's schema accepted team-b's widget")
            dyn_a, dyn_b = DynamicClient(api_a), DynamicClient(api_b)
            assert dyn_a.resources.get(api_version="example.org/v1", kind="Gadget").name == "gadgets"
            with pytest.raises(ResourceNotFoundError):
                dyn_b.resources.get(api_version="example.org/v1", kind="Gadget")
            res = dyn_b.resources.get(api_version="example.com/v1", kind="Widget")
            assert sorted(i.metadata.name for i in res.get(namespace="default").items) == \
                sorted([f"b{i}" for i in range(5)] + ["py"])

        await trio.to_thread.run_sync(python_client)


def partial_run(run: Any, stdin: str | None) -> Any:
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return run(*args, stdin=stdin)
    return call


async def test_controllers_handle_a_tenants_custom_resources(start_server: StartServer) -> None:
    """Garbage collection with a custom resource as the owner, namespace deletion and tenant
    deletion, each finding the custom kinds of its own tenant only."""
    from tests.integration.test_tenancy import LC

    gw = await start_server()
    work = "/apis/example.com/v1/namespaces/work/widgets"
    cms = "/api/v1/namespaces/work/configmaps"
    async with client_for(gw) as c:
        with trio.fail_after(120):
            await create_tenant(c, "t1")
            await create_tenant(c, "t2")
            for tenant, body in (("t1", widget_crd()), ("t2", t2_widget_crd())):
                assert (await c.post(t(tenant, CRDS), json=body)).status_code == 201
                await crd_condition(c, tenant, "widgets.example.com", "Established", "True")
                await serves(c, tenant, WIDGETS)
                assert (await c.post(t(tenant, "/api/v1/namespaces"), json={"metadata": {"name": "work"}})
                        ).status_code == 201
            owners: dict[str, str] = {}
            for tenant in ("t1", "t2"):
                for i in range(4):
                    w = widget(f"w{i}", size=i + 1) if tenant == "t1" else widget(f"w{i}", size="S")
                    r = await c.post(t(tenant, work), json=w)
                    assert r.status_code == 201, r.text
                    owners[f"{tenant}/w{i}"] = r.json()["metadata"]["uid"]
                # Configmaps owned by the tenant's widget w0.
                for i in range(5):
                    body = {"metadata": {"name": f"dep{i}", "ownerReferences": [{
                        "apiVersion": "example.com/v1", "kind": "Widget", "name": "w0",
                        "uid": owners[f"{tenant}/w0"]}]}}
                    assert (await c.post(t(tenant, cms), json=body)).status_code == 201

            # t1's owner goes: its dependents are collected (the GC finds t1's Widget kind); t2's stay.
            assert (await c.delete(t("t1", f"{work}/w0"))).status_code == 200

            async def collected() -> bool:
                names = {i["metadata"]["name"] for i in (await c.get(t("t1", cms))).json()["items"]}
                return not names & {f"dep{i}" for i in range(5)}
            await poll_until(collected)
            names = {i["metadata"]["name"] for i in (await c.get(t("t2", cms))).json()["items"]}
            assert {f"dep{i}" for i in range(5)} <= names

            # t1's namespace "work" is emptied of its widgets and goes; t2's "work" keeps its own.
            assert (await c.delete(t("t1", "/api/v1/namespaces/work"))).status_code == 200

            async def ns_gone() -> bool:
                return (await c.get(t("t1", "/api/v1/namespaces/work"))).status_code == 404
            await poll_until(ns_gone)
            assert (await c.get(t("t1", "/apis/example.com/v1/widgets"))).json()["items"] == []
            items = (await c.get(t("t2", work))).json()["items"]
            assert sorted(i["metadata"]["name"] for i in items) == [f"w{i}" for i in range(4)]

            # Deleting tenant t2 removes its CRD and custom resources; t1's kind stays served, and a
            # tenant of the same name starts without the kind.
            assert (await c.post(t("t1", WIDGETS), json=widget("kept", size=1))).status_code == 201
            assert (await c.delete(f"{LC}/t2")).status_code == 200

            async def tenant_gone() -> bool:
                return (await c.get(f"{LC}/t2")).status_code == 404
            await poll_until(tenant_gone)
            await create_tenant(c, "t2")
            assert "example.com/v1" not in await discovered(c, "t2")
            assert (await c.get(t("t2", WIDGETS))).status_code == 404
            assert [i["metadata"]["name"] for i in (await c.get(t("t1", WIDGETS))).json()["items"]] == ["kept"]
