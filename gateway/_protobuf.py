"""Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``) decoded to JSON-shaped dicts.

kubectl 1.32+ sends its typed-client bodies (``create namespace|configmap|secret|serviceaccount|role|...``,
``create token``, ``auth can-i``, ``auth whoami``) as protobuf and does not retry as JSON after a 415.
This module is a pure, dependency-free decoder: a hand-written protobuf wire reader plus message tables
written from the public ``generated.proto`` files. Its output is the dict the Kubernetes JSON serializer
would produce for the same object, so the rest of the server never sees protobuf.

Wire format (``k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go``): the 4 bytes ``k8s\\x00``,
then a ``runtime.Unknown`` message ``{1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
4: contentType}``; ``raw`` holds the object's own message, looked up here by (apiVersion, kind).

Field numbers come from (read 2025, via the code index; commits as stored there):

- ``kubernetes/kubernetes: staging/src/k8s.io/apimachinery/pkg/runtime/generated.proto`` @ 203d8ac83844
  (Unknown, TypeMeta)
- ``kubernetes/kubernetes: staging/src/k8s.io/apimachinery/pkg/util/intstr/generated.proto`` @ 009a4a8bc0b3
- ``kubernetes/kubernetes: staging/src/k8s.io/apimachinery/pkg/api/resource/generated.proto`` @ 0f9f0907d6db
- meta/v1: ``kubeadapt/kubeadapt-k8s-pulse: vendor/k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto``
  @ 2d3917ec4aff (a recent vendored copy, with DeleteOptions field 6), cross-checked against
  ``spotmaxtech/k8s-apimachinery-v0260: pkg/apis/meta/v1/generated.proto`` @ 64429bdd6070
  (apimachinery v0.26.0)
- ``kubernetes/api: core/v1/generated.proto`` @ 35f2b3a24dcf
- ``kubernetes/kubernetes: staging/src/k8s.io/api/coordination/v1/generated.proto`` @ 1672e6d6b8be
- ``kubernetes/kubernetes: staging/src/k8s.io/api/authentication/v1/generated.proto`` @ 155f0631f257 and
  ``.../authentication/v1/types.go`` @ 008b3652959c (SelfSubjectReview v1, 1.28+, from its protobuf tags)
- ``kubernetes/kubernetes: staging/src/k8s.io/api/authentication/v1beta1/generated.proto`` @ 025f2834a128,
  ``.../authentication/v1alpha1/generated.proto`` @ 121460defea7
- ``kubernetes/kubernetes: staging/src/k8s.io/api/authorization/v1/generated.proto`` @ 061200305a7b
- ``kubernetes/kubernetes: staging/src/k8s.io/api/rbac/v1/generated.proto`` @ 081ac6b5a900

JSON shaping follows the Go structs (``types.go``) and ``encoding/json``:

- Go's generated (gogo) marshallers write every *value* field, zero or not: ``name: ""``, ``generation: 0``,
  an empty ``spec``. Zero scalars are therefore omitted here (``omitempty``), while fields that are Go
  *pointers* (``ptr=True`` in the tables: ``immutable``, ``gracePeriodSeconds``,
  ``automountServiceAccountToken``, ...) are kept whenever they are on the wire, zero or not. A nested
  message on the wire is always emitted (``"spec": {}``), as Go does for struct fields.
- ``metav1.Time``: RFC 3339, seconds, UTC; an empty message is the zero time and is omitted (Go writes
  ``null``). ``MicroTime``: RFC 3339 with 6 fractional digits. ``Duration``: Go's ``time.Duration`` string.
  ``Quantity``: its string. ``IntOrString``: int or string. ``FieldsV1``: its raw JSON, parsed.
  ``[]byte`` (Secret.data values, ConfigMap.binaryData values): standard base64. ``ExtraValue``: a list.
- Unknown fields are skipped (any wire type, including groups). A singular message field that appears
  more than once is merged, a singular scalar's last value wins, as in protobuf.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "CONTENT_TYPE",
    "KINDS",
    "MAGIC",
    "MESSAGES",
    "VERSIONLESS_KINDS",
    "Field",
    "ProtobufError",
    "UnknownKindError",
    "decode_k8s_protobuf",
    "decode_message",
    "encode_k8s_protobuf",
    "encode_message",
    "message_for",
]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_MAX_DEPTH = 64
_MASK64 = (1 << 64) - 1


class ProtobufError(ValueError):
    """A protobuf body that cannot be decoded (malformed wire data, unsupported envelope, unknown kind)."""


class UnknownKindError(ProtobufError):
    """The envelope is well formed but names a (apiVersion, kind) with no message table here (answer 415)."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version = api_version
        self.kind = kind
        super().__init__(
            f"protobuf bodies of kind {kind!r} in apiVersion {api_version!r} are not supported by this "
            f"server; send the request as application/json")


# --- message tables ------------------------------------------------------------------------------------


class Field(NamedTuple):
    """One field of a message table.

    ``type`` is a scalar (``string``, ``bytes``, ``bool``, ``int32``, ``int64``), a message name
    (a key of ``MESSAGES``) or ``map`` (``map<string, value>``, entries are messages {1: key, 2: value}).
    ``ptr``: the Go field is a pointer, so a zero value on the wire is still emitted.
    """

    json: str
    type: str
    repeated: bool = False
    ptr: bool = False
    value: str | None = None  # the value type of a map


