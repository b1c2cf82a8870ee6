"""Audit: kube's ``audit.k8s.io/v1`` Policy and Events, derived from the log or from a request.

Pure functions: the policy checker has kube's semantics (``apiserver/pkg/audit/policy/checker.go``:
the first matching rule wins, nothing matched is level None, a rule's omitStages is the union with
the policy's; users exact, userGroups any membership, verbs exact; ``resources``/``namespaces`` match
resource requests only, ``nonResourceURLs`` non-resource requests only, with a trailing ``*``).

An accepted write is audited *from its event on the log*: :func:`record_from_event` turns the event
into the ``ResponseComplete`` audit Event, so no accepted write can be missing from the audit, and
the same log re-derives the records under another policy. Everything else (reads, denials, writes
that never reach the log such as reviews and token requests) is built by :func:`record_for_request`
and written to the audit stream by the gateway.

Never a Secret's value or a token: whatever the policy says, secrets, ``serviceaccounts/token`` and
the token and subject-access reviews are capped at Metadata (no request or response object), and a
record never carries request headers.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Literal

import msgspec

from bus import LogMessage, decode_event, object_bytes, parse_subject

Level = Literal["None", "Metadata", "Request", "RequestResponse"]
Stage = Literal["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]
LEVELS: tuple[str, ...] = ("None", "Metadata", "Request", "RequestResponse")

# Whatever the policy says, these never carry objects: their bodies are secrets or tokens.
_METADATA_ONLY = frozenset({("", "secrets"), ("", "serviceaccounts/token"), ("authentication.k8s.io", "tokenreviews"),
                            ("authentication.k8s.io", "tokenrequests")})


class GroupResources(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


class PolicyRule(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    level: Level
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = msgspec.field(default=(), name="nonResourceURLs")
    omit_stages: tuple[Stage, ...] = ()
    omit_managed_fields: bool | None = None


class Policy(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    rules: tuple[PolicyRule, ...] = ()
    omit_stages: tuple[Stage, ...] = ()
    omit_managed_fields: bool = False
    api_version: str = "audit.k8s.io/v1"
    kind: str = "Policy"
    metadata: dict[str, Any] = {}


class PolicyError(ValueError):
    pass


def parse_policy(doc: Any) -> Policy:
    """A Policy from its decoded YAML/JSON document (audit.k8s.io/v1); PolicyError if invalid."""
    try:
        policy = msgspec.convert(doc, Policy)
    except msgspec.ValidationError as e:
        raise PolicyError(f"invalid audit policy: {e}") from None
    if policy.kind != "Policy" or policy.api_version not in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1"):
        raise PolicyError(f"invalid audit policy: kind {policy.kind!r} apiVersion {policy.api_version!r} "
                          "(want Policy audit.k8s.io/v1)")
    for i, r in enumerate(policy.rules):
        if r.non_resource_urls and (r.resources or r.namespaces):
            raise PolicyError(f"invalid audit policy: rules[{i}]: rules cannot apply to both regular resources "
                              "and non-resource URLs")
    return policy


#: The default when no --audit-policy-file is given: kube's reference policy, shortened. Secrets,
#: ConfigMaps, TokenRequests and TokenReviews at Metadata; health, version and metrics not audited;
#: reads at Metadata; other requests at RequestResponse.
DEFAULT_POLICY = parse_policy({
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics",
                                              "/openapi*", "/api", "/api/*", "/apis", "/apis/*"]},
        {"level": "None", "users": ["system:lb-probe"]},
        {"level": "Metadata", "resources": [
            {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
            {"group": "authentication.k8s.io", "resources": ["tokenreviews", "tokenrequests"]}]},
        {"level": "Metadata", "verbs": ["get", "list", "watch"]},
        {"level": "RequestResponse"},
    ]})


class Attributes(msgspec.Struct, frozen=True, gc=False):
    """What the checker looks at: kube's authorizer.Attributes. (A struct: built for every audited
    request: ~10x cheaper to build than a frozen dataclass.)"""

    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def _path_matches(path: str, spec: str) -> bool:
    return spec == "*" or spec == path or (spec.endswith("*") and path.startswith(spec.rstrip("*")))


def _matches_resource(r: PolicyRule, a: Attributes) -> bool:
    if not a.resource_request:
        return False
    if r.namespaces and a.namespace not in r.namespaces:
        return False
    if not r.resources:
        return True
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    for gr in r.resources:
        if gr.group != a.api_group:
            continue
        if not gr.resources:
            return True
        for res in gr.resources:
            if gr.resource_names and a.name not in gr.resource_names:
                continue
            if res in (combined, "*"):
                return True
            if a.subresource and res.startswith("*/") and a.subresource == res[2:]:
                return True
            if res.endswith("/*") and a.resource == res[:-2]:
                return True
    return False


def rule_matches(r: PolicyRule, a: Attributes) -> bool:
    if r.users and a.user not in r.users:
        return False
    if r.user_groups and not any(g in r.user_groups for g in a.groups):
        return False
    if r.verbs and a.verb not in r.verbs:
        return False
    if r.namespaces or r.resources:
        return _matches_resource(r, a)
    if r.non_resource_urls:
        return not a.resource_request and any(_path_matches(a.path, s) for s in r.non_resource_urls)
    return True


def level_and_stages(policy: Policy, a: Attributes) -> tuple[str, frozenset[str], bool]:
    """(level, omitted stages, omit managed fields) of the first matching rule (None when none)."""
    for r in policy.rules:
        if rule_matches(r, a):
            omf = policy.omit_managed_fields if r.omit_managed_fields is None else r.omit_managed_fields
            return r.level, frozenset(policy.omit_stages) | frozenset(r.omit_stages), omf
    return "None", frozenset(policy.omit_stages), policy.omit_managed_fields


def decision_key(a: Attributes, names_matter: bool) -> tuple[Any, ...]:
    """What :func:`level_and_stages` of ``a`` depends on: a resource request's name only when the
    policy names resources (``names_matter``: :func:`names_matter`), its path never; a non-resource
    request's path. Under one policy, equal keys have equal decisions (for caching them)."""
    if a.resource_request:
        return (a.user, a.groups, a.verb, True, a.api_group, a.resource, a.subresource, a.namespace,
                a.name if names_matter else "")
    return (a.user, a.groups, a.verb, False, a.path)


