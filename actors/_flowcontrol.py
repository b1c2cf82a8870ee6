"""The flow-control stage: API Priority and Fairness between authentication and authorization.

The decisions are :mod:`._apf`'s (pure); this is the thin trio loop around them. A tenant's state
(its FlowSchemas and PriorityLevelConfigurations read from the projection, a QueueSet per level)
is created on demand, rebuilt when those objects change, bounded in number (``max_tenants``) and
dropped when idle. All tenants share the server's seats (``server_cl``, kube's
``--max-requests-inflight`` + ``--max-mutating-requests-inflight``); :class:`._apf.Dispatcher`
gives freed seats to the waiting tenant that holds fewest, so one tenant's flood cannot starve
another's requests.

:meth:`FlowControl.admit` runs in the gateway's task (as authentication does: a hop to an actor
costs more than the decision); the gateway must :meth:`FlowControl.release` what it was given when
the request completes, fails or its client goes away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec
import trio

from bus import ANY_TENANT, ROOT_TENANT
from kinds import FLOWCONTROL_GROUP
from kinds._errors import TooManyRequests
from projections import Projection, ResourceState

from ._apf import (
    OBJECTS_PER_SEAT,
    Attributes,
    Dispatcher,
    TenantFlow,
    Ticket,
    classify,
    estimate_seats,
    flow_distinguisher,
    flow_hash,
)
from .messages import Request

log = logging.getLogger("jetkube.flowcontrol")
REJECT_MESSAGE = "Too many requests, please try again later."


class Rejected(TooManyRequests):
    """Flow control's rejection (429 with ``Retry-After``). kube-apiserver's priority-and-fairness
    filter answers it with Go's ``http.Error``, in plain text, not as a ``Status``: gateway/_status.py
    ``status_for`` writes it so. (Other 429s, a PodDisruptionBudget's or a full mailbox's, are Statuses.)"""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(REJECT_MESSAGE, retry_after_s=retry_after_s)

_EMPTY = ResourceState(0)
_MUTATING = ("create", "update", "patch", "delete", "deletecollection")
CLASSIFY_CACHE = 4096  # remembered classifications (request attributes -> schema, level, flow)


def flow_tenant(tenant: str) -> str:
    """The tenant whose FlowSchemas, levels and seats a request of ``tenant`` is flow-controlled
    by: its own; for ``/clusters/*/`` (every tenant at once, open to root's system:masters only:
    the system controllers' reads, as kcp serves them on the shard to system identities), root's,
    with the real user, as kube classifies a system:masters request (the mandatory ``exempt``
    FlowSchema, unless root's configuration says otherwise). The APF metrics and dumps count them
    as root's, whose seats they hold; the request metrics keep the tenant ``*`` they were sent to."""
    return ROOT_TENANT if tenant == ANY_TENANT else tenant


class Admission:
    """What flow control decided for one request: the matched FlowSchema and level (their UIDs go
    on every response) and the seats held until :meth:`FlowControl.release`."""

    __slots__ = ("level_uid", "schema_uid", "started", "ticket")

    def __init__(self) -> None:
        self.schema_uid = ""
        self.level_uid = ""
        self.ticket: Ticket | None = None
        self.started = 0.0


class FlowControl:
    def __init__(self, projection: Projection, *, server_cl: int = 600, queue_wait_s: float = 15.0,
                 max_tenants: int = 10_000, idle_s: float = 300.0, adjust_s: float = 10.0) -> None:
        self.projection = projection
        self.dispatcher = Dispatcher(server_cl, max_tenants=max_tenants)
        self.queue_wait_s = queue_wait_s
        self.idle_s, self.adjust_s = idle_s, adjust_s
        self._events: dict[Ticket, trio.Event] = {}
        self._classified: dict[tuple[Any, ...], tuple[Any, tuple[str, str, str, int] | None]] = {}
        #: (tenant, priority_level, flow_schema) -> counts; and reason for rejections; wait times.
        self.dispatched: dict[tuple[str, str, str], int] = {}
        self.rejected: dict[tuple[str, str, str, str], int] = {}
        self._rejecting_until = -1.0
        self.on_wait: Callable[[tuple[str, str, str], bool, float], None] | None = None  # set by the gateway's metrics: (labels, executed, seconds) -> None
        #: The fleet's seat leases (actors/_apf_fleet.py ``SeatLeases``) when they are on: set by ``run_leases``.
        self.leases: Any = None

    # ---- configuration from the projection -------------------------------------------------------

    def _state(self, tenant: str, group: str, resource: str) -> ResourceState:
        """The projection's state, without allocating one for a tenant or kind it has never seen."""
        return self.projection.store.resources.get((tenant, group, resource)) or _EMPTY

    def _tenant(self, tenant: str) -> TenantFlow:
        fs = self._state(tenant, FLOWCONTROL_GROUP, "flowschemas")
        pl = self._state(tenant, FLOWCONTROL_GROUP, "prioritylevelconfigurations")
        version = (fs.ring[-1].seq if fs.ring else 0, fs.count, pl.ring[-1].seq if pl.ring else 0, pl.count)
        tf = self.dispatcher.tenants.get(tenant)
        if tf is not None and tf.version == version:
            return tf
        if tf is None and len(self.dispatcher.tenants) >= self.dispatcher.max_tenants:
            self.dispatcher.evict_idle(trio.current_time(), 0.0)
            if len(self.dispatcher.tenants) >= self.dispatcher.max_tenants:
                raise Rejected(1)
        schemas = [msgspec.json.decode(e.data) for _, _, e in fs.iter_entries(None)]
        plcs = [msgspec.json.decode(e.data) for _, _, e in pl.iter_entries(None)]
        tf = self.dispatcher.configure(tenant, version, schemas, plcs, trio.current_time())
        # New limits may start queued requests; a new queue shape may have rejected some.
        self._wake(self.dispatcher.dispatch(trio.current_time()))
        self._wake([t for t in self._events if t.state != "queued"])
        return tf

    def _seats(self, req: Request, cap: int) -> int:
        rdef = req.rdef
        if rdef is None or not (req.verb in ("list", "watch") or req.verb in _MUTATING):
            return 1
        if req.tenant == ANY_TENANT:  # a read across tenants returns every tenant's objects
            return self._seats_across(req, rdef.group, rdef.plural, cap)
        st = self._state(req.tenant, rdef.group, rdef.plural)
        objects = len(st.by_ns.get(req.namespace, ())) if rdef.namespaced and req.namespace else st.count
        q = req.query
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            limit = 0
        return estimate_seats(req.verb, objects=objects, limit=limit,
                              selector=bool(q.get("labelSelector") or q.get("fieldSelector")),
                              watchers=len(st.watchers), initial_events=q.get("sendInitialEvents") == "true",
                              cap=cap)

    def _seats_across(self, req: Request, group: str, resource: str, cap: int) -> int:
        """A list or watch across tenants: seats for the objects of every tenant (the list reads
        the store's tenants the same way), counted only until the cap is reached."""
        q = req.query
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            limit = 0
        selector = bool(q.get("labelSelector") or q.get("fieldSelector"))
        enough = cap * OBJECTS_PER_SEAT if selector or not limit else min(cap * OBJECTS_PER_SEAT, limit)
        objects = watchers = 0
        for (tenant, g, r), st in self.projection.store.resources.items():
            if (g, r) == (group, resource) and tenant != ANY_TENANT:
                objects += len(st.by_ns.get(req.namespace, ())) if req.namespace else st.count
                watchers += len(st.watchers)
                if objects >= enough:
                    break
        return estimate_seats(req.verb, objects=objects, limit=limit, selector=selector, watchers=watchers,
                              initial_events=q.get("sendInitialEvents") == "true", cap=cap)

    # ---- the request path -------------------------------------------------------------------------

    def _ticket(self, req: Request, adm: Admission) -> Ticket | None:
        """Classify ``req``: its ticket, the UIDs in ``adm``; None when flow control does not apply."""
        tenant = flow_tenant(req.tenant)
        tf = self._tenant(tenant)
        c = self._classify(tf, req)
        if c is None:
            return None  # no FlowSchema at all (bootstrap not done yet): not limited, as kube before config
        name, adm.schema_uid, level, flow = c
        qs = tf.levels.get(level)
        if qs is None:
            return None  # a dangling reference: kube rejects; we let it through rather than fail closed
        adm.level_uid = qs.cfg.uid
        return Ticket(tenant, name, adm.schema_uid, level, qs.cfg.uid, flow, self._seats(req, qs.max_seats),
                      trio.current_time())

    def rejecting(self) -> bool:
        """Whether flow control rejected a request in the last second (the gateway's gate, which
        answers rejections before the web framework, looks only then)."""
        return trio.current_time() < self._rejecting_until

    def refuse_nowait(self, req: Request, adm: Admission) -> int:
        """The gate's question, without waiting and without queueing: would :meth:`admit` reject
        ``req`` at once (its queue is full, or its Reject level has no room)? Then the rejection is
        counted as admit counts it and its Retry-After (s) returned, ``adm`` holding the UIDs for
        the headers; 0: not refused (``req`` goes to :meth:`admit`, ``adm`` is to be ignored)."""
        t = self._ticket(req, adm)
        if t is None or not self.dispatcher.refuse(t, t.arrived):
            return 0
        self._rejected((t.tenant, t.level, t.schema), t.reason, 0.0)
        return t.retry_after_s

    def _rejected(self, labels: tuple[str, str, str], reason: str, waited_s: float) -> None:
        self.rejected[(*labels, reason)] = self.rejected.get((*labels, reason), 0) + 1
        self._observe_wait(labels, False, waited_s)
        self._rejecting_until = trio.current_time() + 1.0

    async def admit(self, req: Request, adm: Admission) -> None:
        """Classify ``req``, then wait (bounded by ``queue_wait_s``) for its seats, recorded in
        ``adm``. Raises :class:`Rejected` (a 429 with Retry-After) when rejected; ``adm`` holds the UIDs
        either way. Cancelled while queued: it leaves the queue, nothing is held."""
        t = self._ticket(req, adm)
        if t is None:
            return
        now, level, name = t.arrived, t.level, t.schema
        labels = (t.tenant, level, name)
        started = self.dispatcher.admit(t, now)
        self._wake(started)
        queued = t.state == "queued"
        if queued:
            ev = self._events[t] = trio.Event()
            scope = trio.move_on_after(self.queue_wait_s)
            try:
                with scope:
                    await ev.wait()
            finally:
                self._events.pop(t, None)
                if t.state == "queued":  # timed out, or the client went away (cancelled)
                    self.dispatcher.withdraw(t, trio.current_time(),
                                             "time-out" if scope.cancelled_caught else "cancelled")
                    if not scope.cancelled_caught:
                        self.rejected[(*labels, "cancelled")] = self.rejected.get((*labels, "cancelled"), 0) + 1
        if t.state == "rejected":
            self._rejected(labels, t.reason, trio.current_time() - now)
            raise Rejected(t.retry_after_s)
        self.dispatched[labels] = self.dispatched.get(labels, 0) + 1
        # (seated at once: no time passed, no clock read)
        self._observe_wait(labels, True, trio.current_time() - now if queued else 0.0)
        adm.ticket = t

    def _classify(self, tf: TenantFlow, req: Request) -> tuple[str, str, str, int] | None:
        """(FlowSchema name, its UID, priority level, flow hash) for ``req``; None: no schema
        matches. Remembered per tenant config and request attributes (bounded): a flood repeats the
        same few, and matching 13 schemas' rules plus a hash per request showed in its profile."""
        user = req.user
        assert user is not None
        rdef = req.rdef
        # The path matters to non-resource rules only; a resource request's name is not classified.
        key = (tf.name, user.name, user.groups, req.verb, rdef.group if rdef is not None else None,
               rdef.plural if rdef is not None else "", req.subresource, req.namespace,
               "" if rdef is not None else req.path)
        hit = self._classified.get(key)
        if hit is not None and hit[0] == tf.version:
            return hit[1]
        resource = (rdef.plural + ("/" + req.subresource if req.subresource else "")) if rdef is not None else ""
        attrs = Attributes(user.name, user.groups, req.verb, rdef is not None, rdef.group if rdef else "",
                           resource, req.namespace, req.path)
        fs = classify(tf.schemas, attrs)
        out = None
        if fs is not None:
            name = fs["metadata"]["name"]
            level = ((fs.get("spec") or {}).get("priorityLevelConfiguration") or {}).get("name", "")
            out = (name, fs["metadata"].get("uid", ""), level, flow_hash(name, flow_distinguisher(fs, attrs)))
        if len(self._classified) >= CLASSIFY_CACHE:
            self._classified.clear()  # bounded; refilled by what is asked now
        self._classified[key] = (tf.version, out)
        return out

    def _observe_wait(self, labels: tuple[str, str, str], executed: bool, s: float) -> None:
        if self.on_wait is not None:
            self.on_wait(labels, executed, s)

    def release(self, adm: Admission) -> None:
        """Give back ``adm``'s seats (idempotent); starts whatever they let through."""
        t, adm.ticket = adm.ticket, None
        if t is not None:
            self._wake(self.dispatcher.finish(t, trio.current_time()))

    def redispatch(self) -> None:
        """Start what fits now (the fleet's seat leases changed)."""
        self._wake(self.dispatcher.dispatch(trio.current_time()))

    def _wake(self, tickets: list[Ticket]) -> None:
        for t in tickets:
            ev = self._events.get(t)
            if ev is not None:
                ev.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """kube's periodic borrowing adjustment, and idle tenants dropped."""
        task_status.started()
        while True:
            await trio.sleep(self.adjust_s)
            self.dispatcher.adjust()
            self._wake(self.dispatcher.dispatch(trio.current_time()))
            self.dispatcher.evict_idle(trio.current_time(), self.idle_s)


def _table(rows: list[list[str]]) -> str:
    """kube's tabwriter layout of the debug dumps: comma-terminated cells padded into columns."""
    cells = [[c + "," if i < len(r) - 1 else c for i, c in enumerate(r)] for r in rows]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(len(r) for r in cells))]
    return "".join(" ".join(c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)).rstrip() + "\n"
                   for r in cells)


def limit_source(fc: FlowControl, tenant: str, qs: Any) -> str:
    """Where a level's seat limit here comes from: ``exempt`` (none), ``local`` (this gateway's
    own), ``lease`` (leased from the fleet's budget), ``fixed-share`` (its owner unreachable or
    full, until the next grant: ``SeatLeases.on_fixed_share``) or ``lease-pending`` (no grant yet)."""
    d = fc.dispatcher
    if qs.cfg.exempt:
        return "exempt"
    if not d.leased(qs):
        return "local"
    leases = fc.leases
    key = (tenant, qs.cfg.name)
    if d.leases is None or key not in d.leases:
        return "lease-pending"
    if leases is not None and leases.on_fixed_share(key):
        return "fixed-share"
    return "lease"


def dump_priority_levels(fc: FlowControl, tenant: str) -> str:
    """``/debug/api_priority_and_fairness/dump_priority_levels`` for ``tenant``: kube's ten columns,
    then jetkube's ``CurrentLimitSeats`` (the seats this gateway may execute at the level now: leased
    from the fleet when leases are on, as ``apiserver_flowcontrol_current_limit_seats``) and
    ``LimitSource`` (:func:`limit_source`)."""
    rows = [["PriorityLevelName", "ActiveQueues", "IsIdle", "IsQuiescing", "WaitingRequests", "ExecutingRequests",
             "DispatchedRequests", "RejectedRequests", "TimedoutRequests", "CancelledRequests",
             "CurrentLimitSeats", "LimitSource"]]
    tf = fc.dispatcher.tenants.get(tenant)
    for name, qs in sorted(tf.levels.items()) if tf is not None else ():
        dispatched = sum(n for (t, lv, _), n in fc.dispatched.items() if t == tenant and lv == name)
        by_reason: dict[str, int] = {}
        for (t, lv, _, reason), n in fc.rejected.items():
            if t == tenant and lv == name:
                by_reason[reason] = by_reason.get(reason, 0) + n
        if qs.cfg.exempt:
            active = "<none>"
        else:
            active = str(qs.active)
        idle = not qs.executing_requests and not qs.queued_requests
        rows.append([name, active, str(idle).lower(), "false", str(qs.queued_requests), str(qs.executing_requests),
                     str(dispatched), str(by_reason.get("queue-full", 0) + by_reason.get("concurrency-limit", 0)),
                     str(by_reason.get("time-out", 0)), str(by_reason.get("cancelled", 0)),
                     "<none>" if qs.cfg.exempt else str(fc.dispatcher.seat_limit(tenant, qs)),
                     limit_source(fc, tenant, qs)])
    return _table(rows)


def dump_queues(fc: FlowControl, tenant: str) -> str:
    """``/debug/api_priority_and_fairness/dump_queues`` for ``tenant`` (kube's columns)."""
    rows = [["PriorityLevelName", "Index", "PendingRequests", "ExecutingRequests", "SeatsInUse", "NextDispatchR",
             "InitialSeatsSum", "MaxSeatsSum", "TotalWorkSum"]]
    tf = fc.dispatcher.tenants.get(tenant)
    for name, qs in sorted(tf.levels.items()) if tf is not None else ():
        if not qs.queues:
            rows.append([name, "<none>", "<none>", "<none>", "<none>", "<none>", "<none>", "<none>", "<none>"])
            continue
        for q in qs.queues:
            seats = q.queued_seats
            rows.append([name, str(q.index), str(len(q.requests)), str(q.executing_requests), str(q.executing_seats),
                         f"{q.next_r:.8f}ss", str(seats), str(seats), f"{seats * qs.service_s:.8f}ss"])
    return _table(rows)


#: kube's APF debug handlers, by path (served to a nonResourceURL get, flow-controlled and authorized).
APF_DUMPS = {"/debug/api_priority_and_fairness/dump_priority_levels": dump_priority_levels,
             "/debug/api_priority_and_fairness/dump_queues": dump_queues}
