"""The three PATCH flavours of the apiserver, as pure functions on JSON values.

- ``apply_json_patch``: RFC 6902 (``application/json-patch+json``).
- ``apply_merge_patch``: RFC 7386 (``application/merge-patch+json``).
- ``apply_strategic_merge_patch``: kube-apiserver's strategic merge patch
  (``application/strategic-merge-patch+json``), following
  ``k8s.io/apimachinery/pkg/util/strategicpatch`` as the server applies it
  (``StrategicMergeMapPatch``: parallel lists merged, unmatched nulls ignored).

None of them mutates its arguments: each works on a private copy and returns a fresh value that
shares nothing with its inputs.

Errors: ``MalformedPatch`` means the patch document is not of the right shape (the gateway
answers 400 BadRequest); ``PatchError`` means a well-formed patch cannot be applied to this
object (422). A JSON patch of more than ``MAX_JSON_PATCH_OPERATIONS`` operations is refused
before any is applied (413, as kube-apiserver); its ``copy`` operations may add at most
``MAX_COPY_BYTES`` together, and no operation may build a value nested deeper than ``MAX_DEPTH``
(both 422, ``PatchError``): a small patch cannot grow an object without bound.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import msgspec

from kinds._errors import RequestEntityTooLarge

from ._limits import MAX_COPY_BYTES, MAX_DEPTH, MAX_JSON_PATCH_OPERATIONS, depth_exceeds

__all__ = [
    "EMPTY_SCHEMA",
    "DictPatchSchema",
    "MalformedPatch",
    "PatchError",
    "PatchSchema",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
]


class PatchError(ValueError):
    """The patch is well formed but cannot be applied to the object (HTTP 422)."""


class MalformedPatch(ValueError):
    """The patch document itself is not of the right shape (HTTP 400)."""


# --- JSON helpers -------------------------------------------------------------------------


def _copy(value: Any) -> Any:
    """Deep copy of a JSON value (much cheaper than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers by value, but ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, (int, float)):
        return isinstance(b, (int, float)) and a == b
    return type(a) is type(b) and a == b


