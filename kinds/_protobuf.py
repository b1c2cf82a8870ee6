"""Protobuf message tables of the built-in kinds: data generated from kube's ``generated.proto`` files.

``_protobuf_tables.json`` is written by ``tools/gen_protobuf_tables.py`` from k8s.io/api,
k8s.io/apimachinery and kube-aggregator v0.33.9 (the ``generated.proto`` of each package, with the Go
types beside them for JSON names, ``,inline`` embedding and pointer fields). This module only loads
it into ``Field`` tables; the wire codec is the gateway's (``gateway/_protobuf.py``). A kind's
message is found by (apiVersion, kind): ``ResourceDef.protobuf_message`` and the codec ask
``message_for_kind``, so a kind whose message is in the data speaks protobuf as soon as it is defined.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

__all__ = [
    "KIND_MESSAGES",
    "MESSAGES",
    "SPECIAL",
    "VERSIONLESS_KINDS",
    "Field",
    "message_for_kind",
]


class Field(NamedTuple):
    """One field of a message table.

    ``type`` is a scalar (``string``, ``bytes``, ``bool``, ``int32``, ``int64``), a message name
    (a key of ``MESSAGES``) or ``map`` (``map<string, value>``, entries are messages {1: key, 2: value}).
    ``ptr``: the Go field is a pointer, so a zero value on the wire is still emitted.
    ``inline``: the Go field is embedded with ``json:",inline"``: its fields are the parent's in JSON.
    ``zero``: a scalar whose JSON tag has no ``omitempty``: Go writes its zero value, and so do we.
    """

    json: str
    type: str
    repeated: bool = False
    ptr: bool = False
    value: str | None = None  # the value type of a map
    inline: bool = False
    zero: bool = False


_REPEATED, _POINTER, _INLINE, _ZERO = 1, 2, 4, 8


def _load() -> tuple[dict[str, dict[int, Field]], dict[str, str], dict[tuple[str, str], str]]:
    with open(os.path.join(os.path.dirname(__file__), "_protobuf_tables.json"), "rb") as f:
        data = json.load(f)
    messages = {
        name: {int(num): Field(spec[0], spec[1], bool(spec[2] & _REPEATED), bool(spec[2] & _POINTER),
                               spec[3] if len(spec) > 3 else None, bool(spec[2] & _INLINE), bool(spec[2] & _ZERO))
               for num, spec in sorted(fields.items(), key=lambda kv: int(kv[0]))}
        for name, fields in data["messages"].items()
    }
    kinds = {(api_version, kind): message for api_version, by_kind in data["kinds"].items()
             for kind, message in by_kind.items()}
    return messages, data["special"], kinds


MESSAGES, SPECIAL, KIND_MESSAGES = _load()
"""``MESSAGES``: message name -> {field number: Field}. ``SPECIAL``: message name -> how its JSON is
written (``time``, ``micro_time``, ``duration``, ``fields_v1``, ``quantity``, ``int_or_string``,
``raw_extension``, ``strings``). ``KIND_MESSAGES``: (apiVersion, kind) -> message, for every object and
list type of the generated packages."""

VERSIONLESS_KINDS: dict[str, str] = {"DeleteOptions": "meta.v1.DeleteOptions", "Status": "meta.v1.Status"}
"""Kinds registered in every group-version (metav1 options, and the Status of errors and watch ERROR
events): any apiVersion names them."""


def message_for_kind(api_version: str, kind: str) -> str | None:
    """The message of a top-level (apiVersion, kind), or None when it has no protobuf form here."""
    return KIND_MESSAGES.get((api_version, kind)) or VERSIONLESS_KINDS.get(kind)
