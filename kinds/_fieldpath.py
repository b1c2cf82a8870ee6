"""Field sets, schema-typed walks and merge for server-side apply. Pure.

Our own rendering of ``sigs.k8s.io/structured-merge-diff/v4`` (``fieldpath``, ``typed``, ``merge``):

- A **field set** is a trie of path elements, kept in the very shape of ``FieldsV1`` but with the
  member marker ``"."`` written on every member (a leaf too): ``{"f:spec": {"f:replicas":
  {".": {}}}}``. :func:`from_fields_v1` / :func:`to_fields_v1` convert from and to the wire form
  (where a leaf member is ``{}``). Path elements are strings as in ``FieldsV1``: ``f:<name>``
  (a struct/map member), ``k:<json of the key fields>`` (an item of a list-type ``map``),
  ``v:<json value>`` (an item of a list-type ``set``), ``i:<index>``.
- A **type** (:class:`TypeNode`) says how a value merges: scalar, list (``atomic``, ``set`` or
  ``map`` with its keys), map (granular or ``atomic``) or untyped (deduced from the value: maps
  granular, lists atomic). :class:`OpenAPIType` reads it from an OpenAPI schema — the built-in
  kinds' (``kinds._schemas``) or a CRD's ``openAPIV3Schema`` (no ``$ref`` s, same extensions):
  ``x-kubernetes-list-type``, ``x-kubernetes-list-map-keys``, ``x-kubernetes-map-type``, and,
  where no list type is given, the strategic-merge-patch strategy (``merge`` with a merge key is a
  map list, without one a set), as kube's ``schemaconv`` does.
- :func:`to_field_set`, :func:`compare`, :func:`merge`, :func:`remove_items` walk values by a
  type; :class:`Updater` is SMD's ``merge.Updater`` (``Update`` and ``Apply`` of managed sets,
  conflicts, pruning of fields an applier stopped applying).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = [
    "UNTYPED",
    "Comparison",
    "Conflict",
    "ConflictError",
    "FieldSet",
    "ManagerSet",
    "OpenAPIType",
    "TypeNode",
    "Updater",
    "builtin_type",
    "compare",
    "created_fields_v1",
    "difference",
    "ensure_named_fields_are_members",
    "exclude",
    "from_fields_v1",
    "intersection",
    "is_empty",
    "iter_paths",
    "merge",
    "path_string",
    "remove_items",
    "to_field_set",
    "to_fields_v1",
    "union",
]

FieldSet = dict[str, Any]
MEMBER = "."

# ---- field sets ----------------------------------------------------------------------------------


def from_fields_v1(v1: Any) -> FieldSet:
    """The trie of a ``fieldsV1`` object (a leaf ``{}`` is a member)."""
    if not isinstance(v1, dict):
        return {}
    out: FieldSet = {}
    for k, v in v1.items():
        if k == MEMBER:
            out[MEMBER] = {}
        elif isinstance(v, dict):
            child = from_fields_v1(v) if v else {MEMBER: {}}
            if child:
                out[k] = child
    return out


def to_fields_v1(s: FieldSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Plain string order is SMD's ("." first, then f:, k:, v:) but for i:, which typed values never have.
    for k in sorted(s) if len(s) > 1 else s:
        v = s[k]
        if k == MEMBER:
            out[MEMBER] = {}
        elif len(v) == 1 and MEMBER in v:
            out[k] = {}
        else:
            out[k] = to_fields_v1(v)
    return out


def _pe_order(pe: str) -> tuple[int, str]:
    # SMD's PathElement order: field names, then keys, then values, then indexes; "." first.
    return ({".": 0, "f": 1, "k": 2, "v": 3, "i": 4}.get(pe[:1], 5), pe)


def is_empty(s: FieldSet) -> bool:
    return not s


def union(a: FieldSet, b: FieldSet) -> FieldSet:
    if not b:
        return a
    if not a:
        return b
    out = dict(a)
    for k, v in b.items():
        if k == MEMBER:
            out[MEMBER] = {}
        elif k in out:
            out[k] = union(out[k], v)
        else:
            out[k] = v
    return out


def difference(a: FieldSet, b: FieldSet) -> FieldSet:
    """Members of ``a`` not members of ``b`` (children are kept where they differ)."""
    if not a or not b:
        return a
    out: FieldSet = {}
    for k, v in a.items():
        if k == MEMBER:
            if MEMBER not in b:
                out[MEMBER] = {}
        elif k in b:
            child = difference(v, b[k])
            if child:
                out[k] = child
        else:
            out[k] = v
    return out


def intersection(a: FieldSet, b: FieldSet) -> FieldSet:
    if not a or not b:
        return {}
    out: FieldSet = {}
    for k, v in a.items():
        if k in b:
            if k == MEMBER:
                out[MEMBER] = {}
            else:
                child = intersection(v, b[k])
                if child:
                    out[k] = child
    return out


def ensure_named_fields_are_members(s: FieldSet) -> FieldSet:
    """SMD's ``EnsureNamedFieldsAreMembers``: a struct/map member (``f:``) with children is a
    member too (so that removing what nobody owns under it can remove it, or keep it)."""
    out: FieldSet = {}
    for k, v in s.items():
        if k == MEMBER:
            out[k] = {}
            continue
        child = ensure_named_fields_are_members(v)
        if k.startswith("f:") and any(c != MEMBER for c in child):
            child[MEMBER] = {}
        out[k] = child
    return out


def _unowned(last: FieldSet, owned: FieldSet) -> FieldSet:
    """``EnsureNamedFieldsAreMembers(last) - EnsureNamedFieldsAreMembers(owned)``, walking only
    ``last`` (and ``owned`` where they share paths); a member whose path nobody owns stands for its
    whole subtree."""
    out: FieldSet = {}
    for k, lv in last.items():
        if k == MEMBER:
            continue
        named = k.startswith("f:")
        in_last = MEMBER in lv or (named and len(lv) > (MEMBER in lv))
        ov = owned.get(k)
        if ov is None:
            out[k] = {MEMBER: {}} if in_last else _unowned(lv, {})
            if not out[k]:
                del out[k]
            continue
        child = _unowned(lv, ov)
        if in_last and not (MEMBER in ov or (named and len(ov) > (MEMBER in ov))):
            child[MEMBER] = {}
        if child:
            out[k] = child
    return out


def iter_paths(s: FieldSet, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every member path, in SMD's ``Set.Iterate`` order (a level's members, then its children)."""
    keys = sorted((k for k in s if k != MEMBER), key=_pe_order)
    for k in keys:
        if MEMBER in s[k]:
            yield (*prefix, k)
    for k in keys:
        if any(c != MEMBER for c in s[k]):
            yield from iter_paths({c: v for c, v in s[k].items() if c != MEMBER}, (*prefix, k))


