"""Server-side printing: ``meta.k8s.io`` Tables built from stored objects. Pure: no I/O, no trio.

What the apiserver does, and what is mirrored here:

- A request is answered as a Table when the first *acceptable* clause of its ``Accept`` header is
  ``application/json;as=Table;g=meta.k8s.io;v=v1`` (or ``v1beta1``), or ``application/yaml;as=Table;...``
  (the same Table in YAML, ``Content-Type: application/yaml``); Tables are never protobuf
  [apiserver ``RequestScope.AllowsMediaTypeTransform``]. kubectl sends
  ``application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,``
  ``application/json``.
- Built-in kinds are printed by ``pkg/printers/internalversion/printers.go`` and the server always
  generates the *wide* form (``GenerateOptions{Wide: true}``): every column, ``priority`` 1 included,
  and one cell per column. Kinds without a printer there (Role, ClusterRole, CRDs) get the default
  convertor's ``Name`` + ``Created At`` (an RFC3339 cell) [apiserver ``pkg/registry/rest/table.go``].
  Custom resources get ``Name`` + the CRD's ``additionalPrinterColumns``, or ``Name`` + ``Age`` when
  it declares none [apiextensions ``tableconvertor.go``, ``helpers.go serveDefaultColumnsIfEmpty``];
  kinds with no printer here use that CR default too.
- ``row.object`` follows ``?includeObject=``: ``Metadata`` (the default) is a ``PartialObjectMetadata``
  whose apiVersion is the Table's group-version, ``Object`` the full object, ``None`` is ``null``.
- A single-object Table's ``metadata.resourceVersion`` is the object's; a list's is the list's.
- Across tenants (``/clusters/*/``, each object's tenant in its ``tenancy.jetkube.io/cluster``
  annotation), a Table has a ``Cluster`` column after ``Name`` (jetkube's; kcp's Tables have none).
- ``as=PartialObjectMetadata`` (a GET, a watch's events) and ``as=PartialObjectMetadataList`` (a LIST),
  meta.k8s.io v1/v1beta1, JSON or YAML: each object reduced to its metadata (managedFields included), as
  client-go's metadata informers ask for [apiserver ``handlers/response.go``
  ``asPartialObjectMetadata(List)``]; the other one of the two for a request is 406 NotAcceptable.
- Watch: each event's object is a one-row Table. The apiserver sends ``columnDefinitions`` on the
  first event only; later events carry ``"columnDefinitions":null`` (``watchEmbeddedEncoder`` sets
  ``NoHeaders`` after the first event). kubectl's table printer reuses the last definitions it saw
  when a Table has none. ERROR events stay ``Status`` objects (never converted).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from kinds import (
    CLUSTER_ANNOTATION,
    CREATED_DESCRIPTION,
    NAME_DESCRIPTION,
    NotAcceptable,
    UnsupportedMediaType,
    human_duration,
    parse_time,
    translate_timestamp_since,
)

if TYPE_CHECKING:
    from kinds import ResourceDef

TABLE_V1 = "meta.k8s.io/v1"
TABLE_V1BETA1 = "meta.k8s.io/v1beta1"
INCLUDE_NONE = "None"
INCLUDE_METADATA = "Metadata"
INCLUDE_OBJECT = "Object"

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


# --- Accept negotiation ------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    """One clause of an ``Accept`` header. ``params`` keys are lower-cased; ``q`` is removed."""

    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0


def parse_accept(accept: str | None) -> list[MediaRange]:
    """The clauses of an Accept header in preference order: by ``q`` (highest first), then wildcard
    types after concrete ones, then the client's order. Clauses with ``q=0`` or no ``/`` are dropped,
    but a bare ``*``, which goautoneg reads as ``*/*``."""
    out: list[tuple[float, int, int, int, MediaRange]] = []
    for index, clause in enumerate((accept or "").split(",")):
        parts = [p.strip() for p in clause.split(";")]
        mt = "*/*" if parts[0] == "*" else parts[0].lower()
        if "/" not in mt:
            continue
        typ, _, sub = mt.partition("/")
        params: dict[str, str] = {}
        q = 1.0
        for p in parts[1:]:
            if not p:
                continue
            k, _, v = p.partition("=")
            k, v = k.strip().lower(), v.strip().strip('"')
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            else:
                params[k] = v
        if q <= 0:
            continue
        out.append((-q, typ == "*", sub == "*", index, MediaRange(typ, sub, params, q)))
    out.sort(key=lambda t: t[:4])
    return [t[4] for t in out]


