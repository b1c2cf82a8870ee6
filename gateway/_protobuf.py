"""Kubernetes protobuf (``application/vnd.kubernetes.protobuf``): request bodies decoded to JSON-shaped
dicts, and get/list/watch responses encoded from the stored JSON.

kubectl 1.32+ sends its typed-client bodies (``create namespace|configmap|deployment|job|service|...``,
``create token``, ``auth can-i``, ``auth whoami``) as protobuf and does not retry as JSON after a 415;
client-go's typed clients (``kubectl describe`` 1.32+, controllers) ask for protobuf answers. This
module is the wire codec's reader, pure and dependency-free (``_protobuf_write`` is its writer), driven
by the message tables of ``kinds``. Decoding yields the dict the Kubernetes JSON serializer would
produce for the same object, so the rest of the server never sees protobuf. Watch streams use the
raw ``meta.v1.WatchEvent`` behind a 4-byte length, the object inside it a full ``k8s\x00`` body.

Wire format (``k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go``): the 4 bytes ``k8s\\x00``,
then a ``runtime.Unknown`` message ``{1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
4: contentType}``; ``raw`` holds the object's own message, looked up here by (apiVersion, kind).

The message tables are data in ``kinds`` (``kinds/_protobuf_tables.json``, generated from kube's
``generated.proto`` files by ``tools/gen_protobuf_tables.py``); a kind's message is found by its
(apiVersion, kind), so every kind in those packages decodes and encodes.

JSON shaping follows the Go structs (``types.go``) and ``encoding/json``:

- Go's generated (gogo) marshallers write every *value* field, zero or not: ``name: ""``, ``generation: 0``,
  an empty ``spec``. Zero scalars are therefore omitted here (``omitempty``), except where the JSON tag
  has no ``omitempty`` (``zero=True``: Go's JSON writes ``"port": 0``, ``"allowed": false``), while
  fields that are Go *pointers* (``ptr=True``: ``immutable``, ``gracePeriodSeconds``,
  ``automountServiceAccountToken``, ...) are kept whenever they are on the wire, zero or not. A nested
  message on the wire is always emitted (``"spec": {}``), as Go does for struct fields; an
  ``inline`` one (``json:",inline"``: ``Volume.volumeSource``, ``IngressRule.ingressRuleValue``) is
  merged into its parent.
- ``metav1.Time``: RFC 3339, seconds, UTC; an empty message is the zero time and is omitted (Go writes
  ``null``). ``MicroTime``: RFC 3339 with 6 fractional digits. ``Duration``: Go's ``time.Duration`` string.
  ``Quantity``: its string. ``IntOrString``: int or string. ``FieldsV1`` and ``RawExtension``
  (``ControllerRevision.data``): their raw JSON, parsed. ``[]byte`` (Secret.data values, CSR requests):
  standard base64. ``ExtraValue``, ``Verbs`` (Go ``[]string`` types): a list.
- Unknown fields are skipped (any wire type, including groups). A singular message field that appears
  more than once is merged, a singular scalar's last value wins, as in protobuf.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from kinds import MESSAGES, SPECIAL, Field, message_for_kind

__all__ = [
    "CONTENT_TYPE",
    "MAGIC",
    "ProtobufError",
    "UnknownKindError",
    "decode_k8s_protobuf",
    "decode_message",
    "decode_watch_frames",
    "message_for",
]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_MAX_DEPTH = 64
_MASK64 = (1 << 64) - 1


class ProtobufError(ValueError):
    """A protobuf body that cannot be decoded (malformed wire data, unsupported envelope, unknown kind)."""


class UnknownKindError(ProtobufError):
    """The envelope is well formed but names a (apiVersion, kind) with no message table here (answer 415)."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version = api_version
        self.kind = kind
        super().__init__(
            f"protobuf bodies of kind {kind!r} in apiVersion {api_version!r} are not supported by this "
            f"server; send the request as application/json")


# --- message tables ------------------------------------------------------------------------------------


_SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64"})
_VARINT_TYPES = frozenset({"bool", "int32", "int64"})

OBJECT_META = "meta.v1.ObjectMeta"
TIME = "meta.v1.Time"
MICRO_TIME = "meta.v1.MicroTime"

def message_for(api_version: str, kind: str, kinds: Mapping[tuple[str, str], str] | None = None) -> str:
    """The message name for a top-level (apiVersion, kind); raises UnknownKindError."""
    name = message_for_kind(api_version, kind) if kinds is None else kinds.get((api_version, kind))
    if name is None:
        raise UnknownKindError(api_version, kind)
    return name


# --- wire reader ----------------------------------------------------------------------------------------

_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "32-bit"}


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtobufError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"varint longer than 10 bytes at byte {pos - 10}")


def _length_delimited(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of a length-delimited payload whose length prefix starts at pos."""
    n, pos = _varint(buf, pos, end)
    if n > end - pos:
        raise ProtobufError(
            f"length {n} at byte {pos} runs past the end of its message ({end - pos} bytes left)")
    return pos, pos + n


def _skip(buf: bytes, pos: int, end: int, wire_type: int, number: int, depth: int) -> int:
    """Skip the value of an unknown field; returns the position after it."""
    if wire_type == 0:
        return _varint(buf, pos, end)[1]
    if wire_type == 1:
        if end - pos < 8:
            raise ProtobufError(f"truncated 64-bit field {number} at byte {pos}")
        return pos + 8
    if wire_type == 2:
        return _length_delimited(buf, pos, end)[1]
    if wire_type == 5:
        if end - pos < 4:
            raise ProtobufError(f"truncated 32-bit field {number} at byte {pos}")
        return pos + 4
    if wire_type == 3:
        if depth >= _MAX_DEPTH:
            raise ProtobufError("protobuf groups nested too deeply")
        while True:
            if pos >= end:
                raise ProtobufError(f"unterminated group {number}")
            key, pos = _varint(buf, pos, end)
            inner_number, inner_type = key >> 3, key & 7
            if inner_type == 4:
                if inner_number != number:
                    raise ProtobufError(f"group {number} closed by end-group {inner_number}")
                return pos
            if inner_number == 0:
                raise ProtobufError(f"invalid field number 0 at byte {pos}")
            pos = _skip(buf, pos, end, inner_type, inner_number, depth + 1)
    if wire_type == 4:
        raise ProtobufError(f"end-group for field {number} without a matching start-group")
    raise ProtobufError(f"invalid wire type {wire_type} for field {number}")


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar_from_varint(typ: str, v: int) -> Any:
    if typ == "bool":
        return v != 0
    if typ == "int32":
        return _int32(v)
    return _int64(v)


def _text(buf: bytes, start: int, stop: int) -> str:
    # Go keeps invalid UTF-8 in a string and encoding/json writes U+FFFD for it; do the same.
    return bytes(buf[start:stop]).decode("utf-8", errors="replace")


class _Slot:
    """What one known field collected while scanning a message."""

    __slots__ = ("chunks", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.chunks: list[tuple[int, int]] = []


def _scan(
    buf: bytes, start: int, end: int, name: str, messages: Mapping[str, Mapping[int, Field]], depth: int,
) -> dict[int, _Slot]:
    """Read one message's fields: scalars decoded, message payloads as (start, stop) chunks."""
    table = messages.get(name)
    if table is None:
        raise ProtobufError(f"no message table for {name!r}")
    slots: dict[int, _Slot] = {}
    pos = start
    while pos < end:
        key_at = pos
        key, pos = _varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"invalid field number 0 at byte {key_at} in {name}")
        field = table.get(number)
        if field is None:
            pos = _skip(buf, pos, end, wire_type, number, depth)
            continue
        slot = slots.get(number)
        if slot is None:
            slot = slots[number] = _Slot()
        typ = field.type
        if typ in _VARINT_TYPES:
            if wire_type == 0:
                v, pos = _varint(buf, pos, end)
                slot.values.append(_scalar_from_varint(typ, v))
                continue
            if wire_type == 2 and field.repeated:  # packed repeated
                s, pos = _length_delimited(buf, pos, end)
                while s < pos:
                    v, s = _varint(buf, s, pos)
                    slot.values.append(_scalar_from_varint(typ, v))
                continue
        elif wire_type == 2:
            s, pos = _length_delimited(buf, pos, end)
            if typ == "string":
                slot.values.append(_text(buf, s, pos))
            elif typ == "bytes":
                slot.values.append(bytes(buf[s:pos]))
            else:
                slot.chunks.append((s, pos))
            continue
        raise ProtobufError(
            f"field {number} ({field.json}) of {name} has wire type {_WIRE_NAMES.get(wire_type, wire_type)}, "
            f"expected {'varint' if typ in _VARINT_TYPES else 'length-delimited'}")
    return slots


