"""The CRD view: CustomResourceDefinitions folded from the log into the served kinds.

Applied with the store (as the RBAC view), before waiters for a sequence are released: once a
gateway's projection has applied the write that established a CRD, that gateway serves its kind
(routing, discovery, OpenAPI, Tables), without a restart and without polling. Kinds are served
from the root tenant's CRDs (the registry is one per server; per-tenant CRDs are not served yet).
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus import ROOT_TENANT
from kinds import Registry, ResourceDef
from kinds._crd import defs_from_crd, is_established

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
SERVED_TENANT = ROOT_TENANT


class CrdView:
    def __init__(self) -> None:
        self.crds: dict[str, dict[str, dict[str, Any]]] = {}  # tenant -> name -> CRD object
        self._defs: dict[str, tuple[ResourceDef, ...]] = {}  # name -> served defs (SERVED_TENANT)
        self._registries: list[Registry] = []

    def attach(self, registry: Registry) -> None:
        """Keep ``registry``'s custom kinds equal to the established CRDs from now on."""
        self._registries.append(registry)
        registry.set_custom(self.served())

    def served(self) -> tuple[ResourceDef, ...]:
        return tuple(d for name in sorted(self._defs) for d in self._defs[name])

    def get(self, tenant: str, name: str) -> dict[str, Any] | None:
        return self.crds.get(tenant, {}).get(name)

    def apply(self, tenant: str, name: str, data: bytes | None) -> None:
        per = self.crds.setdefault(tenant, {})
        if data is None:
            per.pop(name, None)
        else:
            per[name] = msgspec.json.decode(data)
        if tenant != SERVED_TENANT:
            return
        crd = per.get(name)
        before = self._defs.get(name)
        if crd is not None and is_established(crd):
            try:
                self._defs[name] = defs_from_crd(crd)
            except (KeyError, TypeError, AttributeError):  # validated on write; never stop the projection
                self._defs.pop(name, None)
        else:
            self._defs.pop(name, None)
        if self._defs.get(name) != before:
            served = self.served()
            for r in self._registries:
                r.set_custom(served)
