"""Controllers that follow the log, as kube-controller-manager's do.

- bootstrap: the namespaces every cluster starts with.
- serviceaccounts: every active namespace has a ``default`` ServiceAccount.
- namespaces: a terminating namespace is emptied, then finalized (its tombstone appended).

Every gateway replica runs them; CAS at the log makes concurrent replicas safe (a lost race is
an AlreadyExists or a no-op). They write through the resource actor as ``system:apiserver``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, NoReturn

import msgspec
import trio

from bus import BusError, Key, Registry
from projections import DELETED, Change, Projection, WatchFilter, parse_field_selector, parse_label_selector

from ._errors import AlreadyExists, ApiError, Conflict, Forbidden, NotFound
from ._runtime import Actor
from .messages import Request, UserInfo

log = logging.getLogger("jetkube.controllers")

SYSTEM_USER = UserInfo(name="system:apiserver", uid="system:apiserver", groups=("system:masters",))
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_ALL = WatchFilter(None, parse_label_selector(""), parse_field_selector(""))


class Controllers:
    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], *,
                 tenant: str = "default", queue_size: int = 10_000, resync_s: float = 60.0) -> None:
        self.projection = projection
        self.registry = registry
        self.resource = resource
        self.tenant = tenant
        self._queue: set[tuple[str, str]] = set()
        self._queue_size = queue_size
        self._wake = trio.Event()
        self.resync_s = resync_s
        ns_def = registry.by_resource("", "namespaces")
        sa_def = registry.by_resource("", "serviceaccounts")
        assert ns_def is not None and sa_def is not None
        self.ns_def, self.sa_def = ns_def, sa_def

    def _request(self, **kw: Any) -> Request:
        return Request(user=SYSTEM_USER, audit_id=str(uuid.uuid4()), user_agent="jetkube-controller-manager",
                       tenant=self.tenant, **kw)

    async def bootstrap(self) -> None:
        """Create the default namespaces that do not exist yet."""
        for ns in DEFAULT_NAMESPACES:
            if self.projection.get(Key(self.tenant, "", "namespaces", "", ns)) is not None:
                continue
            req = self._request(verb="create", rdef=self.ns_def, name=ns,
                                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            try:
                await self.resource.ask(req, timeout_s=30)
            except AlreadyExists:
                pass

    def enqueue(self, namespace: str) -> None:
        if len(self._queue) < self._queue_size:
            self._queue.add((self.tenant, namespace))
            self._wake.set()

    def on_change(self, ch: Change, tenant: str, group: str, resource: str) -> None:
        if tenant != self.tenant:
            return
        if group == "" and resource == "namespaces":
            if ch.type != DELETED:
                self.enqueue(ch.name)
        elif ch.namespace:
            ns = self.projection.get(Key(tenant, "", "namespaces", "", ch.namespace))
            if ns is not None and ns.fields.get("status.phase") == "Terminating" and ch.type == DELETED or group == "" and resource == "serviceaccounts" and ch.type == DELETED and ch.name == "default":
                self.enqueue(ch.namespace)

    def resync(self) -> None:
        st = self.projection.state(self.tenant, "", "namespaces")
        for _, name, _ in st.iter_entries(None):
            self.enqueue(name)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        changes = self.projection.subscribe_changes()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            nursery.start_soon(self._resync_loop)
            self.resync()
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    _, ns = self._queue.pop()
                    try:
                        await self.reconcile(ns)
                    except (ApiError, BusError, trio.TooSlowError) as e:  # the log may be down: retried
                        log.warning("reconcile of namespace %s failed: %s; will retry", ns, e)
                        nursery.start_soon(self._retry_later, ns)

    async def _retry_later(self, ns: str) -> None:
        await trio.sleep(1.0)
        self.enqueue(ns)

    async def _resync_loop(self) -> NoReturn:
        while True:
            await trio.sleep(self.resync_s)
            self.resync()

    async def _follow(self, changes: trio.MemoryReceiveChannel[tuple[tuple[str, str, str], Change]]) -> None:
        async for (tenant, group, resource), ch in changes:
            self.on_change(ch, tenant, group, resource)

    async def reconcile(self, ns: str) -> None:
        entry = self.projection.get(Key(self.tenant, "", "namespaces", "", ns))
        if entry is None:
            return
        if entry.fields.get("status.phase") == "Terminating":
            await self._empty_namespace(ns)
        else:
            await self._ensure_default_sa(ns)

    async def _ensure_default_sa(self, ns: str) -> None:
        if self.projection.get(Key(self.tenant, "", "serviceaccounts", ns, "default")) is not None:
            return
        req = self._request(verb="create", rdef=self.sa_def, namespace=ns,
                            body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
        try:
            await self.resource.ask(req, timeout_s=30)
        except (AlreadyExists, Forbidden, NotFound):
            pass  # another replica made it, or the namespace is going away

    async def _empty_namespace(self, ns: str) -> None:
        remaining = 0
        for rdef in self.registry.defs:
            if not rdef.namespaced:
                continue
            st = self.projection.state(self.tenant, rdef.group, rdef.plural)
            for _, name, e in list(st.iter_entries(ns)):
                remaining += 1
                if b'"deletionTimestamp"' in e.data and msgspec.json.decode(e.data)["metadata"].get(
                        "deletionTimestamp"):
                    continue  # waiting for its finalizers
                req = self._request(verb="delete", rdef=rdef, namespace=ns, name=name, body=None)
                try:
                    await self.resource.ask(req, timeout_s=30)
                except (NotFound, Conflict):
                    pass
        if remaining == 0:
            req = self._request(verb="finalize-namespace", rdef=self.ns_def, name=ns)
            try:
                await self.resource.ask(req, timeout_s=30)
            except (NotFound, Conflict):
                pass
