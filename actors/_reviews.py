"""Virtual, create-only kinds answered from the current authenticator and authorizer, and
service-account tokens (TokenRequest).

- ``SelfSubjectReview``: who am I (``kubectl auth whoami``).
- ``SelfSubjectAccessReview``: may I (``kubectl auth can-i``), from :func:`authorize`.
- ``SelfSubjectRulesReview``: what may I, as rules.
- ``serviceaccounts/<name>/token``: a signed JWT bound to the service account's uid; the
  authenticator accepts it until it expires or the service account is gone (or re-created).

Tokens are HS256 JWTs signed with one key shared by every gateway through the log (the first
gateway to start appends it, the others read it), so a token minted on one replica is accepted by
all of them.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import msgspec

from bus import Key, Log, WrongLastSequence, system_subject
from projections import Projection

from ._auth import authorize
from ._errors import BadRequest, Forbidden, NotFound, Unauthorized
from ._runtime import ReplySlot
from .messages import Request, UserInfo, WriteResult

_enc = msgspec.json.Encoder()
ISSUER = "https://kubernetes.default.svc.cluster.local"
SA_PREFIX = "system:serviceaccount:"
_KEY_SUBJECT = "sa-signing-key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(claims: dict[str, Any], key: bytes) -> str:
    head = _b64(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64(_enc.encode(claims))
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def verify_jwt(token: str, key: bytes, *, now: float | None = None) -> dict[str, Any]:
    """The claims of a token we signed, unexpired; raises Unauthorized otherwise."""
    try:
        head, body, sig = token.split(".")
        want = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(sig)):
            raise ValueError("bad signature")
        if json.loads(_unb64(head)).get("alg") != "HS256":
            raise ValueError("bad alg")
        claims: dict[str, Any] = json.loads(_unb64(body))
    except (ValueError, TypeError):
        raise Unauthorized("Unauthorized") from None
    if claims.get("exp", 0) < (time.time() if now is None else now):
        raise Unauthorized("Unauthorized")
    return claims


async def load_signing_key(log: Log) -> bytes:
    """The fleet's token signing key: read it from the log, or append it if nobody has yet."""
    subject = system_subject(log.prefix, _KEY_SUBJECT)
    last = await log.last_message(subject)
    if last is None:
        try:
            await log.append(subject, secrets.token_bytes(32), msg_id=f"signing-key-{secrets.token_hex(8)}",
                             expected_seq=0)
        except WrongLastSequence:
            pass  # another gateway won the race; use its key
        last = await log.last_message(subject)
        assert last is not None
    return last[2]


def service_account_user(claims: dict[str, Any], projection: Projection, tenant: str = "default") -> UserInfo:
    """The user a service-account token stands for, if its service account still exists with the
    uid the token was bound to."""
    k8s = claims.get("kubernetes.io") or {}
    ns = k8s.get("namespace", "")
    sa = (k8s.get("serviceaccount") or {})
    name, uid = sa.get("name", ""), sa.get("uid", "")
    entry = projection.get(Key(tenant, "", "serviceaccounts", ns, name)) if ns and name else None
    if entry is None or msgspec.json.decode(entry.data)["metadata"].get("uid") != uid:
        raise Unauthorized("Unauthorized")
    return UserInfo(name=f"{SA_PREFIX}{ns}:{name}", uid=uid, tenant=tenant,
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}"))


def _rules_for(user: UserInfo, namespace: str) -> dict[str, Any]:
    if "system:masters" in user.groups:
        return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}
    return {"resourceRules": [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                               "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
                              {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
                               "resources": ["selfsubjectreviews"]}],
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": [
                "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                "/version", "/version/"]}],
            "incomplete": False}


