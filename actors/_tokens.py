"""Service-account JWTs: signing and checking, as kube-apiserver's ``pkg/serviceaccount`` does.

The key is a PEM private key from a file (``--service-account-key-file``, as kube's
``--service-account-signing-key-file``); every gateway replica must be given the same file. An EC
P-256 key signs ES256 (the default, generated on first start), an RSA key RS256. The key id is
kube's: base64url(sha256(PKIX DER of the public key)). PyJWT signs and verifies, with an explicit
one-algorithm allowlist.

Checks, in kube's order (jwt.go ``AuthenticateToken``, claims.go ``Validate``): issuer, signature,
audiences (the token's must intersect the API server's, which default to the issuer, as
``--api-audiences`` does), ``exp``/``nbf``/``iat`` with go-jose's one-minute leeway, then the
claim shapes; the service account itself is looked up by the caller. Every failure is
:class:`Unauthorized`. No I/O (the clock is PyJWT's).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import cachetools
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bus import ROOT_TENANT
from kinds._errors import Unauthorized

ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"  # Secret-based tokens (kube's legacy.go)
_LEGACY = "kubernetes.io/serviceaccount/"
API_AUDIENCES = (ISSUER,)
LEEWAY_S = 60  # go-jose's DefaultLeeway


class SigningKey:
    """A service-account signing key: algorithm, key id, private and public halves."""

    __slots__ = ("alg", "kid", "private", "public")

    def __init__(self, pem: bytes) -> None:
        key = serialization.load_pem_private_key(pem, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            self.alg = "ES256"
        elif isinstance(key, rsa.RSAPrivateKey):
            self.alg = "RS256"
        else:
            raise TypeError("service-account key must be an EC P-256 or an RSA private key (PEM)")
        self.private = key
        self.public = key.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})


JWKS_PATH = "/openid/v1/jwks"
OPENID_CONFIG_PATH = "/.well-known/openid-configuration"


def jwks(key: SigningKey) -> dict[str, Any]:
    """The public half of the signing key as a JWK Set (``/openid/v1/jwks``), as kube publishes it:
    ``use: sig``, the algorithm and kube's key id, so a third party verifies our tokens."""
    algorithm = jwt.algorithms.ECAlgorithm if key.alg == "ES256" else jwt.algorithms.RSAAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key.public, as_dict=True)
    return {"keys": [{"use": "sig", **jwk, "kid": key.kid, "alg": key.alg}]}


def openid_configuration(key: SigningKey, jwks_uri: str) -> dict[str, Any]:
    """The OIDC discovery document (``/.well-known/openid-configuration``, kube's openIDMetadata)."""
    return {"issuer": ISSUER, "jwks_uri": jwks_uri, "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": [key.alg]}


def unauthorized(detail: str = "invalid bearer token") -> Unauthorized:
    """A 401 (its message is always kube's "Unauthorized") whose ``detail`` says why, in kube's
    words, for TokenReview's ``status.error``."""
    e = Unauthorized("Unauthorized")
    e.detail = detail  # type: ignore[attr-defined]
    return e


