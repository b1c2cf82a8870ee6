"""Service-account tokens as kube-apiserver signs and checks them (issues 4, 10, 19): an ES256
key from a file that every replica is given (never the log), issuer/audience/time claims checked,
malformed tokens and review specs answered 401/400 (never 500)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bus import open_bridge, open_log, system_subject
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

ISSUER = "https://kubernetes.default.svc.cluster.local"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSRR = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"


def _key_file(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


async def _service_account(api: httpx.AsyncClient, name: str) -> str:
    r = await api.post("/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return str(r.json()["metadata"]["uid"])


def _claims(uid: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "system:serviceaccount:default:bot", "aud": [ISSUER], "iat": now,
              "nbf": now, "exp": now + 3600,
              "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "bot", "uid": uid}}}
    claims.update(over)
    return claims


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """The algorithm-confusion forgery (PyJWT refuses to make it, so by hand)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


async def _whoami(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {token}"})


async def test_replicas_share_the_key_file_and_the_log_holds_no_key(start_server: StartServer, tmp_path: Path,
                                                                    nats_url: str) -> None:
    key = _key_file(tmp_path / "sa.key")
    a = await start_server(service_account_key_file=str(tmp_path / "sa.key"))
    b = await start_server(service_account_key_file=str(tmp_path / "sa.key"))
    async with client_for(a) as api, client_for(b) as api_b:
        with trio.fail_after(30):
            await _service_account(api, "bot")
            r = await api.post("/api/v1/namespaces/default/serviceaccounts/bot/token", json={})
            assert r.status_code == 201, r.text
            token = r.json()["status"]["token"]
            # ES256 with kube's key id, verifiable with the key file's public key alone.
            der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
            assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": kid, "typ": "JWT"}
            claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=ISSUER)
            assert claims["sub"] == "system:serviceaccount:default:bot"
            # Once b has applied the service account (its authenticator reads its projection).
            assert (await api_b.get("/api/v1/namespaces/default/serviceaccounts/bot")).status_code == 200
            for client in (api, api_b):
                who = await _whoami(client, token)
                assert who.status_code == 201, who.text
                assert who.json()["status"]["userInfo"]["username"] == "system:serviceaccount:default:bot"
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        assert await log.last_message(system_subject(log.prefix, "sa-signing-key")) is None


async def test_default_key_is_generated_private_in_the_data_dir(start_server: StartServer,
                                                                tmp_path: Path) -> None:
    server = await start_server(data_dir=str(tmp_path / "d"))
    path = tmp_path / "d" / "pki" / "sa.key"
    assert os.stat(path).st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    async with client_for(server) as api:
        with trio.fail_after(30):
            uid = await _service_account(api, "bot")
            assert (await _whoami(api, jwt.encode(_claims(uid), key, "ES256"))).status_code == 201


