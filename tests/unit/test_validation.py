"""Name, label, annotation and ObjectMeta validation (kinds._validation)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinds._errors import Cause, invalid
from kinds._validation import (
    ANNOTATIONS_MAX_BYTES,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    is_valid_path_segment_name,
    validate_config_map_keys,
    validate_object_meta,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


# --- the is_* checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("a", []),
        ("example.com", []),
        ("a-b.c-d", []),
        ("0", []),
        ("a" * 253, []),
        ("", [SUBDOMAIN_MSG]),
        ("A", [SUBDOMAIN_MSG]),
        ("-a", [SUBDOMAIN_MSG]),
        ("a-", [SUBDOMAIN_MSG]),
        ("a..b", [SUBDOMAIN_MSG]),
        ("a_b", [SUBDOMAIN_MSG]),
        ("a.", [SUBDOMAIN_MSG]),
        ("a\n", [SUBDOMAIN_MSG]),
        ("a" * 254, ["must be no more than 253 characters"]),
        ("A" * 254, ["must be no more than 253 characters", SUBDOMAIN_MSG]),
    ],
)
def test_is_dns1123_subdomain(value: str, errors: list[str]) -> None:
    assert is_dns1123_subdomain(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("a", []),
        ("my-name", []),
        ("123-abc", []),
        ("a" * 63, []),
        ("a" * 64, ["must be no more than 63 characters"]),
        ("a.b", ["must not contain dots"]),
        ("", [LABEL_MSG]),
        ("A", [LABEL_MSG]),
        ("-a", [LABEL_MSG]),
        ("a_b", [LABEL_MSG]),
    ],
)
def test_is_dns1123_label(value: str, errors: list[str]) -> None:
    assert is_dns1123_label(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("a", []),
        ("MyName", []),
        ("my.name", []),
        ("123-abc", []),
        ("a_b", []),
        ("example.com/MyName", []),
        ("k8s.io/a" + "b" * 61, []),
        ("", ["name part must be non-empty", QNAME_MSG]),
        ("-a", [QNAME_MSG]),
        ("a b", [QNAME_MSG]),
        ("a" * 64, ["name part must be no more than 63 characters"]),
        ("/a", ["prefix part must be non-empty"]),
        ("a/", ["name part must be non-empty", QNAME_MSG]),
        ("Example.com/a", ["prefix part " + SUBDOMAIN_MSG]),
        ("a" * 254 + "/b", ["prefix part must be no more than 253 characters"]),
        ("a/b/c", [(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
            "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
            "prefix and '/' (e.g. 'example.com/MyName')"
        )]),
    ],
)
def test_is_qualified_name(value: str, errors: list[str]) -> None:
    assert is_qualified_name(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("", []),
        ("MyValue", []),
        ("my_value", []),
        ("12345", []),
        ("a.b-c_D", []),
        ("v" * 63, []),
        ("v" * 64, ["must be no more than 63 characters"]),
        ("-a", [LABEL_VALUE_MSG]),
        ("a/b", [LABEL_VALUE_MSG]),
        ("a b", [LABEL_VALUE_MSG]),
        ("é", [LABEL_VALUE_MSG]),
    ],
)
def test_is_valid_label_value(value: str, errors: list[str]) -> None:
    assert is_valid_label_value(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("key.name", []),
        ("KEY_NAME", []),
        ("key-name", []),
        (".dotfile", []),
        ("a..b", []),
        ("k" * 253, []),
        ("k" * 254, ["must be no more than 253 characters"]),
        ("", [CONFIG_KEY_MSG]),
        ("a/b", [CONFIG_KEY_MSG]),
        ("a b", [CONFIG_KEY_MSG]),
        (".", ["must not be '.'"]),
        ("..", ["must not be '..'"]),
        ("..a", ["must not start with '..'"]),
    ],
)
def test_is_config_map_key(value: str, errors: list[str]) -> None:
    assert is_config_map_key(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("ok", []),
        ("Upper_and.dots..", []),
        (".", ["may not be '.'"]),
        ("..", ["may not be '..'"]),
        ("a/b", ["may not contain '/'"]),
        ("a%b", ["may not contain '%'"]),
        ("a/%", ["may not contain '/'", "may not contain '%'"]),
    ],
)
def test_is_valid_path_segment_name(value: str, errors: list[str]) -> None:
    assert is_valid_path_segment_name(value) == errors


# --- validate_object_meta ----------------------------------------------------------------


def _inv(field: str, value: str, msg: str) -> Cause:
    return Cause("FieldValueInvalid", f'Invalid value: "{value}": {msg}', field)


@pytest.mark.parametrize(
    ("meta", "kwargs", "causes"),
    [
        ({"name": "ok", "namespace": "default"}, {"namespaced": True}, []),
        ({"name": "ok"}, {"namespaced": False}, []),
        ({"generateName": "web-", "namespace": "default"}, {"namespaced": True}, []),
        ({"namespace": "default"}, {"namespaced": True},
         [Cause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name")]),
        ({"name": "", "generateName": ""}, {"namespaced": False},
         [Cause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name")]),
        ({"name": "Bad_Name"}, {"namespaced": False}, [_inv("metadata.name", "Bad_Name", SUBDOMAIN_MSG)]),
        ({"name": "a.b"}, {"namespaced": False, "name_rule": "label"},
         [_inv("metadata.name", "a.b", "must not contain dots")]),
        ({"name": "a.b"}, {"namespaced": False}, []),
        ({"generateName": "Web-"}, {"namespaced": False},
         [_inv("metadata.generateName", "Web-", SUBDOMAIN_MSG)]),
        # a trailing '-' is fine in a prefix, but not in a name
        ({"generateName": "web-"}, {"namespaced": False}, []),
        ({"name": "web-"}, {"namespaced": False}, [_inv("metadata.name", "web-", SUBDOMAIN_MSG)]),
        ({"name": "pod.16f1e8a7b3c2_Bad:x"}, {"namespaced": False, "name_rule": "path"}, []),
        ({"name": "a/b"}, {"namespaced": False, "name_rule": "path"},
         [_inv("metadata.name", "a/b", "may not contain '/'")]),
        ({"name": ".."}, {"namespaced": False, "name_rule": "path"},
         [_inv("metadata.name", "..", "may not be '..'")]),
        ({"generateName": "."}, {"namespaced": False, "name_rule": "path"}, []),
        ({"name": "x"}, {"namespaced": True},
         [Cause("FieldValueRequired", "Required value", "metadata.namespace")]),
        ({"name": "x", "namespace": "Bad"}, {"namespaced": True},
         [_inv("metadata.namespace", "Bad", LABEL_MSG)]),
        ({"name": "x", "namespace": "ns"}, {"namespaced": False},
         [Cause("FieldValueForbidden", "Forbidden: not allowed on this type", "metadata.namespace")]),
        ({"name": "x", "generation": -1}, {"namespaced": False},
         [Cause("FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0",
                "metadata.generation")]),
        ({"name": "x", "labels": {"app": "web", "example.com/tier": "", "a_b": "C.d"}},
         {"namespaced": False}, []),
        ({"name": "x", "labels": {"bad key": "v"}}, {"namespaced": False},
         [_inv("metadata.labels", "bad key", QNAME_MSG)]),
        ({"name": "x", "labels": {"k": "bad value"}}, {"namespaced": False},
         [_inv("metadata.labels", "bad value", LABEL_VALUE_MSG)]),
        ({"name": "x", "labels": {"k": 1}}, {"namespaced": False},
         [Cause("FieldValueInvalid", "Invalid value: 1: must be a string", "metadata.labels[k]")]),
        ({"name": "x", "labels": ["a"]}, {"namespaced": False},
         [Cause("FieldValueInvalid",
                'Invalid value: []string{"a"}: must be a map of string keys to string values',
                "metadata.labels")]),
        ({"name": "x", "labels": None, "annotations": None, "finalizers": None}, {"namespaced": False}, []),
        # annotation keys are checked case-insensitively
        ({"name": "x", "annotations": {"Example.COM/Some-Key": "anything at all: {}"}},
         {"namespaced": False}, []),
        ({"name": "x", "annotations": {"bad key": "v"}}, {"namespaced": False},
         [_inv("metadata.annotations", "bad key", QNAME_MSG)]),
        ({"name": "x", "annotations": {"k": True}}, {"namespaced": False},
         [Cause("FieldValueInvalid", "Invalid value: true: must be a string", "metadata.annotations[k]")]),
        ({"name": "x", "finalizers": ["example.com/cleanup", "kubernetes", "foregroundDeletion"]},
         {"namespaced": False}, []),
        ({"name": "x", "finalizers": ["bad name"]}, {"namespaced": False},
         [_inv("metadata.finalizers", "bad name", QNAME_MSG)]),
        ({"name": "x", "finalizers": "orphan"}, {"namespaced": False},
         [Cause("FieldValueInvalid", 'Invalid value: "orphan": must be a list of strings',
                "metadata.finalizers")]),
        ({"name": "x", "finalizers": ["orphan", "foregroundDeletion"]}, {"namespaced": False},
         [Cause("FieldValueInvalid",
                'Invalid value: []string{"orphan", "foregroundDeletion"}: '
                "finalizer orphan and foregroundDeletion cannot be both set", "metadata.finalizers")]),
        ({"name": 5}, {"namespaced": False},
         [Cause("FieldValueInvalid", "Invalid value: 5: must be a string", "metadata.name")]),
        ({"name": "Bad"}, {"namespaced": False, "field": "spec.template.metadata"},
         [_inv("spec.template.metadata.name", "Bad", SUBDOMAIN_MSG)]),
    ],
)
def test_validate_object_meta(meta: dict[str, Any], kwargs: dict[str, Any], causes: list[Cause]) -> None:
    assert validate_object_meta(meta, **kwargs) == causes


def test_validate_object_meta_reports_every_problem_in_order() -> None:
    causes = validate_object_meta(
        {"labels": {"-x": "ok", "y": "-"}, "annotations": {"a/b/c": ""}, "finalizers": ["-"]},
        namespaced=True,
    )
    assert [(c.reason, c.field) for c in causes] == [
        ("FieldValueRequired", "metadata.name"),
        ("FieldValueRequired", "metadata.namespace"),
        ("FieldValueInvalid", "metadata.labels"),
        ("FieldValueInvalid", "metadata.labels"),
        ("FieldValueInvalid", "metadata.annotations"),
        ("FieldValueInvalid", "metadata.finalizers"),
    ]


def test_annotations_size_limit() -> None:
    # keys and values both count; exactly at the limit is fine
    at_limit = {"k": "v" * (ANNOTATIONS_MAX_BYTES - 1)}
    assert validate_object_meta({"name": "x", "annotations": at_limit}, namespaced=False) == []
    over = {"k": "v" * ANNOTATIONS_MAX_BYTES}
    assert validate_object_meta({"name": "x", "annotations": over}, namespaced=False) == [
        Cause("FieldValueTooLong", "Too long: must have at most 262144 bytes", "metadata.annotations")
    ]
    # sizes are UTF-8 bytes, not characters
    wide = {"k": "é" * (ANNOTATIONS_MAX_BYTES // 2)}
    assert [c.reason for c in validate_object_meta({"name": "x", "annotations": wide}, namespaced=False)] == [
        "FieldValueTooLong"
    ]


def test_not_a_map() -> None:
    assert validate_object_meta("x", namespaced=False) == [
        Cause("FieldValueInvalid", 'Invalid value: "x": must be an object', "metadata")
    ]


def test_unknown_name_rule() -> None:
    with pytest.raises(ValueError):
        validate_object_meta({"name": "x"}, namespaced=False, name_rule="dns")  # type: ignore[arg-type]


def test_causes_compose_into_the_apiserver_message() -> None:
    causes = validate_object_meta({"name": "Bad_Name"}, namespaced=False)
    err = invalid("ConfigMap", "Bad_Name", causes)
    assert err.message == (
        f'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}'
    )
    required = invalid("ConfigMap", "", validate_object_meta({}, namespaced=False))
    assert required.message == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )


# --- validate_config_map_keys ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "causes"),
    [
        (None, []),
        ({}, []),
        ({"a.txt": "x", "KEY_1": "y", "-k": "z"}, []),
        ({"a/b": "x"}, [_inv("data[a/b]", "a/b", CONFIG_KEY_MSG)]),
        ({"..": "x"}, [_inv("data[..]", "..", "must not be '..'")]),
        ({"..x": "x", "ok": "y", " ": "z"},
         [_inv("data[..x]", "..x", "must not start with '..'"), _inv("data[ ]", " ", CONFIG_KEY_MSG)]),
        ({"k" * 254: "x"},
         [_inv("data[" + "k" * 254 + "]", "k" * 254, "must be no more than 253 characters")]),
        (["a"], [Cause("FieldValueInvalid", 'Invalid value: []string{"a"}: must be a map', "data")]),
    ],
)
def test_validate_config_map_keys(data: Any, causes: list[Cause]) -> None:
    assert validate_config_map_keys(data, "data") == causes


def test_validate_config_map_keys_uses_given_field() -> None:
    assert [c.field for c in validate_config_map_keys({"a b": ""}, "binaryData")] == ["binaryData[a b]"]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text(alphabet="aZ09-_./ \u00e9", max_size=70), max_size=6))
def test_remembered_string_checks_answer_as_the_checks(values: list[str]) -> None:
    """Label keys and values and data keys that passed are remembered: asked again (the second
    round answers from memory), every check answers as the check itself, and a fresh list."""
    from kinds import _validation as v

    for check in (v.is_qualified_name, v.is_valid_label_value, v.is_config_map_key):
        for _ in range(2):
            for value in values:
                got = check(value)
                assert got == check.__wrapped__(value)  # type: ignore[attr-defined]
                got.append("mutated")  # the caller's own list: the memory is not changed by it
