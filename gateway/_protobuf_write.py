"""Kubernetes protobuf written: object bodies (``k8s\\x00`` + runtime.Unknown), and the get, list and
watch responses built from stored JSON. The reader, the shared constants and the JSON conventions
are ``_protobuf``'s; the message tables are ``kinds``'."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from collections.abc import Mapping
from typing import Any

from kinds import MESSAGES, SPECIAL, Field

from ._protobuf import (
    _EPOCH,
    _MASK64,
    _SCALARS,
    _VARINT_TYPES,
    CONTENT_TYPE,
    MAGIC,
    ProtobufError,
    _zero,
    message_for,
)

__all__ = ["WATCH_CONTENT_TYPE", "encode_json_object", "encode_k8s_protobuf", "encode_message", "encode_watch_lines"]


# --- writer (builds test inputs, and gogo-style bodies) -------------------------------------------------


def _enc_varint(v: int) -> bytes:
    v &= _MASK64
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _enc_key(number: int, wire_type: int) -> bytes:
    return _enc_varint(number << 3 | wire_type)


def _enc_ld(number: int, payload: bytes) -> bytes:
    return _enc_key(number, 2) + _enc_varint(len(payload)) + payload


def _enc_scalar(number: int, typ: str, v: Any) -> bytes:
    if typ in _VARINT_TYPES and not isinstance(v, int):
        raise ProtobufError(f"field {number} must be a {'boolean' if typ == 'bool' else 'number'}, not {v!r}")
    if typ == "string":
        return _enc_ld(number, str(v).encode("utf-8"))
    if typ == "bytes":
        return _enc_ld(number, v if isinstance(v, bytes) else base64.b64decode(v))
    if typ == "bool":
        return _enc_key(number, 0) + _enc_varint(1 if v else 0)
    return _enc_key(number, 0) + _enc_varint(int(v))


def _parse_rfc3339(s: str) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(s)
    except ValueError:
        raise ProtobufError(f"not an RFC 3339 time: {s!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return t


def _seconds_nanos(t: _dt.datetime) -> tuple[int, int]:
    delta = t - _EPOCH
    total_us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return total_us // 1_000_000, (total_us % 1_000_000) * 1000


_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _parse_go_duration(s: str) -> int:
    if isinstance(s, int):
        return s
    body, sign = (s[1:], -1) if s[:1] == "-" else (s.lstrip("+"), 1)
    if body == "0":
        return 0
    pos, total = 0, 0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        num, unit = m.groups()
        whole, _, frac = num.partition(".")
        scale = _DURATION_UNITS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = m.end()
    if pos != len(body) or not body:
        raise ProtobufError(f"not a Go duration: {s!r}")
    return sign * total


def _enc_special(name: str, v: Any) -> bytes | None:
    """The payload of a special message from its JSON value; None if `name` is not special."""
    form = SPECIAL.get(name)
    if form is None:
        return None
    if form in ("time", "micro_time"):
        if v is None:
            return b""
        seconds, nanos = _seconds_nanos(_parse_rfc3339(v))
        if form == "time":
            nanos = 0
        return _enc_scalar(1, "int64", seconds) + _enc_scalar(2, "int32", nanos)
    if form == "duration":
        return _enc_scalar(1, "int64", _parse_go_duration(v))
    if form == "quantity":
        return _enc_scalar(1, "string", str(v))
    if form == "int_or_string":
        if isinstance(v, str):
            return _enc_scalar(1, "int64", 1) + _enc_scalar(2, "int32", 0) + _enc_scalar(3, "string", v)
        return _enc_scalar(1, "int64", 0) + _enc_scalar(2, "int32", int(v)) + _enc_scalar(3, "string", "")
    if form in ("fields_v1", "raw_extension"):
        return b"" if v is None else _enc_ld(1, json.dumps(v, separators=(",", ":")).encode("utf-8"))
    return b"".join(_enc_scalar(1, "string", s) for s in (v or []))  # strings


# The zero JSON value of a special message that is a Go value (not pointer) field.
_SPECIAL_ZERO = {"time": None, "micro_time": None, "fields_v1": None, "raw_extension": None, "duration": 0,
                 "int_or_string": 0, "quantity": "0", "strings": []}


def encode_message(
    obj: Any,
    message: str,
    messages: Mapping[str, Mapping[int, Field]] | None = None,
    *,
    emit_defaults: bool = False,
) -> bytes:
    """Encode a JSON-shaped value as `message` (field-number order).

    ``emit_defaults=True`` writes what Go's generated marshallers write for absent value fields:
    zero scalars, empty value-type messages, an empty Time. Keys without a table entry are ignored.
    """
    table = MESSAGES if messages is None else messages
    special = _enc_special(message, obj)
    if special is not None:
        return special
    fields = table.get(message)
    if fields is None:
        raise ProtobufError(f"no message table for {message!r}")
    if not isinstance(obj, Mapping):
        raise ProtobufError(f"{message} must be encoded from a mapping, not {type(obj).__name__}")
    out = bytearray()
    for number in sorted(fields):
        field = fields[number]
        typ = field.type
        present = field.json in obj and obj[field.json] is not None
        v = obj.get(field.json)
        if typ == "map":
            for k, item in (v or {}).items():
                value_type = field.value or "string"
                if value_type in _SCALARS:
                    entry_value = _enc_scalar(2, value_type, item)
                else:
                    entry_value = _enc_ld(
                        2, encode_message(item, value_type, table, emit_defaults=emit_defaults))
                out += _enc_ld(number, _enc_scalar(1, "string", k) + entry_value)
        elif field.repeated:
            for item in v or []:
                if typ in _SCALARS:
                    out += _enc_scalar(number, typ, item)
                else:
                    out += _enc_ld(number, encode_message(item, typ, table, emit_defaults=emit_defaults))
        elif typ in _SCALARS:
            if present:
                out += _enc_scalar(number, typ, v)
            elif emit_defaults and not field.ptr:
                out += _enc_scalar(number, typ, _zero(typ))
        elif field.inline:  # json:",inline": the embedded struct reads the parent's keys
            out += _enc_ld(number, encode_message(obj, typ, table, emit_defaults=emit_defaults))
        elif present:
            out += _enc_ld(number, encode_message(v, typ, table, emit_defaults=emit_defaults))
        elif emit_defaults and not field.ptr:
            default = _SPECIAL_ZERO.get(SPECIAL.get(typ, ""), {})
            out += _enc_ld(number, encode_message(default, typ, table, emit_defaults=emit_defaults))
    return bytes(out)


def encode_k8s_protobuf(
    obj: Mapping[str, Any],
    messages: Mapping[str, Mapping[int, Field]] | None = None,
    *,
    kinds: Mapping[tuple[str, str], str] | None = None,
    emit_defaults: bool = False,
) -> bytes:
    """Encode a JSON-shaped object (with apiVersion and kind) as a ``k8s\\x00`` + runtime.Unknown body."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = message_for(api_version, kind, kinds)
    raw = encode_message(obj, name, messages, emit_defaults=emit_defaults)
    type_meta = _enc_scalar(1, "string", api_version) + _enc_scalar(2, "string", kind)
    envelope = _enc_ld(1, type_meta) + _enc_ld(2, raw)
    if emit_defaults:
        envelope += _enc_scalar(3, "string", "") + _enc_scalar(4, "string", "")
    return MAGIC + envelope


