"""Admission's audit annotations in the audit trail: a ValidatingAdmissionPolicy's
``auditAnnotations`` and ``Audit`` failures (kube's ``validation_failure`` annotation), a webhook's
``auditAnnotations`` and the mutating webhooks' ``mutation.webhook.admission.k8s.io`` records, on
accepted writes (audited from their events on the log) and on denials (audited by the gateway),
with writes spread over two gateways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, poll_until
from tests.integration.webhook_support import WebhookServer, start_webhook_server

pytestmark = pytest.mark.integration

REG = "/apis/admissionregistration.k8s.io/v1"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
EVENTS = "/apis/audit.jetkube.io/v1/events"
FAILURE = "validation.policy.admission.k8s.io/validation_failure"
POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  resources:
  - group: apps
    resources: ["deployments"]
- level: Metadata
"""
RULE = {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}


def deployment(name: str, replicas: int) -> dict[str, Any]:
    sel = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": sel},
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel},
                     "template": {"metadata": {"labels": sel},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def policy(name: str, validations: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [RULE]}, "validations": validations,
                     "auditAnnotations": annotations}}


def binding(name: str, policy_name: str, actions: list[str]) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name}, "spec": {"policyName": policy_name, "validationActions": actions}}


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    r = await api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r


async def audit_events(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    r = await api.get(EVENTS, params=params)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line]


@pytest.fixture
async def wh(nursery: trio.Nursery, tmp_path: Path) -> WebhookServer:
    return await start_webhook_server(nursery, tmp_path)


