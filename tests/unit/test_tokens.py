"""Service-account token checks (actors._tokens) and review spec types (actors._reviews): pure."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from actors import Unauthorized
from actors._reviews import _SPEC_TYPES, check_spec_types
from actors._tokens import ISSUER, SigningKey, verify_token


def _pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


EC_KEY = SigningKey(_pem(ec.generate_private_key(ec.SECP256R1())))


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {"iss": ISSUER, "sub": "system:serviceaccount:ns:bot", "aud": [ISSUER], "iat": now, "nbf": now,
         "exp": now + 600, "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "bot", "uid": "u1"}}}
    c.update(over)
    return c


def test_signs_es256_or_rs256_by_key_type() -> None:
    assert EC_KEY.alg == "ES256" and jwt.get_unverified_header(EC_KEY.sign(_claims()))["kid"] == EC_KEY.kid
    rsa_key = SigningKey(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    assert rsa_key.alg == "RS256"
    assert verify_token(rsa_key.sign(_claims()), rsa_key)["sub"] == "system:serviceaccount:ns:bot"
    with pytest.raises(TypeError):
        SigningKey(_pem(ec.generate_private_key(ec.SECP384R1())))


def test_valid_token_and_audience_intersection() -> None:
    assert verify_token(EC_KEY.sign(_claims()), EC_KEY)["kubernetes.io"]["namespace"] == "ns"
    assert verify_token(EC_KEY.sign(_claims(aud=["x", ISSUER])), EC_KEY)
    assert verify_token(EC_KEY.sign(_claims(aud=["x"])), EC_KEY, audiences=["y", "x"])


@pytest.mark.parametrize("over", [
    {"aud": ["https://elsewhere"]}, {"aud": "https://elsewhere"}, {"nbf": int(time.time()) + 3600},
    {"iat": int(time.time()) + 3600}, {"exp": int(time.time()) - 3600}, {"exp": "abc"}, {"nbf": "abc"},
    {"iat": [1]}, {"iss": "https://elsewhere"}, {"sub": "system:serviceaccount:ns:other"},
    {"kubernetes.io": "x"}, {"kubernetes.io": {"namespace": "ns", "serviceaccount": "bot"}},
    {"kubernetes.io": {"namespace": 1, "serviceaccount": {"name": "bot", "uid": "u1"}}},
    {"kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "bot", "uid": 7}}},
])
def test_rejected_claims(over: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized):
        verify_token(EC_KEY.sign(_claims(**over)), EC_KEY)


@pytest.mark.parametrize("missing", ["exp", "nbf", "iat", "aud", "sub", "iss"])
def test_required_claims(missing: str) -> None:
    with pytest.raises(Unauthorized):
        verify_token(EC_KEY.sign({k: v for k, v in _claims().items() if k != missing}), EC_KEY)


@pytest.mark.parametrize("token", ["", "a.b.c", "x" * 10, jwt.encode(_claims(), None, "none")])
def test_garbage(token: str) -> None:
    with pytest.raises(Unauthorized):
        verify_token(token, EC_KEY)


def test_spec_types() -> None:
    ssar = _SPEC_TYPES["self-subject-access"]
    assert check_spec_types({"resourceAttributes": {"resource": "x", "group": None}}, ssar) is None
    assert check_spec_types(None, ssar) is None
    assert check_spec_types({"resourceAttributes": {"resource": ["x"]}}, ssar) == (
        "json: cannot unmarshal array into Go struct field spec.resourceAttributes.resource of type string")
    assert check_spec_types([], ssar) == "json: cannot unmarshal array into Go struct field spec of type object"
    assert "of type object" in check_spec_types({"nonResourceAttributes": "x"}, ssar)  # type: ignore[operator]
    token = _SPEC_TYPES["token-request"]
    assert check_spec_types({"audiences": ["a"], "expirationSeconds": 600}, token) is None
    assert "of type []string" in check_spec_types({"audiences": "a"}, token)  # type: ignore[operator]
    assert "of type string" in check_spec_types({"audiences": [1]}, token)  # type: ignore[operator]
    assert "bool into" in check_spec_types({"expirationSeconds": True}, token)  # type: ignore[operator]
    assert "of type int64" in check_spec_types({"expirationSeconds": 1.5}, token)  # type: ignore[operator]