#: The ``as=`` views of meta.k8s.io kube serves (a Table in JSON or YAML, PartialObjectMetadata(List) in any
#: of its types); jetkube serves each in JSON and YAML.
_METADATA_VIEWS = ("PartialObjectMetadata", "PartialObjectMetadataList")
_VIEW_SUBTYPES = frozenset({"json", "yaml", "*"})


def _negotiate(accept: str | None, *, views: bool = True) -> MediaRange | None:
    """The first clause kube takes (:func:`_kube_serves`) that jetkube serves: a plain type (JSON,
    YAML, protobuf, wildcards) or, with ``views``, a Table or PartialObjectMetadata(List) of
    meta.k8s.io v1/v1beta1 in JSON or YAML. A protobuf PartialObjectMetadata, which kube serves and
    jetkube does not, is skipped. ``views=False`` is kube's ``DefaultEndpointRestrictions`` (no ``as``
    at all): how kube negotiates a discovery document and every error Status (``ErrorNegotiated``)."""
    for mr in parse_accept(accept):
        if not _kube_serves(mr, views=views):
            continue
        if not ({"as", "g", "v"} & set(mr.params)):
            return mr
        if mr.subtype in _VIEW_SUBTYPES:
            return mr
    return None


#: kube's answer to an Accept it can serve none of (``negotiation.NewNotAcceptableError``, built-in kinds
#: and custom resources alike).
NOT_ACCEPTABLE = ("only the following media types are accepted: application/json, application/yaml, "
                  "application/vnd.kubernetes.protobuf")
_KUBE_TYPES = frozenset({("application", "json"), ("application", "yaml"), ("application", "vnd.kubernetes.protobuf"),
                         ("application", "*"), ("*", "*")})


def _kube_serves(mr: MediaRange, *, views: bool = True) -> bool:
    """Whether kube-apiserver's ``NegotiateMediaTypeOptions`` takes this clause: one of its serializers'
    types (JSON, YAML, protobuf; CBOR is off by default in 1.33), ``stream`` only ``watch`` and not for
    YAML (no stream serializer), and for a resource request (``views``: ``acceptMediaTypeOptions`` +
    ``RequestScope.AllowsMediaTypeTransform``) ``sv`` only ``v1`` and ``as``/``g``/``v`` only as a
    meta.k8s.io v1/v1beta1 Table (JSON or YAML) or PartialObjectMetadata(List) (any of its types).
    Without ``views`` (``DefaultEndpointRestrictions``) no ``sv`` and no ``as``/``g``/``v`` at all."""
    p = mr.params
    if (mr.type, mr.subtype) not in _KUBE_TYPES or p.get("stream", "watch") not in ("", "watch") \
            or (p.get("stream") and mr.subtype == "yaml"):
        return False
    sv = p.get("sv", "")
    if sv and (not views or sv != "v1"):
        return False
    if not ({"as", "g", "v"} & set(p)):
        return True
    if not views or p.get("g") != "meta.k8s.io" or p.get("v") not in ("v1", "v1beta1"):
        return False
    if p.get("as") == "Table":
        return mr.subtype in _VIEW_SUBTYPES
    return p.get("as") in _METADATA_VIEWS


def acceptable(accept: str | None, *, views: bool = True) -> bool:
    """Whether kube could serve ``accept`` (kube's ``NegotiateOutputMediaType``): an absent or empty
    header is JSON; otherwise one clause kube takes. jetkube answers JSON whenever kube would answer
    (a protobuf PartialObjectMetadata, a discovery document in protobuf), so only what kube refuses is
    refused. ``views=False``: a discovery document's negotiation (no ``as=`` view)."""
    if accept is None or not accept.strip():
        return True
    return any(_kube_serves(mr, views=views) for mr in parse_accept(accept))


#: What kube's go-restful routes produce (``Route.Produces``, ``negotiation.MediaTypesForSerializer``: JSON, YAML,
#: protobuf; CBOR is off by default): a discovery document's (``/api``, ``/api/v1``, a built-in
#: ``/apis/<group>/<version>``) and a built-in kind's routes; a collection's GET (list, watch) adds the stream
#: types (``endpoints/installer.go`` ``allMediaTypes``); ``/version`` is JSON alone (``server/routes/version.go``).
ROUTE_MEDIA_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
ROUTE_STREAM_MEDIA_TYPES = (*ROUTE_MEDIA_TYPES, "application/json;stream=watch",
                            "application/vnd.kubernetes.protobuf;stream=watch")
VERSION_MEDIA_TYPES = ("application/json",)


