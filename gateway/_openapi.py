"""OpenAPI documents of the served resources: ``/openapi/v3``, ``/openapi/v3/<gv>``, ``/openapi/v2``.

Pure functions from ``(ResourceDef, schema)`` pairs to documents. A schema is the kind's
OpenAPI schema in swagger-2.0 form (``kinds._schemas.schema_for`` for built-in kinds, a CRD's
``openAPIV3Schema`` later); None means "look the kind up among the built-in definitions". The
``$ref`` s of a schema resolve in ``definitions`` (by default ``kinds._schemas.definitions()``), and
every document carries the closure of the definitions its kinds reference (ObjectMeta, ...).

What clients read from them:

- ``GET /openapi/v3`` → ``v3_index``: one entry per served group-version,
  ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"}}}``; the hash is
  ``document_etag`` of that group-version's document (kube-openapi ``handler3``: SHA-512, upper-case
  hex), so it changes whenever the document does and clients' disk caches stay right.
- ``GET /openapi/v3/api/v1`` → ``v3_document``: OpenAPI 3.0 with ``components.schemas`` named like
  the apiserver's (``io.k8s.api.core.v1.ConfigMap``, carrying ``x-kubernetes-group-version-kind``
  as a list) and a path item per collection and object. kubectl 1.29+ looks for a ``patch``
  operation whose ``x-kubernetes-group-version-kind`` is the kind and that declares the
  ``fieldValidation`` query parameter (cli-runtime ``query_param_verifier_v3.go``); with it, it sends
  ``fieldValidation=Strict`` instead of validating client side. ``kubectl explain`` renders the
  schemas' descriptions.
- ``GET /openapi/v2`` (``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf``) →
  ``v2_protobuf``: the swagger document encoded as gnostic's ``openapi.v2.Document`` protobuf
  (field numbers of ``openapiv2/OpenAPIv2.proto`` in google/gnostic). kubectl 1.27/1.28 need it for
  ``create -f``, ``apply -f``, ``edit``, ``diff`` and ``explain``: they ``proto.Unmarshal`` it and build
  models with kube-openapi ``pkg/util/proto`` (every ``$ref`` must name a definition, a ``$ref`` may
  not carry a ``type``, every type is a single string, arrays have exactly one ``items`` schema).
  Vendor extensions (``x-kubernetes-*``) are ``NamedAny`` whose ``Any.yaml`` holds the value as YAML,
  as gnostic's compiler writes them; kubectl reads them back with ``yaml.Unmarshal``.

Build the documents once per change of the served set and keep the bytes: ``v3_documents`` returns
all group-versions at once, ``v3_index_for`` indexes them.
"""

from __future__ import annotations

import copy
import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from kinds import ResourceDef, _schemas

from ._protobuf_write import _enc_key, _enc_ld, _enc_varint

__all__ = [
    "V2_PROTOBUF_CONTENT_TYPE",
    "document_etag",
    "encode_v2_document",
    "gv_path",
    "v2_document",
    "v2_protobuf",
    "v3_document",
    "v3_documents",
    "v3_index",
    "v3_index_for",
]

V2_PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
"""What kubectl asks ``/openapi/v2`` for, and what the apiserver answers with."""

Served = Iterable[tuple[ResourceDef, Mapping[str, Any] | None]]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_OBJECT_META = _META + "ObjectMeta"
_LIST_META = _META + "ListMeta"
_PATCH = _META + "Patch"
_DELETE_OPTIONS = _META + "DeleteOptions"
_STATUS = _META + "Status"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

_API_VERSION_DESC = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                     "convert recognized schemas to the latest internal value, and may reject unrecognized values.")
_KIND_DESC = ("Kind is a string value representing the REST resource this object represents. Servers may infer "
              "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.")
_OBJECT_META_DESC = "Standard object's metadata."
_LIST_META_DESC = "Standard list metadata."

_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json")
_RESPONSE_TYPES = ("application/json", "application/yaml")
_SECURITY_DESC = "Bearer Token authentication"


def document_etag(data: bytes) -> str:
    """The hash kube-openapi gives a document: SHA-512 of its bytes, upper-case hex."""
    return hashlib.sha512(data).hexdigest().upper()


