"""Virtual, create-only kinds answered from the current authenticator and authorizer, and
service-account tokens (TokenRequest).

- ``SelfSubjectReview``: who am I (``kubectl auth whoami``).
- ``SelfSubjectAccessReview``: may I (``kubectl auth can-i``); ``SubjectAccessReview`` and
  ``LocalSubjectAccessReview``: may they; all from the :class:`Authorizer` (RBAC's projection).
- ``SelfSubjectRulesReview``: what may I, as rules (``kubectl auth can-i --list``).
- ``TokenReview``: whom does this bearer token stand for (kube's ``tokenreview`` REST), answered by
  the same token authenticators as requests, for callers allowed to create it.
- ``serviceaccounts/<name>/token``: a signed JWT bound to the service account's uid; the
  authenticator accepts it until it expires or the service account is gone (or re-created).

Tokens are signed with the service-account key every gateway is given (see ``_tokens``), so a
token minted on one replica is accepted by all of them.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import time
import uuid
from typing import Any

import msgspec

from bus import Key
from kinds._errors import BadRequest, Cause, Conflict, NotFound, Unauthorized, invalid
from kinds._fieldvalidation import field_validation_outcome
from projections import Projection

from ._auth import TokenAuthenticator
from ._authz import Attributes, Authorizer
from ._oidc import OIDCAuthenticator, unverified_issuer
from ._runtime import ReplySlot
from ._tokens import (
    API_AUDIENCES,
    ISSUER,
    SigningKey,
    go_quote,
    legacy_secret_name,
    service_account_ref,
    tenant_of_claims,
    unauthorized,
    verify_token,
    with_cluster,
)
from .messages import ObjectOptions, Request, Stored, UserInfo

_enc = msgspec.json.Encoder()
SA_PREFIX = "system:serviceaccount:"
MAX_TOKEN_SECONDS = 48 * 3600  # TokenRequest expirationSeconds above this are shortened (with a warning)
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

# The Go types of the review specs' fields (k8s.io/api authorization/v1, authentication/v1), for
# the type errors kube's decoder reports as 400. A dict is an object of those fields, a list a list
# of its one element type; JSON null leaves a Go field at its zero value, so it is accepted.
_RESOURCE_ATTRIBUTES = {**{f: str for f in ("namespace", "verb", "group", "version", "resource", "subresource",
                                            "name")}, "fieldSelector": dict, "labelSelector": dict}
_ACCESS_SPEC = {"resourceAttributes": _RESOURCE_ATTRIBUTES, "nonResourceAttributes": {"path": str, "verb": str}}
_SUBJECT_ACCESS_SPEC = {**_ACCESS_SPEC, "user": str, "groups": [str], "uid": str, "extra": dict}
# By the definition's ``review`` (a review kind) or the subresource (a TokenRequest).
_SPEC_TYPES: dict[str, dict[str, Any]] = {
    "self-subject-access": _ACCESS_SPEC,
    "subject-access": _SUBJECT_ACCESS_SPEC,
    "self-subject-rules": {"namespace": str},
    "token-review": {"token": str, "audiences": [str]},
    "token-request": {"audiences": [str], "expirationSeconds": int,
              "boundObjectRef": {"kind": str, "apiVersion": str, "name": str, "uid": str}},
}
_JSON_TYPES = ((bool, "bool"), (str, "string"), (int, "number"), (float, "number"), (list, "array"), (dict, "object"))
_GO_TYPES = {str: "string", int: "int64", dict: "object"}


def check_spec_types(spec: Any, types: dict[str, Any], path: str = "spec") -> str | None:
    """The first field of ``spec`` whose JSON type does not fit ``types``, as Go's decoder words it
    ("cannot unmarshal array into Go struct field spec.x of type string"), or None."""

    def bad(value: Any, want: Any, at: str) -> str | None:
        if value is None:
            return None
        if isinstance(want, dict):
            if not isinstance(value, dict):
                return _mismatch(value, "object", at)
            for k, sub in want.items():
                found = bad(value.get(k), sub, f"{at}.{k}")
                if found:
                    return found
            return None
        if isinstance(want, list):
            if not isinstance(value, list):
                return _mismatch(value, f"[]{_GO_TYPES[want[0]]}", at)
            return next((f for v in value if (f := bad(v, want[0], at))), None)
        if want is dict:
            return None if isinstance(value, dict) else _mismatch(value, "object", at)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        return None if ok else _mismatch(value, _GO_TYPES[want], at)

    return bad(spec, types, path)


def _mismatch(value: Any, want: str, at: str) -> str:
    got = next(name for t, name in _JSON_TYPES if isinstance(value, t))
    return f"json: cannot unmarshal {got} into Go struct field {at} of type {want}"


def service_account_user(claims: dict[str, Any], projection: Projection, token: str = "") -> UserInfo:
    """The user a verified service-account token stands for, if its service account still exists
    with the uid the token was bound to (and its bound object; for a legacy token, its Secret,
    still holding ``token``), in the tenant the token names; ``UserInfo.tenant`` is that tenant
    (a service account acts only there)."""
    tenant = tenant_of_claims(claims)
    ns, name, uid = service_account_ref(claims)
    secret_name = legacy_secret_name(claims)
    if secret_name is not None:
        return _legacy_user(ns, name, uid, secret_name, projection, tenant, token)
    entry = projection.get(Key(tenant, "", "serviceaccounts", ns, name))
    if entry is None:
        raise unauthorized("service account token has been invalidated")
    actual = msgspec.json.decode(entry.data)["metadata"].get("uid")
    if actual != uid:
        raise unauthorized(f"service account UID ({actual}) does not match claim ({uid})")
    extra: dict[str, list[str]] = {}
    private = claims["kubernetes.io"]
    for kind, plural in (("secret", "secrets"), ("pod", "pods")):
        ref = private.get(kind)
        if ref is None:
            continue
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
            raise unauthorized("service account token has been invalidated")
        bound = projection.get(Key(tenant, "", plural, ns, ref["name"]))
        if bound is None or msgspec.json.decode(bound.data)["metadata"].get("uid") != ref.get("uid"):
            raise unauthorized("service account token has been invalidated")
        if kind == "pod":
            extra["authentication.kubernetes.io/pod-name"] = [ref["name"]]
            extra["authentication.kubernetes.io/pod-uid"] = [ref["uid"]]
    node = private.get("node")
    if isinstance(node, dict) and node.get("name"):
        extra["authentication.kubernetes.io/node-name"] = [node["name"]]
        extra["authentication.kubernetes.io/node-uid"] = [node.get("uid", "")]
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        extra[CREDENTIAL_ID] = [f"JTI={jti}"]
    return UserInfo(name=f"{SA_PREFIX}{ns}:{name}", uid=uid, tenant=tenant,
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}"), extra=extra)


def _legacy_user(ns: str, name: str, uid: str, secret_name: str, projection: Projection, tenant: str,
                 token: str) -> UserInfo:
    """kube's legacy.go ``Validate`` with lookup: the Secret exists, is not being deleted or marked
    invalid, holds exactly this token; the service account exists with the claimed uid."""
    entry = projection.get(Key(tenant, "", "secrets", ns, secret_name))
    secret = None if entry is None else msgspec.json.decode(entry.data)
    meta = (secret or {}).get("metadata") or {}
    if secret is None or meta.get("deletionTimestamp"):
        raise unauthorized("Token has been invalidated")
    try:
        held = base64.b64decode((secret.get("data") or {}).get("token") or "", validate=True)
    except (ValueError, TypeError):
        held = b""
    if not token or not hmac.compare_digest(held, token.encode("utf-8", "surrogateescape")):
        raise unauthorized("Token does not match server's copy")
    sa = projection.get(Key(tenant, "", "serviceaccounts", ns, name))
    if sa is None:
        raise unauthorized(f'serviceaccounts "{name}" not found')
    sa_meta = msgspec.json.decode(sa.data)["metadata"]
    if sa_meta.get("uid") != uid or sa_meta.get("deletionTimestamp") or (meta.get("labels") or {}).get(
            LEGACY_INVALID_SINCE):
        raise unauthorized("Token has been invalidated")
    return UserInfo(name=f"{SA_PREFIX}{ns}:{name}", uid=uid, tenant=tenant,
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}"))


LEGACY_INVALID_SINCE = "kubernetes.io/legacy-token-invalid-since"


def _check_subject_access(kind: str, spec: dict[str, Any], namespace: str | None) -> None:
    """``ValidateSubjectAccessReviewSpec`` (422) and, for the local kind, the namespace rules."""
    causes: list[Cause] = []
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra and nra:
        causes.append(Cause("FieldValueInvalid", 'Invalid value: "": cannot be specified in combination with '
                                                 "resourceAttributes", "spec.nonResourceAttributes"))
    elif not ra and not nra:
        causes.append(Cause("FieldValueInvalid", 'Invalid value: "null": exactly one of nonResourceAttributes '
                                                 "or resourceAttributes must be specified", "spec.resourceAttributes"))
    if not spec.get("user") and not spec.get("groups"):
        causes.append(Cause("FieldValueInvalid", 'Invalid value: "": at least one of user or group must be '
                                                 "specified", "spec.user"))
    if namespace is not None and nra:
        causes.append(Cause("FieldValueInvalid", "Invalid value: \"\": disallowed on this kind of request",
                            "spec.nonResourceAttributes"))
    if causes:
        raise invalid(kind, "", causes, group="authorization.k8s.io")
    if namespace is not None and (ra or {}).get("namespace") != namespace:
        raise BadRequest(f"spec.resourceAttributes.namespace must match namespace: {namespace}")


class ReviewCore:
    """Handler of the reviews actor: virtual kinds and the token subresource."""

    def __init__(self, projection: Projection, registry: Any, signing_key: SigningKey,
                 authorizer: Authorizer) -> None:
        self.projection = projection
        self.registry = registry
        self.key = signing_key
        self.authorizer = authorizer
        #: The bearer-token authenticators TokenReview asks (the pipeline's); None: no TokenReview.
        self.tokens: TokenAuthenticator | None = None
        self.oidc: dict[str, OIDCAuthenticator] = {}  # by issuer
        #: The admission chain (set by the pipeline): a TokenRequest is admitted as a create of
        #: ``serviceaccounts/token`` with the TokenRequest as its object.
        self.chain: Any = None

    def review_token(self, token: str, audiences: list[str]) -> tuple[UserInfo, list[str]]:
        """The user a bearer token stands for when presented to ``audiences``, and the audiences
        it is valid for; else Unauthorized (its ``detail`` is TokenReview's ``status.error``).
        Static tokens are valid for the API server's own audiences (kube's audience-agnostic
        wrapper); a service-account token for its ``aud`` claim."""
        tokens = self.tokens
        if tokens is None:
            raise unauthorized()
        oidc = self.oidc.get(unverified_issuer(token) or "") if self.oidc else None
        if oidc is not None:
            if not set(oidc.cfg.issuer.audiences) & set(audiences):
                raise unauthorized(f"token audiences {go_quote(list(oidc.cfg.issuer.audiences))} is invalid for the "
                                   f"target audiences {go_quote(audiences)}")
            user = oidc.authenticate(token)
            if "system:authenticated" not in user.groups:
                user = msgspec.structs.replace(user, groups=(*user.groups, "system:authenticated"))
            return user, [a for a in oidc.cfg.issuer.audiences if a in audiences]
        if tokens.is_static(token) or token.count(".") != 2:
            user = tokens.authenticate(token)
            valid = [a for a in API_AUDIENCES if a in audiences]
            if not valid:
                raise unauthorized(f"token audiences {go_quote(list(API_AUDIENCES))} is invalid for the target "
                                   f"audiences {go_quote(audiences)}")
            return user, valid
        claims = verify_token(token, self.key, audiences=audiences)
        user = service_account_user(claims, self.projection, token=token)
        if "system:authenticated" not in user.groups:
            user = msgspec.structs.replace(user, groups=(*user.groups, "system:authenticated"))
        aud = claims.get("aud", list(API_AUDIENCES))  # legacy tokens: the API server's audiences
        aud = aud if isinstance(aud, list) else [aud]
        return user, [a for a in aud if a in audiences]

    def _token_review(self, req: Request, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        if req.namespace:
            raise BadRequest(f"namespace is not allowed on this type: {req.namespace}")
        token = spec.get("token") or ""
        if not token:
            raise BadRequest("token is required for TokenReview in authentication")
        audiences = spec.get("audiences") or list(API_AUDIENCES)
        try:
            user, valid = self.review_token(token, list(audiences))
        except Unauthorized as e:
            return {"spec": spec, "status": {"user": {}, "error": getattr(e, "detail", "invalid bearer token")}}
        info: dict[str, Any] = {"username": user.name, "uid": user.uid, "groups": list(user.groups)}
        if user.extra:
            info["extra"] = user.extra
        return {"spec": spec, "status": {"authenticated": True, "user": info, "audiences": valid}}

    async def handle(self, req: Request, reply: ReplySlot) -> None:
        rdef = req.rdef
        assert rdef is not None and req.user is not None
        if req.verb != "create":
            raise BadRequest(f"{rdef.plural} only supports create")
        body = req.body if isinstance(req.body, dict) else {}
        kind = "TokenRequest" if req.subresource == "token" else rdef.kind
        spec_types = _SPEC_TYPES.get("token-request" if req.subresource == "token" else rdef.review, {})
        wrong = check_spec_types(body.get("spec"), spec_types)
        if wrong:
            raise BadRequest(f"{kind} in version \"{rdef.version}\" cannot be handled as a {kind}: {wrong}")
        mode = req.options.field_validation if isinstance(req.options, ObjectOptions) else "Warn"
        warnings = field_validation_outcome(mode, list(req.strict_errors),
                                            kind=kind, version=rdef.version)
        out: dict[str, Any] = {"kind": rdef.kind, "apiVersion": rdef.api_version,
                               "metadata": {"creationTimestamp": None}}
        if req.subresource == "token":
            from ._admission import collecting_warnings

            with collecting_warnings() as admitted:
                if self.chain is not None:
                    body = await self.chain.mutate(req, "CREATE", {"kind": "TokenRequest",
                                                                   "apiVersion": "authentication.k8s.io/v1", **body},
                                                   None)
                    await self.chain.validate(req, "CREATE", body, None)
                    req = msgspec.structs.replace(req, body=body)
                result = await self.token(req, body)
            reply.set(msgspec.structs.replace(result, warnings=(*warnings, *result.warnings, *admitted)))
            return
        if rdef.review == "self-subject":
            u = req.user
            out["status"] = {"userInfo": {"username": u.name, "uid": u.uid, "groups": list(u.groups),
                                          **({"extra": u.extra} if u.extra else {})}}
        elif rdef.review == "token-review":
            out.update(self._token_review(req, body))
        elif rdef.review == "self-subject-access":
            spec = body.get("spec") or {}
            out["spec"] = spec
            out["status"] = await self._access(req.user, spec)
        elif rdef.review == "subject-access":
            spec = body.get("spec") or {}
            if rdef.namespaced:
                out["metadata"]["namespace"] = req.namespace
            _check_subject_access(rdef.kind, spec, req.namespace if rdef.namespaced else None)
            out["spec"] = spec
            extra = spec.get("extra") or {}
            subject = UserInfo(name=spec.get("user") or "", uid=spec.get("uid") or "", tenant=req.tenant,
                               groups=tuple(g for g in spec.get("groups") or () if isinstance(g, str)),
                               extra={k: list(v) for k, v in extra.items() if isinstance(v, list)})
            out["status"] = await self._access(subject, spec)
        elif rdef.review == "self-subject-rules":
            spec = body.get("spec") or {}
            out["spec"] = spec
            out["status"] = self.authorizer.rules_review(req.user, spec.get("namespace") or "")
        else:
            raise NotFound(f"{rdef.plural} are not served")
        reply.set(Stored(object=_enc.encode(out), created=True, warnings=warnings))

    async def _access(self, user: UserInfo, spec: dict[str, Any]) -> dict[str, Any]:
        """A (Self)SubjectAccessReview's status: RBAC works on the attributes as given, so a
        resource this server does not serve is answered too (as kube-apiserver does)."""
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra:
            a = Attributes(verb=ra.get("verb") or "", api_group=ra.get("group") or "",
                           resource=ra.get("resource") or "", subresource=ra.get("subresource") or "",
                           name=ra.get("name") or "", namespace=ra.get("namespace") or "")
        elif nra:
            a = Attributes(verb=nra.get("verb") or "", resource_request=False, path=nra.get("path") or "")
        else:
            raise BadRequest("exactly one of nonResourceAttributes or resourceAttributes must be specified")
        d = await self.authorizer.authorize_fresh(user, a)
        status: dict[str, Any] = {"allowed": d.allowed}
        if d.denied:
            status["denied"] = True
        if d.reason:
            status["reason"] = d.reason
        return status

    async def _get(self, tenant: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object from the projection, waiting for it to catch up once if it is not there."""
        key = Key(tenant, "", plural, namespace, name)
        entry = self.projection.get(key)
        if entry is None:
            await self.projection.consistent()
            entry = self.projection.get(key)
        return None if entry is None else msgspec.json.decode(entry.data)

    async def _bound_object(self, req: Request, ref: dict[str, Any]) -> dict[str, Any]:
        """The private claims binding a token to a Secret or Pod (and the Pod's node) that exists
        now, with the uid the reference names if it names one (kube's TokenRequest REST)."""
        kind, api_version, name = ref.get("kind") or "", ref.get("apiVersion") or "", ref.get("name") or ""
        group, _, version = api_version.rpartition("/")
        plural = {"Pod": "pods", "Secret": "secrets"}.get(kind) if not group else None
        if plural is None:
            raise BadRequest(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
        obj = await self._get(req.tenant, plural, req.namespace, name)
        if obj is None:
            raise NotFound(f'{plural} "{name}" not found', name=name, kind=plural)
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName") != req.name:
            raise BadRequest(f'cannot bind token for serviceaccount "{req.name}" to pod running with different '
                             "serviceaccount name.")
        uid = obj["metadata"].get("uid", "")
        if ref.get("uid") and ref["uid"] != uid:
            raise Conflict(f'Operation cannot be fulfilled on {kind} "{name}": the UID in the bound object reference '
                           f'({ref["uid"]}) does not match the UID in record. The object might have been deleted '
                           "and then recreated", name=name, kind=kind)
        claims: dict[str, Any] = {kind.lower(): {"name": name, "uid": uid}}
        node_name = (obj.get("spec") or {}).get("nodeName") if kind == "Pod" else None
        if node_name:  # the node's uid when it exists, its name in any case (ServiceAccountTokenPodNodeInfo)
            node = await self._get(req.tenant, "nodes", "", node_name)
            node_uid = node["metadata"].get("uid", "") if node is not None else ""
            claims["node"] = {"name": node_name, **({"uid": node_uid} if node_uid else {})}
        return claims

    async def token(self, req: Request, body: dict[str, Any]) -> Stored:
        entry = self.projection.get(Key(req.tenant, "", "serviceaccounts", req.namespace, req.name))
        if entry is None:
            await self.projection.consistent()
            entry = self.projection.get(Key(req.tenant, "", "serviceaccounts", req.namespace, req.name))
        if entry is None:
            raise NotFound(f'serviceaccounts "{req.name}" not found', name=req.name, kind="serviceaccounts")
        sa = msgspec.json.decode(entry.data)
        spec = dict(body.get("spec") or {})
        seconds = spec.get("expirationSeconds") or 3600
        # kube's ValidateTokenRequest, as NewInvalid(TokenRequest, "", errs): 422.
        if seconds < 600 or seconds > 1 << 32:
            detail = ("may not specify a duration less than 10 minutes" if seconds < 600
                      else "may not specify a duration larger than 2^32 seconds")
            raise invalid("TokenRequest", "", [Cause("FieldValueInvalid", f"Invalid value: {seconds}: {detail}",
                                                     "spec.expirationSeconds")], group="authentication.k8s.io")
        warnings: list[str] = []
        if seconds > MAX_TOKEN_SECONDS:  # as kube with --service-account-max-token-expiration
            warnings.append(f"requested expiration of {seconds} seconds shortened to {MAX_TOKEN_SECONDS} seconds")
            seconds = MAX_TOKEN_SECONDS
        private: dict[str, Any] = {"namespace": req.namespace,
                                   "serviceaccount": {"name": req.name, "uid": sa["metadata"]["uid"]}}
        if spec.get("boundObjectRef"):
            private.update(await self._bound_object(req, spec["boundObjectRef"]))
        now = int(time.time())
        audiences = spec.get("audiences") or list(API_AUDIENCES)
        claims = {"iss": ISSUER, "sub": f"{SA_PREFIX}{req.namespace}:{req.name}", "aud": audiences,
                  "iat": now, "nbf": now, "exp": now + seconds, "jti": str(uuid.uuid4()),
                  "kubernetes.io": private}
        claims = with_cluster(claims, req.tenant)
        spec.update({"audiences": audiences, "expirationSeconds": seconds})
        expires = datetime.datetime.fromtimestamp(now + seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": req.name, "namespace": req.namespace, "creationTimestamp": None},
               "spec": spec, "status": {"token": self.key.sign(claims), "expirationTimestamp": expires}}
        return Stored(object=_enc.encode(out), created=True, warnings=tuple(warnings))
