"""Fleet-wide seat budgets (actors/_apf_fleet.py): the owner's accounting (SeatBudgets), the max-min
split, and three simulated gateways leasing one tenant's seats under trio's autojump clock: the
sum of the seats executing across them never exceeds the level's fleet budget, a gateway alone in
the flood gets more than its local limit, the owner's death falls back to fixed shares without
stopping requests, and a new owner (learning first) takes over."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from actors._apf import Dispatcher, Ticket, flow_hash, lease_floor
from actors._apf_fleet import (
    HANDOVER_AFTER_S,
    HANDOVER_BACKOFF_S,
    SHARDS,
    LeaseReply,
    LeaseRequest,
    SeatBudgets,
    SeatLeases,
    SeatOwner,
    fair_shares,
    preferred_owner,
    shard_of,
)
from actors._flowcontrol import dump_priority_levels, limit_source
from bus import NoResponders, apf_seats_subject


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _plc(name: str, ncs: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": ncs, "lendablePercent": 0,
                                                    "limitResponse": {"type": "Queue", "queuing": {
                                                        "queues": 16, "handSize": 4, "queueLengthLimit": 50}}}}}


def _req(g: str, want: int, held: int = 0, *, budget: int = 6, fallback: int = 2) -> LeaseRequest:
    return LeaseRequest(g, "a", "lvl", budget, want, held, fallback, 0)


def test_fair_shares_split_max_min() -> None:
    assert fair_shares(6, {"g1": 10, "g2": 10, "g3": 10}) == {"g1": 2, "g2": 2, "g3": 2}
    assert fair_shares(6, {"g1": 1, "g2": 10, "g3": 10}) == {"g1": 1, "g2": 3, "g3": 2}
    assert fair_shares(6, {"g1": 0, "g2": 10}) == {"g1": 0, "g2": 6}
    assert fair_shares(1, {"g1": 1, "g2": 1}) == {"g1": 1, "g2": 0}
    assert fair_shares(0, {"g1": 3}) == {"g1": 0}
    for budget in range(13):
        for wants in ({"x": 5, "y": 1, "z": 9}, {"x": 0, "y": 0}, {"x": 20}):
            out = fair_shares(budget, wants)
            assert sum(out.values()) <= budget and all(out[g] <= max(0, w) for g, w in wants.items())


def test_owner_grants_within_the_budget_and_takes_returns() -> None:
    b = SeatBudgets(epoch=7, now=0.0, ttl_s=3.0)
    # Learning (one TTL after the takeover): what a gateway holds, or its fixed share, never more.
    assert b.handle(_req("g1", 6, held=1), 0.1) == LeaseReply(2, 7, 3000, False)
    assert b.handle(_req("g2", 1), 0.2).granted == 1
    assert b.handle(_req("g1", 6, held=2), 2.0).granted == 2
    assert b.handle(_req("g2", 1, held=1), 2.0).granted == 1
    # Learning is over: g1 gets all but g2's one.
    assert b.handle(_req("g1", 6, held=2), 3.5).granted == 5
    assert b.held("a", "lvl", 3.5) == 6
    # g3 wants seats: none are free; the fair split (g2 1, g3 3, g1 2) asks g1 down to 2.
    assert b.handle(_req("g3", 3), 3.6) == LeaseReply(0, 7, 3000, True)  # ask again soon
    assert b.handle(_req("g1", 6, held=5), 3.7) == LeaseReply(2, 7, 3000, False)  # its fair share
    assert b.held("a", "lvl", 3.7) == 6  # g1 may still execute its 5 until its next request
    assert b.handle(_req("g1", 6, held=2), 4.0).granted == 2
    assert b.handle(_req("g3", 3), 4.1).granted == 3
    assert b.held("a", "lvl", 4.1) == 6
    # A return: g3 wants 0 and holds 0: its hold is gone; g1 may grow again.
    assert b.handle(_req("g3", 0), 4.2).granted == 0
    assert b.handle(_req("g1", 6, held=2), 4.3).granted == 5
    # A silent gateway's hold lapses after the TTL: g2's seat (renewed at 2.0) is free at 5.0.
    assert b.handle(_req("g1", 6, held=5), 6.6).granted == 6
    assert b.held("a", "lvl", 6.6) == 6


def test_owner_keeps_every_gateways_floor() -> None:
    """Every gateway may run its floor (``lease_floor``) without asking: the owner lends nobody the
    floors of the gateways alive, holders or not, so the sum stays within the budget whoever starts."""
    b = SeatBudgets(epoch=1, now=-10.0, ttl_s=3.0)

    def req(g: str, want: int, held: int = 0) -> LeaseRequest:
        return LeaseRequest(g, "a", "lvl", 6, want, held, 2, 1, 1, 3)  # 3 gateways, floor 1

    assert b.handle(req("g1", 6), 0.0) == LeaseReply(4, 1, 3000, False)  # 6 but g2's and g3's floors
    # g2 wants 2: its fair share of the 5 not kept for g3 is 2, but only 5 - 4 are free now.
    assert b.handle(req("g2", 2), 0.1) == LeaseReply(1, 1, 3000, True)
    assert b.handle(req("g1", 6, held=4), 0.2) == LeaseReply(3, 1, 3000, False)  # its fair share: 3
    assert b.handle(req("g2", 2, held=1), 0.3).granted == 1  # g1 may run 4 until its next request
    assert b.handle(req("g1", 6, held=3), 0.4).granted == 3
    assert b.handle(req("g2", 2, held=1), 0.5).granted == 2
    assert b.held("a", "lvl", 0.5) + 1 == 6  # and g3's floor: the budget
    # An older gateway's request (no floor, no count) keeps nothing for the others, as before.
    assert b.handle(LeaseRequest("g9", "b", "lvl", 6, 6, 0, 2, 1), 0.6).granted == 6


def test_owner_keeps_each_gateways_own_floor() -> None:
    """Review s7 finding 7: gateways with other local limits have other floors; the owner keeps each
    holder's own floor (from its requests), and for a gateway holding nothing the largest floor it
    knows, not the requester's for every gateway (which lent out the difference: 14 of 12)."""

    def req(g: str, want: int, floor: int, gateways: int, held: int = 0) -> LeaseRequest:
        return LeaseRequest(g, "a", "lvl", 12, want, held, 4, 1, floor, gateways)

    b = SeatBudgets(epoch=1, now=-10.0, ttl_s=3.0)
    assert b.handle(req("g1", 1, 3, 2), 0.0).granted == 1  # g1: floor 3 (a local limit of 12)
    # g2 (floor 1) wants everything: g1 may run its 3 whatever it holds, so 9, not 11.
    assert b.handle(req("g2", 12, 1, 2), 0.1) == LeaseReply(9, 1, 3000, False)
    assert b.held("a", "lvl", 0.1) + (3 - 1) == 12  # the holds, and what g1 may run beyond its hold of 1

    b = SeatBudgets(epoch=1, now=-10.0, ttl_s=3.0)
    assert b.handle(req("g1", 12, 3, 3), 0.0).granted == 6  # g2's and g3's floors kept: 3 each
    # g2 (floor 1) asks: g3 holds nothing, and may have g1's floor (3), the largest known: 3 now
    # (the split of the 9 not kept for g3 is 5/4, g1 holds 6), not 5 (6 + 5 + g3's 3 = 14 of 12).
    assert b.handle(req("g2", 12, 1, 3), 0.1) == LeaseReply(3, 1, 3000, True)
    assert b.held("a", "lvl", 0.1) + 3 == 12