def _ident(value: Any) -> Any:
    """A hashable identity for a JSON value, consistent with ``_json_equal``."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    return ("j", json.dumps(value, sort_keys=True, separators=(",", ":")))


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# --- RFC 7386 JSON merge patch ------------------------------------------------------------


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result = {k: v for k, v in doc.items()} if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    # Keys the patch did not touch are still shared with ``doc``: copy them too.
    return {k: (v if k in patch else _copy(v)) for k, v in result.items()}


# --- RFC 6902 JSON patch ------------------------------------------------------------------

_JSON_PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def _parse_pointer(pointer: Any, what: str) -> list[str]:
    """The reference tokens of an RFC 6901 JSON pointer."""
    if not isinstance(pointer, str):
        raise MalformedPatch(f"{what} must be a string, got {_show(pointer)}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise MalformedPatch(f'invalid JSON pointer "{pointer}": must be empty or start with "/"')
    tokens = []
    for raw in pointer[1:].split("/"):
        i = raw.find("~")
        while i != -1:
            if i + 1 >= len(raw) or raw[i + 1] not in "01":
                raise MalformedPatch(f'invalid JSON pointer "{pointer}": bad escape in "{raw}"')
            i = raw.find("~", i + 2)
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _list_index(token: str, length: int, *, allow_end: bool, op: str, path: str) -> int:
    if token == "-" and allow_end:
        return length
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"{op} operation does not apply: invalid array index {token!r} in path {path}")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise PatchError(f"{op} operation does not apply: array index {index} out of bounds in path {path}")
    return index


def _resolve_parent(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    """The container holding the value at ``tokens`` (which must not be the root)."""
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"{op} operation does not apply: doc is missing path: {path}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_list_index(token, len(node), allow_end=False, op=op, path=path)]
        else:
            raise PatchError(f"{op} operation does not apply: doc is missing path: {path}")
    if not isinstance(node, (dict, list)):
        raise PatchError(f"{op} operation does not apply: doc is missing path: {path}")
    return node


def _get(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    if not tokens:
        return doc
    parent, last = _resolve_parent(doc, tokens, op, path), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{op} operation does not apply: doc is missing path: {path}")
        return parent[last]
    return parent[_list_index(last, len(parent), allow_end=False, op=op, path=path)]


def _add(doc: Any, tokens: list[str], value: Any, op: str, path: str) -> Any:
    if not tokens:
        return value
    parent, last = _resolve_parent(doc, tokens, op, path), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_list_index(last, len(parent), allow_end=True, op=op, path=path), value)
    return doc


def _remove(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    """Remove the value at ``tokens``; returns it."""
    if not tokens:
        raise PatchError(f"{op} operation does not apply: cannot remove the whole document")
    parent, last = _resolve_parent(doc, tokens, op, path), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{op} operation does not apply: doc is missing path: {path}")
        return parent.pop(last)
    return parent.pop(_list_index(last, len(parent), allow_end=False, op=op, path=path))


def _check_operations(ops: Any) -> list[tuple[str, dict[str, Any], list[str], list[str]]]:
    """Validate the shape of a JSON patch up front: (op, raw, path tokens, from tokens)."""
    if not isinstance(ops, list):
        raise MalformedPatch("json patch must be a list of operations")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise RequestEntityTooLarge(f"The allowed maximum operations in a JSON patch is "
                                    f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    checked = []
    for n, raw in enumerate(ops):
        if not isinstance(raw, dict):
            raise MalformedPatch(f"json patch operation {n} must be an object, got {_show(raw)}")
        op = raw.get("op")
        if op not in _JSON_PATCH_OPS:
            raise MalformedPatch(f"Unexpected kind: {op}" if isinstance(op, str)
                                 else f"json patch operation {n} has no valid \"op\"")
        if "path" not in raw:
            raise MalformedPatch(f"{op} operation {n} is missing \"path\"")
        path = _parse_pointer(raw["path"], "path")
        src: list[str] = []
        if op in ("move", "copy"):
            if "from" not in raw:
                raise MalformedPatch(f"{op} operation {n} is missing \"from\"")
            src = _parse_pointer(raw["from"], "from")
        if op in ("add", "replace", "test") and "value" not in raw:
            raise MalformedPatch(f"{op} operation {n} is missing \"value\"")
        checked.append((op, raw, path, src))
    return checked


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test).

    The whole patch is checked for shape and size first (``MalformedPatch``, 413); then the
    operations run in order on a copy of ``doc``, and any that does not apply (missing path, bad
    index, failed ``test``, too deep a result, too much copied) raises ``PatchError``: nothing is
    half-applied.
    """
    result = _copy(doc)
    copied = 0
    for op, raw, tokens, src in _check_operations(ops):
        path = raw["path"]
        if op in ("add", "replace"):
            _check_depth(raw["value"], tokens, op, path)
        if op == "add":
            result = _add(result, tokens, _copy(raw["value"]), op, path)
        elif op == "remove":
            _remove(result, tokens, op, path)
        elif op == "replace":
            if not tokens:
                result = _copy(raw["value"])
                continue
            _get(result, tokens, op, path)  # must exist
            parent, last = _resolve_parent(result, tokens, op, path), tokens[-1]
            if isinstance(parent, dict):
                parent[last] = _copy(raw["value"])
            else:
                index = _list_index(last, len(parent), allow_end=False, op=op, path=path)
                parent[index] = _copy(raw["value"])
        elif op == "move":
            if tokens == src:
                _get(result, src, op, raw["from"])
                continue
            if tokens[:len(src)] == src:
                raise PatchError(
                    f"move operation does not apply: cannot move {raw['from']} into its child {path}"
                )
            value = _remove(result, src, op, raw["from"])
            _check_depth(value, tokens, op, path)
            result = _add(result, tokens, value, op, path)
        elif op == "copy":
            value = _get(result, src, op, raw["from"])
            _check_depth(value, tokens, op, path)
            # evanphx/json-patch's AccumulatedCopySizeLimit: the copied JSON's bytes, summed.
            copied += len(_size_encoder.encode(value))
            if copied > MAX_COPY_BYTES:
                raise PatchError(f"Unable to complete the copy, the accumulated size increase of copy is "
                                 f"{copied}, exceeding the limit {MAX_COPY_BYTES}")
            result = _add(result, tokens, _copy(value), op, path)
        else:  # test
            if not _json_equal(_get(result, tokens, op, path), raw["value"]):
                raise PatchError(f"testing value {path} failed")
    return result


_size_encoder = msgspec.json.Encoder()


def _check_depth(value: Any, tokens: list[str], op: str, path: str) -> None:
    if depth_exceeds(value, MAX_DEPTH - len(tokens)):
        raise PatchError(f"{op} operation does not apply: the result at {path} would nest deeper than "
                         f"{MAX_DEPTH} levels")


