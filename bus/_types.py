"""The event every accepted mutation becomes, and the shapes the log hands back.

Invariant: an event's ``object`` is the object's JSON encoding with an empty resourceVersion value
at byte offset ``rv_at`` (just after ``"resourceVersion":"``). The resourceVersion is the stream
sequence, which is only known once JetStream has stored the event, so readers splice it in with
``object_bytes`` without decoding the object.
"""

from __future__ import annotations

from typing import Literal

import msgspec

EventType = Literal["put", "delete"]


class Actor(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who did it: the authenticated identity and where the request came from."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    tenant: str = "root"  # bus/_subjects.ROOT_TENANT
    user_agent: str = ""
    source: str = ""
    #: The authenticated user who impersonated ``user`` ("" without impersonation).
    impersonator: str = ""


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """One accepted mutation. ``type`` "delete" is a tombstone carrying the final state."""

    type: EventType
    object: msgspec.Raw
    rv_at: int
    verb: str
    audit_id: str
    time: str
    actor: Actor
    labels: dict[str, str] = {}
    #: The subresource written ("status", "scale", ...; "" for the object itself).
    subresource: str = ""
    # Values of the kind's selectable fields (beyond metadata.name/namespace), e.g. an Event's
    # ``involvedObject.name``; computed once by the writer so readers never decode the object.
    fields: dict[str, str] = {}
    #: The audit annotations admission recorded for this write (a policy's ``auditAnnotations``
    #: and ``Audit`` failures, a webhook's ``auditAnnotations``), for its audit record. Omitted
    #: when empty: events written before the field existed, and events without any, decode alike.
    annotations: dict[str, str] = {}


class LogMessage(msgspec.Struct, frozen=True, gc=False):
    """A message read back from the log: its stream sequence, subject and payload."""

    seq: int
    subject: str
    data: bytes
    msg_id: str = ""
    #: When JetStream stored it (RFC 3339), where the read tells (direct gets); "" otherwise.
    stored_at: str = ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    return _decoder.decode(data)


def object_bytes(event: Event, seq: int) -> bytes:
    """The object's JSON with ``metadata.resourceVersion`` set to ``seq``."""
    raw = bytes(event.object)
    return b"%s%d%s" % (raw[: event.rv_at], seq, raw[event.rv_at :])


RV_MARK = b'"resourceVersion":"'


def encode_object_with_rv_slot(obj: dict) -> tuple[bytes, int]:
    """Encode ``obj`` with an empty resourceVersion and return (bytes, rv_at).

    ``obj["metadata"]`` is re-ordered so that resourceVersion comes first inside metadata; the
    offset is then found without scanning user data.
    """
    meta = obj["metadata"]
    meta.pop("resourceVersion", None)
    head = {k: obj[k] for k in ("kind", "apiVersion") if k in obj}
    head["metadata"] = {"resourceVersion": "", **meta}
    for k, v in obj.items():
        if k not in head:
            head[k] = v
    data = _encoder.encode(head)
    # Only kind and apiVersion (plain strings) come before metadata, so the first match is ours.
    at = data.find(b'"metadata":{' + RV_MARK)
    if at < 0:  # pragma: no cover - guarded by construction above
        raise ValueError("resourceVersion slot not found")
    return data, at + len(b'"metadata":{') + len(RV_MARK)
