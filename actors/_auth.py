"""Authentication (pure decisions); authorization is in ``_authz``."""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Callable, Mapping

import msgspec

from kinds._errors import Unauthorized

from .messages import UserInfo

AUTHENTICATED = "system:authenticated"


def parse_token_csv(text: str) -> dict[str, UserInfo]:
    """The Kubernetes static token file: ``token,user,uid,"group1,group2"`` per line."""
    out: dict[str, UserInfo] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValueError(f"token file line needs at least token,user,uid: {row!r}")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        out[row[0].strip()] = UserInfo(name=row[1].strip(), uid=row[2].strip(), groups=groups)
    return out


class TokenAuthenticator:
    """Bearer tokens to users: static tokens, and (with ``jwt``) service-account JWTs.
    Every authenticated user also gets ``system:authenticated``."""

    def __init__(self, tokens: Mapping[str, UserInfo],
                 jwt: Callable[[str], UserInfo] | None = None) -> None:
        # Each static user with ``system:authenticated`` already (once, not per request).
        self._tokens = {token: self._with_authenticated(user) for token, user in tokens.items()}
        self.jwt = jwt

    def is_static(self, token: str) -> bool:
        """Whether ``token`` is one of the static tokens (not a JWT to verify)."""
        return token in self._tokens

    def authenticate(self, token: str) -> UserInfo:
        user = self._tokens.get(token)
        if user is not None:
            return user
        if not token:
            raise Unauthorized("Unauthorized")
        if token.count(".") == 2 and self.jwt is not None:
            return self._with_authenticated(self.jwt(token))
        # Constant-time comparison against every token would not hide more than a dict lookup
        # leaks here; we still avoid early-exit string compares for the common single token.
        # As bytes: compare_digest refuses str that is not ASCII (a header may hold anything).
        given = token.encode("utf-8", "surrogateescape")
        for known, info in self._tokens.items():
            if hmac.compare_digest(known.encode("utf-8", "surrogateescape"), given):
                return info
        raise Unauthorized("Unauthorized")

    @staticmethod
    def _with_authenticated(user: UserInfo) -> UserInfo:
        if AUTHENTICATED not in user.groups:
            user = msgspec.structs.replace(user, groups=(*user.groups, AUTHENTICATED))
        return user
