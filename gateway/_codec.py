"""Request bodies and query parameters: decoded once, here, within the bounds of
``actors._limits`` (nesting depth) and go-yaml's alias checks (:func:`check_yaml_document`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import yaml

from actors import (
    APPLY_PATCH,
    JSON_PATCH,
    MAX_DEPTH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    BadRequest,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    body_strict_errors,
    depth_exceeds,
    yaml_duplicate_key,
    yaml_strict_error,
)
from projections import parse_int64

from ._protobuf import ProtobufError, UnknownKindError, decode_k8s_protobuf

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = frozenset({JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH})
_JSON_TYPES = frozenset({JSON, "*/*", "application/*"})
_json_decoder = msgspec.json.Decoder()

ALIAS_MIN_COUNT, ALIAS_MIN_DECODES = 100, 1000


class _YamlDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter when PyYAML has it; a string of several lines as a literal block (as go-yaml)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_YamlDumper.add_representer(str, _represent_str)


def encode_yaml(body: bytes) -> bytes:
    """A JSON answer (an object, a list, a Status) as kube's YAML serializer writes it
    (sigs.k8s.io/yaml ``JSONToYAML``: the JSON's keys sorted, block style, a sequence not indented
    under its key, a string of several lines as a literal block, no line folding)."""
    out: bytes = yaml.dump(_json_decoder.decode(body), Dumper=_YamlDumper, sort_keys=True,
                           default_flow_style=False, allow_unicode=True, width=1 << 30, encoding="utf-8")
    return out


def media_type(content_type: str | None) -> str:
    """The bare media type, lower-cased; a missing one is JSON (as the apiserver defaults)."""
    if not content_type:
        return JSON
    return content_type.split(";", 1)[0].strip().lower() or JSON


def decode_body(data: bytes, content_type: str | None, *, max_bytes: int,
                for_patch: bool = False) -> tuple[Any, str]:
    """(decoded value, media type). Raises 400 for a malformed or too deeply nested body, 413 when
    YAML anchors expand it beyond ``max_bytes``, 415 for an unknown type."""
    value, mt, _ = decode_body_strict(data, content_type, max_bytes=max_bytes, for_patch=for_patch,
                                      strict=False)
    return value, mt


def decode_body_strict(data: bytes, content_type: str | None, *, max_bytes: int, for_patch: bool = False,
                       strict: bool = True) -> tuple[Any, str, tuple[str, ...]]:
    """:func:`decode_body`, and (with ``strict``) the body's strict decoding errors as the
    apiserver words them: go-yaml's one error for a YAML body's repeated keys, ``duplicate field``
    per repeated member of a JSON body, and for a JSON patch also its operations' unknown members.
    A body without any pays no second parse."""
    mt = media_type(content_type)
    if for_patch:
        if mt not in PATCH_TYPES:
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}, {APPLY_PATCH}")
        if mt == APPLY_PATCH:  # YAML (JSON is YAML); repeated keys are strict errors as in kube
            value, dups = _yaml(data, max_bytes)
            return value, mt, (yaml_strict_error(dups),) if dups and strict else ()
        value = _json(data)
        return value, mt, _json_strict(data, value, strict, json_patch=mt == JSON_PATCH)
    if mt in _JSON_TYPES:
        value = _json(data)
        return value, JSON, _json_strict(data, value, strict)
    if mt in (YAML, "application/x-yaml", "text/yaml"):
        value, dups = _yaml(data, max_bytes)
        return value, YAML, (yaml_strict_error(dups),) if dups and strict else ()
    if mt == PROTOBUF:
        return _protobuf(data), JSON, ()
    raise UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: {JSON}, {YAML}, "
        f"{PROTOBUF}")


def _json_strict(data: bytes, value: Any, strict: bool, *, json_patch: bool = False) -> tuple[str, ...]:
    return tuple(body_strict_errors(data, value, json_patch=json_patch)) if strict else ()


def _protobuf(data: bytes) -> Any:
    """kubectl 1.32+ sends typed objects as Kubernetes protobuf; we decode them to their JSON form."""
    try:
        return decode_k8s_protobuf(data)
    except UnknownKindError as e:
        raise UnsupportedMediaType(f"the body of the request was in an unknown format: {e}") from None
    except ProtobufError as e:
        raise BadRequest(f"the request body is not valid Kubernetes protobuf: {e}") from None


def _too_deep(what: str) -> BadRequest:
    return BadRequest(f"the request body is not valid {what}: exceeded max depth of {MAX_DEPTH}")


def _json(data: bytes) -> Any:
    if not data.strip():
        raise BadRequest("the request body is empty")
    try:
        value = _json_decoder.decode(data)
    except msgspec.DecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    except RecursionError:  # msgspec gives up near the interpreter's limit, far beyond MAX_DEPTH
        raise _too_deep("JSON") from None
    # Fewer brackets than the limit cannot nest deeper: the walk is only for bodies that might.
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and depth_exceeds(value):
        raise _too_deep("JSON")
    return value


# --- YAML ----------------------------------------------------------------------------------


def allowed_alias_ratio(decodes: int) -> float:
    """go-yaml's ``allowedAliasRatio``: the share of a document's decode operations that alias
    expansion may produce, 99% up to 400,000 decodes, scaling down to 10% at 4,000,000."""
    if decodes <= 400_000:
        return 0.99
    if decodes >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * (decodes - 400_000) / 3_600_000


class _Expanded(msgspec.Struct):
    """A YAML node as the document expands it: decode operations (go-yaml counts one per node,
    alias and key), those inside an alias expansion, JSON size in bytes, nesting depth."""

    decodes: int = 1
    aliased: int = 0
    size: int = 2
    depth: int = 0


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return [n for pair in node.value for n in pair]


_STR = "tag:yaml.org,2002:str"
_KEPT_AS_TEXT = frozenset({_STR, "tag:yaml.org,2002:timestamp"})  # go-yaml keeps a timestamp key as text
_MERGE = "tag:yaml.org,2002:merge"
_Scalar = Callable[[yaml.ScalarNode], Any]


def _duplicate_keys(node: yaml.MappingNode, scalar: _Scalar | None) -> dict[int, list[str]]:
    """{index of a value node among the mapping's children: go-yaml's strict errors for the keys
    set again while decoding it}. The common mapping costs one set of its key texts; keys are
    compared as go-yaml decodes them (``1`` and ``"1"`` differ, ``a`` and ``"a"`` do not), and a
    merge (``<<: *base``) sets its mapping's keys where it stands, as go-yaml's ``merge`` does."""
    texts = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    if len(set(texts)) == len(texts) and not any(k.tag == _MERGE for k, _ in node.value):
        return {}
    seen: set[tuple[str, Any]] = set()
    found: dict[int, list[str]] = {}
    for i, (k, v) in enumerate(node.value):
        pairs = _merged(v, set()) if isinstance(k, yaml.ScalarNode) and k.tag == _MERGE else [(k, v)]
        for key, value_node in pairs:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a collection as a key: the constructor refuses it
            value: Any = key.value
            if key.tag not in _KEPT_AS_TEXT and scalar is not None:
                try:
                    value = scalar(key)
                except (yaml.YAMLError, ValueError):
                    pass
            ident = (key.tag, value)
            try:
                if ident in seen:
                    found.setdefault(2 * i + 1, []).append(yaml_duplicate_key(value_node.start_mark.line + 1, value))
                seen.add(ident)
            except TypeError:  # an unhashable constructed key: the constructor refuses it
                continue
    return found


def _merged(node: yaml.Node, visiting: set[int]) -> list[tuple[yaml.Node, yaml.Node]]:
    """The (key, value) pairs a merge sets, in go-yaml's order (a sequence of mappings from its
    last); a merge that reaches itself again sets nothing more (the walk refuses it)."""
    if id(node) in visiting:
        return []
    visiting.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        return [p for m in reversed(node.value) for p in _merged(m, visiting)]
    if not isinstance(node, yaml.MappingNode):
        return []
    out: list[tuple[yaml.Node, yaml.Node]] = []
    for k, v in node.value:
        out.extend(_merged(v, visiting) if isinstance(k, yaml.ScalarNode) and k.tag == _MERGE else [(k, v)])
    return out


def check_yaml_document(root: yaml.Node, max_bytes: int, scalar: _Scalar | None = None) -> list[str]:
    """Refuse a composed YAML document that expands too much, before anything is constructed;
    answer go-yaml's strict errors for its repeated mapping keys, in go-yaml's decoding order.

    The composer gives an alias the very node its anchor names; the first visit of a node (in
    document order, where anchors come first) is its definition, every later one an alias that
    costs what the anchor expands to, as go-yaml's decoder counts it. Each node is visited once,
    iteratively (the graph may be libyaml's 1000 levels deep), so a refused document costs a walk
    of its nodes, never of its expansion. go-yaml checks the alias ratio as it decodes; this
    checks the document's totals.

    A repeated key is reported once where it is written (go-yaml would report it again in each
    expansion of an alias to its mapping), after whatever its value reports, as go-yaml does;
    ``scalar`` constructs a key node that is not a string, to compare keys by value.
    """
    done: dict[int, _Expanded] = {}
    open_: set[int] = set()  # collections whose children are still being visited
    aliases: set[tuple[int, int]] = set()  # (parent id, child index) that are alias references
    dups: list[str] = []
    # (node, parent id, index | -2 = close | -3 = report the repeated key in node, a str)
    stack: list[tuple[Any, int, int]] = [(root, 0, -1)]
    while stack:
        node, parent, index = stack.pop()
        if index == -3:
            dups.append(node)
            continue
        key = id(node)
        if index == -2:
            open_.discard(key)
            done[key] = _combine(node, done, aliases)
            continue
        if key in done:
            aliases.add((parent, index))
            continue
        if isinstance(node, yaml.ScalarNode):
            done[key] = _Expanded(size=len(node.value) + 2)
            continue
        if key in open_:
            raise BadRequest("the request body is not valid YAML: yaml: anchor value contains itself")
        open_.add(key)
        stack.append((node, parent, -2))
        children = _children(node)
        repeated = _duplicate_keys(node, scalar) if isinstance(node, yaml.MappingNode) else {}
        if not repeated:
            stack.extend((c, key, i) for i, c in reversed(list(enumerate(children))))
            continue
        visits: list[tuple[Any, int, int]] = []
        for i, c in enumerate(children):
            visits.append((c, key, i))
            visits.extend((line, key, -3) for line in repeated.get(i, ()))
        stack.extend(reversed(visits))
    total = done[id(root)]
    decodes = total.decodes + 1  # the document node
    if total.aliased > ALIAS_MIN_COUNT and decodes > ALIAS_MIN_DECODES and \
            total.aliased / decodes > allowed_alias_ratio(decodes):
        raise BadRequest("the request body is not valid YAML: yaml: document contains excessive aliasing")
    if total.depth > MAX_DEPTH:
        raise _too_deep("YAML")
    if total.size > max_bytes:
        raise RequestEntityTooLarge(f"the request body expands to more than {max_bytes} bytes of JSON")
    return dups


def _combine(node: yaml.Node, done: dict[int, _Expanded], aliases: set[tuple[int, int]]) -> _Expanded:
    out = _Expanded(depth=1)
    key = id(node)
    for i, child in enumerate(_children(node)):
        c = done[id(child)]
        out.size += c.size + 1
        out.depth = max(out.depth, c.depth + 1)
        if (key, i) in aliases:  # the alias node, then all of its anchor's expansion, inside it
            out.decodes += 1 + c.decodes
            out.aliased += c.decodes
        else:
            out.decodes += c.decodes
            out.aliased += c.aliased
    return out


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when present: it stops at 1000 levels) with the document checked
    by :func:`check_yaml_document` between composing and constructing."""

    max_bytes = 0
    duplicates: list[str]  # go-yaml's strict errors for the last document's repeated keys

    def construct_document(self, node: yaml.Node) -> Any:
        self.duplicates = check_yaml_document(node, self.max_bytes, self.construct_object)
        return super().construct_document(node)


def _yaml(data: bytes, max_bytes: int) -> tuple[Any, list[str]]:
    """(the one document's value, go-yaml's strict errors for its repeated keys)."""
    if not data.strip():
        raise BadRequest("the request body is empty")
    loader = _Loader(data)
    loader.max_bytes = max_bytes
    loader.duplicates = []
    docs: list[Any] = []
    try:
        while loader.check_data():
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
            if len(docs) > 1:
                break
    except yaml.YAMLError as e:
        raise BadRequest(f"the request body is not valid YAML: {e}") from None
    except RecursionError:  # only without libyaml, whose parser stops at 1000 levels itself
        raise _too_deep("YAML") from None
    finally:
        loader.dispose()
    if len(docs) != 1:
        raise BadRequest("the request body must hold exactly one YAML document")
    return _plain(docs[0]), loader.duplicates


def _plain(v: Any) -> Any:
    """YAML may yield dates and non-string keys; Kubernetes objects are JSON values."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


def query_bool(value: str | None) -> bool:
    """Kubernetes boolean query parameters: absent, "false" (any case) and "0" are false."""
    return value is not None and value.lower() not in ("false", "0")


def query_int(name: str, value: str | None, *, minimum: int = 0) -> int | None:
    """An integer query parameter as kube parses one (``strconv.ParseInt(s, 10, 64)``: ASCII
    digits, an optional sign, int64): None when absent or empty, else 400 BadRequest."""
    if value in (None, ""):
        return None
    n = parse_int64(value)
    if n is None:
        raise BadRequest(f"invalid value for {name}: {value!r}")
    if n < minimum:
        raise BadRequest(f"invalid value for {name}: {value!r} (must be >= {minimum})")
    return n