def _f(json_name: str, typ: str = "string", *, rep: bool = False, ptr: bool = False) -> Field:
    return Field(json_name, typ, rep, ptr)


def _map(json_name: str, value: str = "string") -> Field:
    return Field(json_name, "map", False, False, value)


_SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64"})
_VARINT_TYPES = frozenset({"bool", "int32", "int64"})

OBJECT_META = "meta.v1.ObjectMeta"
TIME = "meta.v1.Time"
MICRO_TIME = "meta.v1.MicroTime"

MESSAGES: dict[str, dict[int, Field]] = {
    # k8s.io/apimachinery/pkg/runtime
    "runtime.TypeMeta": {1: _f("apiVersion"), 2: _f("kind")},
    "runtime.Unknown": {
        1: _f("typeMeta", "runtime.TypeMeta"),
        2: _f("raw", "bytes"),
        3: _f("contentEncoding"),
        4: _f("contentType"),
    },
    # k8s.io/apimachinery/pkg/util/intstr, pkg/api/resource (special JSON forms, see _SPECIAL_DECODERS)
    "intstr.IntOrString": {1: _f("type", "int64"), 2: _f("intVal", "int32"), 3: _f("strVal")},
    "resource.Quantity": {1: _f("string")},
    # k8s.io/apimachinery/pkg/apis/meta/v1
    TIME: {1: _f("seconds", "int64"), 2: _f("nanos", "int32")},
    MICRO_TIME: {1: _f("seconds", "int64"), 2: _f("nanos", "int32")},
    "meta.v1.Duration": {1: _f("duration", "int64")},
    "meta.v1.FieldsV1": {1: _f("Raw", "bytes")},
    OBJECT_META: {
        1: _f("name"),
        2: _f("generateName"),
        3: _f("namespace"),
        4: _f("selfLink"),
        5: _f("uid"),
        6: _f("resourceVersion"),
        7: _f("generation", "int64"),
        8: _f("creationTimestamp", TIME),
        9: _f("deletionTimestamp", TIME, ptr=True),
        10: _f("deletionGracePeriodSeconds", "int64", ptr=True),
        11: _map("labels"),
        12: _map("annotations"),
        13: _f("ownerReferences", "meta.v1.OwnerReference", rep=True),
        14: _f("finalizers", rep=True),
        17: _f("managedFields", "meta.v1.ManagedFieldsEntry", rep=True),
    },
    "meta.v1.OwnerReference": {
        5: _f("apiVersion"),
        1: _f("kind"),
        3: _f("name"),
        4: _f("uid"),
        6: _f("controller", "bool", ptr=True),
        7: _f("blockOwnerDeletion", "bool", ptr=True),
    },
    "meta.v1.ManagedFieldsEntry": {
        1: _f("manager"),
        2: _f("operation"),
        3: _f("apiVersion"),
        4: _f("time", TIME, ptr=True),
        6: _f("fieldsType"),
        7: _f("fieldsV1", "meta.v1.FieldsV1", ptr=True),
        8: _f("subresource"),
    },
    "meta.v1.ListMeta": {
        1: _f("selfLink"),
        2: _f("resourceVersion"),
        3: _f("continue"),
        4: _f("remainingItemCount", "int64", ptr=True),
    },
    "meta.v1.LabelSelector": {
        1: _map("matchLabels"),
        2: _f("matchExpressions", "meta.v1.LabelSelectorRequirement", rep=True),
    },
    "meta.v1.LabelSelectorRequirement": {1: _f("key"), 2: _f("operator"), 3: _f("values", rep=True)},
    "meta.v1.FieldSelectorRequirement": {1: _f("key"), 2: _f("operator"), 3: _f("values", rep=True)},
    "meta.v1.DeleteOptions": {
        1: _f("gracePeriodSeconds", "int64", ptr=True),
        2: _f("preconditions", "meta.v1.Preconditions", ptr=True),
        3: _f("orphanDependents", "bool", ptr=True),
        4: _f("propagationPolicy", ptr=True),
        5: _f("dryRun", rep=True),
        6: _f("ignoreStoreReadErrorWithClusterBreakingPotential", "bool", ptr=True),
    },
    "meta.v1.Preconditions": {1: _f("uid", ptr=True), 2: _f("resourceVersion", ptr=True)},
    # k8s.io/api/core/v1
    "core.v1.Namespace": {
        1: _f("metadata", OBJECT_META),
        2: _f("spec", "core.v1.NamespaceSpec"),
        3: _f("status", "core.v1.NamespaceStatus"),
    },
    "core.v1.NamespaceSpec": {1: _f("finalizers", rep=True)},
    "core.v1.NamespaceStatus": {
        1: _f("phase"),
        2: _f("conditions", "core.v1.NamespaceCondition", rep=True),
    },
    "core.v1.NamespaceCondition": {
        1: _f("type"),
        2: _f("status"),
        4: _f("lastTransitionTime", TIME),
        5: _f("reason"),
        6: _f("message"),
    },
    "core.v1.ConfigMap": {
        1: _f("metadata", OBJECT_META),
        4: _f("immutable", "bool", ptr=True),
        2: _map("data"),
        3: _map("binaryData", "bytes"),
    },
    "core.v1.Secret": {
        1: _f("metadata", OBJECT_META),
        5: _f("immutable", "bool", ptr=True),
        2: _map("data", "bytes"),
        4: _map("stringData"),
        3: _f("type"),
    },
    "core.v1.ServiceAccount": {
        1: _f("metadata", OBJECT_META),
        2: _f("secrets", "core.v1.ObjectReference", rep=True),
        3: _f("imagePullSecrets", "core.v1.LocalObjectReference", rep=True),
        4: _f("automountServiceAccountToken", "bool", ptr=True),
    },
    "core.v1.ObjectReference": {
        1: _f("kind"),
        2: _f("namespace"),
        3: _f("name"),
        4: _f("uid"),
        5: _f("apiVersion"),
        6: _f("resourceVersion"),
        7: _f("fieldPath"),
    },
    "core.v1.LocalObjectReference": {1: _f("name")},
    "core.v1.Event": {
        1: _f("metadata", OBJECT_META),
        2: _f("involvedObject", "core.v1.ObjectReference"),
        3: _f("reason"),
        4: _f("message"),
        5: _f("source", "core.v1.EventSource"),
        6: _f("firstTimestamp", TIME),
        7: _f("lastTimestamp", TIME),
        8: _f("count", "int32"),
        9: _f("type"),
        10: _f("eventTime", MICRO_TIME),
        11: _f("series", "core.v1.EventSeries", ptr=True),
        12: _f("action"),
        13: _f("related", "core.v1.ObjectReference", ptr=True),
        14: _f("reportingComponent"),
        15: _f("reportingInstance"),
    },
    "core.v1.EventSource": {1: _f("component"), 2: _f("host")},
    "core.v1.EventSeries": {1: _f("count", "int32"), 2: _f("lastObservedTime", MICRO_TIME)},
    # k8s.io/api/coordination/v1
    "coordination.v1.Lease": {1: _f("metadata", OBJECT_META), 2: _f("spec", "coordination.v1.LeaseSpec")},
    "coordination.v1.LeaseSpec": {
        1: _f("holderIdentity", ptr=True),
        2: _f("leaseDurationSeconds", "int32", ptr=True),
        3: _f("acquireTime", MICRO_TIME, ptr=True),
        4: _f("renewTime", MICRO_TIME, ptr=True),
        5: _f("leaseTransitions", "int32", ptr=True),
        6: _f("strategy", ptr=True),
        7: _f("preferredHolder", ptr=True),
    },
    # k8s.io/api/authentication/v1
    "authentication.v1.TokenRequest": {
        1: _f("metadata", OBJECT_META),
        2: _f("spec", "authentication.v1.TokenRequestSpec"),
        3: _f("status", "authentication.v1.TokenRequestStatus"),
    },
    "authentication.v1.TokenRequestSpec": {
        1: _f("audiences", rep=True),
        4: _f("expirationSeconds", "int64", ptr=True),
        3: _f("boundObjectRef", "authentication.v1.BoundObjectReference", ptr=True),
    },
    "authentication.v1.TokenRequestStatus": {1: _f("token"), 2: _f("expirationTimestamp", TIME)},
    "authentication.v1.BoundObjectReference": {
        1: _f("kind"),
        2: _f("apiVersion"),
        3: _f("name"),
        4: _f("uid"),
    },
    "authentication.v1.SelfSubjectReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("status", "authentication.v1.SelfSubjectReviewStatus"),
    },
    "authentication.v1.SelfSubjectReviewStatus": {1: _f("userInfo", "authentication.v1.UserInfo")},
    "authentication.v1.UserInfo": {
        1: _f("username"),
        2: _f("uid"),
        3: _f("groups", rep=True),
        4: _map("extra", "authentication.v1.ExtraValue"),
    },
    "authentication.v1.ExtraValue": {1: _f("items", rep=True)},
    # k8s.io/api/authentication/v1beta1 and v1alpha1 (same shape; UserInfo is authentication/v1's)
    "authentication.v1beta1.SelfSubjectReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("status", "authentication.v1beta1.SelfSubjectReviewStatus"),
    },
    "authentication.v1beta1.SelfSubjectReviewStatus": {1: _f("userInfo", "authentication.v1.UserInfo")},
    "authentication.v1alpha1.SelfSubjectReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("status", "authentication.v1alpha1.SelfSubjectReviewStatus"),
    },
    "authentication.v1alpha1.SelfSubjectReviewStatus": {1: _f("userInfo", "authentication.v1.UserInfo")},
    # k8s.io/api/authorization/v1
    "authorization.v1.SelfSubjectAccessReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("spec", "authorization.v1.SelfSubjectAccessReviewSpec"),
        3: _f("status", "authorization.v1.SubjectAccessReviewStatus"),
    },
    "authorization.v1.SelfSubjectAccessReviewSpec": {
        1: _f("resourceAttributes", "authorization.v1.ResourceAttributes", ptr=True),
        2: _f("nonResourceAttributes", "authorization.v1.NonResourceAttributes", ptr=True),
    },
    "authorization.v1.ResourceAttributes": {
        1: _f("namespace"),
        2: _f("verb"),
        3: _f("group"),
        4: _f("version"),
        5: _f("resource"),
        6: _f("subresource"),
        7: _f("name"),
        8: _f("fieldSelector", "authorization.v1.FieldSelectorAttributes", ptr=True),
        9: _f("labelSelector", "authorization.v1.LabelSelectorAttributes", ptr=True),
    },
    "authorization.v1.FieldSelectorAttributes": {
        1: _f("rawSelector"),
        2: _f("requirements", "meta.v1.FieldSelectorRequirement", rep=True),
    },
    "authorization.v1.LabelSelectorAttributes": {
        1: _f("rawSelector"),
        2: _f("requirements", "meta.v1.LabelSelectorRequirement", rep=True),
    },
    "authorization.v1.NonResourceAttributes": {1: _f("path"), 2: _f("verb")},
    "authorization.v1.SubjectAccessReviewStatus": {
        1: _f("allowed", "bool"),
        4: _f("denied", "bool"),
        2: _f("reason"),
        3: _f("evaluationError"),
    },
    "authorization.v1.SubjectAccessReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("spec", "authorization.v1.SubjectAccessReviewSpec"),
        3: _f("status", "authorization.v1.SubjectAccessReviewStatus"),
    },
    "authorization.v1.LocalSubjectAccessReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("spec", "authorization.v1.SubjectAccessReviewSpec"),
        3: _f("status", "authorization.v1.SubjectAccessReviewStatus"),
    },
    "authorization.v1.SubjectAccessReviewSpec": {  # extra (field 5, a map of lists) is not carried
        1: _f("resourceAttributes", "authorization.v1.ResourceAttributes", ptr=True),
        2: _f("nonResourceAttributes", "authorization.v1.NonResourceAttributes", ptr=True),
        3: _f("user"),
        4: _f("groups", rep=True),
        6: _f("uid"),
    },
    "authorization.v1.SelfSubjectRulesReview": {
        1: _f("metadata", OBJECT_META),
        2: _f("spec", "authorization.v1.SelfSubjectRulesReviewSpec"),
        3: _f("status", "authorization.v1.SubjectRulesReviewStatus"),
    },
    "authorization.v1.SelfSubjectRulesReviewSpec": {1: _f("namespace")},
    "authorization.v1.SubjectRulesReviewStatus": {
        1: _f("resourceRules", "authorization.v1.ResourceRule", rep=True),
        2: _f("nonResourceRules", "authorization.v1.NonResourceRule", rep=True),
        3: _f("incomplete", "bool"),
        4: _f("evaluationError"),
    },
    "authorization.v1.ResourceRule": {
        1: _f("verbs", rep=True),
        2: _f("apiGroups", rep=True),
        3: _f("resources", rep=True),
        4: _f("resourceNames", rep=True),
    },
    "authorization.v1.NonResourceRule": {1: _f("verbs", rep=True), 2: _f("nonResourceURLs", rep=True)},
    # k8s.io/api/rbac/v1
    "rbac.v1.Role": {1: _f("metadata", OBJECT_META), 2: _f("rules", "rbac.v1.PolicyRule", rep=True)},
    "rbac.v1.ClusterRole": {
        1: _f("metadata", OBJECT_META),
        2: _f("rules", "rbac.v1.PolicyRule", rep=True),
        3: _f("aggregationRule", "rbac.v1.AggregationRule", ptr=True),
    },
    "rbac.v1.AggregationRule": {1: _f("clusterRoleSelectors", "meta.v1.LabelSelector", rep=True)},
    "rbac.v1.RoleBinding": {
        1: _f("metadata", OBJECT_META),
        2: _f("subjects", "rbac.v1.Subject", rep=True),
        3: _f("roleRef", "rbac.v1.RoleRef"),
    },
    "rbac.v1.ClusterRoleBinding": {
        1: _f("metadata", OBJECT_META),
        2: _f("subjects", "rbac.v1.Subject", rep=True),
        3: _f("roleRef", "rbac.v1.RoleRef"),
    },
    "rbac.v1.PolicyRule": {
        1: _f("verbs", rep=True),
        2: _f("apiGroups", rep=True),
        3: _f("resources", rep=True),
        4: _f("resourceNames", rep=True),
        5: _f("nonResourceURLs", rep=True),
    },
    "rbac.v1.Subject": {1: _f("kind"), 2: _f("apiGroup"), 3: _f("name"), 4: _f("namespace")},
    "rbac.v1.RoleRef": {1: _f("apiGroup"), 2: _f("kind"), 3: _f("name")},
}

