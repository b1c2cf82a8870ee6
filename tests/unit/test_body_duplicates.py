"""Repeated members of a JSON body, found without a second parse of bodies that have none, and
repeated keys of a YAML body, found in the walk that checks its aliases (issue 7, item 16)."""

from __future__ import annotations

import json

import msgspec
import pytest

from actors import BadRequest, Invalid, body_duplicate_fields, body_strict_errors
from gateway import _codec
from gateway._codec import decode_body_strict
from kinds import _fieldvalidation
from kinds._fieldvalidation import field_validation_outcome, split_strict_warnings, yaml_strict_error

YAML = "application/yaml"


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
    errors = ['duplicate field "metadata.name"']
    with pytest.raises(BadRequest) as e:
        field_validation_outcome("Strict", errors, kind="ConfigMap", version="v1")
    assert e.value.message == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
                               'duplicate field "metadata.name"')
    assert field_validation_outcome("Warn", ['duplicate field "a"'], kind="K", version="v1") == ('duplicate field "a"',)
    assert field_validation_outcome("Ignore", ['duplicate field "a"'], kind="K", version="v1") == ()
    assert field_validation_outcome("Strict", [], kind="K", version="v1") == ()


def test_a_patch_under_strict_is_invalid_with_the_patched_object() -> None:
    with pytest.raises(Invalid) as e:
        field_validation_outcome("Strict", ['duplicate field "spec.a"'], kind="K", version="v1",
                                 patched=lambda: '{"spec":{"a":2}}')
    assert e.value.message == (' "" is invalid: patch: Invalid value: "{\\"spec\\":{\\"a\\":2}}": strict decoding '
                               'error: duplicate field "spec.a"')
    assert [(c.reason, c.field) for c in e.value.causes] == [("FieldValueInvalid", "patch")]


# --- YAML: go-yaml's strict decoder (sigs.k8s.io/yaml YAMLToJSONStrict) -----------------------

# kube's test/integration/apiserver/field_validation_test.go invalidBodyYAML, its lines 1-28.
DEPLOYMENT_YAML = b"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: d
  name: d
  labels:
    app: nginx
  unknownMeta: metaVal
spec:
  unknown1: val1
  unknownDupe: valDupe
  unknownDupe: valDupe2
  paused: true
  paused: false
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:latest
        unknownNested: val1
        imagePullPolicy: Always
        imagePullPolicy: Never"""


def test_yaml_repeated_keys_as_go_yaml_words_them() -> None:
    value, _, errors = decode_body_strict(DEPLOYMENT_YAML, YAML, max_bytes=1 << 20)
    assert errors == (('yaml: unmarshal errors:\n'
                       '  line 5: key "name" already set in map\n'
                       '  line 12: key "unknownDupe" already set in map\n'
                       '  line 14: key "paused" already set in map\n'
                       '  line 28: key "imagePullPolicy" already set in map'),)
    assert value["spec"]["paused"] is False  # the last one is kept, as the non-strict decoder does
    assert split_strict_warnings(errors[0]) == ['line 5: key "name" already set in map',
                                                'line 12: key "unknownDupe" already set in map',
                                                'line 14: key "paused" already set in map',
                                                'line 28: key "imagePullPolicy" already set in map']


@pytest.mark.parametrize("doc,lines", [
    # The line is the repeated key's value node's, reported after what that value reports.
    (b"a:\n  b: 1\n  b: 2\na:\n  c: 3\n", ['line 3: key "b" already set in map',
                                           'line 5: key "a" already set in map']),
    # Keys compare as decoded: 1 and 0x1 are one int, "1" is a string; a and "a" are one string.
    (b"1: a\n\"1\": b\n0x1: c\n", ["line 3: key 1 already set in map"]),
    (b"a: 1\n'a': 2\n", ['line 2: key "a" already set in map']),
    (b"{x: 1, x: 2}\n", ['line 1: key "x" already set in map']),
    (b"x: &m {k: 1, k: 2}\ny: *m\n", ['line 1: key "k" already set in map']),
    (b"a: 1\nb: {a: 1}\nc: [{a: 1}, {a: 2}]\n", []),
    # A merge sets its keys where it stands: a key set again after it is repeated, as in go-yaml.
    (b"base: &b {k: 1}\nm:\n  <<: *b\n  k: 2\n", ['line 4: key "k" already set in map']),
    (b"b: &b {k: 1, j: 2}\nm:\n  k: 0\n  <<: [*b]\n", ['line 1: key "k" already set in map']),
    (b"base: &b {k: 1}\nm:\n  <<: *b\n  j: 2\n", []),
])
def test_yaml_repeated_keys(doc: bytes, lines: list[str]) -> None:
    assert decode_body_strict(doc, YAML, max_bytes=1 << 20)[2] == ((yaml_strict_error(lines),) if lines else ())


def test_yaml_without_repeats_costs_one_set_per_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> str:
        raise AssertionError("a repeated key was looked for in a document without any")

    monkeypatch.setattr(_codec, "yaml_duplicate_key", fail)
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {a: b}}\ndata:\n  a: x\n  b: y\n"
    assert decode_body_strict(doc, YAML, max_bytes=1 << 20)[2] == ()


# --- patches ------------------------------------------------------------------------------


def test_merge_patch_duplicates_are_plain_duplicate_fields() -> None:
    raw = b'{"spec":{"paused":true,"paused":false,"template":{"spec":{"containers":[{"a":1,"a":2}]}}}}'
    assert decode_body_strict(raw, "application/merge-patch+json", max_bytes=1 << 20, for_patch=True)[2] == (
        'duplicate field "spec.paused"', 'duplicate field "spec.template.spec.containers[0].a"')


def test_json_patch_is_decoded_strictly_as_operations() -> None:
    # kube's jsonPatchBody: 'json patch unknown field "[0].foo", json patch duplicate field "[1].path"'
    raw = (b'[{"op": "add", "path": "/spec/unknown1", "value": "val1", "foo":"bar"},'
           b' {"op": "add", "path": "/spec/unknown2", "path": "/spec/unknown3", "value": "val1"},'
           b' {"op": "add", "path": "/a", "value": {"k": 1, "k": 2}}]')
    assert body_strict_errors(raw, msgspec.json.decode(raw), json_patch=True) == [
        'json patch unknown field "[0].foo"', 'json patch duplicate field "[1].path"',
        'json patch duplicate field "[2].value.k"']
    ok = b'[{"op":"add","path":"/a:b","value":{"x":"1:2"}}]'
    assert body_strict_errors(ok, msgspec.json.decode(ok), json_patch=True) == []


def test_ignore_skips_the_search() -> None:
    assert decode_body_strict(b'{"a":1,"a":2}', None, max_bytes=1 << 20, strict=False)[2] == ()
    assert decode_body_strict(b"a: 1\na: 2\n", YAML, max_bytes=1 << 20, strict=False)[2] == ()
