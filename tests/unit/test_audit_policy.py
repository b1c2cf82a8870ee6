"""The audit policy checker (kube's checker.go semantics) and the records derived from log events."""

from __future__ import annotations

import msgspec
import pytest

from bus import Actor, Event, Key, LogMessage, encode_event, encode_object_with_rv_slot, object_subject
from projections import (
    DEFAULT_POLICY,
    Attributes,
    PolicyError,
    level_and_stages,
    parse_policy,
    record_for_request,
    record_from_event,
)


def res(verb: str, resource: str, *, group: str = "", sub: str = "", ns: str = "default", name: str = "n",
        user: str = "alice", groups: tuple[str, ...] = ("team",)) -> Attributes:
    return Attributes(user, groups, verb, True, group, resource, sub, ns, name)


def nonres(path: str, verb: str = "get", user: str = "alice") -> Attributes:
    return Attributes(user, (), verb, False, path=path)


POLICY = parse_policy({
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
        {"level": "Request", "userGroups": ["auditors"]},
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets", "pods/log", "*/status"]}]},
        {"level": "RequestResponse", "resources": [{"group": "apps", "resources": ["deployments/*"]}]},
        {"level": "Request", "resources": [{"group": "", "resources": ["configmaps"], "resourceNames": ["special"]}]},
        {"level": "None", "namespaces": ["kube-system"], "omitStages": ["ResponseStarted"]},
        {"level": "RequestResponse", "resources": [{"group": "batch"}]},
        {"level": "Metadata", "nonResourceURLs": ["*"]},
        {"level": "RequestResponse", "verbs": ["create", "update"], "namespaces": [""]},
        {"level": "Request"},
    ]})


@pytest.mark.parametrize(("attrs", "level"), [
    (res("watch", "endpoints", user="system:kube-proxy"), "None"),
    (res("get", "endpoints", user="system:kube-proxy"), "Request"),  # verbs must match too
    (nonres("/healthz/ready"), "None"),  # trailing * is a prefix
    (nonres("/version"), "None"),
    (nonres("/versions"), "Metadata"),  # exact without *
    (res("get", "pods", groups=("x", "auditors")), "Request"),  # any of the groups
    (res("get", "secrets"), "Metadata"),
    (res("get", "pods", sub="log"), "Metadata"),
    (res("update", "pods", sub="status"), "Metadata"),  # */status
    (res("update", "deployments", group="apps", sub="scale"), "RequestResponse"),  # deployments/*
    (res("get", "configmaps", name="special"), "Request"),
    (res("get", "configmaps", name="other"), "Request"),
    (res("get", "configmaps", ns="kube-system", name="other"), "None"),
    (res("create", "jobs", group="batch"), "RequestResponse"),  # empty resources: the whole group
    (res("create", "namespaces", ns=""), "RequestResponse"),  # "" is the cluster scope
    (res("create", "pods"), "Request"),
    (nonres("/metrics"), "Metadata"),
])
def test_first_matching_rule_wins(attrs: Attributes, level: str) -> None:
    assert level_and_stages(POLICY, attrs)[0] == level


def test_resource_slash_star_also_matches_the_resource_itself_as_kube() -> None:
    # kube: "resource/*" matches when the request's resource equals the prefix, subresource or not.
    assert level_and_stages(POLICY, res("get", "deployments", group="apps"))[0] == "RequestResponse"


def test_omit_stages_union_and_default_none() -> None:
    level, omit, _ = level_and_stages(POLICY, res("get", "x", ns="kube-system"))
    assert level == "None" and omit == {"RequestReceived", "ResponseStarted"}
    empty = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy"})
    assert level_and_stages(empty, res("get", "pods"))[0] == "None"


def test_resource_rules_never_match_non_resource_requests_and_back() -> None:
    p = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [
        {"level": "Metadata", "namespaces": ["default"]}, {"level": "Request", "nonResourceURLs": ["*"]}]})
    assert level_and_stages(p, nonres("/api"))[0] == "Request"
    assert level_and_stages(p, res("get", "pods", ns="other"))[0] == "None"


