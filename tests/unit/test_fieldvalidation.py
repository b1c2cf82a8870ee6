"""Server-side field validation: unknown and duplicate fields, and the apiserver's texts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinds._fieldvalidation import (
    MAX_ERRORS,
    duplicate_fields,
    go_quote,
    strict_create_message,
    strict_decoding_error,
    strict_errors,
    strict_patch_message,
    unknown_fields,
    warning_header,
)
from kinds._schemas import definitions, schema_for

DEFS = definitions()


def unknown(kind: str, obj: dict[str, Any], group: str = "", version: str = "v1") -> list[str]:
    return unknown_fields(obj, schema_for(group, version, kind), DEFS)


# --- built-in kinds ------------------------------------------------------------------------


def test_valid_configmap_has_no_unknown_fields() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "c1", "namespace": "demo", "labels": {"app": "web"},
                       "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                       "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}],
                       "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                                          "fieldsType": "FieldsV1",
                                          "fieldsV1": {"f:data": {"f:k": {}}, ".": {}}}]},
          "data": {"any-key": "v", "other.key": "w"}, "binaryData": {"b": "AAAA"}, "immutable": False}
    assert unknown("ConfigMap", cm) == []


def test_unknown_top_level_and_nested_fields_in_document_order() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "bar": 1,
          "metadata": {"name": "c1", "nmae": "typo", "labels": {"x": "y"}},
          "data": {"k": "v"}, "spec": {"foo": 1}}
    assert unknown("ConfigMap", cm) == ["bar", "metadata.nmae", "spec"]


def test_list_items_are_checked_with_their_index() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "a", "image": "x"},
                                   {"name": "b", "image": "y", "bogus": True,
                                    "ports": [{"containerPort": 80}, {"containerPort": 81, "nodeport": 1}],
                                    "resources": {"limits": {"cpu": "1"}, "requests": {"memory": 1}}}],
                    "volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "p",
                                                                                    "x": 1}]}}]}}
    assert unknown("Pod", pod) == ["spec.containers[1].bogus", "spec.containers[1].ports[1].nodeport",
                                   "spec.volumes[0].configMap.items[0].x"]


def test_metadata_fields_of_the_kind() -> None:
    obj = {"metadata": {"name": "x", "ownerReferences": [{"uid": "u", "colour": "red"}], "app": "web"}}
    assert unknown("Secret", obj) == ["metadata.ownerReferences[0].colour", "metadata.app"]


def test_opaque_go_types_accept_anything() -> None:
    # FieldsV1 and RawExtension are ``type: object`` without properties: opaque to the decoder.
    obj: dict[str, Any] = {"metadata": {"managedFields": [{"fieldsV1": {"f:anything": {"k:{\"a\":1}": {}}}}]}}
    assert unknown("ConfigMap", obj) == []


@pytest.mark.parametrize(("group", "kind", "obj", "expected"), [
    ("", "Event", {"involvedObject": {"kind": "Pod", "nam": "x"}, "source": {"component": "c", "hostt": "h"}},
     ["involvedObject.nam", "source.hostt"]),
    ("coordination.k8s.io", "Lease", {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 1, "renew": 1}},
     ["spec.renew"]),
    ("rbac.authorization.k8s.io", "Role", {"rules": [{"verbs": ["get"], "apiGroups": [""], "resourcez": ["x"]}]},
     ["rules[0].resourcez"]),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding",
     {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
      "subjects": [{"kind": "User", "name": "u", "namespace": "n", "uid": "x"}]}, ["subjects[0].uid"]),
    ("authorization.k8s.io", "SelfSubjectAccessReview",
     {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "verbose": True}}},
     ["spec.resourceAttributes.verbose"]),
    ("authentication.k8s.io", "TokenRequest", {"spec": {"audiences": ["a"], "expirationSeconds": 600}}, []),
    ("", "ServiceAccount", {"secrets": [{"name": "s"}], "automountServiceAccountToken": True,
                            "imagePullSecrets": [{"name": "p", "namespace": "n"}]},
     ["imagePullSecrets[0].namespace"]),
])
def test_other_served_kinds(group: str, kind: str, obj: dict[str, Any], expected: list[str]) -> None:
    assert unknown(kind, obj, group=group) == expected


def test_null_values_and_type_mismatches_are_not_unknown_fields() -> None:
    assert unknown("ConfigMap", {"data": None, "metadata": None}) == []
    assert unknown("ConfigMap", {"data": "not-a-map", "metadata": {"labels": ["x"]}}) == []


def test_errors_are_capped_and_deduplicated() -> None:
    obj = {f"f{i}": i for i in range(150)}
    found = unknown("ConfigMap", obj)
    assert len(found) == MAX_ERRORS
    assert found[:2] == ["f0", "f1"]
    assert unknown_fields(obj, schema_for("", "v1", "ConfigMap"), DEFS, limit=3) == ["f0", "f1", "f2"]
    assert unknown_fields("not an object", {}, DEFS) == []


# --- CRD-style schemas ---------------------------------------------------------------------

CRD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "cron": {"type": "string"},
                "replicas": {"type": "integer"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "ports": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                "closed": {"type": "object"},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                "strict": {"type": "object", "properties": {"a": {"type": "string"}},
                           "additionalProperties": False},
                "loose": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
                "either": {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                                     {"type": "object", "properties": {"b": {"type": "string"}}}]},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def crd_unknown(obj: dict[str, Any], **kw: Any) -> list[str]:
    return unknown_fields(obj, CRD, DEFS, open_empty_objects=False, **kw)


def test_crd_root_knows_apiversion_kind_and_checks_metadata() -> None:
    obj = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
           "metadata": {"name": "c", "labels": {"a": "b"}, "bogus": 1}, "spec": {"cron": "* * * * *"}}
    assert crd_unknown(obj) == ["metadata.bogus"]


def test_crd_unknown_fields() -> None:
    obj = {"spec": {"cron": "x", "favoriteColor": "blue",
                    "free": {"anything": {"goes": 1}, "known": {"a": "x", "b": "y"}},
                    "labels": {"any": "thing"},
                    "ports": [{"port": 1}, {"port": 2, "protocol": "TCP"}],
                    "closed": {"x": 1},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "n", "nope": 1},
                                 "spec": {"x": "1", "y": 2}, "other": 1},
                    "strict": {"a": "1", "b": "2"},
                    "loose": {"a": "1", "b": "2"},
                    "either": {"a": "1", "b": "2", "c": "3"}},
           "status": {"whatever": True},
           "extra": 1}
    assert crd_unknown(obj) == [
        "spec.favoriteColor", "spec.free.known.b", "spec.ports[1].protocol", "spec.closed.x",
        "spec.template.metadata.nope", "spec.template.spec.y", "spec.template.other", "spec.strict.b",
        "spec.either.c", "extra"]


def test_empty_objects_are_open_for_builtin_semantics() -> None:
    obj = {"spec": {"closed": {"x": 1}}}
    assert unknown_fields(obj, CRD, DEFS) == []
    assert unknown_fields(obj, CRD, DEFS, open_empty_objects=False) == ["spec.closed.x"]


def test_refs_in_any_prefix_resolve() -> None:
    defs = {"Spec": {"type": "object", "properties": {"a": {"type": "string"}}}}
    for prefix in ("#/definitions/", "#/components/schemas/", "#/$defs/"):
        schema = {"type": "object", "properties": {"spec": {"allOf": [{"$ref": prefix + "Spec"}]}}}
        assert unknown_fields({"spec": {"a": "1", "b": 2}}, schema, defs) == ["spec.b"]


# --- duplicates ----------------------------------------------------------------------------


def test_duplicate_fields() -> None:
    raw = b'{"kind":"ConfigMap","metadata":{"name":"a","name":"b"},"data":{"k":"1","k":"2","k":"3"},' \
          b'"list":[{"x":1},{"y":1,"y":2}],"kind":"ConfigMap"}'
    assert duplicate_fields(raw) == ["kind", "metadata.name", "data.k", "list[1].y"]
    assert duplicate_fields(raw.decode()) == duplicate_fields(raw)


def test_no_duplicates_and_bad_json() -> None:
    assert duplicate_fields(b'{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}') == []
    assert duplicate_fields(b'{"a":') == []
    assert duplicate_fields(b"[]") == []


def test_duplicates_are_capped() -> None:
    raw = "{" + ",".join(f'"o{i}":{{"d":1,"d":2}}' for i in range(120)) + "}"
    assert len(duplicate_fields(raw)) == MAX_ERRORS


# --- the apiserver's texts -----------------------------------------------------------------


def test_strict_error_texts() -> None:
    errors = strict_errors(unknown=["spec.foo", "bar", "bar"], duplicate=["metadata.name"])
    assert errors == ['duplicate field "metadata.name"', 'unknown field "spec.foo"', 'unknown field "bar"']
    assert strict_decoding_error(['unknown field "spec.foo"', 'unknown field "bar"']) == (
        'strict decoding error: unknown field "spec.foo", unknown field "bar"')
    assert strict_create_message("ConfigMap", "v1", ['unknown field "spec.foo"']) == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "spec.foo"')
    assert len(strict_errors(unknown=[f"f{i}" for i in range(200)])) == MAX_ERRORS


def test_strict_patch_message() -> None:
    patched = json.dumps({"data": {"k": "v"}, "foo": 1}, separators=(",", ":"))
    message, cause = strict_patch_message(patched, ['unknown field "foo"'])
    assert cause == 'Invalid value: "{\\"data\\":{\\"k\\":\\"v\\"},\\"foo\\":1}": strict decoding error: unknown field "foo"'
    assert message == ' "" is invalid: patch: ' + cause


def test_warning_header() -> None:
    assert warning_header('unknown field "spec.foo"') == '299 - "unknown field \\"spec.foo\\""'


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("tab\tnl\n", '"tab\\tnl\\n"'),
    ("\x01\x7f", '"\\x01\\x7f"'),
    ("héllo ☃", '"héllo ☃"'),
    ("\u200b", '"\\u200b"'),
])
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


# --- the compiled walks against the plain ones ---------------------------------------------

_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 2 ** 40) | st.floats(allow_nan=False)
                       | st.text("ab:", max_size=3),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
                           ["name", "image", "bogus", "ports", "containerPort", "spec", "x-1", "limits", "cpu",
                            "labels", "items", "protocol", "port", "template", "metadata", "value"]), inner,
                           max_size=3),
                       max_leaves=10)


def _sample_objects() -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
    from bench._util import pod_object

    pod = pod_object("ns")
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": pod["metadata"], "spec": pod["spec"]}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a.b"},
           "spec": {"group": "b", "names": {"plural": "a", "kind": "A"}, "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-int-or-string": True,
                                                                  "anyOf": [{"type": "integer"}]}}}}}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"a": "b"}}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [
        {"manager": "m", "fieldsV1": {"f:data": {}}}]}, "data": {"k": "v"}}
    return [(("", "v1", "Pod"), pod), (("apps", "v1", "Deployment"), deploy),
            (("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), crd), (("", "v1", "Service"), svc),
            (("", "v1", "ConfigMap"), cm)]


_SAMPLES = _sample_objects()


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, (dict, list)):
        out.append(node)
        for v in node.values() if isinstance(node, dict) else node:
            _containers(v, out)
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(_SAMPLES) - 1),
       edits=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 100) | st.sampled_from(
           ["name", "image", "bogus", "ports", "containerPort", "spec", "cpu", "labels", "0", "protocol", "value",
            "replicas", "metadata", "x-kubernetes-int-or-string"]), _VALUES), max_size=6))
def test_compiled_walks_find_what_the_plain_walks_find(which: int, edits: list[tuple[int, int | str, Any]]) -> None:
    """Type errors, unknown fields and pruning over the compiled schema nodes (the built-in
    definitions) give the same paths, messages and pruned object as the plain walks, on the
    samples with members set, replaced or added anywhere."""
    import copy

    import kinds._fieldvalidation as fv

    gvk, sample = _SAMPLES[which]
    obj = copy.deepcopy(sample)
    for at, key, value in edits:
        nodes = _containers(obj, [])
        node = nodes[at % len(nodes)]
        if isinstance(node, dict):
            # an int replaces the value of an existing member; a name sets (or adds) that member
            node[list(node)[key % len(node)] if isinstance(key, int) and node else str(key)] = copy.deepcopy(value)
        elif node:
            node[at % len(node)] = copy.deepcopy(value)
    schema = schema_for(*gvk)
    results = []
    for fast in (True, False):
        fv._FAST = fast
        try:
            pruned = copy.deepcopy(obj)
            results.append((fv.type_errors(obj, schema, DEFS), fv.type_errors(obj, schema, DEFS, limit=2),
                            fv.unknown_fields(obj, schema, DEFS), fv.unknown_fields(obj, schema, DEFS, limit=1),
                            fv.prune_unknown_fields(pruned, schema, DEFS, limit=2), pruned))
        finally:
            fv._FAST = True
    assert results[0] == results[1]
