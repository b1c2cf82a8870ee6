"""kube's ValidatingAdmissionPolicy status controller (``pkg/controller/validatingadmissionpolicystatus``).

For a policy whose ``metadata.generation`` is ahead of ``status.observedGeneration``, type-check
its validations against the schemas of the kinds its ``matchConstraints`` name (kinds/_cel_types.py)
and write ``status.observedGeneration`` and ``status.typeChecking.expressionWarnings`` through
the status subresource. Every replica runs it: their writes race under CAS, the loser sees the
winner's status (observedGeneration caught up) on the next change and does nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

import msgspec
import trio

from bus import BusError, Key
from kinds import Registry
from kinds._admissionreg import policy_type_check, types_to_check
from kinds._errors import ApiError, Conflict, NotFound
from kinds._schemas import schema_for
from projections import DELETED, Change, ChangeFeed, Projection

from ._controllers import SYSTEM_USER
from ._runtime import Actor, WorkQueue, every
from .messages import Request

log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
PLURAL = "validatingadmissionpolicies"
CONTROLLER_NAME = "validatingadmissionpolicy-status-controller"
RESYNC_S = 300.0


def policy_status(policy: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """The status the controller writes for ``policy`` (pure: the registry's kinds and schemas)."""

    def schema_of(group: str, version: str, kind: str) -> Mapping[str, Any] | None:
        for d in registry.defs:
            if (d.group, d.version, d.kind) == (group, version, kind):
                return d.schema if d.crd else schema_for(d.group, d.version, d.kind)
        return None

    def resolve(group: str, version: str, resource: str) -> list[tuple[str, str, str, Mapping[str, Any]]]:
        d = registry.get(group, version, resource)
        if d is None:
            return []
        s = d.schema if d.crd else schema_for(d.group, d.version, d.kind)
        return [(d.group, d.version, d.kind, s)] if s else []

    spec = policy.get("spec") or {}
    params = None
    pk = spec.get("paramKind")
    if isinstance(pk, Mapping) and pk.get("apiVersion") and pk.get("kind"):
        group, _, version = str(pk["apiVersion"]).rpartition("/")
        params = schema_of(group, version, str(pk["kind"]))
    warnings = policy_type_check(spec, types_to_check(spec, resolve), params, schema_for("", "v1", "Namespace"))
    status: dict[str, Any] = {**(policy.get("status") or {}),
                              "observedGeneration": int((policy.get("metadata") or {}).get("generation") or 0)}
    # kube applies ``typeChecking{expressionWarnings}``; an empty list is dropped by its encoding.
    status["typeChecking"] = {"expressionWarnings": warnings} if warnings else {}
    return status


class PolicyStatusController:
    """Follows the policies of every tenant; writes their type-checking status."""

    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], *,
                 queue_size: int = 10_000) -> None:
        self.projection, self.registry, self.resource = projection, registry, resource
        self.rdef = registry.get(GROUP, "v1", PLURAL)
        self.queue: WorkQueue[tuple[str, str]] = WorkQueue(queue_size)
        #: Status writes made (for tests and metrics).
        self.written = 0

    def enqueue(self, tenant: str, name: str) -> None:
        self.queue.add((tenant, name))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        changes = self.projection.feed(
            accept=lambda key, ch: key[1:] == (GROUP, PLURAL) and ch.type != DELETED)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            self.resync()
            # A change lost from the full feed is repaired at once (ChangeFeed.follow); besides, a
            # periodic resync, as kube's informers.
            nursery.start_soon(every, RESYNC_S, self.resync)
            task_status.started()
            while True:
                tenant, name = await self.queue.get()
                try:
                    await self.reconcile(tenant, name)
                except (ApiError, BusError, trio.TooSlowError) as e:
                    log.warning("status of ValidatingAdmissionPolicy %s not written: %s; will retry", name, e)
                    nursery.start_soon(self.queue.add_later, (tenant, name), 1.0)

    def resync(self) -> None:
        for (tenant, group, resource), st in list(self.projection.store.resources.items()):
            if (group, resource) == (GROUP, PLURAL):
                for _ns, name, _entry in st.iter_entries(None):
                    self.enqueue(tenant, name)

    async def _follow(self, changes: ChangeFeed) -> None:
        """Every change; a change lost (the feed was full) resyncs once the feed is drained."""
        def on(key: tuple[str, str, str], ch: Change) -> None:
            if key[1:] == (GROUP, PLURAL) and ch.type != DELETED:
                self.enqueue(key[0], ch.name)
        await changes.follow(on, self.resync, name="the admission policy status controller")

    async def reconcile(self, tenant: str, name: str) -> None:
        entry = self.projection.get(Key(tenant, GROUP, PLURAL, "", name))
        if entry is None or self.rdef is None:
            return
        policy = msgspec.json.decode(entry.data)
        generation = int(policy["metadata"].get("generation") or 0)
        if generation <= int((policy.get("status") or {}).get("observedGeneration") or 0):
            return
        # Type checking builds message types from schemas (milliseconds): off the trio loop.
        # The tenant's kinds: a CRD's schema types its policies in that tenant only.
        status = await trio.to_thread.run_sync(policy_status, policy, self.registry.for_tenant(tenant))
        body = {**policy, "status": status, "metadata": {**policy["metadata"], "resourceVersion": str(entry.seq)}}
        req = Request(user=SYSTEM_USER, audit_id=str(uuid.uuid4()), user_agent=CONTROLLER_NAME, tenant=tenant,
                      verb="update", rdef=self.rdef, name=name, subresource="status", body=body)
        try:
            await self.resource.ask(req, timeout_s=30)
            self.written += 1
        except (Conflict, NotFound):
            pass  # changed or gone meanwhile: its change is (or was) queued again