def test_a_leased_level_runs_its_floor_without_waiting() -> None:
    """A leased level's requests within ``lease_floor`` start before any grant (the level is marked
    wanted so the lease client leases it); one beyond the floor waits for seats leased."""
    d = Dispatcher(8)
    d.leases = {}
    woken: list[int] = []
    d.on_lease_wanted = lambda: woken.append(1)
    d.configure("a", 1, [], [_plc("lvl", 1)], 0.0)  # lvl: 8 seats locally, floor 2
    qs = d.tenants["a"].levels["lvl"]
    assert (qs.limit, lease_floor(qs.limit), lease_floor(1), lease_floor(0)) == (8, 2, 1, 0)
    ts = [Ticket("a", "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", f"u{i}"), 1, 0.0) for i in range(3)]
    assert d.admit(ts[0], 0.0) == [ts[0]] and d.admit(ts[1], 0.0) == [ts[1]]
    assert d.lease_wanted == {("a", "lvl")} and woken == [1]  # asked once, not waited for
    assert d.admit(ts[2], 0.0) == [] and ts[2].state == "queued"  # beyond the floor: waits for a lease
    d.leases[("a", "lvl")] = 3
    assert d.dispatch(0.1) == [ts[2]]
    assert d.seat_limit("a", qs) == 3


async def test_a_slow_owner_keeps_the_grant_not_the_fixed_share(autojump_clock: trio.testing.MockClock) -> None:
    """A lease request that times out (the owner loaded or far) keeps what the gateway holds, and
    its floor, rather than the fixed share, which could exceed the budget while the owner still
    holds the others to its grants; only timeouts for a whole TTL fall back to the fixed share."""
    d = Dispatcher(8)
    d.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 3)], 0.0)  # lvl: 2 seats locally
    c = SeatLeases(d, None, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 3)
    key = ("a", "lvl")
    d.lease_wanted.add(key)
    d.lease_peak[key] = 4  # four requests of one seat arrived
    ((_, r),) = c.plan(0.0)
    assert (r.floor, r.gateways, r.fallback) == (1, 3, 2)
    c.settle(key, 0.0, LeaseReply(4, 1, 3000), "", 0.1)
    assert d.leases == {key: 4}
    c.leases[key].busy = True
    c.settle(key, 1.5, None, "timeout", 2.5)
    assert d.leases == {key: 4} and not c.fallen and c.failures["timeout"] == 1  # kept: the grant is valid
    c.leases[key].busy = True
    c.settle(key, 4.6, None, "timeout", 5.6)  # timeouts since 2.5: a whole TTL
    assert d.leases == {key: 2} and c.fallen == {shard_of("a")} and c.fallbacks == 1


def _lvl_of_8_wanted() -> tuple[Dispatcher, SeatLeases, tuple[str, str]]:
    """``a``'s ``lvl`` with 8 seats locally (floor 2), one of three gateways (TTL 3 s), one seat wanted."""
    d = Dispatcher(16)
    d.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 1)], 0.0)  # lvl: 8 seats locally
    c = SeatLeases(d, None, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 3)
    key = ("a", "lvl")
    d.lease_wanted.add(key)
    d.lease_peak[key] = 1
    return d, c, key


def _granted_then_timed_out() -> tuple[Dispatcher, SeatLeases, tuple[str, str]]:
    """Limit 8, floor 2, three gateways: granted 2 (asked at 0), then the renewal sent at 1.6 times
    out at 2.35 (one slow answer: the timeout is 0.75 s with a TTL of 3 s)."""
    d, c, key = _lvl_of_8_wanted()
    ((_, r),) = c.plan(0.0)
    assert (r.fallback, r.floor, r.want) == (8, 2, 2)
    c.settle(key, 0.0, LeaseReply(2, 1, 3000), "", 0.1)  # the others hold the rest
    assert d.leases == {key: 2}
    ((_, r),) = c.plan(1.6)  # the renewal
    assert r.held == 2
    c.settle(key, 1.6, None, "timeout", 2.35)
    assert d.leases == {key: 2} and not c.fallen
    return d, c, key


