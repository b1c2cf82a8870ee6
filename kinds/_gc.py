"""Garbage collection, the domain half: deletion propagation and owner references. Pure functions.

The apiserver's store decides, on DELETE, which garbage-collection finalizers the object gets
(``deletionFinalizersForGarbageCollection`` in k8s.io/apiserver's registry/generic/registry/store.go);
the garbage collector (actors/_gc.py) then acts on them and on ownerReferences. The per-kind part is
the default propagation policy (the strategy's ``DefaultGarbageCollectionPolicy``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._defs import ResourceDef

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
GC_FINALIZERS = (FINALIZER_ORPHAN, FINALIZER_FOREGROUND)

Policy = Literal["Orphan", "Background", "Foreground"]

# Kinds whose dependents are orphaned when a DELETE names no policy: the legacy controllers'
# behaviour before server-side garbage collection, kept by kube for these group/versions only
# (rcStrategy returns OrphanDependents for core/v1; the extensions/v1beta1, apps/v1beta1 and
# apps/v1beta2 workload kinds likewise). Every other kind (apps/v1 included) defaults to Background.
_ORPHAN_BY_DEFAULT = frozenset({
    ("", "v1", "replicationcontrollers"),
    *((g, v, r) for g, v in (("extensions", "v1beta1"), ("apps", "v1beta1"), ("apps", "v1beta2"))
      for r in ("deployments", "replicasets", "daemonsets", "statefulsets", "replicationcontrollers")),
})


def default_propagation(rdef: ResourceDef) -> Policy:
    """The kind's policy for a DELETE that names none (and whose object has no GC finalizer)."""
    return "Orphan" if (rdef.group, rdef.version, rdef.plural) in _ORPHAN_BY_DEFAULT else "Background"


def orphan_option(value: Any) -> bool | None:
    """``orphanDependents`` as sent: a JSON bool in DeleteOptions, a string in the query."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return None


def deletion_finalizers(finalizers: list[str], options: dict[str, Any], default: Policy) -> list[str]:
    """The object's finalizers after a DELETE with ``options``: the GC finalizers replaced by the
    one the request's policy asks for (store.go ``shouldOrphanDependents`` /
    ``shouldDeleteDependents``). Precedence: ``orphanDependents``, then ``propagationPolicy``, then
    a GC finalizer already on the object, then the kind's default."""
    orphan = orphan_option(options.get("orphanDependents"))
    policy = options.get("propagationPolicy")
    if orphan is not None:
        want: str | None = FINALIZER_ORPHAN if orphan else None
    elif policy in ("Orphan", "Background", "Foreground"):
        want = {"Orphan": FINALIZER_ORPHAN, "Foreground": FINALIZER_FOREGROUND}.get(policy)
    elif FINALIZER_ORPHAN in finalizers or FINALIZER_FOREGROUND in finalizers:
        # The first GC finalizer on the object decides (validation forbids both at once).
        want = next(f for f in finalizers if f in GC_FINALIZERS)
    else:
        want = FINALIZER_ORPHAN if default == "Orphan" else None
    out = [f for f in finalizers if f not in GC_FINALIZERS]
    if want is not None:
        out.append(want)
    if set(out) == set(finalizers):
        return finalizers  # unchanged: keep the order as stored
    return out


def delete_options_conflict(options: dict[str, Any]) -> str | None:
    """kube's ValidateDeleteOptions: ``orphanDependents`` and ``propagationPolicy`` exclude each
    other. Returns the 422 cause's message, or None."""
    if options.get("orphanDependents") is not None and options.get("propagationPolicy") is not None:
        return "orphanDependents and deletionPropagation cannot be both set"
    return None


class OwnerRef(msgspec.Struct, frozen=True):
    """An ``ownerReferences`` item, as much of it as the collector needs."""

    apiVersion: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    blockOwnerDeletion: bool | None = None


class _Meta(msgspec.Struct):
    uid: str = ""
    ownerReferences: list[OwnerRef] = []
    finalizers: list[str] = []
    deletionTimestamp: str | None = None


class _Object(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


_decode_gc = msgspec.json.Decoder(_Object)


class GcView(msgspec.Struct, frozen=True):
    """What garbage collection needs to know of one stored object."""

    uid: str
    owners: tuple[OwnerRef, ...]
    finalizers: tuple[str, ...]
    deleting: bool

    @property
    def foreground(self) -> bool:
        """Being deleted in the foreground: waits for its blocking dependents."""
        return self.deleting and FINALIZER_FOREGROUND in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and FINALIZER_ORPHAN in self.finalizers


def gc_view(data: bytes) -> GcView | None:
    """Decode only what the collector needs of an object's JSON (msgspec skips the rest);
    None when it is not an object with metadata as expected."""
    try:
        obj = _decode_gc.decode(data)
    except msgspec.DecodeError:
        return None
    m = obj.metadata
    return GcView(m.uid, tuple(r for r in m.ownerReferences if r.uid), tuple(m.finalizers),
                  bool(m.deletionTimestamp))


def split_api_version(api_version: str) -> tuple[str, str]:
    """(group, version) of an ``apiVersion``: ``v1`` is the core group."""
    group, _, version = api_version.rpartition("/")
    return group, version
