"""Fleet-wide APF (actors/_apf_fleet.py): demand reports, expiry, the fleet-wide cross-tenant order,
and two simulated gateways under trio's autojump clock."""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from actors._apf import Dispatcher, Ticket, flow_hash
from actors._apf_fleet import FleetExchange, FleetReport, FleetStats, FleetView, _encode, local_report


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _plc(name: str = "lvl", ncs: int = 1, *, queues: int = 64, hand: int = 4, qlen: int = 50) -> dict:
    return {"metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": ncs, "lendablePercent": 0,
                                                    "limitResponse": {"type": "Queue", "queuing": {
                                                        "queues": queues, "handSize": hand,
                                                        "queueLengthLimit": qlen}}}}}


def _dispatcher(seats: int, tenants: tuple[str, ...] = ("a", "b")) -> Dispatcher:
    d = Dispatcher(seats)
    for t in tenants:
        d.configure(t, 1, [], [_plc()], trio.current_time() if _in_trio() else 0.0)
    return d


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def _ticket(tenant: str, user: str, now: float) -> Ticket:
    return Ticket(tenant, "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", user), 1, now)


def test_view_ignores_own_echo_and_garbage_and_expires_peers() -> None:
    v = FleetView("me", max_peers=2, expiry_s=3.0)
    assert not v.receive(_encode(FleetReport("me", 10, {"a": (5, 0)})), 0.0)
    assert not v.receive(b"\x00not a report", 0.0) and v.ignored == 1
    assert v.receive(_encode(FleetReport("g2", 10, {"a": (3, 9), "b": (1, 0)})), 0.0)
    assert v.receive(_encode(FleetReport("g3", 6, {"a": (2, 0), "c": (0, 4)})), 1.0)
    assert v.held_elsewhere(2.0) == {"a": 5, "b": 1}  # waiting seats are not held seats
    assert v.fleet_seats(10) == 26
    # Bounded: a third peer is not remembered while two live ones are.
    assert not v.receive(_encode(FleetReport("g4", 10, {"a": (7, 0)})), 2.5) and v.ignored == 2
    # g2 silent for more than 3 s: forgotten (its seats no longer count), room for g4.
    assert v.held_elsewhere(3.5) == {"a": 2}
    assert v.receive(_encode(FleetReport("g4", 10, {"a": (7, 0)})), 3.6)
    assert v.held_elsewhere(3.6) == {"a": 9}
    assert v.held_elsewhere(100.0) == {}


async def test_local_report_names_the_busiest_tenants(autojump_clock: trio.testing.MockClock) -> None:
    d = _dispatcher(4, ("a", "b", "c"))
    now = trio.current_time()
    for i in range(6):
        d.admit(_ticket("a", f"u{i}", now), now)  # 4 executing, 2 waiting
    d.admit(_ticket("b", "x", now), now)  # waiting: no seat left
    r = local_report("g1", d, max_tenants=8)
    assert r.server_cl == 4 and r.tenants == {"a": (4, 2), "b": (0, 1)}  # idle c is not reported
    assert local_report("g1", d, max_tenants=1).tenants == {"a": (4, 2)}


async def test_dispatch_counts_seats_held_elsewhere(autojump_clock: trio.testing.MockClock) -> None:
    """A freed seat goes to the waiting tenant holding fewest seats in the fleet, not here."""
    now = trio.current_time()
    for elsewhere, first in (({}, "a"), ({"a": 3}, "b")):
        d = _dispatcher(2)
        d.elsewhere = elsewhere
        held = [_ticket("b", "bob", now) for _ in range(2)]
        for t in held:
            d.admit(t, now)  # b holds both seats here
        wa, wb = _ticket("a", "alice", now), _ticket("b", "bob", now)
        d.admit(wa, now)
        d.admit(wb, now)
        started = d.finish(held[0], now)
        # Alone: a holds 0 < b's 1 here, a first. Fleet: a holds 3 elsewhere > b's 1, b first.
        assert [t.tenant for t in started] == [first]