def gv_path(group: str, version: str) -> str:
    """``api/v1`` for the core group, ``apis/<group>/<version>`` otherwise."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _encode(doc: Any) -> bytes:
    return msgspec.json.encode(doc, order="sorted")


# --- the served kinds ----------------------------------------------------------------------


@dataclass
class _Kind:
    rdef: ResourceDef
    name: str  # definition name of the kind
    list_name: str
    builtin: bool  # its schema is the built-in definition (strategic merge patch is offered)


def _crd_name(group: str, version: str, kind: str) -> str:
    """The apiserver's name for a CRD's definition: reversed group, version, kind
    (``stable.example.com``/``v1``/``CronTab`` → ``com.example.stable.v1.CronTab``)."""
    rev = ".".join(reversed(group.split("."))) if group else "core"
    return f"{rev}.{version}.{kind}"


def _gvk(d: ResourceDef, kind: str | None = None) -> dict[str, str]:
    return {"group": d.group, "kind": kind or d.kind, "version": d.version}


def _crd_schema(d: ResourceDef, schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """A CRD (or unknown kind) schema made into a definition: GVK, apiVersion, kind and metadata."""
    out: dict[str, Any] = copy.deepcopy(dict(schema)) if schema else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    out.setdefault("type", "object")
    props = out.setdefault("properties", {})
    props.setdefault("apiVersion", {"description": _API_VERSION_DESC, "type": "string"})
    props.setdefault("kind", {"description": _KIND_DESC, "type": "string"})
    meta = props.get("metadata")
    if not isinstance(meta, Mapping) or ("$ref" not in meta and not meta.get("properties")):
        props["metadata"] = {"$ref": _schemas.REF_PREFIX + _OBJECT_META, "description": _OBJECT_META_DESC}
    out["x-kubernetes-group-version-kind"] = [_gvk(d)]
    return out


def _list_schema(d: ResourceDef, item_name: str) -> dict[str, Any]:
    return {
        "description": f"{d.kind}List is a list of {d.kind}",
        "properties": {
            "apiVersion": {"description": _API_VERSION_DESC, "type": "string"},
            "items": {"description": f"List of {d.plural}.", "items": {"$ref": _schemas.REF_PREFIX + item_name},
                      "type": "array"},
            "kind": {"description": _KIND_DESC, "type": "string"},
            "metadata": {"$ref": _schemas.REF_PREFIX + _LIST_META, "description": _LIST_META_DESC},
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [_gvk(d, d.list_kind)],
    }


def _collect(resources: Served, defs: Mapping[str, Any]) -> tuple[list[_Kind], dict[str, Any]]:
    """The kinds to publish and the definitions they add (CRDs, synthesized lists)."""
    kinds: list[_Kind] = []
    extra: dict[str, Any] = {}
    seen: set[tuple[str, str, str]] = set()
    for d, schema in resources:
        key = (d.group, d.version, d.kind)
        if key in seen:
            continue
        seen.add(key)
        name = _lookup(defs, d.group, d.version, d.kind)
        builtin = name is not None and (schema is None or schema is defs.get(name) or schema == defs.get(name))
        if not builtin:
            name = _crd_name(d.group, d.version, d.kind)
            extra[name] = _crd_schema(d, schema)
        assert name is not None
        list_name = None
        if builtin:
            list_name = _lookup(defs, d.group, d.version, d.list_kind)
        if list_name is None:
            list_name = name + "List"
            extra[list_name] = _list_schema(d, name)
        kinds.append(_Kind(d, name, list_name, builtin))
    return kinds, extra


def _lookup(defs: Mapping[str, Any], group: str, version: str, kind: str) -> str | None:
    """The definition of a GVK: the built-in index for the built-in definitions, a scan otherwise."""
    if defs is _schemas.definitions():
        return _schemas.definition_name(group, version, kind)
    return _find_by_gvk(defs, group, version, kind)


def _find_by_gvk(defs: Mapping[str, Any], group: str, version: str, kind: str) -> str | None:
    for name, s in defs.items():
        gvks = s.get("x-kubernetes-group-version-kind") if isinstance(s, Mapping) else None
        if isinstance(gvks, list) and len(gvks) == 1:
            g = gvks[0]
            if (g.get("group", ""), g.get("version", ""), g.get("kind", "")) == (group, version, kind):
                return name
    return None


def _refs(schema: Any, out: set[str]) -> None:
    """Names referenced by a schema (structurally: property names are never keywords)."""
    if not isinstance(schema, Mapping):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        out.add(_schemas.ref_name(ref))
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for sub in props.values():
            _refs(sub, out)
    for key in ("items", "additionalProperties", "not"):
        sub = schema.get(key)
        if isinstance(sub, Mapping):
            _refs(sub, out)
        elif isinstance(sub, list):
            for s in sub:
                _refs(s, out)
    for key in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(key)
        if isinstance(subs, list):
            for s in subs:
                _refs(s, out)


def _closure(roots: Iterable[str], defs: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Every definition reachable from ``roots``, by name (unknown names are left out)."""
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        schema = extra.get(name)
        if schema is None:
            schema = defs.get(name)
        if not isinstance(schema, Mapping):
            continue
        out[name] = schema
        found: set[str] = set()
        _refs(schema, found)
        todo.extend(n for n in found if n not in out)
    return out


# --- operations (shared by v2 and v3) ------------------------------------------------------

