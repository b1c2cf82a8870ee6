"""Request bodies and query values within bounds: every bad one is a 4xx, never a crash, and
refusing one costs little (issue 7, items 9-11)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from actors import MAX_DEPTH, BadRequest, RequestEntityTooLarge
from gateway._codec import allowed_alias_ratio, decode_body, query_int
from gateway._reads import resource_version_param
from projections import BadContinue, decode_continue

MB = 1024 * 1024
YAML = "application/yaml"


def nested_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("body", [b"[" * 1000 + b"]" * 1000, b"[" * 100_000, nested_json(MAX_DEPTH + 1),
                                  b'{"a":[' + b"[" * 600 + b"]" * 600 + b"]}"])
def test_json_too_deep_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest, match="exceeded max depth"):
        decode_body(body, "application/json", max_bytes=3 * MB)


def test_json_at_the_depth_limit_decodes() -> None:
    value, _ = decode_body(nested_json(MAX_DEPTH), None, max_bytes=3 * MB)
    assert isinstance(value, dict)
    # Many brackets side by side are not depth.
    flat = b"[" + b",".join([b"[[1]]"] * 1000) + b"]"
    assert len(decode_body(flat, None, max_bytes=3 * MB)[0]) == 1000


@pytest.mark.parametrize("body", [b"[" * 600 + b"]" * 600, b"- " * 600 + b"x", b"[" * 5000,
                                  "".join("  " * i + "- \n" for i in range(700)).encode(),
                                  b"a: " + b"{b: " * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)])
def test_yaml_too_deep_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_body(body, YAML, max_bytes=3 * MB)


def laughs(levels: int, fanout: int) -> bytes:
    lines = ["a0: &a0 lol"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return ("\n".join(lines) + "\n").encode()


def test_yaml_alias_bomb_is_refused_at_once() -> None:
    bomb = laughs(9, 9)  # 387 million scalars once expanded; under 500 bytes
    assert len(bomb) < 600
    t0 = time.perf_counter()
    with pytest.raises(BadRequest, match="document contains excessive aliasing"):
        decode_body(bomb, YAML, max_bytes=3 * MB)
    assert time.perf_counter() - t0 < 0.5


def test_yaml_aliases_as_go_yaml_counts_them() -> None:
    # go-yaml v3 decodes 3 levels of 10 and refuses 4 (its own test, "aliasExpansionIsBounded").
    assert decode_body(laughs(3, 10), YAML, max_bytes=3 * MB)[0]["a3"][0][0][0] == "lol"
    with pytest.raises(BadRequest, match="excessive aliasing"):
        decode_body(laughs(4, 10), YAML, max_bytes=3 * MB)
    # Ordinary anchors (a shared block of labels) are fine.
    doc = b"metadata:\n  name: x\n  labels: &l {a: b}\n  annotations: *l\n"
    assert decode_body(doc, YAML, max_bytes=3 * MB)[0]["metadata"]["annotations"] == {"a": "b"}
    assert allowed_alias_ratio(400_000) == 0.99 and allowed_alias_ratio(4_000_000) == 0.10


def test_yaml_anchor_containing_itself_is_400() -> None:
    with pytest.raises(BadRequest, match="contains itself"):
        decode_body(b"a: &x [1, *x]\n", YAML, max_bytes=3 * MB)


def test_yaml_expansion_beyond_the_body_limit_is_413() -> None:
    big = "x" * MB
    body = f"data:\n  a: &s {big}\n  b: *s\n  c: *s\n  d: *s\n  e: *s\n".encode()
    with pytest.raises(RequestEntityTooLarge):
        decode_body(body, YAML, max_bytes=3 * MB)
    # The same with the apply patch type (server-side apply bodies are YAML).
    with pytest.raises(RequestEntityTooLarge):
        decode_body(body, "application/apply-patch+yaml", max_bytes=3 * MB, for_patch=True)
    assert decode_body(b"a: &s xx\nb: *s\n", YAML, max_bytes=20)[0] == {"a": "xx", "b": "xx"}


@pytest.mark.parametrize("value", ["١", "²", "①", "1_0", " 1", "1 ", "0x10", "1e3", str(2**63), "9" * 400, "-"])
def test_query_ints_are_ascii_int64(value: str) -> None:
    with pytest.raises(BadRequest):
        query_int("timeoutSeconds", value)


def test_query_ints_accepted() -> None:
    assert query_int("limit", "10") == 10
    assert query_int("limit", "+7") == 7
    assert query_int("limit", str(2**63 - 1)) == 2**63 - 1
    assert query_int("limit", None) is None


@pytest.mark.parametrize("value", ["١", "²", "\u2460", "+1", "-1", "1.0", "9" * 30])
def test_resource_version_is_ascii_decimal(value: str) -> None:
    with pytest.raises(BadRequest):
        resource_version_param({"resourceVersion": value})


def test_resource_version_accepted() -> None:
    assert resource_version_param({"resourceVersion": "42"}) == "42"
    assert resource_version_param({"resourceVersion": ""}) is None


def token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", ['{"rv":1e400,"start":""}', '{"rv":-5,"start":""}', '{"rv":0,"start":""}',
                                 '{"rv":true,"start":""}', '{"rv":"1","start":""}', '{"rv":1.5,"start":""}',
                                 f'{{"rv":{2**63},"start":""}}', '{"rv":1,"start":5}', "[1]", '"x"', "{"])
def test_bad_continue_tokens(raw: str) -> None:
    with pytest.raises(BadContinue):
        decode_continue(token(raw))
    with pytest.raises(BadContinue):
        decode_continue("é" + token(raw))


def test_good_continue_token() -> None:
    assert decode_continue(token(json.dumps({"rv": 7, "start": "ns\x00n"}))) == (7, "ns\x00n")


def test_max_depth_leaves_room_on_the_interpreter_stack() -> None:
    """Why MAX_DEPTH is 100 and not kube's 10000: every recursive step of the write path runs on
    the interpreter's stack. With a server's worth of frames already in use, a value at the
    limit still goes through decoding, patches, field validation and encoding."""
    import sys

    import msgspec

    from actors._patch import EMPTY_SCHEMA, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
    from kinds._fieldvalidation import OBJECT_META, type_errors, unknown_fields
    from kinds._schemas import definitions

    deep = nested_json(MAX_DEPTH - 2)
    raw = b'{"metadata":{"name":"x","labels":{"a":"b"}},"data":' + deep + b"}"

    def exercise() -> None:
        obj, _ = decode_body(raw, None, max_bytes=3 * MB)
        patch = msgspec.json.decode(b'{"data":' + deep + b"}")
        apply_merge_patch(obj, patch)
        apply_strategic_merge_patch(obj, patch, EMPTY_SCHEMA)
        apply_json_patch(obj, [{"op": "copy", "from": "/data", "path": "/metadata/annotations"}])
        meta_schema = {"$ref": f"#/definitions/{OBJECT_META}"}
        unknown_fields(obj, {"properties": {"metadata": meta_schema}}, definitions())
        type_errors(obj, {"properties": {"metadata": meta_schema}}, definitions())
        msgspec.json.encode(obj)
        decode_body(b"data: " + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1), YAML, max_bytes=3 * MB)

    server_frames = 250  # hypercorn, quart, trio and the actor runtime use well under this

    def under(frames: int) -> None:
        if frames:
            under(frames - 1)
        else:
            exercise()

    assert sys.getrecursionlimit() == 1000
    under(server_frames)
