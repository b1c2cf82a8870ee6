"""Request bodies and query parameters: decoded once, here."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from actors import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, BadRequest, UnsupportedMediaType

from ._protobuf import ProtobufError, UnknownKindError, decode_k8s_protobuf

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = frozenset({JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH})
_json_decoder = msgspec.json.Decoder()


def media_type(content_type: str | None) -> str:
    """The bare media type, lower-cased; a missing one is JSON (as the apiserver defaults)."""
    if not content_type:
        return JSON
    return content_type.split(";", 1)[0].strip().lower() or JSON


def decode_body(data: bytes, content_type: str | None, *, for_patch: bool = False) -> tuple[Any, str]:
    """(decoded value, media type). Raises 400 for a malformed body, 415 for an unknown type."""
    mt = media_type(content_type)
    if for_patch:
        if mt not in PATCH_TYPES:
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}, {APPLY_PATCH}")
        if mt == APPLY_PATCH:
            return _yaml(data), mt
        return _json(data), mt
    if mt in (JSON, "*/*", "application/*"):
        return _json(data), JSON
    if mt in (YAML, "application/x-yaml", "text/yaml"):
        return _yaml(data), YAML
    if mt == PROTOBUF:
        return _protobuf(data), JSON
    raise UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: {JSON}, {YAML}, "
        f"{PROTOBUF}")


def _protobuf(data: bytes) -> Any:
    """kubectl 1.32+ sends typed objects as Kubernetes protobuf; we decode them to their JSON form."""
    try:
        return decode_k8s_protobuf(data)
    except UnknownKindError as e:
        raise UnsupportedMediaType(f"the body of the request was in an unknown format: {e}") from None
    except ProtobufError as e:
        raise BadRequest(f"the request body is not valid Kubernetes protobuf: {e}") from None


def _json(data: bytes) -> Any:
    if not data.strip():
        raise BadRequest("the request body is empty")
    try:
        return _json_decoder.decode(data)
    except msgspec.DecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None


def _yaml(data: bytes) -> Any:
    if not data.strip():
        raise BadRequest("the request body is empty")
    try:
        docs = list(yaml.safe_load_all(data))
    except yaml.YAMLError as e:
        raise BadRequest(f"the request body is not valid YAML: {e}") from None
    docs = [d for d in docs if d is not None]
    if len(docs) != 1:
        raise BadRequest("the request body must hold exactly one YAML document")
    return _plain(docs[0])


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
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"invalid value for {name}: {value!r}") from None
    if n < minimum:
        raise BadRequest(f"invalid value for {name}: {value!r} (must be >= {minimum})")
    return n