# name -> (in, type, description); the descriptions are ours, the names and types the apiserver's.
_PARAMS: dict[str, tuple[str, str, str]] = {
    "name": ("path", "string", "name of the {kind}"),
    "namespace": ("path", "string", "object name and auth scope, such as for teams and projects"),
    "pretty": ("query", "string", "If 'true', then the output is pretty printed."),
    "allowWatchBookmarks": ("query", "boolean", 'allowWatchBookmarks requests watch events with type "BOOKMARK".'),
    "continue": ("query", "string", ("The continue option should be set when retrieving more results from the "
                                     "server; its value is the continue token of the previous page.")),
    "fieldSelector": ("query", "string", "A selector to restrict the list of returned objects by their fields."),
    "labelSelector": ("query", "string", "A selector to restrict the list of returned objects by their labels."),
    "limit": ("query", "integer", "limit is a maximum number of responses to return for a list call."),
    "resourceVersion": ("query", "string", ("resourceVersion sets a constraint on what resource versions a "
                                            "request may be served from.")),
    "resourceVersionMatch": ("query", "string", ("resourceVersionMatch determines how resourceVersion is applied "
                                                 "to list calls.")),
    "sendInitialEvents": ("query", "boolean", ("sendInitialEvents=true may be set together with watch=true to "
                                               "begin the watch stream with synthetic events for the current "
                                               "state.")),
    "timeoutSeconds": ("query", "integer", "Timeout for the list/watch call."),
    "watch": ("query", "boolean", ("Watch for changes to the described resources and return them as a stream "
                                   "of add, update, and remove notifications.")),
    "dryRun": ("query", "string", ("When present, indicates that modifications should not be persisted. Valid "
                                   "values are: - All: all dry run stages will be processed")),
    "fieldManager": ("query", "string", ("fieldManager is a name associated with the actor or entity that is "
                                         "making these changes.")),
    "fieldValidation": ("query", "string", ("fieldValidation instructs the server on how to handle objects in the "
                                            "request (POST/PUT/PATCH) containing unknown or duplicate fields. "
                                            "Valid values are: - Ignore: unknown fields are dropped silently. "
                                            "- Warn: a warning is returned for each unknown or duplicate field. "
                                            "- Strict: the request fails with a BadRequest error listing every "
                                            "unknown and duplicate field.")),
    "force": ("query", "boolean", ('Force is going to "force" Apply requests: the user re-acquires conflicting '
                                   "fields owned by other managers. Must be unset for non-apply patch requests.")),
    "gracePeriodSeconds": ("query", "integer", "The duration in seconds before the object should be deleted."),
    "orphanDependents": ("query", "boolean", ("Deprecated: use propagationPolicy. Whether the dependent objects "
                                              "should be orphaned.")),
    "propagationPolicy": ("query", "string", ("Whether and how garbage collection will be performed: 'Orphan', "
                                              "'Background' or 'Foreground'.")),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")


@dataclass
class _Op:
    method: str  # get, put, post, delete, patch
    action: str  # x-kubernetes-action
    op_id: str
    description: str
    query: tuple[str, ...]
    body: str | None  # None | "object" | "patch" | "delete"
    response: str  # "object" | "list" | "status"
    codes: tuple[tuple[str, str], ...]  # (code, description) with a body
    # A subresource whose body is another kind (autoscaling/v1 Scale, v1 Binding, policy/v1
    # Eviction): its definition name and group-version-kind, for body, responses and the GVK.
    schema: str = ""
    gvk: dict[str, str] | None = None


@dataclass
class _PathItem:
    path: str
    params: tuple[str, ...]  # path-level parameter names
    ops: list[_Op]


def _pascal(group: str, version: str) -> str:
    if not group:
        g = "Core"
    else:
        g = group.removesuffix(".k8s.io")
        g = "".join(p[:1].upper() + p[1:] for p in g.replace("-", ".").split(".") if p)
    return g + version[:1].upper() + version[1:]


def _tag(group: str, version: str) -> str:
    if not group:
        return f"core_{version}"
    g = group.removesuffix(".k8s.io")
    parts = [p for p in g.replace("-", ".").split(".") if p]
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:]) + f"_{version}"


def _base(d: ResourceDef) -> str:
    return "/" + gv_path(d.group, d.version)


def _path_items(k: _Kind) -> list[_PathItem]:
    d = k.rdef
    verbs = set(d.verbs)
    gv, kind = _pascal(d.group, d.version), d.kind
    ns = "Namespaced" if d.namespaced else ""
    ok, created, accepted = ("200", "OK"), ("201", "Created"), ("202", "Accepted")
    coll_ops: list[_Op] = []
    if "list" in verbs or "watch" in verbs:
        coll_ops.append(_Op("get", "list", f"list{gv}{ns}{kind}", f"list or watch objects of kind {kind}",
                            _LIST_PARAMS, None, "list", (ok,)))
    if "create" in verbs:
        coll_ops.append(_Op("post", "post", f"create{gv}{ns}{kind}", f"create a {kind}", _WRITE_PARAMS,
                            "object", "object", (ok, created, accepted)))
    if "deletecollection" in verbs:
        coll_ops.append(_Op("delete", "deletecollection", f"delete{gv}Collection{ns}{kind}",
                            f"delete collection of {kind}", _DELETE_PARAMS + _LIST_PARAMS, "delete", "status", (ok,)))
    item_ops: list[_Op] = []
    if "get" in verbs:
        item_ops.append(_Op("get", "get", f"read{gv}{ns}{kind}", f"read the specified {kind}", (), None, "object",
                            (ok,)))
    if "update" in verbs:
        item_ops.append(_Op("put", "put", f"replace{gv}{ns}{kind}", f"replace the specified {kind}", _WRITE_PARAMS,
                            "object", "object", (ok, created)))
    if "patch" in verbs:
        item_ops.append(_Op("patch", "patch", f"patch{gv}{ns}{kind}", f"partially update the specified {kind}",
                            _PATCH_PARAMS, "patch", "object", (ok, created)))
    if "delete" in verbs:
        item_ops.append(_Op("delete", "delete", f"delete{gv}{ns}{kind}", f"delete a {kind}", _DELETE_PARAMS,
                            "delete", "object", (ok, accepted)))
    base = _base(d)
    out: list[_PathItem] = []
    if d.namespaced:
        coll = f"{base}/namespaces/{{namespace}}/{d.plural}"
        if coll_ops:
            out.append(_PathItem(coll, ("namespace", "pretty"), coll_ops))
        if item_ops:
            out.append(_PathItem(coll + "/{name}", ("name", "namespace", "pretty"), item_ops))
        out += _subresource_items(k, coll + "/{name}", ("name", "namespace", "pretty"))
        if "list" in verbs or "watch" in verbs:
            out.append(_PathItem(f"{base}/{d.plural}", ("pretty",), [
                _Op("get", "list", f"list{gv}{kind}ForAllNamespaces", f"list or watch objects of kind {kind}",
                    _LIST_PARAMS, None, "list", (ok,))]))
    else:
        coll = f"{base}/{d.plural}"
        if coll_ops:
            out.append(_PathItem(coll, ("pretty",), coll_ops))
        if item_ops:
            out.append(_PathItem(coll + "/{name}", ("name", "pretty"), item_ops))
        out += _subresource_items(k, coll + "/{name}", ("name", "pretty"))
    return out


