"""Test-only NATS identities: nkeys, and the operator/account/user JWTs of NATS decentralized auth.

Keys are generated with ``nkeys`` (ed25519 seeds in the NATS encoding); JWTs follow the nats-jwt v2
claim shape (``nats-io/jwt`` ``v2/claims.go``, ``account_claims.go``, ``user_claims.go``) and are
signed by the issuer's nkey. Just enough for a nats-server in operator mode with a memory resolver.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import nkeys
from cryptography.hazmat.primitives import hashes

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = -1  # nats-jwt's NoLimit


class NKey:
    """A fresh nkey of one role (operator, account or user): its seed and public key."""

    def __init__(self, prefix: int) -> None:
        self.seed: str = nkeys.encode_seed(os.urandom(32), prefix).decode()
        self._pair = nkeys.from_seed(bytearray(self.seed.encode()))
        self.public_key: str = self._pair.public_key.decode()

    def sign(self, data: bytes) -> bytes:
        return bytes(self._pair.sign(data))

    @classmethod
    def operator(cls) -> NKey:
        return cls(nkeys.PREFIX_BYTE_OPERATOR)

    @classmethod
    def account(cls) -> NKey:
        return cls(nkeys.PREFIX_BYTE_ACCOUNT)

    @classmethod
    def user(cls) -> NKey:
        return cls(nkeys.PREFIX_BYTE_USER)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jti(claims: dict[str, Any]) -> str:
    # nats-jwt's id: SHA-512/256 of the claims without it, base32 unpadded. An opaque unique id to
    # the server, which does not recompute it.
    digest = hashes.Hash(hashes.SHA512_256())
    digest.update(json.dumps(claims, sort_keys=True).encode())
    return base64.b32encode(digest.finalize()).rstrip(b"=").decode()


def encode_jwt(issuer: NKey, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A v2 JWT about ``subject`` issued (and signed) by ``issuer``; ``nats`` is the typed part."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public_key, "name": name, "sub": subject,
                              "nats": {**nats, "version": 2}}
    claims["jti"] = _jti(claims)
    to_sign = f"{_b64url(json.dumps(_HEADER).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{to_sign}.{_b64url(issuer.sign(to_sign.encode()))}"


def operator_jwt(operator: NKey, *, system_account: str) -> str:
    """The self-signed operator JWT the server trusts (``operator:`` in its configuration)."""
    return encode_jwt(operator, operator.public_key, "test-operator",
                      {"type": "operator", "system_account": system_account})


def account_jwt(operator: NKey, account: NKey, name: str, *, jetstream: bool) -> str:
    """An account JWT signed by the operator; ``jetstream`` enables it with no limits."""
    limits: dict[str, Any] = {"subs": _UNLIMITED, "data": _UNLIMITED, "payload": _UNLIMITED,
                              "imports": _UNLIMITED, "exports": _UNLIMITED, "wildcards": True,
                              "conn": _UNLIMITED, "leaf": _UNLIMITED}
    if jetstream:  # JetStream is on for an account when either storage limit is non-zero
        limits |= {"mem_storage": _UNLIMITED, "disk_storage": _UNLIMITED, "streams": _UNLIMITED,
                   "consumer": _UNLIMITED}
    return encode_jwt(operator, account.public_key, name, {"type": "account", "limits": limits})


def user_jwt(account: NKey, user: NKey, name: str) -> str:
    """A user JWT signed by its account, with no limits and the account's default permissions."""
    return encode_jwt(account, user.public_key, name, {"type": "user", "subs": _UNLIMITED, "data": _UNLIMITED,
                                                       "payload": _UNLIMITED})


def creds_file_text(jwt: str, user: NKey) -> str:
    """A ``.creds`` file in the format ``nsc`` writes: the user JWT, then the user's nkey seed."""
    return ("-----BEGIN NATS USER JWT-----\n"
            f"{jwt}\n"
            "------END NATS USER JWT------\n"
            "\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n"
            "\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed}\n"
            "------END USER NKEY SEED------\n"
            "\n"
            "*************************************************************\n")
