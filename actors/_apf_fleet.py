"""API Priority and Fairness across a fleet of gateways: a demand exchange over NATS, and (with
``--apf-fleet-leases``) fleet-wide seat budgets leased from an owner per shard of tenants (see
"fleet-wide seat budgets" below: :class:`SeatBudgets`, :class:`SeatLeases`, :class:`SeatOwner`).

The exchange:

kube runs APF in each apiserver on its own (KEP-1040); with N gateways behind a load balancer a
tenant flooding every gateway would then hold N local shares. Our fix is the simplest of the
designs measured in SCALE.md §6 that needs no owner and no election: each gateway tells the
others, every ``period_s``, what each tenant holds and waits for there (Doorman's and Envoy RLQS's
"demand reports", without the central server), and the cross-tenant order of every gateway's
dispatcher counts seats **fleet-wide**: while tenants wait on a gateway, a freed seat goes to the
waiting tenant that holds the fewest seats in the whole fleet (local seats plus what the peers last
reported). So a tenant that floods every gateway gets no more than its fleet share where others
wait for seats: where it already holds seats elsewhere, the others go first; where nobody else
waits, it may use idle seats (work-conserving, as kube's borrowing).

Bounded and never in the way:

- a report names at most ``max_tenants`` tenants (those with the most seats held or waiting);
- at most ``max_peers`` peers are remembered; a peer not heard from for ``expiry_periods`` periods
  is forgotten, so a slow or lost NATS degrades to exactly the per-gateway policy (the fleet view
  only reorders who goes first, it never grants seats: the budgets below do);
- nothing on the request path touches NATS: a report is published without waiting
  (:class:`bus.Broadcast`), received ones arrive through a bounded channel, and the dispatcher
  reads a plain dict.

:class:`FleetView` is pure (time is an argument); :class:`FleetExchange` is the trio loop.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import msgspec
import trio

from bus import (
    Bridge,
    Broadcast,
    BusError,
    BusTimeout,
    LeasedCursor,
    NoResponders,
    Responder,
    apf_seats_subject,
)

from ._apf import Dispatcher, lease_floor

log = logging.getLogger("jetkube.flowcontrol.fleet")


class FleetReport(msgspec.Struct, frozen=True, array_like=True):
    """One gateway's demand: per tenant, seats executing and seats waiting (queued)."""

    gateway: str
    server_cl: int
    tenants: dict[str, tuple[int, int]]
    #: The gateway leases seats (``--apf-fleet-leases`` on): a candidate owner of the shards it is
    #: preferred for. Absent in older gateways' reports (then False: never preferred).
    leases: bool = False


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(FleetReport).decode


def local_report(gateway: str, d: Dispatcher, max_tenants: int) -> FleetReport:
    """What this gateway's dispatcher holds and has waiting, per tenant (the busiest ``max_tenants``)."""
    busy = [(tf.executing_seats, sum(qs.queued_seats for qs in tf.levels.values()) if tf.queued else 0, name)
            for name, tf in d.tenants.items() if tf.executing_seats or tf.queued]
    if len(busy) > max_tenants:
        busy.sort(key=lambda b: b[0] + b[1], reverse=True)
        del busy[max_tenants:]
    return FleetReport(gateway, d.server_cl, {name: (held, waiting) for held, waiting, name in busy},
                       d.leases is not None)


class FleetView:
    """The peers' latest reports, and what they add up to per tenant."""

    def __init__(self, gateway: str, *, max_peers: int = 64, expiry_s: float = 3.0) -> None:
        self.gateway = gateway
        self.max_peers = max_peers
        self.expiry_s = expiry_s
        self.peers: dict[str, tuple[float, FleetReport]] = {}
        # Counters (jetkube_apf_fleet_* in gateway/_metrics.py): peers' reports taken, and those
        # dropped as undecodable or from a peer beyond max_peers; our own echoes are neither.
        self.received = 0
        self.invalid = 0
        self.over_peers = 0

    @property
    def ignored(self) -> int:
        """Reports dropped: undecodable, or from a peer beyond max_peers."""
        return self.invalid + self.over_peers

    def peer_tenants(self) -> int:
        """Distinct tenants named in the peers' latest reports (expired ones included until the
        next :meth:`expire`)."""
        return len({t for _, r in self.peers.values() for t in r.tenants})

    def receive(self, data: bytes, now: float) -> bool:
        """Take a peer's report (our own echo and garbage are ignored)."""
        try:
            r = _decode(data)
        except msgspec.DecodeError:
            self.invalid += 1
            return False
        if r.gateway == self.gateway:
            return False
        if r.gateway not in self.peers and len(self.peers) >= self.max_peers:
            self.expire(now)
            if len(self.peers) >= self.max_peers:
                self.over_peers += 1
                return False
        self.peers[r.gateway] = (now, r)
        self.received += 1
        return True

    def expire(self, now: float) -> list[str]:
        gone = [g for g, (t, _) in self.peers.items() if now - t > self.expiry_s]
        for g in gone:
            del self.peers[g]
        return gone

    def held_elsewhere(self, now: float) -> dict[str, int]:
        """Per tenant, the seats the live peers last said it holds."""
        self.expire(now)
        out: dict[str, int] = {}
        for _, r in self.peers.values():
            for tenant, (held, _waiting) in r.tenants.items():
                if held:
                    out[tenant] = out.get(tenant, 0) + held
        return out

    def fleet_seats(self, local_server_cl: int) -> int:
        """The fleet's seat budget: ours plus every live peer's."""
        return local_server_cl + sum(r.server_cl for _, r in self.peers.values())


