"""ValidatingAdmissionPolicies (CEL) through the real HTTP face: a param ConfigMap, Deny and
Warn, messageExpression, variables, matchConditions, params by selector and
parameterNotFoundAction; a policy created on one gateway applies on the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

REG = "/apis/admissionregistration.k8s.io/v1"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str, replicas: int, **labels: str) -> dict[str, Any]:
    sel = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {**sel, **labels}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel},
                     "template": {"metadata": {"labels": sel},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


POLICY = {
    "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "replica-limit"},
    "spec": {
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
        "matchConditions": [{"name": "not-exempt",
                             "expression": "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)"}],
        "variables": [{"name": "limit", "expression": "int(params.data.maxReplicas)"}],
        "validations": [{"expression": "object.spec.replicas <= variables.limit",
                         "messageExpression": "'replicas must be no greater than ' + string(variables.limit)",
                         "reason": "Forbidden"},
                        {"expression": "object.metadata.name.size() < 20"}],
    },
}


def binding(name: str, actions: list[str], param_ref: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": "replica-limit", "validationActions": actions, "paramRef": param_ref}}


async def create(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    r = await api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r


async def test_policy_with_param_configmap_deny_and_warn(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api, client_for(b) as api_b:
        await create(api, "/api/v1/namespaces/default/configmaps",
                     {"metadata": {"name": "limits", "labels": {"limits": "yes"}}, "data": {"maxReplicas": "3"}})
        r = await create(api, f"{REG}/validatingadmissionpolicies", POLICY)
        assert r.json()["spec"]["failurePolicy"] == "Fail"
        assert r.json()["spec"]["matchConstraints"]["matchPolicy"] == "Equivalent"
        await create(api, f"{REG}/validatingadmissionpolicybindings",
                     binding("deny", ["Deny"], {"name": "limits", "namespace": "default",
                                                "parameterNotFoundAction": "Deny"}))
        for i in range(3):
            await create(api, DEPLOY, deployment(f"ok{i}", 3))
        # A deployment with too many replicas is denied with the validation's message and reason,
        # on the gateway that saw the policy written and on the other one.
        for client in (api, api_b):
            async def denied(c: httpx.AsyncClient = client) -> bool:
                r = await c.post(DEPLOY, json=deployment("big", 5))
                return r.status_code == 403
            await poll_until(denied)
            r = await client.post(DEPLOY, json=deployment("big", 5))
            assert r.status_code == 403, r.text
            body = r.json()
            assert body["reason"] == "Forbidden"
            assert body["message"] == ('deployments.apps "big" is forbidden: ValidatingAdmissionPolicy '
                                       "'replica-limit' with binding 'deny' denied request: replicas must be no "
                                       "greater than 3")
        # An update is checked too; the reason defaults to Invalid (422) with the expression as message.
        r = await api.patch(f"{DEPLOY}/ok0", json={"spec": {"replicas": 4}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 403, r.text
        r = await api.post(DEPLOY, json=deployment("a-very-long-deployment-name", 1))
        assert r.status_code == 422, r.text
        assert r.json()["message"].endswith("denied request: failed expression: object.metadata.name.size() < 20")
        # matchConditions: an exempt deployment is not checked.
        await create(api, DEPLOY, deployment("exempted", 9, exempt="true"))
        # A param changed is used at once.
        r = await api.patch("/api/v1/namespaces/default/configmaps/limits", json={"data": {"maxReplicas": "10"}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200
        await create(api, DEPLOY, deployment("big", 5))
        # Warn: a Warning header, the write goes on; params by selector.
        r = await api.delete(f"{REG}/validatingadmissionpolicybindings/deny")
        assert r.status_code == 200
        await create(api, f"{REG}/validatingadmissionpolicybindings",
                     binding("warn", ["Warn"], {"selector": {"matchLabels": {"limits": "yes"}},
                                                "parameterNotFoundAction": "Deny"}))
        r = await create(api, DEPLOY, deployment("bigger", 11))
        assert r.headers.get_list("Warning") == [
            ("299 - \"Validation failed for ValidatingAdmissionPolicy 'replica-limit' with binding 'warn': "
             "replicas must be no greater than 10\"")]
        # No param found with parameterNotFoundAction Deny.
        r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
        assert r.status_code == 201
        r = await api.post("/apis/apps/v1/namespaces/other/deployments", json=deployment("x", 1))
        # A binding that cannot be configured is a denial under failurePolicy Fail, whatever its
        # validationActions (kube's addConfigError).
        assert r.status_code == 422, r.text
        assert r.json()["message"] == (
            'deployments.apps "x" is forbidden: ValidatingAdmissionPolicy \'replica-limit\' with binding \'warn\' '
            "denied request: failed to configure binding: no params found for policy binding with `Deny` "
            "parameterNotFoundAction")


async def test_policy_validation_of_bindings(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        r = await api.post(f"{REG}/validatingadmissionpolicybindings",
                           json=binding("both", ["Deny", "Warn"], {"name": "x"}))
        assert r.status_code == 422, r.text
        r = await api.post(f"{REG}/validatingwebhookconfigurations", json={
            "metadata": {"name": "bad"}, "webhooks": [{"name": "x.example.com", "clientConfig": {"url": "https://x"},
                                                       "admissionReviewVersions": ["v1"], "timeoutSeconds": 31}]})
        assert r.status_code == 422, r.text
        causes = {c["field"] for c in r.json()["details"]["causes"]}
        assert {"webhooks[0].sideEffects", "webhooks[0].timeoutSeconds"} <= causes


async def test_policy_authorizer_variable(start_server: StartServer, tmp_path: Path) -> None:
    """``authorizer`` checks with the server's RBAC: only a user who may delete ConfigMaps in the
    namespace may create Deployments there; ``requestResource``, ``reason()`` and
    ``serviceAccount()``; the policy written on one gateway, used on both."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("bob-token-BBBB,bob,uid-bob\ncarol-token-CCCC,carol,uid-carol\n")
    a, b = await start_server(token_file=str(tokens)), await start_server(token_file=str(tokens))
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    async with client_for(a) as admin, client_for(b) as admin_b:
        await create(admin, f"{rbac}/clusterroles", {"metadata": {"name": "deployer"}, "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}]})
        await create(admin, f"{rbac}/clusterroles", {"metadata": {"name": "cm-deleter"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]}]})
        await create(admin, f"{rbac}/clusterrolebindings", {
            "metadata": {"name": "deployers"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                           "kind": "ClusterRole", "name": "deployer"},
            "subjects": [{"kind": "User", "name": "bob"}, {"kind": "User", "name": "carol"}]})
        await create(admin, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {
            "metadata": {"name": "carol-cm"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                          "kind": "ClusterRole", "name": "cm-deleter"},
            "subjects": [{"kind": "User", "name": "carol"},
                         {"kind": "ServiceAccount", "name": "builder", "namespace": "default"}]})
        await create(admin, f"{REG}/validatingadmissionpolicies", {
            "metadata": {"name": "authz"},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                             "operations": ["CREATE"],
                                                             "resources": ["deployments"]}]},
                     "variables": [{"name": "cm", "expression": "authorizer.group('').resource('configmaps')"
                                                                ".namespace(object.metadata.namespace)"}],
                     "validations": [
                         {"expression": "variables.cm.check('delete').allowed()",
                          "messageExpression": "request.userInfo.username + ' may not delete configmaps'",
                          "reason": "Forbidden"},
                         {"expression": "authorizer.requestResource.check('create').allowed()"},
                         {"expression": "authorizer.serviceAccount('default', 'builder').group('')"
                                        ".resource('configmaps').namespace('default').check('delete').allowed()"},
                         {"expression": "!authorizer.serviceAccount('default', 'other').group('')"
                                        ".resource('configmaps').namespace('default').check('delete').allowed()"},
                         {"expression": "!authorizer.path('/metrics').check('get').errored()"}],
                     "auditAnnotations": [{"key": "why",
                                           "valueExpression": "authorizer.requestResource.check('create').reason()"}]}})
        await create(admin, f"{REG}/validatingadmissionpolicybindings", {
            "metadata": {"name": "authz-b"}, "spec": {"policyName": "authz", "validationActions": ["Deny"]}})
        bob_b = httpx.AsyncClient(base_url=b.http_url or "", headers={"Authorization": "Bearer bob-token-BBBB"},
                                  timeout=30)
        carol = httpx.AsyncClient(base_url=a.http_url or "", headers={"Authorization": "Bearer carol-token-CCCC"},
                                  timeout=30)
        async with bob_b, carol:
            async def bob_denied() -> bool:
                r = await bob_b.post(DEPLOY, json=deployment("bob0", 1))
                return r.status_code == 403
            await poll_until(bob_denied)
            for i in range(3):
                r = await bob_b.post(DEPLOY, json=deployment(f"bob{i}", 1))
                assert r.status_code == 403, r.text
                assert r.json()["message"] == (f'deployments.apps "bob{i}" is forbidden: ValidatingAdmissionPolicy '
                                               "'authz' with binding 'authz-b' denied request: bob may not delete "
                                               "configmaps")
                r = await carol.post(DEPLOY, json=deployment(f"carol{i}", 1))
                assert r.status_code == 201, r.text
            # The admin (system:masters) passes everywhere, on both gateways.
            await create(admin_b, DEPLOY, deployment("admin0", 1))


