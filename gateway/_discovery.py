"""Legacy discovery documents (/api, /apis, /api/v1, /apis/<g>[/<v>]) built from the registry."""

from __future__ import annotations

from typing import Any

from bus import Registry, ResourceDef


def _resource(d: ResourceDef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced,
                           "kind": d.kind, "verbs": list(d.verbs)}
    if d.short_names:
        out["shortNames"] = list(d.short_names)
    if d.categories:
        out["categories"] = list(d.categories)
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


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    defs = [d for d in registry.defs if d.group == group and d.version == version]
    if not defs:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [_resource(d) for d in defs]}
