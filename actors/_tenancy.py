"""Tenants as logical clusters (kcp's model): ``tenancy.jetkube.io/v1alpha1 LogicalCluster``.

A tenant exists when the root tenant holds a LogicalCluster of its name (root always exists).

- :func:`tenant_exists`: the gateway's check, once per request, before anything is read or
  allocated for the tenant (an unknown tenant is a 404).
- :class:`TenancyAdmission`: LogicalClusters are created in root only, under a name that is a DNS
  label and not reserved; a create gets the tenancy finalizer, its creator (the owner annotation)
  and ``status.phase: Initializing``.
- :class:`Tenancy`: the controller. For every LogicalCluster it runs the per-tenant controllers
  (namespaces, service accounts, root CA, legacy tokens, RBAC bootstrap policy and aggregation:
  root's run in the pipeline), bootstraps the tenant (namespaces, policy, the creator's
  ``cluster-admin`` binding) and sets ``status.phase: Ready``. A LogicalCluster being deleted has
  its controllers stopped and its tenant emptied (every object deleted, namespaces finalized once
  empty), then its finalizer removed, as namespace deletion does.
"""

from __future__ import annotations

import logging
import re
import uuid
from functools import partial
from typing import Any, NoReturn

import msgspec
import trio

from bus import ROOT_TENANT, BusError, Key
from kinds import LOGICAL_CLUSTERS, NAMESPACES, TENANCY_GROUP, Registry
from kinds._errors import AlreadyExists, ApiError, Cause, Conflict, Forbidden, NotFound, invalid
from projections import Change, ChangeFeed, Projection, ProjectionError

from ._controllers import SYSTEM_USER, Controllers
from ._rbac_controllers import RbacControllers
from ._runtime import Actor, every
from ._tokens import SigningKey
from .messages import FINALIZE, Request

log = logging.getLogger("jetkube.tenancy")

#: Held by every LogicalCluster until its tenant is empty.
TENANT_FINALIZER = "tenancy.jetkube.io/logicalcluster"
#: The user who created a LogicalCluster (bound to ``cluster-admin`` in it).
OWNER_ANNOTATION = "tenancy.jetkube.io/owner"
#: The creator's binding in a new tenant.
ADMIN_BINDING = "tenancy.jetkube.io:admin"
#: Names no LogicalCluster may have: root's, and "default" (root's subject token, bus/_subjects.py).
RESERVED_NAMES = frozenset({ROOT_TENANT, "default"})
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_RBAC = "rbac.authorization.k8s.io"


def valid_tenant_name(name: str) -> bool:
    return len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None and name not in RESERVED_NAMES


def logical_cluster_key(name: str) -> Key:
    return Key(ROOT_TENANT, *LOGICAL_CLUSTERS, "", name)


async def tenant_exists(projection: Projection, tenant: str) -> bool:
    """Whether ``tenant`` exists: root, or a LogicalCluster in root (confirmed with a consistent
    read when this gateway does not have it yet: it may have been created through another one).
    Nothing is allocated for a tenant that does not exist."""
    if tenant == ROOT_TENANT:
        return True
    if not valid_tenant_name(tenant):
        return False
    key = logical_cluster_key(tenant)
    if projection.get(key) is not None:
        return True
    await projection.consistent()
    return projection.get(key) is not None


def tenant_terminating(projection: Projection, tenant: str) -> bool:
    """Whether ``tenant``'s LogicalCluster is being deleted: then everything in it goes, the
    namespaces kube keeps alive (``ResourceDef.immortal``) included, as in kcp."""
    if tenant == ROOT_TENANT:
        return False
    entry = projection.get(logical_cluster_key(tenant))
    if entry is None:
        return True  # gone already: what is left of it is being emptied
    return b'"deletionTimestamp"' in entry.data and bool(
        (msgspec.json.decode(entry.data).get("metadata") or {}).get("deletionTimestamp"))