# (apiVersion, kind) of a top-level object -> its message.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "core.v1.Namespace",
    ("v1", "ConfigMap"): "core.v1.ConfigMap",
    ("v1", "Secret"): "core.v1.Secret",
    ("v1", "ServiceAccount"): "core.v1.ServiceAccount",
    ("v1", "Event"): "core.v1.Event",
    ("coordination.k8s.io/v1", "Lease"): "coordination.v1.Lease",
    ("authentication.k8s.io/v1", "TokenRequest"): "authentication.v1.TokenRequest",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "authentication.v1.SelfSubjectReview",
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview"): "authentication.v1beta1.SelfSubjectReview",
    ("authentication.k8s.io/v1alpha1", "SelfSubjectReview"): "authentication.v1alpha1.SelfSubjectReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "authorization.v1.SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "authorization.v1.SelfSubjectRulesReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "authorization.v1.SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "authorization.v1.LocalSubjectAccessReview",
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac.v1.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.v1.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac.v1.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.v1.ClusterRoleBinding",
}

# Kinds registered in every group-version (metav1 options): any apiVersion is accepted.
VERSIONLESS_KINDS: dict[str, str] = {"DeleteOptions": "meta.v1.DeleteOptions"}


def message_for(api_version: str, kind: str, kinds: Mapping[tuple[str, str], str] | None = None) -> str:
    """The message name for a top-level (apiVersion, kind); raises UnknownKindError."""
    table = KINDS if kinds is None else kinds
    name = table.get((api_version, kind))
    if name is None and kinds is None:
        name = VERSIONLESS_KINDS.get(kind)
    if name is None:
        raise UnknownKindError(api_version, kind)
    return name


