"""The garbage collector: kube-controller-manager's, as a follower of the log.

It keeps an index of owner uid -> dependents, folded from the projection's changes (and rebuilt
from the projection's state, itself folded from the log, at start and on every resync: a restart
resumes where the log is). It acts as kube's garbagecollector does (attemptToDeleteItem,
processDeletingDependentsItem, orphanDependents):

- a dependent none of whose owners is left *solid* (existing with that uid and not being deleted in
  the foreground) is deleted: in the foreground when it has dependents of its own and an owner
  waits for it, else as its own GC finalizers say (Background by default); references to absent
  or foreground-deleting owners are removed from a dependent that keeps a solid owner;
- an owner being deleted in the foreground (``foregroundDeletion``) has its dependents deleted and
  loses the finalizer once no dependent with ``blockOwnerDeletion`` remains;
- an owner being deleted with ``orphan`` has the reference to it removed from every dependent, then
  loses the finalizer.

Every write is a CAS on the object's version (an update with its resourceVersion, a delete with
uid and resourceVersion preconditions) through the resource actor as ``system:apiserver``. Every
gateway runs a collector: when two act on the same object, one write lands and the other is a
conflict or a NotFound, which is dropped (the change it lost to requeues what is left to do).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any, Literal, NoReturn

import msgspec
import trio

from bus import BusError, Key
from kinds import Registry, ResourceDef
from kinds._errors import AlreadyExists, ApiError, Conflict, Forbidden, NotFound
from kinds._gc import FINALIZER_FOREGROUND, FINALIZER_ORPHAN, GcView, OwnerRef, gc_view, split_api_version
from projections import DELETED, Change, ChangeFeed, Projection

from ._decide import now_rfc3339
from ._runtime import Actor, WorkQueue, every
from .messages import Delete, Preconditions, Request, UserInfo

log = logging.getLogger("jetkube.gc")

# check a dependent's owners | act on an owner being deleted | report its unresolvable owner references
Task = Literal["attempt", "owner", "invalid-ref"]
OwnerState = Literal["solid", "dangling", "waiting"]


class OwnerIndex:
    """Owner uid -> dependents, and each dependent's owner uids. Memory is bounded by the objects
    that have ownerReferences (one entry per reference)."""

    def __init__(self) -> None:
        self._owners: dict[Key, tuple[OwnerRef, ...]] = {}
        self._dependents: dict[tuple[str, str], set[Key]] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def owners(self, key: Key) -> tuple[OwnerRef, ...]:
        return self._owners.get(key, ())

    def dependents(self, tenant: str, uid: str) -> frozenset[Key]:
        return frozenset(self._dependents.get((tenant, uid), ()))

    def set(self, key: Key, owners: tuple[OwnerRef, ...]) -> tuple[OwnerRef, ...]:
        """Record ``key``'s owners (``()``: none, or gone); returns the ones it had before."""
        before = self._owners.pop(key, ())
        for ref in before:
            deps = self._dependents.get((key.tenant, ref.uid))
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._dependents[(key.tenant, ref.uid)]
        if owners:
            self._owners[key] = owners
            for ref in owners:
                self._dependents.setdefault((key.tenant, ref.uid), set()).add(key)
        return before

    def clear(self) -> None:
        self._owners.clear()
        self._dependents.clear()


def invalid_namespace_event(rdef: ResourceDef, obj: dict[str, Any], ref: OwnerRef, now: str) -> dict[str, Any]:
    """The Event kube's graph builder records for an owner reference that cannot resolve in the
    dependent's namespace (``reportInvalidNamespaceOwnerRef``)."""
    meta = obj["metadata"]
    ns = meta.get("namespace", "")
    digest = hashlib.blake2b(f"{meta.get('uid', '')}/{ref.uid}".encode(), digest_size=8).hexdigest()
    involved = {"kind": rdef.kind, "apiVersion": rdef.api_version, "name": meta["name"], "uid": meta.get("uid", "")}
    if ns:
        involved["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{digest}", "namespace": ns or "default"},
            "involvedObject": involved, "reason": "OwnerRefInvalidNamespace", "type": "Warning",
            "message": f"ownerRef [{ref.apiVersion}/{ref.kind}, namespace: {ns}, name: {ref.name}, uid: {ref.uid}] "
                       f"does not exist in namespace {json.dumps(ns)}",
            "source": {"component": "garbage-collector-controller"}, "reportingComponent": "garbage-collector-controller",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1}