def route_accepts(accept: str | None, produces: tuple[str, ...]) -> bool:
    """go-restful's ``Route.matchesAccept``, how kube's router picks a route before any handler negotiates:
    some clause of ``accept`` (an absent or empty header is ``*/*``), its parameters and spaces cut off, is
    ``*/*`` or, exactly (case and all), one of ``produces``. ``q`` is not looked at, and neither
    ``application/*`` nor a bare ``*`` matches (kube's handlers would take both)."""
    accept = accept.strip() if accept else ""
    for clause in (accept or "*/*").split(","):
        media = clause.partition(";")[0].strip(" ")
        if media == "*/*" or media in produces:
            return True
    return False


def check_route(accept: str | None, produces: tuple[str, ...], *, method: str = "GET",
                bodiless: bool = True) -> None:
    """kube's router refusing a request whose Accept no route of its path takes (:func:`route_accepts`):
    go-restful's ``ServiceError`` written as kube's ``NewGenericServerResponse`` Status (``details: {}``), 406
    ``406: Not Acceptable`` with the routes' representations; a POST, PUT or PATCH without a body
    (``bodiless``: no Content-Length, or 0) is 415 ``415: Unsupported Media Type`` instead
    [go-restful ``jsr311.go`` ``detectRoute``; apiserver ``server/handler.go`` ``serviceErrorHandler``]."""
    if route_accepts(accept, produces):
        return
    available = ", ".join(produces)
    err: NotAcceptable | UnsupportedMediaType
    if bodiless and method in ("POST", "PUT", "PATCH"):
        err = UnsupportedMediaType(f"415: Unsupported Media Type\n\nAvailable representations: {available}")
    else:
        err = NotAcceptable(f"406: Not Acceptable\n\nAvailable representations: {available}")
    err.empty_details = True
    raise err


def check_acceptable(accept: str | None, *, views: bool = True) -> None:
    """406 NotAcceptable with kube's message unless :func:`acceptable`."""
    if not acceptable(accept, views=views):
        raise NotAcceptable(NOT_ACCEPTABLE)


def wants_table(accept: str | None) -> str | None:
    """The Table apiVersion to answer with (``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1``) when the
    first clause jetkube can serve asks for a Table (in JSON or YAML: :func:`wants_yaml` says which);
    None when it is a plain type (JSON, YAML, protobuf, wildcards: answered as the normal object) or
    when no clause asks for a Table."""
    mr = _negotiate(accept)
    if mr is None or mr.params.get("as") != "Table":
        return None
    return f"meta.k8s.io/{mr.params['v']}"


def wants_metadata(accept: str | None) -> tuple[str, str] | None:
    """(``PartialObjectMetadata`` or ``PartialObjectMetadataList``, its apiVersion) when the first
    clause jetkube can serve asks for one (in JSON or YAML); None otherwise."""
    mr = _negotiate(accept)
    if mr is None or mr.params.get("as") not in _METADATA_VIEWS:
        return None
    return mr.params["as"], f"meta.k8s.io/{mr.params['v']}"


def metadata_api_version(asked: tuple[str, str], *, is_list: bool) -> str:
    """The apiVersion of the PartialObjectMetadata(List) ``asked`` (:func:`wants_metadata`) for a
    list or not; 406 NotAcceptable when the request asked for the other kind (kube's
    ``asPartialObjectMetadata(List)``; a watch's events are single objects)."""
    kind, api_version = asked
    if is_list and kind != "PartialObjectMetadataList":
        raise NotAcceptable("you requested PartialObjectMetadata, but the requested object is a list")
    if not is_list and kind != "PartialObjectMetadata":
        raise NotAcceptable("you requested PartialObjectMetadataList, but the requested object is not a list")
    return api_version


#: kube's 406 for a watch whose Accept negotiates a type without a stream serializer (YAML):
#: ``NegotiateOutputMediaTypeStream`` lists the stream types (CBOR is off by default in 1.33).
NOT_ACCEPTABLE_STREAM = ("only the following media types are accepted: application/json;stream=watch, "
                         "application/vnd.kubernetes.protobuf;stream=watch")


def wants_yaml(accept: str | None) -> bool:
    """True when the first clause jetkube can serve is ``application/yaml``, plain or a view (a Table,
    PartialObjectMetadata(List)): kube's YAML serializer answers a resource request's object, list,
    view or success Status (``transformResponseObject``); a watch is refused (406
    :data:`NOT_ACCEPTABLE_STREAM`: YAML has no stream serializer). An error Status follows
    :func:`plain_yaml` instead."""
    return _yaml_first(accept, views=True)


