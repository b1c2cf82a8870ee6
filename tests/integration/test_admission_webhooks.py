"""Admission webhooks against real HTTPS webhook servers (hypercorn on trio, a CA of the test's
own): allow, deny, patch, warn, time out and crash; failurePolicy; reinvocation; selectors;
matchConditions; dryRun; every item of a deletecollection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, default_service_account, poll_until
from tests.integration.webhook_support import WebhookServer, start_webhook_server

pytestmark = pytest.mark.integration

REG = "/apis/admissionregistration.k8s.io/v1"
PODS = "/api/v1/namespaces/default/pods"
POD_RULE = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}


def pod(name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def hook(wh: WebhookServer, name: str, path: str, *, rules: list[dict[str, Any]] | None = None,
         **extra: Any) -> dict[str, Any]:
    return {"name": name, "clientConfig": wh.client_config(path), "rules": rules or [POD_RULE],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], **extra}


async def configure(api: httpx.AsyncClient, kind: str, name: str, *webhooks: dict[str, Any]) -> None:
    plural = "mutatingwebhookconfigurations" if kind.startswith("Mutating") else "validatingwebhookconfigurations"
    r = await api.post(f"{REG}/{plural}", json={"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                                                 "metadata": {"name": name}, "webhooks": list(webhooks)})
    assert r.status_code == 201, r.text


async def unconfigure(api: httpx.AsyncClient, kind: str, name: str) -> None:
    plural = "mutatingwebhookconfigurations" if kind.startswith("Mutating") else "validatingwebhookconfigurations"
    r = await api.delete(f"{REG}/{plural}/{name}")
    assert r.status_code == 200, r.text


@pytest.fixture
async def wh(nursery: trio.Nursery, tmp_path: Path) -> WebhookServer:
    return await start_webhook_server(nursery, tmp_path)


async def test_validating_allow_deny_warn(start_server: StartServer, wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        await configure(api, "ValidatingWebhookConfiguration", "v",
                        hook(wh, "allow.example.com", "/allow"), hook(wh, "warn.example.com", "/warn"),
                        hook(wh, "deny.example.com", "/deny",
                             matchConditions=[{"name": "bad", "expression": "object.metadata.name == 'bad'"}]),
                        hook(wh, "deny-nocode.example.com", "/deny-nocode",
                             namespaceSelector={"matchLabels": {"strict": "yes"}}))
        r = await api.get(f"{REG}/validatingwebhookconfigurations/v")
        got = r.json()["webhooks"][0]
        assert (got["failurePolicy"], got["timeoutSeconds"], got["matchPolicy"]) == ("Fail", 10, "Equivalent")
        assert got["rules"][0]["scope"] == "*" and got["namespaceSelector"] == {}
        for i in range(5):
            r = await api.post(PODS, json=pod(f"good{i}"))
            assert r.status_code == 201, r.text
            assert r.headers.get_list("Warning") == ['299 - "this object is watched"']
        # Validating webhooks run in parallel; each saw every create (the matchCondition filters "deny").
        assert len(wh.calls("/allow")) == len(wh.calls("/warn")) == 5
        assert wh.calls("/deny") == [] and wh.calls("/deny-nocode") == []
        req = wh.calls("/allow")[0]
        assert req["operation"] == "CREATE" and req["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
        assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"}
        assert req["object"]["metadata"]["uid"] and req["namespace"] == "default"
        assert req["userInfo"]["username"] == "admin" and req["options"]["kind"] == "CreateOptions"
        r = await api.post(PODS, json=pod("bad"))
        assert r.status_code == 403, r.text
        assert r.json()["message"] == 'admission webhook "deny.example.com" denied the request: no pods named bad'
        assert r.json()["reason"] == "Forbidden"
        assert (await api.get(f"{PODS}/bad")).status_code == 404
        # namespaceSelector: only namespaces labelled strict=yes; a denial without a status is a 400.
        r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "strict", "labels": {"strict": "yes"}}})
        assert r.status_code == 201
        with trio.fail_after(30):
            await default_service_account(api, "strict")
        r = await api.post("/api/v1/namespaces/strict/pods", json=pod("p"))
        assert r.status_code == 400, r.text
        assert r.json()["message"] == ('admission webhook "deny-nocode.example.com" denied the request without '
                                       'explanation')
        assert len(wh.calls("/deny-nocode")) == 1
        # The configuration's own kinds are never sent to webhooks; deleting it stops the calls.
        await unconfigure(api, "ValidatingWebhookConfiguration", "v")
        assert (await api.post(PODS, json=pod("bad"))).status_code == 201


async def test_mutating_patch_and_reinvocation(start_server: StartServer, wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        # Sorted by configuration name: "a" first; "a"'s webhook asks to be reinvoked when a later
        # webhook changed the object ("b" adds its label after it).
        await configure(api, "MutatingWebhookConfiguration", "b", hook(wh, "second.example.com", "/patch-second"))
        await configure(api, "MutatingWebhookConfiguration", "a",
                        hook(wh, "first.example.com", "/patch-first", reinvocationPolicy="IfNeeded"))
        for i in range(3):
            r = await api.post(PODS, json=pod(f"m{i}", app="x"))
            assert r.status_code == 201, r.text
            labels = r.json()["metadata"]["labels"]
            assert labels == {"app": "x", "first": "yes", "second": "yes"}
            # Defaulting ran after the webhooks (the patched object is defaulted and validated).
            assert r.json()["spec"]["restartPolicy"] == "Always"
        assert len(wh.calls("/patch-first")) == 6 and len(wh.calls("/patch-second")) == 3
        # The mutating webhook sees the object before defaulting.
        assert "restartPolicy" not in wh.calls("/patch-second")[0]["object"]["spec"]
        got = (await api.get(f"{PODS}/m0")).json()
        assert got["metadata"]["labels"]["second"] == "yes"
        # A patched object is decoded again: a field the kind does not have is dropped.
        await configure(api, "MutatingWebhookConfiguration", "c", hook(wh, "junk.example.com", "/patch-junk"))
        r = await api.post(PODS, json=pod("j", app="x"))
        assert r.status_code == 201, r.text
        assert "junk" not in r.json()["spec"] and wh.calls("/patch-junk")


async def test_failure_policy_timeout_and_crash(start_server: StartServer, wh: WebhookServer) -> None:
    running = await start_server()
    async with client_for(running) as api:
        wh.slow_s = 5
        await configure(api, "ValidatingWebhookConfiguration", "fail",
                        hook(wh, "slow.example.com", "/slow", timeoutSeconds=1,
                             matchConditions=[{"name": "n", "expression": "object.metadata.name.startsWith('slow')"}]),
                        hook(wh, "crash.example.com", "/crash",
                             matchConditions=[{"name": "n", "expression": "object.metadata.name.startsWith('crash')"}]))
        await configure(api, "ValidatingWebhookConfiguration", "ignore",
                        hook(wh, "bad-json.example.com", "/badjson", failurePolicy="Ignore"),
                        hook(wh, "unreachable.example.com", "/x", failurePolicy="Ignore",
                             clientConfig={"url": "https://127.0.0.1:1/x", "caBundle": wh.ca_bundle}))
        with trio.fail_after(10):
            t0 = trio.current_time()
            r = await api.post(PODS, json=pod("slow1"))
            assert trio.current_time() - t0 < 4
        assert r.status_code == 500, r.text
        assert r.json()["reason"] == "InternalError"
        assert r.json()["message"].startswith('failed calling webhook "slow.example.com": failed to call webhook: '
                                              'Post "https://127.0.0.1:')
        assert r.json()["message"].endswith("context deadline exceeded")
        r = await api.post(PODS, json=pod("crash1"))
        assert r.status_code == 500 and 'failed calling webhook "crash.example.com"' in r.json()["message"]
        # The Ignore webhooks failed too, but let the request through, and are counted.
        r = await api.post(PODS, json=pod("fine"))
        assert r.status_code == 201, r.text
        metrics = (await api.get("/metrics")).text
        assert ('apiserver_admission_webhook_fail_open_count{name="bad-json.example.com",tenant="root",'
                'type="validating"} 3.0' in metrics), metrics
        assert ('apiserver_admission_webhook_fail_open_count{name="unreachable.example.com",tenant="root",'
                'type="validating"}') in metrics


async def test_dry_run_delete_and_deletecollection(start_server: StartServer, wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        for i in range(4):
            assert (await api.post(PODS, json=pod(f"d{i}", keep="yes" if i == 2 else "no"))).status_code == 201
        delete_rule = {**POD_RULE, "operations": ["DELETE", "CREATE"]}
        await configure(api, "ValidatingWebhookConfiguration", "v",
                        hook(wh, "deny.example.com", "/deny", rules=[delete_rule], sideEffects="NoneOnDryRun",
                             objectSelector={"matchLabels": {"keep": "yes"}}),
                        hook(wh, "allow.example.com", "/allow", rules=[delete_rule]))
        r = await api.post(PODS, params={"dryRun": "All"}, json=pod("dry"))
        assert r.status_code == 201
        assert wh.calls("/allow")[-1]["dryRun"] is True
        assert (await api.get(f"{PODS}/dry")).status_code == 404
        r = await api.delete(f"{PODS}/d0")
        assert r.status_code == 200
        seen = wh.calls("/allow")[-1]
        assert seen["operation"] == "DELETE" and seen["object"] is None
        assert seen["oldObject"]["metadata"]["name"] == "d0" and seen["options"]["kind"] == "DeleteOptions"
        # Each item of a deletecollection passes the chain: the protected pod stops the request.
        r = await api.delete(PODS)
        assert r.status_code == 403, r.text
        assert "deny.example.com" in r.json()["message"]
        assert (await api.get(f"{PODS}/d2")).status_code == 200


async def test_subresources_pass_the_chain(start_server: StartServer, wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        with trio.fail_after(30):
            await default_service_account(api, "default")
        assert (await api.post(PODS, json=pod("s0"))).status_code == 201
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                        "template": {"metadata": {"labels": {"a": "b"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
        assert (await api.post("/apis/apps/v1/namespaces/default/deployments", json=dep)).status_code == 201
        subs = [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                 "resources": ["pods/status", "pods/binding", "deployments/scale", "serviceaccounts/token"]}]
        await configure(api, "ValidatingWebhookConfiguration", "subs", hook(wh, "allow.example.com", "/allow",
                                                                             rules=subs))
        r = await api.patch(f"{PODS}/s0/status", json={"status": {"phase": "Running"}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        r = await api.post(f"{PODS}/s0/binding", json={"apiVersion": "v1", "kind": "Binding",
                                                         "metadata": {"name": "s0"},
                                                         "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})
        assert r.status_code == 201, r.text
        r = await api.patch("/apis/apps/v1/namespaces/default/deployments/d/scale", json={"spec": {"replicas": 3}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        r = await api.post("/api/v1/namespaces/default/serviceaccounts/default/token",
                           json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        assert r.status_code == 201, r.text
        seen = [(c["operation"], c.get("subResource"), c["kind"]["kind"]) for c in wh.calls("/allow")]
        assert seen == [("UPDATE", "status", "Pod"), ("CREATE", "binding", "Binding"), ("UPDATE", "scale", "Scale"),
                        ("CREATE", "token", "TokenRequest")], seen
        scale = wh.calls("/allow")[2]
        assert (scale["object"]["spec"]["replicas"], scale["oldObject"]["spec"]["replicas"]) == (3, 1)
        # A denial on a subresource stops it.
        await configure(api, "ValidatingWebhookConfiguration", "deny-scale",
                        hook(wh, "deny.example.com", "/deny", rules=[{**subs[0], "resources": ["*/scale"]}]))
        r = await api.patch("/apis/apps/v1/namespaces/default/deployments/d/scale", json={"spec": {"replicas": 5}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 403, r.text
        got = (await api.get("/apis/apps/v1/namespaces/default/deployments/d")).json()
        assert got["spec"]["replicas"] == 3


async def test_webhook_denial_without_reason_omits_it(start_server: StartServer, wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        await configure(api, "ValidatingWebhookConfiguration", "v", hook(wh, "nocode.example.com", "/deny-nocode"))
        for i in range(3):
            r = await api.post(PODS, json=pod(f"x{i}"))
            assert r.status_code == 400
            assert "reason" not in r.json() and r.json()["code"] == 400
        metrics = (await api.get("/metrics")).text
        assert ('apiserver_admission_webhook_rejection_count{error_type="no_error",name="nocode.example.com",'
                'operation="CREATE",rejection_code="400",tenant="root",type="validating"} 3.0') in metrics


async def test_webhook_counters_carry_the_tenant(start_server: StartServer, wh: WebhookServer) -> None:
    """apiserver_admission_webhook_* are labelled with the tenant whose configuration called the
    webhook (as the other apiserver_* series), beside kube's labels; promtool finds the text clean."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.integration.test_metrics import promtool
    from tests.integration.test_tenancy import create_tenant, t

    tool = await promtool()
    async with client_for(await start_server()) as api:
        with trio.fail_after(60):
            for tenant in ("t1", "t2"):
                await create_tenant(api, tenant)

                await default_service_account(api, "default", prefix=t(tenant, ""))
            await configure(api, "ValidatingWebhookConfiguration", "v", hook(wh, "nocode.example.com", "/deny-nocode"))
            for tenant, deny in (("t1", True), ("t2", False)):
                hooks = [hook(wh, "nocode.example.com", "/deny-nocode") if deny else
                         hook(wh, "unreachable.example.com", "/x", failurePolicy="Ignore",
                              clientConfig={"url": "https://127.0.0.1:1/x", "caBundle": wh.ca_bundle})]
                r = await api.post(t(tenant, f"{REG}/validatingwebhookconfigurations"), json={
                    "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": "v"}, "webhooks": hooks})
                assert r.status_code == 201, r.text
            r = await api.post(PODS, json=pod("root0"))  # root's deny
            assert r.status_code == 400, r.text
            for i in range(3):
                assert (await api.post(t("t1", PODS), json=pod(f"a{i}"))).status_code == 400
            for i in range(2):
                r = await api.post(t("t2", PODS), json=pod(f"b{i}"))
                assert r.status_code == 201, r.text
            text = (await api.get("/metrics")).text
    # Every sample (not Scrape: these counters' samples are named without the family's "_total",
    # so the parser makes a family of each, and a dict of families by name keeps the last one).
    samples = {(x.name, frozenset(x.labels.items())): x.value
               for f in text_string_to_metric_families(text) for x in f.samples}

    def value(metric: str, **labels: str) -> float:
        return samples[(metric, frozenset(labels.items()))]

    rejected = {"name": "nocode.example.com", "type": "validating", "operation": "CREATE", "error_type": "no_error",
                "rejection_code": "400"}
    assert value("apiserver_admission_webhook_rejection_count", **rejected, tenant="root") == 1
    assert value("apiserver_admission_webhook_rejection_count", **rejected, tenant="t1") == 3
    ignored = {"name": "unreachable.example.com", "type": "validating"}
    assert value("apiserver_admission_webhook_fail_open_count", **ignored, tenant="t2") == 2
    assert not any(n.startswith("apiserver_admission_webhook_") and "tenant" not in dict(ls) for n, ls in samples)
    with trio.fail_after(30):
        lint = await trio.run_process([tool, "check", "metrics"], stdin=text.encode(), capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr


async def test_match_policy_equivalent_sees_the_converted_object(start_server: StartServer,
                                                                 wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        v1 = [{"operations": ["CREATE"], "apiGroups": ["autoscaling"], "apiVersions": ["v1"],
               "resources": ["horizontalpodautoscalers"]}]
        await configure(api, "ValidatingWebhookConfiguration", "hpa",
                        hook(wh, "equivalent.example.com", "/allow", rules=v1),
                        hook(wh, "exact.example.com", "/warn", rules=v1, matchPolicy="Exact"))
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                        "minReplicas": 1, "maxReplicas": 3,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                            "type": "Utilization", "averageUtilization": 50}}}]}}
        r = await api.post("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers", json=hpa)
        assert r.status_code == 201, r.text
        [seen] = wh.calls("/allow")
        assert seen["kind"] == {"group": "autoscaling", "version": "v1", "kind": "HorizontalPodAutoscaler"}
        assert seen["requestKind"]["version"] == "v2"
        assert seen["object"]["apiVersion"] == "autoscaling/v1"
        assert seen["object"]["spec"]["targetCPUUtilizationPercentage"] == 50
        assert wh.calls("/warn") == []


