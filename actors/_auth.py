"""Authentication and authorization actors (pure decisions + thin handlers)."""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Callable, Mapping

import msgspec

from kinds._errors import Forbidden, Unauthorized

from ._runtime import Actor, ReplySlot
from .messages import Allowed, Request, UserInfo

READ_VERBS = frozenset({"get", "list", "watch"})
SELF_REVIEWS = frozenset({"selfsubjectreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews"})
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
MONITORING = "system:monitoring"
# Non-resource paths the system:monitoring group may read (kube's bootstrap ClusterRole of that name).
_MONITORING_PATHS = ("/metrics", "/healthz", "/livez", "/readyz")
# Non-resource paths every authenticated user may read (system:discovery, system:public-info-viewer).
_PUBLIC_PREFIXES = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")


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

    def is_static(self, token: str) -> bool:
        """Whether ``token`` is one of the static tokens (not a JWT to verify)."""
        return token in self._tokens

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


def authorize(req: Request, user: UserInfo) -> None:
    """The interim policy until RBAC: system:masters may do everything; system:monitoring may also
    read ``/metrics``; everyone else may read the public non-resource paths and nothing more
    (403 Forbidden)."""
    if MASTERS in user.groups:
        return
    if req.rdef is not None and req.rdef.plural in SELF_REVIEWS and req.verb == "create":
        return  # system:basic-user: everyone may ask about themselves
    if req.rdef is None:
        if req.verb == "get" and req.path.startswith(_PUBLIC_PREFIXES):
            return
        if req.verb == "get" and MONITORING in user.groups and _monitoring_path(req.path):
            return
        raise Forbidden(f'forbidden: User "{user.name}" cannot {req.verb} path "{req.path}"')
    rdef = req.rdef
    resource = rdef.plural + (f"/{req.subresource}" if req.subresource else "")
    subject = f'{rdef.plural} "{req.name}" is forbidden' if req.name else f"{rdef.plural} is forbidden"
    if rdef.group:
        subject = subject.replace(rdef.plural, f"{rdef.plural}.{rdef.group}", 1)
    scope = f'in the namespace "{req.namespace}"' if rdef.namespaced and req.namespace else "at the cluster scope"
    raise Forbidden(f'{subject}: User "{user.name}" cannot {req.verb} resource "{resource}" in API group '
                    f'"{rdef.group}" {scope}', name=req.name, group=rdef.group, kind=rdef.plural)


def _monitoring_path(path: str) -> bool:
    """``/metrics`` and the health paths, each exactly or with sub-paths (``/readyz/log``)."""
    return any(path == p or path.startswith(p + "/") for p in _MONITORING_PATHS)


def authz_handler(next_actor: Actor[Request], reviews: Actor[Request]):  # type: ignore[no-untyped-def]
    async def handle(req: Request, reply: ReplySlot) -> None:
        assert req.user is not None
        authorize(req, req.user)
        if req.rdef is None or req.verb in READ_VERBS:
            reply.set(Allowed(req.user))
        elif not req.rdef.stored or req.subresource == "token":
            reviews.forward(req, reply)
        else:
            next_actor.forward(req, reply)

    return handle