# --- strategic merge patch: schema ---------------------------------------------------------


class PatchSchema(Protocol):
    """What strategic merge patch needs to know about one field of a kind.

    A schema node describes a field. For a map field, ``child(name)`` describes its member; for a
    list field, ``child(name)`` describes the member ``name`` of the list's items.
    ``list_strategy()`` is ``(x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key)`` of the
    field itself: the strategy is e.g. ``"merge"``, ``"merge,retainKeys"``, ``"retainKeys"`` or
    ``"replace"``, each element None when absent.
    """

    def child(self, field: str) -> PatchSchema:
        """The schema of member ``field`` (of this map, or of this list's items)."""
        ...

    def list_strategy(self) -> tuple[str | None, str | None]:
        """(patch strategy, merge key) of the field this node describes."""
        ...


class DictPatchSchema:
    """A ``PatchSchema`` from a nested dict, for built-in tables and tests.

    Each field maps to a dict that may hold ``$strategy`` and ``$key`` for the field itself,
    ``$items`` for the members of a list's items, and the members of a map directly::

        {"spec": {"containers": {"$strategy": "merge", "$key": "name",
                                 "$items": {"env": {"$strategy": "merge", "$key": "name"}}}}}

    Fields not mentioned have no strategy.
    """

    __slots__ = ("_node",)

    def __init__(self, node: dict[str, Any] | None = None) -> None:
        self._node: dict[str, Any] = node or {}

    def child(self, field: str) -> PatchSchema:
        """The schema of member ``field``; an empty schema when it is not described."""
        items = self._node.get("$items")
        sub = items.get(field) if isinstance(items, dict) else None
        if sub is None and not field.startswith("$"):
            sub = self._node.get(field)
        return DictPatchSchema(sub) if isinstance(sub, dict) else EMPTY_SCHEMA

    def list_strategy(self) -> tuple[str | None, str | None]:
        """``($strategy, $key)`` of this node."""
        return self._node.get("$strategy"), self._node.get("$key")

    def __repr__(self) -> str:
        return f"DictPatchSchema({self._node!r})"


class _EmptySchema:
    __slots__ = ()

    def child(self, field: str) -> PatchSchema:
        return self

    def list_strategy(self) -> tuple[str | None, str | None]:
        return None, None

    def __repr__(self) -> str:
        return "EMPTY_SCHEMA"


EMPTY_SCHEMA: PatchSchema = _EmptySchema()
"""A schema with no strategies anywhere: strategic merge patch then behaves like a merge patch
whose lists are replaced (plus the directives)."""


# --- strategic merge patch: application --------------------------------------------------
# The functions below mutate their (private, copied) arguments, as the Go code does.

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList"


def apply_strategic_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any], schema: PatchSchema
) -> dict[str, Any]:
    """Apply a strategic merge patch to the object ``doc`` using the kind's ``schema``.

    Maps merge (``null`` deletes a key); lists whose strategy has ``merge`` merge by their merge
    key (lists of maps) or as sets (lists of primitives); other lists are replaced. Directives:
    ``$patch`` (``replace``/``delete``/``merge`` in a map, ``delete``/``replace`` as a list
    item), ``$retainKeys``, ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>``.
    Merged lists are ordered as the apiserver orders them: ``$setElementOrder`` first, then the
    patch's order, then the live order.
    """
    if not isinstance(patch, dict):
        raise MalformedPatch("strategic merge patch must be a JSON object")
    if not isinstance(doc, dict):
        raise PatchError("strategic merge patch can only be applied to a JSON object")
    return _merge_map(_copy(doc), _copy(patch), schema)


def _strategies(schema: PatchSchema) -> tuple[set[str], str | None]:
    strategy, key = schema.list_strategy()
    return (set(strategy.split(",")) if strategy else set()), key