def names_matter(policy: Policy) -> bool:
    """Whether a rule of ``policy`` names resources (``resourceNames``)."""
    return any(gr.resource_names for r in policy.rules for gr in r.resources)


def _capped(level: str, a: Attributes) -> str:
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if (a.api_group, combined) in _METADATA_ONLY and LEVELS.index(level) > 1:
        return "Metadata"
    return level


def request_uri(group: str, version: str, resource: str, namespace: str, name: str, subresource: str = "") -> str:
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    tail = f"/{name}" if name else ""
    sub = f"/{subresource}" if subresource else ""
    return f"{base}{ns}/{resource}{tail}{sub}"


def _strip_managed(obj: Any) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and "managedFields" in obj["metadata"]:
        return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    return obj


def record_from_event(prefix: str, m: LogMessage, policy: Policy, versions: dict[tuple[str, str], str]) -> (
        dict[str, Any] | None):
    """The ``ResponseComplete`` audit Event of the write at ``m`` under ``policy`` (None: not audited).
    ``versions`` maps (group, resource) to the version the object is stored in (for objectRef)."""
    key = parse_subject(prefix, m.subject)
    ev = decode_event(m.data)
    a = ev.actor
    attrs = Attributes(a.user, tuple(a.groups), ev.verb, True, key.group, key.resource, ev.subresource,
                       key.namespace, key.name)
    level, omit, omit_managed = level_and_stages(policy, attrs)
    level = _capped(level, attrs)
    if level == "None" or "ResponseComplete" in omit:
        return None
    obj: dict[str, Any] = msgspec.json.decode(object_bytes(ev, m.seq))
    version = versions.get((key.group, key.resource), "v1")
    uid = (obj.get("metadata") or {}).get("uid", "")
    ref = {"resource": key.resource, "namespace": key.namespace, "name": key.name, "uid": uid,
           "apiGroup": key.group, "apiVersion": version, "resourceVersion": str(m.seq)}
    if ev.subresource:
        ref["subresource"] = ev.subresource
    if not key.namespace:
        del ref["namespace"]
    user: dict[str, Any] = {"username": a.user, "groups": list(a.groups)}
    if a.uid:
        user["uid"] = a.uid
    rec: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": ev.audit_id,
        "stage": "ResponseComplete",
        "requestURI": request_uri(key.group, version, key.resource, key.namespace,
                                  "" if ev.verb == "create" and not ev.subresource else key.name, ev.subresource),
        "verb": ev.verb, "user": user,
    }
    if a.impersonator:
        rec["impersonatedUser"] = dict(user)
        rec["user"] = {"username": a.impersonator}
    rec.update({
        "sourceIPs": [a.source] if a.source else [], "userAgent": a.user_agent, "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": 201 if ev.verb == "create" and not ev.subresource else 200},
    })
    if level in ("Request", "RequestResponse") and ev.type != "delete":
        # The log keeps the object the write produced, not the request body (a patch's body is not
        # stored): the requestObject is that object.
        rec["requestObject"] = _strip_managed(obj) if omit_managed else obj
    if level == "RequestResponse":
        rec["responseObject"] = _strip_managed(obj) if omit_managed else obj
    rec["requestReceivedTimestamp"] = _micro(ev.time)
    rec["stageTimestamp"] = _micro(m.stored_at or ev.time)
    rec["annotations"] = {**ev.annotations, "authorization.k8s.io/decision": "allow",
                          "jetkube.io/log-sequence": str(m.seq)}
    if tenant_annotation := key.tenant:
        rec["annotations"]["jetkube.io/tenant"] = tenant_annotation
    return rec


