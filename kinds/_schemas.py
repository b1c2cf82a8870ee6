"""Schemas of the built-in kinds, from the ``kubernetes-validate`` package's bundled JSON schemas.

The package ships, per Kubernetes version, one ``_definitions.json`` holding every OpenAPI
definition of that release (``io.k8s.api.core.v1.ConfigMap``, ``io.k8s.apimachinery.pkg.apis.meta.v1
.ObjectMeta``, ...), converted to JSON Schema: every type is made nullable (``["string", "null"]``),
``$ref`` points at ``#/$defs/<name>``, ``apiVersion``/``kind`` of top-level kinds carry an ``enum``,
and ``IntOrString``/``Quantity`` became ``oneOf``. We read that one file (nothing of the package is
imported: importing it would pull in jsonschema) and turn it back into the OpenAPI v2 shape the
apiserver publishes:

- ``type`` is a single string again (the first non-``"null"`` entry);
- ``$ref`` is ``#/definitions/<name>``, names as in the package (``definitions()`` is keyed by them);
- the ``enum`` the package added to ``apiVersion``/``kind`` of kinds is dropped;
- ``IntOrString`` is ``{"type": "string", "format": "int-or-string"}`` and ``Quantity`` is
  ``{"type": "string"}``, as in the apiserver's ``/openapi/v2`` (the v3 writer turns them into
  ``oneOf`` again).

Everything else (descriptions, ``properties``, ``required``, ``items``, ``additionalProperties``, the
``x-kubernetes-*`` extensions such as patch strategies, list types and group-version-kinds) is kept.

Loading happens once: ``load_schemas()``, which the server runs at start in a worker thread, off the
trio loop (about 110 ms: the 1.33 file, 1.4 MB, then the older releases for the definitions 1.33
dropped). Importing reads nothing; a lookup before ``load_schemas()`` (tools, unit tests) loads then.

``patch_schema(group, version, kind)`` gives the strategic-merge-patch view of a kind: an object
with ``child(field)`` and ``list_strategy()`` (the ``PatchSchema`` protocol of ``actors._patch``,
satisfied by duck typing; ``bus`` imports nothing of ours).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "KUBE_SCHEMA_VERSION",
    "REF_PREFIX",
    "SchemaPatchNode",
    "definition_name",
    "definitions",
    "load_schemas",
    "patch_schema",
    "ref_name",
    "resolve",
    "schema_for",
]

KUBE_SCHEMA_VERSION = "1.33.0"
"""The Kubernetes release whose bundled schemas we serve (kubernetes-validate ships 1.25–1.37).

1.33 is the newest of the kubectl range jetkube targets (1.27–1.33); it is a superset of the
built-in kinds' fields of 1.31 and 1.32 (``SelfSubjectReview`` is ``authentication.k8s.io/v1``
since 1.28)."""

REF_PREFIX = "#/definitions/"
"""How ``$ref`` is written in the schemas returned here (swagger 2.0 style, as ``/openapi/v2``)."""

_FALLBACK_VERSIONS = ("1.32.0", "1.31.0", "1.30.0", "1.29.0", "1.28.0", "1.27.0")
"""Older releases whose definitions fill in what 1.33 removed but older kubectl still asks for
(``authentication.k8s.io/v1beta1`` ``SelfSubjectReview`` of ``kubectl auth whoami`` 1.27, ...):
about 120 definitions, under their own names; the newest release that has a name wins."""

_NEWER_DEFINITIONS = (("1.34.0", "io.k8s.api.admissionregistration.v1beta1."),)
"""Definitions taken from a newer release, for kinds served before 1.33 has them:
``admissionregistration.k8s.io/v1beta1`` MutatingAdmissionPolicy(Binding), beta (and served by
kube) since 1.34. Only names 1.33 lacks are added."""

_PACKAGE = "kubernetes_validate"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

# The package dropped these two descriptions when it rewrote the types as ``oneOf``.
_SPECIAL: dict[str, dict[str, Any]] = {
    _INT_OR_STRING: {
        "description": "IntOrString holds either an int32 or a string; in JSON and YAML it is written "
                       "as the inner value, so a field of this type accepts a number or a name.",
        "format": "int-or-string",
        "type": "string",
    },
    _QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number, written as a string "
                       "such as \"100m\", \"1Gi\" or \"1.5\" (a plain number is accepted too).",
        "type": "string",
    },
}


# --- loading -------------------------------------------------------------------------------


def _data_file(version: str = KUBE_SCHEMA_VERSION) -> str:
    """Path of the package's ``_definitions.json`` of a release, found without importing the package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {_PACKAGE!r} package (kubernetes-validate) is not installed")
    base = next(iter(spec.submodule_search_locations))
    return os.path.join(base, "kubernetes-json-schema", f"v{version}-local", "_definitions.json")


