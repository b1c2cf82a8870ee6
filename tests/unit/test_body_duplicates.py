"""Repeated members of a JSON body, found without a second parse of bodies that have none
(issue 7, item 16)."""

from __future__ import annotations

import json

import msgspec
import pytest

from actors import BadRequest, _fieldvalidation, body_duplicate_fields, duplicate_field_warnings


def dups(raw: bytes) -> list[str]:
    return body_duplicate_fields(raw, msgspec.json.decode(raw))


@pytest.mark.parametrize("raw,expected", [
    (b'{"metadata":{"name":"a","name":"b"}}', ["metadata.name"]),
    (b'{"a":1,"a":{"x:y":"p:q"}}', ["a"]),
    (b'{"a" : 1 , "a" : 2}', ["a"]),
    # A colon written as an escape in the kept value cannot hide the repeated member.
    (b'{"a":"x","a":"\\u003a\\u003a"}', ["a"]),
    (b'{"spec":{"containers":[{"name":"c","image":"i:1","image":"i:2"}]}}', ["spec.containers[0].image"]),
])
def test_found(raw: bytes, expected: list[str]) -> None:
    assert dups(raw) == expected


@pytest.mark.parametrize("raw", [
    b'{"metadata":{"name":"a"},"data":{"url":"http://x:80","t":"\\u003a"}}',
    b'{"a":"\\\\u003a","b":1}', b"[]", b'"a:b"', b'{"k":{"k":{"k":1}}}',
])
def test_none(raw: bytes) -> None:
    assert dups(raw) == []


def test_common_bodies_skip_the_exact_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object, **__: object) -> list[str]:
        raise AssertionError("the exact parse ran for a body without duplicates")

    monkeypatch.setattr(_fieldvalidation, "duplicate_fields", fail)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"},
                                                          "annotations": {"x": "k:v", "y": '{"j":1}'}},
           "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}
    for raw in (json.dumps(pod).encode(), json.dumps(pod, indent=2).encode(), msgspec.json.encode(pod)):
        assert body_duplicate_fields(raw, msgspec.json.decode(raw)) == []


def test_what_each_mode_does() -> None:
    with pytest.raises(BadRequest) as e:
        duplicate_field_warnings("Strict", "ConfigMap", "v1", ["metadata.name"])
    assert e.value.message == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
                               'duplicate field "metadata.name"')
    assert duplicate_field_warnings("Warn", "ConfigMap", "v1", ["a"]) == ('duplicate field "a"',)
    assert duplicate_field_warnings("", "ConfigMap", "v1", ["a"]) == ('duplicate field "a"',)
    assert duplicate_field_warnings("Ignore", "ConfigMap", "v1", ["a"]) == ()
    assert duplicate_field_warnings("Strict", "ConfigMap", "v1", []) == ()