# Subresources whose body is a kind of its own (kube's OpenAPI names them so).
_SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale"), "binding": ("", "v1", "Binding"),
                      "eviction": ("policy", "v1", "Eviction")}


def _subresource_items(k: _Kind, item: str, params: tuple[str, ...]) -> list[_PathItem]:
    """``<item>/<subresource>`` paths, with kube's operation IDs (``readAppsV1NamespacedDeploymentScale``)."""
    d = k.rdef
    gv, ns = _pascal(d.group, d.version), "Namespaced" if d.namespaced else ""
    ok, created, accepted = ("200", "OK"), ("201", "Created"), ("202", "Accepted")
    out = []
    for sub, verbs in d.subresources.items():
        if sub == "token":
            continue  # a virtual kind's answer (TokenRequest), not served from storage
        schema, gvk = "", None
        if sub in _SUBRESOURCE_KINDS:
            g, v, kind = _SUBRESOURCE_KINDS[sub]
            schema = _schemas.definition_name(g, v, kind) or ""
            gvk = {"group": g, "kind": kind, "version": v}
        suffix = f"{d.kind}{sub[:1].upper()}{sub[1:]}"
        ops = []
        if "get" in verbs:
            ops.append(_Op("get", "get", f"read{gv}{ns}{suffix}", f"read {sub} of the specified {d.kind}", (),
                           None, "object", (ok,), schema, gvk))
        if "update" in verbs:
            ops.append(_Op("put", "put", f"replace{gv}{ns}{suffix}", f"replace {sub} of the specified {d.kind}",
                           _WRITE_PARAMS, "object", "object", (ok, created), schema, gvk))
        if "patch" in verbs:
            ops.append(_Op("patch", "patch", f"patch{gv}{ns}{suffix}",
                           f"partially update {sub} of the specified {d.kind}", _PATCH_PARAMS, "patch", "object",
                           (ok, created), schema, gvk))
        if "create" in verbs:
            ops.append(_Op("post", "post", f"create{gv}{ns}{suffix}", f"create {sub} of a {d.kind}",
                           _WRITE_PARAMS, "object", "object", (ok, created, accepted), schema, gvk))
        if ops:
            out.append(_PathItem(f"{item}/{sub}", params, ops))
    return out


# --- schema conversion ---------------------------------------------------------------------

_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
# Keywords the gnostic v2 Schema message has no field for.
_V2_DROP = frozenset({"oneOf", "anyOf", "not", "nullable", "$schema", "$id", "$defs", "definitions"})


