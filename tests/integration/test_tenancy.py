"""Tenants as logical clusters, end to end on a real nats-server: ``/clusters/<name>/`` serves a
whole Kubernetes API per LogicalCluster; nothing of one tenant is visible from another through
any verb; RBAC per tenant; deletion empties a tenant; an unknown tenant is a 404 that allocates
nothing; the cross-tenant watch of root's system:masters; two gateways; kubectl on a tenant."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

from gateway import Running
from tests.conftest import StartServer, client_for, kubectl, poll_until

LC = "/apis/tenancy.jetkube.io/v1alpha1/logicalclusters"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
TOKENS = 'alice-token,alice,u-alice\nbob-token,bob,u-bob,"devs"\n'


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def t(tenant: str, path: str) -> str:
    return path if tenant == "root" else f"/clusters/{tenant}{path}"


def as_user(running: Running, token: str) -> httpx.AsyncClient:
    assert running.http_url is not None
    return httpx.AsyncClient(base_url=running.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def create_tenant(c: httpx.AsyncClient, name: str, *, wait_on: list[httpx.AsyncClient] | None = None) -> None:
    r = await c.post(LC, json={"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                               "metadata": {"name": name}})
    assert r.status_code == 201, r.text
    for client in wait_on or [c]:
        async def ready(client: httpx.AsyncClient = client) -> bool:
            r = await client.get(f"{LC}/{name}")
            return r.status_code == 200 and (r.json().get("status") or {}).get("phase") == "Ready"
        with trio.fail_after(30):
            await poll_until(ready)


def status_404(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 404, (r.status_code, r.text)
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "NotFound", body
    return body


async def test_tenant_is_a_whole_cluster_and_isolated_on_two_gateways(start_server: StartServer) -> None:
    gw_a, gw_b = await start_server(), await start_server()
    async with client_for(gw_a) as a, client_for(gw_b) as b:
        await create_tenant(a, "t1", wait_on=[a, b])
        await create_tenant(b, "t2", wait_on=[a, b])
        for tenant in ("t1", "t2"):
            # The bootstrap: namespaces, default service accounts, the root CA, the RBAC policy, the admin binding.
            names = {n["metadata"]["name"] for n in (await a.get(t(tenant, "/api/v1/namespaces"))).json()["items"]}
            assert names == {"default", "kube-system", "kube-public", "kube-node-lease"}
            for ns in sorted(names):
                async def complete(ns: str = ns, tenant: str = tenant) -> bool:
                    sa = await b.get(t(tenant, f"/api/v1/namespaces/{ns}/serviceaccounts/default"))
                    ca = await b.get(t(tenant, f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"))
                    return sa.status_code == 200 and ca.status_code == 200
                with trio.fail_after(30):
                    await poll_until(complete)
            admin = (await a.get(t(tenant, f"{RBAC}/clusterroles/admin"))).json()
            assert admin["rules"], "aggregated in the tenant"
            binding = (await a.get(t(tenant, f"{RBAC}/clusterrolebindings/tenancy.jetkube.io:admin"))).json()
            assert binding["roleRef"]["name"] == "cluster-admin"
            # Discovery and OpenAPI are served per tenant.
            assert (await a.get(t(tenant, "/api/v1"))).status_code == 200
            assert (await a.get(t(tenant, "/apis"))).status_code == 200
            assert (await a.get(t(tenant, "/openapi/v2"))).status_code == 200
            assert (await a.get(t(tenant, "/openapi/v3"))).status_code == 200

        # t1's objects, written through gateway A.
        base = "/api/v1/namespaces/default/configmaps"
        uids = {}
        for i in range(10):
            r = await a.post(t("t1", base), json=cm(f"c{i}", v=str(i)))
            assert r.status_code == 201, r.text
            assert "tenancy.jetkube.io/cluster" not in (r.json()["metadata"].get("annotations") or {})
            uids[f"c{i}"] = r.json()["metadata"]["uid"]
        # Read back in t1 on gateway B (the POST landed in t1, not in root).
        r = await b.get(t("t1", f"{base}/c3"), params={"resourceVersion": ""})
        assert r.status_code == 200 and r.json()["data"] == {"v": "3"}

        for other, c in (("t2", b), ("root", a), ("t2", a), ("root", b)):
            # get, list, watch: nothing of t1.
            status_404(await c.get(t(other, f"{base}/c3")))
            items = (await c.get(t(other, base))).json()["items"]
            assert not {i["metadata"]["name"] for i in items} & set(uids)
            items = (await c.get(t(other, "/api/v1/configmaps"))).json()["items"]
            assert not {i["metadata"]["uid"] for i in items} & set(uids.values())
            r = await c.get(t(other, base), params={"watch": "1", "timeoutSeconds": "1"})
            assert not any(json.loads(ln)["object"]["metadata"].get("uid") in uids.values()
                           for ln in r.text.splitlines() if ln.strip())
            # update, patch, delete: 404, t1 untouched.
            status_404(await c.put(t(other, f"{base}/c3"), json={**cm("c3", v="x"),
                                                                  "metadata": {"name": "c3", "resourceVersion": "1"}}))
            status_404(await c.patch(t(other, f"{base}/c3"), json={"data": {"v": "x"}},
                                     headers={"Content-Type": "application/merge-patch+json"}))
            status_404(await c.delete(t(other, f"{base}/c3")))
            # deletecollection in the other tenant deletes nothing of t1.
            assert (await c.delete(t(other, base))).status_code == 200
            # create of the same name: another object.
            r = await c.post(t(other, base), json=cm("c3", v="theirs"))
            assert r.status_code == 201, r.text
            assert r.json()["metadata"]["uid"] != uids["c3"]
            assert (await c.delete(t(other, f"{base}/c3"))).status_code == 200
        # t1 still has all ten, unchanged.
        items = (await b.get(t("t1", base), params={"resourceVersion": ""})).json()["items"]
        assert {i["metadata"]["name"]: i["metadata"]["uid"] for i in items if i["metadata"]["name"] in uids} == uids
        assert all(i["data"]["v"] == i["metadata"]["name"][1:] for i in items if i["metadata"]["name"] in uids)
        # History and audit queries answer for the path's tenant.
        hist = "/apis/history.jetkube.io/v1/namespaces/default/configmaps/c3"
        revs = (await a.get(t("t1", hist), params={"includeObject": "true"})).json()["items"]
        assert revs and all(r["object"]["metadata"]["uid"] == uids["c3"] for r in revs if r["type"] != "DELETED")
        r = await a.get(t("t2", hist), params={"includeObject": "true"})
        theirs = r.json().get("items", []) if r.status_code == 200 else []
        assert not any((r.get("object") or {}).get("metadata", {}).get("uid") == uids["c3"] for r in theirs)
        lines = (await a.get(t("t2", "/apis/audit.jetkube.io/v1/events"))).text.splitlines()
        tenants = {json.loads(ln).get("annotations", {}).get("jetkube.io/tenant") for ln in lines if ln.strip()}
        assert "t2" in tenants and tenants <= {"t2", None}, tenants
        # A LogicalCluster lives in root only.
        r = await a.post(t("t1", LC), json={"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                                           "metadata": {"name": "nested"}})
        assert r.status_code == 403, r.text
        r = await a.post(LC, json={"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                                   "metadata": {"name": "default"}})
        assert r.status_code == 422, r.text


async def test_rbac_per_tenant(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    async with client_for(gw) as admin, as_user(gw, "alice-token") as alice, as_user(gw, "bob-token") as bob:
        for name in ("t1", "t2"):
            await create_tenant(admin, name)
        base = "/api/v1/namespaces/default/configmaps"
        for tenant in ("root", "t1", "t2"):
            assert (await alice.get(t(tenant, base))).status_code == 403
        rb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": "alice-edit", "namespace": "default"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
              "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}
        r = await admin.post(t("t1", f"{RBAC}/namespaces/default/rolebindings"), json=rb)
        assert r.status_code == 201, r.text

        async def granted() -> bool:
            return (await alice.get(t("t1", base))).status_code == 200
        with trio.fail_after(10):
            await poll_until(granted)
        assert (await alice.post(t("t1", base), json=cm("mine"))).status_code == 201
        for tenant in ("root", "t2"):
            r = await alice.get(t(tenant, base))
            assert r.status_code == 403, r.text
            assert (await alice.post(t(tenant, base), json=cm("mine"))).status_code == 403
        # The access reviews answer for the path's tenant.
        ssar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": "default"}}}
        path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        assert (await alice.post(t("t1", path), json=ssar)).json()["status"]["allowed"] is True
        assert (await alice.post(t("t2", path), json=ssar)).json()["status"]["allowed"] is False
        assert (await alice.post(path, json=ssar)).json()["status"]["allowed"] is False
        ssrr = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": "default"}}
        rpath = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
        in_t1 = (await alice.post(t("t1", rpath), json=ssrr)).json()["status"]["resourceRules"]
        in_t2 = (await alice.post(t("t2", rpath), json=ssrr)).json()["status"]["resourceRules"]
        assert any("configmaps" in (r.get("resources") or []) for r in in_t1)
        assert not any("configmaps" in (r.get("resources") or []) for r in in_t2)

        # Whoever root's RBAC lets create LogicalClusters does, and is cluster-admin in the new one only.
        creator = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "tenant-creator"},
                   "rules": [{"apiGroups": ["tenancy.jetkube.io"], "resources": ["logicalclusters"],
                              "verbs": ["create", "get"]}]}
        assert (await admin.post(f"{RBAC}/clusterroles", json=creator)).status_code == 201
        crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "bob-creates"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tenant-creator"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}
        assert (await admin.post(f"{RBAC}/clusterrolebindings", json=crb)).status_code == 201
        assert (await alice.post(LC, json={"metadata": {"name": "t9"}})).status_code == 403
        await create_tenant(bob, "bobs")

        async def bob_is_admin() -> bool:
            return (await bob.get(t("bobs", "/api/v1/secrets"))).status_code == 200
        with trio.fail_after(10):
            await poll_until(bob_is_admin)
        r = await bob.post(t("bobs", "/api/v1/namespaces"), json={"metadata": {"name": "work"}})
        assert r.status_code == 201, r.text
        assert (await bob.get("/api/v1/secrets")).status_code == 403
        assert (await bob.get(t("t1", "/api/v1/secrets"))).status_code == 403

        # A service account acts in its own tenant only, whatever another tenant's bindings name.
        r = await admin.post(t("t1", "/api/v1/namespaces/default/serviceaccounts/default/token"),
                             json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        assert r.status_code == 201, r.text
        sa_token = r.json()["status"]["token"]
        for tenant in ("t1", "t2"):
            sa_rb = {**rb, "metadata": {"name": "sa-edit", "namespace": "default"},
                     "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}
            assert (await admin.post(t(tenant, f"{RBAC}/namespaces/default/rolebindings"), json=sa_rb)
                    ).status_code == 201
        async with as_user(gw, sa_token) as sa:
            async def sa_granted() -> bool:
                return (await sa.get(t("t1", base))).status_code == 200
            with trio.fail_after(10):
                await poll_until(sa_granted)
            assert (await sa.get(t("t2", base))).status_code == 403
            assert (await sa.get(base)).status_code == 403
        # Impersonating that service account in its tenant acts as it there.
        as_sa = {"Impersonate-User": "system:serviceaccount:default:default"}
        assert (await admin.get(t("t1", base), headers=as_sa)).status_code == 200
        assert (await admin.get(t("t1", "/api/v1/secrets"), headers=as_sa)).status_code == 403


async def states(c: httpx.AsyncClient) -> int:
    text = (await c.get("/metrics")).text
    line = next(ln for ln in text.splitlines() if ln.startswith("jetkube_projection_resource_states "))
    return int(float(line.split()[1]))


async def test_unknown_tenant_is_404_and_allocates_nothing(start_server: StartServer) -> None:
    gw = await start_server()
    async with client_for(gw) as c:
        await create_tenant(c, "real")
        before = await states(c)
        for _ in range(40):
            name = "x" + secrets.token_hex(6)
            for path in ("/api/v1/namespaces/default/configmaps/a", "/api/v1/namespaces/default/configmaps",
                         "/api/v1/configmaps", "/apis/apps/v1/deployments", "/api", "/apis", "/api/v1",
                         "/openapi/v2", "/version"):
                body = status_404(await c.get(f"/clusters/{name}{path}"))
                assert body["message"] == f'logicalclusters.tenancy.jetkube.io "{name}" not found'
            status_404(await c.get(f"/clusters/{name}/api/v1/configmaps", params={"watch": "1"}))
            status_404(await c.post(f"/clusters/{name}/api/v1/namespaces/default/configmaps", json=cm("a")))
        for bad in ("Upper", "a.b", "default", "-x", ""):
            status_404(await c.get(f"/clusters/{bad}/api/v1/configmaps"))
        # /clusters/root/ is root's, as / is.
        at_root = (await c.get("/clusters/root/api/v1/namespaces/default/configmaps/kube-root-ca.crt")).json()
        assert at_root == (await c.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")).json()
        assert await states(c) == before
        assert (await c.get("/clusters/real/api/v1/namespaces")).status_code == 200
        text = (await c.get("/metrics")).text
        counted = {ln.split('tenant="')[1].split('"')[0] for ln in text.splitlines()
                   if ln.startswith("jetkube_tenant_requests_total{")}
        assert counted == {"root", "real"}, counted
        # The server's metrics (every tenant's counts) are root's alone.
        status_404(await c.get("/clusters/real/metrics"))


async def test_tenant_deletion_empties_it(start_server: StartServer) -> None:
    gw = await start_server()
    async with client_for(gw) as c:
        await create_tenant(c, "gone")
        await create_tenant(c, "stays")
        assert (await c.post(t("gone", "/api/v1/namespaces"), json={"metadata": {"name": "work"}})).status_code == 201
        for ns in ("default", "work"):
            for i in range(5):
                r = await c.post(t("gone", f"/api/v1/namespaces/{ns}/configmaps"), json=cm(f"c{i}"))
                assert r.status_code == 201, r.text
        for i in range(3):
            assert (await c.post(t("stays", "/api/v1/namespaces/default/configmaps"), json=cm(f"s{i}"))
                    ).status_code == 201
        r = await c.post(t("gone", f"{RBAC}/clusterroles"), json={"metadata": {"name": "mine"}, "rules": []})
        assert r.status_code == 201, r.text

        r = await c.delete(f"{LC}/gone")
        assert r.status_code == 200, r.text
        assert r.json()["metadata"]["deletionTimestamp"]
        phases: set[str] = set()

        async def deleted() -> bool:
            r = await c.get(f"{LC}/gone")
            if r.status_code == 200:
                phases.add((r.json().get("status") or {}).get("phase", ""))
            return r.status_code == 404
        with trio.fail_after(60):
            await poll_until(deleted)
        assert phases <= {"Ready", "Terminating"}
        text = (await c.get("/metrics")).text
        assert 'jetkube_tenant_objects{tenant="gone"}' not in text
        status_404(await c.get(t("gone", "/api/v1/namespaces")))
        # The other tenant is untouched; a tenant of the same name starts empty.
        names = {i["metadata"]["name"] for i in
                 (await c.get(t("stays", "/api/v1/namespaces/default/configmaps"))).json()["items"]}
        assert {"s0", "s1", "s2"} <= names
        await create_tenant(c, "gone")
        items = (await c.get(t("gone", "/api/v1/configmaps"))).json()["items"]
        assert {i["metadata"]["name"] for i in items} == {"kube-root-ca.crt"}
        assert (await c.get(t("gone", f"{RBAC}/clusterroles/mine"))).status_code == 404


async def test_watch_across_tenants(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    async with client_for(gw) as c, as_user(gw, "alice-token") as alice:
        await create_tenant(c, "w1")
        await create_tenant(c, "w2")
        # Listed across tenants: each object with its tenant.
        items = (await c.get("/clusters/*/api/v1/configmaps")).json()["items"]
        where = {(i["metadata"]["annotations"]["tenancy.jetkube.io/cluster"], i["metadata"]["namespace"])
                 for i in items if i["metadata"]["name"] == "kube-root-ca.crt"}
        assert {("root", "default"), ("w1", "default"), ("w2", "kube-system")} <= where
        rv = (await c.get("/clusters/*/api/v1/configmaps")).json()["metadata"]["resourceVersion"]
        # A watch from now starts with every tenant's objects.
        r = await c.get("/clusters/*/api/v1/namespaces/kube-public/configmaps",
                        params={"watch": "1", "timeoutSeconds": "1"})
        initial = {(e["type"], e["object"]["metadata"]["annotations"]["tenancy.jetkube.io/cluster"])
                   for e in map(json.loads, filter(str.strip, r.text.splitlines()))}
        assert {("ADDED", "root"), ("ADDED", "w1"), ("ADDED", "w2")} <= initial
        # Only root's system:masters.
        r = await alice.get("/clusters/*/api/v1/configmaps", params={"watch": "1"})
        assert r.status_code == 403, r.text
        assert (await c.post("/clusters/*/api/v1/namespaces/default/configmaps", json=cm("a"))).status_code == 405

        seen: list[tuple[str, str, str]] = []
        done = trio.Event()

        async def watch() -> None:
            async with c.stream("GET", "/clusters/*/api/v1/configmaps",
                                params={"watch": "1", "resourceVersion": rv}) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    meta = ev["object"]["metadata"]
                    if meta["name"].startswith("x-"):
                        seen.append((ev["type"], meta["annotations"]["tenancy.jetkube.io/cluster"], meta["name"]))
                    if len(seen) == 6:
                        done.set()
                        return

        async with trio.open_nursery() as n:
            n.start_soon(watch)
            for tenant in ("w1", "w2", "root"):
                r = await c.post(t(tenant, "/api/v1/namespaces/default/configmaps"), json=cm(f"x-{tenant}"))
                assert r.status_code == 201, r.text
            for tenant in ("w1", "w2", "root"):
                assert (await c.delete(t(tenant, f"/api/v1/namespaces/default/configmaps/x-{tenant}"))
                        ).status_code == 200
            with trio.fail_after(10):
                await done.wait()
        assert seen == [("ADDED", "w1", "x-w1"), ("ADDED", "w2", "x-w2"), ("ADDED", "root", "x-root"),
                        ("DELETED", "w1", "x-w1"), ("DELETED", "w2", "x-w2"), ("DELETED", "root", "x-root")]


async def test_tenant_cli_and_kubectl_context(start_server: StartServer, tmp_path: Path) -> None:
    kubectl()
    gw = await start_server()
    env = {**os.environ, "KUBECONFIG": str(gw.kubeconfig)}
    jetkube = str(Path(sys.executable).parent / "jetkube")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)

    p = await trio.to_thread.run_sync(run, jetkube, "tenant", "create", "team-a")
    assert p.returncode == 0, p.stderr
    assert "jetkube@team-a" in p.stdout
    doc = yaml.safe_load(gw.kubeconfig.read_text())
    assert any(c["name"] == "jetkube@team-a" for c in doc["contexts"])
    assert (gw.kubeconfig.stat().st_mode & 0o777) == 0o600
    p = await trio.to_thread.run_sync(run, "kubectl", "--context", "jetkube@team-a", "create", "configmap",
                                      "only-here", "--from-literal=a=b")
    assert p.returncode == 0, p.stderr
    p = await trio.to_thread.run_sync(run, "kubectl", "--context", "jetkube@team-a", "get", "cm", "-o", "name")
    assert "configmap/only-here" in p.stdout.split(), p.stdout
    p = await trio.to_thread.run_sync(run, "kubectl", "get", "cm", "-o", "name")
    assert "configmap/only-here" not in p.stdout.split()
    # --server on the root context's credentials, as the issue's example.
    server = next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == "jetkube")
    p = await trio.to_thread.run_sync(run, "kubectl", "--server", f"{server}/clusters/team-a", "get", "cm",
                                      "only-here", "-o", "jsonpath={.data.a}")
    assert p.returncode == 0 and p.stdout == "b", (p.stdout, p.stderr)
    p = await trio.to_thread.run_sync(run, "kubectl", "--context", "jetkube@team-a", "api-resources", "-o", "name")
    assert p.returncode == 0 and "logicalclusters.tenancy.jetkube.io" in p.stdout.split(), p.stderr
    p = await trio.to_thread.run_sync(run, "kubectl", "--server", f"{server}/clusters/nope", "get", "cm")
    assert p.returncode != 0 and "NotFound" in p.stderr or "not found" in p.stderr


async def test_controllers_serve_every_tenant(start_server: StartServer) -> None:
    """Garbage collection, namespace deletion and the kubernetes Service in a tenant, as in root."""
    gw = await start_server()
    async with client_for(gw) as c:
        await create_tenant(c, "gc1")
        base = t("gc1", "/api/v1/namespaces/default/configmaps")
        owner = (await c.post(base, json=cm("owner"))).json()["metadata"]
        for i in range(5):
            dep = cm(f"dep{i}")
            dep["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                   "uid": owner["uid"]}]
            assert (await c.post(base, json=dep)).status_code == 201
        # The same names in root, owned by nothing there: untouched.
        for i in range(5):
            assert (await c.post("/api/v1/namespaces/default/configmaps", json=cm(f"dep{i}"))).status_code == 201
        assert (await c.delete(f"{base}/owner")).status_code == 200

        async def collected() -> bool:
            names = {i["metadata"]["name"] for i in (await c.get(base)).json()["items"]}
            return not names & {f"dep{i}" for i in range(5)}
        with trio.fail_after(30):
            await poll_until(collected)
        names = {i["metadata"]["name"] for i in (await c.get("/api/v1/namespaces/default/configmaps")).json()["items"]}
        assert {f"dep{i}" for i in range(5)} <= names
        # A namespace of the tenant is emptied and finalized by the tenant's namespace controller.
        assert (await c.post(t("gc1", "/api/v1/namespaces"), json={"metadata": {"name": "tmp"}})).status_code == 201
        assert (await c.post(t("gc1", "/api/v1/namespaces/tmp/configmaps"), json=cm("x"))).status_code == 201
        assert (await c.delete(t("gc1", "/api/v1/namespaces/tmp"))).status_code == 200

        async def ns_gone() -> bool:
            return (await c.get(t("gc1", "/api/v1/namespaces/tmp"))).status_code == 404
        with trio.fail_after(30):
            await poll_until(ns_gone)
        svc = await c.get(t("gc1", "/api/v1/namespaces/default/services/kubernetes"))
        assert svc.status_code == 200, svc.text


async def test_each_tenant_has_its_own_flow_control_objects(start_server: StartServer) -> None:
    """The tenancy bootstrap writes kube's FlowSchemas and PriorityLevelConfigurations in every new
    tenant (its flow control obeys them); a change in one tenant is not seen in another."""
    gw = await start_server()
    fc = "/apis/flowcontrol.apiserver.k8s.io/v1"
    async with client_for(gw) as c:
        with trio.fail_after(60):
            for name in ("fc-a", "fc-b"):
                await create_tenant(c, name)
            for name in ("fc-a", "fc-b"):
                schemas = {i["metadata"]["name"] for i in (await c.get(t(name, f"{fc}/flowschemas"))).json()["items"]}
                levels = {i["metadata"]["name"]
                          for i in (await c.get(t(name, f"{fc}/prioritylevelconfigurations"))).json()["items"]}
                assert {"exempt", "catch-all", "global-default", "system-leader-election"} <= schemas
                assert {"exempt", "catch-all", "global-default", "workload-low"} <= levels
            r = await c.delete(t("fc-a", f"{fc}/flowschemas/global-default"))
            assert r.status_code == 200, r.text
            assert (await c.get(t("fc-b", f"{fc}/flowschemas/global-default"))).status_code == 200
            assert (await c.get(t("fc-a", f"{fc}/flowschemas/global-default"))).status_code == 404