# --- wire reader ----------------------------------------------------------------------------------------

_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "32-bit"}


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtobufError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"varint longer than 10 bytes at byte {pos - 10}")


def _length_delimited(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of a length-delimited payload whose length prefix starts at pos."""
    n, pos = _varint(buf, pos, end)
    if n > end - pos:
        raise ProtobufError(
            f"length {n} at byte {pos} runs past the end of its message ({end - pos} bytes left)")
    return pos, pos + n


def _skip(buf: bytes, pos: int, end: int, wire_type: int, number: int, depth: int) -> int:
    """Skip the value of an unknown field; returns the position after it."""
    if wire_type == 0:
        return _varint(buf, pos, end)[1]
    if wire_type == 1:
        if end - pos < 8:
            raise ProtobufError(f"truncated 64-bit field {number} at byte {pos}")
        return pos + 8
    if wire_type == 2:
        return _length_delimited(buf, pos, end)[1]
    if wire_type == 5:
        if end - pos < 4:
            raise ProtobufError(f"truncated 32-bit field {number} at byte {pos}")
        return pos + 4
    if wire_type == 3:
        if depth >= _MAX_DEPTH:
            raise ProtobufError("protobuf groups nested too deeply")
        while True:
            if pos >= end:
                raise ProtobufError(f"unterminated group {number}")
            key, pos = _varint(buf, pos, end)
            inner_number, inner_type = key >> 3, key & 7
            if inner_type == 4:
                if inner_number != number:
                    raise ProtobufError(f"group {number} closed by end-group {inner_number}")
                return pos
            if inner_number == 0:
                raise ProtobufError(f"invalid field number 0 at byte {pos}")
            pos = _skip(buf, pos, end, inner_type, inner_number, depth + 1)
    if wire_type == 4:
        raise ProtobufError(f"end-group for field {number} without a matching start-group")
    raise ProtobufError(f"invalid wire type {wire_type} for field {number}")


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar_from_varint(typ: str, v: int) -> Any:
    if typ == "bool":
        return v != 0
    if typ == "int32":
        return _int32(v)
    return _int64(v)


def _text(buf: bytes, start: int, stop: int) -> str:
    # Go keeps invalid UTF-8 in a string and encoding/json writes U+FFFD for it; do the same.
    return bytes(buf[start:stop]).decode("utf-8", errors="replace")


class _Slot:
    """What one known field collected while scanning a message."""

    __slots__ = ("chunks", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.chunks: list[tuple[int, int]] = []


def _scan(
    buf: bytes, start: int, end: int, name: str, messages: Mapping[str, Mapping[int, Field]], depth: int,
) -> dict[int, _Slot]:
    """Read one message's fields: scalars decoded, message payloads as (start, stop) chunks."""
    table = messages.get(name)
    if table is None:
        raise ProtobufError(f"no message table for {name!r}")
    slots: dict[int, _Slot] = {}
    pos = start
    while pos < end:
        key_at = pos
        key, pos = _varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"invalid field number 0 at byte {key_at} in {name}")
        field = table.get(number)
        if field is None:
            pos = _skip(buf, pos, end, wire_type, number, depth)
            continue
        slot = slots.get(number)
        if slot is None:
            slot = slots[number] = _Slot()
        typ = field.type
        if typ in _VARINT_TYPES:
            if wire_type == 0:
                v, pos = _varint(buf, pos, end)
                slot.values.append(_scalar_from_varint(typ, v))
                continue
            if wire_type == 2 and field.repeated:  # packed repeated
                s, pos = _length_delimited(buf, pos, end)
                while s < pos:
                    v, s = _varint(buf, s, pos)
                    slot.values.append(_scalar_from_varint(typ, v))
                continue
        elif wire_type == 2:
            s, pos = _length_delimited(buf, pos, end)
            if typ == "string":
                slot.values.append(_text(buf, s, pos))
            elif typ == "bytes":
                slot.values.append(bytes(buf[s:pos]))
            else:
                slot.chunks.append((s, pos))
            continue
        raise ProtobufError(
            f"field {number} ({field.json}) of {name} has wire type {_WIRE_NAMES.get(wire_type, wire_type)}, "
            f"expected {'varint' if typ in _VARINT_TYPES else 'length-delimited'}")
    return slots


