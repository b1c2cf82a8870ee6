"""API Priority and Fairness across a fleet of gateways: demand exchange over NATS.

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
  is forgotten, so a slow or lost NATS degrades to exactly the per-gateway policy (local limits
  always apply: the fleet view only reorders who goes first, it never grants seats);
- nothing on the request path touches NATS: a report is published without waiting
  (:class:`bus.Broadcast`), received ones arrive through a bounded channel, and the dispatcher
  reads a plain dict.

:class:`FleetView` is pure (time is an argument); :class:`FleetExchange` is the trio loop.
"""

from __future__ import annotations

import logging
import uuid
from typing import NoReturn, Protocol

import msgspec
import trio

from bus import Bridge, Broadcast

from ._apf import Dispatcher

log = logging.getLogger("jetkube.flowcontrol.fleet")


class FleetReport(msgspec.Struct, frozen=True, array_like=True):
    """One gateway's demand: per tenant, seats executing and seats waiting (queued)."""

    gateway: str
    server_cl: int
    tenants: dict[str, tuple[int, int]]


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(FleetReport).decode


def local_report(gateway: str, d: Dispatcher, max_tenants: int) -> FleetReport:
    """What this gateway's dispatcher holds and has waiting, per tenant (the busiest ``max_tenants``)."""
    busy = [(tf.executing_seats, sum(qs.queued_seats for qs in tf.levels.values()) if tf.queued else 0, name)
            for name, tf in d.tenants.items() if tf.executing_seats or tf.queued]
    if len(busy) > max_tenants:
        busy.sort(key=lambda b: b[0] + b[1], reverse=True)
        del busy[max_tenants:]
    return FleetReport(gateway, d.server_cl, {name: (held, waiting) for held, waiting, name in busy})


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
