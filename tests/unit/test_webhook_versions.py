"""matchPolicy Equivalent sees the versions of a CRD created after the webhook dispatcher, in
the CRD's tenant only."""

from __future__ import annotations

from actors._admission_webhooks import WebhookDispatcher
from kinds import Registry
from kinds._crd import defs_from_crd


def _crd(versions: list[str]) -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                     "versions": [{"name": v, "served": True, "storage": i == 0,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}
                                  for i, v in enumerate(versions)]}}


def test_versions_follow_the_registry() -> None:
    registry = Registry()
    d = WebhookDispatcher(None, registry)  # type: ignore[arg-type]
    assert d._served_versions("t1", "example.com", "widgets") == []
    registry.set_custom("t1", defs_from_crd(_crd(["v1", "v2"])))
    assert [x.version for x in d._served_versions("t1", "example.com", "widgets")] == ["v1", "v2"]
    registry.set_custom("t1", defs_from_crd(_crd(["v1", "v2", "v3"])))
    assert [x.version for x in d._served_versions("t1", "example.com", "widgets")] == ["v1", "v2", "v3"]
    assert d._served_versions("t2", "example.com", "widgets") == []  # a tenant's CRDs are its own
    assert [x.version for x in d._served_versions("t2", "apps", "deployments")] == ["v1"]