def path_string(path: tuple[str, ...]) -> str:
    """A path as SMD's ``Path.String()``: ``.spec.containers[name="nginx"].image``."""
    out = []
    for pe in path:
        kind, text = pe[:2], pe[2:]
        if kind == "f:":
            out.append("." + text)
        elif kind == "k:":
            try:
                keys = json.loads(text)
                out.append("[" + ",".join(f"{k}={_js(v)}" for k, v in keys.items()) + "]")
            except ValueError:
                out.append("[" + text + "]")
        elif kind == "v:":
            out.append("[=" + text + "]")
        elif kind == "i:":
            out.append("[" + text + "]")
        else:
            out.append(pe)
    return "".join(out)


def _js(v: Any) -> str:
    """Compact JSON with sorted members (any YAML scalar: a timestamp is its RFC 3339 text)."""
    try:
        return _encoder.encode(v).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return json.dumps(str(v))


_encoder = msgspec.json.Encoder(order="sorted")


# ---- types ---------------------------------------------------------------------------------------


class TypeNode:
    """How a value merges. ``kind``: ``scalar``, ``list``, ``map`` or ``untyped`` (deduced)."""

    kind = "untyped"
    list_type = "atomic"
    keys: tuple[str, ...] = ()
    key_defaults: Mapping[str, Any] = {}
    atomic_map = False

    def field(self, name: str) -> TypeNode:
        return UNTYPED

    def elem(self) -> TypeNode:
        return UNTYPED

    def deduce(self, value: Any) -> TypeNode:
        """The type to walk ``value`` with: an untyped value is a granular map, an atomic list or a
        scalar by its shape; a value not of its schema's shape is a leaf."""
        if self.kind == "untyped":
            if isinstance(value, dict):
                return _UNTYPED_MAP
            return _LEAF
        if self.kind == "map" and not isinstance(value, dict):
            return _LEAF
        if self.kind == "list" and not isinstance(value, list):
            return _LEAF
        return self

    def leaf(self) -> bool:
        """Compared and owned as a whole."""
        return (self.kind == "scalar" or (self.kind == "list" and self.list_type == "atomic")
                or (self.kind == "map" and self.atomic_map))