def _to_v3(schema: Any, *, top: bool = False) -> Any:
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$schema", "$id"):
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = _V3_REF + _schemas.ref_name(value)
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {k: _to_v3(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = [_to_v3(v) for v in value] if isinstance(value, list) else _to_v3(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_to_v3(v) for v in value]
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1 and not top:
        # The apiserver's v3 form of a reference with siblings (description, default, ...).
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _v3_special(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """IntOrString and Quantity in the apiserver's v3 shape (``oneOf`` of their JSON types)."""
    out = {k: v for k, v in schema.items() if k != "type"}
    out["oneOf"] = ([{"type": "integer"}, {"type": "string"}] if name == _INT_OR_STRING
                    else [{"type": "string"}, {"type": "number"}])
    return out


def _to_v2(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _V2_DROP:
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = _V2_REF + _schemas.ref_name(value)
        elif key == "type":
            if isinstance(value, list):
                value = next((t for t in value if t != "null"), None)
            if isinstance(value, str):
                out[key] = value
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {k: _to_v2(v) for k, v in value.items()}
        elif key == "items":
            if isinstance(value, list):  # tuple validation has no v2 form: keep the first schema
                value = value[0] if value else {}
            out[key] = _to_v2(value)
        elif key == "additionalProperties":
            out[key] = _to_v2(value) if isinstance(value, Mapping) else value
        elif key == "allOf" and isinstance(value, list):
            out[key] = [_to_v2(v) for v in value]
        else:
            out[key] = value
    if "$ref" in out:
        # kube-openapi's proto models refuse a reference with a type or properties.
        out.pop("type", None)
        out.pop("properties", None)
    elif out.get("type") == "array" and "items" not in out:
        out["items"] = {}
    return out


# --- OpenAPI v3 ----------------------------------------------------------------------------


def _v3_param(name: str, kind: str) -> dict[str, Any]:
    where, typ, desc = _PARAMS[name]
    p: dict[str, Any] = {"description": desc.replace("{kind}", kind), "in": where, "name": name,
                         "schema": {"type": typ, "uniqueItems": True}}
    if where == "path":
        p["required"] = True
    return p


def _v3_content(ref: str, types: Iterable[str]) -> dict[str, Any]:
    return {t: {"schema": {"$ref": _V3_REF + ref}} for t in types}


def _v3_op(k: _Kind, op: _Op) -> dict[str, Any]:
    d = k.rdef
    out: dict[str, Any] = {
        "description": op.description,
        "operationId": op.op_id,
        "tags": [_tag(d.group, d.version)],
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": op.gvk or _gvk(d),
    }
    if op.query:
        out["parameters"] = [_v3_param(n, d.kind) for n in op.query]
    if op.body == "object":
        out["requestBody"] = {"content": _v3_content(op.schema or k.name, ("*/*",)), "required": True}
    elif op.body == "patch":
        types = _PATCH_TYPES if k.builtin else tuple(t for t in _PATCH_TYPES if "strategic" not in t)
        out["requestBody"] = {"content": _v3_content(_PATCH, types), "required": True}
    elif op.body == "delete":
        out["requestBody"] = {"content": _v3_content(_DELETE_OPTIONS, ("*/*",))}
    target = op.schema or {"object": k.name, "list": k.list_name, "status": _STATUS}[op.response]
    types = _RESPONSE_TYPES + (("application/json;stream=watch",) if op.response == "list" else ())
    responses: dict[str, Any] = {code: {"content": _v3_content(target, types), "description": desc}
                                 for code, desc in op.codes}
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    return out


def _paths(kinds: list[_Kind], param: Callable[[str, str], dict[str, Any]],
           operation: Callable[[_Kind, _Op], dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(the schema names the paths need, the paths object), in either OpenAPI version's form."""
    roots = [_PATCH, _DELETE_OPTIONS, _STATUS]
    paths: dict[str, Any] = {}
    for k in kinds:
        roots += [k.name, k.list_name]
        for item in _path_items(k):
            entry = paths.setdefault(item.path, {})
            entry["parameters"] = [param(n, k.rdef.kind) for n in item.params]
            for op in item.ops:
                entry[op.method] = operation(k, op)
                if op.schema:
                    roots.append(op.schema)
    return roots, paths


def _v3_for(group: str, version: str, kinds: list[_Kind], defs: Mapping[str, Any], extra: Mapping[str, Any],
            info_version: str) -> dict[str, Any]:
    roots, paths = _paths(kinds, _v3_param, _v3_op)
    schemas: dict[str, Any] = {}
    for name, schema in _closure(roots, defs, extra).items():
        schemas[name] = _v3_special(name, schema) if name in (_INT_OR_STRING, _QUANTITY) else _to_v3(schema, top=True)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"description": _SECURITY_DESC, "in": "header",
                                                "name": "authorization", "type": "apiKey"}},
        },
        "security": [{"BearerToken": []}],
    }


def _prepare(resources: Served, definitions: Mapping[str, Any] | None
             ) -> tuple[list[_Kind], Mapping[str, Any], dict[str, Any]]:
    defs = _schemas.definitions() if definitions is None else definitions
    kinds, extra = _collect(resources, defs)
    return kinds, defs, extra


def _info_version(info_version: str | None) -> str:
    return info_version or f"v{_schemas.KUBE_SCHEMA_VERSION}"


def v3_documents(resources: Served, definitions: Mapping[str, Any] | None = None, *,
                 info_version: str | None = None) -> dict[str, bytes]:
    """Every group-version's OpenAPI v3 document, keyed by ``gv_path`` (``api/v1``,
    ``apis/coordination.k8s.io/v1``), as JSON bytes (keys sorted: the same input gives the same
    bytes)."""
    kinds, defs, extra = _prepare(resources, definitions)
    by_gv: dict[tuple[str, str], list[_Kind]] = {}
    for k in kinds:
        by_gv.setdefault((k.rdef.group, k.rdef.version), []).append(k)
    return {gv_path(g, v): _encode(_v3_for(g, v, ks, defs, extra, _info_version(info_version)))
            for (g, v), ks in by_gv.items()}


def v3_document(group: str, version: str, resources: Served, definitions: Mapping[str, Any] | None = None, *,
                info_version: str | None = None) -> bytes | None:
    """The OpenAPI v3 document of one group-version (JSON), or None when nothing of it is served."""
    mine = [(d, s) for d, s in resources if d.group == group and d.version == version]
    if not mine:
        return None
    kinds, defs, extra = _prepare(mine, definitions)
    return _encode(_v3_for(group, version, kinds, defs, extra, _info_version(info_version)))


def v3_index_for(documents: Mapping[str, bytes]) -> dict[str, Any]:
    """The ``/openapi/v3`` discovery document for already built group-version documents."""
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={document_etag(doc)}"}
                      for gv, doc in sorted(documents.items())}}


def v3_index(resources: Served, definitions: Mapping[str, Any] | None = None, *,
             info_version: str | None = None) -> dict[str, Any]:
    """``GET /openapi/v3``: ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}}}``."""
    return v3_index_for(v3_documents(resources, definitions, info_version=info_version))


# --- OpenAPI v2 (swagger 2.0) --------------------------------------------------------------


def _v2_param(name: str, kind: str) -> dict[str, Any]:
    where, typ, desc = _PARAMS[name]
    p: dict[str, Any] = {"description": desc.replace("{kind}", kind), "in": where, "name": name, "type": typ,
                         "uniqueItems": True}
    if where == "path":
        p["required"] = True
    return p