def _norm_type(value: Any) -> Any:
    if isinstance(value, list):
        for t in value:
            if t != "null":
                return t
        return None
    return value


def _norm(node: Any) -> Any:
    """Normalize one schema node (and its sub-schemas) in place; returns it."""
    if not isinstance(node, dict):
        return node
    if "type" in node:
        t = _norm_type(node["type"])
        if t is None:
            del node["type"]
        else:
            node["type"] = t
    ref = node.get("$ref")
    if isinstance(ref, str):
        node["$ref"] = REF_PREFIX + ref.rsplit("/", 1)[-1]
    props = node.get("properties")
    if isinstance(props, dict):
        for sub in props.values():
            _norm(sub)
    for key in ("items", "additionalProperties", "not"):
        sub = node.get(key)
        if isinstance(sub, dict):
            _norm(sub)
        elif key == "items" and isinstance(sub, list):
            for s in sub:
                _norm(s)
    for key in ("allOf", "anyOf", "oneOf"):
        subs = node.get(key)
        if isinstance(subs, list):
            for s in subs:
                _norm(s)
    return node


class _Data:
    __slots__ = ("by_gvk", "defs")

    def __init__(self, defs: dict[str, dict[str, Any]], by_gvk: dict[tuple[str, str, str], str]) -> None:
        self.defs = defs
        self.by_gvk = by_gvk


def _read(version: str) -> dict[str, Any]:
    with open(_data_file(version), "rb") as f:
        raw = msgspec.json.decode(f.read())
    return raw.get("$defs") or raw.get("definitions") or {}


def _add(defs: dict[str, dict[str, Any]], by_gvk: dict[tuple[str, str, str], str], src: dict[str, Any]) -> None:
    """Add the definitions of ``src`` that ``defs`` lacks (normalized), indexing new GVKs."""
    fresh: dict[tuple[str, str, str], str] = {}
    for name, schema in src.items():
        if name in defs:
            continue
        if name in _SPECIAL:
            defs[name] = dict(_SPECIAL[name])
            continue
        schema = _norm(schema)
        gvks = schema.get("x-kubernetes-group-version-kind")
        if isinstance(gvks, list) and gvks:
            props = schema.get("properties")
            if isinstance(props, dict):
                for field in ("apiVersion", "kind"):
                    sub = props.get(field)
                    if isinstance(sub, dict):
                        sub.pop("enum", None)
            for gvk in gvks:
                key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
                # Shared option types (DeleteOptions, WatchEvent) list many GVKs; a kind's own
                # definition lists exactly one and wins. A newer release indexed first keeps its GVKs.
                if key not in by_gvk and (key not in fresh or len(gvks) == 1):
                    fresh[key] = name
        defs[name] = schema
    by_gvk.update(fresh)


@functools.cache
def _load() -> _Data:
    defs: dict[str, dict[str, Any]] = {}
    by_gvk: dict[tuple[str, str, str], str] = {}
    try:
        primary = _read(KUBE_SCHEMA_VERSION)
    except FileNotFoundError as e:
        raise RuntimeError(f"kubernetes-validate has no schemas of Kubernetes {KUBE_SCHEMA_VERSION} "
                           f"(install kubernetes-validate>=1.33): {e}") from None
    _add(defs, by_gvk, primary)
    for version, prefix in _NEWER_DEFINITIONS:
        try:
            newer = _read(version)
        except FileNotFoundError:
            continue
        _add(defs, by_gvk, {k: v for k, v in newer.items() if k.startswith(prefix)})
    for version in _FALLBACK_VERSIONS:
        try:
            _add(defs, by_gvk, _read(version))
        except FileNotFoundError:
            continue
    return _Data(defs, by_gvk)


def load_schemas() -> None:
    """Read and normalise the bundled schemas now (about 110 ms of blocking file and JSON work).

    The server calls this once at start, in a worker thread (``trio.to_thread.run_sync``), before it
    serves: no request, and no actor, ever pays for it on the trio loop. Later calls return at once.
    Importing this module reads nothing."""
    _load()


# --- lookups -------------------------------------------------------------------------------


def definitions() -> dict[str, dict[str, Any]]:
    """All definitions of the 1.33 release (plus those of 1.27–1.32 that 1.33 dropped), keyed by
    their OpenAPI names (``io.k8s.api.core.v1.ConfigMap``). Shared and cached: do not mutate."""
    return _load().defs


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition name of a kind (``("", "v1", "ConfigMap")`` → ``io.k8s.api.core.v1.ConfigMap``)."""
    return _load().by_gvk.get((group, version, kind))


def schema_for(group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The schema of a built-in kind, or None; its ``$ref`` s resolve in ``definitions()``.
    Shared and cached: do not mutate."""
    d = _load()
    name = d.by_gvk.get((group, version, kind))
    return d.defs.get(name) if name else None