class _Leaf(TypeNode):
    kind = "scalar"


class _UntypedMap(TypeNode):
    kind = "map"


UNTYPED = TypeNode()
_LEAF = _Leaf()
_UNTYPED_MAP = _UntypedMap()


class OpenAPIType(TypeNode):
    """A :class:`TypeNode` read from an OpenAPI (v2 or v3, or a CRD's structural) schema.

    ``defs`` resolves ``$ref`` (``#/definitions/<name>`` or ``#/components/schemas/<name>``).
    Children of schema members are cached (a bounded set: the schema's own members)."""

    def __init__(self, schema: Mapping[str, Any] | None, defs: Mapping[str, Any] | None = None) -> None:
        self._defs = defs or {}
        own = schema if isinstance(schema, Mapping) else {}
        target = _resolve(own, self._defs)
        self._children: dict[str, TypeNode] = {}
        self._elem: TypeNode | None = None
        self._extra: TypeNode | None = None
        self.keys = ()
        self.list_type = "atomic"
        self.atomic_map = False

        def ext(name: str) -> Any:
            return own.get(name, target.get(name))

        self.preserve = bool(ext("x-kubernetes-preserve-unknown-fields"))
        t = target.get("type")
        props = target.get("properties")
        self._props: Mapping[str, Any] = props if isinstance(props, Mapping) else {}
        if ext("x-kubernetes-int-or-string") or target.get("format") == "int-or-string":
            self.kind = "scalar"
        elif t == "array" or (t is None and "items" in target):
            self.kind = "list"
            lt = ext("x-kubernetes-list-type")
            strategy = ext("x-kubernetes-patch-strategy") or ""
            if lt in ("atomic", "set", "map"):
                self.list_type = lt
                keys = ext("x-kubernetes-list-map-keys")
                self.keys = tuple(keys) if lt == "map" and isinstance(keys, list) else ()
            elif "merge" in str(strategy).split(","):
                key = ext("x-kubernetes-patch-merge-key")
                self.list_type = "map" if isinstance(key, str) else "set"
                self.keys = (key,) if isinstance(key, str) else ()
            if self.list_type == "map" and not self.keys:
                self.list_type = "atomic"
            if self.list_type == "map":
                self.key_defaults = _key_defaults(target, self.keys, self._defs)
        elif t == "object" or (t is None and ("properties" in target or "additionalProperties" in target)):
            self.kind = "map"
            self.atomic_map = ext("x-kubernetes-map-type") == "atomic"
        elif t in ("string", "integer", "number", "boolean"):
            self.kind = "scalar"
        else:
            self.kind = "untyped"
        self._target = target

    def field(self, name: str) -> TypeNode:
        got = self._children.get(name)
        if got is not None:
            return got
        sub = self._props.get(name)
        if isinstance(sub, Mapping):
            node = self._children[name] = OpenAPIType(sub, self._defs)
            return node
        if self._extra is None:
            extra = self._target.get("additionalProperties")
            self._extra = OpenAPIType(extra, self._defs) if isinstance(extra, Mapping) else UNTYPED
        return self._extra

    def elem(self) -> TypeNode:
        if self._elem is None:
            items = self._target.get("items")
            self._elem = OpenAPIType(items, self._defs) if isinstance(items, Mapping) else UNTYPED
        return self._elem