class _Net:
    """An in-memory NATS subject between simulated gateways; ``up`` False drops everything."""

    def __init__(self) -> None:
        self.inboxes: list[trio.MemorySendChannel[bytes]] = []
        self.up = True

    def join(self) -> tuple[_Net._Pub, trio.MemoryReceiveChannel[bytes]]:
        send, recv = trio.open_memory_channel[bytes](64)
        self.inboxes.append(send)
        return _Net._Pub(self), recv

    class _Pub:
        def __init__(self, net: _Net) -> None:
            self.net = net

        def publish(self, payload: bytes) -> bool:
            if not self.net.up:
                return False
            for inbox in self.net.inboxes:
                try:
                    inbox.send_nowait(payload)
                except trio.WouldBlock:
                    pass
            return True


async def _client(d: Dispatcher, tenant: str, user: str, served: dict[str, int], service_s: float,
                  events: dict[Ticket, trio.Event]) -> None:
    """A closed-loop client of one simulated gateway: admit, wait for a seat, hold it ``service_s``."""
    while True:
        t = _ticket(tenant, user, trio.current_time())
        for s in d.admit(t, trio.current_time()):
            events.pop(s, trio.Event()).set()
        if t.state == "queued":
            ev = events[t] = trio.Event()
            await ev.wait()
        if t.state != "executing":
            await trio.sleep(service_s)  # rejected: back off one service time
            continue
        await trio.sleep(service_s)
        served[tenant] = served.get(tenant, 0) + 1
        for s in d.finish(t, trio.current_time()):
            if s in events:
                events.pop(s).set()


async def _simulate(exchange: bool, seconds: float = 30.0) -> tuple[dict[str, int], dict[str, int]]:
    """Two gateways of 4 seats; tenant a floods both (8 clients each), b floods g1 only (8 clients)."""
    net = _Net()
    g1, g2 = _dispatcher(4), _dispatcher(4)
    served1: dict[str, int] = {}
    served2: dict[str, int] = {}
    async with trio.open_nursery() as n:
        if exchange:
            for i, d in enumerate((g1, g2)):
                pub, recv = net.join()
                n.start_soon(FleetExchange(d, pub, recv, gateway=f"g{i + 1}", period_s=0.5).run)
        ev1: dict[Ticket, trio.Event] = {}
        ev2: dict[Ticket, trio.Event] = {}
        for i in range(8):
            n.start_soon(_client, g1, "a", f"a{i}", served1, 0.05, ev1)
            n.start_soon(_client, g2, "a", f"a{i}", served2, 0.05, ev2)
            n.start_soon(_client, g1, "b", f"b{i}", served1, 0.05, ev1)
        await trio.sleep(seconds)
        n.cancel_scope.cancel()
    return served1, served2


async def test_two_gateways_tenant_share_holds_fleet_wide(autojump_clock: trio.testing.MockClock) -> None:
    """Per gateway, b gets half of g1 and a three quarters of the fleet's seats; with the exchange b
    gets (nearly) all of g1 while a holds g2's: each about half of the fleet (max-min fair)."""
    alone1, alone2 = await _simulate(exchange=False)
    share_alone = alone1["b"] / (alone1["b"] + alone1["a"])
    fleet1, fleet2 = await _simulate(exchange=True)
    share_fleet = fleet1["b"] / (fleet1["b"] + fleet1["a"])
    a_fleet = (fleet1.get("a", 0) + fleet2["a"]) / (sum(fleet1.values()) + sum(fleet2.values()))
    assert 0.4 < share_alone < 0.6
    assert share_fleet > 0.9, (fleet1, fleet2)
    assert a_fleet < 0.55, (fleet1, fleet2)  # a's fleet share, not the 3/4 it gets per gateway
    assert sum(fleet2.values()) >= 0.95 * sum(alone2.values())  # g2 stays work-conserving


