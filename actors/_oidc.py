"""OIDC bearer tokens through kube's structured ``AuthenticationConfiguration``
(``apiserver.config.k8s.io/v1``, ``--authentication-config``): one JWT authenticator per issuer.

The subset served (kube's ``plugin/pkg/authenticator/token/oidc/oidc.go`` order): the token's
unverified ``iss`` picks the issuer; the signature is checked against the issuer's JWKS (from
``issuer.jwksFile``, a jetkube-only field, or fetched from the issuer's discovery document at start),
with RS/ES/PS 256/384/512; ``aud`` must hold one of ``issuer.audiences`` (MatchAny); ``exp``/``nbf``
with kube's leeway; then the claim mappings (username, groups, uid: ``claim`` + ``prefix``), the
``email_verified`` rule when the username claim is ``email``, and ``claimValidationRules`` of the
``claim``/``requiredValue`` form. CEL ``expression`` fields are refused when the file is loaded (no
CEL evaluator here). Verified tokens are cached briefly by hash, as service-account tokens are.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import cachetools
import jwt
import msgspec

from ._tokens import LEEWAY_S, go_quote, unauthorized
from .messages import UserInfo

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
API_VERSIONS = ("apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1alpha1")


class ClaimOrExpression(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    claim: str = ""
    prefix: str | None = None
    expression: str = ""


class ExtraMapping(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    key: str
    value_expression: str


class ClaimMappings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: ClaimOrExpression = ClaimOrExpression()
    groups: ClaimOrExpression = ClaimOrExpression()
    uid: ClaimOrExpression = ClaimOrExpression()
    extra: tuple[ExtraMapping, ...] = ()


class ClaimValidationRule(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    claim: str = ""
    required_value: str = ""
    expression: str = ""
    message: str = ""


class UserValidationRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    expression: str
    message: str = ""


class Issuer(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    url: str
    audiences: tuple[str, ...] = ()
    audience_match_policy: str = ""
    discovery_url: str = ""
    certificate_authority: str = ""
    jwks_file: str = ""  # jetkube-only: a JWK Set file instead of discovery


class JWTAuthenticatorConfig(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    issuer: Issuer
    claim_mappings: ClaimMappings = ClaimMappings()
    claim_validation_rules: tuple[ClaimValidationRule, ...] = ()
    user_validation_rules: tuple[UserValidationRule, ...] = ()


class AnonymousCondition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str


class AnonymousConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    conditions: tuple[AnonymousCondition, ...] = ()


class AuthenticationConfiguration(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    api_version: str
    kind: str
    jwt: tuple[JWTAuthenticatorConfig, ...] = ()
    anonymous: AnonymousConfig | None = None


class AuthenticationConfigError(ValueError):
    """An AuthenticationConfiguration that cannot be used: the message names the field."""


def validate_config(cfg: AuthenticationConfiguration) -> None:
    """kube's checks of the file (``apis/apiserver/validation``), for the subset served."""
    if cfg.kind != "AuthenticationConfiguration" or cfg.api_version not in API_VERSIONS:
        raise AuthenticationConfigError(f"expected kind AuthenticationConfiguration with apiVersion one of "
                                        f"{', '.join(API_VERSIONS)}, got {cfg.kind!r} {cfg.api_version!r}")
    seen: set[str] = set()
    for i, a in enumerate(cfg.jwt):
        at = f"jwt[{i}]"
        if not a.issuer.url.startswith("https://"):
            raise AuthenticationConfigError(f"{at}.issuer.url: Invalid value: {a.issuer.url!r}: URL scheme must be "
                                            "https")
        if a.issuer.url in seen:
            raise AuthenticationConfigError(f"{at}.issuer.url: Duplicate value: {a.issuer.url!r}")
        seen.add(a.issuer.url)
        if not a.issuer.audiences:
            raise AuthenticationConfigError(f"{at}.issuer.audiences: Required value: at least one issuer.audiences "
                                            "is required")
        if len(a.issuer.audiences) > 1 and a.issuer.audience_match_policy != "MatchAny":
            raise AuthenticationConfigError(f"{at}.issuer.audienceMatchPolicy: Invalid value: "
                                            f"{a.issuer.audience_match_policy!r}: audienceMatchPolicy must be MatchAny "
                                            "for multiple audiences")
        m = a.claim_mappings
        if not m.username.claim and not m.username.expression:
            raise AuthenticationConfigError(f"{at}.claimMappings.username: Required value: claim or expression is "
                                            "required")
        if m.username.claim and m.username.prefix is None:
            raise AuthenticationConfigError(f"{at}.claimMappings.username.prefix: Required value: prefix is "
                                            "required when claim is set. It can be set to an empty string to "
                                            "disable prefixing")
        expressions = ([f"{at}.claimMappings.{n}.expression" for n, c in
                        (("username", m.username), ("groups", m.groups), ("uid", m.uid)) if c.expression]
                       + [f"{at}.claimMappings.extra" for _ in m.extra[:1]]
                       + [f"{at}.claimValidationRules[{j}].expression"
                          for j, r in enumerate(a.claim_validation_rules) if r.expression]
                       + [f"{at}.userValidationRules" for _ in a.user_validation_rules[:1]])
        if expressions:
            raise AuthenticationConfigError(f"{expressions[0]}: CEL expressions are not supported by jetkube; use "
                                            "claim mappings and claim/requiredValue rules")