def verify_token(token: str, key: SigningKey, *, audiences: Sequence[str] = API_AUDIENCES) -> dict[str, Any]:
    """The claims of a service-account token signed by ``key`` for one of ``audiences`` and valid
    now, with the shapes :func:`service_account_ref` needs; else :class:`Unauthorized`."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise unauthorized() from None
    if not isinstance(unverified, dict):
        raise unauthorized()
    if unverified.get("iss") == LEGACY_ISSUER:
        return _verify_legacy(token, key, audiences)
    if unverified.get("iss") != ISSUER:
        raise unauthorized()  # not one of ours (kube: hasCorrectIssuer)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.public, algorithms=[key.alg], audience=list(audiences), issuer=ISSUER, leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "nbf", "aud", "iss", "sub"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("service account token has expired") from None
    except jwt.ImmatureSignatureError:
        raise unauthorized("service account token is not valid yet") from None
    except jwt.InvalidAudienceError:
        raise unauthorized(f"token audiences {go_quote(unverified.get('aud'))} is invalid for the target "
                           f"audiences {go_quote(list(audiences))}") from None
    except jwt.InvalidTokenError:
        raise unauthorized("go-jose/go-jose: error in cryptographic primitive") from None
    service_account_ref(claims)
    return claims


def _verify_legacy(token: str, key: SigningKey, audiences: Sequence[str]) -> dict[str, Any]:
    """A legacy Secret-based token (``pkg/serviceaccount/legacy.go``): no ``aud`` (the API server's
    own audiences apply) and no ``exp``; the caller checks the Secret still holds it."""
    if not set(API_AUDIENCES) & set(audiences):
        raise unauthorized(f"token audiences {go_quote(list(API_AUDIENCES))} is invalid for the target "
                           f"audiences {go_quote(list(audiences))}")
    try:
        claims: dict[str, Any] = jwt.decode(token, key.public, algorithms=[key.alg], issuer=LEGACY_ISSUER,
                                            options={"require": ["iss", "sub"], "verify_aud": False})
    except jwt.InvalidTokenError:
        raise unauthorized("go-jose/go-jose: error in cryptographic primitive") from None
    service_account_ref(claims)
    return claims


#: The claim naming the tenant (logical cluster) of a service account's token, absent for root
#: (kcp's ``kubernetes.io/serviceaccount/clusterName``): a service account exists in one tenant.
CLUSTER_CLAIM = "tenancy.jetkube.io/cluster"


def with_cluster(claims: dict[str, Any], tenant: str) -> dict[str, Any]:
    """``claims`` naming ``tenant`` (root's tokens stay as kube's)."""
    return claims if tenant == ROOT_TENANT else {**claims, CLUSTER_CLAIM: tenant}


def tenant_of_claims(claims: dict[str, Any]) -> str:
    t = claims.get(CLUSTER_CLAIM, ROOT_TENANT)
    if not isinstance(t, str) or not t:
        raise unauthorized("service account token claims are malformed")
    return t


def legacy_claims(namespace: str, sa_name: str, sa_uid: str, secret_name: str,
                  tenant: str = ROOT_TENANT) -> dict[str, Any]:
    """The claims of a legacy token kube's token controller puts into a
    ``kubernetes.io/service-account-token`` Secret (flat, no expiry, no audience)."""
    return with_cluster({"iss": LEGACY_ISSUER, f"{_LEGACY}namespace": namespace, f"{_LEGACY}secret.name": secret_name,
            f"{_LEGACY}service-account.name": sa_name, f"{_LEGACY}service-account.uid": sa_uid,
            "sub": f"system:serviceaccount:{namespace}:{sa_name}"}, tenant)


def legacy_secret_name(claims: dict[str, Any]) -> str | None:
    """The Secret a legacy token was issued for, None for a TokenRequest token."""
    name = claims.get(f"{_LEGACY}secret.name") if claims.get("iss") == LEGACY_ISSUER else None
    return name if isinstance(name, str) else None


def go_quote(value: Any) -> str:
    items = value if isinstance(value, list) else [value]
    return "[" + " ".join(f'"{v}"' for v in items) + "]"


class TokenVerifier:
    """:func:`verify_token` with kube's success cache (``TokenSuccessCacheTTL``, 10 s): the
    signature is checked once per token per TTL. Entries are keyed by the token's SHA-256, never
    the token; the number of entries is bounded; ``exp``/``nbf`` are checked again on every hit.
    Only the verified claims are cached: the service account (and a bound object) is looked up
    on every request, so deleting it revokes the token at once."""

    def __init__(self, key: SigningKey, *, audiences: Sequence[str] = API_AUDIENCES, ttl_s: float = 10.0,
                 size: int = 10_000) -> None:
        self.key, self.audiences = key, tuple(audiences)
        self._cache: cachetools.TTLCache[bytes, dict[str, Any]] = cachetools.TTLCache(size, ttl_s)

    def verify(self, token: str) -> dict[str, Any]:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        claims = self._cache.get(digest)
        if claims is None:
            claims = verify_token(token, self.key, audiences=self.audiences)
            self._cache[digest] = claims
            return claims
        now = time.time()
        if "exp" in claims and now > claims["exp"] + LEEWAY_S:  # (legacy tokens do not expire)
            del self._cache[digest]
            raise unauthorized("service account token has expired")
        return claims


def service_account_ref(claims: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace, name, uid) of the service account the claims stand for; Unauthorized when the
    private ``kubernetes.io`` claim is missing or malformed."""
    if claims.get("iss") == LEGACY_ISSUER:
        ns, name, uid = (claims.get(f"{_LEGACY}{k}") for k in ("namespace", "service-account.name",
                                                               "service-account.uid"))
        if not isinstance(claims.get(f"{_LEGACY}secret.name"), str):
            raise unauthorized("service account token claims are malformed")
    else:
        k8s = claims.get("kubernetes.io")
        sa = k8s.get("serviceaccount") if isinstance(k8s, dict) else None
        if not isinstance(k8s, dict) or not isinstance(sa, dict):
            raise unauthorized("service account token claims are malformed")
        ns, name, uid = k8s.get("namespace"), sa.get("name"), sa.get("uid")
    if not (isinstance(ns, str) and isinstance(name, str) and isinstance(uid, str) and ns and name and uid):
        raise unauthorized("service account token claims are malformed")
    if claims.get("sub") != f"system:serviceaccount:{ns}:{name}":
        raise unauthorized("service account token claims are malformed")
    return ns, name, uid
