"""MutatingAdmissionPolicy (admissionregistration.k8s.io/v1beta1) through the real HTTP face: an
apply configuration (a sidecar container merged by name, a label), JSON patches with a param
ConfigMap and ``jsonpatch.escapeKey``, matchConditions, failurePolicy Fail and Ignore,
reinvocation after a mutating webhook, and a policy written on one gateway applied on the other."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, poll_until
from tests.integration.webhook_support import WebhookServer, start_webhook_server

pytestmark = pytest.mark.integration

BETA = "/apis/admissionregistration.k8s.io/v1beta1"
REG = "/apis/admissionregistration.k8s.io/v1"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
RULES = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
          "resources": ["deployments"]}]


def deployment(name: str, replicas: int = 1, **labels: str) -> dict[str, Any]:
    sel = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {**sel, **labels}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel},
                     "template": {"metadata": {"labels": sel},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def policy(name: str, mutations: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1beta1", "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": copy.deepcopy(RULES)}, "reinvocationPolicy": "Never",
                     "mutations": mutations, **spec}}


def binding(name: str, policy_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1beta1", "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name}, "spec": {"policyName": policy_name, **spec}}


def apply_configuration(expr: str) -> dict[str, Any]:
    return {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": expr}}


def json_patch(expr: str) -> dict[str, Any]:
    return {"patchType": "JSONPatch", "jsonPatch": {"expression": expr}}


SIDECAR = ("Object{metadata: Object.metadata{labels: {'mutated': 'yes'}}, spec: Object.spec{template: "
           "Object.spec.template{spec: Object.spec.template.spec{containers: [Object.spec.template.spec.containers{"
           "name: 'sidecar', image: 'busybox:' + (has(params.data) ? params.data.tag : 'latest')}]}}}}")


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
async def wh(nursery: trio.Nursery, tmp_path: Path) -> WebhookServer:
    return await start_webhook_server(nursery, tmp_path)


async def test_apply_configuration_and_json_patch_on_two_gateways(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api, client_for(b) as api_b:
        await post(api, "/api/v1/namespaces/default/configmaps",
                   {"metadata": {"name": "sidecar"}, "data": {"tag": "1.36", "replicas": "2"}})
        created = await post(api, f"{BETA}/mutatingadmissionpolicies", policy(
            "sidecar", [apply_configuration(SIDECAR)], paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
            matchConditions=[{"name": "not-skipped", "expression": "!('skip' in object.metadata.labels)"}]))
        assert created["spec"]["failurePolicy"] == "Fail"
        await post(api, f"{BETA}/mutatingadmissionpolicybindings", binding(
            "sidecar-b", "sidecar", paramRef={"name": "sidecar", "namespace": "default",
                                              "parameterNotFoundAction": "Deny"}))
        await post(api, f"{BETA}/mutatingadmissionpolicies", policy("scale", [json_patch(
            "[JSONPatch{op: 'replace', path: '/spec/replicas', value: int(params.data.replicas)},"
            " JSONPatch{op: 'add', path: '/metadata/annotations', value: {}},"
            " JSONPatch{op: 'add', path: '/metadata/annotations/' + jsonpatch.escapeKey('example.com/by'),"
            " value: request.userInfo.username}]")], paramKind={"apiVersion": "v1", "kind": "ConfigMap"}))
        await post(api, f"{BETA}/mutatingadmissionpolicybindings", binding(
            "scale-b", "scale", paramRef={"name": "sidecar", "namespace": "default",
                                          "parameterNotFoundAction": "Deny"}))

        async def mutated_on_b() -> bool:
            r = await api_b.post(DEPLOY, json=deployment("probe"), params={"dryRun": "All"})
            return r.status_code == 201 and r.json()["metadata"]["labels"].get("mutated") == "yes"
        with trio.fail_after(30):
            await poll_until(mutated_on_b)
        for i in range(6):
            d = await post(api if i % 2 else api_b, DEPLOY, deployment(f"d{i}", 5))
            containers = d["spec"]["template"]["spec"]["containers"]
            # Merged by the list's key (name): the sidecar beside the written container.
            assert [(c["name"], c["image"]) for c in containers] == [("c", "nginx"), ("sidecar", "busybox:1.36")]
            assert d["metadata"]["labels"] == {"app": f"d{i}", "mutated": "yes"}
            assert d["spec"]["replicas"] == 2
            assert d["metadata"]["annotations"]["example.com/by"]
            # Defaulting ran after the mutation (kube's order): the sidecar has its defaults too.
            assert containers[1]["terminationMessagePolicy"] == "File"
        # An update is mutated again: a second container set by the client keeps the sidecar once.
        r = await api_b.get(f"{DEPLOY}/d0")
        d = r.json()
        d["spec"]["template"]["spec"]["containers"].append({"name": "extra", "image": "redis"})
        r = await api_b.put(f"{DEPLOY}/d0", json=d)
        assert r.status_code == 200, r.text
        assert [c["name"] for c in r.json()["spec"]["template"]["spec"]["containers"]] == ["c", "sidecar", "extra"]
        # matchConditions: skipped objects are not touched by that policy.
        d = await post(api, DEPLOY, deployment("skipped", 5, skip="yes"))
        assert "mutated" not in d["metadata"]["labels"] and d["spec"]["replicas"] == 2
        # The param gone: parameterNotFoundAction Deny refuses (failurePolicy Fail).
        r = await api.delete("/api/v1/namespaces/default/configmaps/sidecar")
        assert r.status_code == 200
        r = await api.post(DEPLOY, json=deployment("noparam"))
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "Forbidden"
        assert r.json()["message"] == ("policy 'scale' with binding 'scale-b' denied request: no params found for "
                                       "policy binding with `Deny` parameterNotFoundAction")
        assert len(r.json()["details"]["causes"]) == 2  # both bindings name the param


async def test_failure_policy_and_validation(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        # Refused at create: a DELETE rule, an unknown patchType, an expression that does not compile.
        bad = policy("bad", [json_patch("[JSONPatch{op: 'add', path: }]"), {"patchType": "Merge"}])
        bad["spec"]["matchConstraints"]["resourceRules"][0]["operations"] = ["DELETE"]
        bad["spec"].pop("reinvocationPolicy")
        r = await api.post(f"{BETA}/mutatingadmissionpolicies", json=bad)
        assert r.status_code == 422, r.text
        fields = {c["field"] for c in r.json()["details"]["causes"]}
        assert fields == {"spec.reinvocationPolicy", "spec.matchConstraints.resourceRules[0].operations",
                          "spec.mutations[0].jsonPatch.expression", "spec.mutations[1].patchType"}
        # An expression that errs at run time: Fail refuses the write, Ignore lets it through unmutated.
        await post(api, f"{BETA}/mutatingadmissionpolicies", policy(
            "erring", [json_patch("[JSONPatch{op: 'add', path: '/metadata/labels/x', value: object.nosuch}]")]))
        await post(api, f"{BETA}/mutatingadmissionpolicybindings", binding("erring-b", "erring"))

        async def refused() -> bool:
            return (await api.post(DEPLOY, json=deployment("e0"))).status_code == 403
        with trio.fail_after(30):
            await poll_until(refused)
        r = await api.post(DEPLOY, json=deployment("e0"))
        # kube's generic policy dispatcher: Forbidden's code, reason Invalid, the policy error as message.
        assert r.json()["reason"] == "Invalid"
        assert r.json()["message"] == ("policy 'erring' with binding 'erring-b' denied request: expression "
                                       "'[JSONPatch{op: 'add', path: '/metadata/labels/x', value: object.nosuch}]' "
                                       "resulted in error: no such key: nosuch")
        p = (await api.get(f"{BETA}/mutatingadmissionpolicies/erring")).json()
        p["spec"]["failurePolicy"] = "Ignore"
        r = await api.put(f"{BETA}/mutatingadmissionpolicies/erring", json=p)
        assert r.status_code == 200, r.text

        async def accepted() -> bool:
            return (await api.post(DEPLOY, json=deployment("e1"))).status_code == 201
        with trio.fail_after(30):
            await poll_until(accepted)
        # Policies never apply to admission configuration itself.
        await post(api, f"{BETA}/mutatingadmissionpolicies", policy("other", [apply_configuration("Object{}")]))


async def test_reinvocation_after_a_mutating_webhook(start_server: StartServer, wh: WebhookServer) -> None:
    async with client_for(await start_server()) as api:
        # The policy records how many labels the object has; the webhook adds one after it.
        await post(api, f"{BETA}/mutatingadmissionpolicies", policy("count", [apply_configuration(
            "Object{metadata: Object.metadata{annotations: {'labels': string(size(object.metadata.labels))}}}")],
            reinvocationPolicy="IfNeeded"))
        await post(api, f"{BETA}/mutatingadmissionpolicybindings", binding("count-b", "count"))
        await post(api, f"{BETA}/mutatingadmissionpolicies", policy("count-once", [apply_configuration(
            "Object{metadata: Object.metadata{annotations: {'once': string(size(object.metadata.labels))}}}")]))
        await post(api, f"{BETA}/mutatingadmissionpolicybindings", binding("count-once-b", "count-once"))
        r = await api.post(f"{REG}/mutatingwebhookconfigurations", json={
            "metadata": {"name": "labeller"},
            "webhooks": [{"name": "label.example.com", "clientConfig": wh.client_config("/patch"), "rules": RULES,
                          "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
        assert r.status_code == 201, r.text

        async def reinvoked() -> bool:
            r = await api.post(DEPLOY, json=deployment("probe"), params={"dryRun": "All"})
            return r.status_code == 201 and r.json()["metadata"].get("annotations", {}).get("labels") == "2"
        with trio.fail_after(30):
            await poll_until(reinvoked)
        for i in range(4):
            d = await post(api, DEPLOY, deployment(f"r{i}"))
            assert d["metadata"]["labels"] == {"app": f"r{i}", "patched": "yes"}
            # IfNeeded ran again after the webhook added its label; Never did not.
            assert d["metadata"]["annotations"] == {"labels": "2", "once": "1"}