async def test_a_grant_lapsing_after_a_timeout_drops_to_the_floor(autojump_clock: trio.testing.MockClock) -> None:
    """Review s7 finding 1: a grant that lapses while the owner is slow (not gone, not a TTL of
    timeouts) leaves the floor, never the fixed share (8 here), which with the other gateways held
    to the owner's grants would take the fleet over its budget."""
    d, c, key = _granted_then_timed_out()
    ((_, r),) = c.plan(2.6)  # the renewal sent again (the timeout + retry_s), as the run loop does
    assert c.leases[key].busy and r.held == 2
    c.plan(3.05)  # ok_at + TTL + 0.05: the grant of 2 lapsed, with that renewal still in flight
    assert d.leases[key] == 0 and not c.fallen  # review s7b finding 1: not once the renewal times out
    qs = d.tenants["a"].levels["lvl"]
    assert d.seat_limit("a", qs) == lease_floor(qs.limit) == 2
    # The renewal in flight times out too (within a TTL of the first timeout): still the floor.
    c.settle(key, 2.6, None, "timeout", 3.35)
    assert c.plan(3.4) == [] and d.leases[key] == 0 and not c.fallen and c.failures["timeout"] == 2
    d.lease_peak[key] = 1  # the demand goes on (else the lease would idle out)
    ((_, r),) = c.plan(3.6)  # sent again at the timeout + retry_s
    assert r.held == 0
    c.settle(key, 3.6, None, "timeout", 4.35)
    assert d.leases[key] == 0 and not c.fallen
    # A TTL of timeouts: the owner counts as unreachable, the fixed share.
    assert len(c.plan(4.65)) == 1
    c.settle(key, 4.65, None, "timeout", 5.4)
    assert d.leases[key] == 8 and c.fallen == {shard_of("a")}
    # On the fixed share, a request in flight is waited for (its outcome decides): the gateway keeps
    # what it told the owner it holds (2: the rest given back before asking), neither the floor nor
    # the fixed share again (seats it just said it does not hold).
    d.lease_peak[key] = 1
    ((_, r),) = c.plan(7.0)  # asked again once the shard is no longer down
    assert c.leases[key].busy and r.held == 2 == d.leases[key]
    assert c.plan(7.1) == [] and d.leases[key] == 2


async def test_a_timed_out_renewal_is_sent_again_after_retry_s(autojump_clock: trio.testing.MockClock) -> None:
    """Review s7 finding 1: a renewal that timed out is sent again ``retry_s`` after the timeout,
    not at the next renewal (sent_at + renew_s = 3.1, after the grant lapsed at 3.0)."""
    d, c, key = _granted_then_timed_out()
    assert c.retry_s == 0.25
    assert c.plan(2.5) == []  # not yet
    ((_, r),) = c.plan(2.6)  # the timeout + retry_s
    assert (r.held, r.want) == (2, 2)
    c.settle(key, 2.6, LeaseReply(2, 1, 3000), "", 2.7)
    c.plan(3.05)
    assert d.leases == {key: 2}  # renewed before it lapsed
    assert c.plan(3.2) == []  # and the next renewal at 2.6 + 1.5 as usual
    assert len(c.plan(4.1)) == 1


class _ScriptedOwner:
    """A shard's owner answering every request with its want, from a script of epochs (the last one
    repeated): an epoch older than one answered before is an owner that lost the shard meanwhile
    (another took it over) and still answers. Records each request's send time, the epoch the
    gateway had seen, and the seats the gateway may execute then (its grant kept, or not)."""

    def __init__(self, d: Dispatcher, epochs: list[int]) -> None:
        self.d, self.epochs = d, epochs
        self.sent: list[tuple[float, int, int]] = []

    async def request(self, subject: str, payload: bytes, timeout_s: float) -> bytes:
        r = msgspec.msgpack.decode(payload, type=LeaseRequest)
        self.sent.append((trio.current_time(), r.epoch, (self.d.leases or {}).get((r.tenant, r.level), 0)))
        await trio.sleep(0.001)
        epoch = self.epochs.pop(0) if len(self.epochs) > 1 else self.epochs[0]
        return msgspec.msgpack.encode(LeaseReply(r.want, epoch, 3000))


async def _leasing(nursery: trio.Nursery, epochs: list[int]) -> tuple[Dispatcher, SeatLeases, _ScriptedOwner]:
    """One gateway's lease client running against a scripted owner (TTL 3 s: renewals every 1.5 s,
    retry_s 0.25 s), two seats of ``a``'s ``lvl`` executing all along (its floor: leased at once)."""
    d = Dispatcher(16)
    d.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 1)], 0.0)  # lvl: 8 seats locally, floor 2
    owner = _ScriptedOwner(d, epochs)
    c = SeatLeases(d, owner.request, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 3)
    await nursery.start(c.run)
    for i in range(2):
        t = Ticket("a", "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", f"u{i}"), 1, trio.current_time())
        assert d.admit(t, trio.current_time()) == [t] and t.state == "executing"
    return d, c, owner


async def test_a_stale_epoch_reply_is_asked_again_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """A reply of an older epoch than the newest seen comes from an owner that lost the shard: the
    gateway keeps its grant and asks again at once (the new owner), not at the next renewal."""
    start = trio.current_time()
    async with trio.open_nursery() as n:
        d, c, owner = await _leasing(n, [2, 1, 2])  # granted (epoch 2), the renewal answered stale, then 2
        await trio.sleep(2.0)
        (t0, _, _), (t1, e1, held1), (t2, e2, held2) = owner.sent
        assert t0 - start < 0.05 and 1.5 <= t1 - t0 < 1.55  # the grant, and its renewal half a TTL later
        assert c.failures["stale"] == 1
        assert t2 - t1 < 0.05 < c.retry_s < c.renew_s  # asked again at once (the renewal: 1.5 s later)
        assert (e1, held1, e2, held2) == (2, 2, 2, 2)  # the grant kept meanwhile; the newest epoch sent
        assert d.leases == {("a", "lvl"): 2} and c.epochs == {shard_of("a"): 2}
        assert c.leases[("a", "lvl")].ok_at == t2  # the re-ask's grant: it lapses a TTL after it
        assert len(owner.sent) == 3  # and then the renewals as usual
        n.cancel_scope.cancel()


