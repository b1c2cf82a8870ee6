"""OpenAPI v3 and v2 (gnostic protobuf) documents of the served resources (gateway._openapi)."""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import pytest
import yaml

from gateway._openapi import (
    V2_PROTOBUF_CONTENT_TYPE,
    document_etag,
    encode_v2_document,
    gv_path,
    v2_document,
    v2_protobuf,
    v3_document,
    v3_documents,
    v3_index,
    v3_index_for,
)
from kinds import BUILTIN, ResourceDef
from kinds._schemas import definitions, schema_for

RBAC = "rbac.authorization.k8s.io"
EXTRA = (
    ResourceDef(RBAC, "v1", "Role", "roles", "role", True),
    ResourceDef(RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    ResourceDef(RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    ResourceDef(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", False),
    ResourceDef("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                False, verbs=("create",)),
    ResourceDef("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                "selfsubjectaccessreview", False, verbs=("create",)),
    ResourceDef("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                "selfsubjectrulesreview", False, verbs=("create",)),
)
CRD_DEF = ResourceDef("stable.example.com", "v1", "CronTab", "crontabs", "crontab", True, ("ct",))
CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A CronTab runs a command on a schedule.",
    "properties": {
        "spec": {"type": "object", "description": "What to run.",
                 "properties": {"cronSpec": {"type": "string", "description": "The schedule."},
                                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                                "port": {"x-kubernetes-int-or-string": True,
                                         "anyOf": [{"type": "integer"}, {"type": "string"}]},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        "status": {"type": "object", "nullable": True},
    },
}


def served(*extra: tuple[ResourceDef, Any]) -> list[tuple[ResourceDef, Any]]:
    """BUILTIN plus the kinds this module needs (skipping those BUILTIN already has)."""
    have = {(d.group, d.version, d.kind) for d in BUILTIN}
    defs = BUILTIN + tuple(d for d in EXTRA if (d.group, d.version, d.kind) not in have)
    out: list[tuple[ResourceDef, Any]] = [(d, schema_for(d.group, d.version, d.kind)) for d in defs]
    return out + list(extra)


# --- /openapi/v3 ---------------------------------------------------------------------------


def test_index_lists_every_group_version_with_its_hash() -> None:
    docs = v3_documents(served())
    index = v3_index(served())
    assert index == v3_index_for(docs)
    assert set(index["paths"]) >= {"api/v1", "apis/coordination.k8s.io/v1", f"apis/{RBAC}/v1",
                                   "apis/authentication.k8s.io/v1", "apis/authorization.k8s.io/v1"}
    assert set(index["paths"]) == {gv_path(d.group, d.version) for d, _ in served()}
    for gv, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        assert url == f"/openapi/v3/{gv}?hash={document_etag(docs[gv])}"
        assert re.fullmatch(r"/openapi/v3/[a-z0-9./]+\?hash=[0-9A-F]{128}", url)


def test_documents_are_deterministic_and_hashes_follow_changes() -> None:
    first, again = v3_documents(served()), v3_documents(served())
    assert first == again
    with_crd = v3_documents(served((CRD_DEF, CRD_SCHEMA)))
    assert "apis/stable.example.com/v1" in with_crd
    assert with_crd["api/v1"] == first["api/v1"]
    changed = dict(CRD_SCHEMA, description="changed")
    assert (document_etag(v3_documents(served((CRD_DEF, changed)))["apis/stable.example.com/v1"])
            != document_etag(with_crd["apis/stable.example.com/v1"]))
    fewer = [(d, s) for d, s in served() if d.kind != "Secret"]
    assert document_etag(v3_documents(fewer)["api/v1"]) != document_etag(first["api/v1"])


def test_etag() -> None:
    assert document_etag(b"") == (
        "CF83E1357EEFB8BDF1542850D66D8007D620E4050B5715DC83F4A921D36CE9CE"
        "47D0D13C5D85F2B0FF8318D2877EEC2F63B931BD47417A81A538327AF927DA3E")
    assert gv_path("", "v1") == "api/v1" and gv_path(RBAC, "v1") == f"apis/{RBAC}/v1"


def _v3(group: str, version: str, *extra: tuple[ResourceDef, Any]) -> dict[str, Any]:
    raw = v3_document(group, version, served(*extra))
    assert raw is not None
    return json.loads(raw)


def _schema_by_gvk(doc: dict[str, Any], group: str, version: str, kind: str) -> tuple[str, dict[str, Any]]:
    """How kubectl explain finds a kind: by the x-kubernetes-group-version-kind list."""
    for name, schema in doc["components"]["schemas"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            if gvk == {"group": group, "version": version, "kind": kind}:
                return name, schema
    raise AssertionError(f"no schema for {group}/{version} {kind}")


def _deref(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
        elif len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _supports_field_validation(doc: dict[str, Any], group: str, version: str, kind: str) -> bool:
    """cli-runtime query_param_verifier_v3: a PATCH with the kind's GVK and the fieldValidation param."""
    for item in doc["paths"].values():
        op = item.get("patch")
        if op is None or op.get("x-kubernetes-group-version-kind") != {"group": group, "version": version,
                                                                         "kind": kind}:
            continue
        return any(p.get("name") == "fieldValidation" and p.get("in") == "query" for p in op.get("parameters", ()))
    return False


@pytest.mark.parametrize(("group", "kind"), [
    ("", "Namespace"), ("", "ConfigMap"), ("", "Secret"), ("", "ServiceAccount"), ("", "Event"),
    ("coordination.k8s.io", "Lease"), (RBAC, "Role"), (RBAC, "ClusterRole"), (RBAC, "RoleBinding"),
    (RBAC, "ClusterRoleBinding"),
])
def test_kubectl_sees_server_side_field_validation(group: str, kind: str) -> None:
    doc = _v3(group, "v1")
    assert _supports_field_validation(doc, group, "v1", kind)
    name, schema = _schema_by_gvk(doc, group, "v1", kind)
    assert name == next(n for n in definitions() if n.endswith(f".v1.{kind}") and "api." in n)
    assert schema["x-kubernetes-group-version-kind"] == [{"group": group, "kind": kind, "version": "v1"}]
    assert _deref(doc, schema["properties"]["metadata"])["properties"]["name"]["type"] == "string"


def test_explain_configmap_data() -> None:
    doc = _v3("", "v1")
    _, cm = _schema_by_gvk(doc, "", "v1", "ConfigMap")
    assert cm["description"].startswith("ConfigMap holds configuration data")
    data = cm["properties"]["data"]
    assert data["type"] == "object" and data["additionalProperties"] == {"type": "string"}
    assert data["description"].startswith("Data contains the configuration data")
    meta = cm["properties"]["metadata"]
    assert meta["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert meta["description"]
    finalizers = _deref(doc, meta)["properties"]["finalizers"]
    assert finalizers["x-kubernetes-patch-strategy"] == "merge"


def test_every_v3_reference_resolves() -> None:
    for raw in v3_documents(served((CRD_DEF, CRD_SCHEMA))).values():
        doc = json.loads(raw)
        schemas = doc["components"]["schemas"]
        refs = re.findall(r'"\$ref":\s*"([^"]+)"', raw.decode())
        assert refs
        for ref in refs:
            assert ref.startswith("#/components/schemas/")
            assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_v3_special_types() -> None:
    pod = ResourceDef("", "v1", "Pod", "pods", "pod", True)
    doc = _v3("", "v1", (pod, schema_for("", "v1", "Pod")))
    ios = doc["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert ios["format"] == "int-or-string" and ios["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    qty = doc["components"]["schemas"]["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert qty["oneOf"] == [{"type": "string"}, {"type": "number"}] and "type" not in qty


def test_paths_and_operations_of_a_namespaced_kind() -> None:
    doc = _v3("", "v1")
    paths = doc["paths"]
    coll = paths["/api/v1/namespaces/{namespace}/configmaps"]
    item = paths["/api/v1/namespaces/{namespace}/configmaps/{name}"]
    every = paths["/api/v1/configmaps"]
    assert set(coll) == {"parameters", "get", "post", "delete"}
    assert set(item) == {"parameters", "get", "put", "patch", "delete"}
    assert set(every) == {"parameters", "get"}
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    assert all(p["required"] for p in item["parameters"] if p["in"] == "path")
    assert item["patch"]["operationId"] == "patchCoreV1NamespacedConfigMap"
    assert every["get"]["operationId"] == "listCoreV1ConfigMapForAllNamespaces"
    assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
    patch_params = [p["name"] for p in item["patch"]["parameters"]]
    assert patch_params == ["dryRun", "fieldManager", "fieldValidation", "force"]
    assert [p["name"] for p in coll["post"]["parameters"]] == ["dryRun", "fieldManager", "fieldValidation"]
    assert set(item["patch"]["requestBody"]["content"]) == {
        "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json"}
    ok = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/io.k8s.api.core.v1.ConfigMap"}
    listed = coll["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed == {"$ref": "#/components/schemas/io.k8s.api.core.v1.ConfigMapList"}


def test_cluster_scoped_and_create_only_kinds() -> None:
    core = _v3("", "v1")
    assert "/api/v1/namespaces/{name}" in core["paths"]
    assert [p["name"] for p in core["paths"]["/api/v1/namespaces/{name}"]["parameters"]] == ["name", "pretty"]
    authz = _v3("authorization.k8s.io", "v1")
    assert set(authz["paths"]) == {"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                   "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                                   "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                   "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews"}
    op = authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]
    assert set(op) == {"parameters", "post"}
    assert op["post"]["operationId"] == "createAuthorizationV1SelfSubjectAccessReview"
    _schema_by_gvk(authz, "authorization.k8s.io", "v1", "SelfSubjectRulesReview")
    rbac = _v3(RBAC, "v1")
    assert rbac["paths"][f"/apis/{RBAC}/v1/clusterroles/{{name}}"]["patch"]["operationId"] == (
        "patchRbacAuthorizationV1ClusterRole")
    assert rbac["paths"][f"/apis/{RBAC}/v1/clusterroles"]["get"]["tags"] == ["rbacAuthorization_v1"]


def test_unserved_group_version() -> None:
    assert v3_document("apps", "v2", served()) is None


def test_crd_document() -> None:
    doc = _v3("stable.example.com", "v1", (CRD_DEF, CRD_SCHEMA))
    name, schema = _schema_by_gvk(doc, "stable.example.com", "v1", "CronTab")
    assert name == "com.example.stable.v1.CronTab"
    assert schema["description"] == "A CronTab runs a command on a schedule."
    assert schema["properties"]["spec"]["properties"]["cronSpec"]["description"] == "The schedule."
    assert schema["properties"]["metadata"]["allOf"][0]["$ref"].endswith("meta.v1.ObjectMeta")
    assert schema["properties"]["apiVersion"]["type"] == "string"
    _schema_by_gvk(doc, "stable.example.com", "v1", "CronTabList")
    assert _supports_field_validation(doc, "stable.example.com", "v1", "CronTab")
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    assert CRD_SCHEMA["properties"].keys() == {"spec", "status"}  # the input is not modified


def test_unknown_kind_without_schema_is_published_as_open_object() -> None:
    widget = ResourceDef("example.com", "v1", "Widget", "widgets", "widget", False)
    doc = _v3("example.com", "v1", (widget, None))
    _, schema = _schema_by_gvk(doc, "example.com", "v1", "Widget")
    assert schema["x-kubernetes-preserve-unknown-fields"] is True


# --- protobuf: a tiny decoder for gnostic's openapi.v2 messages ---------------------------
# Field numbers transcribed from google/gnostic openapiv2/OpenAPIv2.proto, independently of the
# writer: (name, type, repeated). Types: str, bool, int, double, or a message name.

PROTO: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Document": {1: ("swagger", "str", False), 2: ("info", "Info", False), 3: ("host", "str", False),
                 4: ("base_path", "str", False), 5: ("schemes", "str", True), 6: ("consumes", "str", True),
                 7: ("produces", "str", True), 8: ("paths", "Paths", False),
                 9: ("definitions", "Definitions", False), 12: ("security", "SecurityRequirement", True),
                 13: ("security_definitions", "SecurityDefinitions", False),
                 16: ("vendor_extension", "NamedAny", True)},
    "Info": {1: ("title", "str", False), 2: ("version", "str", False), 3: ("description", "str", False)},
    "Paths": {1: ("vendor_extension", "NamedAny", True), 2: ("path", "NamedPathItem", True)},
    "NamedPathItem": {1: ("name", "str", False), 2: ("value", "PathItem", False)},
    "PathItem": {1: ("_ref", "str", False), 2: ("get", "Operation", False), 3: ("put", "Operation", False),
                 4: ("post", "Operation", False), 5: ("delete", "Operation", False),
                 6: ("options", "Operation", False), 7: ("head", "Operation", False),
                 8: ("patch", "Operation", False), 9: ("parameters", "ParametersItem", True),
                 10: ("vendor_extension", "NamedAny", True)},
    "Operation": {1: ("tags", "str", True), 2: ("summary", "str", False), 3: ("description", "str", False),
                  5: ("operation_id", "str", False), 6: ("produces", "str", True), 7: ("consumes", "str", True),
                  8: ("parameters", "ParametersItem", True), 9: ("responses", "Responses", False),
                  10: ("schemes", "str", True), 11: ("deprecated", "bool", False),
                  13: ("vendor_extension", "NamedAny", True)},
    "ParametersItem": {1: ("parameter", "Parameter", False), 2: ("json_reference", "JsonReference", False)},
    "JsonReference": {1: ("_ref", "str", False), 2: ("description", "str", False)},
    "Parameter": {1: ("body_parameter", "BodyParameter", False),
                  2: ("non_body_parameter", "NonBodyParameter", False)},
    "BodyParameter": {1: ("description", "str", False), 2: ("name", "str", False), 3: ("in", "str", False),
                      4: ("required", "bool", False), 5: ("schema", "Schema", False),
                      6: ("vendor_extension", "NamedAny", True)},
    "NonBodyParameter": {1: ("header_parameter_sub_schema", "Unused", False),
                         2: ("form_data_parameter_sub_schema", "Unused", False),
                         3: ("query_parameter_sub_schema", "QueryParameterSubSchema", False),
                         4: ("path_parameter_sub_schema", "PathParameterSubSchema", False)},
    "QueryParameterSubSchema": {1: ("required", "bool", False), 2: ("in", "str", False),
                                3: ("description", "str", False), 4: ("name", "str", False),
                                5: ("allow_empty_value", "bool", False), 6: ("type", "str", False),
                                7: ("format", "str", False), 20: ("unique_items", "bool", False),
                                23: ("vendor_extension", "NamedAny", True)},
    "PathParameterSubSchema": {1: ("required", "bool", False), 2: ("in", "str", False),
                               3: ("description", "str", False), 4: ("name", "str", False),
                               5: ("type", "str", False), 6: ("format", "str", False),
                               19: ("unique_items", "bool", False), 22: ("vendor_extension", "NamedAny", True)},
    "Responses": {1: ("response_code", "NamedResponseValue", True), 2: ("vendor_extension", "NamedAny", True)},
    "NamedResponseValue": {1: ("name", "str", False), 2: ("value", "ResponseValue", False)},
    "ResponseValue": {1: ("response", "Response", False), 2: ("json_reference", "JsonReference", False)},
    "Response": {1: ("description", "str", False), 2: ("schema", "SchemaItem", False),
                 5: ("vendor_extension", "NamedAny", True)},
    "SchemaItem": {1: ("schema", "Schema", False), 2: ("file_schema", "Unused", False)},
    "Definitions": {1: ("additional_properties", "NamedSchema", True)},
    "NamedSchema": {1: ("name", "str", False), 2: ("value", "Schema", False)},
    "Properties": {1: ("additional_properties", "NamedSchema", True)},
    "Schema": {1: ("_ref", "str", False), 2: ("format", "str", False), 3: ("title", "str", False),
               4: ("description", "str", False), 5: ("default", "Any", False), 6: ("multiple_of", "double", False),
               7: ("maximum", "double", False), 8: ("exclusive_maximum", "bool", False),
               9: ("minimum", "double", False), 10: ("exclusive_minimum", "bool", False),
               11: ("max_length", "int", False), 12: ("min_length", "int", False), 13: ("pattern", "str", False),
               14: ("max_items", "int", False), 15: ("min_items", "int", False), 16: ("unique_items", "bool", False),
               17: ("max_properties", "int", False), 18: ("min_properties", "int", False),
               19: ("required", "str", True), 20: ("enum", "Any", True),
               21: ("additional_properties", "AdditionalPropertiesItem", False), 22: ("type", "TypeItem", False),
               23: ("items", "ItemsItem", False), 24: ("all_of", "Schema", True),
               25: ("properties", "Properties", False), 26: ("discriminator", "str", False),
               27: ("read_only", "bool", False), 30: ("example", "Any", False),
               31: ("vendor_extension", "NamedAny", True)},
    "AdditionalPropertiesItem": {1: ("schema", "Schema", False), 2: ("boolean", "bool", False)},
    "TypeItem": {1: ("value", "str", True)},
    "ItemsItem": {1: ("schema", "Schema", True)},
    "NamedAny": {1: ("name", "str", False), 2: ("value", "Any", False)},
    "Any": {1: ("value", "Unused", False), 2: ("yaml", "str", False)},
    "SecurityRequirement": {1: ("additional_properties", "NamedStringArray", True)},
    "NamedStringArray": {1: ("name", "str", False), 2: ("value", "StringArray", False)},
    "StringArray": {1: ("value", "str", True)},
    "SecurityDefinitions": {1: ("additional_properties", "NamedSecurityDefinitionsItem", True)},
    "NamedSecurityDefinitionsItem": {1: ("name", "str", False), 2: ("value", "SecurityDefinitionsItem", False)},
    "SecurityDefinitionsItem": {2: ("api_key_security", "ApiKeySecurity", False)},
    "ApiKeySecurity": {1: ("type", "str", False), 2: ("name", "str", False), 3: ("in", "str", False),
                       4: ("description", "str", False), 5: ("vendor_extension", "NamedAny", True)},
}
WIRE = {"str": 2, "bool": 0, "int": 0, "double": 1}


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        assert shift < 70, "varint too long"


def decode(buf: bytes, message: str) -> dict[str, Any]:
    fields = PROTO[message]
    out: dict[str, Any] = {}
    pos = 0
    last = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        assert num in fields, f"{message}: unexpected field {num}"
        assert num >= last, f"{message}: field {num} after {last} (not in field-number order)"
        last = num
        name, typ, repeated = fields[num]
        assert wire == WIRE.get(typ, 2), f"{message}.{name}: wire type {wire}"
        value: Any
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if typ == "bool":
                assert value in (0, 1)
                value = bool(value)
        elif wire == 1:
            (value,) = struct.unpack_from("<d", buf, pos)
            pos += 8
        else:
            size, pos = _read_varint(buf, pos)
            data = buf[pos:pos + size]
            assert len(data) == size, f"{message}.{name}: truncated"
            pos += size
            value = data.decode() if typ == "str" else decode(data, typ)
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            assert name not in out, f"{message}.{name} twice"
            out[name] = value
    assert pos == len(buf)
    return out


def _ext(named: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: yaml.safe_load(e["value"]["yaml"]) for e in named}


def to_schema(s: dict[str, Any]) -> dict[str, Any]:
    """A decoded Schema message back in swagger JSON form."""
    out: dict[str, Any] = {}
    simple = {"_ref": "$ref", "format": "format", "title": "title", "description": "description",
              "multiple_of": "multipleOf", "maximum": "maximum", "exclusive_maximum": "exclusiveMaximum",
              "minimum": "minimum", "exclusive_minimum": "exclusiveMinimum", "max_length": "maxLength",
              "min_length": "minLength", "pattern": "pattern", "max_items": "maxItems", "min_items": "minItems",
              "unique_items": "uniqueItems", "max_properties": "maxProperties",
              "min_properties": "minProperties", "required": "required", "discriminator": "discriminator",
              "read_only": "readOnly"}
    for k, v in s.items():
        if k in simple:
            out[simple[k]] = v
        elif k == "default":
            out["default"] = yaml.safe_load(v["yaml"])
        elif k == "enum":
            out["enum"] = [yaml.safe_load(e["yaml"]) for e in v]
        elif k == "type":
            assert len(v["value"]) == 1
            out["type"] = v["value"][0]
        elif k == "items":
            assert len(v["schema"]) == 1
            out["items"] = to_schema(v["schema"][0])
        elif k == "all_of":
            out["allOf"] = [to_schema(x) for x in v]
        elif k == "properties":
            out["properties"] = {p["name"]: to_schema(p.get("value", {})) for p in v.get("additional_properties", [])}
        elif k == "additional_properties":
            out["additionalProperties"] = to_schema(v["schema"]) if "schema" in v else v.get("boolean", False)
        elif k == "vendor_extension":
            out.update(_ext(v))
        else:
            raise AssertionError(k)
    return out


def to_param(p: dict[str, Any]) -> dict[str, Any]:
    if "json_reference" in p:
        return {"$ref": p["json_reference"]["_ref"]}
    param = p["parameter"]
    if "body_parameter" in param:
        b = dict(param["body_parameter"])
        b["schema"] = to_schema(b.get("schema", {}))
        return b
    nb = param["non_body_parameter"]
    sub = nb.get("query_parameter_sub_schema") or nb["path_parameter_sub_schema"]
    out = {("uniqueItems" if k == "unique_items" else k): v for k, v in sub.items() if k != "vendor_extension"}
    return out


def to_operation(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": op.get("tags"), "description": op.get("description"),
                           "operationId": op.get("operation_id"), "produces": op.get("produces"),
                           "consumes": op.get("consumes"), "schemes": op.get("schemes")}
    if "parameters" in op:
        out["parameters"] = [to_param(p) for p in op["parameters"]]
    responses = {}
    for rc in op["responses"]["response_code"]:
        r = rc["value"]["response"]
        entry = {"description": r["description"]}
        if "schema" in r:
            entry["schema"] = to_schema(r["schema"]["schema"])
        responses[rc["name"]] = entry
    out["responses"] = responses
    out.update(_ext(op.get("vendor_extension", [])))
    return {k: v for k, v in out.items() if v is not None}


def _normalize_param(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if v not in (False, None, "")}


@pytest.fixture(scope="module")
def v2() -> tuple[dict[str, Any], dict[str, Any]]:
    res = served((CRD_DEF, CRD_SCHEMA))
    return v2_document(res), decode(v2_protobuf(res), "Document")


def test_v2_protobuf_round_trips(v2: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, pb = v2
    assert pb["swagger"] == "2.0"
    assert pb["info"] == {"title": "Kubernetes", "version": doc["info"]["version"]}
    defs = {d["name"]: to_schema(d["value"]) for d in pb["definitions"]["additional_properties"]}
    assert defs == doc["definitions"]
    paths = {p["name"]: p["value"] for p in pb["paths"]["path"]}
    assert list(paths) == sorted(doc["paths"])
    for path, item in doc["paths"].items():
        got = paths[path]
        assert [to_param(p) for p in got["parameters"]] == [_normalize_param(p) for p in item["parameters"]]
        for method in ("get", "put", "post", "delete", "patch"):
            assert (method in got) == (method in item), (path, method)
            if method in item:
                want = dict(item[method])
                want["parameters"] = [_normalize_param(p) for p in want.get("parameters", [])]
                if not want["parameters"]:
                    del want["parameters"]
                assert to_operation(got[method]) == want, (path, method)
    assert pb["security"] == [{"additional_properties": [{"name": "BearerToken", "value": {}}]}]
    api_key = pb["security_definitions"]["additional_properties"][0]
    assert api_key["name"] == "BearerToken"
    assert api_key["value"]["api_key_security"]["in"] == "header"


def _all_definitions_pb() -> dict[str, Any]:
    from gateway._openapi import _to_v2

    doc = {"definitions": {n: _to_v2(s) for n, s in definitions().items()}}
    return decode(encode_v2_document(doc), "Document")


@pytest.mark.parametrize("which", ["served", "every-definition"])
def test_v2_models_parse_like_kube_openapi(v2: tuple[dict[str, Any], dict[str, Any]], which: str) -> None:
    """kube-openapi pkg/util/proto NewOpenAPIData: every definition must parse or kubectl fails."""
    pb = v2[1] if which == "served" else _all_definitions_pb()
    names = {d["name"] for d in pb["definitions"]["additional_properties"]}
    assert len(names) > (30 if which == "served" else 800)

    def parse(s: dict[str, Any], path: str) -> None:
        if "_ref" in s:
            assert not s.get("properties"), f"{path}: unallowed embedded type definition"
            assert not s.get("type"), f"{path}: definition reference can't have a type"
            assert s["_ref"].startswith("#/definitions/"), path
            assert s["_ref"].removeprefix("#/definitions/") in names, f"{path}: unknown model {s['_ref']}"
            return
        types = s.get("type", {}).get("value", [])
        assert len(types) <= 1, f"{path}: definitions with multiple types aren't supported"
        t = types[0] if types else ""
        if t == "array":
            assert len(s.get("items", {}).get("schema", [])) == 1, f"{path}: array should have exactly one sub-item"
            parse(s["items"]["schema"][0], path + "[]")
        elif t == "object" or (not t and "properties" in s):
            for p in s.get("properties", {}).get("additional_properties", []):
                parse(p.get("value", {}), f"{path}.{p['name']}")
            extra = s.get("additional_properties", {})
            if "schema" in extra:
                parse(extra["schema"], path + "{}")
        else:
            assert t in ("", "string", "number", "integer", "boolean"), f"{path}: Unknown primitive type {t!r}"

    for d in pb["definitions"]["additional_properties"]:
        parse(d["value"], d["name"])


def _kinds_of(pb: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """kubectl pkg/util/openapi: GVK -> model name from x-kubernetes-group-version-kind."""
    out = {}
    for d in pb["definitions"]["additional_properties"]:
        for gvk in _ext(d["value"].get("vendor_extension", [])).get("x-kubernetes-group-version-kind", []):
            out[(gvk["group"], gvk["version"], gvk["kind"])] = d["name"]
    return out


def test_v2_kinds_and_query_param_verifier(v2: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, pb = v2
    kinds = _kinds_of(pb)
    assert kinds[("", "v1", "ConfigMap")] == "io.k8s.api.core.v1.ConfigMap"
    assert kinds[("stable.example.com", "v1", "CronTab")] == "com.example.stable.v1.CronTab"
    assert kinds[(RBAC, "v1", "ClusterRoleBinding")] == "io.k8s.api.rbac.v1.ClusterRoleBinding"

    def supports(group: str, version: str, kind: str) -> bool:
        # cli-runtime query_param_verifier.go supportsQueryParam (v2).
        for p in pb["paths"]["path"]:
            op = p["value"].get("patch")
            if op is None:
                continue
            for e in op.get("vendor_extension", []):
                if e["name"] != "x-kubernetes-group-version-kind":
                    continue
                value = yaml.safe_load(e["value"]["yaml"])
                if value != {"group": group, "version": version, "kind": kind}:
                    continue
                return any(pi.get("parameter", {}).get("non_body_parameter", {})
                           .get("query_parameter_sub_schema", {}).get("name") == "fieldValidation"
                           for pi in op.get("parameters", []))
        return False

    for group, kind in (("", "ConfigMap"), ("", "Namespace"), ("coordination.k8s.io", "Lease"), (RBAC, "Role"),
                        ("stable.example.com", "CronTab")):
        assert supports(group, "v1", kind), kind
    assert not supports("authorization.k8s.io", "v1", "SelfSubjectAccessReview")  # create only


def test_v2_patch_extensions_survive(v2: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, pb = v2
    meta = next(d for d in pb["definitions"]["additional_properties"]
                if d["name"] == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    props = {p["name"]: p["value"] for p in meta["value"]["properties"]["additional_properties"]}
    ext = _ext(props["ownerReferences"]["vendor_extension"])
    assert ext["x-kubernetes-patch-strategy"] == "merge" and ext["x-kubernetes-patch-merge-key"] == "uid"
    assert props["ownerReferences"]["items"]["schema"][0]["_ref"].endswith("meta.v1.OwnerReference")
    # gnostic writes each vendor extension as YAML text: a plain scalar is just the value.
    assert props["finalizers"]["vendor_extension"][1]["value"]["yaml"] == "merge\n"


def test_v2_crd_schema_is_converted(v2: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, _ = v2
    crd = doc["definitions"]["com.example.stable.v1.CronTab"]
    spec = crd["properties"]["spec"]["properties"]
    assert "anyOf" not in spec["port"] and spec["port"]["x-kubernetes-int-or-string"] is True
    assert "nullable" not in crd["properties"]["status"]
    assert crd["properties"]["metadata"] == {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                                             "description": "Standard object's metadata."}
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["consumes"]
    assert patch["parameters"][0] == {"in": "body", "name": "body", "required": True,
                                      "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}


def test_v2_content_type() -> None:
    assert V2_PROTOBUF_CONTENT_TYPE == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


# --- protobuf wire format ------------------------------------------------------------------


def test_wire_format_basics() -> None:
    # Document.swagger (1, string) and Document.info (2, message) with Info.title (1).
    assert encode_v2_document({"swagger": "2.0"}) == b"\x0a\x032.0" + b"\x12\x00" + b"\x42\x00" + b"\x4a\x00"
    info = encode_v2_document({"info": {"title": "K", "version": "v"}})
    assert info.startswith(b"\x12\x06\x0a\x01K\x12\x01v")
    # A schema with a double (7: maximum), a varint (11: max_length), a bool (16) and a type (22).
    body = encode_v2_document({"definitions": {"x": {"maximum": 1.5, "maxLength": 300, "uniqueItems": True,
                                                      "type": "string"}}})
    schema = decode(body, "Document")["definitions"]["additional_properties"][0]["value"]
    assert schema == {"maximum": 1.5, "max_length": 300, "unique_items": True, "type": {"value": ["string"]}}
    assert b"\x58\xac\x02" in body  # field 11, varint 300
    assert b"\x39" + struct.pack("<d", 1.5) in body  # field 7, 64-bit
    # additionalProperties: false is a present oneof boolean.
    body = encode_v2_document({"definitions": {"x": {"type": "object", "additionalProperties": False}}})
    schema = decode(body, "Document")["definitions"]["additional_properties"][0]["value"]
    assert schema["additional_properties"] == {"boolean": False}


def test_subresource_paths() -> None:
    """Subresources are paths of their own with kube's operation IDs; scale, binding and eviction
    take and answer their own kinds (Scale, Binding, Eviction)."""
    apps = _v3("apps", "v1")
    scale = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert {m: scale[m]["operationId"] for m in ("get", "put", "patch")} == {
        "get": "readAppsV1NamespacedDeploymentScale", "put": "replaceAppsV1NamespacedDeploymentScale",
        "patch": "patchAppsV1NamespacedDeploymentScale"}
    assert scale["put"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                               "version": "v1"}
    ref = scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("io.k8s.api.autoscaling.v1.Scale") and "io.k8s.api.autoscaling.v1.Scale" in \
        apps["components"]["schemas"]
    status = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert status["patch"]["operationId"] == "patchAppsV1NamespacedDeploymentStatus"
    core = _v3("", "v1")
    assert core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]["operationId"] == (
        "createCoreV1NamespacedPodEviction")
    assert set(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]) == {"parameters", "post"}
    v2 = json.loads(json.dumps(v2_document(served())))
    assert "/api/v1/namespaces/{namespace}/replicationcontrollers/{name}/scale" in v2["paths"]
    assert "io.k8s.api.policy.v1.Eviction" in v2["definitions"]