def plain_yaml(accept: str | None) -> bool:
    """True when kube negotiates YAML without views (``DefaultEndpointRestrictions``): the first clause
    it takes with no ``as``/``g``/``v`` is ``application/yaml``. How kube answers a discovery document
    (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>[/<version>]``) and every error Status
    (``ErrorNegotiated``): a ``application/yaml;as=Table`` clause does not make a 404 YAML."""
    return _yaml_first(accept, views=False)


def _yaml_first(accept: str | None, *, views: bool) -> bool:
    """Whether the first clause :func:`_negotiate` takes (with or without views) is YAML."""
    if accept is None or "yaml" not in accept.lower():
        return False  # (every request asks: most have no YAML in their Accept)
    mr = _negotiate(accept, views=views)
    return mr is not None and mr.subtype == "yaml"


#: kube-openapi's protobuf media subtypes of /openapi/v2 (``handler.go``) and of an /openapi/v3 document
#: (``handler3``), the deprecated ``@`` spelling too.
OPENAPI_V2_PROTOBUF = ("com.github.proto-openapi.spec.v2.v1.0+protobuf", "com.github.proto-openapi.spec.v2@v1.0+protobuf")
OPENAPI_V3_PROTOBUF = ("com.github.proto-openapi.spec.v3.v1.0+protobuf", "com.github.proto-openapi.spec.v3@v1.0+protobuf")


def openapi_media(accept: str | None, protobuf: tuple[str, ...]) -> str | None:
    """kube-openapi's negotiation of an OpenAPI document (``/openapi/v2``, ``/openapi/v3/<group-version>``):
    the first clause whose type is ``application`` or ``*`` and whose subtype is ``json``, one of
    ``protobuf`` or ``*`` gives ``"json"`` or that protobuf subtype; parameters are not looked at; an
    absent header is ``*/*``. None: kube-openapi answers 406 with an empty body (YAML among them:
    OpenAPI is never YAML)."""
    for mr in parse_accept(accept if accept and accept.strip() else "*/*"):
        if mr.type not in ("application", "*"):
            continue
        for subtype in ("json", *protobuf):
            if mr.subtype in (subtype, "*"):
                return subtype
    return None


def wants_protobuf(accept: str | None) -> bool:
    """True when the first clause jetkube can serve is ``application/vnd.kubernetes.protobuf`` (a
    plain object, not a Table): client-go's typed clients send
    ``application/vnd.kubernetes.protobuf,application/json``."""
    mr = _negotiate(accept)
    return mr is not None and (mr.type, mr.subtype) == ("application", "vnd.kubernetes.protobuf")


def table_content_type(api_version: str) -> str:
    """The Content-Type naming the Table variant, e.g. ``application/json;as=Table;v=v1;g=meta.k8s.io``.

    Note: the real apiserver answers Tables (and every watch stream) with plain
    ``application/json``; kubectl and client-go pick the decoder from the media type alone and read
    ``kind: Table`` from the body, so either is understood."""
    version = api_version.rpartition("/")[2]
    return f"application/json;as=Table;v={version};g=meta.k8s.io"


def parse_include_object(value: str | None) -> str:
    """``?includeObject=`` validated as the apiserver does; "" or absent means Metadata.
    Raises ValueError with the apiserver's message (answer it as 400 BadRequest)."""
    if value in (None, "", INCLUDE_METADATA):
        return INCLUDE_METADATA
    if value in (INCLUDE_NONE, INCLUDE_OBJECT):
        return value
    raise ValueError(f'Unable to convert to Table as requested: includeObject: Invalid value: "{value}": '
                     "must be 'Metadata', 'Object', 'None', or empty")


# --- column definitions ------------------------------------------------------------------------
# Built-in kinds' columns and cells are the kind's definition's (``rdef.printer``, kinds/_printers.py).

