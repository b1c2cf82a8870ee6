"""RBAC's controllers on the log: the bootstrap policy and ClusterRole aggregation.

- Bootstrap (kube-apiserver's ``rbac/bootstrap-roles`` post-start hook): at every start the
  bootstrap ClusterRoles and ClusterRoleBindings are created when missing and reconciled without
  clobbering user changes (:mod:`._bootstrap_policy`).
- Aggregation (``pkg/controller/clusterroleaggregation``): every ClusterRole with an
  ``aggregationRule`` gets, as its rules, the rules of the ClusterRoles its selectors pick (sorted
  by name, itself skipped), without duplicates; any ClusterRole change re-checks every aggregated
  role.

Every gateway replica runs them (as the namespace controllers); they write through the resource
actor as ``system:apiserver`` with CAS, so a lost race between replicas is a conflict that the
next change (or the periodic resync) settles.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, NoReturn

import msgspec
import trio

from bus import ROOT_TENANT, BusError, Key
from kinds import Registry
from kinds._errors import AlreadyExists, ApiError, Conflict, NotFound
from projections import (
    RBAC_GROUP,
    Change,
    ChangeFeed,
    Projection,
    ProjectionError,
    Rule,
    SelectorError,
    parse_label_selector,
)

from ._authz import _uncovered
from ._bootstrap_policy import cluster_role_bindings, cluster_roles, reconcile_binding, reconcile_role
from ._controllers import SYSTEM_USER
from ._runtime import Actor, every
from .messages import Create, Request, Update

log = logging.getLogger("jetkube.controllers.rbac")
AGGREGATION_MANAGER = "clusterrole-aggregation-controller"
MAX_AGGREGATION_PASSES = 8


def selector_string(sel: dict[str, Any]) -> str:
    """A metav1.LabelSelector as the selector syntax :func:`parse_label_selector` reads."""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise SelectorError(f"{op!r} is not a valid label selector operator")
    return ",".join(parts)


def aggregated_rules(name: str, selectors: list[dict[str, Any]], roles: dict[str, tuple[dict[str, str],
                     list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The rules of the aggregated ClusterRole ``name``: for each selector in turn, the rules of the
    roles it picks, sorted by name, ``name`` itself skipped; each rule once (``syncClusterRole``)."""
    out: list[dict[str, Any]] = []
    for sel in selectors:
        try:
            s = parse_label_selector(selector_string(sel))
        except SelectorError:
            continue
        for other in sorted(roles):
            if other == name:
                continue
            labels, rules = roles[other]
            if s.matches(labels):
                for r in rules:
                    if r not in out:
                        out.append(r)
    return out


