"""Discovery documents and aggregated-discovery negotiation (gateway._discovery)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway._discovery import (
    aggregated,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    negotiate_discovery,
    resource_list,
)
from kinds import Registry, ResourceDef

# The tests define their own kinds, so they do not move when the built-in set grows.
CORE = (
    ResourceDef("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",)),
    ResourceDef("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceDef("", "v1", "Secret", "secrets", "secret", True),
    ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",)),
    ResourceDef("", "v1", "Event", "events", "event", True, ("ev",)),
)
LEASES = ResourceDef("coordination.k8s.io", "v1", "Lease", "leases", "lease", True)
DEFS = (*CORE, LEASES)
REG = Registry(DEFS)

V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# Accept headers as recorded on the wire (contract §2.3, §13.1)
KUBECTL_127_129 = f"{V2BETA1},application/json"
KUBECTL_130_133 = f"{V2},{V2BETA1},application/json"

RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


# --- negotiation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "accept", "expected"),
    [
        ("kubectl 1.27", KUBECTL_127_129, ("v2beta1", V2BETA1)),
        ("kubectl 1.28", KUBECTL_127_129, ("v2beta1", V2BETA1)),
        ("kubectl 1.29", KUBECTL_127_129, ("v2beta1", V2BETA1)),
        ("kubectl 1.30", KUBECTL_130_133, ("v2", V2)),
        ("kubectl 1.31", KUBECTL_130_133, ("v2", V2)),
        ("kubectl 1.32", KUBECTL_130_133, ("v2", V2)),
        ("kubectl 1.33", KUBECTL_130_133, ("v2", V2)),
        ("python client", "application/json", None),
        ("kubectl legacy fan-out", "application/json, */*", None),
        ("no header", "", None),
        ("no header", None, None),
        ("curl", "*/*", None),
        # a newer client-go puts a profile=nopeer variant first: skipped, the plain v2 clause follows
        ("client-go 1.35", f"{V2};profile=nopeer,{V2},{V2BETA1},application/json", ("v2", V2)),
        # q-values beat the client's order
        ("q prefers v2beta1", f"{V2};q=0.5,{V2BETA1}", ("v2beta1", V2BETA1)),
        # kube's discovery restrictions take aggregated clauses only: a plain one, first or preferred, is
        # skipped (aggregated/negotiation.go: AllowsMediaTypeTransform is IsAggregatedDiscoveryGVK)
        ("q prefers legacy", f"{V2};q=0.5,application/json", ("v2", V2)),
        ("q=0 refuses v2", f"{V2};q=0,{V2BETA1},application/json", ("v2beta1", V2BETA1)),
        ("legacy first", f"application/json,{V2}", ("v2", V2)),
        # parameters kube does not know are ignored (acceptMediaTypeOptions: Unrecognized), so are
        # profile and pretty; a server version refuses the clause
        ("unknown parameter", f"{V2};foo=bar", ("v2", V2)),
        ("unknown parameters only", f"{V2};foo=bar,{V2BETA1};x=1;y=2", ("v2", V2)),
        ("profile", f"{V2};profile=nopeer", ("v2", V2)),
        ("pretty and charset", f"{V2BETA1};pretty=1;charset=utf-8", ("v2beta1", V2BETA1)),
        ("sv", f"{V2};sv=v1,{V2BETA1}", ("v2beta1", V2BETA1)),
        ("a JSON stream", f"{V2};stream=watch", ("v2", V2)),
        ("a YAML stream", f"{V2.replace('json', 'yaml')};stream=watch", None),
        # a wildcard type is the server's first serializer: JSON
        ("wildcard", "*/*;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", ("v2", V2)),
        ("application/*", "application/*;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
         ("v2beta1", V2BETA1)),
        # a wildcard type with a subtype is no range kube matches (type/subtype, type/* or */* only)
        ("*/json", "*/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
        ("*/yaml then v2beta1", f"*/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,{V2BETA1}",
         ("v2beta1", V2BETA1)),
        # variants we cannot serve are skipped (kube would answer protobuf: jetkube has none)
        ("protobuf first",
         f"application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,{V2BETA1}",
         ("v2beta1", V2BETA1)),
        ("unknown version",
         "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json", None),
        ("wrong kind", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscovery", None),
        ("wrong group", "application/json;g=apidiscovery.example.com;v=v2;as=APIGroupDiscoveryList", None),
        # YAML (kube's codecs have a YAML serializer): the YAML Content-Type echoed
        ("yaml v2", V2.replace("json", "yaml"), ("v2", V2.replace("json", "yaml"))),
        ("yaml v2beta1 then json", f"{V2BETA1.replace('json', 'yaml')},{V2}",
         ("v2beta1", V2BETA1.replace("json", "yaml"))),
        ("plain yaml skipped", f"application/yaml,{V2}", ("v2", V2)),
        # parameter order and spacing are free; the echoed Content-Type is canonical (g, v, as)
        ("reordered", "application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io", ("v2", V2)),
    ],
)
def test_negotiate_discovery(client: str, accept: str | None, expected: tuple[str, str] | None) -> None:
    assert negotiate_discovery(accept) == expected, client


# --- aggregated ---------------------------------------------------------------------------------


def _resources(doc: dict[str, Any], group: str, version: str) -> dict[str, dict[str, Any]]:
    (item,) = [i for i in doc["items"] if i["metadata"]["name"] == group]
    (ver,) = [v for v in item["versions"] if v["version"] == version]
    return {r["resource"]: r for r in ver["resources"]}


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_core(version: str) -> None:
    doc = aggregated(REG, legacy_core=True, version=version)
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert doc["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    assert doc["metadata"] == {}
    assert [i["metadata"] for i in doc["items"]] == [{"name": ""}]
    assert [(v["version"], v["freshness"]) for v in doc["items"][0]["versions"]] == [("v1", "Current")]
    res = _resources(doc, "", "v1")
    assert list(res) == ["namespaces", "configmaps", "secrets", "serviceaccounts", "events"]
    assert res["configmaps"] == {
        "resource": "configmaps", "responseKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "scope": "Namespaced", "singularResource": "configmap", "verbs": RW, "shortNames": ["cm"]}
    assert res["namespaces"]["scope"] == "Cluster"
    assert res["namespaces"]["shortNames"] == ["ns"]
    assert "shortNames" not in res["secrets"] and "categories" not in res["secrets"]
    assert "subresources" not in res["configmaps"]


def test_aggregated_versions_differ_only_in_api_version() -> None:
    for core in (True, False):
        v2 = aggregated(REG, legacy_core=core, version="v2")
        beta = aggregated(REG, legacy_core=core, version="v2beta1")
        assert v2.pop("apiVersion") == "apidiscovery.k8s.io/v2"
        assert beta.pop("apiVersion") == "apidiscovery.k8s.io/v2beta1"
        assert v2 == beta


def test_aggregated_groups() -> None:
    doc = aggregated(REG, legacy_core=False, version="v2")
    assert [i["metadata"]["name"] for i in doc["items"]] == ["coordination.k8s.io"]
    assert _resources(doc, "coordination.k8s.io", "v1")["leases"] == {
        "resource": "leases",
        "responseKind": {"group": "coordination.k8s.io", "version": "v1", "kind": "Lease"},
        "scope": "Namespaced", "singularResource": "lease", "verbs": RW}


def test_aggregated_rejects_unknown_version() -> None:
    with pytest.raises(ValueError):
        aggregated(REG, legacy_core=True, version="v1")


WIDGET_V1 = ResourceDef("example.com", "v1", "Widget", "widgets", "widget", True, ("wd",), ("all",))
WIDGET_V1BETA1 = ResourceDef("example.com", "v1beta1", "Widget", "widgets", "widget", True)
CLUSTER_THING = ResourceDef("example.com", "v1", "Thing", "things", "thing", False, verbs=("get", "list"))
APPS = ResourceDef("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), ("all",))
CUSTOM = Registry((*DEFS, APPS, WIDGET_V1, WIDGET_V1BETA1, CLUSTER_THING))
SUBRESOURCES = {
    ("apps", "deployments"): [
        {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
         "verbs": ["get", "patch", "update"]},
        {"subresource": "status", "verbs": ["get", "patch", "update"]},
    ],
    ("", "configmaps"): [{"subresource": "status", "verbs": ["get", "patch", "update"]}],
}


def test_aggregated_groups_versions_and_subresources() -> None:
    doc = aggregated(CUSTOM, legacy_core=False, version="v2", subresources=SUBRESOURCES)
    assert [i["metadata"]["name"] for i in doc["items"]] == ["coordination.k8s.io", "apps", "example.com"]
    example = doc["items"][2]
    assert [v["version"] for v in example["versions"]] == ["v1", "v1beta1"]  # preferred first
    assert list(_resources(doc, "example.com", "v1")) == ["widgets", "things"]
    assert list(_resources(doc, "example.com", "v1beta1")) == ["widgets"]
    widgets = _resources(doc, "example.com", "v1")["widgets"]
    assert widgets["shortNames"] == ["wd"] and widgets["categories"] == ["all"]
    assert _resources(doc, "example.com", "v1")["things"]["scope"] == "Cluster"
    assert _resources(doc, "example.com", "v1")["things"]["verbs"] == ["get", "list"]
    assert _resources(doc, "apps", "v1")["deployments"]["subresources"] == [
        {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
         "verbs": ["get", "patch", "update"]},
        {"subresource": "status", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
         "verbs": ["get", "patch", "update"]},
    ]
    core = aggregated(CUSTOM, legacy_core=True, version="v2", subresources=SUBRESOURCES)
    assert _resources(core, "", "v1")["configmaps"]["subresources"] == [
        {"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
         "verbs": ["get", "patch", "update"]}]


def test_aggregated_without_core_or_groups() -> None:
    only_core = Registry(CORE)
    assert aggregated(only_core, legacy_core=False, version="v2")["items"] == []
    no_core = Registry((LEASES,))
    assert aggregated(no_core, legacy_core=True, version="v2")["items"] == [
        {"metadata": {"name": ""}, "versions": []}]


# --- legacy -------------------------------------------------------------------------------------


def test_api_resource_list_with_subresources() -> None:
    doc = api_resource_list(CUSTOM, "apps", "v1", subresources=SUBRESOURCES)
    assert doc == {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
        "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
             "verbs": RW, "shortNames": ["deploy"], "categories": ["all"]},
            {"name": "deployments/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
             "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
            {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
             "verbs": ["get", "patch", "update"]},
        ],
    }
    core = api_resource_list(CUSTOM, "", "v1", subresources=SUBRESOURCES)
    assert core is not None
    names = [r["name"] for r in core["resources"]]
    assert names == ["namespaces", "configmaps", "configmaps/status", "secrets", "serviceaccounts", "events"]
    assert core["groupVersion"] == "v1"


@pytest.mark.parametrize(("group", "version"), [("", "v2"), ("apps", "v1"), ("nope", "v1")])
def test_api_resource_list_unknown(group: str, version: str) -> None:
    assert api_resource_list(REG, group, version) is None


def test_legacy_documents_unchanged() -> None:
    assert resource_list(REG, "", "v1") == api_resource_list(REG, "", "v1")
    core = resource_list(REG, "", "v1")
    assert core is not None
    cm = [r for r in core["resources"] if r["name"] == "configmaps"]
    assert cm == [{"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
                   "verbs": RW, "shortNames": ["cm"]}]
    assert api_versions("h:1") == {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "h:1"}]}
    gv = {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}
    assert api_group_list(REG) == {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "coordination.k8s.io", "versions": [gv], "preferredVersion": gv}]}
    assert api_group(REG, "coordination.k8s.io") == {"kind": "APIGroup", "apiVersion": "v1",
                                                     "name": "coordination.k8s.io", "versions": [gv],
                                                     "preferredVersion": gv}
    assert api_group(REG, "") is None and api_group(REG, "nope") is None


def test_well_known_subresource_kinds() -> None:
    subs = {("", "serviceaccounts"): [{"subresource": "token", "verbs": ["create"]}],
            ("apps", "deployments"): [{"subresource": "scale", "verbs": ["get", "patch", "update"]}]}
    core = api_resource_list(CUSTOM, "", "v1", subresources=subs)
    assert core is not None
    assert [r for r in core["resources"] if r["name"] == "serviceaccounts/token"] == [
        {"name": "serviceaccounts/token", "singularName": "", "namespaced": True,
         "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}]
    doc = aggregated(CUSTOM, legacy_core=False, version="v2beta1", subresources=subs)
    assert _resources(doc, "apps", "v1")["deployments"]["subresources"] == [
        {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
         "verbs": ["get", "patch", "update"]}]


def test_subresources_declared_on_the_resource_def() -> None:
    sa = ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True,
                     subresources={"token": ("create",)})
    reg = Registry((sa,))
    doc = api_resource_list(reg, "", "v1")
    assert doc is not None
    assert [r["name"] for r in doc["resources"]] == ["serviceaccounts", "serviceaccounts/token"]
    agg = aggregated(reg, legacy_core=True, version="v2")
    assert _resources(agg, "", "v1")["serviceaccounts"]["subresources"] == [
        {"subresource": "token",
         "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
         "verbs": ["create"]}]
    # an explicit mapping replaces what the ResourceDef declares
    doc = api_resource_list(reg, "", "v1", subresources={("", "serviceaccounts"): []})
    assert doc is not None and [r["name"] for r in doc["resources"]] == ["serviceaccounts"]


def test_builtin_workload_kinds_and_subresources() -> None:
    """The built-in kinds with kube's short names, categories and subresources, in both discovery
    forms; HPAs in autoscaling/v2 (preferred) and v1."""
    reg = Registry()
    doc = api_resource_list(reg, "apps", "v1")
    assert doc is not None
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"] and by_name["deployments"]["categories"] == ["all"]
    assert by_name["deployments/scale"] == {"name": "deployments/scale", "singularName": "", "namespaced": True,
                                            "group": "autoscaling", "version": "v1", "kind": "Scale",
                                            "verbs": ["get", "patch", "update"]}
    assert by_name["deployments/status"]["kind"] == "Deployment"
    core = api_resource_list(reg, "", "v1")
    assert core is not None
    names = [r["name"] for r in core["resources"]]
    for sub in ("pods/status", "pods/binding", "pods/eviction", "pods/ephemeralcontainers",
                "replicationcontrollers/scale", "nodes/status"):
        assert sub in names
    agg = aggregated(reg, legacy_core=False, version="v2")
    hpa = next(g for g in agg["items"] if g["metadata"]["name"] == "autoscaling")
    assert [v["version"] for v in hpa["versions"]] == ["v2", "v1"]
    pods = _resources(aggregated(reg, legacy_core=True, version="v2"), "", "v1")["pods"]
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    assert {s["subresource"]: s["responseKind"]["kind"] for s in pods["subresources"]} == {
        "status": "Pod", "binding": "Binding", "eviction": "Eviction", "ephemeralcontainers": "Pod"}
    assert sorted({d.plural for d in reg.defs if "all" in d.categories}) == ["cronjobs", "daemonsets", "deployments", "horizontalpodautoscalers", "jobs",
                                 "pods", "replicasets", "replicationcontrollers", "services", "statefulsets"]
