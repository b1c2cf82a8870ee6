from __future__ import annotations

import pytest

from actors import BadRequest, Invalid
from gateway._codec import decode_body, media_type, query_bool
from gateway._reads import parse_list_options
from gateway._routes import parse
from gateway._status import status_for
from kinds import Registry
from projections import ResourceVersionTooLarge, SelectorError, TooOldResourceVersion

REG = Registry()
CM = REG.get("", "v1", "configmaps")
assert CM is not None


@pytest.mark.parametrize("path,kind,ns,name,plural,sub", [
    ("/api/v1/namespaces", "resource", None, "", "namespaces", ""),
    ("/api/v1/namespaces/a", "resource", None, "a", "namespaces", ""),
    ("/api/v1/namespaces/a/status", "resource", None, "a", "namespaces", "status"),
    ("/api/v1/namespaces/a/configmaps", "resource", "a", "", "configmaps", ""),
    ("/api/v1/namespaces/a/configmaps/b.c", "resource", "a", "b.c", "configmaps", ""),
    ("/api/v1/configmaps", "resource", None, "", "configmaps", ""),
    ("/apis/coordination.k8s.io/v1/namespaces/x/leases/l", "resource", "x", "l", "leases", ""),
    ("/api/v1/watch/namespaces/a/configmaps", "resource", "a", "", "configmaps", ""),
])
def test_resource_routes(path: str, kind: str, ns: str | None, name: str, plural: str, sub: str) -> None:
    r = parse(path, REG)
    assert (r.kind, r.namespace, r.name, r.rdef.plural if r.rdef else None, r.subresource) == (
        kind, ns, name, plural, sub)
    assert r.legacy_watch == ("/watch/" in path)


@pytest.mark.parametrize("path,kind", [
    ("/api", "discovery"), ("/apis", "discovery"), ("/api/v1", "discovery"), ("/apis/coordination.k8s.io", "discovery"),
    ("/version", "version"), ("/healthz", "health"), ("/readyz/projection", "health"), ("/nope", "unknown"),
    ("/api/v1/widgets", "unknown"), ("/api/v1/namespaces/a/namespaces", "unknown"), ("/metrics", "metrics"),
])
def test_other_routes(path: str, kind: str) -> None:
    assert parse(path, REG).kind == kind


def test_tenancy_prefix() -> None:
    r = parse("/clusters/t1/api/v1/configmaps", REG)
    assert r.tenant == "t1" and r.rdef is CM


@pytest.mark.parametrize("v,expected", [(None, False), ("false", False), ("False", False), ("0", False),
                                        ("true", True), ("True", True), ("1", True), ("", True)])
def test_query_bool(v: str | None, expected: bool) -> None:
    assert query_bool(v) is expected


def test_body_decoding() -> None:
    assert media_type(None) == "application/json"
    assert decode_body(b'{"a":1}', None, max_bytes=1024) == ({"a": 1}, "application/json")
    assert decode_body(b"a: 1\nb: [x]\n", "application/yaml", max_bytes=1024) == (
        {"a": 1, "b": ["x"]}, "application/yaml")
    with pytest.raises(BadRequest):
        decode_body(b"{", "application/json", max_bytes=1024)
    with pytest.raises(BadRequest):
        decode_body(b"a: 1\n---\nb: 2\n", "application/yaml", max_bytes=1024)


