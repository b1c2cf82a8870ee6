"""CustomResourceDefinitions with real kubectl 1.27 and 1.33: a CRD from YAML, `kubectl wait
--for condition=established`, custom resources applied, listed with their printer columns, found
by short name and in `kubectl get all`, scaled, refused by a CEL rule with its message, deleted;
then the CRD deleted and its kind gone from discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_kubectl import Kubectl, Server, jetkube, kubectl_binary, table  # noqa: F401

pytestmark = pytest.mark.e2e

CRD_YAML = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: {plural}
    singular: {singular}
    kind: {kind}
    shortNames: [{short}]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Image
      type: string
      jsonPath: .spec.image
      priority: 1
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.replicas <= 10"
              message: "at most 10 replicas"
              fieldPath: .replicas
            properties:
              cronSpec:
                type: string
                pattern: '^(\\S+ ){{4}}\\S+$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 0
                default: 1
          status:
            type: object
            properties:
              replicas:
                type: integer
"""

CR_YAML = """\
apiVersion: stable.example.com/v1
kind: {kind}
metadata:
  name: {name}
spec:
  cronSpec: "* * * * */5"
  image: my-image
  replicas: {replicas}
"""


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_crd(version: str, jetkube: Server, tmp_path: Path) -> None:  # noqa: F811
    k = Kubectl(kubectl_binary(version), jetkube, "crd-" + version.replace(".", "-"), tmp_path)
    v = version.replace(".", "")
    plural, kind, short = f"crontabs{v}", f"CronTab{v}", f"ct{v}"
    crd_name = f"{plural}.stable.example.com"
    (tmp_path / "crd.yaml").write_text(CRD_YAML.format(plural=plural, singular=f"crontab{v}", kind=kind,
                                                       short=short))
    k.run("create", "ns", k.namespace, ns=False)
    out = k.run("apply", "-f", str(tmp_path / "crd.yaml"), ns=False).stdout
    assert f"customresourcedefinition.apiextensions.k8s.io/{crd_name} created" in out
    k.run("wait", "--for", "condition=established", f"crd/{crd_name}", "--timeout=30s", ns=False)
    rows = table(k.run("get", "crd", crd_name, ns=False).stdout)
    assert rows[0] == ["NAME", "CREATED", "AT"] and rows[1][0] == crd_name

    for i, name in enumerate(("a", "b", "c")):
        (tmp_path / f"{name}.yaml").write_text(CR_YAML.format(kind=kind, name=name, replicas=i + 1))
        out = k.run("apply", "-f", str(tmp_path / f"{name}.yaml")).stdout
        assert f"crontab{v}.stable.example.com/{name} created" in out, out
    rows = table(k.run("get", short).stdout)
    assert rows[0] == ["NAME", "SPEC", "REPLICAS", "AGE"] or rows[0][:3] == ["NAME", "SPEC", "REPLICAS"], rows
    assert [r[0] for r in rows[1:]] == ["a", "b", "c"]
    rows = table(k.run("get", plural, "-o", "wide").stdout)
    assert "IMAGE" in rows[0] and rows[1][-1] == "my-image"
    everything = k.run("get", "all", "-o", "name").stdout.split()
    assert f"crontab{v}.stable.example.com/a" in everything, everything

    # Apply a change (client-side apply: a merge patch for custom resources).
    (tmp_path / "a.yaml").write_text(CR_YAML.format(kind=kind, name="a", replicas=5))
    assert "configured" in k.run("apply", "-f", str(tmp_path / "a.yaml")).stdout
    # A CEL rule refuses with its message at its field path.
    (tmp_path / "a.yaml").write_text(CR_YAML.format(kind=kind, name="a", replicas=11))
    p = k.run("apply", "-f", str(tmp_path / "a.yaml"), check=False)
    assert p.returncode != 0 and "spec.replicas: Invalid value: \"object\": at most 10 replicas" in p.stderr, p.stderr

    # Scale.
    out = k.run("scale", f"{plural}/b", "--replicas=7").stdout
    assert "scaled" in out
    got = json.loads(k.run("get", plural, "b", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 7 and got["metadata"]["generation"] == 2

    # Delete one, then the CRD: its objects go with it, and the kind leaves discovery.
    assert "deleted" in k.run("delete", plural, "c").stdout
    k.run("delete", "crd", crd_name, "--timeout=60s", ns=False)
    p = k.run("get", plural, check=False)
    # kubectl may still hold the kind in its discovery cache: then the list is the server's 404.
    assert p.returncode != 0 and ("the server doesn't have a resource type" in p.stderr
                                  or "the server could not find the requested resource" in p.stderr), p.stderr
    assert plural not in k.run("api-resources", ns=False).stdout
