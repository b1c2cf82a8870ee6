"""Virtual, create-only kinds answered from the current authenticator and authorizer, and
service-account tokens (TokenRequest).

- ``SelfSubjectReview``: who am I (``kubectl auth whoami``).
- ``SelfSubjectAccessReview``: may I (``kubectl auth can-i``), from :func:`authorize`.
- ``SelfSubjectRulesReview``: what may I, as rules.
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
from kinds._errors import BadRequest, Forbidden, NotFound, Unauthorized
from kinds._fieldvalidation import field_validation_outcome
from projections import Projection

from ._auth import authorize
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
_SPEC_TYPES: dict[str, dict[str, Any]] = {
    "selfsubjectaccessreviews": {"resourceAttributes": _RESOURCE_ATTRIBUTES,
                                 "nonResourceAttributes": {"path": str, "verb": str}},
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

    def __init__(self, projection: Projection, registry: Any, signing_key: SigningKey) -> None:
        self.projection = projection
        self.registry = registry
        self.key = signing_key
        #: The admission chain (set by the pipeline): a TokenRequest is admitted as a create of
        #: ``serviceaccounts/token`` with the TokenRequest as its object.
        self.chain: Any = None

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
            from ._admission import collecting_warnings

            with collecting_warnings() as admitted:
                if self.chain is not None:
                    body = await self.chain.mutate(req, "CREATE", {"kind": "TokenRequest",
                                                                   "apiVersion": "authentication.k8s.io/v1", **body},
                                                   None)
                    await self.chain.validate(req, "CREATE", body, None)
                    req = msgspec.structs.replace(req, body=body)
                result = await self.token(req, body)
            reply.set(msgspec.structs.replace(result, warnings=(*warnings, *admitted)))
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
        reply.set(WriteResult(201, _enc.encode(out), warnings))

    def _access(self, user: UserInfo, spec: dict[str, Any]) -> dict[str, Any]:
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra:
            rdef = self.registry.by_resource(ra.get("group") or "", ra.get("resource") or "")
            if rdef is None:
                # Unknown resources: masters may anything, others nothing (as "*" rules would say).
                allowed = "system:masters" in user.groups
                return {"allowed": allowed}
            probe = Request(verb=ra.get("verb") or "", rdef=rdef, namespace=ra.get("namespace") or "",
                            name=ra.get("name") or "", subresource=ra.get("subresource") or "")
        elif nra:
            probe = Request(verb=nra.get("verb") or "", path=nra.get("path") or "")
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