def _v2_op(k: _Kind, op: _Op) -> dict[str, Any]:
    d = k.rdef
    params = [_v2_param(n, d.kind) for n in op.query]
    consumes = ["*/*"]
    if op.body == "object":
        params.insert(0, {"in": "body", "name": "body", "required": True,
                          "schema": {"$ref": _V2_REF + (op.schema or k.name)}})
    elif op.body == "patch":
        params.insert(0, {"in": "body", "name": "body", "required": True, "schema": {"$ref": _V2_REF + _PATCH}})
        consumes = [t for t in _PATCH_TYPES if k.builtin or "strategic" not in t]
    elif op.body == "delete":
        params.insert(0, {"in": "body", "name": "body", "schema": {"$ref": _V2_REF + _DELETE_OPTIONS}})
    target = op.schema or {"object": k.name, "list": k.list_name, "status": _STATUS}[op.response]
    responses: dict[str, Any] = {code: {"description": desc, "schema": {"$ref": _V2_REF + target}}
                                 for code, desc in op.codes}
    responses["401"] = {"description": "Unauthorized"}
    produces = list(_RESPONSE_TYPES) + (["application/json;stream=watch"] if op.response == "list" else [])
    out: dict[str, Any] = {
        "consumes": consumes,
        "description": op.description,
        "operationId": op.op_id,
        "produces": produces,
        "responses": responses,
        "schemes": ["https"],
        "tags": [_tag(d.group, d.version)],
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": op.gvk or _gvk(d),
    }
    if params:
        out["parameters"] = params
    return out


def v2_document(resources: Served, definitions: Mapping[str, Any] | None = None, *,
                info_version: str | None = None) -> dict[str, Any]:
    """The swagger 2.0 document of all served resources, as a JSON-able dict (what
    ``/openapi/v2`` serves as JSON and ``v2_protobuf`` encodes)."""
    kinds, defs, extra = _prepare(resources, definitions)
    roots, paths = _paths(kinds, _v2_param, _v2_op)
    closure = _closure(roots, defs, extra)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": _info_version(info_version)},
        "paths": {p: paths[p] for p in sorted(paths)},
        "definitions": {n: _to_v2(closure[n]) for n in sorted(closure)},
        "securityDefinitions": {"BearerToken": {"description": _SECURITY_DESC, "in": "header",
                                                "name": "authorization", "type": "apiKey"}},
        "security": [{"BearerToken": []}],
    }


def v2_protobuf(resources: Served, definitions: Mapping[str, Any] | None = None, *,
                info_version: str | None = None) -> bytes:
    """``GET /openapi/v2`` for kubectl: the swagger document as a gnostic ``openapi.v2.Document``."""
    return encode_v2_document(v2_document(resources, definitions, info_version=info_version))


# --- protobuf writer (gnostic openapi.v2, openapiv2/OpenAPIv2.proto) -----------------------
# Proto3 wire format: each present field is tag (field_number << 3 | wire type) then the value;
# varint (0) for bool/int64, 64-bit (1) for double, length-delimited (2) for strings and messages.
# Scalars at their default (empty, 0, false) are omitted, as proto3 does; fields are written in
# field-number order, as Go's proto.Marshal does.


# The wire primitives are the protobuf module's (one writer for the whole gateway).
_varint, _key, _f_bytes = _enc_varint, _enc_key, _enc_ld


def _f_str(num: int, s: Any) -> bytes:
    if not isinstance(s, str) or not s:
        return b""
    return _f_bytes(num, s.encode())


def _f_strs(num: int, values: Any) -> bytes:
    if not isinstance(values, list):
        return b""
    return b"".join(_f_bytes(num, v.encode()) for v in values if isinstance(v, str))


def _f_bool(num: int, v: Any) -> bytes:
    return _key(num, 0) + b"\x01" if v is True else b""


def _f_int(num: int, v: Any) -> bytes:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) == 0:
        return b""
    return _key(num, 0) + _varint(int(v))


def _f_double(num: int, v: Any) -> bytes:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v == 0:
        return b""
    return _key(num, 1) + struct.pack("<d", float(v))


def _f_msg(num: int, payload: bytes | None) -> bytes:
    """A message field; None leaves it out, b"" writes an empty (but present) message."""
    return b"" if payload is None else _f_bytes(num, payload)


