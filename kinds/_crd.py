"""CustomResourceDefinitions: a kind defined at run time, served through the same ``ResourceDef``.

- :func:`validate_crd`: the CRD itself (names, versions, the structural schema rules kube checks
  most often), with kube's field paths and messages;
- :func:`defs_from_crd`: one ``ResourceDef`` per served version (a non-storage version is served by
  conversion ``None``: the apiVersion rewritten, or by the CRD's conversion webhook);
- :class:`CustomResourceStrategy`: a custom resource's write: status dropped on create with a
  status subresource, defaults from ``default:``, the schema's value checks (type, enum, bounds,
  pattern, formats, required, list types) and ``x-kubernetes-validations`` (CEL, ``kinds._cel``);
- :func:`apply_defaults`: defaulting (on write, and on read of stored objects);
- :func:`accepted_names_status`: what kube's naming and establishing controllers write.
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Mapping
from typing import Any

from ._crd_conversion import validate_conversion, webhook_of
from ._defs import ResourceDef
from ._errors import Cause
from ._strategy import Strategy
from ._validation import (
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_required,
    field_unsupported,
    is_dns1035_label,
    is_dns1123_subdomain,
    validate_object_meta,
)

CRD_GROUP = "apiextensions.k8s.io"
CRD_PLURAL = "customresourcedefinitions"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_SUB = ("get", "patch", "update")
# kube's per-rule cost limit (StaticEstimatedCostLimit is 10M; the per-call runtime limit is the
# same order): our engine has no cost estimator, so a rule is bounded by its length and the
# object by its size (MAX_OBJECT_BYTES); a rule longer than this is refused on the CRD.
MAX_RULE_LENGTH = 5 * 1024
# The runtime budget: rule evaluations for one object (kube counts cost units per call, 1e6 per
# rule and 1e7 per object; with no cost counter in the engine, evaluations are what is counted).
MAX_RULE_EVALUATIONS = 10_000
_OUT_OF_BUDGET = "validation failed due to running out of cost budget, no further validation rules will be run"


# ---- the CRD -------------------------------------------------------------------------------------


def _versions(crd: Mapping[str, Any]) -> list[dict[str, Any]]:
    v = (crd.get("spec") or {}).get("versions")
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def storage_version(crd: Mapping[str, Any]) -> str:
    for v in _versions(crd):
        if v.get("storage"):
            return str(v.get("name", ""))
    return ""


def _schema_of(version: Mapping[str, Any]) -> dict[str, Any] | None:
    s = (version.get("schema") or {}).get("openAPIV3Schema") if isinstance(version.get("schema"), dict) else None
    return s if isinstance(s, dict) else None


def defs_from_crd(crd: Mapping[str, Any]) -> tuple[ResourceDef, ...]:
    """The served versions of a CRD as resource definitions (the storage version first)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, kind, plural = spec.get("group", ""), names.get("kind", ""), names.get("plural", "")
    singular = names.get("singular") or kind.lower()
    namespaced = spec.get("scope") == "Namespaced"
    store = storage_version(crd)
    # A terminating CRD's kind still serves reads and deletes, never a create (kube's crdHandler).
    verbs = _RW if not (crd.get("metadata") or {}).get("deletionTimestamp") else tuple(
        v for v in _RW if v != "create")
    conversion = webhook_of(crd)
    out = []
    for v in _versions(crd):
        if not v.get("served"):
            continue
        subs = v.get("subresources") or {}
        subresources: dict[str, tuple[str, ...]] = {}
        if isinstance(subs.get("status"), dict):
            subresources["status"] = _SUB
        scale_paths: tuple[str, str, str] = ()
        scale = subs.get("scale")
        if isinstance(scale, dict):
            subresources["scale"] = _SUB
            scale_paths = (str(scale.get("specReplicasPath") or ""), str(scale.get("statusReplicasPath") or ""),
                           str(scale.get("labelSelectorPath") or ""))
        name = str(v.get("name", ""))
        out.append(ResourceDef(
            group, name, kind, plural, singular, namespaced, tuple(names.get("shortNames") or ()),
            tuple(names.get("categories") or ()), verbs=verbs, subresources=subresources, generation=True,
            storage=() if name == store else (group, store), crd=str((crd.get("metadata") or {}).get("name", "")),
            schema=_schema_of(v) or {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            printer_columns=tuple(c for c in v.get("additionalPrinterColumns") or () if isinstance(c, dict)),
            scale_paths=scale_paths, read_defaults=_has_defaults(_schema_of(v)), conversion=conversion,
            field_selectors=tuple(str(f["jsonPath"]).lstrip(".") for f in v.get("selectableFields") or ()
                                  if isinstance(f, dict) and isinstance(f.get("jsonPath"), str))))
    out.sort(key=lambda d: bool(d.storage))
    return tuple(out)


def _has_defaults(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    props = schema.get("properties")
    subs = [*(props.values() if isinstance(props, dict) else ()), schema.get("items"),
            schema.get("additionalProperties")]
    return "default" in schema or any(_has_defaults(s) for s in subs)


def is_established(crd: Mapping[str, Any]) -> bool:
    return condition(crd, "Established") == "True"


def condition(crd: Mapping[str, Any], ctype: str) -> str:
    for c in (crd.get("status") or {}).get("conditions") or ():
        if isinstance(c, dict) and c.get("type") == ctype:
            return str(c.get("status", ""))
    return ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_condition(conds: list[dict[str, Any]], cond: dict[str, Any], now: str) -> None:
    for i, c in enumerate(conds):
        if c.get("type") == cond["type"]:
            same_status = c.get("status") == cond["status"]
            conds[i] = {**cond, "lastTransitionTime": c.get("lastTransitionTime") if same_status else now}
            return
    conds.append({**cond, "lastTransitionTime": now})


def accepted_names_status(crd: Mapping[str, Any], claimed_plurals: set[str], claimed_kinds: set[str],
                          now: str = "") -> dict[str, Any]:
    """The CRD's status as kube's naming controller and establishing controller leave it:
    ``acceptedNames``, ``NamesAccepted`` (False with ``PluralConflict``/``KindConflict``/... and
    ``"x" is already in use`` when another CRD of the group or a built-in kind holds a name) and
    ``Established``; ``storedVersions`` gains the storage version. ``claimed_*``: the names held by
    others in the CRD's group (plurals, singulars and short names; kinds and list kinds)."""
    now = now or _now()
    status = copy.deepcopy(dict(crd.get("status") or {}))
    names = (crd.get("spec") or {}).get("names") or {}
    accepted = dict(status.get("acceptedNames") or {})
    reason, message = "", ""

    def check(requested: Any, current: Any, claimed: set[str], why: str) -> bool:
        nonlocal reason, message
        if requested and requested != current and requested in claimed:
            if not reason:
                reason, message = why, f'"{requested}" is already in use'
            return False
        return True

    if check(names.get("plural"), accepted.get("plural"), claimed_plurals, "PluralConflict"):
        accepted["plural"] = names.get("plural", "")
    if check(names.get("singular"), accepted.get("singular"), claimed_plurals,
             "SingularConflict") and names.get("singular"):
        accepted["singular"] = names["singular"]
    shorts = [s for s in names.get("shortNames") or () if s not in (accepted.get("shortNames") or ())]
    if all(check(s, None, claimed_plurals, "ShortNamesConflict") for s in shorts) and names.get("shortNames"):
        accepted["shortNames"] = list(names["shortNames"])
    if check(names.get("kind"), accepted.get("kind"), claimed_kinds, "KindConflict"):
        accepted["kind"] = names.get("kind", "")
    list_kind = names.get("listKind") or f"{names.get('kind', '')}List"
    if check(list_kind, accepted.get("listKind"), claimed_kinds, "ListKindConflict"):
        accepted["listKind"] = list_kind
    if names.get("categories"):
        accepted["categories"] = list(names["categories"])
    conds = [dict(c) for c in status.get("conditions") or () if isinstance(c, dict)]
    if reason:
        _set_condition(conds, {"type": "NamesAccepted", "status": "False", "reason": reason, "message": message}, now)
        if condition({"status": {"conditions": conds}}, "Established") != "True":
            _set_condition(conds, {"type": "Established", "status": "False", "reason": "NotAccepted",
                                   "message": "not all names are accepted"}, now)
    else:
        _set_condition(conds, {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                               "message": "no conflicts found"}, now)
        _set_condition(conds, {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                               "message": "the initial names have been accepted"}, now)
    status["acceptedNames"] = accepted
    status["conditions"] = conds
    stored = list(status.get("storedVersions") or [])
    sv = storage_version(crd)
    if sv and sv not in stored:
        stored.append(sv)
    status["storedVersions"] = stored
    return status


def terminating_status(crd: Mapping[str, Any], remaining: int, now: str = "") -> dict[str, Any]:
    status = copy.deepcopy(dict(crd.get("status") or {}))
    conds = [dict(c) for c in status.get("conditions") or () if isinstance(c, dict)]
    _set_condition(conds, {"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
                           "message": "CustomResource deletion is in progress"}, now or _now())
    status["conditions"] = conds
    return status


# ---- validation of the CRD -------------------------------------------------------------------------

_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_KNOWN_FORMATS = frozenset({
    "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3", "uuid4", "uuid5",
    "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor", "byte", "password", "date",
    "duration", "datetime", "date-time", "int32", "int64", "float", "double", ""})


def validate_crd(crd: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[Cause]:
    causes = validate_object_meta(crd.get("metadata"), namespaced=False, name_rule="subdomain")
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [*causes, field_required("spec")]
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name", "")
    if plural and group and name != f"{plural}.{group}":
        causes.append(field_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        causes.append(field_required("spec.group"))
    else:
        for msg in is_dns1123_subdomain(group):
            causes.append(field_invalid("spec.group", group, msg))
        if "." not in group:
            causes.append(field_invalid("spec.group", group, "should be a domain with at least one dot"))
        protected = group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))
        annotations = (crd.get("metadata") or {}).get("annotations") or {}
        if protected and not annotations.get("api-approved.kubernetes.io"):
            causes.append(field_required("metadata.annotations[api-approved.kubernetes.io]",
                                         'protected groups must have approval annotation "api-approved.kubernetes.io", '
                                         "see https://github.com/kubernetes/enhancements/pull/1111"))
    if spec.get("scope") not in ("Cluster", "Namespaced"):
        causes.append(field_unsupported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"]))
    for f in ("plural", "singular"):
        v = names.get(f) or ""
        if f == "plural" and not v:
            causes.append(field_required("spec.names.plural"))
        for msg in is_dns1035_label(v) if v else ():
            causes.append(field_invalid(f"spec.names.{f}", v, msg))
    for f in ("kind", "listKind"):
        v = names.get(f) or ""
        if f == "kind" and not v:
            causes.append(field_required("spec.names.kind"))
        elif v and not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", v) and v.lower() == v:
            causes.append(field_invalid(f"spec.names.{f}", v, "may have mixed case, but should otherwise match: "
                                                              "[a-z]([-a-z0-9]*[a-z0-9])?"))
    causes.extend(validate_conversion(spec.get("conversion")))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(field_invalid("spec.versions", versions if versions else [], "must have exactly one version "
                                                                                  "marked as storage version"))
        return causes
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        causes.append(field_invalid("spec.versions", versions, "must have exactly one version marked as storage "
                                                              "version"))
    if not any(isinstance(v, dict) and v.get("served") for v in versions):
        causes.append(field_invalid("spec.versions", versions, "must have at least one version marked as served"))
    seen: set[str] = set()
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            causes.append(field_invalid(path, v, "must be an object"))
            continue
        vname = v.get("name") or ""
        if vname in seen:
            causes.append(field_invalid(f"{path}.name", vname, "must appear only once"))
        seen.add(vname)
        for msg in is_dns1035_label(vname):
            causes.append(field_invalid(f"{path}.name", vname, msg))
        schema = _schema_of(v)
        if schema is None:
            causes.append(field_required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
            continue
        causes.extend(structural_errors(schema, f"{path}.schema.openAPIV3Schema"))
        for j, col in enumerate(v.get("additionalPrinterColumns") or ()):
            cpath = f"{path}.additionalPrinterColumns[{j}]"
            if not isinstance(col, dict):
                continue
            if not col.get("name"):
                causes.append(field_required(f"{cpath}.name"))
            if col.get("type") not in ("integer", "number", "string", "boolean", "date"):
                causes.append(field_unsupported(f"{cpath}.type", col.get("type", ""),
                                                ["integer", "number", "string", "boolean", "date"]))
            if not col.get("jsonPath"):
                causes.append(field_required(f"{cpath}.JSONPath"))
        scale = (v.get("subresources") or {}).get("scale")
        if isinstance(scale, dict):
            sp = scale.get("specReplicasPath") or ""
            if not sp:
                causes.append(field_required(f"{path}.subresources.scale.specReplicasPath"))
            elif not sp.startswith(".spec."):
                causes.append(field_invalid(f"{path}.subresources.scale.specReplicasPath", sp,
                                            "should be a json path under .spec"))
            st = scale.get("statusReplicasPath") or ""
            if not st:
                causes.append(field_required(f"{path}.subresources.scale.statusReplicasPath"))
            elif not st.startswith(".status."):
                causes.append(field_invalid(f"{path}.subresources.scale.statusReplicasPath", st,
                                            "should be a json path under .status"))
    return causes


def structural_errors(schema: Any, path: str) -> list[Cause]:
    """kube's structural schema checks (``apiextensions/structuralschema``), the common ones: every
    specified field has a ``type`` (unless it is int-or-string or preserves unknown fields), the
    root is an object, ``properties`` and ``additionalProperties`` exclude each other, ``metadata``
    at the root may only restrict name and generateName, preserve-unknown-fields is true or unset,
    and the CEL rules compile."""
    out: list[Cause] = []
    if not isinstance(schema, dict):
        return [field_invalid(path, schema, "must be an object")]
    if schema.get("type") != "object":
        if not schema.get("type"):
            out.append(field_required(f"{path}.type", "must not be empty at the root"))
        else:
            out.append(field_invalid(f"{path}.type", schema.get("type"), "must be object at the root"))
    meta = (schema.get("properties") or {}).get("metadata") if isinstance(schema.get("properties"), dict) else None
    if isinstance(meta, dict) and (set(meta) - {"type", "properties"}
                                   or set(meta.get("properties") or {}) - {"name", "generateName"}):
        out.append(field_forbidden(f"{path}.properties[metadata]", "must not specify anything other than name "
                                   "and generateName, but metadata is implicitly specified"))
    _walk_schema(schema, path, out, root=True)
    return out


def _walk_schema(s: Any, path: str, out: list[Cause], *, root: bool = False) -> None:
    if not isinstance(s, dict) or len(out) > 100:
        return
    t = s.get("type")
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    preserve = s.get("x-kubernetes-preserve-unknown-fields")
    if preserve is not None and preserve is not True:
        out.append(field_invalid(f"{path}.x-kubernetes-preserve-unknown-fields", preserve, "must be true or undefined"))
    if t is not None and t not in _TYPES:
        out.append(field_unsupported(f"{path}.type", t, list(_TYPES)))
    if not t and not int_or_string and preserve is not True and not root:
        out.append(field_required(f"{path}.type", "must not be empty for specified object fields"
                                  if "properties" in s else "must not be empty for specified array items"
                                  if path.endswith(".items") else "must not be empty for specified fields"))
    if int_or_string and t:
        out.append(field_forbidden(f"{path}.type", "must be empty if x-kubernetes-int-or-string is true"))
    if "properties" in s and isinstance(s.get("additionalProperties"), dict):
        out.append(field_forbidden(f"{path}.additionalProperties", "additionalProperties and properties are "
                                                                    "mutual exclusive"))
    if s.get("x-kubernetes-embedded-resource") is True and t != "object":
        out.append(field_invalid(f"{path}.type", t or "", "must be object if x-kubernetes-embedded-resource is true"))
    if "$ref" in s:
        out.append(field_forbidden(f"{path}.$ref", "$ref is not supported"))
    lt = s.get("x-kubernetes-list-type")
    if lt is not None:
        if lt not in ("atomic", "set", "map"):
            out.append(field_unsupported(f"{path}.x-kubernetes-list-type", lt, ["atomic", "set", "map"]))
        if t != "array":
            out.append(field_invalid(f"{path}.type", t or "", "must be array if x-kubernetes-list-type is specified"))
        if lt == "map" and not s.get("x-kubernetes-list-map-keys"):
            out.append(field_required(f"{path}.x-kubernetes-list-map-keys", "must not be empty if "
                                      "x-kubernetes-list-type is map"))
    if "default" in s and root:
        out.append(field_forbidden(f"{path}.default", "must not be set at the root"))
    if "pattern" in s:
        try:
            re.compile(str(s["pattern"]))
        except re.error as e:
            out.append(field_invalid(f"{path}.pattern", s["pattern"], f"must be a valid regular expression, but "
                                                                      f"isn't: {e}"))
    rules = s.get("x-kubernetes-validations")
    if isinstance(rules, list):
        from ._cel import CelError, compile_cel
        for i, r in enumerate(rules):
            rpath = f"{path}.x-kubernetes-validations[{i}]"
            rule = r.get("rule") if isinstance(r, dict) else None
            if not isinstance(rule, str) or not rule:
                out.append(field_required(f"{rpath}.rule"))
                continue
            if len(rule) > MAX_RULE_LENGTH:
                out.append(Cause("FieldValueForbidden", "Forbidden: estimated rule cost exceeds budget by factor of "
                                 "more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and "
                                 "maxLength where arrays, maps, and strings are declared)", f"{rpath}.rule"))
                continue
            try:
                compile_cel(rule, ("self", "oldSelf"))
            except CelError as e:
                out.append(field_invalid(f"{rpath}.rule", rule, f"compilation failed: {e}"))
            mexpr = r.get("messageExpression")
            if isinstance(mexpr, str) and mexpr:
                try:
                    compile_cel(mexpr, ("self", "oldSelf"))
                except CelError as e:
                    out.append(field_invalid(f"{rpath}.messageExpression", mexpr,
                                             f"messageExpression compilation failed: {e}"))
            reason = r.get("reason")
            if reason is not None and reason not in ("FieldValueInvalid", "FieldValueForbidden",
                                                     "FieldValueRequired", "FieldValueDuplicate"):
                out.append(field_unsupported(f"{rpath}.reason", reason, ["FieldValueDuplicate",
                                             "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"]))
    props = s.get("properties")
    if isinstance(props, dict):
        for k, v in props.items():
            _walk_schema(v, f"{path}.properties[{k}]", out)
    items = s.get("items")
    if isinstance(items, dict):
        _walk_schema(items, f"{path}.items", out)
    elif t == "array" and items is None:
        out.append(field_required(f"{path}.items", "must be specified"))
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        _walk_schema(extra, f"{path}.additionalProperties", out)


# ---- defaulting ------------------------------------------------------------------------------------


def apply_defaults(obj: Any, schema: Any) -> None:
    """Set, in place, the ``default:`` of every absent property whose parent exists (kube's
    structural defaulting, applied on decode: on writes and on reads of stored objects)."""
    if not isinstance(schema, dict):
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for k, sub in props.items():
                if isinstance(sub, dict) and k not in obj and "default" in sub:
                    obj[k] = copy.deepcopy(sub["default"])
                if k in obj and obj[k] is not None:
                    apply_defaults(obj[k], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and isinstance(props, dict) is False:
            for v in obj.values():
                apply_defaults(v, extra)
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for v in obj:
                apply_defaults(v, items)


# ---- value validation --------------------------------------------------------------------------------

_FORMAT_CHECKS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"),
    "ipv4": re.compile(r"^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)$"),
    "hostname": re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}"
                           r"[a-zA-Z0-9])?)*$"),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "date-time": re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"),
    "byte": re.compile(r"^[A-Za-z0-9+/]*={0,2}$"),
}
_FORMAT_CHECKS["datetime"] = _FORMAT_CHECKS["date-time"]


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _num(v: float) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


class _Validator:
    def __init__(self) -> None:
        self.causes: list[Cause] = []
        self.cel_jobs: list[tuple[Any, Mapping[str, Any], str, Any, bool]] = []
        self.evaluations = 0

    def value(self, v: Any, s: Mapping[str, Any], path: str, old: Any, has_old: bool) -> None:
        if len(self.causes) >= 100:
            return
        if has_old and path and v == old:
            return  # kube's validation ratcheting: an unchanged value is not validated again
        t = s.get("type")
        if v is None:
            if s.get("nullable") is True:
                return
            if t:
                self.causes.append(Cause("FieldValueTypeInvalid", f'Invalid value: "null": {path} in body must be of '
                                         f'type {t}: "null"', path))
            return
        actual = _json_type(v)
        if s.get("x-kubernetes-int-or-string") is True:
            if actual not in ("integer", "string"):
                self.causes.append(Cause("FieldValueTypeInvalid", f'Invalid value: "{actual}": {path} in body must '
                                         f'be of type integer,string: "{actual}"', path))
                return
        elif t and not (t == actual or (t == "number" and actual == "integer")):
            self.causes.append(Cause("FieldValueTypeInvalid", f'Invalid value: "{actual}": {path} in body must be of '
                                     f'type {t}: "{actual}"', path))
            return
        enum = s.get("enum")
        if isinstance(enum, list) and v not in enum:
            self.causes.append(field_unsupported(path, v, [e if isinstance(e, str) else str(e) for e in enum]))
        if actual in ("integer", "number"):
            mx, mn = s.get("maximum"), s.get("minimum")
            if isinstance(mx, (int, float)) and (v >= mx if s.get("exclusiveMaximum") else v > mx):
                less = "less than" if s.get("exclusiveMaximum") else "less than or equal to"
                self.causes.append(field_invalid(path, v, f"{path} in body should be {less} {_num(mx)}"))
            if isinstance(mn, (int, float)) and (v <= mn if s.get("exclusiveMinimum") else v < mn):
                more = "greater than" if s.get("exclusiveMinimum") else "greater than or equal to"
                self.causes.append(field_invalid(path, v, f"{path} in body should be {more} {_num(mn)}"))
            mult = s.get("multipleOf")
            if isinstance(mult, (int, float)) and mult and v % mult:
                self.causes.append(field_invalid(path, v, f"{path} in body should be a multiple of {_num(mult)}"))
        elif actual == "string":
            mxl, mnl = s.get("maxLength"), s.get("minLength")
            if isinstance(mxl, int) and len(v) > mxl:
                self.causes.append(Cause("FieldValueTooLong", f"Too long: may not be more than {mxl} bytes", path))
            if isinstance(mnl, int) and len(v) < mnl:
                self.causes.append(field_invalid(path, v, f"{path} in body should be at least {mnl} chars long"))
            pat = s.get("pattern")
            if isinstance(pat, str):
                try:
                    ok = re.search(pat, v) is not None
                except re.error:
                    ok = True
                if not ok:
                    self.causes.append(field_invalid(path, v, f"{path} in body should match '{pat}'"))
            fmt = s.get("format")
            check = _FORMAT_CHECKS.get(fmt) if isinstance(fmt, str) else None
            if check is not None and not check.match(v):
                self.causes.append(field_invalid(path, v, f"{path} in body must be of type {fmt}: {go_quote(v)}"))
        elif actual == "array":
            mxi, mni = s.get("maxItems"), s.get("minItems")
            if isinstance(mxi, int) and len(v) > mxi:
                self.causes.append(Cause("FieldValueTooMany", f"Too many: {len(v)}: must have at most {mxi} items",
                                         path))
            if isinstance(mni, int) and len(v) < mni:
                self.causes.append(field_invalid(path, len(v), f"{path} in body should have at least {mni} items"))
            self._list_type(v, s, path)
            items = s.get("items")
            if isinstance(items, dict):
                old_by_key = _correlate(old, s) if has_old else {}
                for i, x in enumerate(v):
                    ok, o = _old_item(old_by_key, x, s, i, old)
                    self.value(x, items, f"{path}[{i}]", o, ok)
        elif actual == "object":
            props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
            if s.get("x-kubernetes-embedded-resource") is True:
                for f in ("apiVersion", "kind"):  # kube's embedded object checks
                    if not v.get(f):
                        self.causes.append(field_required(f"{path}.{f}", "must not be empty"))
            for r in s.get("required") or ():
                if r not in v:
                    self.causes.append(field_required(f"{path}.{r}" if path else r))
            mxp, mnp = s.get("maxProperties"), s.get("minProperties")
            if isinstance(mxp, int) and len(v) > mxp:
                self.causes.append(Cause("FieldValueTooMany", f"Too many: {len(v)}: must have at most {mxp} items",
                                         path))
            if isinstance(mnp, int) and len(v) < mnp:
                self.causes.append(field_invalid(path, len(v), f"{path} in body should have at least {mnp} "
                                                               f"properties"))
            extra = s.get("additionalProperties")
            olddict = old if has_old and isinstance(old, dict) else None
            for k, x in v.items():
                if path == "" and k in ("apiVersion", "kind", "metadata"):
                    continue
                sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
                if isinstance(sub, dict):
                    self.value(x, sub, f"{path}.{k}" if path else k,
                               olddict.get(k) if olddict is not None else None, olddict is not None and k in olddict)
        if "x-kubernetes-validations" in s:
            self.cel_jobs.append((v, s, path, old, has_old))

    def _list_type(self, v: list[Any], s: Mapping[str, Any], path: str) -> None:
        lt = s.get("x-kubernetes-list-type")
        if lt == "set":
            seen: list[Any] = []
            for i, x in enumerate(v):
                if x in seen:
                    self.causes.append(field_duplicate(f"{path}[{i}]", x))
                seen.append(x)
        elif lt == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            seen_keys: set[str] = set()
            for i, x in enumerate(v):
                if not isinstance(x, dict):
                    continue
                k = repr([x.get(key) for key in keys])
                if k in seen_keys:
                    inner = ", ".join(f"{go_quote(key)}:{go_quote(x.get(key)) if isinstance(x.get(key), str) else x.get(key)}"
                                      for key in sorted(keys))
                    self.causes.append(Cause("FieldValueDuplicate",
                                             f"Duplicate value: map[string]interface {{}}{{{inner}}}", f"{path}[{i}]"))
                seen_keys.add(k)

    def _cel(self, v: Any, s: Mapping[str, Any], path: str, old: Any, has_old: bool) -> None:
        rules = s.get("x-kubernetes-validations")
        if not isinstance(rules, list):
            return
        from ._cel import CelError, compile_cel
        for r in rules:
            if not isinstance(r, dict) or not isinstance(r.get("rule"), str):
                continue
            rule = r["rule"]
            transition = re.search(r"\boldSelf\b", rule) is not None
            if transition and not has_old:
                continue  # a transition rule runs on updates only, where the old value exists
            self.evaluations += 1
            try:
                ok = compile_cel(rule, ("self", "oldSelf")).evaluate({"self": v, "oldSelf": old})
            except CelError as e:
                self.causes.append(field_invalid(path, _json_type(v), f"{_eval_error(str(e))} evaluating rule: "
                                                                      f"{rule}"))
                continue
            if ok is True:
                continue
            message = r.get("message") or f"failed rule: {rule}"
            mexpr = r.get("messageExpression")
            if isinstance(mexpr, str) and mexpr:
                try:
                    m = compile_cel(mexpr, ("self", "oldSelf")).evaluate({"self": v, "oldSelf": old})
                    if isinstance(m, str) and m.strip():
                        message = m
                except CelError:
                    pass
            fpath = path
            fp = r.get("fieldPath")
            if isinstance(fp, str) and fp:
                fpath = (path + fp) if path else fp.lstrip(".")
            reason = r.get("reason") or "FieldValueInvalid"
            if reason == "FieldValueRequired":
                self.causes.append(Cause(reason, f"Required value: {message}", fpath))
            elif reason == "FieldValueForbidden":
                self.causes.append(Cause(reason, f"Forbidden: {message}", fpath))
            elif reason == "FieldValueDuplicate":
                self.causes.append(Cause(reason, f"Duplicate value: {message}", fpath))
            else:
                self.causes.append(field_invalid(fpath, _json_type(v), message))


def _eval_error(msg: str) -> str:
    """cel-cpp's runtime error as cel-go words it (kube's messages come from cel-go)."""
    m = re.search(r'Key not found in map : "?([^"]*)"?', msg)
    if m:
        return f"no such key: {m.group(1)}"
    m = re.search(r"No matching overloads found : (.*)", msg)
    if m:
        return f"no such overload: {m.group(1)}"
    return re.sub(r"^[A-Z_]+: ", "", msg)


def go_quote(v: str) -> str:
    import json
    return json.dumps(v, ensure_ascii=False)


def _correlate(old: Any, s: Mapping[str, Any]) -> dict[str, Any]:
    if s.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return {}
    keys = s.get("x-kubernetes-list-map-keys") or []
    return {repr([x.get(k) for k in keys]): x for x in old if isinstance(x, dict)}


def _old_item(by_key: dict[str, Any], x: Any, s: Mapping[str, Any], i: int, old: Any) -> tuple[bool, Any]:
    """The old value of list item ``x`` for transition rules: by map keys for list-type map (kube
    correlates only those; other lists' items have no old value)."""
    if not by_key or not isinstance(x, dict):
        return False, None
    k = repr([x.get(key) for key in s.get("x-kubernetes-list-map-keys") or []])
    return (k in by_key), by_key.get(k)


def validate_custom(obj: dict[str, Any], old: dict[str, Any] | None, schema: Mapping[str, Any]) -> list[Cause]:
    """The schema's value checks and CEL rules on a custom resource (root path ``""``)."""
    v = _Validator()
    v.value(obj, schema, "", old, old is not None)
    if v.cel_jobs:
        if any(c.reason == "FieldValueTypeInvalid" for c in v.causes):
            # kube's hasBlockingErr: rules are not run on a value of the wrong type.
            v.causes.append(Cause("FieldValueInvalid", 'Invalid value: "null": some validation rules were not '
                                  "checked because the object was invalid; correct the existing errors to "
                                  "complete validation", "<nil>"))
        else:
            for job in v.cel_jobs:
                if v.evaluations > MAX_RULE_EVALUATIONS:
                    v.causes.append(field_invalid("", "object", _OUT_OF_BUDGET))
                    break
                v._cel(*job)
    # kube reports the root's own fields without a leading dot; a root CEL rule's path is "<root>".
    return v.causes


# ---- the strategy ---------------------------------------------------------------------------------


class CustomResourceStrategy(Strategy):
    """A custom resource's write (kube's ``customResourceStrategy``)."""

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = validate_object_meta(obj.get("metadata"), namespaced=rdef.namespaced, name_rule=rdef.name_rule)
        if rdef.schema is not None:
            causes.extend(validate_custom(obj, old, rdef.schema))
        return causes

    def validate_subresource(self, subresource: str, obj: dict[str, Any], old: dict[str, Any],
                             rdef: ResourceDef) -> list[Cause]:
        return self.validate(obj, old, rdef)


class CrdStrategy(Strategy):
    """The CustomResourceDefinition kind: its own validation, status reset on create, and the
    cleanup finalizer a delete adds (kube's CRD storage: the delete marks it, the finalizing
    controller deletes the custom resources, then the CRD goes)."""

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": [storage_version(obj)]
                         if storage_version(obj) else []}

    def deletion_is_graceful(self, obj: dict[str, Any]) -> bool:
        meta = obj.setdefault("metadata", {})
        if not meta.get("deletionTimestamp"):
            fins = list(meta.get("finalizers") or [])
            if CLEANUP_FINALIZER not in fins:
                fins.append(CLEANUP_FINALIZER)
            meta["finalizers"] = fins
        return True

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = validate_crd(obj, old)
        if old is not None:
            for f, label in (("group", "spec.group"), ("scope", "spec.scope")):
                if (obj.get("spec") or {}).get(f) != (old.get("spec") or {}).get(f):
                    causes.append(field_invalid(label, (obj.get("spec") or {}).get(f), "field is immutable"))
        return causes

    def validate_subresource(self, subresource: str, obj: dict[str, Any], old: dict[str, Any],
                             rdef: ResourceDef) -> list[Cause]:
        return validate_object_meta(obj.get("metadata"), namespaced=False, name_rule="subdomain")