# --- responses ------------------------------------------------------------------------------------------

WATCH_CONTENT_TYPE = CONTENT_TYPE + ";stream=watch"


def encode_json_object(data: bytes) -> bytes:
    """A stored object (or a list body) as its protobuf response; raises UnknownKindError for a kind
    without a message (the caller answers JSON instead, as the apiserver does for CRDs)."""
    return encode_k8s_protobuf(json.loads(data))


def encode_watch_lines(lines: bytes) -> bytes:
    """Newline-delimited JSON watch events re-framed for ``application/vnd.kubernetes.protobuf;stream=watch``:
    each a ``meta.v1.WatchEvent`` {type=1, object=2 RawExtension{raw=1: the object's own protobuf, with
    its ``k8s\\x00`` prefix and runtime.Unknown envelope}}, without prefix or envelope itself (the
    stream uses the raw serializer), behind a 4-byte big-endian length (``LengthDelimitedFramer``)."""
    out = bytearray()
    for line in lines.split(b"\n"):
        if not line.strip():
            continue
        event = json.loads(line)
        inner = encode_k8s_protobuf(event["object"])
        frame = _enc_scalar(1, "string", event["type"]) + _enc_ld(2, _enc_ld(1, inner))
        out += len(frame).to_bytes(4, "big") + frame
    return bytes(out)