class ReviewCore:
    """Handler of the reviews actor: virtual kinds and the token subresource."""

    def __init__(self, projection: Projection, registry: Any, signing_key: bytes) -> None:
        self.projection = projection
        self.registry = registry
        self.key = signing_key

    async def handle(self, req: Request, reply: ReplySlot) -> None:
        rdef = req.rdef
        assert rdef is not None and req.user is not None
        if req.verb != "create":
            raise BadRequest(f"{rdef.plural} only supports create")
        body = req.body if isinstance(req.body, dict) else {}
        if not isinstance(body.get("spec") or {}, dict):
            raise BadRequest(f"{rdef.kind} in version \"{rdef.version}\" cannot be handled as a {rdef.kind}: spec "
                             "must be an object")
        out: dict[str, Any] = {"kind": rdef.kind, "apiVersion": rdef.api_version,
                               "metadata": {"creationTimestamp": None}}
        if req.subresource == "token":
            reply.set(await self.token(req, body))
            return
        if rdef.plural == "selfsubjectreviews":
            u = req.user
            out["status"] = {"userInfo": {"username": u.name, "uid": u.uid, "groups": list(u.groups),
                                          **({"extra": u.extra} if u.extra else {})}}
        elif rdef.plural == "selfsubjectaccessreviews":
            spec = body.get("spec") or {}
            out["spec"] = spec
            out["status"] = self._access(req.user, spec)
        elif rdef.plural == "selfsubjectrulesreviews":
            spec = body.get("spec") or {}
            out["spec"] = spec
            out["status"] = _rules_for(req.user, spec.get("namespace", ""))
        else:
            raise NotFound(f"{rdef.plural} are not served")
        reply.set(WriteResult(201, _enc.encode(out)))

    def _access(self, user: UserInfo, spec: dict[str, Any]) -> dict[str, Any]:
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if not isinstance(ra or {}, dict) or not isinstance(nra or {}, dict):
            raise BadRequest("resourceAttributes and nonResourceAttributes must be objects")
        if ra:
            rdef = self.registry.by_resource(ra.get("group", ""), ra.get("resource", ""))
            if rdef is None:
                # Unknown resources: masters may anything, others nothing (as "*" rules would say).
                allowed = "system:masters" in user.groups
                return {"allowed": allowed}
            probe = Request(verb=ra.get("verb", ""), rdef=rdef, namespace=ra.get("namespace", ""),
                            name=ra.get("name", ""), subresource=ra.get("subresource", ""))
        elif nra:
            probe = Request(verb=nra.get("verb", ""), path=nra.get("path", ""))
        else:
            raise BadRequest("exactly one of nonResourceAttributes or resourceAttributes must be specified")
        try:
            authorize(probe, user)
        except Forbidden:
            return {"allowed": False}  # as RBAC: no reason on a plain deny (kubectl prints "no")
        return {"allowed": True, "reason": "allowed by the interim policy (system:masters)"}

    async def token(self, req: Request, body: dict[str, Any]) -> WriteResult:
        entry = self.projection.get(Key(req.tenant, "", "serviceaccounts", req.namespace, req.name))
        if entry is None:
            await self.projection.consistent()
            entry = self.projection.get(Key(req.tenant, "", "serviceaccounts", req.namespace, req.name))
        if entry is None:
            raise NotFound(f'serviceaccounts "{req.name}" not found', name=req.name, kind="serviceaccounts")
        sa = msgspec.json.decode(entry.data)
        spec = dict(body.get("spec") or {})
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise BadRequest("spec.expirationSeconds: may not specify a duration less than 10 minutes")
        seconds = min(seconds, 48 * 3600)
        now = int(time.time())
        audiences = spec.get("audiences") or [ISSUER]
        claims = {"iss": ISSUER, "sub": f"{SA_PREFIX}{req.namespace}:{req.name}", "aud": audiences,
                  "iat": now, "nbf": now, "exp": now + seconds,
                  "kubernetes.io": {"namespace": req.namespace,
                                    "serviceaccount": {"name": req.name, "uid": sa["metadata"]["uid"]}}}
        spec.update({"audiences": audiences, "expirationSeconds": seconds})
        expires = datetime.datetime.fromtimestamp(now + seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": req.name, "namespace": req.namespace, "creationTimestamp": None},
               "spec": spec, "status": {"token": sign_jwt(claims, self.key), "expirationTimestamp": expires}}
        return WriteResult(201, _enc.encode(out))
