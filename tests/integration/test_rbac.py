"""RBAC end to end on a real nats-server: users from the token file (and a service account with
its own token) are refused until a binding lets them, on every gateway; escalation checks;
aggregation; the bootstrap policy; the access reviews, and kubectl's ``auth can-i`` and
``auth reconcile``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

from gateway import Running
from gateway._pki import write_kubeconfig
from tests.conftest import StartServer, client_for, poll_until

RBAC = "/apis/rbac.authorization.k8s.io/v1"
DATA = Path(__file__).parent.parent / "data" / "rbac"
TOKENS = ('alice-token,alice,u-alice\nbob-token,bob,u-bob,"devs"\ncarol-token,carol,u-carol\n'
          'dave-token,dave,u-dave,"devs"\n')
NAMESPACES = ("a", "b", "c")


def cm_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def as_user(running: Running, token: str) -> httpx.AsyncClient:
    assert running.http_url is not None
    return httpx.AsyncClient(base_url=running.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def ok(r: httpx.Response, code: int = 200) -> dict[str, Any]:
    assert r.status_code == code, (r.status_code, r.text)
    return r.json() if r.content else {}


async def forbidden(r: httpx.Response, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == 403, (r.status_code, r.text)
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "Forbidden"
    if message is not None:
        assert body["message"] == message, body["message"]
    return body


def cluster_role(name: str, *rules: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, **({"labels": labels} if labels else {})}, "rules": list(rules)}


def binding(name: str, role_kind: str, role: str, *subjects: dict[str, Any], ns: str = "") -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding" if ns else "ClusterRoleBinding",
            "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                                    "name": role},
            "subjects": list(subjects)}


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


async def setup(api: httpx.AsyncClient) -> None:
    for ns in NAMESPACES:
        await ok(await api.post("/api/v1/namespaces", json={"metadata": {"name": ns}}), 201)
        for i in range(3):
            await ok(await api.post(cm_path(ns), json={"metadata": {"name": f"cm{i}"}, "data": {"i": str(i)}}), 201)
    await ok(await api.post(f"{RBAC}/clusterroles", json=cluster_role(
        "cm-reader", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]})), 201)


async def test_binding_lifecycle_on_two_gateways(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw_a = await start_server(token_file=str(tokens))
    gw_b = await start_server(token_file=str(tokens))
    denied = ('configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the '
              'namespace "a"')
    with trio.fail_after(60):
        async with client_for(gw_a) as admin_a, client_for(gw_b) as admin_b, as_user(gw_a, "alice-token") as alice_a, \
                as_user(gw_b, "alice-token") as alice_b:
            await setup(admin_a)
            for alice in (alice_a, alice_b):
                body = await forbidden(await alice.get(cm_path("a")), denied)
                assert body["details"] == {"kind": "configmaps"}
            for round_ in range(3):  # repeated: each create and delete is seen at once
                rb = binding("alice-reads", "ClusterRole", "cm-reader", user("alice"), ns="a")
                await ok(await admin_a.post(f"{RBAC}/namespaces/a/rolebindings", json=rb), 201)
                # At once on the gateway that wrote it, and on the other one (a refusal is decided
                # again after a consistent read of the log).
                for alice in (alice_a, alice_b):
                    names = [i["metadata"]["name"] for i in (await ok(await alice.get(cm_path("a"))))["items"]]
                    assert names == ["cm0", "cm1", "cm2", "kube-root-ca.crt"]
                    await ok(await alice.get(cm_path("a", "cm1")))
                    await forbidden(await alice.get(cm_path("b")))
                    await forbidden(await alice.delete(cm_path("a", "cm1")))
                await ok(await admin_a.delete(f"{RBAC}/namespaces/a/rolebindings/alice-reads"))
                await forbidden(await alice_a.get(cm_path("a")), denied)  # at once on the writer's gateway
                # The other gateway: at once after any consistent read there (here, the admin's).
                await ok(await admin_b.get(f"{RBAC}/namespaces/a/rolebindings"))
                await forbidden(await alice_b.get(cm_path("a")), denied)
                assert round_ >= 0


async def test_scopes_names_subresources_urls_groups(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    with trio.fail_after(60):
        async with client_for(gw) as admin, as_user(gw, "alice-token") as alice, \
                as_user(gw, "bob-token") as bob, as_user(gw, "carol-token") as carol:
            await setup(admin)
            # A ClusterRole bound by a RoleBinding grants in that namespace only.
            await ok(await admin.post(f"{RBAC}/namespaces/b/rolebindings", json=binding(
                "alice", "ClusterRole", "cm-reader", user("alice"), ns="b")), 201)
            await ok(await alice.get(cm_path("b")))
            for path in (cm_path("a"), cm_path("c"), "/api/v1/configmaps"):
                await forbidden(await alice.get(path))
            await forbidden(await alice.get("/api/v1/configmaps"),
                            'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" '
                            'at the cluster scope')
            # resourceNames: get of the named object only; no list.
            await ok(await admin.post(f"{RBAC}/namespaces/a/roles", json={
                "metadata": {"name": "one-cm"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cm1"],
                           "verbs": ["get", "update"]},
                          {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]}), 201)
            await ok(await admin.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "carol", "Role", "one-cm", user("carol"), ns="a")), 201)
            await ok(await carol.get(cm_path("a", "cm1")))
            await forbidden(await carol.get(cm_path("a", "cm2")),
                            'configmaps "cm2" is forbidden: User "carol" cannot get resource "configmaps" in API '
                            'group "" in the namespace "a"')
            await forbidden(await carol.get(cm_path("a")))
            # Subresources: serviceaccounts/token, not serviceaccounts.
            await ok(await carol.post("/api/v1/namespaces/a/serviceaccounts/default/token", json={"spec": {}}), 201)
            await forbidden(await carol.get("/api/v1/namespaces/a/serviceaccounts/default"))
            await forbidden(await alice.post("/api/v1/namespaces/b/serviceaccounts/default/token", json={"spec": {}}),
                            'serviceaccounts "default" is forbidden: User "alice" cannot create resource '
                            '"serviceaccounts/token" in API group "" in the namespace "b"')
            # nonResourceURLs, and a group (bob and dave are in "devs").
            await forbidden(await bob.get("/metrics"), 'forbidden: User "bob" cannot get path "/metrics"')
            await ok(await admin.post(f"{RBAC}/clusterroles", json=cluster_role(
                "metrics-reader", {"nonResourceURLs": ["/metrics"], "verbs": ["get"]})), 201)
            await ok(await admin.post(f"{RBAC}/clusterrolebindings", json=binding(
                "devs-metrics", "ClusterRole", "metrics-reader", group("devs"))), 201)
            await ok(await admin.post(f"{RBAC}/clusterrolebindings", json=binding(
                "devs-cms", "ClusterRole", "cm-reader", group("devs"))), 201)
            assert (await bob.get("/metrics")).status_code == 200
            await forbidden(await alice.get("/metrics"))
            listed = await ok(await bob.get("/api/v1/configmaps"))
            assert len(listed["items"]) >= 3 * len(NAMESPACES)
            async with as_user(gw, "dave-token") as dave:
                await ok(await dave.get(cm_path("c", "cm0")))
            # Everyone authenticated: discovery, version, self reviews.
            for c in (alice, carol):
                await ok(await c.get("/version"))
                await ok(await c.get("/apis"))
                await ok(await c.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={}), 201)


async def test_service_account_subjects(start_server: StartServer, tmp_path: Path) -> None:
    gw = await start_server()
    with trio.fail_after(60):
        async with client_for(gw) as admin:
            await setup(admin)
            for name in ("robot", "other"):
                await ok(await admin.post("/api/v1/namespaces/a/serviceaccounts", json={"metadata": {"name": name}}),
                         201)
            tok = {}
            for name in ("robot", "other"):
                r = await ok(await admin.post(f"/api/v1/namespaces/a/serviceaccounts/{name}/token",
                                              json={"spec": {}}), 201)
                tok[name] = r["status"]["token"]
            async with as_user(gw, tok["robot"]) as robot, as_user(gw, tok["other"]) as other:
                denied = ('configmaps is forbidden: User "system:serviceaccount:a:robot" cannot list resource '
                          '"configmaps" in API group "" in the namespace "b"')
                await forbidden(await robot.get(cm_path("b")), denied)
                # The subject's namespace defaults to nothing for a ClusterRoleBinding: it is given.
                await ok(await admin.post(f"{RBAC}/namespaces/b/rolebindings", json=binding(
                    "robot", "ClusterRole", "cm-reader", {"kind": "ServiceAccount", "name": "robot", "namespace": "a"},
                    ns="b")), 201)
                await ok(await robot.get(cm_path("b")))
                await forbidden(await other.get(cm_path("b")))
                # All service accounts of namespace a, by their group.
                await ok(await admin.post(f"{RBAC}/namespaces/c/rolebindings", json=binding(
                    "sas-of-a", "ClusterRole", "cm-reader", group("system:serviceaccounts:a"), ns="c")), 201)
                await ok(await other.get(cm_path("c")))
                await ok(await robot.get(cm_path("c")))
                # The issuer-discovery paths are open to every service account (the bootstrap binding).
                r = await robot.get("/.well-known/openid-configuration")
                assert r.status_code != 403, r.text


async def test_escalation_prevention(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    roles = f"{RBAC}/namespaces/a/roles"
    with trio.fail_after(60):
        async with client_for(gw) as admin, as_user(gw, "alice-token") as alice:
            await setup(admin)
            # alice administers namespace a through the bootstrap "admin" ClusterRole.
            await ok(await admin.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "alice-admin", "ClusterRole", "admin", user("alice"), ns="a")), 201)
            await ok(await alice.post(roles, json={"metadata": {"name": "cm-rw"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "delete"]}]}), 201)
            body = await forbidden(await alice.post(roles, json={"metadata": {"name": "nodes"}, "rules": [
                {"apiGroups": [""], "resources": ["nodes", "configmaps"], "verbs": ["get", "list"]}]}))
            assert body["message"] == (
                'roles.rbac.authorization.k8s.io "nodes" is forbidden: user "alice" (groups=["system:authenticated"]) '
                'is attempting to grant RBAC permissions not currently held:\n'
                '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}')
            assert body["details"] == {"name": "nodes", "group": "rbac.authorization.k8s.io", "kind": "roles"}
            # Not by an update or a patch either; and not in another namespace.
            await forbidden(await alice.patch(f"{roles}/cm-rw", json={"rules": [{"apiGroups": ["*"], "resources": ["*"],
                                                                                "verbs": ["*"]}]},
                                              headers={"Content-Type": "application/merge-patch+json"}))
            await forbidden(await alice.post(f"{RBAC}/namespaces/b/roles", json={"metadata": {"name": "x"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}))
            # Bindings: to a role alice's rights cover, yes; to cluster-admin, no.
            await ok(await alice.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "bob-cm", "Role", "cm-rw", user("bob"), ns="a")), 201)
            await ok(await alice.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "bob-view", "ClusterRole", "view", user("bob"), ns="a")), 201)
            body = await forbidden(await alice.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "bob-root", "ClusterRole", "cluster-admin", user("bob"), ns="a")))
            assert "is attempting to grant RBAC permissions not currently held" in body["message"]
            assert body["message"].startswith('rolebindings.rbac.authorization.k8s.io "bob-root" is forbidden: ')
            # With escalate on roles and bind on clusterroles/cluster-admin, both are allowed.
            await ok(await admin.post(f"{RBAC}/clusterroles", json=cluster_role(
                "escalator", {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
                 "resourceNames": ["cluster-admin"]})), 201)
            await ok(await admin.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "alice-escalate", "ClusterRole", "escalator", user("alice"), ns="a")), 201)
            await ok(await alice.post(roles, json={"metadata": {"name": "nodes"}, "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]}), 201)
            await ok(await alice.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "bob-root", "ClusterRole", "cluster-admin", user("bob"), ns="a")), 201)
            # ClusterRoles are cluster-scoped: alice may not create them at all (no RBAC rule).
            await forbidden(await alice.post(f"{RBAC}/clusterroles", json=cluster_role("mine")))


async def test_aggregation_and_bootstrap(start_server: StartServer) -> None:
    gw = await start_server()
    with trio.fail_after(60):
        async with client_for(gw) as admin:
            want_roles = yaml.safe_load((DATA / "cluster-roles.yaml").read_text())["items"]
            for want in want_roles:
                got = await ok(await admin.get(f"{RBAC}/clusterroles/{want['metadata']['name']}"))
                for k in ("labels", "annotations"):
                    assert got["metadata"].get(k) == want["metadata"].get(k), (want["metadata"]["name"], k)
                assert got.get("aggregationRule") == want.get("aggregationRule")
                if not want.get("aggregationRule"):
                    assert got["rules"] == want["rules"], want["metadata"]["name"]
            for want in yaml.safe_load((DATA / "cluster-role-bindings.yaml").read_text())["items"]:
                got = await ok(await admin.get(f"{RBAC}/clusterrolebindings/{want['metadata']['name']}"))
                assert (got["roleRef"], got["subjects"]) == (want["roleRef"], want["subjects"])
            view = await ok(await admin.get(f"{RBAC}/clusterroles/view"))
            agg_view = next(r for r in want_roles if r["metadata"]["name"] == "system:aggregate-to-view")
            assert view["rules"] == agg_view["rules"]
            # Settled at start: view's rules are in edit's, edit's in admin's (aggregates of aggregates).
            edit = await ok(await admin.get(f"{RBAC}/clusterroles/edit"))
            admin_role = await ok(await admin.get(f"{RBAC}/clusterroles/admin"))
            assert all(r in edit["rules"] for r in view["rules"])
            assert all(r in admin_role["rules"] for r in edit["rules"])
            extra = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}
            await ok(await admin.post(f"{RBAC}/clusterroles", json=cluster_role(
                "widgets-view", extra, labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"})), 201)

            async def rules_of(name: str) -> list[dict[str, Any]]:
                return list((await ok(await admin.get(f"{RBAC}/clusterroles/{name}")))["rules"] or [])

            async def has_extra() -> bool:
                return all([extra in await rules_of(n) for n in ("view", "edit", "admin")])

            await poll_until(has_extra)  # the aggregation controller, on the log
            await ok(await admin.delete(f"{RBAC}/clusterroles/widgets-view"))

            async def gone() -> bool:
                return not any([extra in await rules_of(n) for n in ("view", "edit", "admin")])

            await poll_until(gone)
            assert await rules_of("view") == agg_view["rules"]


async def test_bootstrap_reconcile_keeps_user_changes(start_server: StartServer, tmp_path: Path) -> None:
    data = tmp_path / "keep"
    gw = await start_server(data_dir=str(data))
    with trio.fail_after(60):
        async with client_for(gw) as admin:
            path = f"{RBAC}/clusterroles/system:discovery"
            role = await ok(await admin.get(path))
            role["rules"][0]["nonResourceURLs"].append("/mine")
            await ok(await admin.put(path, json=role))
            await ok(await admin.delete(f"{RBAC}/clusterroles/system:public-info-viewer"))
            off = await ok(await admin.get(f"{RBAC}/clusterroles/system:basic-user"))
            off["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
            off["rules"] = off["rules"][:1]
            await ok(await admin.put(f"{RBAC}/clusterroles/system:basic-user", json=off))
        again = await start_server(data_dir=str(data))  # a restart: bootstrap reconciles
        async with client_for(again) as admin:
            assert "/mine" in (await ok(await admin.get(path)))["rules"][0]["nonResourceURLs"]
            await ok(await admin.get(f"{RBAC}/clusterroles/system:public-info-viewer"))  # re-created
            assert len((await ok(await admin.get(f"{RBAC}/clusterroles/system:basic-user")))["rules"]) == 1


async def test_access_reviews(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    with trio.fail_after(60):
        async with client_for(gw) as admin, as_user(gw, "alice-token") as alice:
            await setup(admin)
            await ok(await admin.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "alice", "ClusterRole", "cm-reader", user("alice"), ns="a")), 201)
            spec = {"user": "alice", "groups": ["system:authenticated"],
                    "resourceAttributes": {"namespace": "a", "verb": "list", "resource": "configmaps"}}
            r = await ok(await admin.post(sar, json={"spec": spec}), 201)
            assert r["kind"] == "SubjectAccessReview" and r["status"] == {
                "allowed": True, "reason": 'RBAC: allowed by RoleBinding "alice/a" of ClusterRole "cm-reader" to User '
                                           '"alice"'}
            spec["resourceAttributes"]["verb"] = "delete"
            assert (await ok(await admin.post(sar, json={"spec": spec}), 201))["status"] == {"allowed": False}
            # Group membership as given in the review; a resource this server does not serve.
            r = await ok(await admin.post(sar, json={"spec": {
                "user": "x", "groups": ["system:masters"],
                "resourceAttributes": {"verb": "create", "group": "apps", "resource": "deployments"}}}), 201)
            assert r["status"]["allowed"] is True
            r = await ok(await admin.post(sar, json={"spec": {
                "user": "x", "groups": ["system:authenticated"], "nonResourceAttributes": {"path": "/version",
                                                                                          "verb": "get"}}}), 201)
            assert r["status"]["allowed"] is True
            r = await admin.post(sar, json={"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}})
            assert r.status_code == 422 and "at least one of user or group must be specified" in r.json()["message"]
            # Creating a SubjectAccessReview needs RBAC's leave (system:masters here); alice has none.
            await forbidden(await alice.post(sar, json={"spec": spec}),
                            'subjectaccessreviews.authorization.k8s.io is forbidden: User "alice" cannot create '
                            'resource "subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope')
            lsar = "/apis/authorization.k8s.io/v1/namespaces/a/localsubjectaccessreviews"
            spec["resourceAttributes"]["verb"] = "get"
            r = await ok(await admin.post(lsar, json={"spec": spec}), 201)
            assert r["kind"] == "LocalSubjectAccessReview" and r["status"]["allowed"] is True
            assert r["metadata"]["namespace"] == "a"
            bad = {**spec, "resourceAttributes": {**spec["resourceAttributes"], "namespace": "b"}}
            r = await admin.post(lsar, json={"spec": bad})
            assert r.status_code == 400 and "must match namespace" in r.json()["message"]
            # Self reviews for alice.
            ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            r = await ok(await alice.post(ssar, json={"spec": {"resourceAttributes": {
                "namespace": "a", "verb": "watch", "resource": "configmaps"}}}), 201)
            assert r["status"]["allowed"] is True
            r = await ok(await alice.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                          json={"spec": {"namespace": "a"}}), 201)
            rules = r["status"]["resourceRules"]
            assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"]} in rules
            assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in rules
            assert r["status"]["incomplete"] is False


async def test_revoked_role_stops_new_requests_not_open_watches(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    with trio.fail_after(60):
        async with client_for(gw) as admin, as_user(gw, "alice-token") as alice:
            await setup(admin)
            await ok(await admin.post(f"{RBAC}/namespaces/a/rolebindings", json=binding(
                "alice", "ClusterRole", "cm-reader", user("alice"), ns="a")), 201)
            async with alice.stream("GET", cm_path("a") + "?watch=1&resourceVersion=0") as watch:
                assert watch.status_code == 200
                lines = watch.aiter_lines()
                for _ in range(4):
                    assert json.loads(await lines.__anext__())["type"] == "ADDED"
                # The role loses the verb: new requests fail at once; the open watch was authorized
                # at its start (as kube) and goes on.
                await ok(await admin.put(f"{RBAC}/clusterroles/cm-reader", json={
                    **(await ok(await admin.get(f"{RBAC}/clusterroles/cm-reader"))),
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}]}))
                await forbidden(await alice.get(cm_path("a")))
                await forbidden(await alice.get(cm_path("a", "cm0")))
                await ok(await admin.post(cm_path("a"), json={"metadata": {"name": "late"}}), 201)
                event = json.loads(await lines.__anext__())
                assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "late")


async def _kubectl(kubeconfig: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    r = await trio.run_process(["kubectl", f"--kubeconfig={kubeconfig}", *args], stdin=stdin, capture_stdout=True,
                               capture_stderr=True, check=False)
    return r.returncode, (r.stdout + r.stderr).decode()


async def test_kubectl_auth(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens), data_dir=str(tmp_path / "k"))
    alice_cfg = tmp_path / "alice.kubeconfig"
    write_kubeconfig(alice_cfg, server=gw.https_url, ca_cert=tmp_path / "k" / "pki" / "ca.crt", token="alice-token")
    admin_cfg = gw.kubeconfig
    rbac_yaml = yaml.safe_dump_all([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "cm-editor",
                                                                                 "namespace": "a"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice-cm",
                                                                                        "namespace": "a"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-editor"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}])
    with trio.fail_after(90):
        async with client_for(gw) as admin:
            await setup(admin)
        code, out = await _kubectl(alice_cfg, "auth", "can-i", "list", "configmaps", "-n", "a")
        assert (code, out.strip()) == (1, "no"), out
        code, out = await _kubectl(admin_cfg, "auth", "reconcile", "-f", "-", stdin=rbac_yaml.encode())
        assert code == 0, out
        assert "role.rbac.authorization.k8s.io/cm-editor reconciled" in out, out
        code, out = await _kubectl(alice_cfg, "auth", "can-i", "list", "configmaps", "-n", "a")
        assert (code, out.strip()) == (0, "yes"), out
        code, out = await _kubectl(alice_cfg, "auth", "can-i", "delete", "configmaps", "-n", "a")
        assert (code, out.strip()) == (1, "no"), out
        code, out = await _kubectl(alice_cfg, "auth", "can-i", "list", "configmaps", "-n", "b")
        assert (code, out.strip()) == (1, "no"), out
        code, out = await _kubectl(alice_cfg, "auth", "can-i", "--list", "-n", "a")
        assert code == 0, out
        lines = [line.split() for line in out.splitlines()]
        assert lines[0][:4] == ["Resources", "Non-Resource", "URLs", "Resource"], out
        assert ["configmaps", "[]", "[]", "[get", "list", "create]"] in lines, out
        assert ["[/version]", "[]", "[get]"] in lines, out
        # Reconcile again: nothing to change; a rule the file lacks stays (non-destructive).
        code, out = await _kubectl(admin_cfg, "auth", "reconcile", "-f", "-", stdin=rbac_yaml.encode())
        assert code == 0, out
        code, out = await _kubectl(alice_cfg, "get", "configmaps", "-n", "a", "-o", "name")
        assert code == 0 and "configmap/cm1" in out, out
        code, out = await _kubectl(alice_cfg, "get", "configmaps", "-n", "b")
        assert code == 1 and 'User "alice" cannot list resource "configmaps"' in out, out


async def test_always_allow_mode(start_server: StartServer, tmp_path: Path) -> None:
    """``--authorization-mode AlwaysAllow`` (tests only): any authenticated user may do anything."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens), authorization_modes=("AlwaysAllow",))
    with trio.fail_after(30):
        async with as_user(gw, "alice-token") as alice:
            await ok(await alice.post("/api/v1/namespaces", json={"metadata": {"name": "free"}}), 201)
            await ok(await alice.post(cm_path("free"), json={"metadata": {"name": "x"}}), 201)
            assert (await alice.get("/metrics")).status_code == 200
            r = await ok(await alice.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                          json={"spec": {"namespace": "free"}}), 201)
            assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in r["status"]["resourceRules"]