_NAME = {"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}
_CR_AGE = {"name": "Age", "type": "date", "format": "", "description": CREATED_DESCRIPTION, "priority": 0}


def columns_for(rdef: ResourceDef) -> list[dict]:
    """Column definitions for a kind (copies; safe to mutate)."""
    printer = rdef.printer
    if printer is not None:
        return printer.column_definitions()
    return columns_from_printer_columns(rdef.printer_columns or [])


def columns_from_printer_columns(printer_columns: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Column definitions for a custom resource from its served version's ``additionalPrinterColumns``
    (``name``, ``type``, ``jsonPath``, ``format``, ``description``, ``priority``): ``Name`` first, then
    one per printer column; ``Name`` + ``Age`` (type ``date``) when there are none."""
    if not printer_columns:
        return [dict(_NAME), dict(_CR_AGE)]
    out = [dict(_NAME)]
    for pc in printer_columns:
        desc = (pc.get("description")
                or f"Custom resource definition column (in JSONPath format): {pc.get('jsonPath', '')}")
        out.append({"name": str(pc.get("name", "")), "type": str(pc.get("type", "string")),
                    "format": str(pc.get("format") or ""), "description": desc,
                    "priority": int(pc.get("priority") or 0)})
    return out


def _default_printer_columns(
        printer_columns: Sequence[Mapping[str, Any]] | None) -> Sequence[Mapping[str, Any]]:
    if printer_columns:
        return printer_columns
    return [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


# --- JSONPath-lite -----------------------------------------------------------------------------


class JSONPathError(ValueError):
    pass


_Step = tuple[str, Any]  # ("key", name) | ("index", i) | ("all", None) | ("filter", (path, op, value))

_LITERAL = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'"""
                      r"""|(-?\d+(?:\.\d+)?)|(true|false|null))\s*""")


def _parse_path(path: str) -> list[_Step]:
    """Parse a simple JSONPath: ``.a.b``, ``.a\\.b`` (escaped dot), ``['a.b']``, ``[0]``, ``[-1]``,
    ``[*]``, ``.*``, ``[?(@.x.y == "v")]`` / ``!=`` / ``[?(@.x)]``; optional ``{...}`` and ``$``."""
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1].strip()
    p = p.removeprefix("$")
    steps: list[_Step] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == ".":
            if p.startswith("..", i):
                raise JSONPathError(f"recursive descent is not supported: {path!r}")
            i += 1
            name = []
            while i < n and p[i] not in ".[":
                if p[i] == "\\" and i + 1 < n:
                    name.append(p[i + 1])
                    i += 2
                    continue
                name.append(p[i])
                i += 1
            key = "".join(name)
            if key == "*":
                steps.append(("all", None))
            elif key:
                steps.append(("key", key))
            elif i < n and p[i] == "[":
                continue
            else:
                raise JSONPathError(f"empty field name in {path!r}")
        elif c == "[":
            end = _bracket_end(p, i, path)
            inner = p[i + 1:end].strip()
            i = end + 1
            if inner == "*":
                steps.append(("all", None))
            elif inner[:1] in ("'", '"') and inner[-1:] == inner[:1] and len(inner) >= 2:
                steps.append(("key", inner[1:-1]))
            elif re.fullmatch(r"-?\d+", inner):
                steps.append(("index", int(inner)))
            elif inner.startswith("?(") and inner.endswith(")"):
                steps.append(("filter", _parse_filter(inner[2:-1].strip(), path)))
            else:
                raise JSONPathError(f"unsupported subscript [{inner}] in {path!r}")
        else:
            raise JSONPathError(f"unexpected {c!r} at {i} in {path!r}")
    return steps


def _bracket_end(p: str, start: int, path: str) -> int:
    depth, quote, escaped = 0, "", False
    for j in range(start, len(p)):
        ch = p[j]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0 and ch == "]":
                return j
    raise JSONPathError(f"unclosed [ in {path!r}")


def _parse_filter(expr: str, path: str) -> tuple[list[_Step], str, Any]:
    m = re.fullmatch(r"@((?:\.[^=!<>\s]+|\[[^\]]*\])*)\s*(?:(==|!=)(.*))?", expr)
    if not m:
        raise JSONPathError(f"unsupported filter ?({expr}) in {path!r}")
    sub = _parse_path(m.group(1)) if m.group(1) else []
    if m.group(2) is None:
        return sub, "exists", None
    lit = _LITERAL.fullmatch(m.group(3))
    if not lit:
        raise JSONPathError(f"unsupported filter literal in {path!r}")
    if lit.group(1) is not None or lit.group(2) is not None:
        raw = lit.group(1) if lit.group(1) is not None else lit.group(2)
        value: Any = re.sub(r"\\(.)", r"\1", raw)
    elif lit.group(3) is not None:
        value = float(lit.group(3)) if "." in lit.group(3) else int(lit.group(3))
    else:
        value = {"true": True, "false": False, "null": None}[lit.group(4)]
    return sub, m.group(2), value


