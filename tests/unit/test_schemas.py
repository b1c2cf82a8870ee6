"""Built-in kinds' schemas from kubernetes-validate (kinds._schemas)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from actors._patch import PatchSchema, apply_strategic_merge_patch
from kinds import _schemas
from kinds._schemas import (
    REF_PREFIX,
    definition_name,
    definitions,
    patch_schema,
    ref_name,
    resolve,
    schema_for,
)

SERVED = [
    ("", "v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
    ("", "v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("", "v1", "Secret", "io.k8s.api.core.v1.Secret"),
    ("", "v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"),
    ("", "v1", "Event", "io.k8s.api.core.v1.Event"),
    ("coordination.k8s.io", "v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
    ("rbac.authorization.k8s.io", "v1", "Role", "io.k8s.api.rbac.v1.Role"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "io.k8s.api.rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "io.k8s.api.rbac.v1.RoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    ("authentication.k8s.io", "v1", "TokenRequest", "io.k8s.api.authentication.v1.TokenRequest"),
    ("authentication.k8s.io", "v1", "SelfSubjectReview", "io.k8s.api.authentication.v1.SelfSubjectReview"),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "io.k8s.api.authorization.v1.SelfSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "io.k8s.api.authorization.v1.SelfSubjectRulesReview"),
]


def _walk(schema: Any, visit: Any, path: str = "") -> None:
    """Visit every schema node structurally (property names are never keywords)."""
    if not isinstance(schema, dict):
        return
    visit(schema, path)
    for name, sub in (schema.get("properties") or {}).items():
        _walk(sub, visit, f"{path}.{name}")
    for key in ("items", "additionalProperties", "not"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            _walk(sub, visit, f"{path}/{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or ()):
            _walk(sub, visit, f"{path}/{key}[{i}]")


@pytest.mark.parametrize(("group", "version", "kind", "name"), SERVED)
def test_served_kinds_resolve(group: str, version: str, kind: str, name: str) -> None:
    assert definition_name(group, version, kind) == name
    schema = schema_for(group, version, kind)
    assert schema is definitions()[name]
    assert schema["type"] == "object"
    assert schema["description"]
    assert {"group": group, "version": version, "kind": kind} in schema["x-kubernetes-group-version-kind"]
    props = schema["properties"]
    assert props["metadata"]["$ref"] == REF_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    # The package's enum on apiVersion/kind is gone; the apiserver publishes plain strings.
    assert props["apiVersion"] == {"description": props["apiVersion"]["description"], "type": "string"}
    assert "enum" not in props["kind"]
    assert definition_name(group, version, kind + "List") or kind in (
        "TokenRequest", "SelfSubjectReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview")


def test_kinds_dropped_by_1_33_come_from_older_releases() -> None:
    # kubectl 1.27 ``auth whoami`` uses authentication.k8s.io/v1beta1, which 1.33 no longer has.
    name = definition_name("authentication.k8s.io", "v1beta1", "SelfSubjectReview")
    assert name == "io.k8s.api.authentication.v1beta1.SelfSubjectReview"
    schema = schema_for("authentication.k8s.io", "v1beta1", "SelfSubjectReview")
    assert schema is not None
    status = schema["properties"]["status"]
    assert ref_name(status["$ref"]) in definitions()
    # The newest release still wins for everything it has.
    assert "io.k8s.api.authentication.v1.SelfSubjectReview" in definitions()


def test_unknown_kinds() -> None:
    assert schema_for("", "v1", "NoSuchKind") is None
    assert definition_name("example.com", "v1", "Widget") is None
    assert patch_schema("example.com", "v1", "Widget").child("spec").list_strategy() == (None, None)


def test_shared_option_types_map_to_their_definitions() -> None:
    assert definition_name("", "v1", "DeleteOptions") == "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
    assert definition_name("", "v1", "Status") == "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
    assert definition_name("events.k8s.io", "v1", "Event") == "io.k8s.api.events.v1.Event"


def test_every_reference_resolves_and_every_type_is_single() -> None:
    defs = definitions()
    assert len(defs) > 500
    problems: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        ref = node.get("$ref")
        if ref is not None and (not ref.startswith(REF_PREFIX) or ref_name(ref) not in defs):
            problems.append(f"{path}: dangling {ref}")
        if "type" in node and not isinstance(node["type"], str):
            problems.append(f"{path}: type {node['type']!r}")
        if node.get("type") == "null":
            problems.append(f"{path}: null type")

    for name, schema in defs.items():
        _walk(schema, visit, name)
    assert problems == []


def test_special_types_are_in_their_v2_shape() -> None:
    defs = definitions()
    ios = defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert ios["type"] == "string" and ios["format"] == "int-or-string" and "oneOf" not in ios
    qty = defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert qty["type"] == "string" and "oneOf" not in qty
    time = defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]
    assert time == {"description": time["description"], "format": "date-time", "type": "string"}


def test_definitions_are_loaded_once() -> None:
    assert definitions() is definitions()
    assert patch_schema("", "v1", "ConfigMap") is patch_schema("", "v1", "ConfigMap")


def test_loaded_by_load_schemas_not_by_import() -> None:
    # Importing reads nothing; the server calls load_schemas() at start, in a worker thread
    # (tests/integration/test_startup.py checks that), so no request loads them on the trio loop.
    code = ("import kinds, kinds._schemas as s; print(s._load.cache_info().currsize); kinds.load_schemas(); "
            "print(s._load.cache_info().currsize); d = kinds.definitions(); kinds.load_schemas(); "
            "print(d is kinds.definitions(), s._load.cache_info().misses)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["0", "1", "True 1"]


def test_resolve_follows_refs_and_merges_allof() -> None:
    meta = definitions()["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
    assert resolve({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}) is meta
    assert resolve({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}) is meta
    # allOf members merge into one view; the wrapper's own keys (its description) win
    assert resolve({"allOf": [{"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
                    "description": "x"}) == {**meta, "description": "x"}
    both = resolve({"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {}}, "type": "object"}]})
    assert both == {"properties": {"a": {"type": "string"}, "b": {}}, "type": "object"}
    assert resolve({"$ref": "#/definitions/nope"}) == {}
    assert resolve({"type": "string"}) == {"type": "string"}


# --- strategic merge patch view -----------------------------------------------------------


@pytest.mark.parametrize(("kind", "path", "expected"), [
    ("ConfigMap", "metadata.finalizers", ("merge", None)),
    ("ConfigMap", "metadata.ownerReferences", ("merge", "uid")),
    ("ConfigMap", "metadata.labels", (None, None)),
    ("ConfigMap", "data", (None, None)),
    ("ServiceAccount", "secrets", ("merge", "name")),
    # No patchStrategy tag on ServiceAccount.imagePullSecrets in the Go types: it is replaced.
    ("ServiceAccount", "imagePullSecrets", (None, None)),
    ("Pod", "spec.containers", ("merge", "name")),
    ("Pod", "spec.containers.env", ("merge", "name")),
    ("Pod", "spec.containers.ports", ("merge", "containerPort")),
    ("Pod", "spec.volumes", ("merge,retainKeys", "name")),
    ("Pod", "spec.nosuchfield", (None, None)),
    ("Pod", "spec.nosuchfield.deeper", (None, None)),
])
def test_patch_strategies(kind: str, path: str, expected: tuple[str | None, str | None]) -> None:
    node: Any = patch_schema("", "v1", kind)
    for part in path.split("."):
        node = node.child(part)
    assert node.list_strategy() == expected


def test_patch_rbac_and_lease() -> None:
    role = patch_schema("rbac.authorization.k8s.io", "v1", "Role")
    assert role.child("rules").list_strategy() == (None, None)
    lease = patch_schema("coordination.k8s.io", "v1", "Lease")
    assert lease.child("metadata").child("ownerReferences").list_strategy() == ("merge", "uid")


def test_map_values_share_one_node() -> None:
    # Keys of maps come from request bodies: they must not grow the cached tree.
    data = patch_schema("", "v1", "ConfigMap").child("data")
    assert data.child("a") is data.child("b")
    pod = patch_schema("", "v1", "Pod")
    unknown = pod.child("spec").child("x-1")
    assert unknown is pod.child("spec").child("x-2")


def test_patch_schema_drives_strategic_merge_patch() -> None:
    pod_schema: PatchSchema = patch_schema("", "v1", "Pod")  # the protocol, structurally (mypy checks it)
    pod = {"metadata": {"name": "p", "finalizers": ["a"]},
           "spec": {"containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}]}}
    patch = {"metadata": {"finalizers": ["b"]},
             "spec": {"$setElementOrder/containers": [{"name": "a"}],
                      "containers": [{"name": "a", "image": "nginx:2"}, {"$patch": "delete", "name": "b"}]}}
    out = apply_strategic_merge_patch(pod, patch, pod_schema)
    assert out["spec"]["containers"] == [{"name": "a", "image": "nginx:2"}]
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b"]  # merged as a set, not replaced


def test_service_account_secrets_merge_by_name() -> None:
    sa = {"secrets": [{"name": "s1"}], "imagePullSecrets": [{"name": "p1"}]}
    out = apply_strategic_merge_patch(sa, {"secrets": [{"name": "s2"}], "imagePullSecrets": [{"name": "p2"}]},
                                      patch_schema("", "v1", "ServiceAccount"))
    assert out["secrets"] == [{"name": "s2"}, {"name": "s1"}]
    assert out["imagePullSecrets"] == [{"name": "p2"}]


def test_version_constant() -> None:
    assert _schemas.KUBE_SCHEMA_VERSION.startswith("1.33")
