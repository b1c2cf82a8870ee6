"""Virtual, create-only kinds answered from the current authenticator and authorizer, and
service-account tokens (TokenRequest).

- ``SelfSubjectReview``: who am I (``kubectl auth whoami``).
- ``SelfSubjectAccessReview``: may I (``kubectl auth can-i``); ``SubjectAccessReview`` and
  ``LocalSubjectAccessReview``: may they; all from the :class:`Authorizer` (RBAC's projection).
- ``SelfSubjectRulesReview``: what may I, as rules (``kubectl auth can-i --list``).
- ``serviceaccounts/<name>/token``: a signed JWT bound to the service account's uid; the
  authenticator accepts it until it expires or the service account is gone (or re-created).

Tokens are signed with the service-account key every gateway is given (see ``_tokens``), so a
token minted on one replica is accepted by all of them.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import msgspec

from bus import Key
from kinds._errors import BadRequest, Cause, NotFound, Unauthorized, invalid
from kinds._fieldvalidation import field_validation_outcome
from projections import Projection

from ._authz import Attributes, Authorizer
from ._runtime import ReplySlot
from ._tokens import API_AUDIENCES, ISSUER, SigningKey, service_account_ref
from .messages import Request, UserInfo, WriteResult

_enc = msgspec.json.Encoder()
SA_PREFIX = "system:serviceaccount:"

# The Go types of the review specs' fields (k8s.io/api authorization/v1, authentication/v1), for
# the type errors kube's decoder reports as 400. A dict is an object of those fields, a list a list
# of its one element type; JSON null leaves a Go field at its zero value, so it is accepted.
_RESOURCE_ATTRIBUTES = {**{f: str for f in ("namespace", "verb", "group", "version", "resource", "subresource",
                                            "name")}, "fieldSelector": dict, "labelSelector": dict}
_ACCESS_SPEC = {"resourceAttributes": _RESOURCE_ATTRIBUTES, "nonResourceAttributes": {"path": str, "verb": str}}
_SUBJECT_ACCESS_SPEC = {**_ACCESS_SPEC, "user": str, "groups": [str], "uid": str, "extra": dict}
_SPEC_TYPES: dict[str, dict[str, Any]] = {
    "selfsubjectaccessreviews": _ACCESS_SPEC,
    "subjectaccessreviews": _SUBJECT_ACCESS_SPEC,
    "localsubjectaccessreviews": _SUBJECT_ACCESS_SPEC,
    "selfsubjectrulesreviews": {"namespace": str},
    "token": {"audiences": [str], "expirationSeconds": int,
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


def service_account_user(claims: dict[str, Any], projection: Projection, tenant: str = "default") -> UserInfo:
    """The user a verified service-account token stands for, if its service account still exists
    with the uid the token was bound to."""
    ns, name, uid = service_account_ref(claims)
    entry = projection.get(Key(tenant, "", "serviceaccounts", ns, name))
    if entry is None or msgspec.json.decode(entry.data)["metadata"].get("uid") != uid:
        raise Unauthorized("Unauthorized")
    return UserInfo(name=f"{SA_PREFIX}{ns}:{name}", uid=uid, tenant=tenant,
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}"))


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

    async def handle(self, req: Request, reply: ReplySlot) -> None:
        rdef = req.rdef
        assert rdef is not None and req.user is not None
        if req.verb != "create":
            raise BadRequest(f"{rdef.plural} only supports create")
        body = req.body if isinstance(req.body, dict) else {}
        kind = "TokenRequest" if req.subresource == "token" else rdef.kind
        wrong = check_spec_types(body.get("spec"), _SPEC_TYPES.get(req.subresource or rdef.plural, {}))
        if wrong:
            raise BadRequest(f"{kind} in version \"{rdef.version}\" cannot be handled as a {kind}: {wrong}")
        warnings = field_validation_outcome(req.query.get("fieldValidation") or "Warn", list(req.strict_errors),
                                            kind=kind, version=rdef.version)
        out: dict[str, Any] = {"kind": rdef.kind, "apiVersion": rdef.api_version,
                               "metadata": {"creationTimestamp": None}}
        if req.subresource == "token":
            reply.set(msgspec.structs.replace(await self.token(req, body), warnings=warnings))
            return
        if rdef.plural == "selfsubjectreviews":
            u = req.user
            out["status"] = {"userInfo": {"username": u.name, "uid": u.uid, "groups": list(u.groups),
                                          **({"extra": u.extra} if u.extra else {})}}
        elif rdef.plural == "selfsubjectaccessreviews":
            spec = body.get("spec") or {}
            out["spec"] = spec
            out["status"] = await self._access(req.user, spec)
        elif rdef.plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
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
        elif rdef.plural == "selfsubjectrulesreviews":
            spec = body.get("spec") or {}
            out["spec"] = spec
            out["status"] = self.authorizer.rules_review(req.user, spec.get("namespace") or "")
        else:
            raise NotFound(f"{rdef.plural} are not served")
        reply.set(WriteResult(201, _enc.encode(out), warnings))

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
        if seconds < 600:
            raise BadRequest("spec.expirationSeconds: may not specify a duration less than 10 minutes")
        seconds = min(seconds, 48 * 3600)
        now = int(time.time())
        audiences = spec.get("audiences") or list(API_AUDIENCES)
        claims = {"iss": ISSUER, "sub": f"{SA_PREFIX}{req.namespace}:{req.name}", "aud": audiences,
                  "iat": now, "nbf": now, "exp": now + seconds,
                  "kubernetes.io": {"namespace": req.namespace,
                                    "serviceaccount": {"name": req.name, "uid": sa["metadata"]["uid"]}}}
        spec.update({"audiences": audiences, "expirationSeconds": seconds})
        expires = datetime.datetime.fromtimestamp(now + seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": req.name, "namespace": req.namespace, "creationTimestamp": None},
               "spec": spec, "status": {"token": self.key.sign(claims), "expirationTimestamp": expires}}
        return WriteResult(201, _enc.encode(out))