def _walk(nodes: Iterable[Any], steps: Sequence[_Step]) -> list[Any]:
    cur = list(nodes)
    for kind, arg in steps:
        nxt: list[Any] = []
        for node in cur:
            if kind == "key":
                if isinstance(node, dict) and arg in node:
                    nxt.append(node[arg])
            elif kind == "index":
                if isinstance(node, list) and -len(node) <= arg < len(node):
                    nxt.append(node[arg])
            elif kind == "all":
                if isinstance(node, list):
                    nxt.extend(node)
                elif isinstance(node, dict):
                    nxt.extend(node.values())
            else:  # filter
                sub, op, value = arg
                if isinstance(node, list):
                    items = node
                else:
                    items = list(node.values()) if isinstance(node, dict) else []
                for item in items:
                    found = _walk([item], sub)
                    if op == "exists":
                        ok = bool(found)
                    else:
                        eq = any(_json_equal(f, value) for f in found)
                        ok = eq if op == "==" else (bool(found) and not eq)
                    if ok:
                        nxt.append(item)
        cur = nxt
    return cur


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def jsonpath_find(obj: Any, path: str) -> list[Any]:
    """Every value ``path`` selects in ``obj`` (missing keys select nothing). Raises JSONPathError
    for syntax outside the supported subset."""
    return _walk([obj], _parse_path(path))


# --- cells -------------------------------------------------------------------------------------


def _go_float(x: float) -> str:
    """Go's ``fmt.Sprint(float64)`` (``%v`` = ``%g`` with the shortest digits; strconv switches to the
    exponent form when the decimal exponent is < -4 or >= 6, e.g. ``1e+06``, ``1.5e-05``)."""
    if math.isnan(x):
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if str(x).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    e = len(ds) - 1 + int(exp)
    neg = "-" if sign else ""
    if e < -4 or e >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return neg + format(Decimal(repr(abs(x))).normalize(), "f")


