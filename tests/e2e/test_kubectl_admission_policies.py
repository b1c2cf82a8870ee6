"""Admission policies with real kubectl 1.27 and 1.33: a MutatingAdmissionPolicy (v1beta1) and a
ValidatingAdmissionPolicy with their bindings applied from YAML, a Deployment mutated and another
refused with the policy's message, and the policy's status.typeChecking read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_kubectl import Kubectl, Server, jetkube, kubectl_binary  # noqa: F401

pytestmark = pytest.mark.e2e

POLICIES = """\
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata:
  name: {ns}-team-label
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [deployments]
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {ns}
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{{metadata: Object.metadata{{labels: {{'team': 'blue'}}}}}}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: {ns}-team-label
spec:
  policyName: {ns}-team-label
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {ns}-max-replicas
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {ns}
  validations:
  - expression: object.spec.replicas <= 3
    message: at most 3 replicas
  - expression: object.metadata.labels.team == 'blue' || object.spec.replcas > 0
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {ns}-max-replicas
spec:
  policyName: {ns}-max-replicas
  validationActions: [Deny]
"""


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_admission_policies(version: str, jetkube: Server, tmp_path: Path) -> None:  # noqa: F811
    ns = "adm-" + version.replace(".", "-")
    k = Kubectl(kubectl_binary(version), jetkube, ns, tmp_path)
    k.run("create", "ns", ns, ns=False)
    (tmp_path / "policies.yaml").write_text(POLICIES.format(ns=ns))
    out = k.run("apply", "-f", str(tmp_path / "policies.yaml"), ns=False).stdout
    assert f"mutatingadmissionpolicy.admissionregistration.k8s.io/{ns}-team-label created" in out, out
    assert f"validatingadmissionpolicybinding.admissionregistration.k8s.io/{ns}-max-replicas created" in out, out
    names = k.run("get", "mutatingadmissionpolicies", "-o", "name", ns=False).stdout.split()
    assert f"mutatingadmissionpolicy.admissionregistration.k8s.io/{ns}-team-label" in names

    k.run("create", "deployment", "web", "--image=nginx", "--replicas=2")
    labels = json.loads(k.run("get", "deployment", "web", "-o", "json").stdout)["metadata"]["labels"]
    assert labels == {"app": "web", "team": "blue"}
    p = k.run("create", "deployment", "big", "--image=nginx", "--replicas=5", check=False)
    assert p.returncode != 0
    assert (f"ValidatingAdmissionPolicy '{ns}-max-replicas' with binding '{ns}-max-replicas' denied request: "
            "at most 3 replicas") in p.stderr, p.stderr

    # The status controller type-checked the validations against apps/v1 Deployment.
    k.run("wait", "--for=jsonpath={.status.observedGeneration}=1", f"validatingadmissionpolicy/{ns}-max-replicas",
          "--timeout=30s", ns=False)
    status = json.loads(k.run("get", "validatingadmissionpolicy", f"{ns}-max-replicas", "-o", "json",
                              ns=False).stdout)["status"]
    [warning] = status["typeChecking"]["expressionWarnings"]
    assert warning["fieldRef"] == "spec.validations[1].expression"
    assert warning["warning"].startswith("apps/v1, Kind=Deployment: ERROR: <input>:1:")
    assert "undefined field 'replcas'" in warning["warning"]