async def test_stale_epoch_replies_do_not_ask_in_a_tight_loop(autojump_clock: trio.testing.MockClock) -> None:
    """An older owner that keeps answering first (it has not noticed yet that it lost the shard):
    one re-ask at once, then one every ``retry_s`` (as after a timeout), never a tight loop; the
    grant is kept meanwhile. Once replies of older epochs have kept coming for a TTL, none of the
    newest between them, the older one is taken: an owner that lost its lease stops answering
    within a third of a TTL of resuming, so that is the shard's owner, whose lease bucket was
    deleted and made again (its revisions restart at 1; session 10, defect 2)."""
    async with trio.open_nursery() as n:
        d, c, owner = await _leasing(n, [2, 1])  # granted (epoch 2), then every answer of epoch 1
        key = ("a", "lvl")
        await trio.sleep(2.9)
        assert d.leases == {key: 2}  # kept through the stale answers
        times = [t for t, _, _ in owner.sent]
        assert c.failures["stale"] == len(times) - 1 >= 3
        gaps = [b - a for a, b in itertools.pairwise(times[1:])]
        assert gaps[0] < 0.05  # the first stale answer since the grant: asked again at once
        assert all(g >= c.retry_s for g in gaps[1:]), gaps  # then every retry_s at most
        assert all(e == 2 for _, e, _ in owner.sent[1:]) and c.epochs == {shard_of("a"): 2}
        first_stale = times[1]  # (the renewal, half a TTL after the grant)
        await trio.sleep_until(first_stale + 3.0 - 0.1)  # a TTL since the grant, not yet since the first
        assert c.epochs == {shard_of("a"): 2} and c.epoch_resets == 0
        await trio.sleep(0.1 + c.retry_s + 0.05)  # a TTL of stale answers
        assert c.epochs == {shard_of("a"): 1} and c.epoch_resets == 1 and not c.lower_since
        stale = c.failures["stale"]
        await trio.sleep(3.0)
        assert c.failures["stale"] == stale and d.leases == {key: 2}  # granted at epoch 1 from then on
        assert owner.sent[-1][1] == 1
        n.cancel_scope.cancel()


async def test_a_stale_owners_refusal_is_ignored_too(autojump_clock: trio.testing.MockClock) -> None:
    """A refusal (the owner full) of an older epoch is an old owner's too: its budgets are no longer
    the fleet's. Ignored as its grants are (the grant kept, asked again at once), not the fixed
    share for a TTL, which with the others held to the new owner's grants could exceed the budget."""
    d, c, key = _lvl_of_8_wanted()
    c.plan(0.0)
    c.settle(key, 0.0, LeaseReply(2, 2, 3000), "", 0.1)
    ((_, r),) = c.plan(1.5)  # the renewal
    c.settle(key, 1.5, LeaseReply(-1, 1, 3000), "", 1.6)  # refused by the owner of epoch 1
    assert d.leases == {key: 2} and not c.leases[key].fixed and not c.on_fixed_share(key)
    assert (c.failures["stale"], c.failures["refused"]) == (1, 0)
    ((_, r),) = c.plan(1.605)  # asked again at once
    assert (r.epoch, r.held) == (2, 2)

async def test_a_deposed_owners_reply_is_ignored_by_a_gateway_idle_on_the_shard(
        autojump_clock: trio.testing.MockClock) -> None:
    """Review of session 10, M1: owner A (epoch 9) stalls for longer than a TTL, B takes the shard
    over (epoch 12); A, resumed, answers the requests queued for it before its next claim. A gateway
    that has not used the shard for a TTL (its last reply of epoch 12 long ago) ignores A's reply:
    it is no proof of a re-made lease bucket, only a TTL of lower epochs with none of the newest
    between them is. Before, the first such reply was taken (and counted as a bucket reset)."""
    d = Dispatcher(16)
    d.configure("a", 1, [], [_plc("lvl", 1)], 0.0)  # 8 seats locally
    c = SeatLeases(d, None, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 2)
    key, shard = ("a", "lvl"), shard_of("a")
    d.lease_wanted.add(key)
    d.lease_peak[key] = 2
    t = 0.0
    while t < 20.0:  # B answers every request; the level goes idle and its lease goes
        for k, q in c.plan(t):
            c.settle(k, t, LeaseReply(q.want, 12, 3000), "", t + 0.01)
        t += 0.25
    assert key not in c.leases and c.epochs == {shard: 12}
    d.lease_wanted.add(key)  # used again
    d.lease_peak[key] = 2
    ((_, r),) = c.plan(20.0)
    assert r.epoch == 12
    c.settle(key, 20.0, LeaseReply(8, 9, 3000), "", 20.01)  # A answers first
    assert c.epochs == {shard: 12} and c.epoch_resets == 0 and c.failures["stale"] == 1
    assert key not in (d.leases or {})  # A's grant not taken (the floor meanwhile)
    ((_, r),) = c.plan(20.015)  # asked again at once: B answers
    assert r.epoch == 12
    c.settle(key, 20.015, LeaseReply(2, 12, 3000), "", 20.02)
    assert d.leases == {key: 2} and not c.lower_since
    # A TTL after A's first reply, A answers once more (B's reply came between): still ignored.
    c.leases[key].busy = True
    c.settle(key, 23.5, LeaseReply(8, 9, 3000), "", 23.51)
    assert c.epochs == {shard: 12} and c.epoch_resets == 0 and d.leases == {key: 2}