# Defaults kube's published schemas give map-list keys (``+default="TCP"`` on the ports' protocol)
# where the bundled 1.33 schemas only describe them.
_KNOWN_KEY_DEFAULTS = {"protocol": "TCP"}


def _key_defaults(target: Mapping[str, Any], keys: tuple[str, ...], defs: Mapping[str, Any]) -> dict[str, Any]:
    """A map list's key fields with a default: an item without the key is keyed by the default
    (SMD's defaulted keys: ``ports: [{port: 80}]`` is the live ``{port: 80, protocol: TCP}``)."""
    items = target.get("items")
    props = _resolve(items, defs).get("properties") if isinstance(items, Mapping) else None
    out = {}
    for k in keys:
        prop = props.get(k) if isinstance(props, Mapping) else None
        if isinstance(prop, Mapping) and "default" in prop:
            out[k] = prop["default"]
        elif isinstance(prop, Mapping) and k in _KNOWN_KEY_DEFAULTS:
            out[k] = _KNOWN_KEY_DEFAULTS[k]
    return out


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(64):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            schema = defs.get(ref.rsplit("/", 1)[-1], {})
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping) \
                and "properties" not in schema and "items" not in schema:
            schema = all_of[0]
            continue
        return schema
    return {}


# ---- list items ----------------------------------------------------------------------------------


def item_pe(t: TypeNode, item: Any, index: int) -> str:
    """The path element of a list item: by its keys (map), its value (set) or its index."""
    if t.list_type == "map" and isinstance(item, dict):
        d = t.key_defaults
        return "k:" + _js({k: item[k] if k in item else d[k] for k in t.keys if k in item or k in d})
    if t.list_type == "set":
        return "v:" + _js(item)
    return f"i:{index}"


def _index(t: TypeNode, items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        out.setdefault(item_pe(t, item, i), item)
    return out


# ---- walks ---------------------------------------------------------------------------------------


def to_field_set(value: Any, t: TypeNode) -> FieldSet:
    """SMD's ``ToFieldSet``: the fields a value sets (leaves and list items are members; a map
    is not a member by itself)."""
    t = t.deduce(value)
    if t.leaf():
        return {MEMBER: {}}
    out: FieldSet = {}
    if t.kind == "map":
        for k, v in value.items():
            out["f:" + k] = {MEMBER: {}} if v is None else to_field_set(v, t.field(k))
    else:
        et = t.elem()
        for i, item in enumerate(value):
            child = {} if item is None else to_field_set(item, et)
            child[MEMBER] = {}
            out[item_pe(t, item, i)] = child
    return {k: v for k, v in out.items() if v}


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=dict)
    modified: FieldSet = field(default_factory=dict)
    removed: FieldSet = field(default_factory=dict)

    def changed(self) -> FieldSet:
        return union(self.modified, self.added)


_ABSENT = object()


def compare(lhs: Any, rhs: Any, t: TypeNode) -> Comparison:
    """SMD's ``Compare``: what changes from ``lhs`` to ``rhs`` (Added, Modified, Removed)."""
    c = Comparison()
    _cmp(lhs, rhs, t, c, ())
    return c


def _insert(s: FieldSet, path: tuple[str, ...]) -> None:
    for pe in path:
        s = s.setdefault(pe, {})
    s[MEMBER] = {}


_TOP_STRUCTS = frozenset(("f:metadata", "f:spec", "f:status"))
_FAST_ADDED = True  # tests compare the direct trie build against the path-by-path one