def record_for_request(policy: Policy, attrs: Attributes, *, audit_id: str, uid: str, source: str, user_agent: str,
                       code: int, received: str, version: str = "", uri: str = "", decision: str = "",
                       reason: str = "", stage: str = "ResponseComplete", tenant: str = "",
                       impersonator: str = "", annotations: dict[str, str] | None = None,
                       decided: tuple[str, frozenset[str], bool] | None = None) -> dict[str, Any] | None:
    """The audit Event of a request that is not a write on the log (a read, a denial, a review):
    Metadata at most (the gateway never keeps request bodies for the audit); None: not audited.
    ``decided``: ``level_and_stages(policy, attrs)`` if the caller has it already."""
    level, omit, _ = level_and_stages(policy, attrs) if decided is None else decided
    if level == "None" or stage in omit:
        return None
    user: dict[str, Any] = {"username": attrs.user, "groups": list(attrs.groups)}
    if uid:
        user["uid"] = uid
    rec: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id, "stage": stage,
        "requestURI": uri or attrs.path, "verb": attrs.verb, "user": user,
        "sourceIPs": [source] if source else [], "userAgent": user_agent,
    }
    if impersonator:  # as kube: ``user`` is who authenticated, ``impersonatedUser`` who they acted as
        rec["impersonatedUser"] = user
        rec["user"] = {"username": impersonator}
    if attrs.resource_request:
        ref = {"resource": attrs.resource, "namespace": attrs.namespace, "name": attrs.name,
               "apiGroup": attrs.api_group, "apiVersion": version}
        if attrs.subresource:
            ref["subresource"] = attrs.subresource
        rec["objectRef"] = {k: v for k, v in ref.items() if v or k in ("apiGroup",)}
    rec["responseStatus"] = {"metadata": {}, "code": code}
    rec["requestReceivedTimestamp"] = received
    rec["stageTimestamp"] = now_micro()
    ann = dict(annotations or {})  # admission's (a denial's policy and webhook annotations)
    if decision:
        ann["authorization.k8s.io/decision"] = decision
    if reason:
        ann["authorization.k8s.io/reason"] = reason
    if tenant:
        ann["jetkube.io/tenant"] = tenant
    if ann:
        rec["annotations"] = ann
    return rec


#: The audit stream's messages: one record (a JSON object), or several in submission order (a JSON array
#: of them; a message carries the records of one tenant that were queued while the previous append
#: was in flight: one stored message and one round trip for a batch of reads, not one each).
def encode_records(payloads: list[bytes]) -> bytes:
    """One audit stream message of these encoded records (each a JSON object)."""
    return payloads[0] if len(payloads) == 1 else b"[" + b",".join(payloads) + b"]"


def decode_records(data: bytes) -> list[dict[str, Any]]:
    """The records of an audit stream message, in order (:func:`encode_records`)."""
    got = _json_dec.decode(data)
    if isinstance(got, dict):
        return [got]
    if isinstance(got, list) and all(isinstance(r, dict) for r in got):
        return got
    raise msgspec.ValidationError("an audit stream message is a record or a list of records")


_json_dec = msgspec.json.Decoder()


# The last second formatted and its text up to the fraction, replaced as one tuple (any thread).
_second: list[tuple[int, str]] = [(-1, "")]


def now_micro() -> str:
    """The time now as kube's audit timestamps (MicroTime, ``2026-11-30T07:08:34.357157Z``): the
    system clock to the microsecond, rounded down as ``datetime.now`` does; the second's text is
    formatted once a second (strftime was ~4 us of the ~5 this took per request)."""
    return micro_of_ns(time.time_ns())


def micro_of_ns(ns: int) -> str:
    """:func:`now_micro` of the instant ``ns`` (nanoseconds since the epoch)."""
    sec, frac = divmod(ns, 1_000_000_000)
    cached = _second[0]
    if cached[0] != sec:
        cached = _second[0] = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    return f"{cached[1]}{frac // 1000:06d}Z"


def _micro(ts: str) -> str:
    """An RFC 3339 time with microseconds, as kube's audit timestamps (MicroTime)."""
    if not ts:
        return ""
    try:
        t = datetime.datetime.fromisoformat(_trim_nanos(ts.replace("Z", "+00:00")))
    except ValueError:
        return ts
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _trim_nanos(ts: str) -> str:
    # Python parses at most 6 fraction digits; JetStream's times have 9.
    if "." not in ts:
        return ts
    head, _, rest = ts.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    tz = rest[len(digits):]
    return f"{head}.{digits[:6]}{tz}"


def parse_time(ts: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(_trim_nanos(ts.replace("Z", "+00:00"))).astimezone(datetime.UTC)