async def test_a_fixed_share_after_a_lapse_shows_in_the_dump(autojump_clock: trio.testing.MockClock) -> None:
    """The dump's LimitSource says ``fixed-share`` while the level runs on its fixed share: after a
    TTL of timeouts (the grant lapsed) until the next grant, also once the shard is no longer marked
    down (asked again), and beyond the leases' bound; ``lease`` again after a grant."""
    d, c, key = _granted_then_timed_out()
    c.leases[key].busy = True
    c.settle(key, 4.6, None, "timeout", 5.4)  # timeouts since 2.35: a whole TTL
    assert d.leases[key] == 8 and c.leases[key].fixed
    fc = SimpleNamespace(dispatcher=d, leases=c, dispatched={}, rejected={})
    qs = d.tenants["a"].levels["lvl"]

    def shown() -> tuple[str, str]:
        (row,) = [line.split() for line in dump_priority_levels(fc, "a").splitlines() if line.startswith("lvl,")]
        assert row[-1] == limit_source(fc, "a", qs)
        return row[-2].rstrip(","), row[-1]

    await trio.sleep_until(7.0)
    assert c.down_until[shard_of("a")] < trio.current_time() and c.leases[key].local_until < trio.current_time()
    assert shown() == ("8", "fixed-share")  # the shard no longer marked down: still its fixed share
    d.lease_peak[key] = 1
    ((_, r),) = c.plan(7.0)  # asked again, on the fixed share (2 given back) until the answer
    assert (r.held, r.fallback) == (2, 8)
    assert shown() == ("2", "fixed-share")
    c.settle(key, 7.0, LeaseReply(3, 1, 3000), "", 7.1)
    assert shown() == ("3", "lease")
    # Beyond the leases' bound a level runs on its fixed share, never leased.
    full = SeatLeases(d, None, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 3, max_leases=0)
    other = d.tenants["a"].levels["other"]
    d.lease_wanted.add(("a", "other"))
    assert full.plan(7.2) == [] and d.leases[("a", "other")] == other.limit
    assert limit_source(SimpleNamespace(dispatcher=d, leases=full), "a", other) == "fixed-share"
    assert full.stats().beyond_bound == 1 and c.stats().beyond_bound == 0  # (jetkube_apf_fleet_lease_levels_beyond_bound)


def test_owner_bounds_budgets_and_gateways() -> None:
    b = SeatBudgets(epoch=1, now=-10.0, ttl_s=3.0, max_budgets=2, max_gateways=2)
    for t in ("t1", "t2"):
        assert b.handle(LeaseRequest("g1", t, "lvl", 4, 1, 0, 1, 0), 0.0).granted == 1
    assert b.handle(LeaseRequest("g1", "t3", "lvl", 4, 1, 0, 1, 0), 0.0).granted == -1  # full: fall back
    assert b.handle(LeaseRequest("g2", "t1", "lvl", 4, 1, 0, 1, 0), 0.0).granted == 1
    assert b.handle(LeaseRequest("g3", "t1", "lvl", 4, 1, 0, 1, 0), 0.0).granted == -1
    assert b.refused == 2
    # After the TTL the holds lapse, and the room with them.
    assert b.handle(LeaseRequest("g1", "t3", "lvl", 4, 1, 0, 1, 0), 5.0).granted == 1
    assert b.answer(b"\x00garbage", 5.0) is None
    assert msgspec.msgpack.decode(b.answer(msgspec.msgpack.encode(_req("g9", 1)), 5.0) or b"") == [1, 1, 3000, False]


def test_shards_and_subjects() -> None:
    assert {shard_of(f"t{i}") for i in range(200)} == set(range(8))
    assert shard_of("t1") == shard_of("t1")
    assert apf_seats_subject("jk", 3) == "jk-apf.seats.3"


class _Fleet:
    """Three simulated gateways (a Dispatcher and a SeatLeases each) and a replaceable owner."""

    def __init__(self, n: int = 3, server_cl: int = 8) -> None:
        self.owner: SeatBudgets | None = None
        self.gateways: list[Dispatcher] = []
        self.clients: list[SeatLeases] = []
        self.events: list[dict[Ticket, trio.Event]] = []
        self.peak = 0  # the most seats of a's level executing across the gateways at once
        self.peaks = [0] * n  # per gateway
        self.rts = 0
        now = trio.current_time()
        for i in range(n):
            d = _Checked(self, i, server_cl)
            d.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 3)], now)  # lvl: 2 of 8 seats locally
            events: dict[Ticket, trio.Event] = {}
            self.gateways.append(d)
            self.events.append(events)
            self.clients.append(SeatLeases(d, self._request, gateway=f"g{i + 1}", prefix="jk", ttl_s=1.5,
                                           gateways=lambda n=n: n, on_change=self._redispatch(d, events)))

    @staticmethod
    def _redispatch(d: Dispatcher, events: dict[Ticket, trio.Event]) -> Any:
        def go() -> None:
            for t in d.dispatch(trio.current_time()):
                ev = events.pop(t, None)
                if ev is not None:
                    ev.set()
        return go

    async def _request(self, subject: str, payload: bytes, timeout_s: float) -> bytes:
        assert subject.startswith("jk-apf.seats.")
        self.rts += 1
        if self.owner is None:
            raise NoResponders("no responders")
        await trio.sleep(0.001)
        out = self.owner.answer(payload, trio.current_time())
        assert out is not None
        return out

    async def start(self, nursery: trio.Nursery) -> None:
        """Every gateway's lease client running in ``nursery``."""
        for c in self.clients:
            await nursery.start(c.run)

    def flood(self, nursery: trio.Nursery, i: int, clients: int, served: list[int], user: str = "u") -> None:
        """``clients`` closed-loop clients of level ``lvl`` on gateway ``i`` (users ``<user><k>``), in ``nursery``."""
        for k in range(clients):
            nursery.start_soon(_client, self.gateways[i], self.events[i], f"{user}{k}", served, i)

    def check(self) -> None:
        seats = [d.tenants["a"].levels["lvl"].executing_seats for d in self.gateways]
        self.peak = max(self.peak, sum(seats))
        self.peaks = [max(p, s) for p, s in zip(self.peaks, seats, strict=True)]