@pytest.mark.parametrize("q,error", [
    ({"resourceVersionMatch": "Exact"}, Invalid),
    ({"resourceVersion": "0", "resourceVersionMatch": "Exact"}, Invalid),
    ({"resourceVersion": "5", "resourceVersionMatch": "Sometimes"}, Invalid),
    ({"resourceVersion": "5", "resourceVersionMatch": "Exact", "continue": "x"}, Invalid),
    ({"watch": "1", "sendInitialEvents": "true"}, Invalid),
    ({"resourceVersion": "x"}, BadRequest),
    ({"fieldSelector": "spec.x=1"}, SelectorError),
    ({"limit": "-1"}, BadRequest),
    ({"labelSelector": "a in (b"}, SelectorError),
])
def test_list_option_errors(q: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_list_options(q, CM, "d")


def test_list_options_ok() -> None:
    o = parse_list_options({"watch": "True", "allowWatchBookmarks": "1", "resourceVersion": "7",
                            "fieldSelector": "metadata.name=a", "timeoutSeconds": "30"}, CM, "d")
    assert o.watch and o.bookmarks and o.resource_version == "7" and o.timeout_s == 30
    assert o.filter.fields.exact("metadata.name") == "a"
    o = parse_list_options({"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"},
                           CM, None)
    assert o.send_initial and o.resource_version is None


def test_status_mapping() -> None:
    code, body, headers = status_for(ResourceVersionTooLarge(10, 5))
    assert code == 504 and headers == {"Retry-After": "1"} and b'"reason":"Timeout"' in body
    code, body, _ = status_for(TooOldResourceVersion(1, 50))
    assert code == 410 and b"too old resource version: 1 (50)" in body
    code, body, _ = status_for(SelectorError("bad"))
    assert code == 400
    code, body, _ = status_for(RuntimeError("bug"))
    assert code == 500 and b"InternalError" in body


def test_tenant_split() -> None:
    from gateway._routes import split_tenant

    assert split_tenant("/api/v1/configmaps") == ("root", "/api/v1/configmaps")
    assert split_tenant("/clusters/t1/api/v1/configmaps") == ("t1", "/api/v1/configmaps")
    assert split_tenant("/clusters/t1") == ("t1", "/")
    assert split_tenant("/clusters//api") == ("", "/api")
    assert split_tenant("/clusters/*/api/v1/configmaps") == ("*", "/api/v1/configmaps")
    assert parse("/clusters/t1/api/v1/namespaces/a/configmaps/x", REG).tenant == "t1"
    assert parse("/api/v1/namespaces/a/configmaps/x", REG).tenant == "root"


def test_remembered_routes_are_parses_and_follow_each_tenants_kinds() -> None:
    from gateway._routes import Routes
    from kinds._crd import defs_from_crd
    from tests.unit.test_webhook_versions import _crd

    registry, routes = Registry(), Routes(size=8)  # small: refilled below
    paths = [f"{t}{p}" for t in ("", "/clusters/t1", "/clusters/t2")
             for p in ("/api/v1/namespaces/a/configmaps/b", "/api/v1/namespaces/a/configmaps", "/api/v1/nodes/n",
                       "/apis/example.com/v1/namespaces/a/widgets/w", "/apis/example.com/v2/namespaces/a/widgets",
                       "/api/v1/namespaces/a/configmaps/b/status", "/version", "/nope")]

    def check() -> None:
        for _ in range(2):
            for p in paths:
                assert routes(p, registry) == parse(p, registry), p

    check()
    w1, w2 = "/clusters/t1/apis/example.com/v1/namespaces/a/widgets/w", "/clusters/t1/apis/example.com/v2/namespaces/a/widgets"
    assert routes(w1, registry).kind == routes(w2, registry).kind == "unknown"  # not kept: parsed each time
    registry.set_custom("t1", defs_from_crd(_crd(["v1"])))  # t1's widgets served from now on, v1 only
    assert routes(w1, registry).kind == "resource" and routes(w2, registry).kind == "unknown"
    assert routes("/clusters/t2/apis/example.com/v1/namespaces/a/widgets/w", registry).kind == "unknown"
    check()
    assert routes(w2, registry).kind == "unknown"
    registry.set_custom("t1", defs_from_crd(_crd(["v1", "v2"])))
    assert routes(w2, registry).kind == "resource"
    check()
    assert routes(w1, registry).kind == "resource"
    registry.set_custom("t1", ())  # the CRD gone
    assert routes(w1, registry).kind == "unknown"
    check()