def _added(rhs: Any, t: TypeNode, member: bool) -> FieldSet | None:
    """What :func:`_cmp` adds for a subtree absent on the left (every field of a created object),
    built as a trie directly rather than inserted path by path from the root: the same members.
    ``member``: whether a map here is itself a member (not the root, nor its top-level structs)."""
    if rhs is None:
        return None
    rt = t.deduce(rhs)
    if rt.leaf():
        return {MEMBER: {}}
    out: FieldSet = {}
    if rt.kind == "map":
        if isinstance(rhs, dict):
            for k, v in rhs.items():
                sub = _added(v, rt.field(k), True)
                if sub is not None:
                    out["f:" + k] = sub
        if member:
            out[MEMBER] = {}
        return out or None
    et = rt.elem()
    for pe, v in _index(rt, rhs if isinstance(rhs, list) else []).items():
        sub = _added(v, et, True) or {}
        sub[MEMBER] = {}  # the item itself (``_cmp_item``)
        out[pe] = sub
    return out or None


def created_fields_v1(obj: dict[str, Any], t: TypeNode, ignored: FieldSet, strip: FieldSet) -> dict[str, Any] | None:
    """The ``fieldsV1`` a create of ``obj`` owns, in one walk: ``to_fields_v1(difference(exclude(
    compare({}, obj, t).added, ignored), strip))`` (``ignored``: subtrees never owned; ``strip``:
    members never owned, their children kept), or None when that is empty. A create's whole object
    is added; building the wire form directly skips the trie and the three walks over it (a
    property test compares it with the expression)."""
    out: dict[str, Any] = {}
    for k in sorted(obj):
        v = obj[k]
        if v is None:
            continue
        pe = "f:" + k
        ex = ignored.get(pe)
        if ex is not None and MEMBER in ex:
            continue
        sub = _added_v1(v, t.field(k), pe not in _TOP_STRUCTS, ex, strip.get(pe))
        if sub is not None:
            out[pe] = sub
    return out or None


def _added_v1(rhs: Any, t: TypeNode, member: bool, ex: FieldSet | None, st: FieldSet | None) -> dict[str, Any] | None:
    """:func:`_added` of a subtree, written as ``fieldsV1`` (sorted, a leaf member ``{}``), less the
    subtrees ``ex`` excludes and the members ``st`` strips; None when nothing is left."""
    kind = t.kind
    if type(rhs) is dict or isinstance(rhs, dict):
        is_map = kind == "untyped" or (kind == "map" and not t.atomic_map)
        if is_map:
            keep = member and not (st is not None and MEMBER in st)
            out: dict[str, Any] = {MEMBER: {}} if keep else {}
            field = t.field
            for k in sorted(rhs):
                v = rhs[k]
                if v is None:
                    continue
                pe = "f:" + k
                cex = ex.get(pe) if ex else None
                if cex is not None and MEMBER in cex:
                    continue
                cst = st.get(pe) if st else None
                if type(v) is dict or type(v) is list or isinstance(v, (dict, list)):
                    sub = _added_v1(v, field(k), True, cex, cst)
                    if sub is not None:
                        out[pe] = sub
                elif cst is None or MEMBER not in cst:
                    out[pe] = {}  # any scalar is a leaf member, whatever its type
            if keep and len(out) == 1:
                return {}
            return out or None
    elif kind == "list" and t.list_type != "atomic" and isinstance(rhs, list):
        et = t.elem()
        items = _index(t, rhs)
        out = {}
        for pe in sorted(items):
            cex = ex.get(pe) if ex else None
            if cex is not None and MEMBER in cex:
                continue
            cst = st.get(pe) if st else None
            item_member = cst is None or MEMBER not in cst
            v = items[pe]
            sub = _added_v1(v, et, False, cex, cst) if isinstance(v, (dict, list)) else None
            if sub is not None:
                out[pe] = {MEMBER: {}, **sub} if item_member and sub else sub if sub else {}
            elif item_member:
                out[pe] = {}
        return out or None
    # a leaf: a member
    return None if st is not None and MEMBER in st else {}


