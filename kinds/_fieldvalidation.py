"""Server-side field validation (``fieldValidation=Strict|Warn|Ignore``): pure functions.

The apiserver decodes request bodies strictly (``sigs.k8s.io/json`` ``UnmarshalStrict``) and
collects two kinds of problems, each named by the field's path in the body:

- ``unknown field "spec.foo"``: a member that the kind's type does not have;
- ``duplicate field "metadata.name"``: an object member given twice.

A YAML body is checked by go-yaml's strict decoder first (``YAMLToJSONStrict``), whose one error
lists every repeated mapping key by line (:func:`yaml_strict_error`); a JSON patch is decoded
strictly as a list of operations, its errors prefixed ``json patch `` (:func:`body_strict_errors`).
The gateway finds these in the raw body and carries them, worded, in ``Request.strict_errors``;
the resource actor puts them ahead of the unknown fields and decides, in
:func:`field_validation_outcome`.

Paths are the member names joined with ``.``, list positions written ``[i]``
(``spec.containers[0].foo``); a top-level member is just its name. The decoder keeps the first
100 distinct problems.

``Strict`` turns them into an error, ``Warn`` into one ``Warning`` header each (and the request
goes on), ``Ignore`` drops unknown members silently. The error texts, from
``k8s.io/apimachinery/pkg/runtime`` ``strictDecodingError`` and
``k8s.io/apiserver/pkg/endpoints/handlers``:

- create/update (400 BadRequest, ``transformDecodeError``)::

      ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "spec.foo", unknown field "bar"

- patch (json, merge, strategic; 422 Invalid on field ``patch``, ``patch.go``)::

       "" is invalid: patch: Invalid value: "<the patched object as JSON>": strict decoding error: unknown field "foo"

- ``Warn``: the header value ``299 - "unknown field \\"spec.foo\\""`` per problem.

Which members are known comes from the kind's OpenAPI schema (``kinds._schemas``, or a CRD's
``openAPIV3Schema``): ``properties`` are known; ``additionalProperties`` makes a map whose keys are
all fine (their values are checked against it); ``x-kubernetes-preserve-unknown-fields: true``
keeps everything; list items are checked against ``items``. ``apiVersion`` and ``kind`` are always
known at the root, and the root's ``metadata`` is checked against ``ObjectMeta``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from ._errors import BadRequest, Cause, Invalid
from ._schemas import definitions as _builtin_definitions
from ._schemas import resolve

__all__ = [
    "MAX_ERRORS",
    "OBJECT_META",
    "YAML_ERRORS",
    "body_duplicate_fields",
    "body_strict_errors",
    "duplicate_fields",
    "field_validation_outcome",
    "go_quote",
    "go_value",
    "prune_unknown_fields",
    "split_strict_warnings",
    "strict_create_message",
    "strict_decoding_error",
    "strict_errors",
    "strict_patch_message",
    "unknown_fields",
    "warning_header",
    "yaml_duplicate_key",
    "yaml_strict_error",
]

MAX_ERRORS = 100
"""The decoder stops collecting strict errors after this many (``saveStrictError``)."""

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
"""Definition name of ``ObjectMeta``; the root ``metadata`` of every kind is checked against it."""

_MAX_DEPTH = 256


# --- quoting, as Go's strconv.Quote -------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """``strconv.Quote``: double quotes, Go escapes for control and non-printable characters."""
    out = ['"']
    for ch in s:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x7F or ch.isprintable():
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --- schema walking ------------------------------------------------------------------------


_resolve = resolve  # the one $ref resolver (kinds._schemas)


def _alternatives(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for key in ("anyOf", "oneOf"):
        subs = schema.get(key)
        if isinstance(subs, list):
            out.extend(_resolve(s, defs) for s in subs)
    return out


class _Walker:
    __slots__ = ("defs", "doomed", "found", "limit", "open_empty", "seen")

    def __init__(self, defs: Mapping[str, Any], open_empty: bool, limit: int, *, prune: bool = False) -> None:
        self.defs = defs
        self.open_empty = open_empty
        self.limit = limit
        self.found: list[str] = []
        self.seen: set[str] = set()
        # With prune: every (object, member) to drop, found or not past ``limit``.
        self.doomed: list[tuple[dict[str, Any], str]] | None = [] if prune else None

    def report(self, path: str, owner: dict[str, Any] | None = None, key: str = "") -> None:
        if self.doomed is not None and owner is not None:
            self.doomed.append((owner, key))
        if len(self.found) < self.limit and path not in self.seen:
            self.seen.add(path)
            self.found.append(path)

    def full(self) -> bool:
        return self.doomed is None and len(self.found) >= self.limit

    def value(self, value: Any, schema: Any, path: str, depth: int) -> None:
        if self.full() or depth > _MAX_DEPTH:
            return
        if isinstance(value, dict):
            self.object(value, _resolve(schema, self.defs), path, depth)
        elif isinstance(value, list):
            s = _resolve(schema, self.defs)
            if s.get("x-kubernetes-preserve-unknown-fields") is True and "items" not in s:
                return
            items = s.get("items")
            if isinstance(items, list):  # tuple form: position i has its own schema
                for i, v in enumerate(value):
                    if i < len(items):
                        self.value(v, items[i], f"{path}[{i}]", depth + 1)
            elif isinstance(items, Mapping):
                for i, v in enumerate(value):
                    if isinstance(v, (dict, list)):
                        self.value(v, items, f"{path}[{i}]", depth + 1)

    def object(self, obj: dict[str, Any], s: Mapping[str, Any], path: str, depth: int,
               implicit: Mapping[str, Any] | None = None) -> None:
        props = s.get("properties")
        props = props if isinstance(props, Mapping) else {}
        extra = s.get("additionalProperties")
        preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
        alternatives = _alternatives(s, self.defs) if not props else []
        if s.get("x-kubernetes-embedded-resource") is True and implicit is None:
            implicit = self._embedded()
        # ``type: object`` and nothing else: an opaque value in the Go types (RawExtension,
        # FieldsV1, JSON); in a CRD's structural schema it holds no fields at all. Any other
        # (or no) type is a type mismatch or an untyped value, not an unknown-field matter.
        if (not props and not alternatives and extra is None and not preserve and implicit is None
                and (self.open_empty or s.get("type") != "object")):
            return
        prefix = f"{path}." if path else ""
        for key, v in obj.items():
            sub: Any = None
            if implicit is not None and key in implicit:
                sub = implicit[key]
            elif key in props:
                sub = props[key]
            else:
                for alt in alternatives:
                    alt_props = alt.get("properties")
                    if isinstance(alt_props, Mapping) and key in alt_props:
                        sub = alt_props[key]
                        break
            if sub is None:
                if isinstance(extra, Mapping):
                    sub = extra
                elif extra is True or preserve:
                    continue
                else:
                    self.report(prefix + key, obj, key)
                    continue
            if isinstance(v, (dict, list)):
                self.value(v, sub, prefix + key, depth + 1)

    def _embedded(self) -> dict[str, Any]:
        meta = self.defs.get(OBJECT_META)
        return {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": meta if isinstance(meta, Mapping) else {"x-kubernetes-preserve-unknown-fields": True}}


# --- the same walk over compiled schema nodes (the built-in definitions) ------------------------
#
# A write of a Pod walks some 300 schema nodes; the plain walk resolves each ``$ref`` and reads
# each node's keys again for every member of every request. For the built-in definitions (shared,
# never mutated) each node is read once into a small record, cached by the node's identity (the
# cache holds the node, so an identity is never reused while cached; bounded, cleared when full).
# The walk over records finds the same paths in the same order (a property test compares them).

_FAST = True  # tests compare the compiled walks against the plain ones
_CACHE_MAX = 50_000


class _Node:
    """One schema node as the unknown-field walk reads it (after ``$ref``/``allOf``)."""

    __slots__ = ("alt_props", "bare", "embedded", "extra", "extra_map", "is_object", "items_list", "items_map",
                 "list_open", "preserve", "props")

    def __init__(self, s: Mapping[str, Any], defs: Mapping[str, Any]) -> None:
        props = s.get("properties")
        self.props: Mapping[str, Any] = props if isinstance(props, Mapping) else {}
        self.extra = s.get("additionalProperties")
        self.extra_map = isinstance(self.extra, Mapping)
        self.preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
        alts = _alternatives(s, defs) if not self.props else []
        self.alt_props = [a["properties"] for a in alts if isinstance(a.get("properties"), Mapping)]
        self.embedded = s.get("x-kubernetes-embedded-resource") is True
        self.bare = not self.props and not alts and self.extra is None and not self.preserve
        self.is_object = s.get("type") == "object"
        self.list_open = self.preserve and "items" not in s
        items = s.get("items")
        self.items_list = items if isinstance(items, list) else None
        self.items_map = items if isinstance(items, Mapping) else None


_nodes: dict[int, tuple[Any, _Node]] = {}


def _node(schema: Any, defs: Mapping[str, Any]) -> _Node:
    got = _nodes.get(id(schema))
    if got is not None and got[0] is schema:
        return got[1]
    if len(_nodes) >= _CACHE_MAX:
        _nodes.clear()
    node = _Node(_resolve(schema, defs), defs)
    _nodes[id(schema)] = (schema, node)
    return node


class _FastWalker(_Walker):
    """:class:`_Walker` over :class:`_Node` records (built-in definitions only)."""

    __slots__ = ()

    def value(self, value: Any, schema: Any, path: str, depth: int) -> None:
        if (self.doomed is None and len(self.found) >= self.limit) or depth > _MAX_DEPTH:
            return
        n = _node(schema, self.defs)
        if isinstance(value, dict):
            self.object(value, n, path, depth)  # type: ignore[arg-type]
        elif isinstance(value, list):
            if n.list_open:
                return
            if n.items_list is not None:
                items = n.items_list
                for i, v in enumerate(value):
                    if i < len(items):
                        self.value(v, items[i], f"{path}[{i}]", depth + 1)
            elif n.items_map is not None:
                items_map = n.items_map
                for i, v in enumerate(value):
                    if isinstance(v, (dict, list)):
                        self.value(v, items_map, f"{path}[{i}]", depth + 1)

    def object(self, obj: dict[str, Any], n: Any, path: str, depth: int,  # type: ignore[override]
               implicit: Mapping[str, Any] | None = None) -> None:
        if not isinstance(n, _Node):
            n = _Node(n, self.defs)  # the root (a one-off view)
        if n.embedded and implicit is None:
            implicit = self._embedded()
        if n.bare and implicit is None and (self.open_empty or not n.is_object):
            return
        props, alt_props, extra = n.props, n.alt_props, n.extra
        prefix = f"{path}." if path else ""
        for key, v in obj.items():
            sub: Any = None
            if implicit is not None and key in implicit:
                sub = implicit[key]
            elif key in props:
                sub = props[key]
            else:
                for ap in alt_props:
                    if key in ap:
                        sub = ap[key]
                        break
            if sub is None:
                if n.extra_map:
                    sub = extra
                elif extra is True or n.preserve:
                    continue
                else:
                    self.report(prefix + key, obj, key)
                    continue
            if isinstance(v, (dict, list)):
                self.value(v, sub, prefix + key, depth + 1)


def _walker(defs: Mapping[str, Any], open_empty: bool, limit: int, *, prune: bool) -> _Walker:
    if _FAST and defs is _builtin_definitions():
        return _FastWalker(defs, open_empty, limit, prune=prune)
    return _Walker(defs, open_empty, limit, prune=prune)


def unknown_fields(obj: Any, schema: Any, definitions: Mapping[str, Any], *,
                   open_empty_objects: bool = True, limit: int = MAX_ERRORS) -> list[str]:
    """Paths of the members of ``obj`` that ``schema`` does not know, in document order.

    ``obj`` is a decoded request body (the whole object), ``schema`` the kind's schema and
    ``definitions`` what its ``$ref`` s name (the last segment of a reference is the key, so
    ``#/definitions/X``, ``#/components/schemas/X`` and ``#/$defs/X`` all work).

    ``open_empty_objects``: a schema of ``type: object`` with no ``properties``,
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` accepts anything when True
    (built-in kinds: it stands for an opaque Go type such as ``RawExtension``); pass False for a
    CRD's structural schema, where such an object holds no fields.

    At the root ``apiVersion`` and ``kind`` are always known, and ``metadata`` is checked
    against ``ObjectMeta`` (from ``definitions``) unless the schema describes it itself.
    """
    if not isinstance(obj, dict):
        return []
    w = _walker(definitions, open_empty_objects, limit, prune=False)
    _walk_root(w, obj, schema, definitions)
    return w.found


def prune_unknown_fields(obj: Any, schema: Any, definitions: Mapping[str, Any], *,
                         open_empty_objects: bool = True, limit: int = MAX_ERRORS) -> list[str]:
    """Drop, in place, every member of ``obj`` the schema does not know (as the typed decoder
    does under ``Warn`` and ``Ignore``); return the paths of the first ``limit`` of them."""
    if not isinstance(obj, dict):
        return []
    w = _walker(definitions, open_empty_objects, limit, prune=True)
    _walk_root(w, obj, schema, definitions)
    assert w.doomed is not None
    for owner, key in w.doomed:
        owner.pop(key, None)
    return w.found


_walk_roots: dict[int, tuple[Any, _Node, dict[str, Any]]] = {}


def _walk_root(w: _Walker | _FastWalker, obj: dict[str, Any], schema: Any, definitions: Mapping[str, Any]) -> None:
    fast = isinstance(w, _FastWalker)
    if fast:
        # The root's record and its implicit members, once per schema (read only by the walk).
        got = _walk_roots.get(id(schema))
        if got is not None and got[0] is schema:
            w.object(obj, got[1], "", 0, got[2])
            return
    root = _resolve(schema, definitions)
    implicit: dict[str, Any] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
    props = root.get("properties")
    meta_schema = _resolve(props.get("metadata"), definitions) if isinstance(props, Mapping) else {}
    if not isinstance(meta_schema.get("properties"), Mapping):
        meta = definitions.get(OBJECT_META)
        if isinstance(meta, Mapping):
            implicit["metadata"] = meta
    if fast:
        node = _Node(root, definitions)
        if len(_walk_roots) >= _CACHE_MAX:
            _walk_roots.clear()
        _walk_roots[id(schema)] = (schema, node, implicit)
        w.object(obj, node, "", 0, implicit)
        return
    w.object(obj, root, "", 0, implicit)


# --- duplicates ----------------------------------------------------------------------------


class _Dups(dict):  # type: ignore[type-arg]
    """A decoded JSON object that had repeated member names (kept: the last value, as Go)."""

    __slots__ = ("dups",)
    dups: list[str]


def duplicate_fields(raw_json: bytes | str, *, limit: int = MAX_ERRORS) -> list[str]:
    """Paths of the repeated member names in a JSON document (``[]`` for invalid JSON).

    One extra parse of the body with the standard library; call it only under ``Strict``/``Warn``.
    """
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        d = dict(pairs)
        if len(d) == len(pairs):
            return d
        found = True
        seen: set[str] = set()
        dups: list[str] = []
        for k, _ in pairs:
            if k in seen and k not in dups:
                dups.append(k)
            seen.add(k)
        out = _Dups(d)
        out.dups = dups
        return out

    try:
        doc = json.loads(raw_json, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return []
    if not found:
        return []
    paths: list[str] = []

    def walk(node: Any, path: str) -> None:
        if len(paths) >= limit:
            return
        if isinstance(node, dict):
            prefix = f"{path}." if path else ""
            if isinstance(node, _Dups):
                for k in node.dups:
                    if len(paths) < limit:
                        paths.append(prefix + k)
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    walk(v, prefix + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    walk(v, f"{path}[{i}]")

    walk(doc, "")
    return paths


_colon_encoder = msgspec.json.Encoder()
_ESCAPED_COLONS = (b"\\u003a", b"\\u003A")


def body_duplicate_fields(raw_json: bytes, value: Any, *, limit: int = MAX_ERRORS) -> list[str]:
    """:func:`duplicate_fields` of a JSON body that decoded to ``value``, nearly free when it has
    none: the slow exact parse runs only when a count of colons says there may be some.

    Invariant: every member of ``raw_json`` has one ``:`` after its name, and every colon inside
    a string is written ``:`` or ``\\u003a``; re-encoding ``value`` writes one ``:`` per member it
    kept, and the colons of the strings it kept. A repeated member is one ``:`` more in the body
    than in the re-encoding, so equal counts (the common body) prove there is none.
    """
    colons = raw_json.count(b":")
    if not colons:
        return []
    colons += sum(raw_json.count(e) for e in _ESCAPED_COLONS)
    if colons <= _colon_encoder.encode(value).count(b":"):
        return []
    return duplicate_fields(raw_json, limit=limit)


_JSON_PATCH_MEMBERS = frozenset({"op", "path", "from", "value"})


def body_strict_errors(raw_json: bytes, value: Any, *, json_patch: bool = False,
                       limit: int = MAX_ERRORS) -> list[str]:
    """The strict decoding errors of a JSON body, worded as the apiserver: ``duplicate field "a.b"``
    per repeated member (:func:`body_duplicate_fields`, nearly free without any).

    ``json_patch``: the body is a JSON patch, decoded strictly as a list of operations
    (``patch.go`` ``applyJSPatch``): also ``unknown field "[0].foo"`` for a member an operation
    does not have, every error prefixed ``json patch ``, in the order of the operations.
    """
    dups = body_duplicate_fields(raw_json, value, limit=limit)
    if not json_patch:
        return [f"duplicate field {go_quote(p)}" for p in dups]
    if not isinstance(value, list):
        return []
    by_member: dict[str, list[str]] = {}
    for p in dups:  # "[3].value.k" belongs to operation 3's member "value"
        head = p.split(".", 1)[0]
        member = p[len(head) + 1:].split(".", 1)[0].split("[", 1)[0]
        by_member.setdefault(f"{head}.{member}", []).append(p)
    out: list[str] = []
    for i, op in enumerate(value):
        if not isinstance(op, dict):
            continue
        for k in op:
            at = f"[{i}].{k}"
            if k not in _JSON_PATCH_MEMBERS:
                out.append(f"json patch unknown field {go_quote(at)}")
            elif by_member:
                out.extend(f"json patch duplicate field {go_quote(p)}" for p in by_member.get(at, ()))
        if len(out) >= limit:
            break
    return out[:limit]


YAML_ERRORS = "yaml: unmarshal errors:\n"
"""How go-yaml's ``TypeError`` begins; its lines follow, each indented by two spaces."""

_YAML_PREFIXES = (YAML_ERRORS, "error converting YAML to JSON: " + YAML_ERRORS)


def go_value(v: Any) -> str:
    """A decoded YAML scalar as Go's ``%#v`` prints it (strings quoted, ``<nil>`` for null)."""
    if isinstance(v, str):
        return go_quote(v)
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}".replace("inf", "Inf").replace("nan", "NaN")
    return str(v)


def yaml_duplicate_key(line: int, key: Any) -> str:
    """go-yaml's strict error for a repeated mapping key (``decode.go`` ``setMapIndex``): ``line``
    is the 1-based line of the repeated key's *value* node."""
    return f"line {line}: key {go_value(key)} already set in map"


def yaml_strict_error(lines: Iterable[str]) -> str:
    """The one strict error ``sigs.k8s.io/yaml`` ``YAMLToJSONStrict`` returns for a document
    with repeated keys: ``yaml: unmarshal errors:\\n  line 4: key "name" already set in map``."""
    return YAML_ERRORS + "\n".join(f"  {line}" for line in lines)


def split_strict_warnings(error: str) -> list[str]:
    """``parseYAMLWarnings``: a go-yaml error is one warning per line, any other error one."""
    for prefix in _YAML_PREFIXES:
        if error.startswith(prefix):
            return [line.strip() for line in error[len(prefix):].split("\n")]
    return [error]


def field_validation_outcome(mode: str, errors: list[str], *, kind: str, version: str,
                             patched: Callable[[], str] | None = None) -> tuple[str, ...]:
    """What the strict decoding ``errors`` of a write mean under ``fieldValidation=mode``, the one
    place that decides it: ``Strict`` refuses the write (create/update: 400 with
    :func:`strict_create_message`; a patch, when ``patched`` gives the patched object as JSON:
    422 with :func:`strict_patch_message`), ``Warn`` (the default) answers one warning each (a
    go-yaml error one per line), ``Ignore`` says nothing."""
    if not errors or mode == "Ignore":
        return ()
    if mode == "Strict":
        if patched is not None:
            message, cause = strict_patch_message(patched(), errors)
            raise Invalid(message, causes=(Cause("FieldValueInvalid", cause, "patch"),))
        raise BadRequest(strict_create_message(kind, version, errors))
    return tuple(w for e in errors for w in split_strict_warnings(e))


# --- messages ------------------------------------------------------------------------------


def strict_errors(unknown: Iterable[str] = (), duplicate: Iterable[str] = (),
                  *, limit: int = MAX_ERRORS) -> list[str]:
    """The strict decoding problems as the apiserver words them, duplicates first, deduplicated
    and capped at ``limit``: ``['duplicate field "metadata.name"', 'unknown field "spec.foo"']``."""
    out: list[str] = []
    seen: set[str] = set()
    for kind, paths in (("duplicate field", duplicate), ("unknown field", unknown)):
        for p in paths:
            text = f"{kind} {go_quote(p)}"
            if text not in seen and len(out) < limit:
                seen.add(text)
                out.append(text)
    return out


def strict_decoding_error(errors: Iterable[str]) -> str:
    """``strict decoding error: unknown field "spec.foo", unknown field "bar"``."""
    return "strict decoding error: " + ", ".join(errors)


def strict_create_message(kind: str, version: str, errors: Iterable[str]) -> str:
    """The 400 BadRequest message of a create or update under ``fieldValidation=Strict``.

    ``kind``/``version`` are those the body declares (the apiserver's ``transformDecodeError``),
    e.g. ``ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: ...``.
    """
    return f"{kind} in version {go_quote(version)} cannot be handled as a {kind}: {strict_decoding_error(errors)}"


def strict_patch_message(patched_json: str, errors: Iterable[str]) -> tuple[str, str]:
    """``(message, cause_message)`` of the 422 Invalid a json/merge/strategic patch gets under
    ``Strict``: the cause is on field ``patch`` with reason ``FieldValueInvalid``.

    ``message`` is `` "" is invalid: patch: Invalid value: "<patched>": strict decoding error: ...``
    (``errors.NewInvalid`` with an empty group-kind and name) and ``cause_message`` the part after
    ``patch: ``.
    """
    cause = f"Invalid value: {go_quote(patched_json)}: {strict_decoding_error(errors)}"
    return f' "" is invalid: patch: {cause}', cause


def warning_header(text: str) -> str:
    """One ``Warning`` header value for a ``Warn`` problem: ``299 - "unknown field \\"x\\""``."""
    return f"299 - {go_quote(text)}"


# --- JSON types ----------------------------------------------------------------------------

_LENIENT = {"io.k8s.apimachinery.pkg.api.resource.Quantity": (str, int, float),
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString": (str, int)}
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                       "boolean": (bool,), "object": (dict,), "array": (list,)}


# Integer formats and their Go widths: a value outside the range fails the typed decoder.
_INT_BITS = {"int32": 32, "int64": 64}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def type_errors(obj: Any, schema: Any, definitions: Mapping[str, Any], *, limit: int = 10) -> list[str]:
    """Values whose JSON type the kind's schema does not allow, worded as Go's decoder does:
    ``cannot unmarshal number into Go struct field .spec.holderIdentity of type string``.

    The typed decoder of kube-apiserver refuses these with 400 before anything else; ``null`` is
    always allowed (it decodes to the zero value), as are numbers for Quantity and IntOrString."""
    if _FAST and definitions is _builtin_definitions() and isinstance(obj, dict):
        return _fast_type_errors(obj, schema, definitions, limit)
    found: list[str] = []

    def walk(value: Any, node: Any, path: str, depth: int) -> None:
        if value is None or len(found) >= limit or depth > _MAX_DEPTH or not isinstance(node, Mapping):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in _LENIENT:
                if not isinstance(value, _LENIENT[name]) or isinstance(value, bool):
                    found.append(f"cannot unmarshal {_json_type(value)} into Go struct field {path or '.'} of type "
                                 f"{name.rsplit('.', 1)[-1]}")
                return
        s = _resolve(node, definitions)
        if s.get("x-kubernetes-preserve-unknown-fields") is True or s.get("format") == "int-or-string":
            return
        want = s.get("type")
        allowed = _TYPES.get(want) if isinstance(want, str) else None
        if allowed is not None and (not isinstance(value, allowed) or (want in ("integer", "number")
                                                                       and isinstance(value, bool))):
            found.append(f"cannot unmarshal {_json_type(value)} into Go struct field {path or '.'} of type {want}")
            return
        bits = _INT_BITS.get(s.get("format")) if want == "integer" else None
        if bits is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            found.append(f"cannot unmarshal number {value} into Go struct field {path or '.'} of type "
                         f"int{bits}")
            return
        if isinstance(value, dict):
            props = s.get("properties") if isinstance(s.get("properties"), Mapping) else {}
            extra = s.get("additionalProperties")
            for k, v in value.items():
                sub = props.get(k) if k in props else (extra if isinstance(extra, Mapping) else None)
                if sub is not None:
                    walk(v, sub, f"{path}.{k}", depth + 1)
        elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
            for i, v in enumerate(value):
                walk(v, s["items"], f"{path}[{i}]", depth + 1)

    if isinstance(obj, dict):
        root = dict(_resolve(schema, definitions))
        props = dict(root.get("properties") or {})
        meta = definitions.get(OBJECT_META)
        if "metadata" in props or meta is not None:
            props.setdefault("metadata", meta)
        root["properties"] = props
        walk(obj, root, "", 0)
    return found


class _TNode:
    """One schema node as :func:`type_errors` reads it (``$ref``, ``allOf`` resolved once)."""

    __slots__ = ("allowed", "bits", "children", "extra", "items", "lenient", "numeric", "ok", "props", "skip", "want")

    def __init__(self, node: Any, defs: Mapping[str, Any]) -> None:
        self.lenient: tuple[str, tuple[type, ...]] | None = None
        self.skip = False
        self.want: Any = None
        self.allowed: tuple[type, ...] | None = None
        self.numeric = False
        self.bits: int | None = None
        self.props: Mapping[str, Any] = {}
        self.extra: Mapping[str, Any] | None = None
        self.items: Mapping[str, Any] | None = None
        self.children: dict[str, _TNode | None] = {}
        # The exact types of a value that passes here with nothing beneath it to check (a scalar
        # of an allowed type; the walk is not entered for it).
        self.ok: frozenset[type] = frozenset()
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in _LENIENT:
                self.lenient = (name.rsplit(".", 1)[-1], _LENIENT[name])
                self.ok = frozenset(t for t in _LENIENT[name] if t is not bool)
                return
        s = _resolve(node, defs)
        if s.get("x-kubernetes-preserve-unknown-fields") is True or s.get("format") == "int-or-string":
            self.skip = True
            self.ok = frozenset((str, int, float, bool, dict, list))
            return
        want = self.want = s.get("type")
        self.allowed = _TYPES.get(want) if isinstance(want, str) else None
        self.numeric = want in ("integer", "number")
        self.bits = _INT_BITS.get(s.get("format")) if want == "integer" else None
        props = s.get("properties")
        self.props = props if isinstance(props, Mapping) else {}
        extra = s.get("additionalProperties")
        self.extra = extra if isinstance(extra, Mapping) else None
        items = s.get("items")
        self.items = items if isinstance(items, Mapping) else None
        if self.bits is None:
            self.ok = frozenset(t for t in (self.allowed or (str, int, float, bool))
                                if t not in (dict, list) and not (self.numeric and t is bool))


_tnodes: dict[int, tuple[Any, _TNode | None]] = {}
_roots: dict[int, tuple[Any, _TNode]] = {}


def _tnode(node: Any, defs: Mapping[str, Any]) -> _TNode | None:
    got = _tnodes.get(id(node))
    if got is not None and got[0] is node:
        return got[1]
    if len(_tnodes) >= _CACHE_MAX:
        _tnodes.clear()
    t = _TNode(node, defs) if isinstance(node, Mapping) else None
    _tnodes[id(node)] = (node, t)
    return t


def _type_root(schema: Any, defs: Mapping[str, Any]) -> _TNode:
    got = _roots.get(id(schema))
    if got is not None and got[0] is schema:
        return got[1]
    root = dict(_resolve(schema, defs))
    props = dict(root.get("properties") or {})
    meta = defs.get(OBJECT_META)
    if "metadata" in props or meta is not None:
        props.setdefault("metadata", meta)
    root["properties"] = props
    t = _TNode(root, defs)
    if len(_roots) >= _CACHE_MAX:
        _roots.clear()
    _roots[id(schema)] = (schema, t)
    return t


def _fast_type_errors(obj: dict[str, Any], schema: Any, defs: Mapping[str, Any], limit: int) -> list[str]:
    """:func:`type_errors` over :class:`_TNode` records: the same messages in the same order."""
    found: list[str] = []

    def walk(value: Any, n: _TNode | None, path: str, depth: int) -> None:
        if value is None or len(found) >= limit or depth > _MAX_DEPTH or n is None:
            return
        if n.lenient is not None:
            name, allowed = n.lenient
            if not isinstance(value, allowed) or isinstance(value, bool):
                found.append(f"cannot unmarshal {_json_type(value)} into Go struct field {path or '.'} of type "
                             f"{name}")
            return
        if n.skip:
            return
        allowed_ = n.allowed
        if allowed_ is not None and (not isinstance(value, allowed_) or (n.numeric and isinstance(value, bool))):
            found.append(f"cannot unmarshal {_json_type(value)} into Go struct field {path or '.'} of type {n.want}")
            return
        bits = n.bits
        if bits is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            found.append(f"cannot unmarshal number {value} into Go struct field {path or '.'} of type "
                         f"int{bits}")
            return
        if isinstance(value, dict):
            props, extra, children = n.props, n.extra, n.children
            for k, v in value.items():
                if v is None:
                    continue
                c = children.get(k, _MISSING)
                if c is _MISSING:
                    sub = props.get(k) if k in props else extra
                    c = children[k] = _tnode(sub, defs) if sub is not None else None
                    if len(children) > 256 and k not in props:
                        children.clear()  # a map's own keys: do not keep them all
                if c is not None and type(v) not in c.ok:  # type: ignore[union-attr]
                    walk(v, c, f"{path}.{k}", depth + 1)  # type: ignore[arg-type]
        elif isinstance(value, list) and n.items is not None:
            c = _tnode(n.items, defs)
            ok = c.ok if c is not None else frozenset()
            for i, v in enumerate(value):
                if type(v) not in ok:
                    walk(v, c, f"{path}[{i}]", depth + 1)

    walk(obj, _type_root(schema, defs), "", 0)
    return found


_MISSING: Any = object()