class OIDCAuthenticator:
    """One ``jwt`` entry of the configuration, with the issuer's keys."""

    def __init__(self, cfg: JWTAuthenticatorConfig, jwks: dict[str, Any], *, cache_ttl_s: float = 10.0,
                 cache_size: int = 10_000) -> None:
        self.cfg = cfg
        self.issuer = cfg.issuer.url
        self.set_keys(jwks)
        self._cache: cachetools.TTLCache[bytes, tuple[UserInfo, float]] = cachetools.TTLCache(cache_size, cache_ttl_s)

    def set_keys(self, jwks: dict[str, Any]) -> None:
        try:
            keys = jwt.PyJWKSet.from_dict(jwks).keys
        except (jwt.PyJWTError, TypeError, AttributeError) as e:
            raise AuthenticationConfigError(f"issuer {self.issuer}: the JWKS cannot be used: {e}") from None
        self._keys = [k for k in keys if (k.algorithm_name or "") in ALGORITHMS or not k.algorithm_name]
        if not self._keys:
            raise AuthenticationConfigError(f"issuer {self.issuer}: the JWKS holds no usable signing key")

    def authenticate(self, token: str) -> UserInfo:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        hit = self._cache.get(digest)
        if hit is not None:
            user, exp = hit
            if time.time() <= exp + LEEWAY_S:
                return user
            del self._cache[digest]
        claims = self._verify(token)
        user = self._user(claims)
        self._cache[digest] = (user, float(claims["exp"]))
        return user

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized() from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise unauthorized(f"oidc: verify token: unsupported signing algorithm {alg!r}")
        candidates = [k for k in self._keys if not kid or k.key_id == kid] or self._keys
        error = "oidc: verify token: failed to verify signature: no key matched"
        for k in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, k.key, algorithms=[alg], audience=list(self.cfg.issuer.audiences), issuer=self.issuer,
                    leeway=LEEWAY_S, options={"require": ["exp", "iss", "aud"]})
                return claims
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise unauthorized("oidc: verify token: oidc: token is expired") from None
            except jwt.InvalidAudienceError:
                raise unauthorized(f"oidc: verify token: oidc: expected audience in {go_quote(list(self.cfg.issuer.audiences))}") from None
            except jwt.InvalidTokenError as e:
                error = f"oidc: verify token: {e}"
                break
        raise unauthorized(error)

    def _user(self, claims: dict[str, Any]) -> UserInfo:
        m = self.cfg.claim_mappings
        name = claims.get(m.username.claim)
        if not isinstance(name, str) or not name:
            raise unauthorized(f"oidc: parse username claims {m.username.claim!r}: claim not present")
        if m.username.claim == "email" and "email_verified" in claims and claims["email_verified"] is not True:
            raise unauthorized("oidc: email not verified")
        groups: tuple[str, ...] = ()
        if m.groups.claim and claims.get(m.groups.claim) is not None:
            raw = claims[m.groups.claim]
            values = [raw] if isinstance(raw, str) else raw
            if not isinstance(values, list) or not all(isinstance(g, str) for g in values):
                raise unauthorized(f"oidc: parse groups claim {m.groups.claim!r}: not a string or list of strings")
            groups = tuple((m.groups.prefix or "") + g for g in values)
        uid = ""
        if m.uid.claim:
            raw_uid = claims.get(m.uid.claim)
            if not isinstance(raw_uid, str):
                raise unauthorized(f"oidc: parse uid claim {m.uid.claim!r}: claim not present")
            uid = raw_uid
        for rule in self.cfg.claim_validation_rules:
            if claims.get(rule.claim) != rule.required_value:
                raise unauthorized(f"oidc: required claim {rule.claim} not present in ID token or does not match "
                                   "the required value")
        return UserInfo(name=(m.username.prefix or "") + name, uid=uid, groups=groups)


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` of a JWT-shaped token, unverified (which authenticator may verify it); None otherwise."""
    if token.count(".") != 2:
        return None
    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except (jwt.InvalidTokenError, AttributeError):
        return None
    return iss if isinstance(iss, str) else None


def anonymous_allowed(conditions: Sequence[AnonymousCondition], path: str) -> bool:
    """kube's anonymous ``conditions``: none means every path, else one of the listed paths."""
    return not conditions or any(c.path == path for c in conditions)