def _cmp(lhs: Any, rhs: Any, t: TypeNode, c: Comparison, path: tuple[str, ...]) -> None:
    if lhs is rhs or (type(lhs) is type(rhs) and lhs == rhs):
        return  # an unchanged subtree (compared in C): nothing beneath it changes
    if lhs is _ABSENT and _FAST_ADDED:
        sub = _added(rhs, t, bool(path) and (len(path) > 1 or path[0] not in _TOP_STRUCTS))
        if sub is not None:
            node = c.added
            for pe in path:
                node = node.setdefault(pe, {})
            node.update(sub)
        return
    lt = t.deduce(lhs) if lhs is not _ABSENT and lhs is not None else None
    rt = t.deduce(rhs) if rhs is not _ABSENT and rhs is not None else None
    lk = None if lt is None else ("leaf" if lt.leaf() else lt.kind)
    rk = None if rt is None else ("leaf" if rt.leaf() else rt.kind)
    if lk is None and rk is None:
        return
    if lk == "leaf" or rk == "leaf" or (lk is not None and rk is not None and lk != rk):
        if lhs is _ABSENT:
            _insert(c.added, path)
        elif rhs is _ABSENT:
            _insert(c.removed, path)
        elif lhs != rhs:
            _insert(c.modified, path)
        return
    kind = lk if lk is not None else rk
    if kind == "map":
        ld = lhs if isinstance(lhs, dict) else {}
        rd = rhs if isinstance(rhs, dict) else {}
        mt = rt or lt
        assert mt is not None
        for k, rv in rd.items():
            lv = ld.get(k, _ABSENT)
            if lv is rv or (type(lv) is type(rv) and lv == rv):
                continue  # unchanged (what _cmp would find first): no path built, no type looked up
            _cmp(lv, rv, mt.field(k), c, (*path, "f:" + k))
        for k, lv in ld.items():
            if k not in rd:
                _cmp(lv, _ABSENT, mt.field(k), c, (*path, "f:" + k))
        # A map that appears or goes is itself added or removed (not the object itself, nor
        # its top-level structs that a typed Go object always has).
        if path and (len(path) > 1 or path[0] not in ("f:metadata", "f:spec", "f:status")):
            if lhs is _ABSENT or lhs is None:
                _insert(c.added, path)
            elif rhs is _ABSENT or rhs is None:
                _insert(c.removed, path)
        return
    lt_ = rt or lt
    assert lt_ is not None
    li = _index(lt_, lhs if isinstance(lhs, list) else [])
    ri = _index(lt_, rhs if isinstance(rhs, list) else [])
    et = lt_.elem()
    for pe, rv in ri.items():
        lv = li.get(pe, _ABSENT)
        if lv is rv or (type(lv) is type(rv) and lv == rv):
            continue  # an unchanged item: nothing to record (as _cmp_item would find)
        _cmp_item(lv, rv, et, c, (*path, pe))
    for pe, lv in li.items():
        if pe not in ri:
            _cmp_item(lv, _ABSENT, et, c, (*path, pe))


def _cmp_item(lhs: Any, rhs: Any, t: TypeNode, c: Comparison, path: tuple[str, ...]) -> None:
    _cmp(lhs, rhs, t, c, path)
    if lhs is _ABSENT:
        _insert(c.added, path)
    elif rhs is _ABSENT:
        _insert(c.removed, path)


def merge(lhs: Any, rhs: Any, t: TypeNode) -> Any:
    """SMD's ``Merge``: ``rhs`` (an applied configuration) over ``lhs`` (the live object). The
    result shares parts of both: copy it before changing it."""
    if rhs is None or lhs is None or (type(lhs) is type(rhs) and lhs == rhs):
        return rhs
    lt, rt = t.deduce(lhs), t.deduce(rhs)
    if rt.leaf() or lt.leaf() or lt.kind != rt.kind:
        return rhs
    if rt.kind == "map":
        out = dict(lhs)
        for k, v in rhs.items():
            out[k] = merge(lhs[k], v, rt.field(k)) if k in lhs else v
        return out
    return _merge_list(lhs, rhs, rt)