@pytest.mark.parametrize("doc", [
    {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Loud"}]},
    {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None", "bogus": 1}]},
    {"apiVersion": "v1", "kind": "ConfigMap"},
    {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["Later"]},
    {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
     "rules": [{"level": "None", "nonResourceURLs": ["/x"], "resources": [{"group": ""}]}]},
])
def test_invalid_policies_are_refused(doc: dict) -> None:
    with pytest.raises(PolicyError):
        parse_policy(doc)


def test_default_policy_keeps_sensitive_kinds_at_metadata() -> None:
    for attrs in (res("create", "secrets"), res("update", "configmaps"), res("create", "serviceaccounts", sub="token"),
                  res("create", "tokenreviews", group="authentication.k8s.io", ns="")):
        assert level_and_stages(DEFAULT_POLICY, attrs)[0] == "Metadata"
    assert level_and_stages(DEFAULT_POLICY, res("create", "pods"))[0] == "RequestResponse"
    assert level_and_stages(DEFAULT_POLICY, nonres("/healthz"))[0] == "None"


def _message(seq: int, key: Key, obj: dict, verb: str = "create", etype: str = "put") -> LogMessage:
    data, rv_at = encode_object_with_rv_slot(obj)
    ev = Event(type=etype, object=msgspec.Raw(data), rv_at=rv_at, verb=verb, audit_id="a-1",  # type: ignore[arg-type]
               time="2026-01-01T00:00:00Z", actor=Actor(user="alice", groups=("g",), uid="u1", user_agent="ua/1",
                                                         source="10.0.0.1"))
    return LogMessage(seq, object_subject("jk", key), encode_event(ev), "", "2026-01-01T00:00:01.123456789Z")


def test_record_from_a_log_event_and_secrets_never_carry_data() -> None:
    everything = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                               "rules": [{"level": "RequestResponse"}]})
    key = Key("default", "", "configmaps", "ns1", "c1")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "ns1", "uid": "U"},
          "data": {"k": "v"}}
    rec = record_from_event("jk", _message(42, key, cm), everything, {("", "configmaps"): "v1"})
    assert rec is not None
    assert rec["level"] == "RequestResponse" and rec["verb"] == "create" and rec["auditID"] == "a-1"
    assert rec["stage"] == "ResponseComplete" and rec["requestURI"] == "/api/v1/namespaces/ns1/configmaps"
    assert rec["objectRef"] == {"resource": "configmaps", "namespace": "ns1", "name": "c1", "uid": "U",
                                "apiGroup": "", "apiVersion": "v1", "resourceVersion": "42"}
    assert rec["user"] == {"username": "alice", "groups": ["g"], "uid": "u1"}
    assert rec["sourceIPs"] == ["10.0.0.1"] and rec["userAgent"] == "ua/1"
    assert rec["responseStatus"]["code"] == 201 and rec["responseObject"]["data"] == {"k": "v"}
    assert rec["stageTimestamp"] == "2026-01-01T00:00:01.123456Z"
    skey = Key("default", "", "secrets", "ns1", "s1")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": "ns1"},
              "data": {"password": "c2VjcmV0LXZhbHVl"}}
    rec = record_from_event("jk", _message(43, skey, secret, verb="update"), everything, {})
    assert rec is not None and rec["level"] == "Metadata"
    assert "c2VjcmV0LXZhbHVl" not in msgspec.json.encode(rec).decode()
    none = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None"}]})
    assert record_from_event("jk", _message(44, key, cm), none, {}) is None


def test_record_for_a_denied_request() -> None:
    rec = record_for_request(DEFAULT_POLICY, res("create", "pods", user="carol"), audit_id="x", uid="", source="1.2.3.4",
                             user_agent="kubectl", code=403, received="t0", version="v1",
                             uri="/api/v1/namespaces/default/pods", decision="forbid")
    assert rec is not None and rec["level"] == "Metadata" and rec["responseStatus"]["code"] == 403
    assert rec["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert "requestObject" not in rec


def test_admission_annotations_travel_with_the_event_and_old_events_still_decode() -> None:
    everything = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]})
    key = Key("default", "apps", "deployments", "ns1", "d1")
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d1", "namespace": "ns1"}}
    plain = _message(7, key, obj)
    # An event written before the field existed has no "annotations" key, and one without any
    # annotations is encoded exactly as before.
    assert b'"annotations"' not in plain.data
    rec = record_from_event("jk", plain, everything, {})
    assert rec is not None and set(rec["annotations"]) == {"authorization.k8s.io/decision", "jetkube.io/log-sequence",
                                                           "jetkube.io/tenant"}
    ev = msgspec.json.decode(plain.data)
    ev["annotations"] = {"p/key": "v", "validation.policy.admission.k8s.io/validation_failure": "[]"}
    annotated = LogMessage(8, plain.subject, msgspec.json.encode(ev), "", plain.stored_at)
    rec = record_from_event("jk", annotated, everything, {})
    assert rec is not None
    assert rec["annotations"]["p/key"] == "v"
    assert rec["annotations"]["validation.policy.admission.k8s.io/validation_failure"] == "[]"
    assert rec["annotations"]["authorization.k8s.io/decision"] == "allow"


def test_record_for_a_denied_request_keeps_admission_annotations() -> None:
    rec = record_for_request(DEFAULT_POLICY, res("create", "pods"), audit_id="x", uid="", source="", user_agent="",
                             code=422, received="t0", decision="allow", annotations={"p/k": "v"})
    assert rec is not None and rec["annotations"] == {"p/k": "v", "authorization.k8s.io/decision": "allow"}
