"""kube-apiserver's request-metric labels (CleanScope, CanonicalVerb, cleanVerb, cleanDryRun), pure."""

from __future__ import annotations

import pytest

from gateway._metrics import clean_dry_run, request_labels
from gateway._routes import parse
from kinds import Registry

REG = Registry()


def labels(method: str, path: str, **kw: object) -> tuple[str, ...]:
    return request_labels(method, parse(path.split("?")[0], REG), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("method,path,kw,verb,scope", [
    ("GET", "/api/v1/namespaces/d/configmaps/x", {}, "GET", "resource"),
    ("HEAD", "/api/v1/namespaces/d/configmaps/x", {}, "GET", "resource"),
    ("GET", "/api/v1/namespaces/d/configmaps", {}, "LIST", "namespace"),
    ("GET", "/api/v1/configmaps", {}, "LIST", "cluster"),
    ("GET", "/api/v1/namespaces", {}, "LIST", "cluster"),
    ("GET", "/api/v1/namespaces/d/configmaps", {"watch": "true"}, "WATCH", "namespace"),
    ("GET", "/api/v1/namespaces/d/configmaps", {"watch": "1"}, "WATCH", "namespace"),
    ("GET", "/api/v1/namespaces/d/configmaps", {"watch": "false"}, "LIST", "namespace"),
    ("GET", "/api/v1/namespaces/d/configmaps", {"watch": "0"}, "LIST", "namespace"),
    ("GET", "/api/v1/watch/namespaces/d/configmaps", {}, "WATCH", "namespace"),
    # kube's CleanScope: a create is "resource" scope even on a namespaced collection.
    ("POST", "/api/v1/namespaces/d/configmaps", {}, "POST", "resource"),
    ("POST", "/api/v1/namespaces", {}, "POST", "resource"),
    ("PUT", "/api/v1/namespaces/d/configmaps/x", {}, "PUT", "resource"),
    ("PATCH", "/api/v1/namespaces/d/configmaps/x", {"content_type": "application/merge-patch+json"}, "PATCH",
     "resource"),
    ("PATCH", "/api/v1/namespaces/d/configmaps/x", {"content_type": "application/apply-patch+yaml"}, "APPLY",
     "resource"),
    ("DELETE", "/api/v1/namespaces/d/configmaps/x", {}, "DELETE", "resource"),
    # A collection delete is reported as DELETE: kube's cleanVerb keeps only WATCH from the route's verb.
    ("DELETE", "/api/v1/namespaces/d/configmaps", {}, "DELETE", "namespace"),
    ("OPTIONS", "/api/v1/namespaces/d/configmaps", {}, "other", "namespace"),
])
def test_resource_verbs_and_scopes(method: str, path: str, kw: dict[str, str], verb: str, scope: str) -> None:
    got = labels(method, path, **kw)
    assert (got[0], got[6]) == (verb, scope)
    resource = "namespaces" if path == "/api/v1/namespaces" else "configmaps"
    assert got[1:6] == ("", "", "v1", resource, "")


def test_group_version_subresource() -> None:
    assert labels("POST", "/api/v1/namespaces/d/serviceaccounts/sa/token") == (
        "POST", "", "", "v1", "serviceaccounts", "token", "resource")
    assert labels("GET", "/apis/coordination.k8s.io/v1/namespaces/d/leases") == (
        "LIST", "", "coordination.k8s.io", "v1", "leases", "", "namespace")


@pytest.mark.parametrize("path,code,subresource", [
    ("/metrics", 200, "/metrics"),
    ("/healthz", 200, "/healthz"),
    ("/readyz/anything-at-all", 200, "/readyz"),
    ("/version", 200, "/version"),
    ("/apis/apps/v1", 200, "/apis/apps/v1"),
    ("/apis/no.such.group/v1", 404, "/apis"),
    ("/openapi/v3/api/v1", 200, "/openapi/v3/api/v1"),
    ("/openapi/v3/whatever/else", 404, "/openapi"),
    ("/no/such/path", 404, ""),
])
def test_non_resource_paths_are_bounded(path: str, code: int, subresource: str) -> None:
    assert labels("GET", path, code=code) == ("GET", "", "", "", "", subresource, "")


def test_clean_dry_run() -> None:
    assert clean_dry_run([]) == ""
    assert clean_dry_run(["All"]) == "All"
    assert clean_dry_run(["All", "All"]) == "All"
    assert clean_dry_run(["Some"]) == "invalid"
    assert labels("POST", "/api/v1/namespaces/d/configmaps", dry_run=["All"])[1] == "All"