async def test_silent_peers_degrade_to_the_local_policy(autojump_clock: trio.testing.MockClock) -> None:
    net = _Net()
    g1, g2 = _dispatcher(4), _dispatcher(4)
    now = trio.current_time()
    for i in range(4):
        g2.admit(_ticket("a", f"u{i}", now), now)  # a holds all of g2
    async with trio.open_nursery() as n:
        x1 = FleetExchange(g1, *net.join(), gateway="g1", period_s=1.0)
        x2 = FleetExchange(g2, *net.join(), gateway="g2", period_s=1.0)
        n.start_soon(x1.run)
        n.start_soon(x2.run)
        await trio.sleep(1.5)
        assert g1.elsewhere == {"a": 4} and g2.elsewhere == {}
        net.up = False  # NATS gone (or too slow): reports are dropped, nothing waits on them
        await trio.sleep(3.7)  # g2 last heard at 1.0 s; forgotten at the first tick more than 3 s later
        assert x2.unpublished >= 3
        assert g1.elsewhere == {}  # g1 decides alone again
        net.up = True
        await trio.sleep(1.0)
        assert g1.elsewhere == {"a": 4}
        n.cancel_scope.cancel()


async def test_exchange_stats_count_reports_peers_and_drops(autojump_clock: trio.testing.MockClock) -> None:
    """``FleetExchange.stats()`` (the jetkube_apf_fleet_* series): sent, received, dropped by reason,
    peers known, tenants reported here and by the peers, the fleet's seats."""
    net = _Net()
    g1, g2 = _dispatcher(4), _dispatcher(4, ("a", "b", "c"))
    now = trio.current_time()
    for i in range(5):
        g2.admit(_ticket("a", f"u{i}", now), now)  # a: 4 seats held, 1 waiting
    g2.admit(_ticket("c", "x", now), now)  # c: waiting
    async with trio.open_nursery() as n:
        x1 = FleetExchange(g1, *net.join(), gateway="g1", period_s=1.0)
        x2 = FleetExchange(g2, *net.join(), gateway="g2", period_s=1.0)
        assert x1.stats() == FleetStats(0, 0, {"unpublished": 0, "receive_queue_full": 0, "invalid": 0,
                                               "too_many_peers": 0}, 0, 0, 0, 4)
        n.start_soon(x1.run)
        n.start_soon(x2.run)
        await trio.sleep(2.5)  # 3 ticks each (0, 1, 2 s)
        s1, s2 = x1.stats(), x2.stats()
        assert (s1.sent, s1.received, s1.peers, s1.tenants_reported, s1.peer_tenants, s1.fleet_seats) == \
            (3, 3, 1, 0, 2, 8)
        assert (s2.sent, s2.received, s2.peers, s2.tenants_reported, s2.peer_tenants) == (3, 3, 1, 2, 0)
        net.up = False
        await trio.sleep(4.0)  # 4 reports unpublished; the peer expires
        s1 = x1.stats()
        assert s1.sent == 3 and s1.dropped["unpublished"] == 4 and s1.peers == 0 and s1.peer_tenants == 0
        assert s1.fleet_seats == 4
        x1.view.receive(b"garbage", trio.current_time())
        assert x1.stats().dropped["invalid"] == 1
        n.cancel_scope.cancel()


def test_reports_say_whether_the_gateway_leases() -> None:
    """A report names whether its gateway leases seats (a candidate shard owner); an older gateway's
    report, without the field, reads as not leasing."""
    d = Dispatcher(10)
    assert local_report("g1", d, 8).leases is False
    d.leases = {}
    r = local_report("g1", d, 8)
    assert r.leases is True and msgspec.msgpack.decode(_encode(r), type=FleetReport) == r
    old = msgspec.msgpack.encode(["g0", 10, {"t": (1, 2)}])
    assert msgspec.msgpack.decode(old, type=FleetReport) == FleetReport("g0", 10, {"t": (1, 2)}, False)