class _Checked(Dispatcher):
    def __init__(self, fleet: _Fleet, i: int, server_cl: int) -> None:
        super().__init__(server_cl)
        self.fleet = fleet

    def dispatch(self, now: float) -> list[Ticket]:
        out = super().dispatch(now)
        self.fleet.check()
        return out


async def _client(d: Dispatcher, events: dict[Ticket, trio.Event], user: str, served: list[int], i: int) -> None:
    """Closed loop on level ``lvl``: admit, wait for seats (at most 15 s, as the gateway), hold 50 ms;
    cancelled, it leaves the queue or gives its seats back (as FlowControl does)."""
    while True:
        now = trio.current_time()
        t = Ticket("a", "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", user), 1, now)
        try:
            for s in d.admit(t, now):
                ev = events.pop(s, None)
                if ev is not None:
                    ev.set()
            if t.state == "queued":
                ev = events[t] = trio.Event()
                with trio.move_on_after(15):
                    await ev.wait()
            if t.state != "executing":
                await trio.sleep(0.05)
                continue
            await trio.sleep(0.05)
            served[i] += 1
        finally:
            events.pop(t, None)
            if t.state == "queued":
                d.withdraw(t, trio.current_time(), "time-out")
            for s in d.finish(t, trio.current_time()):
                ev = events.pop(s, None)
                if ev is not None:
                    ev.set()


async def test_seats_held_fleet_wide_owner_death_and_takeover(autojump_clock: trio.testing.MockClock) -> None:
    f = _Fleet()
    served = [0, 0, 0]
    async with trio.open_nursery() as n:
        await f.start(n)
        f.owner = SeatBudgets(epoch=1, now=trio.current_time() - 10, ttl_s=1.5)  # an owner past learning
        # a floods g1 (12 clients) and g2 (2): g1 alone would run its local limit, 2 seats.
        f.flood(n, 0, 12, served)
        f.flood(n, 1, 2, served, "v")
        await trio.sleep(10)
        assert f.peak <= 6, f.peak  # the budget: 2 seats x 3 gateways
        assert f.peaks[0] >= 3, f.peaks  # g1 leased what g2 and g3 left (g3's floor of 1 is kept for it)
        leases = f.clients[0].stats()
        assert leases.granted >= 3 and leases.fallbacks == 0
        requests = sum(served)
        per_request = f.rts / requests
        assert per_request < 0.06, (f.rts, requests)  # leases, not a round trip per request (measured 0.038)

        # g3 joins the flood: the owner's split moves seats to it, and the sum stays within the budget.
        f.flood(n, 2, 12, served, "w")
        before = list(served)
        await trio.sleep(10)
        assert served[2] - before[2] > 100, served
        assert f.peak <= 6, f.peak

        # The owner dies: no responders at once; every gateway falls back to its fixed share (2)
        # and keeps serving.
        f.owner = None
        f.peaks = [0, 0, 0]
        await trio.sleep(1.0)
        before = list(served)
        f.peaks = [0, 0, 0]
        await trio.sleep(5)
        assert all(s - b > 20 for s, b in zip(served, before, strict=True)), (served, before)
        assert max(f.peaks) <= 2, f.peaks
        assert all(c.stats().fallbacks >= 1 for c in f.clients)

        # A new owner takes over (epoch 2): it learns for a TTL, then grants again.
        f.owner = SeatBudgets(epoch=2, now=trio.current_time(), ttl_s=1.5)
        f.peaks = [0, 0, 0]
        await trio.sleep(8)
        assert f.peak <= 6, f.peak
        assert all(c.epochs == {shard_of("a"): 2} for c in f.clients)
        assert all(c.stats().shards_down == 0 for c in f.clients)
        n.cancel_scope.cancel()


async def test_idle_level_returns_its_seats(autojump_clock: trio.testing.MockClock) -> None:
    f = _Fleet(n=2)
    f.owner = SeatBudgets(epoch=1, now=-10.0, ttl_s=1.5)
    served = [0, 0]
    async with trio.open_nursery() as n:
        await f.start(n)
        async with trio.open_nursery() as flood:
            f.flood(flood, 0, 6, served)
            await trio.sleep(3)
            # the whole budget (2 x 2) but the other gateway's floor (1), which it may run without asking
            assert f.owner.held("a", "lvl", trio.current_time()) == 3
            flood.cancel_scope.cancel()
        d = f.gateways[0]
        assert d.tenants["a"].levels["lvl"].executing_seats == 0
        await trio.sleep(3)
        assert f.owner.held("a", "lvl", trio.current_time()) == 0
        assert (d.leases or {}).get(("a", "lvl"), 0) == 0
        st = f.clients[0].stats()
        assert st.returned >= 3 and st.leases == 0, st
        n.cancel_scope.cancel()