def ref_name(ref: str) -> str:
    """The definition name a ``$ref`` points at, whatever its prefix
    (``#/definitions/``, ``#/components/schemas/``, ``#/$defs/``)."""
    return ref.rsplit("/", 1)[-1]


def resolve(schema: Any, defs: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Follow ``$ref`` chains to the schema they name and merge ``allOf`` members into one view of it
    (the wrapper's own keys win, then the members' in order; ``properties`` are united). The one
    ``$ref`` resolver: field validation, patch schemas and OpenAPI all read schemas through it.

    Unknown references, non-objects and reference cycles resolve to ``{}``.
    """
    if defs is None:
        defs = definitions()
    for _ in range(64):
        if not isinstance(schema, Mapping):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        schema = defs.get(ref_name(ref), {})
    else:
        return {}
    all_of = schema.get("allOf")
    if not (isinstance(all_of, list) and all_of):
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    props: dict[str, Any] = dict(merged.get("properties") or {})
    for part in all_of:
        for k, v in resolve(part, defs).items():
            if k == "properties" and isinstance(v, Mapping):
                for pk, pv in v.items():
                    props.setdefault(pk, pv)
            else:
                merged.setdefault(k, v)
    if props:
        merged["properties"] = props
    return merged


# --- strategic merge patch view ------------------------------------------------------------


class SchemaPatchNode:
    """A ``PatchSchema`` (see ``actors._patch``) backed by an OpenAPI schema.

    A node describes one field: ``list_strategy()`` reads ``x-kubernetes-patch-strategy`` and
    ``x-kubernetes-patch-merge-key`` from the field's own schema (where the apiserver puts them,
    next to the ``$ref``); ``child(name)`` follows ``$ref``, then a list's ``items``, then the
    member ``name`` of ``properties`` (or the value schema of a map's ``additionalProperties``).
    Unknown members are an empty node with no strategies. Children are cached per node.
    """

    __slots__ = ("_children", "_defs", "_extra", "_props", "_schema")

    def __init__(self, schema: Mapping[str, Any] | None, defs: Mapping[str, Any] | None = None) -> None:
        self._schema: Mapping[str, Any] = schema if isinstance(schema, Mapping) else {}
        self._defs = definitions() if defs is None else defs
        self._props: Mapping[str, Any] | None = None  # resolved lazily by _members()
        self._extra: SchemaPatchNode | None = None
        # Only members named in ``properties`` are cached (a bounded set): map keys and unknown
        # fields come from request bodies and must not grow this shared, long-lived tree.
        self._children: dict[str, SchemaPatchNode] = {}

    def list_strategy(self) -> tuple[str | None, str | None]:
        s = self._schema
        strategy = s.get("x-kubernetes-patch-strategy")
        key = s.get("x-kubernetes-patch-merge-key")
        if strategy is None and key is None and ("$ref" in s or "allOf" in s):
            # A bare reference carries no extensions itself; the target may (rare).
            target = resolve(s, self._defs)
            strategy = target.get("x-kubernetes-patch-strategy")
            key = target.get("x-kubernetes-patch-merge-key")
        return (strategy if isinstance(strategy, str) else None, key if isinstance(key, str) else None)

    def _members(self) -> Mapping[str, Any]:
        if self._props is None:
            target = resolve(self._schema, self._defs)
            items = target.get("items")
            if isinstance(items, Mapping) and (target.get("type") == "array" or "properties" not in target):
                target = resolve(items, self._defs)
            props = target.get("properties")
            self._props = props if isinstance(props, Mapping) else {}
            extra = target.get("additionalProperties")
            self._extra = SchemaPatchNode(extra, self._defs) if isinstance(extra, Mapping) else None
        return self._props

    def child(self, field: str) -> SchemaPatchNode | _EmptyNode:
        cached = self._children.get(field)
        if cached is not None:
            return cached
        sub = self._members().get(field)
        if isinstance(sub, Mapping):
            node = self._children[field] = SchemaPatchNode(sub, self._defs)
            return node
        return self._extra if self._extra is not None else _EMPTY_NODE

    def __repr__(self) -> str:
        return f"SchemaPatchNode({sorted(self._schema)!r})"


class _EmptyNode:
    """No strategies anywhere (a field the schema does not describe)."""

    __slots__ = ()

    def child(self, field: str) -> _EmptyNode:
        return self

    def list_strategy(self) -> tuple[str | None, str | None]:
        return None, None

    def __repr__(self) -> str:
        return "SchemaPatchNode(<empty>)"


_EMPTY_NODE = _EmptyNode()


@functools.cache
def patch_schema(group: str, version: str, kind: str) -> SchemaPatchNode:
    """The strategic-merge-patch schema of a built-in kind (no strategies for unknown kinds)."""
    return SchemaPatchNode(schema_for(group, version, kind) or {}, definitions())