def tenant_not_found(tenant: str) -> NotFound:
    return NotFound(f'logicalclusters.{TENANCY_GROUP} "{tenant}" not found', name=tenant, group=TENANCY_GROUP,
                    kind="logicalclusters")


class TenancyAdmission:
    """The LogicalCluster admission plugin (see the module's docstring)."""

    def admit(self, req: Request) -> Request:
        rdef = req.rdef
        if rdef is None or (rdef.group, rdef.plural) != LOGICAL_CLUSTERS:
            return req
        if req.tenant != ROOT_TENANT:
            raise Forbidden(f'logicalclusters.{TENANCY_GROUP} is forbidden: logical clusters live in the '
                            f'"{ROOT_TENANT}" logical cluster only', group=TENANCY_GROUP, kind="logicalclusters")
        if req.verb != "create" or not isinstance(req.body, dict):
            return req
        meta = req.body.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name")
        if isinstance(name, str) and name in RESERVED_NAMES:
            raise invalid("LogicalCluster", name, [Cause("FieldValueInvalid", f'Invalid value: "{name}": this name '
                                                   "is reserved", "metadata.name")], group=TENANCY_GROUP)
        finalizers = [f for f in meta.get("finalizers") or [] if f != TENANT_FINALIZER] + [TENANT_FINALIZER]
        annotations = {**(meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}),
                       OWNER_ANNOTATION: req.user.name if req.user is not None else ""}
        body = {**req.body, "metadata": {**meta, "finalizers": finalizers, "annotations": annotations},
                "status": {"phase": "Initializing"}}
        return msgspec.structs.replace(req, body=body)


