"""The CRD view: CustomResourceDefinitions folded from the log into the served kinds.

Applied with the store (as the RBAC view), before waiters for a sequence are released: once a
gateway's projection has applied the write that established a CRD, that gateway serves its kind
(routing, discovery, OpenAPI, Tables), without a restart and without polling. Each tenant's CRDs
serve their kinds in that tenant only (``Registry.for_tenant``); the built-in kinds are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from kinds import Registry, ResourceDef
from kinds._crd import defs_from_crd, is_established

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


class CrdView:
    def __init__(self) -> None:
        self.crds: dict[str, dict[str, dict[str, Any]]] = {}  # tenant -> name -> CRD object
        # tenant -> CRD name -> the kinds it serves (established CRDs only)
        self._defs: dict[str, dict[str, tuple[ResourceDef, ...]]] = {}
        self._registries: list[Registry] = []
        self._listeners: list[Callable[[], None]] = []

    def attach(self, registry: Registry) -> None:
        """Keep ``registry``'s custom kinds, per tenant, equal to the established CRDs from now on."""
        self._registries.append(registry)
        for tenant in self._defs:
            registry.set_custom(tenant, self.served(tenant))

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of a tenant's served kinds, once the attached
        registries have it (synchronously, from the projection's fold: keep it short)."""
        self._listeners.append(listener)

    def served(self, tenant: str) -> tuple[ResourceDef, ...]:
        """The kinds ``tenant``'s established CRDs define, by CRD name."""
        per = self._defs.get(tenant, {})
        return tuple(d for name in sorted(per) for d in per[name])

    def get(self, tenant: str, name: str) -> dict[str, Any] | None:
        return self.crds.get(tenant, {}).get(name)

    def apply(self, tenant: str, name: str, data: bytes | None) -> None:
        per = self.crds.setdefault(tenant, {})
        if data is None:
            per.pop(name, None)
            if not per:
                del self.crds[tenant]  # a deleted tenant's CRDs leave nothing behind
        else:
            per[name] = msgspec.json.decode(data)
        crd = per.get(name)
        defs = self._defs.setdefault(tenant, {})
        before = defs.get(name)
        if crd is not None and is_established(crd):
            try:
                defs[name] = defs_from_crd(crd)
            except (KeyError, TypeError, AttributeError):  # validated on write; never stop the projection
                defs.pop(name, None)
        else:
            defs.pop(name, None)
        if not defs:
            del self._defs[tenant]
        if defs.get(name) != before:
            served = self.served(tenant)
            for r in self._registries:
                r.set_custom(tenant, served)
            for listener in self._listeners:
                listener()