class FleetStats(msgspec.Struct, frozen=True):
    """A snapshot of :class:`FleetExchange`'s counters (``jetkube_apf_fleet_*``)."""

    sent: int  # reports published
    received: int  # peers' reports taken
    dropped: dict[str, int]  # reports lost, by reason: unpublished (NATS disconnected), receive_queue_full
    # (the bounded channel from NATS), invalid (undecodable), too_many_peers (beyond max_peers)
    peers: int  # peers known (heard from within the expiry)
    tenants_reported: int  # tenants named in this gateway's last report
    peer_tenants: int  # distinct tenants named in the peers' latest reports
    fleet_seats: int  # the fleet's seat budget: ours plus the live peers'


class Publisher(Protocol):
    def publish(self, payload: bytes) -> bool: ...


class FleetExchange:
    """Every ``period_s``: publish this gateway's report, fold in the peers', and hand the
    dispatcher the seats each tenant holds elsewhere (``Dispatcher.elsewhere``)."""

    def __init__(self, dispatcher: Dispatcher, out: Publisher, received: trio.MemoryReceiveChannel[bytes], *,
                 gateway: str = "", period_s: float = 1.0, expiry_periods: int = 3, max_peers: int = 64,
                 max_tenants: int = 256) -> None:
        self.dispatcher = dispatcher
        self.out, self.received = out, received
        self.gateway = gateway or uuid.uuid4().hex
        self.period_s = period_s
        self.max_tenants = max_tenants
        self.view = FleetView(self.gateway, max_peers=max_peers, expiry_s=expiry_periods * period_s)
        self.sent = 0  # reports handed to NATS
        self.unpublished = 0  # reports NATS could not take (disconnected)
        self.last_tenants = 0  # tenants named in the last report

    def tick(self, now: float) -> None:
        """One period: publish, then refresh the dispatcher's fleet view (expired peers drop out)."""
        report = local_report(self.gateway, self.dispatcher, self.max_tenants)
        self.last_tenants = len(report.tenants)
        if self.out.publish(_encode(report)):
            self.sent += 1
        else:
            self.unpublished += 1
        self.dispatcher.elsewhere = self.view.held_elsewhere(now)

    def stats(self) -> FleetStats:
        """The exchange's counters and gauges, for ``/metrics``."""
        v = self.view
        return FleetStats(
            sent=self.sent, received=v.received,
            dropped={"unpublished": self.unpublished, "receive_queue_full": int(getattr(self.out, "dropped", 0)),
                     "invalid": v.invalid, "too_many_peers": v.over_peers},
            peers=len(v.peers), tenants_reported=self.last_tenants, peer_tenants=v.peer_tenants(),
            fleet_seats=v.fleet_seats(self.dispatcher.server_cl))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive)
            task_status.started()
            while True:
                self.tick(trio.current_time())
                await trio.sleep(self.period_s)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _receive(self) -> None:
        async for data in self.received:
            now = trio.current_time()
            if self.view.receive(data, now):
                self.dispatcher.elsewhere = self.view.held_elsewhere(now)


def fleet_subject(prefix: str) -> str:
    """The reports' core-NATS subject: outside the stream's ``<prefix>.>`` (never stored), and
    separate for each deployment's prefix."""
    return f"{prefix}-apf.fleet"


async def run_fleet(dispatcher: Dispatcher, bridge: Bridge, subject: str, *, period_s: float = 1.0,
                    task_status: trio.TaskStatus[FleetExchange] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """The exchange over ``bridge``. Started at once (the gateway never waits for it): until the
    subscription is made (each try bounded, retried every period) the dispatcher sees no peers."""
    broadcast = Broadcast(bridge, subject)
    exchange = FleetExchange(dispatcher, broadcast, broadcast.received, period_s=period_s)
    task_status.started(exchange)
    try:
        while True:
            try:
                await broadcast.open(timeout_s=max(1.0, 2 * period_s))
                break
            except Exception as e:  # noqa: BLE001 - whatever NATS says, the gateway serves on (alone)
                log.warning("APF fleet exchange on %s not subscribed yet: %s", subject, e)
                await trio.sleep(period_s)
        await exchange.run()
    finally:
        await broadcast.aclose()  # shielded and bounded inside


# ---- fleet-wide seat budgets: an owner per shard of tenants, seat leases over request/reply ----------
#
# The exchange above only reorders who goes first; the budgets below hold a tenant's seats
# fleet-wide (issue 10; SCALE.md §6 measured the design). Per (tenant, priority level) of a queuing
# level the fleet has one budget: the level's limit as one gateway computes it, times the gateways
# alive (this one plus the peers the exchange hears; one alone). Tenants are hashed into SHARDS; each
# shard's budgets are owned by one gateway, elected by a KV lease with a TTL (bus.LeasedCursor, key
# ``owner-<shard>`` of the bucket ``<stream>_APF``), which answers on ``<prefix>-apf.seats.<shard>``
# (bus.apf_seats_subject) without a queue group. A gateway executes a leased level's requests only
# within the seats it leased: it asks for them in chunks when its demand outgrows them, renews them
# every half of the TTL, and gives them back (at a renewal) when its demand fell. The owner grants
# from what the other gateways hold, split max-min fairly by what each wants, never more than the
# budget (so the sum of the seats executing across gateways stays within it while the owner lives).
# When the owner does not answer (no responders: at once; or a timeout) the gateway uses a fixed
# local share (the budget / the gateways alive, or ``fallback`` x the budget) and keeps serving; when
# the owner's lease lapses another gateway takes it over, learns for one TTL what the gateways say
# they hold (granting no more than that or their fixed share), then grants again. The owner's revision
# of the key at the takeover is its epoch: a gateway ignores grants and refusals from an older epoch (an owner
# that lost the shard and has not noticed yet), and asks again at once (the new owner); but an older
# epoch answering when the newest has not for a TTL is taken (an owner that lost its lease stops
# answering within a TTL): the lease bucket was deleted and made again, its revisions restarted at 1.

SHARDS = 8  #: shards of the tenants' budgets (each with its own owner lease and subject)
LEASE_TTL_S = 3.0  #: the owner lease's and every grant's lifetime (the lease renewed every third, grants every half of it)
MAX_BUDGETS = 4096  #: (tenant, level) budgets one shard's owner keeps; beyond them, a gateway falls back
MAX_GATEWAYS = 64  #: gateways a budget keeps holds for
MAX_LEASES = 4096  #: (tenant, level) leases a gateway keeps; beyond them, the fixed local share
MAX_IN_FLIGHT = 64  #: lease requests a gateway has in flight at once
PLAN_GAP_S = 0.005  #: the lease client looks at its levels at most this often
GATEWAYS_HOLD_S = 10.0  #: a lower count of gateways alive is believed after this long
#: a shard's owner hands it to its preferred gateway once that one has been heard this long
HANDOVER_AFTER_S = 10.0
#: a shard handed over is not handed over again for this long (its preferred gateway may not claim it)
HANDOVER_BACKOFF_S = 120.0
KEEP_WINDOWS = 2  #: a level's seats follow its peak demand over this many renewals (a TTL)


class LeaseRequest(msgspec.Struct, frozen=True, array_like=True):
    """A gateway asks the owner for ``want`` seats in all of ``tenant``'s ``level`` (a total, not an
    increment: a retry is harmless). ``held``: what it may execute until the reply (its executing
    seats, or its current lease if more); ``fallback``: its fixed local share; ``budget``: the level's
    fleet budget as it computes it; ``epoch``: the newest owner epoch it has seen; ``floor``: the
    seats every gateway may execute without a lease (``_apf.lease_floor``), which the owner keeps
    for each of the ``gateways`` alive (0, from an older gateway: none kept)."""

    gateway: str
    tenant: str
    level: str
    budget: int
    want: int
    held: int
    fallback: int
    epoch: int
    floor: int = 0
    gateways: int = 0


class LeaseReply(msgspec.Struct, frozen=True, array_like=True):
    """``granted``: the seats the gateway may execute until its next request (-1: the owner keeps
    no more budgets; fall back); ``epoch``: the owner's; ``ttl_ms``: the grant's lifetime;
    ``more``: less than its fair share was free (others are giving seats back): ask again soon."""

    granted: int
    epoch: int
    ttl_ms: int
    more: bool = False


_encode_req = msgspec.msgpack.Encoder().encode
_decode_req = msgspec.msgpack.Decoder(LeaseRequest).decode
_encode_reply = msgspec.msgpack.Encoder().encode
_decode_reply = msgspec.msgpack.Decoder(LeaseReply).decode


def shard_of(tenant: str, shards: int = SHARDS) -> int:
    """The shard whose owner holds ``tenant``'s budgets (a stable hash: every gateway agrees)."""
    return int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=4).digest(), "big") % shards