async def test_the_limit_shown_is_the_leased_one(autojump_clock: trio.testing.MockClock) -> None:
    """``Dispatcher.seat_limit`` (``apiserver_flowcontrol_current_limit_seats``, the dump's
    CurrentLimitSeats) and the dump's LimitSource follow the lease: pending (the floor) before the
    first answer, the fixed share while no owner answers, the seats leased once one does."""
    f = _Fleet(n=2)
    d = f.gateways[0]
    fc = SimpleNamespace(dispatcher=d, leases=f.clients[0])
    qs = d.tenants["a"].levels["lvl"]
    assert (d.seat_limit("a", qs), limit_source(fc, "a", qs)) == (lease_floor(qs.limit), "lease-pending") == (1, "lease-pending")
    served = [0, 0]
    async with trio.open_nursery() as n:
        await f.start(n)
        async with trio.open_nursery() as flood:
            f.flood(flood, 0, 6, served)
            await trio.sleep(0.5)  # no owner: no responders, the fixed share (the local limit, 2)
            assert (d.seat_limit("a", qs), limit_source(fc, "a", qs)) == (qs.limit, "fixed-share") == (2, "fixed-share")
            f.owner = SeatBudgets(epoch=1, now=trio.current_time() - 10.0, ttl_s=1.5)
            await trio.sleep(3)  # the owner answers: the budget (2 x 2) but the idle one's floor (1)
            assert (d.seat_limit("a", qs), limit_source(fc, "a", qs)) == (3, "lease")
            assert d.seat_limit("a", qs) == (d.leases or {})[("a", "lvl")] > qs.limit
            other = d.tenants["a"].levels["other"]
            assert limit_source(fc, "a", other) == "lease-pending"  # never asked for here
            flood.cancel_scope.cancel()
        n.cancel_scope.cancel()
    local = Dispatcher(8)
    local.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 3)], 0.0)
    lq = local.tenants["a"].levels["lvl"]
    assert local.seat_limit("a", lq) == lq.limit == 2
    assert limit_source(SimpleNamespace(dispatcher=local, leases=None), "a", lq) == "local"


def test_shards_spread_over_the_gateways_by_rendezvous() -> None:
    """``SeatOwner.plan``: each gateway claims the shards it is preferred for among those it hears
    (together: every shard, once); alone, all of them; an owner hands a shard to its preferred
    gateway once that one has been heard long enough, not again within the backoff; a shard whose
    preferred gateway does not answer is claimed by one whose requests there fail."""
    ids = ["g-a", "g-b", "g-c"]
    owners = [SeatOwner(None, "jk", "S", gateway=g, ttl_s=3.0,  # type: ignore[arg-type]
                        peers=lambda g=g: [x for x in ids if x != g]) for g in ids]
    claims = [set(o.plan(0.0)[0]) for o in owners]
    assert set().union(*claims) == set(range(SHARDS)) and sum(map(len, claims)) == SHARDS
    assert all(preferred_owner(s, ids) == ids[i] for i, c in enumerate(claims) for s in c)
    assert all(not o.plan(0.0)[1] for o in owners)
    assert len({preferred_owner(s, ids) for s in range(64)}) == 3  # (spread: 64 shards over all three)
    alone = SeatOwner(None, "jk", "S", gateway="g-a", ttl_s=3.0)  # type: ignore[arg-type]
    assert alone.plan(0.0) == (list(range(SHARDS)), [])
    # g-a owns every shard (it started first): it renews the others' until they have been heard long enough
    a = owners[0]
    a.owned = dict.fromkeys(range(SHARDS))  # type: ignore[arg-type]
    keep, hand = a.plan(HANDOVER_AFTER_S / 2)
    assert (set(keep), hand) == (set(range(SHARDS)), [])
    keep, hand = a.plan(HANDOVER_AFTER_S)
    assert set(keep) == claims[0] and set(hand) == claims[1] | claims[2]
    for s in hand:  # (as _hand_over does)
        a.handed[s] = HANDOVER_AFTER_S
        del a.owned[s]
    # its preferred gateway never took it (its requests there fail): taken back, kept through the backoff
    a.unanswered = lambda s: True
    assert set(a.plan(HANDOVER_AFTER_S + 1)[0]) == claims[0]  # not at once: the preferred one claims first
    later = HANDOVER_AFTER_S + 2 * 3.0
    assert set(a.plan(later)[0]) == set(range(SHARDS))
    a.owned = dict.fromkeys(range(SHARDS))  # type: ignore[arg-type]
    assert a.plan(later + HANDOVER_AFTER_S)[1] == []  # owned again, not handed over within the backoff
    assert set(a.plan(HANDOVER_AFTER_S + HANDOVER_BACKOFF_S)[1]) == claims[1] | claims[2]


