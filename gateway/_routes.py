"""Kubernetes URL layout to a route: pure parsing, no I/O.

``/api/v1/...`` is the core group, ``/apis/<group>/<version>/...`` the others, each followed by
``[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]``; ``/api/v1/watch/...`` is the legacy
watch prefix. ``/clusters/<tenant>/`` in front selects a tenant (a logical cluster, kcp's layout);
without it the tenant is root. ``/clusters/*/`` is every tenant (the system controllers' watch): its
kinds are ``registry.for_tenant("*")``'s, the built-in ones and each custom resource whose CRD is
the same in every tenant that defines it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bus import ROOT_TENANT
from kinds import Registry, ResourceDef

CLUSTERS_PREFIX = "/clusters/"

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class Route:
    # "resource" | "discovery" | "version" | "health" | "openapi" | "metrics" | "oidc" | "unknown" |
    # "conflict" (a custom resource defined differently in two tenants, named across tenants)
    kind: str
    rdef: ResourceDef | None = None
    group: str = ""
    version: str = ""
    namespace: str | None = None  # None: not in the path (all namespaces or cluster scope)
    name: str = ""
    subresource: str = ""
    legacy_watch: bool = False
    path: str = ""
    tenant: str = ROOT_TENANT


def split_tenant(path: str) -> tuple[str, str]:
    """(tenant, the path inside it): ``/clusters/<tenant>/<rest>`` or root's ``/<rest>``. An empty
    tenant (``/clusters//...``) is returned as "" (no such tenant)."""
    if not path.startswith(CLUSTERS_PREFIX):
        return ROOT_TENANT, path
    tenant, _, tail = path[len(CLUSTERS_PREFIX):].partition("/")
    return tenant, "/" + tail


def parse(path: str, registry: Registry) -> Route:
    """The route of ``path``; its kinds are the tenant's (``registry.for_tenant``): a custom
    resource is routed only in the tenant whose CRD defines it."""
    tenant, path = split_tenant(path)
    parts = [p for p in path.split("/") if p]
    served = registry.for_tenant(tenant)
    r = _parse(parts, path, served)
    if r.kind == "unknown" and served.conflicts:
        r = _conflict(parts, r, served)
    if tenant != ROOT_TENANT:
        r = Route(**{**r.__dict__, "tenant": tenant})
    return r


class Routes:
    """:func:`parse` remembered by path: a route is reused while its tenant's registry is the one
    it was parsed with and that registry's kinds are unchanged (``Registry._index`` replaces
    ``defs`` whole on any change). Parsing a GET's path was ~5 us of its CPU; a hit is a dict
    lookup.

    The fast path asks before authenticating (any bearer token will do), so what is kept is
    bounded whatever a client sends: only resource routes (``kind == "resource"`` with an
    ``rdef``; unknown, discovery, health... paths are parsed each time), only paths of at most
    ``max_path`` characters (longer ones are parsed each time), and at most ``size`` paths, the
    least recently used evicted one at a time (a flood of new paths does not clear the others).
    Worst case, defaults: 4,096 paths of 512 characters, 2 MiB of keys; with their routes (whose
    strings are parts of the path) about 8 MiB in all (measured with tracemalloc,
    tests/unit/test_route_cache.py)."""

    def __init__(self, size: int = 4096, max_path: int = 512) -> None:
        self.size, self.max_path = size, max_path
        self._known: OrderedDict[str, tuple[Registry, tuple[ResourceDef, ...], Route]] = OrderedDict()

    def __call__(self, path: str, registry: Registry) -> Route:
        served = registry.for_tenant(split_tenant(path)[0])
        known = self._known
        got = known.get(path)
        if got is not None and got[0] is served and got[1] is served.defs:
            known.move_to_end(path)
            return got[2]
        route = parse(path, registry)
        if route.kind != "resource" or route.rdef is None or len(path) > self.max_path:
            if got is not None:
                del known[path]  # its tenant's kinds changed: no longer a resource
            return route
        known[path] = (served, served.defs, route)
        known.move_to_end(path)
        if len(known) > self.size:
            known.popitem(last=False)
        return route


def _conflict(parts: list[str], r: Route, served: Registry) -> Route:
    """``/clusters/*/`` naming a custom resource two tenants define differently (not served across
    tenants, ``Registry.conflicts``): a "conflict" route whose ``name`` is the message, so that it is
    answered as such rather than as an unknown path."""
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["watch"]:
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    tenants = served.conflicts.get((r.group, rest[0])) if rest else None
    if tenants is None:
        return r
    gr = f"{rest[0]}.{r.group}" if r.group else rest[0]
    listed = ", ".join(f'"{t}"' for t in tenants)
    return Route("conflict", group=r.group, version=r.version, path=r.path,
                 name=f"{gr} cannot be listed or watched across logical clusters: its "
                      f"CustomResourceDefinition differs between the logical clusters {listed} (served across "
                      f"logical clusters only when it is the same in every logical cluster that defines it)")


def _parse(parts: list[str], path: str, registry: Registry) -> Route:
    if not parts:
        return Route("unknown", path=path)
    head = parts[0]
    if head == "version":
        return Route("version", path=path) if len(parts) == 1 else Route("unknown", path=path)
    if head in ("healthz", "livez", "readyz"):
        return Route("health", path=path, name="/".join(parts[1:]), group=head)
    if head == "metrics" and len(parts) == 1:
        return Route("metrics", path=path)
    if parts in (["openid", "v1", "jwks"], [".well-known", "openid-configuration"]):
        return Route("oidc", path=path)
    if head == "openapi" or (head == "swagger-2.0.0.pb-v1" and len(parts) == 1):
        return Route("openapi", path=path, name="/".join(parts[1:]))
    if head == "api":
        if len(parts) == 1:
            return Route("discovery", path=path)
        group, version, rest = "", parts[1], parts[2:]
    elif head == "apis":
        if len(parts) <= 3:
            return Route("discovery", path=path, group=parts[1] if len(parts) > 1 else "",
                         version=parts[2] if len(parts) > 2 else "")
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Route("unknown", path=path)
    if not rest:
        return Route("discovery", path=path, group=group, version=version)
    legacy_watch = False
    if rest[0] == "watch":
        legacy_watch, rest = True, rest[1:]
        if not rest:
            return Route("unknown", path=path)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES
                                                           and registry.get(group, version, rest[2]) is None):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    rdef = registry.get(group, version, plural)
    if rdef is None or len(rest) > 3:
        return Route("unknown", path=path, group=group, version=version)
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if namespace is not None and not rdef.namespaced:
        return Route("unknown", path=path, group=group, version=version)
    return Route("resource", rdef=rdef, group=group, version=version, namespace=namespace, name=name,
                 subresource=sub, legacy_watch=legacy_watch, path=path)