def _merge_list(lhs: list[Any], rhs: list[Any], t: TypeNode) -> list[Any]:
    """SMD's ordering: the live order, with the applied items in the applied order; a shared item
    is placed where the applied list has it."""
    et = t.elem()
    lpe = [item_pe(t, x, i) for i, x in enumerate(lhs)]
    rpe = [item_pe(t, x, i) for i, x in enumerate(rhs)]
    lobs = dict(zip(lpe, lhs, strict=True))
    robs = dict(zip(rpe, rhs, strict=True))
    shared = [pe for pe in rpe if pe in lobs]
    nxt = 0
    out: list[Any] = []
    done: set[str] = set()
    li = ri = 0
    while li < len(lpe) or ri < len(rpe):
        if li < len(lpe) and ri < len(rpe):
            pe = lpe[li]
            if pe == rpe[ri]:
                if pe not in done:
                    done.add(pe)
                    out.append(merge(lobs[pe], robs[pe], et))
                li += 1
                ri += 1
                if nxt < len(shared) and shared[nxt] == pe:
                    nxt += 1
                continue
            if pe in robs and nxt < len(shared) and shared[nxt] != pe:
                li += 1
                continue
        if li < len(lpe):
            pe = lpe[li]
            if pe not in robs:
                out.append(lhs[li])
                li += 1
                continue
            if pe in done:
                li += 1
                continue
        if ri < len(rpe):
            pe = rpe[ri]
            if pe not in done:
                done.add(pe)
                out.append(merge(lobs[pe], robs[pe], et) if pe in lobs else robs[pe])
            ri += 1
            if nxt < len(shared) and shared[nxt] == pe:
                nxt += 1
    return out


def remove_items(value: Any, s: FieldSet, t: TypeNode) -> Any:
    """SMD's ``RemoveItems``: ``value`` without the members of ``s`` (each with all beneath it)."""
    t = t.deduce(value)
    if not s or t.leaf():
        return value
    if t.kind == "map":
        out = {}
        for k, v in value.items():
            sub = s.get("f:" + k)
            if sub is None:
                out[k] = v
            elif MEMBER not in sub:
                out[k] = remove_items(v, sub, t.field(k))
        return out
    et = t.elem()
    items = []
    for i, item in enumerate(value):
        sub = s.get(item_pe(t, item, i))
        if sub is None:
            items.append(item)
        elif MEMBER not in sub:
            items.append(remove_items(item, sub, et))
    return items


# ---- the updater -------------------------------------------------------------------------------


@dataclass
class ManagerSet:
    """One manager's set: its fields, the apiVersion they were set with, and whether it applied."""

    fields: FieldSet
    api_version: str
    applied: bool


@dataclass(frozen=True)
class Conflict:
    manager: str  # the manager's identity (as the caller keys managers)
    path: tuple[str, ...]


class ConflictError(Exception):
    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(f"{len(conflicts)} conflicts")
        self.conflicts = conflicts


#: How to see an object in another apiVersion: a converter of the (bare) object and that version's type.
VersionView = tuple[Callable[[Any], Any], TypeNode]