def _zero(typ: str) -> Any:
    return {"string": "", "bytes": b"", "bool": False, "int32": 0, "int64": 0}.get(typ)


def _scalar_json(typ: str, v: Any) -> Any:
    if typ == "bytes":
        return base64.b64encode(v).decode("ascii")
    return v


_OMIT = object()


def _decode_chunks(
    buf: bytes,
    chunks: list[tuple[int, int]],
    name: str,
    messages: Mapping[str, Mapping[int, Field]],
    depth: int,
) -> Any:
    """Decode a (possibly repeated-on-the-wire, hence merged) singular message to its JSON value."""
    if depth >= _MAX_DEPTH:
        raise ProtobufError("protobuf messages nested too deeply")
    if len(chunks) == 1:
        data, (start, end) = buf, chunks[0]
    else:  # protobuf merges a singular message that occurs more than once: decode the concatenation
        data = b"".join(bytes(buf[s:e]) for s, e in chunks)
        start, end = 0, len(data)
    special = _SPECIAL_DECODERS.get(name)
    slots = _scan(data, start, end, name, messages, depth + 1)
    if special is not None:
        return special(slots, end - start)
    return _shape(data, slots, name, messages, depth + 1)


def _shape(
    buf: bytes, slots: dict[int, _Slot], name: str, messages: Mapping[str, Mapping[int, Field]], depth: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, field in messages[name].items():
        slot = slots.get(number)
        if slot is None:
            continue
        typ = field.type
        if typ == "map":
            entries = {}
            for s, e in slot.chunks:
                k, v = _map_entry(buf, s, e, field, name, messages, depth)
                entries[k] = v
            if entries:
                out[field.json] = entries
        elif typ in _SCALARS:
            if field.repeated:
                if slot.values:
                    out[field.json] = [_scalar_json(typ, v) for v in slot.values]
            elif slot.values:
                v = slot.values[-1]
                if field.ptr or v != _zero(typ):
                    out[field.json] = _scalar_json(typ, v)
        elif field.repeated:
            items = [_decode_chunks(buf, [c], typ, messages, depth) for c in slot.chunks]
            items = [None if item is _OMIT else item for item in items]
            if items:
                out[field.json] = items
        elif slot.chunks:
            v = _decode_chunks(buf, slot.chunks, typ, messages, depth)
            if v is not _OMIT:
                out[field.json] = v
    return out


def _map_entry(
    buf: bytes, start: int, end: int, field: Field, owner: str,
    messages: Mapping[str, Mapping[int, Field]], depth: int,
) -> tuple[str, Any]:
    """One map entry: a message {1: key (string), 2: value}; missing parts are zero values."""
    value_type = field.value or "string"
    key: str = ""
    value: Any = None
    chunks: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        k, pos = _varint(buf, pos, end)
        number, wire_type = k >> 3, k & 7
        if number == 0:
            raise ProtobufError(f"invalid field number 0 in a {field.json} entry of {owner}")
        if number in (1, 2) and wire_type != 2:
            raise ProtobufError(
                f"{field.json} entry of {owner}: field {number} has wire type "
                f"{_WIRE_NAMES.get(wire_type, wire_type)}, expected length-delimited")
        if number == 1:
            s, pos = _length_delimited(buf, pos, end)
            key = _text(buf, s, pos)
        elif number == 2:
            s, pos = _length_delimited(buf, pos, end)
            if value_type == "string":
                value = _text(buf, s, pos)
            elif value_type == "bytes":
                value = bytes(buf[s:pos])
            else:
                chunks.append((s, pos))
        else:
            pos = _skip(buf, pos, end, wire_type, number, depth)
    if value_type in _SCALARS:
        return key, _scalar_json(value_type, _zero(value_type) if value is None else value)
    decoded = _decode_chunks(buf, chunks or [(end, end)], value_type, messages, depth)
    return key, (None if decoded is _OMIT else decoded)


# --- special JSON forms ---------------------------------------------------------------------------------


def _last(slots: dict[int, _Slot], number: int, default: Any = 0) -> Any:
    slot = slots.get(number)
    return slot.values[-1] if slot is not None and slot.values else default


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _utc(seconds: int, micros: int = 0) -> _dt.datetime:
    try:
        return _EPOCH + _dt.timedelta(seconds=seconds, microseconds=micros)
    except (OverflowError, ValueError):
        raise ProtobufError(f"timestamp {seconds}s is out of range") from None


def _rfc3339(t: _dt.datetime, fraction: bool) -> str:
    s = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return s + (f".{t.microsecond:06d}Z" if fraction else "Z")


def _time_json(slots: dict[int, _Slot], size: int) -> Any:
    # metav1.Time marshals the zero time as an empty message, and its JSON is null; the proto
    # unmarshaller keeps whole seconds only, and JSON is RFC 3339 in seconds.
    if size == 0:
        return _OMIT
    return _rfc3339(_utc(_last(slots, 1)), fraction=False)


def _micro_time_json(slots: dict[int, _Slot], size: int) -> Any:
    if size == 0:
        return _OMIT
    nanos = _last(slots, 2)
    if not 0 <= nanos <= 999_999_999:
        raise ProtobufError(f"MicroTime nanos {nanos} out of range")
    return _rfc3339(_utc(_last(slots, 1), nanos // 1000), fraction=True)


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)

    def frac(v: int, prec: int) -> tuple[str, int]:
        digits = f"{v % 10**prec:0{prec}d}".rstrip("0")
        return ("." + digits if digits else ""), v // 10**prec

    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            f, whole = frac(u, 3)
            return f"{sign}{whole}{f}\u00b5s"
        f, whole = frac(u, 6)
        return f"{sign}{whole}{f}ms"
    f, secs = frac(u, 9)
    out = f"{secs % 60}{f}s"
    mins = secs // 60
    if mins:
        out = f"{mins % 60}m" + out
        hours = mins // 60
        if hours:
            out = f"{hours}h" + out
    return sign + out


def _duration_json(slots: dict[int, _Slot], size: int) -> Any:
    return _go_duration(_last(slots, 1))


def _quantity_json(slots: dict[int, _Slot], size: int) -> Any:
    return _last(slots, 1, "")


def _int_or_string_json(slots: dict[int, _Slot], size: int) -> Any:
    return _last(slots, 3, "") if _last(slots, 1) == 1 else _last(slots, 2)


def _fields_v1_json(slots: dict[int, _Slot], size: int) -> Any:
    raw = _last(slots, 1, b"")
    if not raw:
        return _OMIT
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ProtobufError(f"FieldsV1 does not hold valid JSON: {e}") from None


def _extra_value_json(slots: dict[int, _Slot], size: int) -> Any:
    slot = slots.get(1)
    return list(slot.values) if slot is not None else []


_SPECIAL_DECODERS: dict[str, Callable[[dict[int, _Slot], int], Any]] = {
    TIME: _time_json,
    MICRO_TIME: _micro_time_json,
    "meta.v1.Duration": _duration_json,
    "resource.Quantity": _quantity_json,
    "intstr.IntOrString": _int_or_string_json,
    "meta.v1.FieldsV1": _fields_v1_json,
    "authentication.v1.ExtraValue": _extra_value_json,
}


# --- public decoding ------------------------------------------------------------------------------------


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ProtobufError(f"protobuf body must be bytes, not {type(data).__name__}")


def decode_message(
    data: bytes, message: str, messages: Mapping[str, Mapping[int, Field]] | None = None,
) -> Any:
    """Decode one message (no magic, no envelope) to its JSON value (a dict, or a string for Time & co.).

    A zero Time/MicroTime/FieldsV1 decodes to None (Go's JSON null).
    """
    buf = _as_bytes(data)
    table = MESSAGES if messages is None else messages
    if message not in table:
        raise ProtobufError(f"no message table for {message!r}")
    v = _decode_chunks(buf, [(0, len(buf))], message, table, 0)
    return None if v is _OMIT else v


def decode_k8s_protobuf(
    data: bytes,
    *,
    messages: Mapping[str, Mapping[int, Field]] | None = None,
    kinds: Mapping[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    """Decode a ``application/vnd.kubernetes.protobuf`` body to the object's JSON dict.

    Raises UnknownKindError (a ProtobufError) for a kind without a table, ProtobufError for anything
    malformed.
    """
    buf = _as_bytes(data)
    if len(buf) < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
        raise ProtobufError(
            "the body is not a Kubernetes protobuf message: "
            "it does not start with the 4-byte prefix k8s\\x00")
    table = MESSAGES if messages is None else messages
    envelope = _scan(buf, len(MAGIC), len(buf), "runtime.Unknown", MESSAGES, 0)
    type_meta: dict[str, Any] = {}
    if 1 in envelope and envelope[1].chunks:
        type_meta = _decode_chunks(buf, envelope[1].chunks, "runtime.TypeMeta", MESSAGES, 0)
    api_version = type_meta.get("apiVersion", "")
    kind = type_meta.get("kind", "")
    if not kind or not api_version:
        raise ProtobufError("the protobuf envelope (runtime.Unknown) has no typeMeta apiVersion/kind")
    encoding = _last(envelope, 3, "")
    if encoding:
        raise ProtobufError(f"protobuf contentEncoding {encoding!r} is not supported")
    content_type = _last(envelope, 4, "")
    if content_type and content_type.split(";", 1)[0].strip().lower() != CONTENT_TYPE:
        raise ProtobufError(f"protobuf envelope contentType {content_type!r} is not supported")
    name = message_for(api_version, kind, kinds)
    obj = decode_message(_last(envelope, 2, b""), name, table)
    return {"kind": kind, "apiVersion": api_version, **obj}


# --- writer (builds test inputs, and gogo-style bodies) -------------------------------------------------


def _enc_varint(v: int) -> bytes:
    v &= _MASK64
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _enc_key(number: int, wire_type: int) -> bytes:
    return _enc_varint(number << 3 | wire_type)


def _enc_ld(number: int, payload: bytes) -> bytes:
    return _enc_key(number, 2) + _enc_varint(len(payload)) + payload


def _enc_scalar(number: int, typ: str, v: Any) -> bytes:
    if typ == "string":
        return _enc_ld(number, str(v).encode("utf-8"))
    if typ == "bytes":
        return _enc_ld(number, v if isinstance(v, bytes) else base64.b64decode(v))
    if typ == "bool":
        return _enc_key(number, 0) + _enc_varint(1 if v else 0)
    return _enc_key(number, 0) + _enc_varint(int(v))


def _parse_rfc3339(s: str) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(s)
    except ValueError:
        raise ProtobufError(f"not an RFC 3339 time: {s!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return t


def _seconds_nanos(t: _dt.datetime) -> tuple[int, int]:
    delta = t - _EPOCH
    total_us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return total_us // 1_000_000, (total_us % 1_000_000) * 1000


_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _parse_go_duration(s: str) -> int:
    if isinstance(s, int):
        return s
    body, sign = (s[1:], -1) if s[:1] == "-" else (s.lstrip("+"), 1)
    if body == "0":
        return 0
    pos, total = 0, 0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        num, unit = m.groups()
        whole, _, frac = num.partition(".")
        scale = _DURATION_UNITS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = m.end()
    if pos != len(body) or not body:
        raise ProtobufError(f"not a Go duration: {s!r}")
    return sign * total


def _enc_special(name: str, v: Any) -> bytes | None:
    """The payload of a special message from its JSON value; None if `name` is not special."""
    if name in (TIME, MICRO_TIME):
        if v is None:
            return b""
        seconds, nanos = _seconds_nanos(_parse_rfc3339(v))
        if name == TIME:
            nanos = 0
        return _enc_scalar(1, "int64", seconds) + _enc_scalar(2, "int32", nanos)
    if name == "meta.v1.Duration":
        return _enc_scalar(1, "int64", _parse_go_duration(v))
    if name == "resource.Quantity":
        return _enc_scalar(1, "string", str(v))
    if name == "intstr.IntOrString":
        if isinstance(v, str):
            return _enc_scalar(1, "int64", 1) + _enc_scalar(2, "int32", 0) + _enc_scalar(3, "string", v)
        return _enc_scalar(1, "int64", 0) + _enc_scalar(2, "int32", int(v)) + _enc_scalar(3, "string", "")
    if name == "meta.v1.FieldsV1":
        return b"" if v is None else _enc_ld(1, json.dumps(v, separators=(",", ":")).encode("utf-8"))
    if name == "authentication.v1.ExtraValue":
        return b"".join(_enc_scalar(1, "string", s) for s in (v or []))
    return None


def encode_message(
    obj: Any,
    message: str,
    messages: Mapping[str, Mapping[int, Field]] | None = None,
    *,
    emit_defaults: bool = False,
) -> bytes:
    """Encode a JSON-shaped value as `message` (field-number order).

    ``emit_defaults=True`` writes what Go's generated marshallers write for absent value fields:
    zero scalars, empty value-type messages, an empty Time. Keys without a table entry are ignored.
    """
    table = MESSAGES if messages is None else messages
    special = _enc_special(message, obj)
    if special is not None:
        return special
    fields = table.get(message)
    if fields is None:
        raise ProtobufError(f"no message table for {message!r}")
    if not isinstance(obj, Mapping):
        raise ProtobufError(f"{message} must be encoded from a mapping, not {type(obj).__name__}")
    out = bytearray()
    for number in sorted(fields):
        field = fields[number]
        typ = field.type
        present = field.json in obj and obj[field.json] is not None
        v = obj.get(field.json)
        if typ == "map":
            for k, item in (v or {}).items():
                value_type = field.value or "string"
                if value_type in _SCALARS:
                    entry_value = _enc_scalar(2, value_type, item)
                else:
                    entry_value = _enc_ld(
                        2, encode_message(item, value_type, table, emit_defaults=emit_defaults))
                out += _enc_ld(number, _enc_scalar(1, "string", k) + entry_value)
        elif field.repeated:
            for item in v or []:
                if typ in _SCALARS:
                    out += _enc_scalar(number, typ, item)
                else:
                    out += _enc_ld(number, encode_message(item, typ, table, emit_defaults=emit_defaults))
        elif typ in _SCALARS:
            if present:
                out += _enc_scalar(number, typ, v)
            elif emit_defaults and not field.ptr:
                out += _enc_scalar(number, typ, _zero(typ))
        elif present:
            out += _enc_ld(number, encode_message(v, typ, table, emit_defaults=emit_defaults))
        elif emit_defaults and not field.ptr:
            default = None if typ in (TIME, MICRO_TIME, "meta.v1.FieldsV1") else {}
            if typ in ("meta.v1.Duration", "intstr.IntOrString"):
                default = 0
            elif typ == "resource.Quantity":
                default = "0"
            out += _enc_ld(number, encode_message(default, typ, table, emit_defaults=emit_defaults))
    return bytes(out)


def encode_k8s_protobuf(
    obj: Mapping[str, Any],
    messages: Mapping[str, Mapping[int, Field]] | None = None,
    *,
    kinds: Mapping[tuple[str, str], str] | None = None,
    emit_defaults: bool = False,
) -> bytes:
    """Encode a JSON-shaped object (with apiVersion and kind) as a ``k8s\\x00`` + runtime.Unknown body."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = message_for(api_version, kind, kinds)
    raw = encode_message(obj, name, messages, emit_defaults=emit_defaults)
    type_meta = _enc_scalar(1, "string", api_version) + _enc_scalar(2, "string", kind)
    envelope = _enc_ld(1, type_meta) + _enc_ld(2, raw)
    if emit_defaults:
        envelope += _enc_scalar(3, "string", "") + _enc_scalar(4, "string", "")
    return MAGIC + envelope
