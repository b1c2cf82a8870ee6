"""kube-apiserver's storage admission plugins: StorageObjectInUseProtection and
PersistentVolumeClaimResize (DefaultStorageClass lives with the other mutating plugins).

StorageObjectInUseProtection adds ``kubernetes.io/pvc-protection`` to every new claim and
``kubernetes.io/pv-protection`` to every new volume. In kube, kube-controller-manager's
pvc-protection and pv-protection controllers remove them once no pod uses the claim (no claim is
bound to the volume); jetkube runs no such controllers (it runs no pods), exactly like a
kube-apiserver without a controller manager: deleting a claim or a volume marks it
(``deletionTimestamp``) and it stays until a client removes the finalizer, e.g.
``kubectl patch pvc c -p '{"metadata":{"finalizers":null}}'``. A namespace with such claims
finishes terminating once their finalizers are removed.
"""

from __future__ import annotations

from typing import Any

from bus import Key
from kinds._quantity import parse_quantity
from projections import Projection

from ._admission import Attributes
from ._admission_plugins import _decode, _forbidden, claim_class

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
_FINALIZER_OF = {("", "persistentvolumeclaims"): PVC_PROTECTION, ("", "persistentvolumes"): PV_PROTECTION}


class StorageObjectInUseProtection:
    """The protection finalizer on every new PersistentVolumeClaim and PersistentVolume."""

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or a.operation != "CREATE" or a.subresource:
            return
        finalizer = _FINALIZER_OF.get((a.rdef.group, a.rdef.plural))
        if finalizer is None:
            return
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return
        finalizers = meta.get("finalizers")
        if not isinstance(finalizers, list):
            finalizers = meta["finalizers"] = []
        if finalizer not in finalizers:
            finalizers.append(finalizer)


def _storage_request(pvc: dict[str, Any] | None) -> Any:
    value: Any = pvc
    for part in ("spec", "resources", "requests", "storage"):
        value = value.get(part) if isinstance(value, dict) else None
    return parse_quantity(value) or 0 if isinstance(value, str) else 0


class PersistentVolumeClaimResize:
    """A claim's storage request may grow only when it is bound and its StorageClass (the same
    before and after) has ``allowVolumeExpansion: true``; shrinking is the strategy's business."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if a.operation != "UPDATE" or a.subresource or (a.rdef.group, a.rdef.plural) != (
                "", "persistentvolumeclaims") or obj is None or old is None:
            return
        if _storage_request(obj) <= _storage_request(old):
            return
        if ((old.get("status") or {}).get("phase")) != "Bound":
            raise _forbidden(a, "Only bound persistent volume claims can be expanded")
        if not await self._allow_resize(a, claim_class(obj), claim_class(old)):
            raise _forbidden(a, "only dynamically provisioned pvc can be resized and the storageclass that "
                                "provisions the pvc must support resize")

    async def _allow_resize(self, a: Attributes, new_class: str, old_class: str) -> bool:
        if not new_class or not old_class or new_class != old_class:
            return False
        key = Key(a.tenant, "storage.k8s.io", "storageclasses", "", new_class)
        entry = self.projection.get(key)
        if entry is None:
            await self.projection.consistent()  # a class made on another gateway a moment ago
            entry = self.projection.get(key)
        if entry is None:
            return False
        return _decode(entry.data).get("allowVolumeExpansion") is True


__all__ = [
    "PVC_PROTECTION",
    "PV_PROTECTION",
    "PersistentVolumeClaimResize",
    "StorageObjectInUseProtection",
    "claim_class",
]
