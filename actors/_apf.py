"""API Priority and Fairness, the pure part (no trio, no I/O; time is an argument).

kube's design (KEP-1040, ``apiserver/pkg/util/flowcontrol``) re-expressed:

- :func:`classify`: the FlowSchema of lowest ``matchingPrecedence`` whose rules match (subjects and
  resource or non-resource rules), then its priority level and flow (schema, distinguisher).
- :class:`LevelConfig` / :func:`nominal_limits` / :func:`current_limits`: nominal concurrency from
  shares of the server's limit, and borrowing between levels within ``lendablePercent`` and
  ``borrowingLimitPercent`` (kube's fair-proportion split of the seats, recomputed every period).
- :class:`QueueSet`: fair queuing of one level: shuffle sharding (:func:`deal_hand`), a virtual
  clock, dispatch by the smallest virtual start + width x service time, queue length limits.
- :class:`Dispatcher`: every tenant's levels over one server seat budget. **Across tenants** one
  more level of fairness: while any tenant waits, freed seats go to the waiting tenant that holds
  the fewest seats, so a flooding tenant cannot keep more than its share while others wait (and,
  work-conserving, takes every seat while nobody else asks). And one seat is kept free for every
  tenant that asked recently (``reserve_s``) and holds none: a quiet tenant's request starts at
  once instead of waiting for one of a flooder's long requests to end (at most half the seats are
  kept so; a tenant holding seats on the fleet's other gateways gets none here).
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_SEATS = 10  # kube's MaximumSeatsLimit
OBJECTS_PER_SEAT = 100  # LIST work estimator
WATCHES_PER_SEAT = 10  # mutating work estimator
INITIAL_SERVICE_S = 0.003  # kube's initial estimate of a request's service time (G)
RETRY_AFTER_MAX_S = 32
RESERVE_S = 10.0  # a tenant that asked within this long has a seat kept free for it (see Dispatcher)


@dataclass(frozen=True)
class Attributes:
    """What classification looks at (kube's RequestDigest)."""

    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    api_group: str = ""
    resource: str = ""  # with its subresource: "pods/status"
    namespace: str = ""
    path: str = ""


def _sa_matches(user: str, namespace: str, name: str) -> bool:
    prefix = "system:serviceaccount:"
    if not user.startswith(prefix):
        return False
    ns, _, n = user[len(prefix):].partition(":")
    return ns == namespace and (name == "*" or n == name)


def subject_matches(subject: dict[str, Any], a: Attributes) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        name = (subject.get("user") or {}).get("name")
        return name == "*" or name == a.user
    if kind == "Group":
        name = (subject.get("group") or {}).get("name")
        return name == "*" or name in a.groups
    if kind == "ServiceAccount":
        sa = subject.get("serviceAccount") or {}
        return _sa_matches(a.user, str(sa.get("namespace", "")), str(sa.get("name", "")))
    return False


def _has(values: Iterable[str] | None, v: str) -> bool:
    values = list(values or ())
    return "*" in values or v in values


def resource_rule_matches(rule: dict[str, Any], a: Attributes) -> bool:
    if not (_has(rule.get("verbs"), a.verb) and _has(rule.get("apiGroups"), a.api_group)
            and _has(rule.get("resources"), a.resource)):
        return False
    if not a.namespace:
        return bool(rule.get("clusterScope"))
    return _has(rule.get("namespaces"), a.namespace)


def non_resource_rule_matches(rule: dict[str, Any], a: Attributes) -> bool:
    if not _has(rule.get("verbs"), a.verb):
        return False
    for url in rule.get("nonResourceURLs") or ():
        if url == "*" or url == a.path or (url.endswith("/*") and a.path.startswith(url[:-1])):
            return True
    return False


def schema_matches(spec: dict[str, Any], a: Attributes) -> bool:
    for rule in spec.get("rules") or ():
        if not any(subject_matches(s, a) for s in rule.get("subjects") or ()):
            continue
        if a.resource_request:
            if any(resource_rule_matches(r, a) for r in rule.get("resourceRules") or ()):
                return True
        elif any(non_resource_rule_matches(r, a) for r in rule.get("nonResourceRules") or ()):
            return True
    return False


def classify(schemas: list[dict[str, Any]], a: Attributes) -> dict[str, Any] | None:
    """The matching FlowSchema (``schemas`` sorted by :func:`schema_order`); None: none matches."""
    for fs in schemas:
        if schema_matches(fs.get("spec") or {}, a):
            return fs
    return None


def schema_order(fs: dict[str, Any]) -> tuple[int, str]:
    """kube's order: matchingPrecedence, then name."""
    return int((fs.get("spec") or {}).get("matchingPrecedence") or 1000), fs["metadata"]["name"]


def flow_distinguisher(fs: dict[str, Any], a: Attributes) -> str:
    dm = ((fs.get("spec") or {}).get("distinguisherMethod") or {}).get("type")
    if dm == "ByUser":
        return a.user
    if dm == "ByNamespace":
        return a.namespace
    return ""


def flow_hash(schema: str, distinguisher: str) -> int:
    """kube hashes (schema name, distinguisher) with FNV; any good 64-bit hash will do."""
    return int.from_bytes(hashlib.blake2b(f"{schema}\x00{distinguisher}".encode(), digest_size=8).digest(), "big")


def deal_hand(hash_value: int, deck: int, hand: int) -> list[int]:
    """Shuffle sharding (kube's ``shufflesharding.Dealer``): the hash read as a mixed-radix number
    over falling factorials picks ``hand`` distinct cards of ``deck``."""
    cards: list[int] = []
    for i in range(hand):
        radix = deck - i
        c = hash_value % radix
        hash_value //= radix
        for prev in sorted(cards):  # map the index among remaining cards to a card
            if c >= prev:
                c += 1
        cards.append(c)
    return cards


@dataclass(frozen=True)
class LevelConfig:
    name: str
    uid: str
    exempt: bool
    shares: int
    lendable_percent: int = 0
    borrowing_limit_percent: int | None = None
    reject: bool = False
    queues: int = 1
    hand_size: int = 1
    queue_length_limit: int = 0


def level_config(plc: dict[str, Any]) -> LevelConfig:
    meta, spec = plc.get("metadata") or {}, plc.get("spec") or {}
    name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
    if spec.get("type") == "Exempt":
        ex = spec.get("exempt") or {}
        return LevelConfig(name, uid, True, int(ex.get("nominalConcurrencyShares") or 0),
                           int(ex.get("lendablePercent") or 0))
    lim = spec.get("limited") or {}
    resp = lim.get("limitResponse") or {}
    q = resp.get("queuing") or {}
    ncs = lim.get("nominalConcurrencyShares")
    return LevelConfig(name, uid, False, 30 if ncs is None else int(ncs), int(lim.get("lendablePercent") or 0),
                       lim.get("borrowingLimitPercent"), resp.get("type") == "Reject",
                       int(q.get("queues") or 64), int(q.get("handSize") or 8), int(q.get("queueLengthLimit") or 50))


def nominal_limits(levels: Iterable[LevelConfig], server_cl: int) -> dict[str, int]:
    """NominalCL(i) = ceil(ServerCL x NCS(i) / sum NCS)."""
    levels = list(levels)
    total = sum(lv.shares for lv in levels) or 1
    return {lv.name: math.ceil(server_cl * lv.shares / total) for lv in levels}


def current_limits(levels: Iterable[LevelConfig], nominal: dict[str, int], demand: dict[str, int],
                   server_cl: int) -> dict[str, int]:
    """kube's borrowing arithmetic (``apf_controller.go`` updateBorrowing), with the period's high
    seat demand as the smoothed demand: each level gets at least min(nominal, demand) but never
    less than nominal - lendable, at most nominal + borrowing limit; the rest of the server's seats
    are split in proportion to demand (the fair proportion that makes the sum ``server_cl``)."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    target: dict[str, float] = {}
    limited = [lv for lv in levels if not lv.exempt]
    for lv in limited:
        n = nominal[lv.name]
        lendable = _go_round(n * lv.lendable_percent / 100)
        max_cl = math.inf if lv.borrowing_limit_percent is None else n + _go_round(n * lv.borrowing_limit_percent / 100)
        d = demand.get(lv.name, 0)
        lo[lv.name] = max(n - lendable, min(n, d))
        hi[lv.name] = max(lo[lv.name], max_cl)
        target[lv.name] = max(lo[lv.name], d)

    def alloc(prop: float) -> dict[str, float]:
        return {k: min(hi[k], max(lo[k], prop * target[k])) for k in lo}

    lo_p, hi_p = 0.0, float(server_cl) + 1.0
    for _ in range(60):  # bisection for the fair proportion
        mid = (lo_p + hi_p) / 2
        if sum(alloc(mid).values()) > server_cl:
            hi_p = mid
        else:
            lo_p = mid
    return {k: max(1, _go_round(v)) if nominal[k] > 0 else _go_round(v) for k, v in alloc(lo_p).items()}


def _go_round(x: float) -> int:
    """Go's math.Round (half away from zero), as kube rounds lendable and borrowing seats; Python's
    round() halves to even: 1 seat x 50% borrowing would be 0 more seats instead of kube's 1."""
    return math.floor(x + 0.5)


def max_seats(nominal: int, hand_size: int) -> int:
    """kube: max(1, min(ceil(0.15 x NominalCL), NominalCL / handSize)), at most 10."""
    return max(1, min(math.ceil(0.15 * nominal), nominal // max(1, hand_size), MAX_SEATS))


def estimate_seats(verb: str, *, objects: int = 0, limit: int = 0, selector: bool = False, watchers: int = 0,
                   initial_events: bool = False, cap: int = MAX_SEATS) -> int:
    """kube's work estimator: LIST ~ 1 seat per 100 objects it returns; a WATCH 1 seat (its initial
    events like a LIST when asked for them); a write 1 seat, or ceil(watchers / 10) when it fans
    out to 10 or more watchers (kube holds those seats for an additional latency after the write;
    here the write holds them for its whole run)."""
    if verb == "list" or (verb == "watch" and initial_events):
        n = objects if selector or not limit else min(objects, limit)
        seats = math.ceil(n / OBJECTS_PER_SEAT)
    elif verb in ("create", "update", "patch", "delete", "deletecollection") and watchers >= WATCHES_PER_SEAT:
        seats = math.ceil(watchers / WATCHES_PER_SEAT)
    else:
        seats = 1
    return max(1, min(seats, cap))


# --- fair queuing ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Ticket:
    """One request's place in flow control. ``state``: queued -> executing -> done, or rejected
    (``reason``: queue-full, concurrency-limit, time-out, cancelled)."""

    tenant: str
    schema: str
    schema_uid: str
    level: str
    level_uid: str
    flow: int
    seats: int
    arrived: float
    state: str = "queued"
    reason: str = ""
    retry_after_s: int = 0
    queue: int = -1
    arrival_r: float = 0.0
    dispatched: float = 0.0
    # The QueueSet that admitted it: a level reconfigured meanwhile is a new QueueSet, and the
    # seats go back to the one that gave them.
    qs: QueueSet | None = None


@dataclass(eq=False)
class _Queue:
    index: int
    requests: collections.deque[Ticket] = field(default_factory=collections.deque)
    next_r: float = 0.0
    executing_seats: int = 0
    executing_requests: int = 0
    # Invariant: the sum of ``requests``' seats (kept as they come and go: the reject path reads it
    # for every request of a flood, and a sum over the queue was a measurable part of it).
    queued_seats: int = 0

    @property
    def active(self) -> bool:
        return bool(self.requests) or self.executing_seats > 0


class QueueSet:
    """One priority level of one tenant: queues, virtual time and the seats it executes."""

    def __init__(self, cfg: LevelConfig, limit: int, now: float) -> None:
        self.cfg = cfg
        self.limit = limit
        self.max_seats = MAX_SEATS
        self.queues = [_Queue(i) for i in range(cfg.queues if not cfg.reject and not cfg.exempt else 0)]
        self.r = 0.0
        self.r_time = now
        self.executing_seats = 0
        self.executing_requests = 0
        self.queued_requests = 0
        self.queued_seats = 0
        self.service_s = INITIAL_SERVICE_S  # moving average of execution times (G)
        self.high_demand = 0
        # Invariant: the number of queues with requests waiting or executing (kept incrementally
        # by every change to a queue, through _changed; counting 128 queues per request was not free).
        self.active = 0

    def _active_queues(self) -> int:
        return self.active or 1

    def _changed(self, q: _Queue, was_active: bool) -> None:
        if q.active != was_active:
            self.active += 1 if not was_active else -1

    def advance(self, now: float) -> None:
        """Advance the virtual clock: R grows at min(seats asked, limit) / active queues per second."""
        dt = max(0.0, now - self.r_time)
        self.r_time = now
        asked = self.executing_seats + self.queued_seats
        self.r += dt * min(asked, self.limit) / self._active_queues()

    def choose_queue(self, flow: int) -> _Queue:
        """Shuffle sharding: the hand's queue with the least waiting work."""
        hand = deal_hand(flow, len(self.queues), min(self.cfg.hand_size, len(self.queues)))
        return min((self.queues[i] for i in hand), key=lambda q: (q.queued_seats + q.executing_seats, q.index))

    def retry_after(self, q: _Queue | None) -> int:
        """Seconds until the queue drains at its share of the level: its seats x service time x
        active queues / limit (kube's constant 1 s when there is no queue), 1..32."""
        seats = (q.queued_seats + q.executing_seats) if q is not None else self.executing_seats
        share = self.limit / (self._active_queues() if q is not None else 1)
        drain = seats * self.service_s / max(share, 1e-9)
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(drain)))

    def enqueue(self, t: Ticket, now: float) -> bool:
        """Queue ``t``; False (and ``t`` rejected with its Retry-After) when its queue is full."""
        self.advance(now)
        q = self.choose_queue(t.flow)
        if len(q.requests) >= self.cfg.queue_length_limit:
            t.state, t.reason, t.retry_after_s = "rejected", "queue-full", self.retry_after(q)
            return False
        was_active = q.active
        if not was_active:
            q.next_r = max(q.next_r, self.r)
        t.queue, t.arrival_r = q.index, self.r
        q.requests.append(t)
        q.queued_seats += t.seats
        self._changed(q, was_active)
        self.queued_requests += 1
        self.queued_seats += t.seats
        self.high_demand = max(self.high_demand, self.executing_seats + self.queued_seats)
        return True

    def head(self) -> Ticket | None:
        """The next request fair queuing would dispatch: the queue whose head has the smallest
        virtual start plus width x service time."""
        best: _Queue | None = None
        best_key = math.inf
        for q in self.queues:
            if q.requests:
                key = q.next_r + q.requests[0].seats * self.service_s
                if key < best_key:
                    best, best_key = q, key
        return None if best is None else best.requests[0]

    def fits(self, t: Ticket) -> bool:
        return self.executing_seats == 0 or self.executing_seats + t.seats <= self.limit

    def dispatch_head(self, t: Ticket, now: float) -> None:
        self.advance(now)
        q = self.queues[t.queue]
        was_active = q.active
        q.requests.popleft()
        q.queued_seats -= t.seats
        self._changed(q, was_active)
        self.queued_requests -= 1
        self.queued_seats -= t.seats
        q.next_r += t.seats * self.service_s
        self.start(t, now)

    def start(self, t: Ticket, now: float) -> None:
        t.state, t.dispatched = "executing", now
        if t.queue >= 0:
            q = self.queues[t.queue]
            was_active = q.active
            q.executing_seats += t.seats
            q.executing_requests += 1
            self._changed(q, was_active)
        self.executing_seats += t.seats
        self.executing_requests += 1
        self.high_demand = max(self.high_demand, self.executing_seats + self.queued_seats)

    def finish(self, t: Ticket, now: float) -> None:
        self.advance(now)
        took = max(0.0, now - t.dispatched)
        self.service_s += 0.1 * (took - self.service_s)
        self.executing_seats -= t.seats
        self.executing_requests -= 1
        if t.queue >= 0:
            q = self.queues[t.queue]
            was_active = q.active
            q.executing_seats -= t.seats
            q.executing_requests -= 1
            self._changed(q, was_active)
            q.next_r += t.seats * (took - INITIAL_SERVICE_S)
            if q.requests:  # anti-windup: never below the head's arrival
                q.next_r = max(q.next_r, q.requests[0].arrival_r)

    def remove(self, t: Ticket, now: float) -> None:
        """A queued request leaves without being served (time-out, cancelled)."""
        self.advance(now)
        q = self.queues[t.queue]
        was_active = q.active
        q.requests.remove(t)
        q.queued_seats -= t.seats
        self._changed(q, was_active)
        self.queued_requests -= 1
        self.queued_seats -= t.seats

    def expired(self, now: float, wait_s: float) -> list[Ticket]:
        return [t for q in self.queues for t in q.requests if now - t.arrived >= wait_s]


@dataclass(eq=False)
class TenantFlow:
    """One tenant's flow control: its config (FlowSchemas, levels) and a QueueSet per level."""

    name: str
    version: Any
    schemas: list[dict[str, Any]]
    levels: dict[str, QueueSet]
    nominal: dict[str, int]
    executing_seats: int = 0
    queued: int = 0
    idle_since: float = 0.0
    served: int = 0
    asked: float = -math.inf  # when it last asked for seats (non-exempt): "recently active"


def lease_floor(limit: int) -> int:
    """The seats of a leased level (fleet leases) a gateway may always execute without waiting for
    the budget's owner: a quarter of the level's local limit, at least one (none for a level without
    seats). The owner lends no gateway the floors of the others (``LeaseRequest.floor``), so the
    fleet's budget still holds; a slow or far owner delays only what goes beyond it."""
    return -(-limit // 4) if limit > 0 else 0


class Dispatcher:
    """Every tenant's levels over one budget of ``server_cl`` seats (exempt requests aside)."""

    def __init__(self, server_cl: int, *, max_tenants: int = 10_000, reserve_s: float = RESERVE_S) -> None:
        self.server_cl = server_cl
        self.max_tenants = max_tenants
        #: A tenant that asked within ``reserve_s`` and holds no seat (here or, by the reports,
        #: elsewhere in the fleet) has one seat kept free for it: others start only while that many
        #: seats stay free. At most half the server's seats are kept so. 0 turns it off.
        self.reserve_s = reserve_s
        self.max_reserved = server_cl // 2
        self.tenants: dict[str, TenantFlow] = {}
        self.executing_seats = 0
        #: Seats each tenant holds on the fleet's other gateways (``_apf_fleet``; empty alone):
        #: counted in the cross-tenant order, never as seats of this gateway.
        self.elsewhere: dict[str, int] = {}
        #: Fleet-wide seat budgets (``_apf_fleet.SeatLeases``; None: off, every level's limit is
        #: local): the seats this gateway may execute per (tenant, level) of a queuing level, leased
        #: from the budget's owner (or the fixed local share while it is unreachable). A level
        #: without an entry has none yet: its requests queue until the first lease comes back.
        self.leases: dict[tuple[str, str], int] | None = None
        #: Leased levels whose queued head waits for more seats than leased (read and cleared by the
        #: lease client, which ``on_lease_wanted`` wakes).
        self.lease_wanted: set[tuple[str, str]] = set()
        #: Per leased level, the most seats asked for (executing or queued) at an arrival since the
        #: lease client last looked: a short request's demand is gone before a periodic look sees it.
        self.lease_peak: dict[tuple[str, str], int] = {}
        self.on_lease_wanted: Callable[[], None] | None = None

    def configure(self, tenant: str, version: Any, schemas: list[dict[str, Any]], plcs: list[dict[str, Any]],
                  now: float) -> TenantFlow:
        """The tenant's state, created (or its config replaced, queues kept) when ``version`` changed."""
        tf = self.tenants.get(tenant)
        if tf is not None and tf.version == version:
            return tf
        cfgs = [level_config(p) for p in plcs]
        nominal = nominal_limits(cfgs, self.server_cl)
        levels: dict[str, QueueSet] = {}
        for c in cfgs:
            old = tf.levels.get(c.name) if tf is not None else None
            if old is not None and old.cfg == c:
                old.limit = nominal[c.name]
                levels[c.name] = old
                continue
            qs = QueueSet(c, nominal[c.name], now)
            qs.max_seats = max_seats(nominal[c.name], c.hand_size)
            levels[c.name] = qs
        if tf is None:
            tf = TenantFlow(tenant, version, sorted(schemas, key=schema_order), levels, nominal, idle_since=now)
            self.tenants[tenant] = tf
        else:
            # A replaced or removed level's queued requests move to the new one (or are served by
            # the old one when the level is gone); executing ones give seats back to the old one.
            for name, qs in tf.levels.items():
                new = levels.get(name)
                if new is None:
                    if qs.executing_requests or qs.queued_requests:
                        levels[name] = qs
                elif new is not qs and qs.queued_requests:
                    for q in qs.queues:
                        while q.requests:
                            was_active = q.active
                            t = q.requests.popleft()
                            q.queued_seats -= t.seats
                            qs._changed(q, was_active)
                            qs.queued_requests -= 1
                            qs.queued_seats -= t.seats
                            t.qs = new
                            if not new.queues:  # now Exempt or Reject: decided again by the client's retry
                                t.state, t.reason, t.retry_after_s = "rejected", "concurrency-limit", 1
                                tf.queued -= 1
                            elif not new.enqueue(t, now):
                                tf.queued -= 1  # rejected by the new shape; its waiter sees the state
            tf.version, tf.schemas, tf.levels, tf.nominal = version, sorted(schemas, key=schema_order), levels, nominal
        return tf

    def adjust(self) -> None:
        """kube's periodic borrowing pass (every 10 s): per tenant, each level's current limit from
        the period's high seat demand."""
        for tf in self.tenants.values():
            cfgs = [qs.cfg for qs in tf.levels.values() if qs.cfg.name in tf.nominal]
            demand = {qs.cfg.name: qs.high_demand for qs in tf.levels.values()}
            for name, cl in current_limits(cfgs, tf.nominal, demand, self.server_cl).items():
                tf.levels[name].limit = cl
            for qs in tf.levels.values():
                qs.high_demand = qs.executing_seats + qs.queued_seats

    def evict_idle(self, now: float, idle_s: float) -> list[str]:
        """Drop tenants with nothing queued or executing for ``idle_s`` (they are rebuilt on demand)."""
        gone = [n for n, tf in self.tenants.items() if not tf.executing_seats and not tf.queued
                and now - tf.idle_since >= idle_s]
        for n in gone:
            del self.tenants[n]
        return gone

    def admit(self, t: Ticket, now: float) -> list[Ticket]:
        """Queue or start ``t`` (or reject it: ``t.state``); the tickets dispatched meanwhile."""
        tf = self.tenants[t.tenant]
        qs = t.qs = tf.levels[t.level]
        if qs.cfg.exempt:
            qs.start(t, now)  # never queued, never limited
            return [t]
        t.seats = min(t.seats, qs.max_seats)
        tf.asked = now
        if qs.cfg.reject:
            if not (qs.fits(t) and self._server_fits(t) and self._beyond_reserve(tf, t, self._idle_asking(now))):
                t.state, t.reason, t.retry_after_s = "rejected", "concurrency-limit", qs.retry_after(None)
                return []
            self._start(tf, qs, t, now)
            return [t]
        if not qs.enqueue(t, now):
            return []
        tf.queued += 1
        if self.leases is not None:
            key, seats = (t.tenant, t.level), qs.executing_seats + qs.queued_seats
            if seats > self.lease_peak.get(key, 0):
                self.lease_peak[key] = seats
        return self.dispatch(now)

    def refuse(self, t: Ticket, now: float) -> bool:
        """Would :meth:`admit` reject ``t`` at once? Then True, and ``t`` rejected as admit would
        have (reason, Retry-After): its queue is full, or its Reject level has no room. Otherwise
        False and nothing changed (``t`` is for :meth:`admit`). Exempt requests are never refused."""
        tf = self.tenants[t.tenant]
        qs = tf.levels[t.level]
        if qs.cfg.exempt:
            return False
        t.seats = min(t.seats, qs.max_seats)
        if qs.cfg.reject:
            if qs.fits(t) and self._server_fits(t) and self._beyond_reserve(tf, t, self._idle_asking(now)):
                return False
            t.state, t.reason, t.retry_after_s = "rejected", "concurrency-limit", qs.retry_after(None)
        else:
            q = qs.choose_queue(t.flow)
            if len(q.requests) < qs.cfg.queue_length_limit:
                return False
            t.state, t.reason, t.retry_after_s = "rejected", "queue-full", qs.retry_after(q)
        tf.asked = now
        return True

    def leased(self, qs: QueueSet) -> bool:
        """Whether ``qs``'s seats are leased from the fleet: queuing levels, when leasing is on
        (exempt levels are never limited; Reject levels, which cannot wait for a lease, stay local)."""
        return self.leases is not None and not qs.cfg.exempt and not qs.cfg.reject

    def seat_limit(self, tenant: str, qs: QueueSet) -> int:
        """The seats ``tenant``'s level ``qs`` may execute here now: on a leased level the seats
        leased (or the fixed share while its owner is unreachable), never less than the level's
        :func:`lease_floor` (what it runs before the first grant); else the level's local limit
        (``apiserver_flowcontrol_current_limit_seats``, the debug dump)."""
        if not self.leased(qs):
            return qs.limit
        assert self.leases is not None
        return max(self.leases.get((tenant, qs.cfg.name), 0), lease_floor(qs.limit))

    def _fits(self, tenant: str, qs: QueueSet, t: Ticket) -> bool:
        """The level's limit; on a leased level, instead, the seats leased (which may be more than
        this gateway's limit, up to the level's fleet budget, when the other gateways leave them) or
        its :func:`lease_floor`, whichever is more: a request starts when they hold it, or when
        nothing executes and at least the local limit is leased (a request wider than the limit runs
        alone, as :meth:`QueueSet.fits` lets it). Only a request beyond both waits for the owner; a
        level used without a lease yet asks for one (its requests meanwhile run within the floor)."""
        if not self.leased(qs):
            return qs.fits(t)
        leases = self.leases
        assert leases is not None
        key = (tenant, qs.cfg.name)
        leased = leases.get(key)
        cap = max(leased or 0, lease_floor(qs.limit))
        if qs.executing_seats + t.seats <= cap or (qs.executing_seats == 0 and cap >= qs.limit > 0):
            if leased is None and key not in self.lease_wanted:  # first use: lease, without waiting
                self.lease_wanted.add(key)
                if self.on_lease_wanted is not None:
                    self.on_lease_wanted()
            return True
        if key not in self.lease_wanted:
            self.lease_wanted.add(key)
            if self.on_lease_wanted is not None:
                self.on_lease_wanted()
        return False

    def lease_demand(self, tenant: str, level: str) -> tuple[int, int, int, int]:
        """For the lease client: (seats executing, seats executing or queued, the queued head's
        seats, the level's limit) of ``tenant``'s ``level`` here; zeros when it is gone."""
        tf = self.tenants.get(tenant)
        qs = tf.levels.get(level) if tf is not None else None
        if qs is None:
            return 0, 0, 0, 0
        head = qs.head() if qs.queued_requests else None
        return (qs.executing_seats, qs.executing_seats + qs.queued_seats, head.seats if head is not None else 0,
                qs.limit)

    def _server_fits(self, t: Ticket) -> bool:
        return self.executing_seats == 0 or self.executing_seats + t.seats <= self.server_cl

    def _idle_asking(self, now: float) -> set[str]:
        """The tenants a seat is kept free for: asked within ``reserve_s``, hold none in the fleet."""
        if self.reserve_s <= 0 or self.max_reserved <= 0:
            return set()
        since = now - self.reserve_s
        elsewhere = self.elsewhere
        return {n for n, tf in self.tenants.items()
                if tf.asked >= since and not tf.executing_seats and not elsewhere.get(n)}

    def _beyond_reserve(self, tf: TenantFlow, t: Ticket, idle: set[str]) -> bool:
        """May ``tf`` start ``t`` with the seats kept for the idle asking tenants? Always for one
        of them (the seat kept is its own); for any other, only if that many seats stay free."""
        if tf.name in idle or not idle:
            return True
        return self.executing_seats + t.seats + min(len(idle), self.max_reserved) <= self.server_cl

    def _start(self, tf: TenantFlow, qs: QueueSet, t: Ticket, now: float) -> None:
        qs.start(t, now)
        tf.executing_seats += t.seats
        self.executing_seats += t.seats

    def dispatch(self, now: float) -> list[Ticket]:
        """Start queued requests while seats are free. Across tenants, the waiting tenant holding the
        fewest seats goes first, counting the seats it holds on the fleet's other gateways
        (``elsewhere``), and no tenant takes the seats kept for idle tenants that asked recently
        (:meth:`_beyond_reserve`); within a tenant every level has its own limit."""
        out: list[Ticket] = []
        elsewhere = self.elsewhere
        idle = self._idle_asking(now)
        while True:
            best: tuple[int, int, TenantFlow, QueueSet, Ticket] | None = None
            for tf in self.tenants.values():
                if not tf.queued:
                    continue
                for qs in tf.levels.values():
                    head = qs.head() if qs.queued_requests else None
                    if head is not None and self._fits(tf.name, qs, head) and self._beyond_reserve(tf, head, idle):
                        key = (tf.executing_seats + elsewhere.get(tf.name, 0), tf.served)
                        if best is None or key < best[:2]:
                            best = (*key, tf, qs, head)
            if best is None or not self._server_fits(best[4]):
                return out
            _, _, tf, qs, t = best
            qs.dispatch_head(t, now)
            tf.queued -= 1
            tf.served += 1
            tf.executing_seats += t.seats
            self.executing_seats += t.seats
            idle.discard(tf.name)
            out.append(t)

    def finish(self, t: Ticket, now: float) -> list[Ticket]:
        """``t`` completed (or failed, or its client went away): its seats back; what that starts."""
        tf = self.tenants.get(t.tenant)
        if tf is None or t.state != "executing":
            return []
        t.state = "done"
        qs = t.qs
        assert qs is not None
        qs.finish(t, now)
        if qs.cfg.exempt:
            return []
        tf.executing_seats -= t.seats
        self.executing_seats -= t.seats
        if not tf.executing_seats and not tf.queued:
            tf.idle_since = now
        return self.dispatch(now)

    def withdraw(self, t: Ticket, now: float, reason: str) -> None:
        """A queued ``t`` leaves unserved (``time-out`` or ``cancelled``)."""
        tf = self.tenants.get(t.tenant)
        if tf is None or t.state != "queued" or t.qs is None:
            return
        qs = t.qs
        qs.remove(t, now)
        tf.queued -= 1
        t.state, t.reason = "rejected", reason
        t.retry_after_s = qs.retry_after(qs.queues[t.queue])
        if not tf.executing_seats and not tf.queued:
            tf.idle_since = now