def _zero(typ: str) -> Any:
    return {"string": "", "bytes": b"", "bool": False, "int32": 0, "int64": 0}.get(typ)


def _scalar_json(typ: str, v: Any) -> Any:
    if typ == "bytes":
        return base64.b64encode(v).decode("ascii")
    return v


_OMIT = object()


def _decode_chunks(
    buf: bytes,
    chunks: list[tuple[int, int]],
    name: str,
    messages: Mapping[str, Mapping[int, Field]],
    depth: int,
) -> Any:
    """Decode a (possibly repeated-on-the-wire, hence merged) singular message to its JSON value."""
    if depth >= _MAX_DEPTH:
        raise ProtobufError("protobuf messages nested too deeply")
    if len(chunks) == 1:
        data, (start, end) = buf, chunks[0]
    else:  # protobuf merges a singular message that occurs more than once: decode the concatenation
        data = b"".join(bytes(buf[s:e]) for s, e in chunks)
        start, end = 0, len(data)
    special = _SPECIAL_DECODERS.get(name)
    slots = _scan(data, start, end, name, messages, depth + 1)
    if special is not None:
        return special(slots, end - start)
    return _shape(data, slots, name, messages, depth + 1)


def _shape(
    buf: bytes, slots: dict[int, _Slot], name: str, messages: Mapping[str, Mapping[int, Field]], depth: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, field in messages[name].items():
        slot = slots.get(number)
        if slot is None:
            continue
        typ = field.type
        if typ == "map":
            entries = {}
            for s, e in slot.chunks:
                k, v = _map_entry(buf, s, e, field, name, messages, depth)
                entries[k] = v
            if entries:
                out[field.json] = entries
        elif typ in _SCALARS:
            if field.repeated:
                if slot.values:
                    out[field.json] = [_scalar_json(typ, v) for v in slot.values]
            elif slot.values:
                v = slot.values[-1]
                if field.ptr or field.zero or v != _zero(typ):
                    out[field.json] = _scalar_json(typ, v)
        elif field.repeated:
            items = [_decode_chunks(buf, [c], typ, messages, depth) for c in slot.chunks]
            items = [None if item is _OMIT else item for item in items]
            if items:
                out[field.json] = items
        elif slot.chunks:
            v = _decode_chunks(buf, slot.chunks, typ, messages, depth)
            if field.inline and isinstance(v, dict):
                out.update(v)  # json:",inline": the embedded struct's fields are the parent's
            elif v is not _OMIT:
                out[field.json] = v
    return out


def _map_entry(
    buf: bytes, start: int, end: int, field: Field, owner: str,
    messages: Mapping[str, Mapping[int, Field]], depth: int,
) -> tuple[str, Any]:
    """One map entry: a message {1: key (string), 2: value}; missing parts are zero values."""
    value_type = field.value or "string"
    key: str = ""
    value: Any = None
    chunks: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        k, pos = _varint(buf, pos, end)
        number, wire_type = k >> 3, k & 7
        if number == 0:
            raise ProtobufError(f"invalid field number 0 in a {field.json} entry of {owner}")
        if number in (1, 2) and wire_type != 2:
            raise ProtobufError(
                f"{field.json} entry of {owner}: field {number} has wire type "
                f"{_WIRE_NAMES.get(wire_type, wire_type)}, expected length-delimited")
        if number == 1:
            s, pos = _length_delimited(buf, pos, end)
            key = _text(buf, s, pos)
        elif number == 2:
            s, pos = _length_delimited(buf, pos, end)
            if value_type == "string":
                value = _text(buf, s, pos)
            elif value_type == "bytes":
                value = bytes(buf[s:pos])
            else:
                chunks.append((s, pos))
        else:
            pos = _skip(buf, pos, end, wire_type, number, depth)
    if value_type in _SCALARS:
        return key, _scalar_json(value_type, _zero(value_type) if value is None else value)
    decoded = _decode_chunks(buf, chunks or [(end, end)], value_type, messages, depth)
    return key, (None if decoded is _OMIT else decoded)


# --- special JSON forms ---------------------------------------------------------------------------------


def _last(slots: dict[int, _Slot], number: int, default: Any = 0) -> Any:
    slot = slots.get(number)
    return slot.values[-1] if slot is not None and slot.values else default


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _utc(seconds: int, micros: int = 0) -> _dt.datetime:
    try:
        return _EPOCH + _dt.timedelta(seconds=seconds, microseconds=micros)
    except (OverflowError, ValueError):
        raise ProtobufError(f"timestamp {seconds}s is out of range") from None


def _rfc3339(t: _dt.datetime, fraction: bool) -> str:
    s = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return s + (f".{t.microsecond:06d}Z" if fraction else "Z")


def _time_json(slots: dict[int, _Slot], size: int) -> Any:
    # metav1.Time marshals the zero time as an empty message, and its JSON is null; the proto
    # unmarshaller keeps whole seconds only, and JSON is RFC 3339 in seconds.
    if size == 0:
        return _OMIT
    return _rfc3339(_utc(_last(slots, 1)), fraction=False)


def _micro_time_json(slots: dict[int, _Slot], size: int) -> Any:
    if size == 0:
        return _OMIT
    nanos = _last(slots, 2)
    if not 0 <= nanos <= 999_999_999:
        raise ProtobufError(f"MicroTime nanos {nanos} out of range")
    return _rfc3339(_utc(_last(slots, 1), nanos // 1000), fraction=True)


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)

    def frac(v: int, prec: int) -> tuple[str, int]:
        digits = f"{v % 10**prec:0{prec}d}".rstrip("0")
        return ("." + digits if digits else ""), v // 10**prec

    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            f, whole = frac(u, 3)
            return f"{sign}{whole}{f}\u00b5s"
        f, whole = frac(u, 6)
        return f"{sign}{whole}{f}ms"
    f, secs = frac(u, 9)
    out = f"{secs % 60}{f}s"
    mins = secs // 60
    if mins:
        out = f"{mins % 60}m" + out
        hours = mins // 60
        if hours:
            out = f"{hours}h" + out
    return sign + out


def _duration_json(slots: dict[int, _Slot], size: int) -> Any:
    return _go_duration(_last(slots, 1))


def _quantity_json(slots: dict[int, _Slot], size: int) -> Any:
    return _last(slots, 1, "")


def _int_or_string_json(slots: dict[int, _Slot], size: int) -> Any:
    return _last(slots, 3, "") if _last(slots, 1) == 1 else _last(slots, 2)


def _embedded_json(what: str) -> Callable[[dict[int, _Slot], int], Any]:
    """FieldsV1 and runtime.RawExtension: JSON bytes in field 1, written out as they are."""

    def decode(slots: dict[int, _Slot], size: int) -> Any:
        raw = _last(slots, 1, b"")
        if not raw:
            return _OMIT
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ProtobufError(f"{what} does not hold valid JSON: {e}") from None

    return decode


def _strings_json(slots: dict[int, _Slot], size: int) -> Any:
    slot = slots.get(1)
    return list(slot.values) if slot is not None else []


_DECODERS_BY_FORM: dict[str, Callable[[dict[int, _Slot], int], Any]] = {
    "time": _time_json,
    "micro_time": _micro_time_json,
    "duration": _duration_json,
    "quantity": _quantity_json,
    "int_or_string": _int_or_string_json,
    "fields_v1": _embedded_json("FieldsV1"),
    "strings": _strings_json,
    "raw_extension": _embedded_json("RawExtension"),
}
_SPECIAL_DECODERS = {name: _DECODERS_BY_FORM[form] for name, form in SPECIAL.items()}


# --- public decoding ------------------------------------------------------------------------------------


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ProtobufError(f"protobuf body must be bytes, not {type(data).__name__}")


def decode_message(
    data: bytes, message: str, messages: Mapping[str, Mapping[int, Field]] | None = None,
) -> Any:
    """Decode one message (no magic, no envelope) to its JSON value (a dict, or a string for Time & co.).

    A zero Time/MicroTime/FieldsV1 decodes to None (Go's JSON null).
    """
    buf = _as_bytes(data)
    table = MESSAGES if messages is None else messages
    if message not in table:
        raise ProtobufError(f"no message table for {message!r}")
    v = _decode_chunks(buf, [(0, len(buf))], message, table, 0)
    return None if v is _OMIT else v


def decode_k8s_protobuf(
    data: bytes,
    *,
    messages: Mapping[str, Mapping[int, Field]] | None = None,
    kinds: Mapping[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    """Decode a ``application/vnd.kubernetes.protobuf`` body to the object's JSON dict.

    Raises UnknownKindError (a ProtobufError) for a kind without a table, ProtobufError for anything
    malformed.
    """
    buf = _as_bytes(data)
    if len(buf) < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
        raise ProtobufError(
            "the body is not a Kubernetes protobuf message: "
            "it does not start with the 4-byte prefix k8s\\x00")
    table = MESSAGES if messages is None else messages
    envelope = _scan(buf, len(MAGIC), len(buf), "runtime.Unknown", MESSAGES, 0)
    type_meta: dict[str, Any] = {}
    if 1 in envelope and envelope[1].chunks:
        type_meta = _decode_chunks(buf, envelope[1].chunks, "runtime.TypeMeta", MESSAGES, 0)
    api_version = type_meta.get("apiVersion", "")
    kind = type_meta.get("kind", "")
    if not kind or not api_version:
        raise ProtobufError("the protobuf envelope (runtime.Unknown) has no typeMeta apiVersion/kind")
    encoding = _last(envelope, 3, "")
    if encoding:
        raise ProtobufError(f"protobuf contentEncoding {encoding!r} is not supported")
    content_type = _last(envelope, 4, "")
    if content_type and content_type.split(";", 1)[0].strip().lower() != CONTENT_TYPE:
        raise ProtobufError(f"protobuf envelope contentType {content_type!r} is not supported")
    name = message_for(api_version, kind, kinds)
    obj = decode_message(_last(envelope, 2, b""), name, table)
    return {"kind": kind, "apiVersion": api_version, **obj}


# --- watch streams ----------------------------------------------------------------------------------------


def decode_watch_frames(data: bytes) -> list[dict[str, Any]]:
    """A protobuf watch stream (``_protobuf_write.encode_watch_lines``) read back, for tests and clients:
    [{type, object}] of its whole frames."""
    events = []
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        frame = data[pos + 4:pos + 4 + n]
        if len(frame) < n:
            break
        slots = _scan(frame, 0, len(frame), "meta.v1.WatchEvent", MESSAGES, 0)
        raw_ext = _scan(frame, *slots[2].chunks[0], "runtime.RawExtension", MESSAGES, 0) if 2 in slots else {}
        events.append({"type": _last(slots, 1, ""), "object": decode_k8s_protobuf(_last(raw_ext, 1, b""))})
        pos += 4 + n
    return events