class RbacControllers:
    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], *,
                 tenant: str = ROOT_TENANT, resync_s: float = 60.0) -> None:
        self.projection = projection
        self.resource = resource
        self.tenant = tenant
        self.resync_s = resync_s
        cr = registry.by_resource(RBAC_GROUP, "clusterroles")
        crb = registry.by_resource(RBAC_GROUP, "clusterrolebindings")
        assert cr is not None and crb is not None
        self.cr_def, self.crb_def = cr, crb
        self._wake = trio.Event()
        #: The bootstrap policy was reconciled once since start (retried until it is).
        self.bootstrapped = False

    def _request(self, **kw: Any) -> Request:
        return Request(user=SYSTEM_USER, audit_id=str(uuid.uuid4()), user_agent="jetkube-rbac-bootstrap",
                       tenant=self.tenant, **kw)

    def _get(self, resource: str, name: str) -> dict[str, Any] | None:
        entry = self.projection.get(Key(self.tenant, RBAC_GROUP, resource, "", name))
        return None if entry is None else msgspec.json.decode(entry.data)

    async def _write(self, rdef: Any, current: dict[str, Any] | None, new: dict[str, Any], *,
                     manager: str = "") -> None:
        name = new["metadata"]["name"]
        if current is None:
            req = self._request(verb="create", rdef=rdef, body=new, options=Create(field_manager=manager))
        else:
            req = self._request(verb="update", rdef=rdef, name=name, body=new, options=Update(field_manager=manager))
        try:
            await self.resource.ask(req, timeout_s=30)
        except (AlreadyExists, Conflict, NotFound):
            pass  # another replica was first; its write is a change that brings us back here

    async def bootstrap(self) -> None:
        """Create or reconcile the bootstrap policy, then aggregate (ready means complete). A log
        that fails meanwhile leaves it to :meth:`run`, which retries until it is done."""
        try:
            await self._bootstrap()
            self.bootstrapped = True
        except (ApiError, BusError, ProjectionError, trio.TooSlowError) as e:
            log.warning("RBAC bootstrap policy incomplete: %s; retrying", e)

    async def _bootstrap(self) -> None:
        await self.projection.consistent()

        def covered(have: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
            return not _uncovered([Rule(h) for h in have if isinstance(h, dict)], want)

        for expected in cluster_roles():
            current = self._get("clusterroles", expected["metadata"]["name"])
            new = reconcile_role(current, expected, covered)
            if new is not None:
                await self._write(self.cr_def, current, new)
        for expected in cluster_role_bindings():
            current = self._get("clusterrolebindings", expected["metadata"]["name"])
            new = reconcile_binding(current, expected)
            if new is not None:
                await self._write(self.crb_def, current, new)
        await self.aggregate()

    async def aggregate(self) -> None:
        """Bring every aggregated ClusterRole's rules up to date. Aggregated roles may aggregate
        each other (admin <- edit <- view): passes repeat until one writes nothing (a write is
        applied to the local projection before it is answered, so each pass sees the last one's)."""
        for _ in range(MAX_AGGREGATION_PASSES):
            if not await self._aggregate_once():
                return
        log.warning("ClusterRole aggregation did not settle after %d passes (aggregation rules that select each "
                    "other?); the next ClusterRole change continues it", MAX_AGGREGATION_PASSES)

    async def _aggregate_once(self) -> bool:
        st = self.projection.state(self.tenant, RBAC_GROUP, "clusterroles")
        objs = {name: msgspec.json.decode(e.data) for _, name, e in st.iter_entries(None)}
        roles = {name: ((o.get("metadata") or {}).get("labels") or {},
                        [r for r in o.get("rules") or [] if isinstance(r, dict)]) for name, o in objs.items()}
        wrote = False
        for name, obj in objs.items():
            agg = obj.get("aggregationRule")
            if not isinstance(agg, dict):
                continue
            rules = aggregated_rules(name, list(agg.get("clusterRoleSelectors") or []), roles)
            if rules == (obj.get("rules") or []):
                continue
            await self._write(self.cr_def, obj, {**obj, "rules": rules}, manager=AGGREGATION_MANAGER)
            roles[name] = (roles[name][0], rules)
            wrote = True
        return wrote

    async def run(self, *, changes: ChangeFeed | None = None,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """``changes``: the projection's changes (a tenant's only, from the tenancy controller);
        None: subscribe to all of them."""
        if changes is None:
            changes = self.projection.feed(
                accept=lambda key, _: key == (self.tenant, RBAC_GROUP, "clusterroles"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            nursery.start_soon(every, self.resync_s, lambda: self._wake.set())
            task_status.started()
            while not self.bootstrapped:
                await trio.sleep(1.0)  # backoff against a log that failed the bootstrap at start
                await self.bootstrap()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                try:
                    await self.aggregate()
                except (ApiError, BusError, trio.TooSlowError) as e:  # the log may be down: retried
                    log.warning("ClusterRole aggregation failed: %s; will retry", e)
                    nursery.start_soon(self._retry_later)

    async def _retry_later(self) -> None:
        await trio.sleep(1.0)
        self._wake.set()

    async def _follow(self, changes: ChangeFeed) -> None:
        """A ClusterRole changed: aggregate again; a change lost (the feed was full): the same, once
        the feed is drained (aggregation looks at every ClusterRole)."""
        def on(key: tuple[str, str, str], _: Change) -> None:
            if key == (self.tenant, RBAC_GROUP, "clusterroles"):
                self._wake.set()
        await changes.follow(on, self._wake.set, name=f"ClusterRole aggregation of tenant {self.tenant}")
