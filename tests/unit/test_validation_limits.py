"""Pure write-path rules of issue 7: base64 as Go reads it, fieldManager, owner references,
path-segment name bounds, generated names and per-append Msg-Ids."""

from __future__ import annotations

import base64

import pytest

from actors._resource import _msg_id, generate_name
from kinds._validation import (
    go_base64_decode,
    is_valid_path_segment_name,
    validate_field_manager,
    validate_object_meta,
)


@pytest.mark.parametrize("text,raw", [
    ("", b""), ("aGVsbG8=", b"hello"), ("aGVs\nbG8=\n", b"hello"), ("aGVs\r\nbG8=", b"hello"),
    ("\naGVsbA==\n\n", b"hell"), ("aGVsbA=\n=", b"hell"), ("aGVsbG8h", b"hello!"),
])
def test_go_base64_accepts_what_go_accepts(text: str, raw: bytes) -> None:
    assert go_base64_decode(text) == raw


@pytest.mark.parametrize("text,offset", [
    ("aGVsbG8", 4), ("aGVs bG8=", 4), ("a\tGVsbG8=", 1), ("####", 0), ("aGVsbG8=x", 8), ("a===", 1),
    ("aGVsbA=", 7), ("aGVsbA=x", 6), ("aü==", 1),
])
def test_go_base64_refuses_with_go_offsets(text: str, offset: int) -> None:
    with pytest.raises(ValueError, match=f"^illegal base64 data at input byte {offset}$"):
        go_base64_decode(text)


def test_go_base64_round_trips_random_bytes() -> None:
    for n in range(40):
        raw = bytes(range(n * 3 % 256, n * 3 % 256 + n)) if n * 3 % 256 + n <= 256 else bytes(n)
        enc = base64.b64encode(raw).decode()
        assert go_base64_decode(enc) == raw
        assert go_base64_decode("\n".join(enc[i:i + 4] for i in range(0, len(enc), 4))) == raw


def test_field_manager_rules() -> None:
    assert validate_field_manager("m" * 128) == [] and validate_field_manager("kubectl edit ü") == []
    [too_long] = validate_field_manager("m" * 129)
    assert (too_long.field, too_long.message) == ("fieldManager", "Too long: must have at most 128 bytes")
    assert validate_field_manager("ü" * 65)[0].reason == "FieldValueTooLong"  # bytes, not characters
    bad = validate_field_manager("ü\x07\u00a0")
    assert [c.message.rsplit(": ", 1)[1] for c in bad] == ["invalid character U+0007 (at position 2)",
                                                           "invalid character U+00A0 (at position 3)"]


def test_owner_references() -> None:
    def check(refs: object) -> list[tuple[str, str]]:
        meta = {"name": "a", "namespace": "n", "ownerReferences": refs}
        return [(c.field, c.message) for c in validate_object_meta(meta, namespaced=True)]

    assert check([{}]) == [("metadata.ownerReferences.apiVersion", 'Invalid value: "": version must not be empty'),
                           ("metadata.ownerReferences.kind", 'Invalid value: "": must not be empty'),
                           ("metadata.ownerReferences.name", 'Invalid value: "": must not be empty'),
                           ("metadata.ownerReferences.uid", 'Invalid value: "": must not be empty')]
    good = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1", "controller": True}
    assert check([good, {**good, "uid": "2", "controller": False}]) == []
    assert check([{**good, "apiVersion": "a/b/c"}])[0][1].endswith("version must not be empty")
    assert "is disallowed from being an owner" in check([{**good, "kind": "Event"}])[0][1]
    [(field, message)] = check([good, {**good, "name": "y", "uid": "2"}])
    assert field == "metadata.ownerReferences" and message.endswith(
        'Only one reference can have Controller set to true. Found "true" in references for ConfigMap/x and '
        "ConfigMap/y")


def test_path_segment_names_are_bounded_for_storage() -> None:
    def errors(name: str) -> list[str]:
        meta = {"name": name, "namespace": "n"}
        return [c.message for c in validate_object_meta(meta, namespaced=True, name_rule="path")]

    assert errors("system:Ü weird" + "y" * 200) == []
    assert errors("ü" * 127) == [f'Invalid value: "{"ü" * 127}": must be no more than 253 characters']
    assert errors("y" * 254 + "/") == [f'Invalid value: "{"y" * 254}/": must be no more than 253 characters',
                                       f'Invalid value: "{"y" * 254}/": may not contain \'/\'']
    assert is_valid_path_segment_name("..") == ["may not be '..'"]


def test_generated_names_fit_a_label() -> None:
    assert len(generate_name("g" * 300)) == 63 and generate_name("g" * 300).startswith("g" * 58)
    assert len(generate_name("ab-")) == 8
    cut = generate_name("ü" * 40)  # a cut inside a character drops the partial character
    assert cut.startswith("ü" * 29) and len(cut.encode()) == 58 + 5


def test_each_subject_of_a_request_has_its_own_msg_id() -> None:
    ids = {_msg_id("audit-1", f"jk.default._.configmaps.default.c{i}", 0) for i in range(1000)}
    assert len(ids) == 1000
    assert _msg_id("audit-1", "s", 0) == _msg_id("audit-1", "s", 0) != _msg_id("audit-2", "s", 0)
    assert _msg_id("audit-1", "s", 1) != _msg_id("audit-1", "s", 0)
    assert _msg_id("", "s", 0) != _msg_id("", "s", 0)  # no audit ID: never deduplicated by accident
    assert max(len(_msg_id("f" * 36, "s" * 5000, 31)) for _ in range(3)) <= 64