class Tenancy:
    """The LogicalCluster controller (see the module's docstring). Every gateway runs it; writes
    are CAS at the log, so replicas racing each other lose harmlessly."""

    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], *,
                 root_ca_pem: str = "", signing_key: SigningKey | None = None, resync_s: float = 30.0,
                 max_tenants: int = 10_000, api_endpoint: tuple[str, int] = ("127.0.0.1", 6443),
                 first_ip: str = "10.96.0.1") -> None:
        self.projection, self.registry, self.resource = projection, registry, resource
        self.root_ca_pem, self.signing_key = root_ca_pem, signing_key
        #: For each tenant's ``kubernetes`` Service (the Controllers' own parameters).
        self.api_endpoint, self.first_ip = api_endpoint, first_ip
        self.resync_s = resync_s
        #: Per-tenant API Priority and Fairness objects (``ApfBootstrap``; set by the pipeline).
        self.apf: Any = None
        self.max_tenants = max_tenants
        lc = registry.by_resource(*LOGICAL_CLUSTERS)
        crb = registry.by_resource(_RBAC, "clusterrolebindings")
        ns = registry.by_resource(*NAMESPACES)
        assert lc is not None and crb is not None and ns is not None
        self.lc_def, self.crb_def, self.ns_def = lc, crb, ns
        #: Tenants whose controllers run: name -> the cancel scope that stops them.
        self.running: dict[str, trio.CancelScope] = {}
        #: Tenants being emptied.
        self.deleting: set[str] = set()
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        #: One subscription to the projection's changes, routed to each tenant's controllers (not
        #: one subscription per controller per tenant, which would offer every change to all).
        self._routes: dict[str, tuple[ChangeFeed, ...]] = {}

    def _request(self, tenant: str, **kw: Any) -> Request:
        return Request(user=SYSTEM_USER, audit_id=str(uuid.uuid4()), user_agent="jetkube-tenancy-controller",
                       tenant=tenant, **kw)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        changes = self.projection.feed(accept=self._wants)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._follow, changes)
            nursery.start_soon(every, self.resync_s, lambda: self._wake.set())
            self.reconcile()
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                self.reconcile()

    def _wants(self, key: tuple[str, str, str], ch: object) -> bool:
        """What :meth:`_follow` may act on (the projection sends nothing else): the root's logical
        clusters and every tenant's changes (the root's own controllers subscribe themselves)."""
        tenant = key[0]
        return tenant != ROOT_TENANT or key[1:] == LOGICAL_CLUSTERS

    async def _follow(self, changes: ChangeFeed) -> None:
        """Route each change to its tenant's controllers (a route full: a loss, which those
        controllers repair by resyncing once they have drained it: ``ChangeFeed``); a change lost
        here (this feed was full) may have been any tenant's: every route counts it lost, and the
        logical clusters are reconciled again."""
        def route(key: tuple[str, str, str], ch: Change) -> None:
            tenant, group, resource = key
            if tenant == ROOT_TENANT and (group, resource) == LOGICAL_CLUSTERS:
                self._wake.set()
            for feed in self._routes.get(tenant, ()):
                feed.offer((key, ch))

        def lost() -> None:
            self._wake.set()
            for feeds in self._routes.values():
                for feed in feeds:
                    feed.lose()

        await changes.follow(route, lost, name="the tenancy controller")

    def reconcile(self) -> None:
        """Start the controllers of new tenants, the emptying of deleted ones; stop what is gone."""
        assert self._nursery is not None
        st = self.projection.store.resources.get((ROOT_TENANT, *LOGICAL_CLUSTERS))
        present: set[str] = set()
        for _, name, entry in list(st.iter_entries(None)) if st is not None else ():
            present.add(name)
            meta = msgspec.json.decode(entry.data).get("metadata") or {}
            if meta.get("deletionTimestamp"):
                if name not in self.deleting:
                    scope = self.running.pop(name, None)
                    if scope is not None:
                        scope.cancel()
                    self.deleting.add(name)
                    self._nursery.start_soon(self._delete, name)
            elif name not in self.running and name not in self.deleting:
                if len(self.running) >= self.max_tenants:
                    log.warning("tenant %s not served: %d tenants run already", name, len(self.running))
                    continue
                scope = self.running[name] = trio.CancelScope()
                self._nursery.start_soon(self._serve, name, scope)
        for name in [n for n in self.running if n not in present]:
            self.running.pop(name).cancel()

    # ---- a tenant's life -----------------------------------------------------------------------

    async def _serve(self, name: str, scope: trio.CancelScope) -> None:
        with scope:
            # Routed from the start: what changes while the tenant bootstraps is not missed.
            rbac_feed, ctl_feed = ChangeFeed(10_000), ChangeFeed(10_000)
            routes = self._routes[name] = (rbac_feed, ctl_feed)
            try:
                rbac = RbacControllers(self.projection, self.registry, self.resource, tenant=name)
                ctl = Controllers(self.projection, self.registry, self.resource, tenant=name,
                                  root_ca_pem=self.root_ca_pem, signing_key=self.signing_key,
                                  api_endpoint=self.api_endpoint, first_ip=self.first_ip)
                await rbac.bootstrap()
                await ctl.bootstrap()
                while self.apf is not None and not await self.apf.ensure(name):
                    await trio.sleep(1.0)  # the log failed: retried, as the rest of the bootstrap
                while True:
                    try:
                        await self._admin_binding(name)
                        await self._set_phase(name, "Ready")
                        break
                    except (ApiError, BusError, ProjectionError, trio.TooSlowError) as e:
                        log.warning("bootstrap of tenant %s incomplete: %s; retrying", name, e)
                        await trio.sleep(1.0)
                async with trio.open_nursery() as nursery:
                    await nursery.start(partial(rbac.run, changes=rbac_feed))
                    await nursery.start(partial(ctl.run, changes=ctl_feed))
            finally:
                if self._routes.get(name) is routes:
                    del self._routes[name]

    def _lc(self, name: str) -> dict[str, Any] | None:
        entry = self.projection.get(logical_cluster_key(name))
        return None if entry is None else msgspec.json.decode(entry.data)

    async def _admin_binding(self, name: str) -> None:
        lc = self._lc(name)
        owner = ((lc or {}).get("metadata") or {}).get("annotations", {}).get(OWNER_ANNOTATION)
        if not owner or self.projection.get(Key(name, _RBAC, "clusterrolebindings", "", ADMIN_BINDING)):
            return
        body = {"apiVersion": f"{_RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": ADMIN_BINDING},
                "roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": _RBAC, "kind": "User", "name": owner}]}
        try:
            await self.resource.ask(self._request(name, verb="create", rdef=self.crb_def, body=body), timeout_s=30)
        except AlreadyExists:
            pass

    async def _set_phase(self, name: str, phase: str) -> None:
        lc = self._lc(name)
        if lc is None or (lc.get("status") or {}).get("phase") == phase:
            return
        if (lc.get("metadata") or {}).get("deletionTimestamp") and phase != "Terminating":
            return  # a tenant being deleted is never Ready again
        req = self._request(ROOT_TENANT, verb="update", rdef=self.lc_def, name=name,
                            body={**lc, "status": {**(lc.get("status") or {}), "phase": phase}})
        try:
            await self.resource.ask(req, timeout_s=30)
        except (Conflict, NotFound):
            pass  # changed meanwhile: that change brings us back

    # ---- deletion ------------------------------------------------------------------------------

    async def _delete(self, name: str) -> None:
        try:
            await self._set_phase(name, "Terminating")
        except (ApiError, BusError, trio.TooSlowError):
            pass
        while True:
            try:
                if await self._empty_once(name) == 0:
                    await self._finalize(name)
                    self.projection.store.prune(name)
                    return
            except (ApiError, BusError, ProjectionError, trio.TooSlowError) as e:
                log.warning("emptying tenant %s: %s; retrying", name, e)
            await trio.sleep(0.5)  # a backoff between passes (each pass deletes what it can)

    async def _empty_once(self, name: str) -> int:
        """Delete what is left in the tenant: every object, then each namespace once it is empty.
        Returns how many objects were still there."""
        remaining = 0
        in_ns: dict[str, int] = {}
        namespaces: list[tuple[str, dict[str, Any]]] = []
        for (tenant, group, plural), st in list(self.projection.store.resources.items()):
            if tenant != name or not st.count:
                continue
            rdef = self.registry.for_tenant(name).by_resource(group, plural)  # its CRDs' kinds too
            for ns, obj_name, e in list(st.iter_entries(None)):
                remaining += 1
                if (group, plural) == NAMESPACES:
                    namespaces.append((obj_name, msgspec.json.decode(e.data)))
                    continue
                if ns:
                    in_ns[ns] = in_ns.get(ns, 0) + 1
                if rdef is None or (b'"deletionTimestamp"' in e.data and (
                        msgspec.json.decode(e.data).get("metadata") or {}).get("deletionTimestamp")):
                    continue  # waiting for its finalizers (or a kind this gateway does not serve)
                req = self._request(name, verb="delete", rdef=rdef, namespace=ns, name=obj_name, body=None)
                try:
                    await self.resource.ask(req, timeout_s=30)
                except (NotFound, Conflict):
                    pass
        for ns_name, obj in namespaces:
            terminating = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
            if not terminating:
                verb = "delete"
            elif not in_ns.get(ns_name):
                verb = FINALIZE
            else:
                continue
            try:
                await self.resource.ask(self._request(name, verb=verb, rdef=self.ns_def, name=ns_name, body=None),
                                        timeout_s=30)
            except (NotFound, Conflict):
                pass
        return remaining

    async def _finalize(self, name: str) -> None:
        lc = self._lc(name)
        if lc is None:
            self.deleting.discard(name)
            return
        meta = lc.get("metadata") or {}
        body = {**lc, "metadata": {**meta, "finalizers": [f for f in meta.get("finalizers") or []
                                                            if f != TENANT_FINALIZER]}}
        await self.resource.ask(self._request(ROOT_TENANT, verb="update", rdef=self.lc_def, name=name, body=body),
                                timeout_s=30)
        self.deleting.discard(name)