async def test_fixed_shares_beyond_the_bound_follow_the_level_and_go_when_idle(
        autojump_clock: trio.testing.MockClock) -> None:
    """Issue 10 (session 10, defect 1): a level used beyond ``max_leases`` runs on its fixed share
    (LimitSource ``fixed-share``), which follows the gateways alive; once idle for a TTL its entry
    leaves ``Dispatcher.leases`` (``lease-pending`` again: its next use asks again); it is leased once
    there is room; and a deleted tenant's entry goes. (Levels beyond the bound are all looked at
    every ``renew_s``, and when the gateways alive change: review of session 10, M2.)"""
    d = Dispatcher(16)
    d.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 1)], 0.0)  # 8 seats locally each
    alive = [3]
    c = SeatLeases(d, None, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: alive[0], max_leases=1,
                   fallback=0.5)
    fc = SimpleNamespace(dispatcher=d, leases=c)
    lvl, other = ("a", "lvl"), ("a", "other")
    oq = d.tenants["a"].levels["other"]
    d.lease_wanted.add(lvl)
    d.lease_peak[lvl] = 1
    (sent,) = c.plan(0.0)
    d.lease_wanted.add(other)
    assert c.plan(0.0) == [] and sent[0] == lvl and set(c.leases) == {lvl}  # the bound: one lease
    assert d.leases == {other: 12} and limit_source(fc, "a", oq) == "fixed-share"  # half of 8 x 3
    c.settle(lvl, 0.0, LeaseReply(2, 1, 3000), "", 0.1)
    t = Ticket("a", "s", "fs-s", "other", "uid-other", flow_hash("s", "u"), 1, 0.5)
    assert d.admit(t, 0.5) == [t]
    alive[0] = 4
    c.plan(1.0)
    assert d.leases[other] == 16  # the fixed share follows the gateways alive, at once
    c.plan(2.5)  # (the run loop looks every retry_s at least): the look at all of them, executing
    assert d.finish(t, 3.0) == []
    c.plan(4.0)  # the next look at all: idle for less than a TTL since seen used, kept
    c.plan(5.4)
    assert other in d.leases
    c.plan(5.5)
    assert other not in d.leases and other not in c.local and limit_source(fc, "a", oq) == "lease-pending"
    assert d.seat_limit("a", oq) == lease_floor(oq.limit)
    # Used again while the bound is still taken: the fixed share again; room made: leased.
    d.lease_wanted.add(other)
    c.plan(5.7)
    assert d.leases[other] == 16 and other in c.local
    c.max_leases = 2
    d.lease_peak[other] = 1
    ((_, r),) = [x for x in c.plan(5.8) if x[0] == other]
    assert other in c.leases and other not in c.local and (r.held, r.want) == (2, 2)  # gave back, then asks
    assert limit_source(fc, "a", oq) == "fixed-share"  # until the grant
    c.settle(other, 5.8, LeaseReply(2, 1, 3000), "", 5.9)
    assert limit_source(fc, "a", oq) == "lease"
    # A deleted tenant's fixed share goes (here: beyond the bound again) at the next look at all.
    c.max_leases = 0
    d.configure("b", 1, [], [_plc("lvl", 1)], 6.0)
    d.lease_wanted.add(("b", "lvl"))
    c.plan(6.0)
    assert ("b", "lvl") in d.leases and ("b", "lvl") in c.local
    assert d.evict_idle(6.1, 0.0) == ["a", "b"]
    c.settle(lvl, 1.9, None, "no_responders", 6.1)  # (lvl's renewal in flight fails: its fixed share)
    c.plan(6.1)
    assert c.leases == {} and set(d.leases) == {("b", "lvl")}  # the leases at once
    c.plan(6.0 + c.renew_s)
    assert d.leases == {} and c.leases == {} and c.local == {}


async def test_a_pass_looks_only_at_the_levels_beyond_the_bound_used_since_the_last(
        autojump_clock: trio.testing.MockClock) -> None:
    """Review of session 10, M2: under a flood the lease client plans every ``PLAN_GAP_S``; with
    many levels beyond ``max_leases`` a pass must not look at each of them (before: their demand,
    and the gateways alive twice, per level per pass: 6.9 ms a pass with 4096). Now a pass looks
    only at those used since the last one, and at all of them every ``renew_s``."""
    d = Dispatcher(16)
    n = 200
    for i in range(n):
        d.configure(f"t{i}", 1, [], [_plc("lvl", 1)], 0.0)
    looked = [0]
    demand = d.lease_demand

    def counted(tenant: str, level: str) -> tuple[int, int, int, int]:
        looked[0] += 1
        return demand(tenant, level)

    d.lease_demand = counted  # type: ignore[method-assign]
    c = SeatLeases(d, None, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 3, max_leases=0)
    d.lease_wanted.update((f"t{i}", "lvl") for i in range(n))
    c.plan(0.0)
    assert len(c.local) == n and set((d.leases or {}).values()) == {16}  # (the local limit: 16 seats)
    per_pass = []
    t = 0.0
    while t < c.renew_s - 0.01:  # a flood on two of them: wanted at every pass
        t += 0.005
        looked[0] = 0
        d.lease_wanted.update({("t0", "lvl"), ("t1", "lvl")})
        d.lease_peak[("t2", "lvl")] = 1
        c.plan(t)
        per_pass.append(looked[0])
    assert max(per_pass) <= 2, per_pass[:5]
    assert c.local[("t0", "lvl")] == c.local[("t2", "lvl")] == t and c.local[("t3", "lvl")] == 0.0
    looked[0] = 0
    c.plan(c.renew_s)  # the look at all of them
    assert looked[0] == n
    c.plan(3.0)  # idle for a TTL: gone, but those used
    assert set(c.local) == {("t0", "lvl"), ("t1", "lvl"), ("t2", "lvl")} and set(d.leases or {}) == set(c.local)


async def test_leases_of_idle_levels_go_while_their_owner_is_unreachable(
        autojump_clock: trio.testing.MockClock) -> None:
    """Issue 10 (session 10, defect 1): levels on their fixed share because no owner answers, then
    idle for a TTL, leave ``Dispatcher.leases`` (nothing to give back to an owner that does not answer;
    what it counted lapses by itself): many tenants used once do not stay in the map."""
    async def no_owner(subject: str, payload: bytes, timeout_s: float) -> bytes:
        raise NoResponders("no responders")

    d = Dispatcher(16)
    c = SeatLeases(d, no_owner, gateway="g1", prefix="jk", ttl_s=3.0, gateways=lambda: 2)
    async with trio.open_nursery() as n:
        await n.start(c.run)
        for i in range(40):
            tenant = f"t{i}"
            d.configure(tenant, 1, [], [_plc("lvl", 1)], trio.current_time())
            t = Ticket(tenant, "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", "u"), 1, trio.current_time())
            assert d.admit(t, trio.current_time()) == [t]
            await trio.sleep(0.5)
            assert d.finish(t, trio.current_time()) == []
        assert len(d.leases or {}) > 5  # the recent ones, on their fixed share (the local limit)
        fc = SimpleNamespace(dispatcher=d, leases=c)
        assert limit_source(fc, "t39", d.tenants["t39"].levels["lvl"]) == "fixed-share"
        await trio.sleep(3 * 3.0)
        assert d.leases == {} and c.leases == {} and c.stats().leases == 0
        assert limit_source(fc, "t39", d.tenants["t39"].levels["lvl"]) == "lease-pending"
        n.cancel_scope.cancel()
