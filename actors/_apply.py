"""Server-side apply's request checks and the fields each write may own. Pure.

The resource actor's ``apply`` (PATCH with ``application/apply-patch+yaml``) uses these; the
ownership bookkeeping is ``actors._managed``, the field-set algebra ``kinds._fieldpath``.
"""

from __future__ import annotations

from typing import Any

from kinds import BadRequest, Cause, ResourceDef, definitions, invalid
from kinds._fieldpath import MEMBER, FieldSet, OpenAPIType, TypeNode, builtin_type

APPLY_PATCH = "application/apply-patch+yaml"

# The scale subresource's ownership is the parent's ``spec.replicas`` (kube's ScaleHandler).
SCALE_FIELDS: FieldSet = {"f:spec": {"f:replicas": {MEMBER: {}}}}


def check_apply_options(query: dict[str, str]) -> None:
    """kube's ``ValidatePatchOptions`` for an apply: a fieldManager is required (422)."""
    if not query.get("fieldManager"):
        raise invalid("PatchOptions", "", [Cause("FieldValueRequired", "Required value: is required for apply patch",
                                                 "fieldManager")], group="meta.k8s.io")


def check_non_apply_options(query: dict[str, str]) -> None:
    """``force`` is only for apply patches (422)."""
    if "force" in query:
        raise invalid("PatchOptions", "", [Cause("FieldValueForbidden", "Forbidden: may not be specified for "
                                                 "non-apply patch", "force")], group="meta.k8s.io")


def apply_force(query: dict[str, str]) -> bool:
    """``force`` as Go's ``strconv.ParseBool`` reads it (a bad value is false, as kube's decoder)."""
    return query.get("force", "") in ("1", "t", "T", "true", "TRUE", "True")


def applied_config(body: Any, view: ResourceDef, name: str) -> dict[str, Any]:
    """The applied configuration, checked as kube's apply patcher checks it: an object of the
    URL's apiVersion and kind, named as the URL (a name left out is the URL's), without
    managedFields."""
    if not isinstance(body, dict):
        raise BadRequest("error decoding YAML: the applied configuration must be an object")
    if not body.get("kind"):
        raise BadRequest("Object 'Kind' is missing in the applied configuration")
    version = body.get("apiVersion") or ""
    if version != view.api_version:
        raise BadRequest(f"Incorrect version specified in apply patch. Specified patch version: {version}, "
                         f"expected: {view.api_version}")
    if body["kind"] != view.kind:
        raise BadRequest(f"the kind of the applied configuration ({body['kind']}) does not match the kind "
                         f"on the URL ({view.kind})")
    meta = body.get("metadata")
    if meta is None:
        meta = body["metadata"] = {}
    if not isinstance(meta, dict):
        raise BadRequest("metadata of the applied configuration must be an object")
    if meta.get("managedFields"):
        raise BadRequest(f"managed fields must be nil but was {meta['managedFields']}")
    if meta.get("name") not in (None, "", name):
        raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    return body


_CRD_TYPES_MAX = 1024
_CRD_TYPES: dict[int, tuple[dict[str, Any], TypeNode]] = {}  # id(schema) -> (schema, its merge type)


def apply_type(rdef: ResourceDef) -> TypeNode:
    """The merge type of a kind (list types and map keys from its schema): the one place a kind's
    type is chosen. A custom resource's comes from its CRD's ``openAPIV3Schema`` of that version
    (``kinds._fieldpath.OpenAPIType(schema)``, which reads the same ``x-kubernetes-*`` extensions:
    list types, map keys, map types, and defaults of key fields)."""
    if rdef.schema:
        # Built once per CRD version's schema (a CRD update brings a new schema object), not per write.
        cached = _CRD_TYPES.get(id(rdef.schema))
        if cached is None or cached[0] is not rdef.schema:
            if len(_CRD_TYPES) >= _CRD_TYPES_MAX:
                _CRD_TYPES.clear()
            cached = _CRD_TYPES[id(rdef.schema)] = (rdef.schema, OpenAPIType(rdef.schema, definitions()))
        return cached[1]
    return builtin_type(rdef.group, rdef.version, rdef.kind)


def reset_fields(rdef: ResourceDef, subresource: str, *objs: dict[str, Any] | None) -> FieldSet:
    """What a write may not own (kube's ``GetResetFields``): the status through the main resource
    of a kind with a status subresource; everything but the status (and the metadata the status
    strategy keeps) through ``/status``."""
    if subresource == "status":
        top = {k for o in objs if o for k in o} - {"metadata", "status", "apiVersion", "kind"}
        out: FieldSet = {f"f:{k}": {MEMBER: {}} for k in top}
        if rdef.status_resets_metadata:
            out["f:metadata"] = {f"f:{f}": {MEMBER: {}} for f in rdef.status_resets_metadata}
        return out
    if not subresource and rdef.has_status:
        return {"f:status": {MEMBER: {}}}
    return {}