def _directive_field(key: str, prefix: str, message: str) -> str:
    head, sep, field = key.partition("/")
    if not sep or head != prefix:
        raise MalformedPatch(message)
    return field


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: PatchSchema) -> dict[str, Any]:
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "delete":
            return {}
        if directive == "replace":
            return _merge_map({}, patch, schema)
        if directive != "merge":
            raise MalformedPatch(f"unknown patch type: {directive} in map: {_show(patch)}")
    _apply_retain_keys(original, patch)
    _apply_set_element_orders(original, patch, schema)
    deletions: list[tuple[str, Any]] = []
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVES):
            field = _directive_field(key, _DELETE_PRIMITIVES, "invalid patch format of primitive list")
            deletions.append((field, value))
        elif value is None:
            original.pop(key, None)
        elif key not in original:
            original[key] = _fresh(value, schema.child(key))
        else:
            original[key] = _merge_value(original[key], value, schema.child(key))
    # Deletions from primitive lists run after the additions of the same patch.
    for field, value in deletions:
        if value is None:
            original.pop(field, None)
            continue
        if not isinstance(value, list):
            raise MalformedPatch("invalid patch format of primitive list")
        current = original.get(field)
        if current is None:
            continue
        if not isinstance(current, list):
            raise PatchError(f"cannot delete from {field}: it is not a list")
        doomed = {_ident(v) for v in value}
        original[field] = [v for v in current if _ident(v) not in doomed]
    return original


def _merge_value(current: Any, value: Any, schema: PatchSchema) -> Any:
    """Merge the patch value of a key the original already has."""
    if isinstance(current, dict) and isinstance(value, dict):
        strategies, _ = _strategies(schema)
        if "replace" in strategies:
            return _fresh(value, schema)
        return _merge_map(current, value, schema)
    if isinstance(current, list) and isinstance(value, list):
        return _merge_list_field(current, value, schema)
    return _fresh(value, schema)  # scalars, or a change of type: the patch value wins


def _fresh(value: Any, schema: PatchSchema) -> Any:
    """A patch value for a key the original lacks: merged into nothing, so directives and
    nulls inside it are resolved rather than stored."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema)
    if isinstance(value, list):
        return _merge_list_field([], value, schema)
    return value


def _merge_list_field(current: list[Any], value: list[Any], schema: PatchSchema) -> list[Any]:
    strategies, key = _strategies(schema)
    if "merge" in strategies:
        return _merge_list(current, value, key, schema)
    return value


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise MalformedPatch("invalid patch format of retainKeys")
    keep = set(retain)
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_PRIMITIVES, _SET_ORDER)):
            continue
        if key not in keep:
            raise PatchError("patch content doesn't match retainKeys list")
    for key in [k for k in original if k not in keep]:
        del original[key]


def _element_kind(*lists: list[Any]) -> str | None:
    """The one kind of element the lists hold: "map", a scalar kind, or None when empty."""
    kind = None
    for items in lists:
        for item in items:
            if isinstance(item, list):
                raise PatchError("lists of lists are not supported")
            k = ("map" if isinstance(item, dict) else "bool" if isinstance(item, bool)
                 else "number" if isinstance(item, (int, float)) else type(item).__name__)
            if kind is None:
                kind = k
            elif kind != k:
                raise PatchError(f"list element types are not identical: {_show(list(lists))}")
    return kind


def _merge_list(current: list[Any], patch: list[Any], key: str | None, schema: PatchSchema) -> list[Any]:
    """Merge a list with strategy ``merge`` (``mergeSlice``)."""
    if not current and not patch:
        return current
    if _element_kind(current, patch) != "map":
        seen: set[Any] = set()
        merged = []
        for v in current + patch:
            if (ident := _ident(v)) not in seen:
                seen.add(ident)
                merged.append(v)
        return _order(merged, patch, current, None)
    if not key:
        raise PatchError("cannot merge lists without merge key for type map")
    current, patch = _list_directives(current, patch, key, schema)
    server_order = list(current)
    merged = list(current)
    for item in patch:
        want = _ident(item[key])
        for i, have in enumerate(merged):
            if key in have and _ident(have[key]) == want:
                merged[i] = _merge_map(have, item, schema)
                break
        else:
            merged.append(_fresh(item, schema))
    return _order(merged, patch, server_order, key)


def _list_directives(current: list[Any], patch: list[Any], key: str,
                     schema: PatchSchema) -> tuple[list[Any], list[Any]]:
    """Apply ``$patch`` items of a keyed list; returns (current, patch without them)."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            if key not in item:
                raise MalformedPatch(f"map: {_show(item)} does not contain declared merge key: {key}")
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise MalformedPatch(f"map: {_show(item)} does not contain declared merge key: {key}")
            doomed = _ident(item[key])
            current = [c for c in current if not (key in c and _ident(c[key]) == doomed)]
        elif directive == "replace":
            replace = True  # keep going: other $patch items are pruned all the same
        elif directive == "merge":
            raise MalformedPatch("merging lists cannot yet be specified in the patch")
        else:
            raise MalformedPatch(f"unknown patch type: {directive} in map: {_show(item)}")
    if replace:
        return [_fresh(item, schema) for item in plain], []
    return current, plain


