"""Authentication (pure decisions); authorization is in ``_authz``."""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Callable, Mapping

import msgspec

from kinds._errors import BadRequest, Forbidden, Unauthorized

from .messages import Request, UserInfo

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
        self._tokens = dict(tokens)
        self.jwt = jwt

    def authenticate(self, token: str) -> UserInfo:
        if not token:
            raise Unauthorized("Unauthorized")
        if token.count(".") == 2 and self.jwt is not None and token not in self._tokens:
            return self._with_authenticated(self.jwt(token))
        user = self._tokens.get(token)
        if user is None:
            # Constant-time comparison against every token would not hide more than a dict lookup
            # leaks here; we still avoid early-exit string compares for the common single token.
            # As bytes: compare_digest refuses str that is not ASCII (a header may hold anything).
            given = token.encode("utf-8", "surrogateescape")
            for known, info in self._tokens.items():
                if hmac.compare_digest(known.encode("utf-8", "surrogateescape"), given):
                    user = info
                    break
        if user is None:
            raise Unauthorized("Unauthorized")
        return self._with_authenticated(user)

    @staticmethod
    def _with_authenticated(user: UserInfo) -> UserInfo:
        if AUTHENTICATED not in user.groups:
            user = msgspec.structs.replace(user, groups=(*user.groups, AUTHENTICATED))
        return user


IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
IMPERSONATE_UID = "impersonate-uid"
IMPERSONATE_EXTRA = "impersonate-extra-"
SA_PREFIX = "system:serviceaccount:"


def refuse_impersonation(user: UserInfo, headers: tuple[tuple[str, str], ...]) -> None:
    """Impersonation is not implemented: every ``Impersonate-*`` request is answered as kube
    answers a user without the ``impersonate`` verb (``endpoints/filters/impersonation.go``), never
    ignored. The user (or service account) is checked first, then groups, extras and the uid;
    the first denial is the answer (403). Groups, extras or a uid without a user: 400."""
    wanted_user = next((v for k, v in headers if k == IMPERSONATE_USER and v), "")
    if not wanted_user:
        items = [f"{k.removeprefix('impersonate-')}={v!r}" for k, v in headers]
        raise BadRequest(f"requested {', '.join(items)} without impersonating a user")
    namespace, resource, group, name = "", "users", "", wanted_user
    if wanted_user.startswith(SA_PREFIX):
        ns, _, sa = wanted_user[len(SA_PREFIX):].partition(":")
        if ns and sa and ":" not in sa:
            namespace, resource, name = ns, "serviceaccounts", sa
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    qualified = f"{resource}.{group}" if group else resource
    raise Forbidden(f'{qualified} "{name}" is forbidden: User "{user.name}" cannot impersonate resource '
                    f'"{resource}" in API group "{group}" {scope}', name=name, group=group, kind=resource)


def authenticate_request(authenticator: TokenAuthenticator, req: Request) -> Request:
    """Authentication from the request's headers alone (token, then any Impersonate-* headers):
    ``req`` with its user and tenant, or Unauthorized / Forbidden / BadRequest."""
    user = authenticator.authenticate(req.token)
    if req.impersonate:
        refuse_impersonation(user, req.impersonate)
    return msgspec.structs.replace(req, user=user, tenant=user.tenant)