async def test_match_conditions_with_the_authorizer(start_server: StartServer, wh: WebhookServer,
                                                    tmp_path: Path) -> None:
    """A webhook's matchConditions may ask the server's authorizer: only writers who may not delete
    pods are sent to the (denying) webhook."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("bob-token-BBBB,bob,uid-bob\n")
    server = await start_server(token_file=str(tokens))
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    async with client_for(server) as api:
        r = await api.post(f"{rbac}/clusterroles", json={"metadata": {"name": "pod-creator"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]})
        assert r.status_code == 201, r.text
        r = await api.post(f"{rbac}/clusterrolebindings", json={
            "metadata": {"name": "bob-pods"}, "subjects": [{"kind": "User", "name": "bob"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-creator"}})
        assert r.status_code == 201, r.text
        await configure(api, "ValidatingWebhookConfiguration", "authz",
                        hook(wh, "deny.example.com", "/deny", matchConditions=[{
                            "name": "cannot-delete",
                            "expression": "!authorizer.group('').resource('pods').namespace('default')"
                                          ".check('delete').allowed()"}]))
        bob = httpx.AsyncClient(base_url=server.http_url or "", headers={"Authorization": "Bearer bob-token-BBBB"},
                                timeout=30)
        async with bob:
            async def bob_denied() -> bool:
                return (await bob.post(PODS, json=pod("probe"))).status_code == 403
            await poll_until(bob_denied)
            for i in range(3):
                r = await bob.post(PODS, json=pod(f"bob{i}"))
                assert r.status_code == 403, r.text
                assert r.json()["message"] == 'admission webhook "deny.example.com" denied the request: no pods named bad'
                r = await api.post(PODS, json=pod(f"admin{i}"))  # system:masters may delete: not sent
                assert r.status_code == 201, r.text
        assert all(c["userInfo"]["username"] == "bob" for c in wh.calls("/deny"))
