"""The resource quota controller: kube-controller-manager's, as a follower of the log.

ResourceQuota admission charges ``status.used`` with compare-and-swap before the object is
appended; a write that fails after its charge (a conflict, AlreadyExists, a webhook or policy
denial, a lost log) leaves the charge behind, and so does a delete that fails after its refund in
the other direction. This controller recomputes ``status.used`` of each quota from the objects
the projection holds (kube's ``syncResourceQuota``), so such leaks are returned:

- a new quota (or a new key in ``spec.hard``) gets ``status.hard`` and the usage of the keys not
  yet in ``status.used`` at once (nothing can be charged to a key that is absent: no charge in
  flight can be lost by writing it);
- a key whose recorded usage differs from the recount is corrected only once the quota has been
  left alone for ``settle_s`` (the longest a write may take: the request timeout). A charge in
  flight is a write of the quota less than that long ago, whose object may not be appended yet;
  after that delay, every charge recorded in the quota's current version belongs to a write that
  has ended, so the recount (at a consistent read of the log) is exact. The correction is a CAS
  on the version the decision was made against: a charge landing meanwhile makes it start again.

Namespaces are rechecked when one of their quotas changes (the recheck falls due ``settle_s``
after the change), when an object of theirs is deleted or a pod ends (Succeeded, Failed: it no
longer counts, as kube's ``QuotaV1Pod``), and on a periodic resync of every quota (``resync_s``,
kube's ``--resource-quota-sync-period`` is 5 minutes). Work is bounded: one recount per namespace
at a time, at most ``queue_size`` namespaces waiting. Every gateway runs one; CAS makes two of
them writing the same correction harmless (the second finds nothing to do).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, NoReturn

import msgspec
import trio
import trio.lowlevel

from bus import BusError, Key
from kinds import Registry
from kinds._errors import ApiError
from kinds._quantity import parse_quantity
from projections import DELETED, Change, ChangeFeed, Projection, ProjectionError

from ._admission_plugins import _COUNTED, _POD_COMPUTE, _fmt, is_claim_usage, usage_of
from ._runtime import Stage, WorkQueue, every
from .messages import Request, UserInfo

log = logging.getLogger("jetkube.quota")

_QUOTAS = ("", "resourcequotas")
_decode = msgspec.json.decode
NsKey = tuple[str, str]  # (tenant, namespace)


class _Stale(Exception):
    """The quota changed after the recount was decided: decide again later."""


def kinds_of(hard: dict[str, Any]) -> set[tuple[str, str]]:
    """The (group, plural) whose objects a quota with these ``hard`` keys counts."""
    out: set[tuple[str, str]] = set()
    by_name = {v: k for k, v in _COUNTED.items()}
    for k in hard:
        if k.startswith("count/"):
            plural, _, group = k[len("count/"):].partition(".")
            out.add((group, plural))
        elif k in by_name:
            out.add(by_name[k])
        elif k in _POD_COMPUTE:
            out.add(("", "pods"))
        elif is_claim_usage(k):
            out.add(("", "persistentvolumeclaims"))
    return out


#: Objects recounted between two checkpoints (about 100 us each: a recount never holds the loop long).
RECOUNT_BATCH = 256


async def recount(projection: Projection, tenant: str, namespace: str, hard: dict[str, Any]) -> dict[str, Any]:
    """The usage of each ``hard`` key from the objects the projection holds in ``namespace`` (as
    they were when it was called: the entries are taken first, then decoded in batches).

    Objects marked for deletion do not count: admission's ResourceQuota refunds an object when the
    delete that marks it is accepted (kube keeps counting it until it is gone, and pods until their
    grace period ends); the recount agrees with the charges, or the two would undo each other."""
    total: dict[str, Any] = dict.fromkeys(hard, 0)
    entries = [(group, plural, entry) for group, plural in kinds_of(hard)
               for _ns, _name, entry in projection.state(tenant, group, plural).iter_entries(namespace)]
    for i, (group, plural, entry) in enumerate(entries):
        if i and i % RECOUNT_BATCH == 0:
            await trio.lowlevel.checkpoint()
        obj = _decode(entry.data)
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue  # refunded by the delete that marked it (admission's ResourceQuota)
        for k, v in usage_of(group, plural, obj).items():
            if k in total:
                total[k] += v
    return total


def _same(a: Any, b: Any) -> bool:
    return (parse_quantity(a) if isinstance(a, str) else a) == (parse_quantity(b) if isinstance(b, str) else b)


def corrected_status(quota: dict[str, Any], usage: dict[str, Any], *, settled: bool) -> tuple[
        dict[str, Any] | None, bool]:
    """The quota's status as the recount says it should be (None: already so), and whether a
    correction was held back because the quota is not settled yet."""
    hard = dict((quota.get("spec") or {}).get("hard") or {})
    status = quota.get("status") if isinstance(quota.get("status"), dict) else {}
    used = status.get("used") if isinstance(status.get("used"), dict) else {}
    new_used: dict[str, Any] = {}
    held = False
    for k in hard:
        if k not in used:
            new_used[k] = _fmt(usage.get(k, 0), k)
        elif _same(used[k], usage.get(k, 0)):
            new_used[k] = used[k]
        elif settled:
            new_used[k] = _fmt(usage.get(k, 0), k)
        else:
            new_used[k] = used[k]
            held = True
    if status.get("hard") == hard and used == new_used:
        return None, held
    return {**status, "hard": hard, "used": new_used}, held


class QuotaController:
    """Recounts ResourceQuota usage of every tenant (see the module docstring)."""

    def __init__(self, projection: Projection, registry: Registry, core: Any, user: UserInfo, *,
                 settle_s: float = 60.0, resync_s: float = 300.0, queue_size: int = 10_000) -> None:
        self.projection = projection
        self.registry = registry
        self.core = core  # the ResourceCore: its CAS retry loop writes the corrections
        self.user = user
        self.settle_s = settle_s
        self.resync_s = resync_s
        self._queue_size = queue_size
        self.queue: WorkQueue[NsKey] = WorkQueue(queue_size)
        # Rechecks due later (trio clock), and when each quota was last seen changing (its version).
        self._due: dict[NsKey, float] = {}
        self._due_wake = trio.Event()
        self._changed: dict[Key, tuple[int, float]] = {}
        #: Time spent recounting, for /metrics (jetkube_stage_duration_seconds).
        self.stage = Stage("quota-controller")
        self.corrections = 0

    # ---- what to look at ---------------------------------------------------------------------------

    def enqueue(self, nk: NsKey) -> None:
        self.queue.add(nk)

    def schedule(self, nk: NsKey, due: float) -> None:
        """Recheck ``nk`` at ``due`` (the earlier of two schedules wins)."""
        if due <= trio.current_time():
            self.enqueue(nk)
            return
        if (nk in self._due or len(self._due) < self._queue_size) and due < self._due.get(nk, float("inf")):
            self._due[nk] = due
            self._due_wake.set()

    def _has_quota(self, tenant: str, namespace: str) -> bool:
        return bool(self.projection.state(tenant, *_QUOTAS).by_ns.get(namespace))

    def wants(self, key: tuple[str, str, str], ch: Change) -> bool:
        """What :meth:`on_change` may act on (the projection sends nothing else): namespaced changes
        of ResourceQuotas, and of anything in a namespace that has one as the change is applied (one
        created later counts its namespace when it is first seen: ``_needs_fill``)."""
        tenant, group, resource = key
        return bool(ch.namespace) and ((group, resource) == _QUOTAS or self._has_quota(tenant, ch.namespace))

    def on_change(self, tenant: str, group: str, resource: str, ch: Change) -> None:
        if not ch.namespace:
            return
        nk = (tenant, ch.namespace)
        if (group, resource) == _QUOTAS:
            key = Key(tenant, *_QUOTAS, ch.namespace, ch.name)
            if ch.type == DELETED:
                self._changed.pop(key, None)
                return
            now = trio.current_time()
            self._changed[key] = (ch.seq, now)
            if self._needs_fill(ch.entry.data):
                self.enqueue(nk)
            else:
                self.schedule(nk, now + self.settle_s)
            return
        if not self._has_quota(tenant, ch.namespace):
            return
        if ch.type == DELETED or (group, resource) == ("", "pods") and _ended(ch):
            self.schedule(nk, self._settled_at(tenant, ch.namespace))

    @staticmethod
    def _needs_fill(data: bytes) -> bool:
        q = _decode(data)
        hard = (q.get("spec") or {}).get("hard") or {}
        status = q.get("status") or {}
        return status.get("hard") != hard or any(k not in (status.get("used") or {}) for k in hard)

    def _settled_at(self, tenant: str, namespace: str) -> float:
        """When every quota of the namespace will have been left alone for ``settle_s``."""
        due = trio.current_time()
        for name in self.projection.state(tenant, *_QUOTAS).sorted_names(namespace):
            seen = self._changed.get(Key(tenant, *_QUOTAS, namespace, name))
            if seen is not None:
                due = max(due, seen[1] + self.settle_s)
        return due

    def resync(self) -> None:
        """Every namespace with a quota, in every tenant: recounted once settled, and at once where
        a quota's status lacks its hard limits (as :meth:`on_change` does: a quota created while
        its change was lost from the feed is filled in at once, not a ``settle_s`` later)."""
        for (tenant, group, resource), st in list(self.projection.store.resources.items()):
            if (group, resource) != _QUOTAS:
                continue
            for ns, name, entry in st.iter_entries(None):
                key = Key(tenant, *_QUOTAS, ns, name)
                if key not in self._changed:
                    # Never seen changing here (this gateway just started): another gateway may
                    # have a charge in flight, so it counts as changed now.
                    self._changed[key] = (entry.seq, trio.current_time())
                if self._needs_fill(entry.data):
                    self.enqueue((tenant, ns))
                self.schedule((tenant, ns), self._settled_at(tenant, ns))

    # ---- acting ------------------------------------------------------------------------------------

    async def reconcile(self, tenant: str, namespace: str) -> None:
        """Recount every quota of the namespace; write the corrections that are due."""
        await self.projection.consistent()
        for name in list(self.projection.state(tenant, *_QUOTAS).sorted_names(namespace)):
            key = Key(tenant, *_QUOTAS, namespace, name)
            entry = self.projection.get(key)
            if entry is None:
                continue
            quota = _decode(entry.data)
            seen = self._changed.get(key)
            now = trio.current_time()
            if seen is None or seen[0] != entry.seq:
                seen = self._changed[key] = (entry.seq, now)
            settled = now - seen[1] >= self.settle_s
            usage = await recount(self.projection, tenant, namespace, dict((quota.get("spec") or {}).get("hard") or {}))
            # Invariant: the recount covers every object appended up to the consistent read above;
            # the write below is a CAS on ``entry.seq``, so a charge made since makes it start again.
            status, held = corrected_status(quota, usage, settled=settled)
            if held:
                self.schedule((tenant, namespace), seen[1] + self.settle_s)
            if status is not None:
                await self._write(key, entry.seq, status)

    async def _write(self, key: Key, seq: int, status: dict[str, Any]) -> None:
        rdef = self.registry.by_resource(*_QUOTAS)
        req = Request(verb="update", rdef=rdef, tenant=key.tenant, namespace=key.namespace, name=key.name,
                      subresource="status", user=self.user, audit_id=str(uuid.uuid4()),
                      user_agent="jetkube-controller-manager/resourcequota")

        async def decide(entry: Any, current: dict[str, Any] | None) -> Any:
            if entry is None or current is None or entry.seq != seq:
                raise _Stale  # a charge (or an edit) landed after the recount
            current["status"] = status
            current["metadata"].pop("resourceVersion", None)
            return ("put", current)

        try:
            await self.core.guaranteed_update(req, key, decide)
            self.corrections += 1
            log.info("resource quota %s/%s recounted: used %s", key.namespace, key.name, status["used"])
        except _Stale:
            self.enqueue((key.tenant, key.namespace))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        changes = self.projection.feed(accept=self.wants)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            nursery.start_soon(every, self.resync_s, self.resync)
            nursery.start_soon(self._timer)
            self.resync()
            task_status.started()
            while True:
                nk = await self.queue.get()
                t0 = trio.current_time()
                try:
                    await self.reconcile(*nk)
                except (ApiError, BusError, ProjectionError, trio.TooSlowError) as e:  # the log may be down
                    log.warning("quota recount of %s/%s failed: %s; will retry", nk[0], nk[1], e)
                    self.schedule(nk, trio.current_time() + 1.0)
                finally:
                    self.stage.latency.observe(trio.current_time() - t0)

    async def _follow(self, changes: ChangeFeed) -> None:
        """Every change; a change lost (the feed was full) resyncs once the feed is drained."""
        await changes.follow(lambda key, ch: self.on_change(*key, ch), self.resync, name="the quota controller")

    async def _timer(self) -> NoReturn:
        """Moves rechecks into the queue as they fall due."""
        while True:
            self._due_wake = trio.Event()
            now = trio.current_time()
            for nk, due in list(self._due.items()):
                if due <= now:
                    del self._due[nk]
                    self.enqueue(nk)
            nxt = min(self._due.values(), default=now + self.resync_s)
            with trio.move_on_at(nxt):
                await self._due_wake.wait()


def _ended(ch: Change) -> bool:
    """A pod that reached a terminal phase with this change."""
    def phase(entry: Any) -> Any:
        return None if entry is None else entry.fields.get("status.phase")
    return phase(ch.entry) in ("Succeeded", "Failed") and phase(ch.prev) not in ("Succeeded", "Failed")


__all__ = ["QuotaController", "corrected_status", "kinds_of", "recount"]