class Updater:
    """SMD's ``merge.Updater`` for one type. ``managers`` map an identity to a :class:`ManagerSet`
    and are updated in place; ``ignored`` is a set never owned (kube's reset fields). ``views``:
    for managers whose fields were set through another apiVersion, how the object looks in it
    (SMD's converter): their conflicts and removals are computed there, on the old and new object
    converted, as kube does; a version without a view is compared in the written one."""

    def __init__(self, t: TypeNode, ignored: FieldSet | None = None,
                 views: Mapping[str, VersionView] | None = None) -> None:
        self.t = t
        self.ignored = ignored or {}
        self.views = views or {}

    def _compare(self, live: Any, new: Any, t: TypeNode) -> Comparison:
        cmp = compare(live, new, t)
        cmp.added = exclude(cmp.added, self.ignored)
        cmp.modified = exclude(cmp.modified, self.ignored)
        cmp.removed = exclude(cmp.removed, self.ignored)
        return cmp

    def _update(self, live: Any, new: Any, managers: dict[str, ManagerSet], workflow: str,
                force: bool, version: str = "") -> Comparison:
        cmp = self._compare(live, new, self.t)
        by_version: dict[str, Comparison] = {}
        changed_of: dict[int, FieldSet] = {}  # the comparisons live as long as this dict
        conflicts: dict[str, FieldSet] = {}
        removed: dict[str, FieldSet] = {}
        for name, ms in managers.items():
            if name == workflow:
                continue
            mc = cmp
            view = self.views.get(ms.api_version) if version and ms.api_version != version else None
            if view is not None:
                mc = by_version.get(ms.api_version)  # type: ignore[assignment]
                if mc is None:
                    conv, vt = view
                    mc = by_version[ms.api_version] = self._compare(conv(live), conv(new), vt)
            changed = changed_of.get(id(mc))
            if changed is None:
                changed = changed_of[id(mc)] = mc.changed()  # once per comparison, not per manager
            hit = intersection(ms.fields, changed)
            if hit:
                conflicts[name] = hit
            if mc.removed:
                removed[name] = mc.removed
        if conflicts and not force:
            raise ConflictError([Conflict(name, p) for name in sorted(conflicts)
                                 for p in iter_paths(conflicts[name])])
        for name, hit in conflicts.items():
            managers[name].fields = difference(managers[name].fields, hit)
        for name, gone in removed.items():
            ms = managers[name]
            if intersection(ms.fields, gone):
                ms.fields = difference(ms.fields, gone)
        for name in [n for n, ms in managers.items() if not ms.fields]:
            del managers[name]
        return cmp

    def update(self, live: Any, new: Any, api_version: str, managers: dict[str, ManagerSet],
               manager: str) -> None:
        """An Update by ``manager``: it owns what it changed; others lose it."""
        cmp = self._update(live, new, managers, manager, True, api_version)
        prev = managers.get(manager)
        base = prev.fields if prev else {}
        fields = union(union(difference(base, cmp.removed), cmp.modified), cmp.added)
        fields = exclude(fields, self.ignored)
        if fields:
            managers[manager] = ManagerSet(fields, api_version, False)
        else:
            managers.pop(manager, None)

    def apply(self, live: Any, config: Any, api_version: str, managers: dict[str, ManagerSet], manager: str,
              force: bool, config_set: FieldSet | None = None) -> Any:
        """An Apply of ``config`` by ``manager``: the merged object (``live`` itself, unchanged, when
        nothing changes); raises :class:`ConflictError` unless ``force``."""
        merged = merge(live, config, self.t)
        last = managers.get(manager)
        applied = config_set if config_set is not None else to_field_set(config, self.t)
        applied = exclude(applied, self.ignored)
        managers[manager] = ManagerSet(applied, api_version, True)
        if last is not None and last.fields:
            merged = self._prune(merged, managers, manager, last.fields)
        self._update(live, merged, managers, manager, force, api_version)
        if not managers.get(manager) or not managers[manager].fields:
            managers.pop(manager, None)
        return merged

    def _prune(self, merged: Any, managers: dict[str, ManagerSet], manager: str, last: FieldSet) -> Any:
        """Remove what ``manager`` applied last time, not this time, and nobody else owns."""
        owned: FieldSet = {}
        for ms in managers.values():
            owned = union(owned, ms.fields)
        gone = _unowned(last, owned)
        return remove_items(merged, gone, self.t) if gone else merged


def exclude(s: FieldSet, ignored: FieldSet) -> FieldSet:
    """``s`` without ``ignored`` paths and everything beneath them (kube's reset-fields filter)."""
    if not ignored:
        return s
    out: FieldSet = {}
    for k, v in s.items():
        sub = ignored.get(k)
        if sub is None:
            out[k] = v
        elif MEMBER in sub:
            continue
        else:
            child = exclude(v, sub)
            if child:
                out[k] = child
    return out


@functools.cache
def builtin_type(group: str, version: str, kind: str) -> TypeNode:
    """The merge type of a built-in kind from its 1.33 schema; untyped for an unknown kind (a
    custom resource's comes from its CRD's ``openAPIV3Schema``: ``OpenAPIType(schema)``)."""
    from ._schemas import definitions, schema_for

    schema = schema_for(group, version, kind)
    return OpenAPIType(schema, definitions()) if schema is not None else UNTYPED
