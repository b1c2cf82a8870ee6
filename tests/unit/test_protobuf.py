"""Kubernetes protobuf request bodies -> JSON dicts (gateway._protobuf).

Two kinds of input: bytes assembled here field by field from the generated.proto numbers (with a tiny
writer that does not use the module's tables), and bodies built from dicts with the module's own writer.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from gateway._protobuf import (
    CONTENT_TYPE,
    MAGIC,
    ProtobufError,
    UnknownKindError,
    decode_k8s_protobuf,
    decode_message,
    message_for,
)
from gateway._protobuf_write import encode_k8s_protobuf, encode_message
from kinds import KIND_MESSAGES as KINDS
from kinds import MESSAGES, VERSIONLESS_KINDS, Field

# --- an independent, minimal wire writer -------------------------------------------------------------


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def ld(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def st(number: int, text: str) -> bytes:
    return ld(number, text.encode())


def vi(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def entry(number: int, k: str, v: bytes | str) -> bytes:
    """A map entry: a message {1: key, 2: value}."""
    return ld(number, st(1, k) + ld(2, v.encode() if isinstance(v, str) else v))


def envelope(api_version: str, kind: str, raw: bytes, *, encoding: str = "", content_type: str = "") -> bytes:
    """k8s\\0 + runtime.Unknown {1: typeMeta{1: apiVersion, 2: kind}, 2: raw, 3: encoding, 4: contentType}."""
    type_meta = st(1, api_version) + st(2, kind)
    return b"k8s\x00" + ld(1, type_meta) + ld(2, raw) + st(3, encoding) + st(4, content_type)


def time_msg(seconds: int, nanos: int = 0) -> bytes:
    return vi(1, seconds) + vi(2, nanos)


T_2024 = 1_704_164_645  # 2024-01-02T03:04:05Z


# --- hand-built bodies, field by field from the .proto numbers ----------------------------------------


def test_namespace_as_kubectl_132_sends_it() -> None:
    # The bytes kubectl 1.32 sent for `kubectl create namespace demo` (contract §13.2), completed by hand:
    # ObjectMeta writes every value field (name=1 ... creationTimestamp=8 as an empty Time).
    meta = st(1, "demo") + st(2, "") + st(3, "") + st(4, "") + st(5, "") + st(6, "") + vi(7, 0) + ld(8, b"")
    raw = ld(1, meta) + ld(2, b"") + ld(3, st(1, ""))  # metadata, spec{}, status{phase: ""}
    body = envelope("v1", "Namespace", raw)
    assert body.startswith(b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x1c\n\x14\n\x04demo")
    assert decode_k8s_protobuf(body) == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "demo"},
        "spec": {},
        "status": {},
    }
    # the module's writer, in gogo mode, produces exactly these bytes
    assert encode_k8s_protobuf(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}, emit_defaults=True) == body


def test_configmap_hand_built_maps_bytes_and_pointer_bool() -> None:
    meta = (st(1, "c1") + st(3, "demo") + entry(11, "app", "web") + entry(11, "tier", "fe")
            + entry(12, "a/b", "x") + ld(8, b""))
    raw = (ld(1, meta) + entry(2, "k", "v1") + entry(2, "empty", "") + entry(3, "bin", b"\x00\xff\x10")
           + vi(4, 0))  # immutable=false is a *bool on the wire: kept
    assert decode_k8s_protobuf(envelope("v1", "ConfigMap", raw)) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": "c1",
            "namespace": "demo",
            "labels": {"app": "web", "tier": "fe"},
            "annotations": {"a/b": "x"},
        },
        "immutable": False,
        "data": {"k": "v1", "empty": ""},
        "binaryData": {"bin": base64.b64encode(b"\x00\xff\x10").decode()},
    }


def test_secret_hand_built_data_is_base64() -> None:
    raw = (ld(1, st(1, "s1") + st(3, "demo")) + entry(2, "password", b"p\x00ss") + entry(2, "none", b"")
           + entry(4, "plain", "text") + st(3, "Opaque"))
    assert decode_k8s_protobuf(envelope("v1", "Secret", raw)) == {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "s1", "namespace": "demo"},
        "data": {"password": "cABzcw==", "none": ""},
        "stringData": {"plain": "text"},
        "type": "Opaque",
    }


def test_self_subject_access_review_hand_built() -> None:
    # `kubectl auth can-i list pods -n demo`: spec.resourceAttributes (field 1) of SelfSubjectAccessReviewSpec
    attrs = (st(1, "demo") + st(2, "list") + st(3, "") + st(4, "") + st(5, "pods") + st(6, "") + st(7, "")
             + ld(8, st(1, "spec.nodeName=n1") + ld(2, st(1, "spec.nodeName") + st(2, "In") + st(3, "n1")))
             + ld(9, st(1, "") + ld(2, st(1, "app") + st(2, "NotIn") + st(3, "a") + st(3, "b"))))
    status = vi(1, 0) + st(2, "") + st(3, "") + vi(4, 0)
    raw = ld(1, ld(8, b"")) + ld(2, ld(1, attrs)) + ld(3, status)
    assert decode_k8s_protobuf(envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw)) == {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "resourceAttributes": {
                "namespace": "demo",
                "verb": "list",
                "resource": "pods",
                "fieldSelector": {
                    "rawSelector": "spec.nodeName=n1",
                    "requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}],
                },
                "labelSelector": {
                    "requirements": [{"key": "app", "operator": "NotIn", "values": ["a", "b"]}]},
            },
        },
        "status": {"allowed": False},  # Go writes a non-omitempty bool
    }


def test_token_request_hand_built() -> None:
    # TokenRequestSpec: audiences=1, boundObjectRef=3, expirationSeconds=4 (not in numeric order in Go)
    spec = (st(1, "https://kubernetes.default.svc") + st(1, "vault")
            + ld(3, st(1, "Secret") + st(2, "v1") + st(3, "tok") + st(4, "uid-1")) + vi(4, 3600))
    status = st(1, "") + ld(2, b"")
    raw = ld(1, st(1, "default") + st(3, "demo")) + ld(2, spec) + ld(3, status)
    assert decode_k8s_protobuf(envelope("authentication.k8s.io/v1", "TokenRequest", raw)) == {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": "default", "namespace": "demo"},
        "spec": {
            "audiences": ["https://kubernetes.default.svc", "vault"],
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "tok", "uid": "uid-1"},
        },
        "status": {"token": ""},  # Go writes a non-omitempty string
    }


def test_cluster_role_binding_hand_built() -> None:
    subject = st(1, "ServiceAccount") + st(2, "") + st(3, "default") + st(4, "demo")
    user = st(1, "User") + st(2, "rbac.authorization.k8s.io") + st(3, "alice") + st(4, "")
    role_ref = st(1, "rbac.authorization.k8s.io") + st(2, "ClusterRole") + st(3, "view")
    raw = ld(1, st(1, "crb")) + ld(2, subject) + ld(2, user) + ld(3, role_ref)
    assert decode_k8s_protobuf(envelope("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", raw)) == {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "crb"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "default", "namespace": "demo"},
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
        ],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    }


def test_object_meta_every_field_hand_built() -> None:
    owner = st(1, "Deployment") + st(3, "web") + st(4, "u-1") + st(5, "apps/v1") + vi(6, 1) + vi(7, 0)
    managed = (st(1, "kubectl") + st(2, "Update") + st(3, "v1") + ld(4, time_msg(T_2024)) + st(6, "FieldsV1")
               + ld(7, ld(1, b'{"f:data":{"f:k":{}}}')) + st(8, ""))
    meta = (st(1, "n") + st(2, "gen-") + st(3, "ns") + st(4, "/self") + st(5, "uid-9") + st(6, "42")
            + vi(7, 3) + ld(8, time_msg(T_2024, 999)) + ld(9, time_msg(T_2024 + 60)) + vi(10, 0)
            + entry(11, "l", "1") + entry(12, "a", "2") + ld(13, owner) + st(14, "f1") + st(14, "f2")
            + ld(17, managed))
    assert decode_message(meta, "meta.v1.ObjectMeta") == {
        "name": "n",
        "generateName": "gen-",
        "namespace": "ns",
        "selfLink": "/self",
        "uid": "uid-9",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "deletionTimestamp": "2024-01-02T03:05:05Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"l": "1"},
        "annotations": {"a": "2"},
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u-1",
            "controller": True, "blockOwnerDeletion": False,
        }],
        "finalizers": ["f1", "f2"],
        "managedFields": [{
            "manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2024-01-02T03:04:05Z",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:k": {}}},
        }],
    }


def test_event_hand_built_times_and_nested() -> None:
    involved = st(1, "Pod") + st(2, "demo") + st(3, "p1") + st(4, "u") + st(5, "v1") + st(6, "7") + st(7, "")
    raw = (ld(1, st(1, "p1.17a") + st(3, "demo")) + ld(2, involved) + st(3, "Pulled") + st(4, "ok")
           + ld(5, st(1, "kubelet") + st(2, "node-1")) + ld(6, time_msg(T_2024)) + ld(7, b"") + vi(8, 2)
           + st(9, "Normal") + ld(10, time_msg(T_2024, 123_456_789))
           + ld(11, vi(1, 5) + ld(2, time_msg(T_2024 + 1, 1_000))) + st(12, "Pull")
           + ld(13, st(1, "Node") + st(3, "node-1")) + st(14, "kubelet") + st(15, "kubelet-node-1"))
    assert decode_k8s_protobuf(envelope("v1", "Event", raw)) == {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": "p1.17a", "namespace": "demo"},
        "involvedObject": {"kind": "Pod", "namespace": "demo", "name": "p1", "uid": "u", "apiVersion": "v1",
                           "resourceVersion": "7"},
        "reason": "Pulled",
        "message": "ok",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-01-02T03:04:05Z",
        "count": 2,
        "type": "Normal",
        "eventTime": "2024-01-02T03:04:05.123456Z",
        "series": {"count": 5, "lastObservedTime": "2024-01-02T03:04:06.000001Z"},
        "action": "Pull",
        "related": {"kind": "Node", "name": "node-1"},
        "reportingComponent": "kubelet",
        "reportingInstance": "kubelet-node-1",
    }


# --- every kind, through the module's writer ---------------------------------------------------------

OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace",
     "metadata": {"name": "demo", "labels": {"team": "a"}},
     "spec": {"finalizers": ["kubernetes"]},
     "status": {"phase": "Terminating", "conditions": [{
         "type": "NamespaceDeletionContentFailure", "status": "True",
         "lastTransitionTime": "2024-01-02T03:04:05Z", "reason": "R", "message": "m"}]}},
    {"apiVersion": "v1", "kind": "ConfigMap",
     "metadata": {"name": "c1", "namespace": "demo", "annotations": {"x": "y"}},
     "immutable": True, "data": {"a": "1", "b": "two"}, "binaryData": {"bin": "AAEC"}},
    {"apiVersion": "v1", "kind": "Secret",
     "metadata": {"name": "s1", "namespace": "demo"},
     "immutable": False, "data": {"k": base64.b64encode(b"\xff\xfe secret").decode()},
     "stringData": {"plain": "p"}, "type": "kubernetes.io/basic-auth"},
    {"apiVersion": "v1", "kind": "ServiceAccount",
     "metadata": {"name": "sa", "namespace": "demo"},
     "secrets": [{"name": "sa-token", "namespace": "demo", "kind": "Secret"}],
     "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}],
     "automountServiceAccountToken": False},
    {"apiVersion": "v1", "kind": "Event",
     "metadata": {"name": "e1", "namespace": "demo"},
     "involvedObject": {"kind": "ConfigMap", "name": "c1", "namespace": "demo", "fieldPath": "data"},
     "reason": "Created", "message": "hi", "source": {"component": "jetkube"},
     "firstTimestamp": "2024-01-02T03:04:05Z", "lastTimestamp": "2024-01-02T03:05:05Z", "count": 1,
     "type": "Normal", "eventTime": "2024-01-02T03:04:05.500000Z",
     "series": {"count": 3, "lastObservedTime": "2024-01-02T03:04:07.000000Z"},
     "reportingComponent": "jetkube", "reportingInstance": "jetkube-0"},
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
     "metadata": {"name": "leader", "namespace": "kube-system"},
     "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 15,
              "acquireTime": "2024-01-02T03:04:05.000000Z", "renewTime": "2024-01-02T03:04:20.250000Z",
              "leaseTransitions": 0, "strategy": "OldestEmulationVersion", "preferredHolder": "node-b"}},
    {"apiVersion": "v1", "kind": "DeleteOptions",
     "gracePeriodSeconds": 0, "preconditions": {"uid": "u-1", "resourceVersion": "9"},
     "orphanDependents": False, "propagationPolicy": "Foreground", "dryRun": ["All"],
     "ignoreStoreReadErrorWithClusterBreakingPotential": False},
    {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
     "metadata": {"name": "sa", "namespace": "demo"},
     "spec": {"audiences": ["api"], "expirationSeconds": 600,
              "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}},
     "status": {"token": "eyJ...", "expirationTimestamp": "2024-01-02T03:14:05Z"}},
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
     "metadata": {}, "status": {"userInfo": {
         "username": "alice", "uid": "u-a", "groups": ["system:authenticated", "dev"],
         "extra": {"scopes": ["a", "b"], "empty": []}}}},
    {"apiVersion": "authentication.k8s.io/v1beta1", "kind": "SelfSubjectReview",
     "metadata": {}, "status": {"userInfo": {"username": "bob"}}},
    {"apiVersion": "authentication.k8s.io/v1alpha1", "kind": "SelfSubjectReview", "metadata": {}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
     "metadata": {},
     "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
     "status": {"allowed": True, "denied": True, "reason": "r", "evaluationError": "e"}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
     "metadata": {},
     "spec": {"resourceAttributes": {
         "namespace": "demo", "verb": "get", "group": "apps", "version": "v1", "resource": "deployments",
         "subresource": "scale", "name": "web",
         "fieldSelector": {"requirements": [{"key": "metadata.name", "operator": "Exists"}]},
         "labelSelector": {"rawSelector": "app=web"}}}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
     "metadata": {},
     "spec": {"resourceAttributes": {"namespace": "a", "verb": "list", "resource": "configmaps"},
              "user": "alice", "groups": ["dev", "system:authenticated"], "uid": "u1"},
     "status": {"allowed": True, "reason": "RBAC: allowed by RoleBinding \"b/a\""}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
     "metadata": {"namespace": "a"},
     "spec": {"resourceAttributes": {"namespace": "a", "verb": "get", "resource": "secrets", "name": "s"},
              "user": "bob"},
     "status": {"allowed": True, "denied": True}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
     "metadata": {}, "spec": {"namespace": "demo"},
     "status": {"resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"],
                                   "resourceNames": ["p"]}],
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]}],
                "incomplete": True, "evaluationError": "partial"}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
     "metadata": {"name": "r", "namespace": "demo"},
     "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"],
                "resourceNames": ["c1"]}, {"verbs": ["*"], "apiGroups": ["apps"], "resources": ["*"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "agg"},
     "rules": [{"verbs": ["get"], "nonResourceURLs": ["/metrics"]}],
     "aggregationRule": {"clusterRoleSelectors": [
         {"matchLabels": {"rbac.example.com/aggregate-to-agg": "true"}},
         {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                               {"key": "x", "operator": "Exists"}]}]}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
     "metadata": {"name": "rb", "namespace": "demo"},
     "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}],
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "crb"},
     "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "demo"}],
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "agg"}},
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['apiVersion']}/{o['kind']}")
def test_round_trip_every_kind(obj: dict[str, Any]) -> None:
    assert decode_k8s_protobuf(encode_k8s_protobuf(obj)) == obj


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['apiVersion']}/{o['kind']}")
def test_gogo_style_zero_fields_are_omitted(obj: dict[str, Any]) -> None:
    # Go writes every value field (empty strings, zeros, empty structs, empty Times); decoding must
    # give back the object plus at most empty value-type structs, never "" / 0 / false scalars.
    decoded = decode_k8s_protobuf(encode_k8s_protobuf(obj, emit_defaults=True))
    _assert_superset_with_empty_structs(decoded, obj)


def _assert_superset_with_empty_structs(decoded: Any, expected: Any) -> None:
    if isinstance(expected, dict):
        assert isinstance(decoded, dict)
        for k, v in decoded.items():
            if k in expected:
                _assert_superset_with_empty_structs(v, expected[k])
            else:
                assert _only_empty_dicts(v), (k, v)
        assert set(expected) <= set(decoded)
    elif isinstance(expected, list):
        assert isinstance(decoded, list) and len(decoded) == len(expected)
        for d, e in zip(decoded, expected):
            _assert_superset_with_empty_structs(d, e)
    else:
        assert decoded == expected


def _only_empty_dicts(v: Any) -> bool:
    # Zero scalars appear only where Go's JSON writes them too (a value field without omitempty).
    return isinstance(v, dict) and all(_only_empty_dicts(x) or x in ("", 0, False) for x in v.values())


def test_every_kind_is_covered_by_the_round_trip() -> None:
    covered = {(o["apiVersion"], o["kind"]) for o in OBJECTS}
    assert {k for k in covered if k[1] not in VERSIONLESS_KINDS} <= set(KINDS)
    assert {k for _, k in covered} >= set(VERSIONLESS_KINDS) - {"Status"}  # Status: test_protobuf_kinds


def test_delete_options_any_group_version() -> None:
    raw = vi(1, 0) + st(4, "Orphan")
    for gv in ("v1", "rbac.authorization.k8s.io/v1", "meta.k8s.io/v1"):
        assert decode_k8s_protobuf(envelope(gv, "DeleteOptions", raw)) == {
            "kind": "DeleteOptions", "apiVersion": gv, "gracePeriodSeconds": 0, "propagationPolicy": "Orphan"}


# --- special types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "expected"), [
    (b"", None),  # zero time (Go marshals it as an empty message; its JSON is null)
    (time_msg(0), "1970-01-01T00:00:00Z"),
    (time_msg(T_2024, 999_999_999), "2024-01-02T03:04:05Z"),  # Time keeps seconds only
    (vi(1, T_2024), "2024-01-02T03:04:05Z"),
    (time_msg(-62135596800), "0001-01-01T00:00:00Z"),
    (time_msg(253402300799), "9999-12-31T23:59:59Z"),
])
def test_time(payload: bytes, expected: str | None) -> None:
    assert decode_message(payload, "meta.v1.Time") == expected


@pytest.mark.parametrize(("payload", "expected"), [
    (b"", None),
    (time_msg(T_2024, 0), "2024-01-02T03:04:05.000000Z"),
    (time_msg(T_2024, 123_456_789), "2024-01-02T03:04:05.123456Z"),  # truncated to microseconds
    (vi(2, 5_000), "1970-01-01T00:00:00.000005Z"),
])
def test_micro_time(payload: bytes, expected: str | None) -> None:
    assert decode_message(payload, "meta.v1.MicroTime") == expected


def test_time_out_of_range_is_an_error() -> None:
    with pytest.raises(ProtobufError, match="out of range"):
        decode_message(time_msg(1 << 62), "meta.v1.Time")
    with pytest.raises(ProtobufError, match="nanos"):
        decode_message(time_msg(0, 2_000_000_000), "meta.v1.MicroTime")


@pytest.mark.parametrize(("ns", "expected"), [
    (0, "0s"), (1, "1ns"), (1_100, "1.1\u00b5s"), (2_200_000, "2.2ms"), (1_500_000_000, "1.5s"),
    (60_000_000_000, "1m0s"), (3_600_000_000_000, "1h0m0s"), (5_400_000_000_000, "1h30m0s"),
    (-90_000_000_000, "-1m30s"), (100 * 3_600_000_000_000 + 1, "100h0m0.000000001s"),
])
def test_duration(ns: int, expected: str) -> None:
    assert decode_message(vi(1, ns), "meta.v1.Duration") == expected
    assert decode_message(encode_message(expected, "meta.v1.Duration"), "meta.v1.Duration") == expected


def test_int_or_string_and_quantity() -> None:
    assert decode_message(vi(1, 0) + vi(2, 8080) + st(3, ""), "intstr.IntOrString") == 8080
    assert decode_message(vi(1, 1) + vi(2, 0) + st(3, "http"), "intstr.IntOrString") == "http"
    assert decode_message(vi(2, (1 << 64) - 1), "intstr.IntOrString") == -1
    assert decode_message(st(1, "1536Mi"), "resource.Quantity") == "1536Mi"
    for v in (443, "https"):
        assert decode_message(encode_message(v, "intstr.IntOrString"), "intstr.IntOrString") == v


def test_list_meta() -> None:
    raw = st(1, "") + st(2, "123") + st(3, "tok") + vi(4, 0)
    assert decode_message(raw, "meta.v1.ListMeta") == {"resourceVersion": "123", "continue": "tok",
                                                       "remainingItemCount": 0}


def test_fields_v1_must_hold_json() -> None:
    assert decode_message(b"", "meta.v1.FieldsV1") is None
    with pytest.raises(ProtobufError, match="FieldsV1"):
        decode_message(ld(1, b"{not json"), "meta.v1.FieldsV1")


def test_user_info_extra_map_of_lists() -> None:
    raw = st(1, "u") + ld(4, st(1, "scopes") + ld(2, st(1, "a") + st(1, "b"))) + ld(4, st(1, "none"))
    assert decode_message(raw, "authentication.v1.UserInfo") == {
        "username": "u", "extra": {"scopes": ["a", "b"], "none": []}}


# --- wire-level behaviour ----------------------------------------------------------------------------


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (vi(99, 12345)                                  # varint
               + key(100, 1) + b"\x01" * 8                     # 64-bit
               + ld(101, b"\xff\xfe garbage")                  # length-delimited
               + key(102, 5) + b"\x02" * 4                     # 32-bit
               + key(103, 3) + vi(1, 1) + key(2, 3) + key(2, 4) + key(103, 4)  # (nested) group
               + vi(536870911, 1))                              # the largest field number
    meta = unknown + st(1, "c1") + vi(15, 0) + ld(16, b"") + unknown  # 15, 16: removed ObjectMeta fields
    raw = unknown + ld(1, meta) + entry(2, "k", "v") + unknown
    body = b"k8s\x00" + unknown + ld(1, st(1, "v1") + unknown + st(2, "ConfigMap")) + ld(2, raw) + unknown
    assert decode_k8s_protobuf(body) == {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c1"}, "data": {"k": "v"}}
    # unknown fields inside a map entry are skipped too
    raw2 = ld(1, st(1, "c")) + ld(2, vi(7, 1) + st(1, "k") + ld(9, b"x") + st(2, "v"))
    assert decode_k8s_protobuf(envelope("v1", "ConfigMap", raw2))["data"] == {"k": "v"}


def test_field_order_and_repeats_follow_protobuf_rules() -> None:
    # fields in any order; a repeated singular scalar: last wins; a repeated singular message: merged
    raw = (ld(2, st(3, "devs") + st(1, "Group")) + ld(1, st(1, "first") + st(3, "demo")) + ld(1, st(1, "rb"))
           + ld(3, st(2, "ClusterRole")) + ld(3, st(3, "view")) + ld(3, st(1, "rbac.authorization.k8s.io")))
    assert decode_k8s_protobuf(envelope("rbac.authorization.k8s.io/v1", "RoleBinding", raw)) == {
        "kind": "RoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "rb", "namespace": "demo"},
        "subjects": [{"kind": "Group", "name": "devs"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    }


def test_duplicate_map_keys_last_wins_and_missing_parts_are_zero() -> None:
    raw = (ld(1, b"") + entry(2, "k", "a") + entry(2, "k", "b") + ld(2, st(1, "nokey-value-missing"))
           + ld(2, st(2, "value-without-key")) + ld(3, st(1, "nobytes")))
    assert decode_k8s_protobuf(envelope("v1", "ConfigMap", raw)) == {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {},
        "data": {"k": "b", "nokey-value-missing": "", "": "value-without-key"},
        "binaryData": {"nobytes": ""},
    }


def test_negative_and_wide_integers() -> None:
    # int32 -1 is a 10-byte sign-extended varint; int64 keeps 64 bits
    raw = ld(1, b"") + ld(2, vi(2, (1 << 64) - 1) + vi(5, (1 << 64) - 2))
    spec = decode_k8s_protobuf(envelope("coordination.k8s.io/v1", "Lease", raw))["spec"]
    assert spec == {"leaseDurationSeconds": -1, "leaseTransitions": -2}
    meta = vi(7, (1 << 63) - 1) + vi(10, (1 << 64) - 30)
    assert decode_message(meta, "meta.v1.ObjectMeta") == {"generation": (1 << 63) - 1,
                                                          "deletionGracePeriodSeconds": -30}


def test_bool_is_any_nonzero_varint() -> None:
    raw = ld(1, b"") + vi(4, 2)
    assert decode_k8s_protobuf(envelope("v1", "ConfigMap", raw))["immutable"] is True


def test_packed_repeated_varints_are_accepted() -> None:
    messages = {"t.M": {1: Field("nums", "int32", repeated=True), 2: Field("flags", "bool", repeated=True)}}
    raw = ld(1, varint(1) + varint(300) + varint((1 << 64) - 5)) + vi(1, 7) + ld(2, b"\x00\x01")
    assert decode_message(raw, "t.M", messages) == {"nums": [1, 300, -5, 7], "flags": [False, True]}


def test_invalid_utf8_in_strings_is_replaced_like_go_json() -> None:
    assert decode_message(ld(1, b"bad\xffname"), "meta.v1.ObjectMeta") == {"name": "bad\ufffdname"}


def test_custom_tables_and_kinds() -> None:
    widget = {1: Field("metadata", "meta.v1.ObjectMeta"), 2: Field("size", "int64")}
    messages = {**MESSAGES, "x.v1.Widget": widget}
    kinds = {("x.example.com/v1", "Widget"): "x.v1.Widget"}
    body = envelope("x.example.com/v1", "Widget", ld(1, st(1, "w")) + vi(2, 3))
    assert decode_k8s_protobuf(body, messages=messages, kinds=kinds) == {
        "kind": "Widget", "apiVersion": "x.example.com/v1", "metadata": {"name": "w"}, "size": 3}
    with pytest.raises(UnknownKindError):
        decode_k8s_protobuf(envelope("v1", "ConfigMap", b""), kinds=kinds)


def test_content_type_protobuf_is_accepted_in_the_envelope() -> None:
    body = envelope("v1", "Namespace", ld(1, st(1, "x")), content_type=CONTENT_TYPE)
    assert decode_k8s_protobuf(body)["metadata"] == {"name": "x"}
    assert decode_k8s_protobuf(bytearray(body))["metadata"] == {"name": "x"}
    assert decode_k8s_protobuf(memoryview(body))["metadata"] == {"name": "x"}


# --- errors ------------------------------------------------------------------------------------------

GOOD = envelope("v1", "Namespace", ld(1, st(1, "demo")))


@pytest.mark.parametrize(("body", "match"), [
    (b"", "prefix"),
    (b"k8s", "prefix"),
    (b"{\"kind\":\"Namespace\"}", "prefix"),
    (b"k8s\x01" + GOOD[4:], "prefix"),
    (b"k8s\x00", "typeMeta"),
    (b"k8s\x00" + ld(2, b""), "typeMeta"),
    (b"k8s\x00" + ld(1, st(2, "Namespace")), "typeMeta"),
    (GOOD[:-5], "runs past the end"),
    (GOOD[:-3], "truncated varint"),
    (GOOD + b"\x80", "truncated varint"),
    (GOOD + b"\xff" * 11, "longer than 10 bytes"),
    (GOOD + b"\x00\x01", "field number 0"),
    (GOOD + key(9, 6), "invalid wire type 6"),
    (GOOD + key(9, 7), "invalid wire type 7"),
    (GOOD + key(9, 4), "end-group"),
    (GOOD + key(9, 3) + vi(1, 1), "unterminated group"),
    (GOOD + key(9, 3) + key(8, 4), "closed by end-group 8"),
    (GOOD + key(9, 1) + b"\x00" * 7, "truncated 64-bit"),
    (GOOD + key(9, 5) + b"\x00" * 3, "truncated 32-bit"),
    (envelope("v1", "Namespace", b"", encoding="gzip"), "contentEncoding"),
    (envelope("v1", "Namespace", b"", content_type="application/json"), "contentType"),
    (b"k8s\x00" + vi(1, 5), "wire type varint"),  # typeMeta must be length-delimited
    (envelope("v1", "Namespace", vi(1, 1)),
     r"field 1 \(metadata\) of core.v1.Namespace has wire type varint"),
    (envelope("v1", "Namespace", ld(1, vi(1, 1))), "field 1 \\(name\\) of meta.v1.ObjectMeta"),
    (envelope("v1", "ConfigMap", ld(4, b"")), "immutable"),
    (envelope("v1", "ConfigMap", ld(2, vi(1, 1))), "data entry of core.v1.ConfigMap"),
    (envelope("v1", "ConfigMap", ld(2, b"\x00")), "field number 0"),
    (envelope("v1", "Namespace", ld(1, ld(8, b"\x08"))), "truncated varint"),
    (envelope("v1", "Namespace", ld(1, key(13, 2) + b"\x05ab")), "runs past the end"),
])
def test_malformed_input(body: bytes, match: str) -> None:
    with pytest.raises(ProtobufError, match=match):
        decode_k8s_protobuf(body)


def test_unknown_kind() -> None:
    with pytest.raises(UnknownKindError) as info:
        decode_k8s_protobuf(envelope("example.com/v1", "Widget", ld(1, st(1, "web"))))
    err = info.value
    assert isinstance(err, ProtobufError) and isinstance(err, ValueError)
    assert (err.api_version, err.kind) == ("example.com/v1", "Widget")
    assert "Widget" in str(err) and "example.com/v1" in str(err) and "application/json" in str(err)
    with pytest.raises(UnknownKindError):  # right kind, wrong group-version
        decode_k8s_protobuf(envelope("v2", "ConfigMap", b""))
    with pytest.raises(UnknownKindError):
        message_for("rbac.authorization.k8s.io/v1beta1", "Role")


def test_non_bytes_input() -> None:
    with pytest.raises(ProtobufError, match="bytes"):
        decode_k8s_protobuf("k8s\x00")  # type: ignore[arg-type]


def test_deep_nesting_is_bounded() -> None:
    messages = {"t.R": {1: Field("r", "t.R")}}
    payload = b""
    for _ in range(200):
        payload = ld(1, payload)
    with pytest.raises(ProtobufError, match="nested too deeply"):
        decode_message(payload, "t.R", messages)
    group = b""
    for _ in range(200):
        group = key(50, 3) + group + key(50, 4)
    with pytest.raises(ProtobufError, match="nested too deeply"):
        decode_message(group, "meta.v1.ObjectMeta")


# --- the tables themselves ---------------------------------------------------------------------------


def test_tables_are_consistent() -> None:
    scalars = {"string", "bytes", "bool", "int32", "int64"}
    for name, fields in MESSAGES.items():
        assert fields or name == "meta.v1.Patch", name
        names = [f.json for f in fields.values() if not f.inline]
        assert len(names) == len(set(names)), name
        for number, f in fields.items():
            assert 1 <= number < 1 << 29, (name, number)
            if f.type == "map":
                assert f.value in scalars or f.value in MESSAGES, (name, f)
                assert not f.repeated and not f.ptr, (name, f)
            else:
                assert f.type in scalars or f.type in MESSAGES, (name, f)
                assert not (f.repeated and f.ptr), (name, f)
    every = {**KINDS, **{("any", k): m for k, m in VERSIONLESS_KINDS.items()}}
    for (api_version, kind), name in every.items():
        assert name in MESSAGES and name.rsplit(".", 1)[1] == kind, (api_version, kind)
        if name not in ("meta.v1.DeleteOptions", "meta.v1.Status"):
            meta = "meta.v1.ListMeta" if kind.endswith("List") else "meta.v1.ObjectMeta"
            assert MESSAGES[name][1] == Field("metadata", meta), name


def test_field_numbers_spot_checks_against_generated_proto() -> None:
    # a few numbers that are easy to get wrong (declaration order differs from numbering)
    meta = MESSAGES["meta.v1.ObjectMeta"]
    assert (meta[11].json, meta[12].json, meta[13].json, meta[17].json) == (
        "labels", "annotations", "ownerReferences", "managedFields")
    assert MESSAGES["meta.v1.OwnerReference"][5].json == "apiVersion"
    assert MESSAGES["core.v1.ConfigMap"][4].json == "immutable"
    assert MESSAGES["core.v1.Secret"][5].json == "immutable"
    assert MESSAGES["core.v1.Secret"][3].json == "type"
    assert MESSAGES["core.v1.NamespaceCondition"][4].json == "lastTransitionTime"
    assert 3 not in MESSAGES["core.v1.NamespaceCondition"]
    assert MESSAGES["authentication.v1.TokenRequestSpec"][4].json == "expirationSeconds"
    assert MESSAGES["authorization.v1.SubjectAccessReviewStatus"][4].json == "denied"
    assert MESSAGES["meta.v1.ManagedFieldsEntry"][7].json == "fieldsV1"
    assert 5 not in MESSAGES["meta.v1.ManagedFieldsEntry"]


def test_encoder_ignores_unknown_keys_and_does_not_mutate() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "bogus": 1}, "extra": True}
    before = copy.deepcopy(obj)
    assert decode_k8s_protobuf(encode_k8s_protobuf(obj)) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert obj == before
    assert encode_k8s_protobuf(obj).startswith(MAGIC)