def _might_matter(data: bytes) -> bool:
    """Whether an object's JSON can hold owner references or a pending deletion (a cheap test
    before decoding it)."""
    return b'"ownerReferences"' in data or b'"deletionTimestamp"' in data


def _wants(key: tuple[str, str, str], ch: Change) -> bool:
    """What :meth:`GarbageCollector.on_change` may act on (the projection sends nothing else): every
    deletion, and a change of an object that may hold owner references or a pending deletion now or
    did before (its index entry then goes). A change where neither state might matter finds the
    object unindexed, provided the collector saw the change before it (its previous state, with no
    owners). A change lost from a full channel breaks that: the collector then resyncs as soon as it
    has handled what was queued (``ChangeFeed.follow``), not at the next periodic resync."""
    return (ch.type == DELETED or _might_matter(ch.entry.data)
            or (ch.prev is not None and _might_matter(ch.prev.data)))


class GarbageCollector:
    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], user: UserInfo, *,
                 queue_size: int = 50_000, resync_s: float = 60.0, retry_s: float = 1.0,
                 feed_size: int = 10_000) -> None:
        self.projection = projection
        self.registry = registry
        self.resource = resource
        self.user = user
        self.index = OwnerIndex()
        self.queue: WorkQueue[tuple[Task, Key]] = WorkQueue(queue_size)
        self._retry: set[tuple[Task, Key]] = set()  # bounded by queue_size
        self.resync_s = resync_s
        self.retry_s = retry_s
        self.feed_size = feed_size
        self.feed: ChangeFeed | None = None  # its change feed (``subscribe``)
        self._by_kind: dict[tuple[str, str], ResourceDef] = {}
        #: Objects this collector deleted or changed (for metrics and tests).
        self.actions = 0

    # ---- the kinds ---------------------------------------------------------------------------------

    def _rdef(self, key: Key) -> ResourceDef | None:
        """The kind of ``key`` in its tenant (a custom resource's CRD is its tenant's own)."""
        return self.registry.for_tenant(key.tenant).by_resource(key.group, key.resource)

    def _kind(self, tenant: str, ref: OwnerRef) -> ResourceDef | None:
        group, _ = split_api_version(ref.apiVersion)
        rdef = self._by_kind.get((group, ref.kind))  # the built-in kinds, the same in every tenant
        if rdef is None:
            defs = self.registry.for_tenant(tenant).defs
            rdef = next((d for d in defs if d.stored and d.group == group and d.kind == ref.kind), None)
            if rdef is not None and not rdef.crd:
                self._by_kind[(group, ref.kind)] = rdef
        return rdef

    def _namespaced_kind(self, tenant: str, ref: OwnerRef) -> bool:
        rdef = self._kind(tenant, ref)
        return rdef is not None and rdef.namespaced

    def owner_key(self, dependent: Key, ref: OwnerRef) -> Key | None:
        """Where the owner lives, or None when the reference cannot be resolved (a kind not served,
        or a namespaced owner of a cluster-scoped dependent: kube leaves such dependents alone).
        A namespaced owner is looked for in the dependent's namespace only."""
        rdef = self._kind(dependent.tenant, ref)
        if rdef is None or (rdef.namespaced and not dependent.namespace):
            return None
        return Key(dependent.tenant, rdef.group, rdef.plural, dependent.namespace if rdef.namespaced else "", ref.name)

    def _owner_state_now(self, dependent: Key, ref: OwnerRef) -> OwnerState:
        """The owner's state as the projection has it now (no wait). Unresolvable owners count as
        solid: the dependent is never collected for them."""
        key = self.owner_key(dependent, ref)
        if key is None:
            return "solid"
        entry = self.projection.get(key)
        if entry is None:
            return "dangling"
        view = gc_view(entry.data)
        if view is None or view.uid != ref.uid:
            return "dangling"
        return "waiting" if view.foreground else "solid"

    async def _owner_state(self, dependent: Key, ref: OwnerRef) -> OwnerState:
        """As :meth:`_owner_state_now`, but an absent owner is confirmed against the log's head (a
        consistent read), so an owner created on another gateway is never taken for absent."""
        state = self._owner_state_now(dependent, ref)
        if state == "dangling":
            await self.projection.consistent()
            state = self._owner_state_now(dependent, ref)
        return state

    # ---- following the log -------------------------------------------------------------------------

    def enqueue(self, task: Task, key: Key) -> None:
        self.queue.add((task, key))  # dropped when full: the next resync finds it again

    def _needs_attempt(self, key: Key, owners: tuple[OwnerRef, ...]) -> bool:
        return any(self._owner_state_now(key, ref) != "solid" for ref in owners)

    def observe(self, key: Key, view: GcView | None) -> None:
        """Fold one object's new state (None: deleted) into the index and queue what it calls for."""
        before = self.index.set(key, () if view is None else view.owners)
        if view is None:
            return
        if view.deleting:
            if view.foreground or view.orphaning:
                self.enqueue("owner", key)
            return
        if view.owners and self._needs_attempt(key, view.owners):
            self.enqueue("attempt", key)
        if not key.namespace and any(self._namespaced_kind(key.tenant, ref) for ref in view.owners if ref not in before):
            self.enqueue("invalid-ref", key)
        # References dropped (an orphaning owner's, or a waiting owner's): that owner may be done.
        for ref in set(before) - set(view.owners):
            owner = self.owner_key(key, ref)
            if owner is not None:
                self.enqueue("owner", owner)

    def on_change(self, tenant: str, group: str, resource: str, ch: Change) -> None:
        key = Key(tenant, group, resource, ch.namespace, ch.name)
        data = ch.entry.data
        if ch.type == DELETED:
            before = self.index.set(key, ())
            view = gc_view(data)
            if view is not None:
                # Its dependents may have lost their last owner.
                for dep in self.index.dependents(tenant, view.uid):
                    self.enqueue("attempt", dep)
            # An owner deleting in the foreground may have waited for this one.
            for ref in before:
                owner = self.owner_key(key, ref)
                if owner is not None:
                    self.enqueue("owner", owner)
            return
        if not _might_matter(data) and not self.index.owners(key):
            return
        self.observe(key, gc_view(data))

    def resync(self) -> None:
        """Rebuild the index from the projection's state and queue every object with work left (at
        start, this resumes what a stopped collector left undone)."""
        self.index.clear()
        for (tenant, group, resource), st in list(self.projection.store.resources.items()):
            for ns, name, entry in list(st.iter_entries(None)):
                if _might_matter(entry.data):
                    self.observe(Key(tenant, group, resource, ns, name), gc_view(entry.data))

    @property
    def resync_after_loss(self) -> int:
        """Resyncs made because the change feed dropped changes."""
        return self.feed.resyncs if self.feed is not None else 0

    def subscribe(self) -> ChangeFeed:
        self.feed = self.projection.feed(self.feed_size, accept=_wants)
        return self.feed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        changes = self.subscribe()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            nursery.start_soon(every, self.resync_s, self.resync)
            nursery.start_soon(self._retry_loop)
            self.resync()
            task_status.started()
            while True:
                task, key = await self.queue.get()
                try:
                    if task == "attempt":
                        await self.attempt_delete(key)
                    elif task == "owner":
                        await self.process_owner(key)
                    else:
                        await self.report_invalid_refs(key)
                except (ApiError, BusError, trio.TooSlowError) as e:  # the log may be down: retried
                    log.warning("garbage collection of %s failed: %s; will retry", key, e)
                    if len(self._retry) < self.queue.size:
                        self._retry.add((task, key))

    async def _retry_loop(self) -> NoReturn:
        """Failed items go back in the queue after ``retry_s``: one timer for all of them."""
        while True:
            await trio.sleep(self.retry_s)
            retry, self._retry = self._retry, set()
            for task, key in retry:
                self.enqueue(task, key)

    async def _follow(self, changes: ChangeFeed) -> None:
        """Handle every change sent; after a change was lost, resync from the projection's state as
        soon as the channel is drained (:meth:`ChangeFeed.follow`: the resync comes after the changes
        still queued, so the index it builds is not overwritten by them)."""
        await changes.follow(lambda key, ch: self.on_change(*key, ch), self.resync, name="the garbage collector")

    # ---- acting ------------------------------------------------------------------------------------

    def _current(self, key: Key) -> tuple[int, dict[str, Any], GcView] | None:
        entry = self.projection.get(key)
        if entry is None:
            return None
        view = gc_view(entry.data)
        if view is None:
            return None
        return entry.seq, msgspec.json.decode(entry.data), view

    async def attempt_delete(self, key: Key) -> None:
        """A dependent: delete it when no solid owner is left; else drop the references to owners
        that are absent or waiting for their dependents."""
        cur = self._current(key)
        if cur is None:
            return
        seq, obj, view = cur
        if view.deleting:
            if view.foreground or view.orphaning:
                self.enqueue("owner", key)
            return
        if not view.owners:
            return
        states = [(ref, await self._owner_state(key, ref)) for ref in view.owners]
        if any(s == "solid" for _, s in states):
            gone = {ref.uid for ref, s in states if s != "solid"}
            if gone:
                await self._set_owner_references(key, seq, obj, gone)
            return
        if any(s == "waiting" for _, s in states) and self.index.dependents(key.tenant, view.uid):
            policy = "Foreground"
        elif FINALIZER_ORPHAN in view.finalizers:
            policy = "Orphan"
        elif FINALIZER_FOREGROUND in view.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        rdef = self._rdef(key)
        if rdef is None:
            return
        await self._ask(self._request("delete", rdef, key, body=None, options=Delete(
            propagation_policy=policy, preconditions=Preconditions(uid=view.uid, resource_version=str(seq)))))

    async def process_owner(self, key: Key) -> None:
        """An owner being deleted with the ``orphan`` or ``foregroundDeletion`` finalizer."""
        cur = self._current(key)
        if cur is None:
            return
        seq, obj, view = cur
        if not view.deleting:
            return
        deps = self.index.dependents(key.tenant, view.uid)
        if view.orphaning:
            for dep in deps:
                dcur = self._current(dep)
                if dcur is not None and any(r.uid == view.uid for r in dcur[2].owners):
                    await self._set_owner_references(dep, dcur[0], dcur[1], {view.uid})
            if any(self._still_owned(dep, view.uid) for dep in deps):
                return  # a dependent changed under us: its change requeues this owner
            await self._remove_finalizer(key, seq, obj, FINALIZER_ORPHAN)
        elif view.foreground:
            blocking = False
            for dep in deps:
                dcur = self._current(dep)
                if dcur is None:
                    continue
                ref = next((r for r in dcur[2].owners if r.uid == view.uid), None)
                if ref is None:
                    continue
                blocking = blocking or bool(ref.blockOwnerDeletion)
                if not dcur[2].deleting:
                    self.enqueue("attempt", dep)
            if not blocking:
                await self._remove_finalizer(key, seq, obj, FINALIZER_FOREGROUND)

    async def report_invalid_refs(self, key: Key) -> None:
        """kube's ``OwnerRefInvalidNamespace`` warning: a cluster-scoped dependent naming an owner of
        a namespaced kind (never collected for it). One Event per (dependent, owner) pair: its name
        is derived from both uids, so every collector writes the same one once."""
        cur = self._current(key)
        ev_def = self.registry.by_resource("", "events")
        rdef = self._rdef(key)
        if cur is None or ev_def is None or rdef is None:
            return
        _, obj, view = cur
        for ref in view.owners:
            if not self._namespaced_kind(key.tenant, ref):
                continue
            body = invalid_namespace_event(rdef, obj, ref, now_rfc3339())
            req = self._request("create", ev_def, Key(key.tenant, "", "events", body["metadata"]["namespace"], ""),
                                body=body)
            try:
                await self.resource.ask(req, timeout_s=30)
            except (AlreadyExists, Forbidden, NotFound):
                pass

    def _still_owned(self, dep: Key, uid: str) -> bool:
        cur = self._current(dep)
        return cur is not None and any(r.uid == uid for r in cur[2].owners)

    async def _set_owner_references(self, key: Key, seq: int, obj: dict[str, Any], drop: set[str]) -> None:
        meta = obj["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") not in drop]
        if refs:
            meta["ownerReferences"] = refs
        else:
            meta.pop("ownerReferences", None)
        await self._update(key, seq, obj)

    async def _remove_finalizer(self, key: Key, seq: int, obj: dict[str, Any], finalizer: str) -> None:
        meta = obj["metadata"]
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]
        if not meta["finalizers"]:
            del meta["finalizers"]
        await self._update(key, seq, obj)

    async def _update(self, key: Key, seq: int, obj: dict[str, Any]) -> None:
        rdef = self._rdef(key)
        if rdef is None:
            return
        obj["metadata"]["resourceVersion"] = str(seq)  # CAS: only against the state decided on
        await self._ask(self._request("update", rdef, key, body=obj))

    def _request(self, verb: str, rdef: ResourceDef, key: Key, *, body: Any,
                 options: Delete | None = None) -> Request:
        return Request(verb=verb, rdef=rdef, tenant=key.tenant, namespace=key.namespace, name=key.name, body=body,
                       options=options, user=self.user, audit_id=str(uuid.uuid4()), user_agent="jetkube-controller-manager/gc")

    async def _ask(self, req: Request) -> None:
        try:
            await self.resource.ask(req, timeout_s=30)
            self.actions += 1
        except (NotFound, Conflict):
            pass  # another collector (or the user) got there first; its change requeues what is left