def _identity(item: Any, key: str | None, error: type[ValueError] = PatchError) -> Any:
    """What identifies a list item: its merge key's value, or the whole (primitive) item."""
    if key is not None:
        if not isinstance(item, dict) or key not in item:
            raise error(f"map: {_show(item)} does not contain declared merge key: {key}")
        return _ident(item[key])
    return _ident(item)


def _order(merged: list[Any], patch_order: list[Any], server_order: list[Any], key: str | None) -> list[Any]:
    """Order a merged list as ``normalizeElementOrder`` does.

    Items named in ``patch_order`` come in that order; the others ("server-only") keep the live
    order of ``server_order``; the two runs are interleaved so that a server-only item stays in
    front of a patch item it preceded in the live list. A patch item the live list never had
    therefore goes before the server-only items that follow it.
    """
    wanted: dict[Any, int] = {}
    for i, item in enumerate(patch_order):
        wanted.setdefault(_identity(item, key, MalformedPatch), i)
    live: dict[Any, int] = {}
    for i, item in enumerate(server_order):
        live.setdefault(_identity(item, key), i)
    patch_items = [m for m in merged if _identity(m, key) in wanted]
    server_only = [m for m in merged if _identity(m, key) not in wanted]
    end = len(merged) + len(patch_order) + len(server_order)
    patch_items.sort(key=lambda m: wanted[_identity(m, key)])
    server_only.sort(key=lambda m: live.get(_identity(m, key), end))
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(patch_items):
        left = live.get(_identity(server_only[i], key))
        right = live.get(_identity(patch_items[j], key))
        if left is not None and right is not None and left < right:
            out.append(server_only[i])
            i += 1
        else:
            out.append(patch_items[j])
            j += 1
    out.extend(server_only[i:])
    out.extend(patch_items[j:])
    return out


def _check_order_list(patch_list: list[Any], order: list[Any], key: str | None) -> None:
    """The patch's items must appear in ``$setElementOrder`` and in the same relative order."""
    if not order or not patch_list:
        return
    items = [p for p in patch_list if not (isinstance(p, dict) and _DIRECTIVE in p)]
    p = s = 0
    while p < len(items) and s < len(order):
        if key is not None:
            if not isinstance(order[s], dict) or key not in order[s]:
                raise MalformedPatch(f"map: {_show(order[s])} does not contain declared merge key: {key}")
            if not isinstance(items[p], dict) or key not in items[p]:
                raise MalformedPatch(f"map: {_show(items[p])} does not contain declared merge key: {key}")
            same = _ident(items[p][key]) == _ident(order[s][key])
        else:
            same = _ident(items[p]) == _ident(order[s])
        if same:
            p += 1
        s += 1
    if p < len(items):
        raise MalformedPatch(
            f"The order in patch list:\n{_show(patch_list)}\n"
            f" doesn't match {_SET_ORDER} list:\n{_show(order)}\n"
        )


def _apply_set_element_orders(original: dict[str, Any], patch: dict[str, Any], schema: PatchSchema) -> None:
    """Merge each list that has a ``$setElementOrder/<field>`` and order it by that list.

    The list's own patch value is consumed here so the main loop does not merge it again.
    """
    for directive in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = patch.pop(directive)
        field = _directive_field(directive, _SET_ORDER, "invalid patch format of setElementOrder list")
        if not isinstance(order, list):
            raise MalformedPatch("invalid patch format of setElementOrder list")
        child = schema.child(field)
        strategies, key = _strategies(child)
        key = key if "merge" in strategies else None
        current, value = original.get(field), patch.get(field)
        if value is None and field in patch:
            continue  # the list is being deleted; there is nothing to order
        if current is not None and not isinstance(current, list):
            raise PatchError(f"cannot order {field}: it is not a list")
        if value is not None and not isinstance(value, list):
            raise MalformedPatch(f"invalid patch format of setElementOrder list: {field} is not a list")
        _check_order_list(value or [], order, key)
        if value is None:
            if current is None:
                continue
            merged = current
        else:
            merged = _merge_list_field(current or [], value, child)
            del patch[field]
        if merged and _element_kind(merged) != "map":
            key = None
        original[field] = _order(merged, order, current or [], key) if merged else merged