async def test_policy_and_webhook_audit_annotations(start_server: StartServer, wh: WebhookServer,
                                                    tmp_path: Path) -> None:
    from gateway._settings import load_audit_policy

    policy_file = tmp_path / "audit.yaml"
    policy_file.write_text(POLICY)
    audit = load_audit_policy(str(policy_file))
    g1, g2 = await start_server(audit_policy=audit), await start_server(audit_policy=audit)
    async with client_for(g1) as a1, client_for(g2) as a2:
        with trio.fail_after(60):
            # Warn+Audit on more than 3 replicas, with two annotations (one always null).
            await post(a1, f"{REG}/validatingadmissionpolicies", policy(
                "replicas-audit", [{"expression": "object.spec.replicas <= 3", "message": "too many"},
                                   {"expression": "object.metadata.name.size() < 12"}],
                [{"key": "replicas", "valueExpression": "string(object.spec.replicas)"},
                 {"key": "never", "valueExpression": "null"}]))
            await post(a1, f"{REG}/validatingadmissionpolicybindings", binding("audit-b", "replicas-audit",
                                                                                ["Warn", "Audit"]))
            # Deny+Audit above 10 replicas, with an annotation that names the user.
            await post(a1, f"{REG}/validatingadmissionpolicies", policy(
                "replicas-deny", [{"expression": "object.spec.replicas <= 10", "reason": "Forbidden",
                                   "messageExpression": "'at most 10, not ' + string(object.spec.replicas)"}],
                [{"key": "user", "valueExpression": "request.userInfo.username"}]))
            await post(a1, f"{REG}/validatingadmissionpolicybindings", binding("deny-b", "replicas-deny",
                                                                                ["Deny", "Audit"]))
            await post(a1, f"{REG}/validatingwebhookconfigurations", {
                "metadata": {"name": "annotating"},
                "webhooks": [{"name": "annotate.example.com", "clientConfig": wh.client_config("/annotate"),
                              "rules": [RULE], "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
            await post(a1, f"{REG}/mutatingwebhookconfigurations", {
                "metadata": {"name": "labelling"},
                "webhooks": [{"name": "label.example.com", "clientConfig": wh.client_config("/patch"),
                              "rules": [RULE], "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})

            async def sees_config() -> bool:  # the second gateway folded all of it
                r = await a2.post(DEPLOY, json=deployment("probe", 1), params={"dryRun": "All"})
                return r.status_code == 201 and r.json()["metadata"].get("labels", {}).get("patched") == "yes" \
                    and len(wh.calls("/annotate")) > 0
            await poll_until(sees_config)

            # Eight writes, alternating gateways, with 1..8 replicas.
            for i in range(1, 9):
                api = a1 if i % 2 else a2
                r = await post(api, DEPLOY, deployment(f"d{i}", i))
                warnings = r.headers.get_list("Warning")
                assert bool(warnings) == (i > 3), warnings
            # An update through the other gateway is annotated too.
            r = await a2.patch(f"{DEPLOY}/d1", json={"spec": {"replicas": 2}},
                               headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            # Denied: 20 replicas and a long name (both policies fail; only one denies).
            r = await a1.post(DEPLOY, json=deployment("a-rather-long-name", 20))
            assert r.status_code == 403, r.text
            assert r.json()["message"].endswith("denied request: at most 10, not 20")

            # A dry run is audited by the gateway (it never reaches the log), with its annotations.
            r = await a2.post(DEPLOY, json=deployment("dry", 6), params={"dryRun": "All"})
            assert r.status_code == 201, r.text

            async def creates() -> list[dict[str, Any]]:
                return [e for e in await audit_events(a1, resource="deployments")
                        if e["verb"] in ("create", "patch") and e["objectRef"].get("name") != "probe"]

            async def all_there() -> bool:
                got = await creates()
                return len(got) >= 11 and any(e["responseStatus"]["code"] == 403 for e in got) \
                    and any("dryRun=All" in e["requestURI"] for e in got)
            await poll_until(all_there)
        got = await creates()
        dry_runs = [e for e in got if "dryRun=All" in e["requestURI"]]  # the probes' (1 replica) and ours
        got = [e for e in got if e not in dry_runs]
        [dry] = [e for e in dry_runs if e["annotations"].get("replicas-audit/replicas") == "6"]
        assert json.loads(dry["annotations"][FAILURE])[0]["message"] == "too many"
        by_name = {(e["verb"], e["objectRef"].get("name", ""), e["responseStatus"]["code"]): e for e in got}
        for i in range(1, 9):
            e = by_name[("create", f"d{i}", 201)]
            assert e["level"] == "RequestResponse"
            ann = e["annotations"]
            assert ann["replicas-audit/replicas"] == str(i)
            assert "replicas-audit/never" not in ann
            assert ann["replicas-deny/user"]  # the requesting user, from request.userInfo
            assert ann["annotate.example.com/checked"] == f"name=d{i}"
            assert not any("not a key" in k for k in ann)
            assert json.loads(ann["mutation.webhook.admission.k8s.io/round_0_index_0"]) == {
                "configuration": "labelling", "webhook": "label.example.com", "mutated": True}
            if i > 3:
                assert json.loads(ann[FAILURE]) == [{"message": "too many", "policy": "replicas-audit",
                                                     "binding": "audit-b", "expressionIndex": 0,
                                                     "validationActions": ["Warn", "Audit"]}]
            else:
                assert FAILURE not in ann
        patched = by_name[("patch", "d1", 200)]["annotations"]
        assert patched["replicas-audit/replicas"] == "2"
        assert FAILURE not in patched
        # The denial is audited by the gateway, with the annotations admission had made.
        # (a create's URI and objectRef carry no name, as kube's: the name is in the body)
        denied = by_name[("create", "", 403)]
        ann = denied["annotations"]
        assert ann["replicas-audit/replicas"] == "20"
        failures = json.loads(ann[FAILURE])
        assert [(f["policy"], f["expressionIndex"], f["message"]) for f in failures] == [
            ("replicas-audit", 0, "too many"),
            ("replicas-audit", 1, "failed expression: object.metadata.name.size() < 12"),
            ("replicas-deny", 0, "at most 10, not 20")]
        assert "annotate.example.com/checked" not in ann  # validating webhooks run after the policies


PSA = "pod-security.kubernetes.io/"


def pod(name: str, privileged: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "nginx"}
    if privileged:
        c["securityContext"] = {"privileged": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}}


async def test_pod_security_audit_annotations(start_server: StartServer, tmp_path: Path) -> None:
    """PodSecurity's ``enforce-policy`` on every evaluated pod and ``audit-violations`` on those
    that break the namespace's audit level, for accepted pods and for a pod enforce refuses."""
    from gateway._settings import load_audit_policy

    policy_file = tmp_path / "audit.yaml"
    policy_file.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                           "rules:\n- level: Metadata\n")
    audit = load_audit_policy(str(policy_file))
    g1, g2 = await start_server(audit_policy=audit), await start_server(audit_policy=audit)
    async with client_for(g1) as a1, client_for(g2) as a2:
        with trio.fail_after(60):
            labels = {"audit-only": {f"{PSA}audit": "baseline"},
                      "enforced": {f"{PSA}enforce": "baseline", f"{PSA}enforce-version": "v1.33"}}
            for ns, lab in labels.items():
                await post(a1, "/api/v1/namespaces", {"metadata": {"name": ns, "labels": lab}})
            for i, api in enumerate((a1, a2, a1)):
                await post(api, "/api/v1/namespaces/audit-only/pods", pod(f"p{i}", privileged=i != 1))
            await post(a2, "/api/v1/namespaces/enforced/pods", pod("ok", privileged=False))
            r = await a2.post("/api/v1/namespaces/enforced/pods", json=pod("bad", privileged=True))
            assert r.status_code == 403, r.text

            async def pods() -> list[dict[str, Any]]:
                return [e for e in await audit_events(a1, resource="pods") if e["verb"] == "create"]

            async def all_there() -> bool:
                return len(await pods()) >= 5
            await poll_until(all_there)
        got = {(e["objectRef"]["namespace"], e["objectRef"].get("name", ""), e["responseStatus"]["code"]):
               e["annotations"] for e in await pods()}
        for i in range(3):
            ann = got[("audit-only", f"p{i}", 201)]
            assert ann[f"{PSA}enforce-policy"] == "privileged:latest"
            if i == 1:
                assert f"{PSA}audit-violations" not in ann
            else:
                assert ann[f"{PSA}audit-violations"] == (
                    'would violate PodSecurity "baseline:latest": privileged (container "c" must not set '
                    'securityContext.privileged=true)')
        assert got[("enforced", "ok", 201)][f"{PSA}enforce-policy"] == "baseline:v1.33"
        denied = got[("enforced", "", 403)]
        assert denied[f"{PSA}enforce-policy"] == "baseline:v1.33"


async def test_dry_run_deletes_from_the_body_are_audited(start_server: StartServer, tmp_path: Path) -> None:
    """A DELETE whose DeleteOptions body asks ``dryRun: [All]`` never reaches the log, so the gateway
    audits it (it was once taken for a logged write and audited nowhere)."""
    from gateway._settings import load_audit_policy

    policy_file = tmp_path / "audit.yaml"
    policy_file.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                           "rules:\n- level: Metadata\n")
    audit = load_audit_policy(str(policy_file))
    g1, g2 = await start_server(audit_policy=audit), await start_server(audit_policy=audit)
    cms = "/api/v1/namespaces/default/configmaps"
    async with client_for(g1) as a1, client_for(g2) as a2:
        with trio.fail_after(60):
            for i in range(3):
                await post(a1, cms, {"metadata": {"name": f"keep{i}"}})
            for i, api in enumerate((a1, a2, a1)):
                r = await api.request("DELETE", f"{cms}/keep{i}",
                                      json={"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})
                assert r.status_code == 200, r.text
                assert (await api.get(f"{cms}/keep{i}")).status_code == 200  # still there

            async def deletes() -> list[dict[str, Any]]:
                return [e for e in await audit_events(a1, resource="configmaps") if e["verb"] == "delete"]

            async def all_there() -> bool:
                return len(await deletes()) >= 3
            await poll_until(all_there)
        got = sorted((e["objectRef"]["name"], e["responseStatus"]["code"]) for e in await deletes())
        assert got == [(f"keep{i}", 200) for i in range(3)]