async def test_policy_status_type_checking(start_server: StartServer) -> None:
    """kube's status controller: each policy's validations type-checked against the schemas of the
    kinds it matches, written to status.typeChecking with status.observedGeneration; a spec change
    (on the other gateway) is checked again."""
    a, b = await start_server(), await start_server()
    rules = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"],
              "resources": ["deployments", "replicasets"]}]
    good = "object.spec.replicas <= 5"
    bad = "object.spec.template.spec.containers.all(c, !has(c.securityContext) || !c.securityContext.Privileged)"
    async with client_for(a) as api, client_for(b) as api_b:
        for i in range(4):
            await create(api, f"{REG}/validatingadmissionpolicies", {
                "metadata": {"name": f"typed{i}"},
                "spec": {"matchConstraints": {"resourceRules": rules},
                         "validations": [{"expression": good},
                                         {"expression": bad if i % 2 else good,
                                          "messageExpression": "'no ' + object.metadata.nam"}]}})

        async def observed(name: str, generation: int) -> dict[str, Any]:
            async def done() -> bool:
                r = await api_b.get(f"{REG}/validatingadmissionpolicies/{name}")
                return r.json().get("status", {}).get("observedGeneration") == generation
            await poll_until(done)
            return (await api_b.get(f"{REG}/validatingadmissionpolicies/{name}")).json()

        def issue(kind: str, expr: str, field: str) -> str:
            col = expr.index(f".{field}") + 1  # cel reports the select operator's column
            return (f"apps/v1, Kind={kind}: ERROR: <input>:1:{col}: undefined field '{field}'\n | {expr}\n"
                    f" | {'.' * (col - 1)}^\n")

        message_expr = "'no ' + object.metadata.nam"
        for i in range(4):
            p = await observed(f"typed{i}", 1)
            warnings = p["status"]["typeChecking"]["expressionWarnings"]
            expected = [{"fieldRef": "spec.validations[1].messageExpression",
                         "warning": "\n".join(issue(k, message_expr, "nam") for k in ("Deployment", "ReplicaSet"))}]
            if i % 2:
                expected.insert(0, {"fieldRef": "spec.validations[1].expression", "warning": "\n".join(
                    issue(k, bad, "Privileged") for k in ("Deployment", "ReplicaSet"))})
            assert warnings == expected
        # Fixed on the other gateway: generation 2, checked again, no warnings.
        p = (await api_b.get(f"{REG}/validatingadmissionpolicies/typed1")).json()
        p["spec"]["validations"] = [{"expression": good}, {"expression": "object.metadata.name != ''"}]
        r = await api_b.put(f"{REG}/validatingadmissionpolicies/typed1", json=p)
        assert r.status_code == 200, r.text
        p = await observed("typed1", 2)
        assert p["status"]["typeChecking"] == {}


async def test_policy_expressions_must_compile(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        r = await api.post(f"{REG}/validatingadmissionpolicies", json={
            "metadata": {"name": "broken"},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                             "operations": ["CREATE"], "resources": ["deployments"]}]},
                     "validations": [{"expression": "object.spec.replicas <"}, {"expression": "true",
                                                                                 "messageExpression": "nosuch"}],
                     "auditAnnotations": [{"key": "k", "valueExpression": "'a' +"}]}})
        assert r.status_code == 422, r.text
        causes = r.json()["details"]["causes"]
        assert [c["field"] for c in causes] == ["spec.validations[0].expression",
                                                "spec.validations[1].messageExpression",
                                                "spec.auditAnnotations[0].valueExpression"]
        assert causes[0]["message"].startswith('Invalid value: "object.spec.replicas <": compilation failed: ERROR: '
                                               "<input>:1:")
        assert "undeclared reference to 'nosuch'" in causes[1]["message"]