def preferred_owner(shard: int, gateways: Any) -> str:
    """The gateway that should own ``shard`` among ``gateways`` (rendezvous hashing: each ranks
    every (shard, gateway) pair alike, so the fleet agrees, the shards spread over the gateways,
    and a gateway joining or leaving moves only the shards it wins or held)."""
    return max(gateways, key=lambda g: hashlib.blake2b(f"{shard}/{g}".encode(), digest_size=8).digest())


def fair_shares(budget: int, wants: dict[str, int]) -> dict[str, int]:
    """Max-min fair split of ``budget`` seats by ``wants`` (water-filling): nobody gets more than it
    wants, what one does not want goes to the others, the sum is at most ``budget``. Ties in the
    rounding go to the smaller want, then the name."""
    out: dict[str, int] = {}
    left = max(0, budget)
    order = sorted(wants.items(), key=lambda gw: (gw[1], gw[0]))
    for i, (g, w) in enumerate(order):
        share = min(max(0, w), -(-left // (len(order) - i)))
        out[g] = share
        left -= share
    return out


@dataclass
class _Hold:
    seats: int  # what the gateway may execute until its next request (an upper bound)
    want: int
    until: float  # when the hold lapses without a renewal
    floor: int = 0  # the gateway's own floor (from its request; 0 from an older gateway, which runs none)


@dataclass
class _Budget:
    budget: int
    holds: dict[str, _Hold] = field(default_factory=dict)


class SeatBudgets:
    """One shard's budgets at its owner (pure: time is an argument). Invariant, outside the learning
    period: the sum of the holds of a budget never grows beyond the budget."""

    def __init__(self, epoch: int, now: float, *, ttl_s: float = LEASE_TTL_S, max_budgets: int = MAX_BUDGETS,
                 max_gateways: int = MAX_GATEWAYS) -> None:
        self.epoch = epoch
        self.ttl_s = ttl_s
        self.learning_until = now + ttl_s  # one TTL: every live gateway has renewed by then
        self.max_budgets, self.max_gateways = max_budgets, max_gateways
        self.budgets: dict[tuple[str, str], _Budget] = {}
        self.answered = 0
        self.refused = 0

    def _refuse(self) -> LeaseReply:
        self.refused += 1
        return LeaseReply(-1, self.epoch, int(self.ttl_s * 1000))

    def expire(self, now: float) -> None:
        for key, b in list(self.budgets.items()):
            for g in [g for g, h in b.holds.items() if h.until <= now]:
                del b.holds[g]
            if not b.holds:
                del self.budgets[key]

    def held(self, tenant: str, level: str, now: float) -> int:
        """The seats of a budget the gateways hold (unexpired)."""
        b = self.budgets.get((tenant, level))
        return sum(h.seats for h in b.holds.values() if h.until > now) if b is not None else 0

    def handle(self, r: LeaseRequest, now: float) -> LeaseReply:
        key = (r.tenant, r.level)
        b = self.budgets.get(key)
        if b is None:
            if len(self.budgets) >= self.max_budgets:
                self.expire(now)
                if len(self.budgets) >= self.max_budgets:
                    return self._refuse()
            b = _Budget(max(0, r.budget))
        b.budget = max(0, r.budget)
        for g in [g for g, h in b.holds.items() if h.until <= now]:
            del b.holds[g]
        if r.gateway not in b.holds and len(b.holds) >= self.max_gateways:
            return self._refuse()
        want = max(0, min(r.want, b.budget))
        held = max(0, r.held)
        more = False
        if now < self.learning_until:
            # A new owner does not know what the gateways hold: it echoes what they say (or their
            # fixed share), never more, until all of them have spoken.
            granted = min(want, max(held, max(0, r.fallback)))
        else:
            # Every gateway may run its floor without asking: the floors of the gateways alive that
            # hold nothing here are not lent (they may start at any moment), and the others count
            # at least theirs. Each holder's floor is its own (from its requests: gateways with other
            # local limits have other floors); one that holds nothing is kept the largest known.
            floor = max(0, r.floor)
            holders = {g: h for g, h in b.holds.items() if g != r.gateway}
            spare = max(floor, *(h.floor for h in holders.values())) if holders else floor
            pool = max(0, b.budget - spare * max(0, r.gateways - 1 - len(holders)))
            others = sum(max(h.seats, h.floor) for h in holders.values())
            wants = {g: max(h.want, h.floor) for g, h in holders.items()}
            wants[r.gateway] = max(want, floor)
            fair = min(want, fair_shares(pool, wants)[r.gateway])
            granted = max(0, min(fair, pool - others))
            more = granted < fair
        # Until its next request the gateway may still execute what it held when it asked.
        seats = max(granted, held)
        if seats == 0 and want == 0:
            b.holds.pop(r.gateway, None)
        else:
            b.holds[r.gateway] = _Hold(seats, want, now + self.ttl_s, max(0, r.floor))
        if b.holds:
            self.budgets[key] = b
        else:
            self.budgets.pop(key, None)
        self.answered += 1
        return LeaseReply(granted, self.epoch, int(self.ttl_s * 1000), more)

    def answer(self, data: bytes, now: float) -> bytes | None:
        """The wire form of :meth:`handle` (None for garbage: the requester times out)."""
        try:
            r = _decode_req(data)
        except msgspec.DecodeError:
            return None
        return _encode_reply(self.handle(r, now))


@dataclass
class _Lease:
    shard: int
    high: int = 0  # the highest seat demand seen since the last request
    highs: tuple[int, ...] = ()  # the same of the last requests (a TTL's worth): seats are kept that long
    sent_at: float = -math.inf  # when the last request was sent
    ok_at: float = -math.inf  # when the request of the last grant was sent (the grant lapses a TTL later)
    wanted: int = 0  # what the last request asked for
    retry: bool = False  # the last grant was short of the fair share (others giving back): ask again soon
    busy: bool = False  # a request in flight
    local_until: float = -math.inf  # the owner refused it (full): the fixed share until then
    fixed: bool = False  # on its fixed share (the owner unreachable or full) until the next grant
    retry_at: float = math.inf  # the last request timed out (a slow owner): sent again then, not at the renewal
    stale: bool = False  # a reply of an older owner's epoch came since the last grant (asked again at once)
    used_at: float = -math.inf  # when the level last had seats executing or asked for (idle a TTL after)


class LeaseStats(msgspec.Struct, frozen=True):
    """A snapshot of the gateway's lease client and owner (``jetkube_apf_fleet_lease*``/``_owner*``)."""

    requests: int  # lease round trips sent
    failures: dict[str, int]  # by reason: no_responders, timeout, unavailable, refused, stale
    granted: int  # seats gained from grants
    returned: int  # seats given back (lower grants, fallbacks ended)
    fallbacks: int  # times a shard's owner became unreachable (its levels went to their fixed shares)
    leases: int  # (tenant, level) pairs leased now
    leased_seats: int  # seats held now in them
    shards_down: int  # shards whose owner is unreachable now (fixed share)
    owned_shards: int  # shards this gateway owns now
    owned_budgets: int  # (tenant, level) budgets it keeps as their owner
    takeovers: int  # shards this gateway took ownership of
    answered: int  # lease requests it answered as an owner
    handovers: int = 0  # shards it handed to their preferred gateway
    epoch_resets: int = 0  # times a lower owner epoch was taken (the lease bucket made again)
    beyond_bound: int = 0  # levels used beyond ``max_leases`` (on their fixed share, never leased)


class SeatLeases:
    """The gateway's side: per leased (tenant, level), the seats it may execute
    (``Dispatcher.leases``), leased from the shard's owner; the fixed local share while the owner is
    unreachable. :meth:`plan` is pure; :meth:`run` the trio loop around it."""

    def __init__(self, dispatcher: Dispatcher, request: Any, *, gateway: str, prefix: str,
                 ttl_s: float = LEASE_TTL_S, fallback: float = 0.0, gateways: Any = None,
                 on_change: Any = None, max_leases: int = MAX_LEASES, shards: int = SHARDS) -> None:
        self.d = dispatcher
        if self.d.leases is None:
            self.d.leases = {}
        self.request = request  # async (subject, payload, timeout_s) -> bytes; raises on failure
        self.gateway, self.prefix = gateway, prefix
        self.ttl_s = ttl_s
        self.renew_s = ttl_s / 2  # SCALE.md §6: refresh at half the TTL
        self.retry_s = ttl_s / 12  # asking again for seats the last grant did not give
        self.timeout_s = min(1.0, ttl_s / 4)
        self.fallback = fallback  # the fixed share as a fraction of the budget (0: budget / gateways)
        self.gateways = gateways or (lambda: 1)  # the gateways alive (this one included)
        self.on_change = on_change or (lambda: None)
        self.max_leases, self.shards = max_leases, shards
        self.leases: dict[tuple[str, str], _Lease] = {}
        #: Levels used beyond ``max_leases``: on their fixed share (never leased), and when each was
        #: last used. A pass looks only at those used since the last one (marked used, leased when
        #: there is room); all of them are looked at every ``renew_s`` and when the gateways alive
        #: change (:meth:`_sweep`: the share kept up to date, a level leased once there is room, its
        #: entry here and in ``Dispatcher.leases`` gone once it is gone or idle for a TTL).
        self.local: dict[tuple[str, str], float] = {}
        self._sweep_at = -math.inf  # when :meth:`plan` next looks at every entry of ``local``
        self._swept_alive = 0  # the gateways alive then
        self._alive = (1, -math.inf)  # (gateways alive, until when a lower count is not believed)
        self.down_until: dict[int, float] = {}  # shard -> retry its owner then
        self.epochs: dict[int, int] = {}  # shard -> newest owner epoch seen
        #: shard -> when the first reply of an epoch below the newest came, ignored, since the newest
        #: (or a newer) last answered: such replies are taken once they have kept coming for a TTL
        #: (the owners' lease bucket was made again), see :meth:`settle`
        self.lower_since: dict[int, float] = {}
        self.epoch_resets = 0  # times a lower epoch was taken (the owners' lease bucket made again)
        self.fallen: set[int] = set()  # shards on their fixed shares since a failure (until a grant)
        self.slow_since: dict[int, float] = {}  # shard -> its first lease request timed out since a grant
        self.wake = trio.Event()
        self.d.on_lease_wanted = self.wake.set
        self.requests = 0
        self.failures: dict[str, int] = {"no_responders": 0, "timeout": 0, "unavailable": 0, "refused": 0,
                                         "stale": 0}
        self.granted = 0
        self.returned = 0
        self.fallbacks = 0
        self.owner: SeatOwner | None = None

    def _set(self, key: tuple[str, str], seats: int) -> None:
        leases = self.d.leases
        assert leases is not None
        old = leases.get(key, 0)
        if seats > old:
            self.granted += seats - old
        elif seats < old:
            self.returned += old - seats
        leases[key] = seats

    def alive(self) -> int:
        """The gateways alive, as the exchange hears them; a drop counts only after ``GATEWAYS_HOLD_S``
        (a peer's reports late under load would otherwise halve every budget for a moment)."""
        now = trio.current_time()
        n = max(1, int(self.gateways()))
        if n >= self._alive[0] or now >= self._alive[1]:
            self._alive = (n, now + GATEWAYS_HOLD_S)
        return self._alive[0]

    def share(self, limit: int, alive: int = 0) -> tuple[int, int]:
        """(the fleet budget, the fixed local share) of a level whose local limit is ``limit``, with
        ``alive`` gateways (0: :meth:`alive`)."""
        budget = limit * (alive or self.alive())
        if self.fallback > 0:
            return budget, max(1 if budget else 0, math.floor(budget * self.fallback))
        return budget, limit

    def chunk(self, limit: int) -> int:
        """Seats are leased in chunks of a quarter of the local limit (at least one)."""
        return max(1, math.ceil(limit / 4))

    def _forget(self, key: tuple[str, str]) -> None:
        """``key`` no longer followed (gone, or idle): its lease or fixed share given up, its entry
        in ``Dispatcher.leases`` gone (its next use asks again)."""
        self.leases.pop(key, None)
        self.local.pop(key, None)
        self._set(key, 0)
        assert self.d.leases is not None
        self.d.leases.pop(key, None)

    def _use_local(self, key: tuple[str, str], now: float, arrived: int) -> None:
        """A level beyond the bound used now: marked so, and leased if there is room again (from its
        fixed share, as after a fallback: what it holds is given back before asking)."""
        if len(self.leases) < self.max_leases:
            del self.local[key]
            self.leases[key] = _Lease(shard_of(key[0], self.shards), high=arrived, fixed=True, used_at=now)
        else:
            self.local[key] = now

    def _sweep(self, now: float, alive: int) -> None:
        """Every level beyond the bound looked at: gone, or idle for a TTL (nothing arrived since,
        nothing executing or queued now), its entry goes; with room, it is leased; else its fixed
        share follows the local limit and the gateways alive. (Its used mark is taken at each pass
        from its arrivals; what executes longer is seen here, every ``renew_s``.)"""
        self._sweep_at, self._swept_alive = now + self.renew_s, alive
        leases = self.d.leases
        assert leases is not None
        for key, used_at in list(self.local.items()):
            executing, demand, _, limit = self.d.lease_demand(*key)
            if (limit == 0 and executing == 0) or (not demand and now - used_at >= self.ttl_s):
                self._forget(key)
            elif demand or len(self.leases) < self.max_leases:
                self._use_local(key, now if demand else used_at, 0)
            if key in self.local and leases.get(key) != (fixed := self.share(limit, alive)[1]):
                self._set(key, fixed)

    def plan(self, now: float) -> list[tuple[tuple[str, str], LeaseRequest]]:
        """One pass over the leases: fixed shares where the owner is unreachable, and the requests
        to send now (each lease marked busy until :meth:`settle`). Of the levels beyond the bound,
        only those used since the last pass (every ``renew_s`` all of them: :meth:`_sweep`)."""
        leases = self.d.leases
        assert leases is not None
        wanted, self.d.lease_wanted = self.d.lease_wanted, set()
        alive = self.alive()
        if not self.local:  # (levels put beyond the bound from now on are new: looked at from renew_s on)
            self._sweep_at, self._swept_alive = now + self.renew_s, alive
        elif now >= self._sweep_at or alive != self._swept_alive:
            self._sweep(now, alive)
        peaks = self.d.lease_peak
        for key in [k for k in peaks if k not in self.leases and k not in wanted]:
            arrived = peaks.pop(key)  # (else a level gone meanwhile: not followed)
            if key in self.local:
                self._use_local(key, now, arrived)
        for key in wanted:
            if key in self.local:
                self._use_local(key, now, peaks.pop(key, 0))
            elif key not in self.leases:
                if len(self.leases) >= self.max_leases:
                    self.local[key] = now
                    self._set(key, self.share(self.d.lease_demand(*key)[3], alive)[1])  # beyond the bound: local
                    continue
                self.leases[key] = _Lease(shard_of(key[0], self.shards), used_at=now)
        out: list[tuple[tuple[str, str], LeaseRequest]] = []
        for key, ls in list(self.leases.items()):
            executing, demand, head, limit = self.d.lease_demand(*key)
            cap = leases.get(key, 0)
            arrived = peaks.pop(key, 0)
            ls.high = max(ls.high, demand, arrived)
            if executing or demand or arrived:
                ls.used_at = now
            budget, fixed = self.share(limit, alive)
            down = self.down_until.get(ls.shard, -math.inf) > now or ls.local_until > now
            if not ls.busy and ((limit == 0 and executing == 0)  # the tenant or level is gone
                                or (down and now - ls.used_at >= self.ttl_s)):
                # (idle for a TTL with no owner to give seats back to: what the owner counts for this
                # gateway lapses by itself; a level used again asks again)
                self._forget(key)
                continue
            # Invariant: a grant is used no later than the owner counts it (until ok_at + TTL), even
            # with a renewal in flight across the lapse (a retried one is, when the owner is slow):
            # its reply sets the grant again, and the owner counts the seats it then holds. On the
            # fixed share a request in flight is waited for, as before (its outcome decides).
            lapsed = cap and now > ls.ok_at + self.ttl_s
            if down or (lapsed and ls.fixed and not ls.busy):
                ls.fixed = True
                if cap != fixed:
                    self._set(key, fixed)  # no owner: the fixed share, whatever was leased
                    cap = fixed
                if down:
                    continue
            elif lapsed and not ls.fixed:
                # A grant lapsed while the owner answers (a slow answer, a stale epoch): the floor, as
                # the owner now counts this gateway; never the fixed share, which with the others
                # held to the owner's grants could exceed the budget.
                self._set(key, 0)
                cap = 0
            if ls.busy:
                continue
            if not cap and not ls.wanted and not ls.high and not any(ls.highs):  # idle, nothing leased
                self._forget(key)
                continue
            chunk = self.chunk(limit)
            # Seats asked for by the peak demand over about a TTL: a quiet moment gives nothing back,
            # a TTL without the demand does (a request then waits one round trip for its seats).
            peak = max(ls.high, *ls.highs) if ls.highs else ls.high
            want = min(budget, max(head + executing, -(-peak // chunk) * chunk))
            # More seats: when the want grew past the last request's, or soon again when the owner
            # said others are giving seats back; a fair share reached waits for the renewal.
            more = want > cap and (want > ls.wanted or (ls.retry and now >= ls.sent_at + self.retry_s))
            renew = (cap or ls.wanted) and now >= min(ls.sent_at + self.renew_s, ls.retry_at)
            if not (more or renew):
                continue
            if want < cap:
                self._set(key, max(want, executing))  # given back before asking: one round trip
                cap = leases[key]
            ls.busy, ls.sent_at, ls.wanted, ls.retry_at = True, now, want, math.inf
            ls.highs, ls.high = (*ls.highs[-(KEEP_WINDOWS - 1):], ls.high), demand
            out.append((key, LeaseRequest(self.gateway, key[0], key[1], budget, want, max(executing, cap), fixed,
                                          self.epochs.get(ls.shard, 0), lease_floor(limit), alive)))
        return out

    def settle(self, key: tuple[str, str], sent_at: float, reply: LeaseReply | None, failure: str, now: float) -> None:
        """A lease request's outcome: the grant applied, or the shard's owner marked unreachable
        (the fixed share until ``renew_s`` from now), or (a reply of an older epoch) asked again soon."""
        ls = self.leases.get(key)
        if ls is None:
            return
        ls.busy = False
        if reply is None:
            self.failures[failure] = self.failures.get(failure, 0) + 1
            if failure == "timeout" and now - self.slow_since.setdefault(ls.shard, now) < self.ttl_s:
                # A slow owner (loaded, far) still holds the others to its grants: the fixed share
                # now could exceed the budget. This gateway keeps what it holds (until the grant
                # lapses: then its floor) and its floor, and asks again after retry_s (a renewal too:
                # at the next renewal the grant would have lapsed); only a TTL of timeouts is a failure.
                ls.retry_at = now + self.retry_s
                return
            if ls.shard not in self.fallen:
                self.fallen.add(ls.shard)
                self.fallbacks += 1
                log.info("APF fleet: the owner of shard %d is not reachable (%s): fixed local shares",
                         ls.shard, failure)
            self.down_until[ls.shard] = now + self.renew_s
            ls.fixed = True
            self._set(key, self.share(self.d.lease_demand(*key)[3])[1])
            return
        newest = self.epochs.get(ls.shard, 0)
        if reply.epoch < newest:
            since = self.lower_since.setdefault(ls.shard, now)
            if now - since < self.ttl_s:
                # An owner that lost the shard meanwhile (it has not noticed yet: stalled for longer
                # than a TTL while another took over) answered before the new one, a grant or a
                # refusal (its budgets are no longer the fleet's): the grant is kept (it lapses as
                # before), not the fixed share, and the request sent again, to the new owner, at once
                # the first time since the last grant, then (the old owner answering first again) a
                # retry_s after each such reply, as after a timeout: never a loop of round trips; the
                # old owner stops answering at its next claim (a third of the TTL after it resumes).
                self.failures["stale"] += 1
                if ls.stale:
                    ls.retry_at = now + self.retry_s
                else:
                    ls.stale, ls.retry_at = True, now
                    self.wake.set()  # the run loop's next pass (PLAN_GAP_S on), not its retry_s wait
                return
            # Replies of older epochs for a TTL, none of the newest between them: an old owner would
            # have stopped answering by now (it claims within a third of the TTL of resuming and
            # disowns on a failed claim), so this is the shard's owner: its lease bucket was deleted
            # and made again (revisions restart at 1). (Measured from the first such reply, not from
            # the newest's last one: a gateway idle on the shard for a TTL would otherwise take a
            # deposed owner's first reply.)
            self.epoch_resets += 1
            log.info("APF fleet: the owner of shard %d has answered at epochs below %d for a TTL: its lease "
                     "bucket was made again; epoch %d from now", ls.shard, newest, reply.epoch)
        self.lower_since.pop(ls.shard, None)
        self.epochs[ls.shard] = reply.epoch
        if reply.granted < 0:
            self.failures["refused"] += 1
            ls.local_until = now + self.ttl_s
            ls.fixed = True
            self._set(key, self.share(self.d.lease_demand(*key)[3])[1])
            return
        self.down_until.pop(ls.shard, None)
        self.slow_since.pop(ls.shard, None)
        if ls.shard in self.fallen:
            self.fallen.discard(ls.shard)
            log.info("APF fleet: the owner of shard %d answers again (epoch %d)", ls.shard, reply.epoch)
        ls.ok_at, ls.retry, ls.fixed, ls.stale = sent_at, reply.granted < ls.wanted and reply.more, False, False
        self._set(key, reply.granted)

    def on_fixed_share(self, key: tuple[str, str]) -> bool:
        """Whether the (tenant, level) ``key`` runs on its fixed share now rather than on seats
        leased: its shard's owner unreachable or the owner refused it, and then until the next
        grant (``_Lease.fixed``: asked again, or the grant lapsed after a TTL of timeouts), or
        beyond ``max_leases`` (never leased). The dump's LimitSource; no decision reads it."""
        ls = self.leases.get(key)
        if ls is None:
            return key in self.local  # beyond max_leases: the fixed share (plan)
        now = trio.current_time()
        return ls.fixed or self.down_until.get(ls.shard, -math.inf) > now or ls.local_until > now

    def stats(self) -> LeaseStats:
        leases = self.d.leases or {}
        now = trio.current_time()
        owner = self.owner
        return LeaseStats(
            requests=self.requests, failures=dict(self.failures), granted=self.granted, returned=self.returned,
            fallbacks=self.fallbacks, leases=len(self.leases), leased_seats=sum(leases.values()),
            epoch_resets=self.epoch_resets, beyond_bound=len(self.local),
            shards_down=sum(1 for t in self.down_until.values() if t > now),
            owned_shards=len(owner.owned) if owner is not None else 0,
            owned_budgets=sum(len(b.budgets) for b, _ in owner.owned.values()) if owner is not None else 0,
            takeovers=owner.takeovers if owner is not None else 0,
            answered=sum(b.answered for b, _ in owner.owned.values()) + owner.answered_before
            if owner is not None else 0,
            handovers=owner.handovers if owner is not None else 0)

    async def _ask(self, key: tuple[str, str], r: LeaseRequest, sent_at: float) -> None:
        reply: LeaseReply | None = None
        failure = ""
        self.requests += 1
        try:
            data = await self.request(apf_seats_subject(self.prefix, shard_of(r.tenant, self.shards)),
                                      _encode_req(r), self.timeout_s)
            reply = _decode_reply(data)
        except NoResponders:
            failure = "no_responders"
        except BusTimeout:
            failure = "timeout"
        except (BusError, msgspec.DecodeError) as e:
            failure = "unavailable"
            log.debug("APF fleet lease request failed: %s", e)
        self.settle(key, sent_at, reply, failure, trio.current_time())
        self.on_change()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        slots = trio.Semaphore(MAX_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            task_status.started()
            last = -math.inf
            while True:
                # woken often (a flood): plan at most once a PLAN_GAP_S (sleep_until: no negative delay
                # when the clock moves between a check and a sleep)
                await trio.sleep_until(last + PLAN_GAP_S)
                now = last = trio.current_time()
                before = dict(self.d.leases or {})
                for key, r in self.plan(now):
                    await slots.acquire()
                    nursery.start_soon(self._ask_slot, slots, key, r, now)
                if (self.d.leases or {}) != before:
                    self.on_change()
                with trio.move_on_after(self.retry_s):
                    await self.wake.wait()
                self.wake = trio.Event()
                self.d.on_lease_wanted = self.wake.set

    async def _ask_slot(self, slots: trio.Semaphore, key: tuple[str, str], r: LeaseRequest, sent_at: float) -> None:
        try:
            await self._ask(key, r, sent_at)
        finally:
            slots.release()


class SeatOwner:
    """Every shard's election, every third of the TTL: claim (or renew) its owner lease; a shard
    held is answered (:class:`SeatBudgets` behind a :class:`bus.Responder`), a shard lost or not
    renewed within the TTL is closed (requesters then get no responders and fall back).

    Shards spread over the gateways (:meth:`plan`): a gateway claims the shards it is the
    :func:`preferred_owner` of among the gateways it hears (``peers``: the demand exchange's that lease), and
    another shard only when its own lease requests there get no answer (``unanswered``: its
    preferred gateway is gone, or does not claim); an owner hands a shard to its preferred gateway
    once that one has been heard for ``HANDOVER_AFTER_S`` (released: the new owner takes it at
    its next claim, and learns for one TTL), at most once per ``HANDOVER_BACKOFF_S`` per shard."""

    def __init__(self, bridge: Bridge, prefix: str, stream: str, *, gateway: str, replicas: int = 1,
                 ttl_s: float = LEASE_TTL_S, shards: int = SHARDS, max_budgets: int = MAX_BUDGETS,
                 peers: Any = None, unanswered: Any = None) -> None:
        self.bridge, self.prefix = bridge, prefix
        self.gateway = gateway
        self.peers = peers or (lambda: ())  # the other gateways heard now (their ids)
        self.unanswered = unanswered or (lambda shard: False)  # this gateway's lease requests there fail
        self.heard_since: dict[str, float] = {}
        self.handed: dict[int, float] = {}  # shard -> when this gateway last handed it over
        self.handovers = 0
        self.ttl_s, self.shards, self.max_budgets = ttl_s, shards, max_budgets
        self.cursors = [LeasedCursor(bridge, f"{stream}_APF", f"owner-{s}", replicas=replicas,
                                     description="jetkube: which gateway owns each shard of the tenants' "
                                                 "API Priority and Fairness seat budgets",
                                     timeout_s=max(0.5, ttl_s / 3)) for s in range(shards)]
        self.owned: dict[int, tuple[SeatBudgets, Responder]] = {}
        self.renewed: dict[int, float] = {}  # shard -> when its last successful claim started
        self.takeovers = 0
        self.answered_before = 0  # answers of shards no longer owned

    async def _claim(self, s: int) -> None:
        t0 = trio.current_time()
        try:
            held: bool | None = await self.cursors[s].claim(self.gateway, self.ttl_s) is not None
        except BusError as e:
            held = None  # unknown: kept until the lease would have lapsed
            log.debug("APF fleet: the owner lease of shard %d is not available: %s", s, e)
        if held:
            self.renewed[s] = t0
            if s not in self.owned:
                await self._own(s, t0)
        elif s in self.owned and (held is False or trio.current_time() > self.renewed.get(s, t0) + self.ttl_s * 0.8):
            await self._disown(s)

    async def _own(self, s: int, now: float) -> None:
        budgets = SeatBudgets(self.cursors[s].revision, now, ttl_s=self.ttl_s, max_budgets=self.max_budgets)
        responder = Responder(self.bridge, apf_seats_subject(self.prefix, s),
                              lambda data: budgets.answer(data, trio.current_time()))
        try:
            await responder.open(timeout_s=max(1.0, self.ttl_s / 3))
        except BusError as e:
            log.warning("APF fleet: cannot answer shard %d: %s", s, e)
            await responder.aclose()
            return
        self.owned[s] = (budgets, responder)
        self.takeovers += 1
        log.info("APF fleet: this gateway owns the seat budgets of shard %d (epoch %d)", s, budgets.epoch)

    async def _disown(self, s: int) -> None:
        budgets, responder = self.owned.pop(s)
        self.answered_before += budgets.answered
        await responder.aclose()
        log.info("APF fleet: this gateway no longer owns shard %d", s)

    def plan(self, now: float) -> tuple[list[int], list[int]]:
        """(the shards to claim or renew now, the shards to hand over to their preferred gateway)."""
        peers = {g for g in self.peers() if g != self.gateway}
        self.heard_since = {g: self.heard_since.get(g, now) for g in peers}
        alive = (self.gateway, *sorted(peers))
        claim: list[int] = []
        hand: list[int] = []
        for s in range(self.shards):
            handed = now - self.handed.get(s, -math.inf)
            pref = preferred_owner(s, alive)
            if pref == self.gateway:
                claim.append(s)
            elif s in self.owned:
                settled = now - self.heard_since[pref] >= HANDOVER_AFTER_S
                (hand if settled and handed >= HANDOVER_BACKOFF_S else claim).append(s)
            elif self.unanswered(s) and handed >= 2 * self.ttl_s:
                claim.append(s)  # its preferred gateway does not answer there: whoever can
        return claim, hand

    async def _hand_over(self, s: int) -> None:
        self.handed[s] = trio.current_time()
        self.handovers += 1
        await self._disown(s)
        try:
            await self.cursors[s].release(self.gateway)  # its preferred gateway takes it at its next claim
        except BusError:
            pass  # it lapses by itself
        log.info("APF fleet: shard %d handed over to its preferred gateway", s)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        task_status.started()
        try:
            while True:
                claim, hand = self.plan(trio.current_time())
                async with trio.open_nursery() as nursery:
                    for s in claim:
                        nursery.start_soon(self._claim, s)
                    for s in hand:
                        nursery.start_soon(self._hand_over, s)
                await trio.sleep(self.ttl_s / 3)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                for s in list(self.owned):
                    await self._disown(s)
                    try:
                        await self.cursors[s].release(self.gateway)  # another takes over at once
                    except BusError:
                        pass  # it lapses by itself


async def run_leases(flow_control: Any, bridge: Bridge, prefix: str, stream: str, *, gateway: str,
                     replicas: int = 1, ttl_s: float = LEASE_TTL_S, fallback: float = 0.0,
                     exchange: FleetExchange | None = None,
                     task_status: trio.TaskStatus[SeatLeases] = trio.TASK_STATUS_IGNORED) -> NoReturn:
    """This gateway's part in the fleet's seat budgets: the lease client (its levels' seats) and a
    candidate owner of every shard. Started at once; the gateway never waits on NATS for it."""

    async def request(subject: str, payload: bytes, timeout_s: float) -> bytes:
        return (await bridge.request(subject, payload, timeout_s=timeout_s)).data

    def gateways() -> int:
        return 1 + (len(exchange.view.peers) if exchange is not None else 0)

    leases = SeatLeases(flow_control.dispatcher, request, gateway=gateway, prefix=prefix, ttl_s=ttl_s,
                        fallback=fallback, gateways=gateways, on_change=flow_control.redispatch)
    owner = SeatOwner(bridge, prefix, stream, gateway=gateway, replicas=replicas, ttl_s=ttl_s,
                      peers=lambda: [g for g, (_, r) in exchange.view.peers.items() if r.leases]
                      if exchange is not None else (),
                      unanswered=lambda shard: shard in leases.fallen)
    leases.owner = owner
    flow_control.leases = leases
    async with trio.open_nursery() as nursery:
        await nursery.start(leases.run)
        await nursery.start(owner.run)
        task_status.started(leases)
    raise AssertionError("unreachable")  # pragma: no cover