def _go_json(value: Any) -> str:
    """Go ``json.Marshal`` of an unstructured value: sorted keys, HTML-safe escapes."""
    text = _encode_sorted(value).decode()
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _jsonpath_text(value: Any) -> str | None:
    """client-go jsonpath ``PrintResults`` for one value: strings as-is, maps/lists as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    return _go_json(value)


def _printer_cell(col_type: str, value: Any, now: datetime) -> Any:
    """apiextensions ``cellForJSONValue`` (plus the string case of ``ConvertToTable``)."""
    if value is None:
        return None
    if col_type == "string":
        return _jsonpath_text(value)
    if col_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if col_type == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if col_type == "boolean":
        return value if isinstance(value, bool) else None
    if col_type == "date":
        if isinstance(value, str):
            if parse_time(value) is None:
                return "<invalid>"
            return translate_timestamp_since(value, now)
        return None
    return None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def cells_for(rdef: ResourceDef, obj: Mapping[str, Any], *, now: datetime,
              printer_columns: Sequence[Mapping[str, Any]] | None = None) -> list[Any]:
    """One row's cells, matching ``columns_for(rdef)`` (or ``columns_from_printer_columns`` when
    ``printer_columns`` is given) one to one."""
    printer = rdef.printer
    if printer_columns is None and printer is not None:
        return printer.cells(obj, now)
    if printer_columns is None:
        printer_columns = rdef.printer_columns  # a custom resource's additionalPrinterColumns
    name = _meta(obj).get("name")
    cells: list[Any] = [name if isinstance(name, str) else ""]
    for pc in _default_printer_columns(printer_columns):
        try:
            found = jsonpath_find(obj, str(pc.get("jsonPath", "")))
        except JSONPathError:
            found = []
        cells.append(_printer_cell(str(pc.get("type", "string")), found[0] if found else None, now))
    return cells


_CLUSTER = {"name": "Cluster", "type": "string", "format": "",
            "description": f"The logical cluster (tenant) of the object: its {CLUSTER_ANNOTATION} annotation.",
            "priority": 0}


def _columns(rdef: ResourceDef, printer_columns: Sequence[Mapping[str, Any]] | None,
             tenant_column: bool = False) -> list[dict]:
    cols = columns_for(rdef) if printer_columns is None else columns_from_printer_columns(printer_columns)
    if tenant_column:
        cols.insert(1, dict(_CLUSTER))
    return cols


# --- Tables ------------------------------------------------------------------------------------


def _row(rdef: ResourceDef, item: bytes, obj: dict, api_version: str, include_object: str, now: datetime,
         printer_columns: Sequence[Mapping[str, Any]] | None, tenant_column: bool = False) -> dict:
    cells = cells_for(rdef, obj, now=now, printer_columns=printer_columns)
    if tenant_column:
        annotations = _meta(obj).get("annotations")
        cells.insert(1, annotations.get(CLUSTER_ANNOTATION, "") if isinstance(annotations, dict) else "")
    row: dict[str, Any] = {"cells": cells}
    if include_object == INCLUDE_OBJECT:
        row["object"] = msgspec.Raw(item)
    elif include_object == INCLUDE_NONE:
        row["object"] = None
    else:
        meta = {k: v for k, v in _meta(obj).items() if k != "managedFields"}
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": meta}
    return row


def _table(columns: list[dict] | None, rows: list[dict], api_version: str, meta: dict) -> bytes:
    return _encode({"kind": "Table", "apiVersion": api_version, "metadata": meta,
                    "columnDefinitions": columns, "rows": rows})


def _check(api_version: str, include_object: str) -> None:
    if api_version not in (TABLE_V1, TABLE_V1BETA1):
        raise ValueError(f"no Table exists in group version {api_version}")
    if include_object not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT):
        parse_include_object(include_object)


def table_for_list(rdef: ResourceDef, items: Sequence[bytes], *, api_version: str, include_object: str,
                   resource_version: str, continue_token: str = "", remaining: int | None = None,
                   now: datetime, printer_columns: Sequence[Mapping[str, Any]] | None = None,
                   tenant_column: bool = False) -> bytes:
    """A LIST answered as a Table: one row per item (the items' exact JSON bytes), with the list's
    ``resourceVersion``/``continue``/``remainingItemCount`` in ``metadata`` (the last two only when
    given). ``printer_columns`` (a CRD version's ``additionalPrinterColumns``, possibly empty) selects
    the custom-resource convertor instead of the built-in printer for ``rdef``. ``tenant_column``
    (a list across tenants): a ``Cluster`` column after ``Name``, from each object's annotation."""
    _check(api_version, include_object)
    rows = [_row(rdef, item, _decode(item), api_version, include_object, now, printer_columns, tenant_column)
            for item in items]
    return _table(_columns(rdef, printer_columns, tenant_column), rows, api_version,
                  _list_meta(resource_version, continue_token, remaining))


def _list_meta(resource_version: str, continue_token: str, remaining: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    return meta


def _object_table(rdef: ResourceDef, item: bytes, api_version: str, include_object: str, now: datetime,
                  printer_columns: Sequence[Mapping[str, Any]] | None, headers: bool,
                  tenant_column: bool = False) -> bytes:
    _check(api_version, include_object)
    obj = _decode(item)
    rv = _meta(obj).get("resourceVersion")
    meta = {"resourceVersion": rv} if isinstance(rv, str) and rv else {}
    row = _row(rdef, item, obj, api_version, include_object, now, printer_columns, tenant_column)
    return _table(_columns(rdef, printer_columns, tenant_column) if headers else None, [row], api_version, meta)


def table_for_object(rdef: ResourceDef, item: bytes, *, api_version: str, include_object: str, now: datetime,
                     printer_columns: Sequence[Mapping[str, Any]] | None = None) -> bytes:
    """A GET of one object answered as a one-row Table; ``metadata.resourceVersion`` is the object's."""
    return _object_table(rdef, item, api_version, include_object, now, printer_columns, True)


def table_watch_line(rdef: ResourceDef, event_type: str, item: bytes, *, api_version: str,
                     include_object: str, now: datetime, headers: bool = True,
                     printer_columns: Sequence[Mapping[str, Any]] | None = None,
                     tenant_column: bool = False) -> bytes:
    """One watch event whose object is a one-row Table, newline-terminated. Pass ``headers=True`` for
    the first event of a stream and False afterwards: the apiserver then sends
    ``"columnDefinitions":null`` and kubectl keeps using the columns it already has. Do not use this
    for ERROR events (their Status object is sent as is)."""
    table = _object_table(rdef, item, api_version, include_object, now, printer_columns, headers, tenant_column)
    return b'{"type":%s,"object":%s}\n' % (_encode(event_type), table)


# --- PartialObjectMetadata -----------------------------------------------------------------------


class _MetadataOnly(msgspec.Struct):
    """An object's metadata, the rest skipped undecoded."""

    metadata: msgspec.Raw = msgspec.Raw(b"{}")


_metadata_only = msgspec.json.Decoder(_MetadataOnly).decode


def metadata_for_object(item: bytes, *, api_version: str) -> bytes:
    """An object as ``PartialObjectMetadata`` of ``api_version`` (meta.k8s.io/v1 or v1beta1): its
    metadata as stored, managedFields included (kube's ``meta.AsPartialObjectMetadata``)."""
    return b'{"kind":"PartialObjectMetadata","apiVersion":%s,"metadata":%s}' % (
        _encode(api_version), bytes(_metadata_only(item).metadata))


def metadata_for_list(items: Sequence[bytes], *, api_version: str, resource_version: str, continue_token: str = "",
                      remaining: int | None = None) -> bytes:
    """A LIST as ``PartialObjectMetadataList``: the list's metadata, each item's
    :func:`metadata_for_object`."""
    head = b'{"kind":"PartialObjectMetadataList","apiVersion":%s,"metadata":%s,"items":[' % (
        _encode(api_version), _encode(_list_meta(resource_version, continue_token, remaining)))
    return head + b",".join(metadata_for_object(i, api_version=api_version) for i in items) + b"]}"


def metadata_watch_line(event_type: str, item: bytes, *, api_version: str) -> bytes:
    """One watch event whose object is its ``PartialObjectMetadata``, newline-terminated."""
    return b'{"type":%s,"object":%s}\n' % (_encode(event_type), metadata_for_object(item, api_version=api_version))


# --- a write's answer transformed (kube's ``transformResponseObject``) --------------------------


@dataclass(frozen=True)
class View:
    """The ``as=`` view a request asked its answer in (kube's ``MediaTypeOptions.Convert``):
    ``kind`` Table, PartialObjectMetadata or PartialObjectMetadataList, ``api_version``
    meta.k8s.io/v1 or v1beta1, ``include_object`` a Table's ``?includeObject=``."""

    kind: str
    api_version: str
    include_object: str = ""


def view_for(accept: str | None, include_object: str | None) -> View | None:
    """The view the first clause jetkube can serve asks for, or None (the plain object). Raises
    ValueError with kube's message for a Table with a bad ``includeObject`` (answer it 400)."""
    mr = _negotiate(accept)
    if mr is None or "as" not in mr.params:
        return None
    kind = mr.params["as"]
    include = parse_include_object(include_object) if kind == "Table" else ""
    return View(kind, f"meta.k8s.io/{mr.params['v']}", include)


def check_view(view: View, *, is_list: bool) -> None:
    """406 NotAcceptable when ``view`` cannot be made of a list (``is_list``) or of one object, as
    kube's ``asPartialObjectMetadata(List)``; Tables are made of both."""
    if view.kind in _METADATA_VIEWS:
        metadata_api_version((view.kind, view.api_version), is_list=is_list)


def object_in_view(view: View, rdef: ResourceDef, item: bytes, *, now: datetime) -> bytes:
    """One object (a write's answer) in ``view``: a one-row Table or its PartialObjectMetadata;
    406 for PartialObjectMetadataList."""
    check_view(view, is_list=False)
    if view.kind == "Table":
        return table_for_object(rdef, item, api_version=view.api_version, include_object=view.include_object, now=now)
    return metadata_for_object(item, api_version=view.api_version)


def list_in_view(view: View, rdef: ResourceDef, items: Sequence[bytes], *, resource_version: str,
                 now: datetime) -> bytes:
    """A list (a deletecollection's answer) in ``view``: a Table or a PartialObjectMetadataList;
    406 for PartialObjectMetadata."""
    check_view(view, is_list=True)
    if view.kind == "Table":
        return table_for_list(rdef, items, api_version=view.api_version, include_object=view.include_object,
                              resource_version=resource_version, now=now)
    return metadata_for_list(items, api_version=view.api_version, resource_version=resource_version)


def view_content_type(view: View) -> str:
    """The Content-Type of an answer in ``view``."""
    return table_content_type(view.api_version) if view.kind == "Table" else "application/json"


__all__ = [
    "INCLUDE_METADATA", "INCLUDE_NONE", "INCLUDE_OBJECT", "NOT_ACCEPTABLE", "OPENAPI_V2_PROTOBUF",
    "OPENAPI_V3_PROTOBUF", "ROUTE_MEDIA_TYPES", "ROUTE_STREAM_MEDIA_TYPES", "TABLE_V1", "TABLE_V1BETA1",
    "VERSION_MEDIA_TYPES", "JSONPathError", "MediaRange", "View", "acceptable", "cells_for", "check_acceptable",
    "check_route", "check_view", "columns_for", "columns_from_printer_columns", "human_duration", "jsonpath_find",
    "list_in_view", "metadata_api_version", "metadata_for_list", "metadata_for_object", "metadata_watch_line",
    "object_in_view", "openapi_media", "parse_accept", "parse_include_object", "parse_time", "plain_yaml",
    "route_accepts", "table_content_type", "table_for_list", "table_for_object", "table_watch_line",
    "translate_timestamp_since", "view_content_type", "view_for", "wants_metadata", "wants_protobuf", "wants_table",
    "wants_yaml",
]
