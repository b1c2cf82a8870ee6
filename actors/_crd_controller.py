"""The CRD controllers, in one actor loop: kube's naming and establishing controllers (status
``acceptedNames``, ``NamesAccepted``, ``Established``, ``storedVersions``) and its finalizing
controller (a CRD being deleted: ``Terminating``, every custom resource deleted, each a tombstone
on the log, then the cleanup finalizer removed so that the CRD goes).

Every replica runs it; their status writes race under CAS and the loser re-decides on the next
change (a no-op when the winner already wrote the same status)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, NoReturn

import msgspec
import trio

from bus import BusError, Key
from kinds import Registry, ResourceDef
from kinds._crd import (
    CLEANUP_FINALIZER,
    CRD_GROUP,
    CRD_PLURAL,
    accepted_names_status,
    defs_from_crd,
    terminating_status,
)
from kinds._errors import ApiError, Conflict, NotFound
from projections import DELETED, Change, ChangeFeed, Projection

from ._controllers import SYSTEM_USER
from ._runtime import Actor, WorkQueue
from .messages import Request

log = logging.getLogger(__name__)


def _strip_times(status: Any) -> Any:
    if not isinstance(status, dict):
        return status
    conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or ()]
    return {**status, "conditions": conds}


class CrdControllers:
    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], *,
                 queue_size: int = 10_000) -> None:
        self.projection, self.registry, self.resource = projection, registry, resource
        self.crd_def = registry.by_resource(CRD_GROUP, CRD_PLURAL)
        assert self.crd_def is not None
        # (no periodic resync here: a key the full queue drops is found again by the queue's resync)
        self.queue: WorkQueue[tuple[str, str]] = WorkQueue(queue_size, resync=self._every_crd)
        # (group, plural) of a terminating CRD -> (tenant, CRD name): its custom resources' deletions requeue it
        self._terminating: dict[tuple[str, str, str], str] = {}

    def _request(self, tenant: str, **kw: Any) -> Request:
        return Request(user=SYSTEM_USER, audit_id=str(uuid.uuid4()), user_agent="jetkube-apiextensions-controller",
                       tenant=tenant, **kw)

    def enqueue(self, tenant: str, name: str) -> None:
        self.queue.add((tenant, name))

    def _every_crd(self) -> list[tuple[str, str]]:
        return [(tenant, name) for tenant, per in self.projection.crds.crds.items() for name in per]

    def resync(self) -> None:
        for key in self._every_crd():
            self.queue.add(key)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        changes = self.projection.feed(accept=self._wants)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            self.resync()
            task_status.started()
            while True:
                tenant, name = await self.queue.get()
                try:
                    await self.reconcile(tenant, name)
                except (ApiError, BusError, trio.TooSlowError) as e:
                    log.warning("reconcile of CRD %s failed: %s; will retry", name, e)
                    nursery.start_soon(self.queue.add_later, (tenant, name), 1.0)

    def _wants(self, key: tuple[str, str, str], ch: Change) -> bool:
        """What :meth:`_follow` may act on (the projection sends nothing else): CRDs, and the
        instances of a CRD being finalized (``_finalize`` marks it before deleting them, and looks
        at the state again after)."""
        return key[1:] == (CRD_GROUP, CRD_PLURAL) or key in self._terminating

    def on_change(self, tenant: str, group: str, resource: str, ch: Change) -> None:
        if (group, resource) == (CRD_GROUP, CRD_PLURAL):
            self.enqueue(tenant, ch.name)
            if ch.type != DELETED:
                return
            for other in list(self.projection.crds.crds.get(tenant, {})):
                self.enqueue(tenant, other)  # names it held may be free now (kube's naming controller)
        # A terminating CRD's instances going: check whether it may go now.
        owner = self._terminating.get((tenant, group, resource))
        if owner is not None:
            self.enqueue(tenant, owner)

    async def _follow(self, changes: ChangeFeed) -> None:
        """Every change; a change lost (the feed was full) resyncs every CRD once the feed is
        drained (this controller has no periodic resync: a loss was never repaired before; a key
        dropped by the full work queue is found again by its own resync)."""
        await changes.follow(lambda key, ch: self.on_change(*key, ch), self.resync, name="the CRD controllers")

    def _claimed(self, tenant: str, crd: dict[str, Any]) -> tuple[set[str], set[str]]:
        group = (crd.get("spec") or {}).get("group")
        plurals: set[str] = set()
        kinds: set[str] = set()
        for name, other in self.projection.crds.crds.get(tenant, {}).items():
            if name == crd["metadata"]["name"] or (other.get("spec") or {}).get("group") != group:
                continue
            acc = (other.get("status") or {}).get("acceptedNames") or {}
            plurals.update(x for x in (acc.get("plural"), acc.get("singular"), *(acc.get("shortNames") or ())) if x)
            kinds.update(x for x in (acc.get("kind"), acc.get("listKind")) if x)
        for d in self.registry.builtin:
            if d.group == group:
                plurals.update((d.plural, d.singular, *d.short_names))
                kinds.update((d.kind, d.list_kind))
        return plurals, kinds

    async def reconcile(self, tenant: str, name: str) -> None:
        key = Key(tenant, CRD_GROUP, CRD_PLURAL, "", name)
        entry = self.projection.get(key)
        if entry is None:
            return
        crd = msgspec.json.decode(entry.data)
        if crd["metadata"].get("deletionTimestamp"):
            await self._finalize(tenant, crd, entry.seq)
            return
        status = accepted_names_status(crd, *self._claimed(tenant, crd))
        if _strip_times(status) != _strip_times(crd.get("status")):
            await self._write_status(tenant, crd, status, entry.seq)

    async def _write_status(self, tenant: str, crd: dict[str, Any], status: dict[str, Any], seq: int) -> None:
        body = {**crd, "status": status, "metadata": {**crd["metadata"], "resourceVersion": str(seq)}}
        req = self._request(tenant, verb="update", rdef=self.crd_def, name=crd["metadata"]["name"],
                            subresource="status", body=body)
        try:
            await self.resource.ask(req, timeout_s=30)
        except (Conflict, NotFound):
            pass  # a newer state requeues us

    async def _finalize(self, tenant: str, crd: dict[str, Any], seq: int) -> None:
        name = crd["metadata"]["name"]
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or ()):
            return
        defs = defs_from_crd({**crd, "spec": {**crd["spec"], "versions": [
            {**v, "served": True} for v in crd["spec"].get("versions") or ()]}})
        storage: ResourceDef | None = next((d for d in defs if not d.storage), None)
        if storage is None:
            return
        self._terminating[(tenant, storage.group, storage.plural)] = name
        if (crd.get("status") and next((c for c in crd["status"].get("conditions") or ()
                                        if c.get("type") == "Terminating"), None) is None):
            await self._write_status(tenant, crd, terminating_status(crd, 0), seq)
            return  # the status write requeues us
        st = self.projection.state(tenant, storage.group, storage.plural)
        for ns, obj_name, _ in list(st.iter_entries(None)):
            req = self._request(tenant, verb="delete", rdef=storage, namespace=ns, name=obj_name, body=None)
            try:
                await self.resource.ask(req, timeout_s=30)
            except (NotFound, Conflict):
                pass
        await self.projection.consistent()
        if any(True for _ in st.iter_entries(None)):
            return  # instances with finalizers of their own: their deletions requeue us
        self._terminating.pop((tenant, storage.group, storage.plural), None)
        entry = self.projection.get(Key(tenant, CRD_GROUP, CRD_PLURAL, "", name))
        if entry is None:
            return
        crd = msgspec.json.decode(entry.data)
        meta = crd["metadata"]
        meta["finalizers"] = [f for f in meta.get("finalizers") or () if f != CLEANUP_FINALIZER]
        meta["resourceVersion"] = str(entry.seq)
        req = self._request(tenant, verb="update", rdef=self.crd_def, name=name, body=crd)
        try:
            await self.resource.ask(req, timeout_s=30)
        except (Conflict, NotFound):
            pass
