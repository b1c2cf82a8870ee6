from __future__ import annotations

import pytest

from bus import (
    Key,
    SubjectError,
    decode_token,
    encode_token,
    object_subject,
    parse_subject,
    resource_filter,
    system_subject,
)


@pytest.mark.parametrize("value", ["plain", "a.b.c", "with_underscore", "~tilde", "UP", "ünï", "x y", "*", ">", "_"])
def test_token_round_trip(value: str) -> None:
    tok = encode_token(value)
    assert "." not in tok and " " not in tok and "*" not in tok and ">" not in tok
    assert decode_token(tok) == value
    if value != "_":
        assert tok != "_"


def test_placeholders_and_filters() -> None:
    # The root tenant keeps the subject token of logs written before tenants ("default").
    key = Key("root", "", "configmaps", "", "a.b")
    subj = object_subject("jk", key)
    assert subj == "jk.default._.configmaps._.a~2eb"
    assert parse_subject("jk", subj) == key
    key2 = Key("t1", "coordination.k8s.io", "leases", "ns", "l")
    assert parse_subject("jk", object_subject("jk", key2)) == key2
    assert resource_filter("jk", "t1", "coordination.k8s.io", "leases") == "jk.t1.coordination~2ek8s~2eio.leases.>"
    assert resource_filter("jk", "t1", "", "configmaps", "ns") == "jk.t1._.configmaps.ns.*"
    assert resource_filter("jk", "*", "", "configmaps") == "jk.*._.configmaps.>"
    assert resource_filter("jk", "root", "", "configmaps") == "jk.default._.configmaps.>"


@pytest.mark.parametrize("bad", ["jk.a.b", "other.t._.r._.n", "jk.t._.r._.bad~zz"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(SubjectError):
        parse_subject("jk", bad)


def test_empty_token_rejected() -> None:
    with pytest.raises(SubjectError):
        encode_token("")


@pytest.mark.parametrize("name", ["ü" * 700, "a" * 100_000])
def test_subjects_are_bounded_for_the_wire(name: str) -> None:
    # nats-server closes the connection on a protocol line over max_control_line (4096 bytes).
    for build in (lambda: object_subject("jk", Key("default", "", "roles", "ns", name)),
                  lambda: resource_filter("jk", "default", "", "roles", name),
                  lambda: system_subject("jk", name)):
        with pytest.raises(SubjectError):
            build()
    # Every DNS-subdomain name still fits, even fully escaped.
    assert len(object_subject("jk", Key("default", "g.example.com", "things", "n" * 63, "ü" * 126))) <= 2048
