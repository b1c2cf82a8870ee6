"""Discovery documents built from the registry. Pure: no I/O, no trio.

Legacy (unaggregated): /api, /apis, /api/v1, /apis/<g>[/<v>] (``APIVersions``, ``APIGroupList``,
``APIGroup``, ``APIResourceList``).

Aggregated (``apidiscovery.k8s.io`` ``APIGroupDiscoveryList``, v2 and v2beta1 share one JSON shape):
served on GET /api and /apis when the ``Accept`` header asks for it. client-go picks the parser from the
response Content-Type, so the chosen variant must be echoed exactly, parameters in g, v, as order
[client-go ``discovery_client.go`` ``AcceptV2``/``AcceptV2Beta1``; apiserver ``generateMediaTypeWithGVK``].
kubectl 1.27-1.29 ask only for v2beta1; 1.30+ ask for v2, then v2beta1, then plain JSON.

YAML: kube's discovery handlers write their documents with ``WriteObjectNegotiated`` and the apiserver's
codecs (JSON, YAML, protobuf), so either form is YAML when asked: the aggregated one for an
``application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`` clause (that Content-Type
echoed), a legacy one for ``application/yaml`` (``negotiation.DefaultEndpointRestrictions``: no ``as=``
view; an Accept with no clause it takes is 406) [apiserver ``endpoints/discovery/{root,group,version,
legacy}.go``, ``aggregated/{wrapper,handler,etag}.go``, ``responsewriters/writers.go``].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._table import parse_accept

if TYPE_CHECKING:
    from kinds import Registry, ResourceDef

DISCOVERY_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")
_AGGREGATED_TYPES = frozenset({("application", "json"), ("application", "yaml")})

# Per-resource subresources: (group, plural) -> entries in the aggregated shape
# ``{"subresource": "status", "verbs": [...], "responseKind": {"group", "version", "kind"}?,
# "acceptedTypes": [...]?}``. A missing responseKind is the well-known one for that name (below) or
# else the parent's kind. An entry for (group, plural) replaces what the ResourceDef declares.
Subresources = Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]

# Response kinds of subresources whose kind is not the parent's [kube aggregated discovery].
_WELL_KNOWN_SUBRESOURCE_KINDS: dict[str, dict[str, str]] = {
    "scale": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
    "token": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
    "eviction": {"group": "policy", "version": "v1", "kind": "Eviction"},
    "binding": {"group": "", "version": "v1", "kind": "Binding"},
}


def _subresources_of(d: ResourceDef, subresources: Subresources | None) -> Sequence[Mapping[str, Any]]:
    """The subresources of ``d``: the explicit mapping's entry, else the ResourceDef's own
    ``subresources`` field (``{name: verbs}``) when the running ResourceDef has one."""
    if subresources is not None and (d.group, d.plural) in subresources:
        return subresources[(d.group, d.plural)]
    declared = getattr(d, "subresources", None) or {}
    return [{"subresource": name, "verbs": list(verbs)} for name, verbs in declared.items()]


# --- legacy ------------------------------------------------------------------------------------


def _resource(d: ResourceDef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced,
                           "kind": d.kind, "verbs": list(d.verbs)}
    if d.short_names:
        out["shortNames"] = list(d.short_names)
    if d.categories:
        out["categories"] = list(d.categories)
    return out


def _response_kind(d: ResourceDef, sub: Mapping[str, Any]) -> dict[str, str]:
    rk = sub.get("responseKind")
    if isinstance(rk, Mapping):
        return {"group": str(rk.get("group", "")), "version": str(rk.get("version", "")),
                "kind": str(rk.get("kind", ""))}
    known = _WELL_KNOWN_SUBRESOURCE_KINDS.get(_sub_name(sub))
    if known is not None:
        return dict(known)
    return {"group": d.group, "version": d.version, "kind": d.kind}


def _sub_name(sub: Mapping[str, Any]) -> str:
    return str(sub.get("subresource") or sub.get("name") or "")


def _legacy_subresource(d: ResourceDef, sub: Mapping[str, Any]) -> dict[str, Any]:
    """An ``APIResource`` entry for a subresource, e.g. ``deployments/scale`` (``group``/``version``
    only when its kind lives elsewhere, as ``autoscaling/v1`` Scale does)."""
    rk = _response_kind(d, sub)
    out: dict[str, Any] = {"name": f"{d.plural}/{_sub_name(sub)}", "singularName": "",
                           "namespaced": d.namespaced}
    if (rk["group"], rk["version"]) != (d.group, d.version):
        out["group"] = rk["group"]
        out["version"] = rk["version"]
    out["kind"] = rk["kind"]
    out["verbs"] = list(sub.get("verbs") or [])
    return out


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(registry: Registry, group: str) -> dict[str, Any]:
    versions = registry.group_versions()[group]
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [_group(registry, g) for g in registry.group_versions() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    if not group or group not in registry.group_versions():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(registry, group)}


def api_resource_list(registry: Registry, group: str, version: str, *,
                      subresources: Subresources | None = None) -> dict[str, Any] | None:
    """``APIResourceList`` for /api/v1 or /apis/<g>/<v>; each subresource is its own entry right after
    its parent (``configmaps/status``). None when nothing is served at that group-version."""
    defs = [d for d in registry.defs if d.group == group and d.version == version]
    if not defs:
        return None
    gv = f"{group}/{version}" if group else version
    resources: list[dict[str, Any]] = []
    for d in defs:
        resources.append(_resource(d))
        for sub in _subresources_of(d, subresources):
            resources.append(_legacy_subresource(d, sub))
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """``APIResourceList`` (kept for existing callers; same as :func:`api_resource_list`)."""
    return api_resource_list(registry, group, version)


# --- aggregated --------------------------------------------------------------------------------


def negotiate_discovery(accept: str | None) -> tuple[str, str] | None:
    """Which aggregated variant to answer (``"v2"`` or ``"v2beta1"``) and the exact Content-Type to send
    (``application/json;...`` or, for a YAML clause, ``application/yaml;...``), from the client's Accept
    (its q-values, then its order), or None to answer the legacy document.

    kube's ``WrappedHandler`` negotiates with ``DiscoveryEndpointRestrictions``, which take an aggregated
    clause only: the first clause (plain ones skipped, wherever they are) whose type is JSON or YAML (or a
    wildcard: JSON) and whose ``g``/``v``/``as`` name ``APIGroupDiscoveryList`` of ``apidiscovery.k8s.io`` v2 or
    v2beta1 wins; other parameters are ignored (``profile``, ``pretty``, unknown ones: ``acceptMediaTypeOptions``)
    but a non-empty ``sv`` (no server version there) or a ``stream`` other than JSON's ``watch``. A protobuf
    clause, which kube would answer, is skipped: jetkube has no protobuf discovery
    [apiserver ``discovery/aggregated/{wrapper,negotiation}.go``, ``handlers/negotiation/negotiate.go``]."""
    for mr in parse_accept(accept):
        p = mr.params
        if not (p.get("as") == "APIGroupDiscoveryList" and p.get("g") == DISCOVERY_GROUP
                and p.get("v") in AGGREGATED_VERSIONS) or p.get("sv"):
            continue
        if (mr.type, mr.subtype) in (("*", "*"), ("application", "*")):  # (not */json: kube's type/subtype match)
            subtype = "json"  # (the first of the server's serializers)
        elif (mr.type, mr.subtype) in _AGGREGATED_TYPES:
            subtype = mr.subtype
        else:
            continue
        if p.get("stream") and (subtype != "json" or p["stream"] != "watch"):
            continue
        v = p["v"]
        return v, f"application/{subtype};g={DISCOVERY_GROUP};v={v};as=APIGroupDiscoveryList"
    return None


def _aggregated_subresource(d: ResourceDef, sub: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"subresource": _sub_name(sub), "responseKind": _response_kind(d, sub)}
    if sub.get("acceptedTypes"):
        out["acceptedTypes"] = [dict(t) for t in sub["acceptedTypes"]]
    out["verbs"] = list(sub.get("verbs") or [])
    return out


def _aggregated_resource(d: ResourceDef, subresources: Subresources | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": d.plural,
        "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
        "scope": "Namespaced" if d.namespaced else "Cluster",
        "singularResource": d.singular,
        "verbs": list(d.verbs),
    }
    if d.short_names:
        out["shortNames"] = list(d.short_names)
    if d.categories:
        out["categories"] = list(d.categories)
    subs = _subresources_of(d, subresources)
    if subs:
        out["subresources"] = [_aggregated_subresource(d, s) for s in subs]
    return out


def _aggregated_group(registry: Registry, group: str, subresources: Subresources | None) -> dict[str, Any]:
    versions = []
    for v in registry.group_versions()[group]:  # preference order: the first is preferred
        resources = [_aggregated_resource(d, subresources) for d in registry.defs
                     if d.group == group and d.version == v]
        versions.append({"version": v, "resources": resources, "freshness": "Current"})
    return {"metadata": {"name": group}, "versions": versions}


def aggregated(registry: Registry, *, legacy_core: bool, version: str,
               subresources: Subresources | None = None) -> dict[str, Any]:
    """``APIGroupDiscoveryList`` for GET /api (``legacy_core=True``: the core group only, one item named
    "") or GET /apis (every non-core group, in registry order). ``version`` is ``"v2"`` or
    ``"v2beta1"`` (as chosen by :func:`negotiate_discovery`); only ``apiVersion`` differs."""
    if version not in AGGREGATED_VERSIONS:
        raise ValueError(f"unknown aggregated discovery version {version!r}")
    groups = registry.group_versions()
    if legacy_core:
        items = [_aggregated_group(registry, "", subresources)] if "" in groups else [
            {"metadata": {"name": ""}, "versions": []}]
    else:
        items = [_aggregated_group(registry, g, subresources) for g in groups if g]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"{DISCOVERY_GROUP}/{version}", "metadata": {},
            "items": items}