def _yaml(value: Any) -> str:
    """A value as gnostic stores it in ``Any.yaml`` (block-style YAML, one document)."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 30)
    if text.endswith("\n...\n"):  # PyYAML's end marker after a top-level plain scalar
        text = text[:-4]
    return text


def _any(value: Any) -> bytes:
    """``Any {google.protobuf.Any value = 1; string yaml = 2;}``."""
    return _f_str(2, _yaml(value))


def _named_any(name: str, value: Any) -> bytes:
    """``NamedAny {string name = 1; Any value = 2;}``."""
    return _f_str(1, name) + _f_msg(2, _any(value))


def _extensions(num: int, obj: Mapping[str, Any]) -> bytes:
    return b"".join(_f_msg(num, _named_any(k, obj[k])) for k in sorted(obj) if k.startswith("x-"))


def _schema(s: Mapping[str, Any]) -> bytes:
    """``Schema``: _ref 1, format 2, title 3, description 4, default 5, multiple_of 6, maximum 7,
    exclusive_maximum 8, minimum 9, exclusive_minimum 10, max_length 11, min_length 12, pattern 13,
    max_items 14, min_items 15, unique_items 16, max_properties 17, min_properties 18, required 19,
    enum 20, additional_properties 21, type 22, items 23, all_of 24, properties 25,
    discriminator 26, read_only 27, example 30, vendor_extension 31."""
    out = [
        _f_str(1, s.get("$ref")),
        _f_str(2, s.get("format")),
        _f_str(3, s.get("title")),
        _f_str(4, s.get("description")),
        _f_msg(5, _any(s["default"])) if "default" in s else b"",
        _f_double(6, s.get("multipleOf")),
        _f_double(7, s.get("maximum")),
        _f_bool(8, s.get("exclusiveMaximum")),
        _f_double(9, s.get("minimum")),
        _f_bool(10, s.get("exclusiveMinimum")),
        _f_int(11, s.get("maxLength")),
        _f_int(12, s.get("minLength")),
        _f_str(13, s.get("pattern")),
        _f_int(14, s.get("maxItems")),
        _f_int(15, s.get("minItems")),
        _f_bool(16, s.get("uniqueItems")),
        _f_int(17, s.get("maxProperties")),
        _f_int(18, s.get("minProperties")),
        _f_strs(19, s.get("required")),
    ]
    enum = s.get("enum")
    if isinstance(enum, list):
        out.append(b"".join(_f_msg(20, _any(v)) for v in enum))
    extra = s.get("additionalProperties")
    if isinstance(extra, Mapping):  # AdditionalPropertiesItem {oneof: Schema schema = 1; bool boolean = 2;}
        out.append(_f_msg(21, _f_msg(1, _schema(extra))))
    elif isinstance(extra, bool):
        out.append(_f_msg(21, _key(2, 0) + (b"\x01" if extra else b"\x00")))
    typ = s.get("type")
    if isinstance(typ, str) and typ:  # TypeItem {repeated string value = 1;}
        out.append(_f_msg(22, _f_str(1, typ)))
    items = s.get("items")
    if isinstance(items, Mapping):  # ItemsItem {repeated Schema schema = 1;}
        out.append(_f_msg(23, _f_msg(1, _schema(items))))
    all_of = s.get("allOf")
    if isinstance(all_of, list):
        out.append(b"".join(_f_msg(24, _schema(v)) for v in all_of if isinstance(v, Mapping)))
    props = s.get("properties")
    if isinstance(props, Mapping):  # Properties {repeated NamedSchema additional_properties = 1;}
        named = b"".join(_f_msg(1, _f_str(1, name) + _f_msg(2, _schema(props[name])))
                         for name in sorted(props) if isinstance(props[name], Mapping))
        out.append(_f_msg(25, named))
    out.append(_f_str(26, s.get("discriminator")))
    out.append(_f_bool(27, s.get("readOnly")))
    if "example" in s:
        out.append(_f_msg(30, _any(s["example"])))
    out.append(_extensions(31, s))
    return b"".join(out)


def _parameter(p: Mapping[str, Any]) -> bytes:
    """``ParametersItem {oneof: Parameter parameter = 1; JsonReference json_reference = 2;}`` with
    ``Parameter {oneof: BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2;}``."""
    if "$ref" in p:  # JsonReference {string _ref = 1; string description = 2;}
        return _f_msg(2, _f_str(1, p["$ref"]) + _f_str(2, p.get("description")))
    where = p.get("in")
    if where == "body":
        # BodyParameter {description 1, name 2, in 3, required 4, Schema schema 5, vendor_extension 6}
        body = (_f_str(1, p.get("description")) + _f_str(2, p.get("name")) + _f_str(3, "body")
                + _f_bool(4, p.get("required")) + _f_msg(5, _schema(p.get("schema") or {})) + _extensions(6, p))
        return _f_msg(1, _f_msg(1, body))
    if where == "path":
        # PathParameterSubSchema {required 1, in 2, description 3, name 4, type 5, format 6, ...,
        # unique_items 19, vendor_extension 22}; NonBodyParameter.path_parameter_sub_schema = 4
        sub = (_f_bool(1, p.get("required")) + _f_str(2, "path") + _f_str(3, p.get("description"))
               + _f_str(4, p.get("name")) + _f_str(5, p.get("type")) + _f_str(6, p.get("format"))
               + _f_bool(19, p.get("uniqueItems")) + _extensions(22, p))
        return _f_msg(1, _f_msg(2, _f_msg(4, sub)))
    # QueryParameterSubSchema {required 1, in 2, description 3, name 4, allow_empty_value 5, type 6,
    # format 7, ..., unique_items 20, vendor_extension 23}; NonBodyParameter.query_parameter_sub_schema = 3
    sub = (_f_bool(1, p.get("required")) + _f_str(2, "query") + _f_str(3, p.get("description"))
           + _f_str(4, p.get("name")) + _f_bool(5, p.get("allowEmptyValue")) + _f_str(6, p.get("type"))
           + _f_str(7, p.get("format")) + _f_bool(20, p.get("uniqueItems")) + _extensions(23, p))
    return _f_msg(1, _f_msg(2, _f_msg(3, sub)))


def _response(r: Mapping[str, Any]) -> bytes:
    """``Response {description 1, SchemaItem schema 2, ..., vendor_extension 5}``;
    ``SchemaItem {oneof: Schema schema = 1; FileSchema file_schema = 2;}``."""
    schema = r.get("schema")
    return (_f_str(1, r.get("description"))
            + (_f_msg(2, _f_msg(1, _schema(schema))) if isinstance(schema, Mapping) else b"")
            + _extensions(5, r))


def _operation(op: Mapping[str, Any]) -> bytes:
    """``Operation {tags 1, summary 2, description 3, external_docs 4, operation_id 5, produces 6,
    consumes 7, parameters 8, Responses responses 9, schemes 10, deprecated 11, security 12,
    vendor_extension 13}``; ``Responses {repeated NamedResponseValue response_code = 1; ...}``,
    ``NamedResponseValue {name 1, ResponseValue value 2}``, ``ResponseValue {oneof: Response response = 1; ...}``."""
    responses = op.get("responses") or {}
    codes = b"".join(_f_msg(1, _f_str(1, code) + _f_msg(2, _f_msg(1, _response(responses[code]))))
                     for code in sorted(responses))
    return b"".join([
        _f_strs(1, op.get("tags")),
        _f_str(2, op.get("summary")),
        _f_str(3, op.get("description")),
        _f_str(5, op.get("operationId")),
        _f_strs(6, op.get("produces")),
        _f_strs(7, op.get("consumes")),
        b"".join(_f_msg(8, _parameter(p)) for p in op.get("parameters") or ()),
        _f_msg(9, codes),
        _f_strs(10, op.get("schemes")),
        _f_bool(11, op.get("deprecated")),
        _extensions(13, op),
    ])


_METHOD_FIELDS = (("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("options", 6), ("head", 7), ("patch", 8))


def _path_item(item: Mapping[str, Any]) -> bytes:
    """``PathItem {_ref 1, get 2, put 3, post 4, delete 5, options 6, head 7, patch 8,
    parameters 9, vendor_extension 10}``."""
    out = [_f_str(1, item.get("$ref"))]
    for method, num in _METHOD_FIELDS:
        op = item.get(method)
        if isinstance(op, Mapping):
            out.append(_f_msg(num, _operation(op)))
    out.append(b"".join(_f_msg(9, _parameter(p)) for p in item.get("parameters") or ()))
    out.append(_extensions(10, item))
    return b"".join(out)


def encode_v2_document(doc: Mapping[str, Any]) -> bytes:
    """A swagger 2.0 document (as ``v2_document`` builds it) in gnostic's protobuf encoding.

    ``Document {swagger 1, Info info 2, host 3, base_path 4, schemes 5, consumes 6, produces 7,
    Paths paths 8, Definitions definitions 9, parameters 10, responses 11, security 12,
    security_definitions 13, tags 14, external_docs 15, vendor_extension 16}``.
    """
    info = doc.get("info") or {}
    paths = doc.get("paths") or {}
    defs = doc.get("definitions") or {}
    out = [
        _f_str(1, doc.get("swagger")),
        # Info {title 1, version 2, description 3, ...}
        _f_msg(2, _f_str(1, info.get("title")) + _f_str(2, info.get("version")) + _f_str(3, info.get("description"))
               + _extensions(7, info)),
        _f_str(3, doc.get("host")),
        _f_str(4, doc.get("basePath")),
        _f_strs(5, doc.get("schemes")),
        _f_strs(6, doc.get("consumes")),
        _f_strs(7, doc.get("produces")),
        # Paths {vendor_extension 1, repeated NamedPathItem path = 2}; NamedPathItem {name 1, PathItem value 2}
        _f_msg(8, _extensions(1, paths) + b"".join(
            _f_msg(2, _f_str(1, p) + _f_msg(2, _path_item(paths[p]))) for p in sorted(paths) if p.startswith("/"))),
        # Definitions {repeated NamedSchema additional_properties = 1}; NamedSchema {name 1, Schema value 2}
        _f_msg(9, b"".join(_f_msg(1, _f_str(1, n) + _f_msg(2, _schema(defs[n]))) for n in sorted(defs))),
    ]
    # SecurityRequirement {repeated NamedStringArray additional_properties = 1};
    # NamedStringArray {name 1, StringArray value 2}; StringArray {repeated string value = 1}
    for req in doc.get("security") or ():
        out.append(_f_msg(12, b"".join(_f_msg(1, _f_str(1, n) + _f_msg(2, _f_strs(1, req[n]))) for n in sorted(req))))
    sec = doc.get("securityDefinitions")
    if isinstance(sec, Mapping):
        # SecurityDefinitions {repeated NamedSecurityDefinitionsItem additional_properties = 1};
        # SecurityDefinitionsItem {oneof: ... ApiKeySecurity api_key_security = 2; ...};
        # ApiKeySecurity {type 1, name 2, in 3, description 4, vendor_extension 5}
        items = b""
        for n in sorted(sec):
            s = sec[n]
            if s.get("type") != "apiKey":
                continue
            api_key = (_f_str(1, "apiKey") + _f_str(2, s.get("name")) + _f_str(3, s.get("in"))
                       + _f_str(4, s.get("description")) + _extensions(5, s))
            items += _f_msg(1, _f_str(1, n) + _f_msg(2, _f_msg(2, api_key)))
        out.append(_f_msg(13, items))
    out.append(_extensions(16, doc))
    return b"".join(out)