async def test_claims_are_checked_as_kube_does(start_server: StartServer, tmp_path: Path) -> None:
    key = _key_file(tmp_path / "sa.key")
    server = await start_server(service_account_key_file=str(tmp_path / "sa.key"))
    now = int(time.time())
    async with client_for(server) as api:
        with trio.fail_after(30):
            uid = await _service_account(api, "bot")
            good = jwt.encode(_claims(uid), key, "ES256")
            assert (await _whoami(api, good)).status_code == 201
            # Within the 60-s leeway (go-jose's default): accepted.
            assert (await _whoami(api, jwt.encode(_claims(uid, nbf=now + 30), key, "ES256"))).status_code == 201
            other = ec.generate_private_key(ec.SECP256R1())
            rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
            bad = {
                "another audience": jwt.encode(_claims(uid, aud=["https://elsewhere"]), key, "ES256"),
                "a string audience elsewhere": jwt.encode(_claims(uid, aud="https://elsewhere"), key, "ES256"),
                "nbf in the future": jwt.encode(_claims(uid, nbf=now + 3600), key, "ES256"),
                "iat in the future": jwt.encode(_claims(uid, iat=now + 3600), key, "ES256"),
                "expired": jwt.encode(_claims(uid, exp=now - 3600), key, "ES256"),
                "exp not a number": jwt.encode(_claims(uid, exp="abc"), key, "ES256"),
                "nbf not a number": jwt.encode(_claims(uid, nbf="abc"), key, "ES256"),
                "no exp": jwt.encode({k: v for k, v in _claims(uid).items() if k != "exp"}, key, "ES256"),
                "another issuer": jwt.encode(_claims(uid, iss="https://elsewhere"), key, "ES256"),
                "another key": jwt.encode(_claims(uid), other, "ES256"),
                "RS256 by another key": jwt.encode(_claims(uid), rsa_key, "RS256"),
                "HS256 keyed with the public key": _hs256(_claims(uid), public_pem),
                "alg none": jwt.encode(_claims(uid), None, "none"),
                "another uid": jwt.encode(_claims("not-the-uid"), key, "ES256"),
                "kubernetes.io not an object": jwt.encode(_claims(uid, **{"kubernetes.io": "x"}), key, "ES256"),
                "serviceaccount not an object": jwt.encode(
                    _claims(uid, **{"kubernetes.io": {"namespace": "default", "serviceaccount": ["bot"]}}),
                    key, "ES256"),
                "namespace not a string": jwt.encode(
                    _claims(uid, **{"kubernetes.io": {"namespace": ["default"],
                                                      "serviceaccount": {"name": "bot", "uid": uid}}}),
                    key, "ES256"),
                "tampered": good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1],
            }
            for what, token in bad.items():
                r = await _whoami(api, token)
                assert r.status_code == 401, f"{what}: {r.status_code} {r.text}"
                assert r.json()["reason"] == "Unauthorized", what
            # TokenRequest for another audience: a token the API server itself does not accept.
            r = await api.post("/api/v1/namespaces/default/serviceaccounts/bot/token",
                               json={"spec": {"audiences": ["vault"]}})
            assert r.status_code == 201, r.text
            assert r.json()["spec"]["audiences"] == ["vault"]
            assert jwt.decode(r.json()["status"]["token"], key.public_key(), algorithms=["ES256"],
                              audience="vault")["aud"] == ["vault"]
            assert (await _whoami(api, r.json()["status"]["token"])).status_code == 401
            for spec in ({"audiences": "vault"}, {"audiences": [1]}, {"expirationSeconds": "3600"}):
                r = await api.post("/api/v1/namespaces/default/serviceaccounts/bot/token", json={"spec": spec})
                assert r.status_code == 400, f"{spec}: {r.status_code} {r.text}"


async def test_review_specs_with_wrong_field_types_are_bad_requests(api: httpx.AsyncClient) -> None:
    bad = [
        (SSAR, {"resourceAttributes": {"resource": ["x"], "verb": "get"}}),
        (SSAR, {"resourceAttributes": {"resource": "configmaps", "verb": ["get"]}}),
        (SSAR, {"resourceAttributes": {"resource": "configmaps", "verb": "get", "namespace": 1}}),
        (SSAR, {"resourceAttributes": {"resource": "configmaps", "verb": "get", "name": {}}}),
        (SSAR, {"resourceAttributes": "configmaps"}),
        (SSAR, {"nonResourceAttributes": {"path": 5, "verb": "get"}}),
        (SSAR, {"nonResourceAttributes": {"path": "/api", "verb": True}}),
        (SSRR, {"namespace": ["default"]}),
    ]
    with trio.fail_after(20):
        for url, spec in bad:
            r = await api.post(url, json={"spec": spec})
            assert r.status_code == 400, f"{url} {spec}: {r.status_code} {r.text}"
            assert r.json()["reason"] == "BadRequest", r.text
        ok = await api.post(SSAR, json={"spec": {"resourceAttributes": {"resource": "configmaps", "verb": "get",
                                                                        "group": None}}})
        assert ok.status_code == 201 and ok.json()["status"]["allowed"] is True, ok.text
