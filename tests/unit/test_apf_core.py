"""API Priority and Fairness: the pure core (actors/_apf.py) driven by trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors._apf import (
    Attributes,
    Dispatcher,
    Ticket,
    classify,
    current_limits,
    deal_hand,
    estimate_seats,
    flow_hash,
    level_config,
    nominal_limits,
    schema_order,
)
from actors._apf_bootstrap import default_flow_schemas, default_priority_levels, reconcile


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _plc(name: str, ncs: int, *, queues: int = 8, hand: int = 2, qlen: int = 3, lendable: int = 0,
         borrow: int | None = None) -> dict:
    lim: dict = {"nominalConcurrencyShares": ncs, "lendablePercent": lendable,
                 "limitResponse": {"type": "Queue", "queuing": {"queues": queues, "handSize": hand,
                                                                "queueLengthLimit": qlen}}}
    if borrow is not None:
        lim["borrowingLimitPercent"] = borrow
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": {"type": "Limited", "limited": lim}}


def _defaults() -> tuple[list[dict], list[dict]]:
    fs = default_flow_schemas()
    for o in fs:
        o["metadata"]["uid"] = "fs-" + o["metadata"]["name"]
    return sorted(fs, key=schema_order), default_priority_levels()


def test_classification_follows_precedence_and_subjects() -> None:
    fs, _ = _defaults()
    admin = Attributes("admin", ("system:masters", "system:authenticated"), "list", True, "", "pods", "default")
    assert classify(fs, admin)["metadata"]["name"] == "exempt"
    node = Attributes("system:node:n1", ("system:nodes", "system:authenticated"), "update", True, "",
                      "nodes/status", "")
    assert classify(fs, node)["metadata"]["name"] == "system-node-high"
    node_pods = Attributes("system:node:n1", ("system:nodes", "system:authenticated"), "list", True, "", "pods", "a")
    assert classify(fs, node_pods)["metadata"]["name"] == "system-nodes"
    sa = Attributes("system:serviceaccount:kube-system:foo", ("system:serviceaccounts", "system:authenticated"),
                    "update", True, "coordination.k8s.io", "leases", "kube-system")
    assert classify(fs, sa)["metadata"]["name"] == "system-leader-election"
    app_sa = Attributes("system:serviceaccount:app:x", ("system:serviceaccounts", "system:authenticated"),
                        "get", True, "", "configmaps", "app")
    assert classify(fs, app_sa)["metadata"]["name"] == "service-accounts"
    user = Attributes("alice", ("system:authenticated",), "get", True, "", "configmaps", "default")
    assert classify(fs, user)["metadata"]["name"] == "global-default"
    probe = Attributes("alice", ("system:authenticated",), "get", False, path="/readyz")
    assert classify(fs, probe)["metadata"]["name"] == "probes"


def test_leader_election_and_endpoint_schemas_as_kube_1_33() -> None:
    """default.go (1.33): system-leader-election matches leases only, so a kube-system service
    account's configmap lock is workload-leader-election's; endpointslicemirroring-controller is an
    endpoint-controller subject; system-node-high's node rule names every namespace."""
    fs, _ = _defaults()
    groups = ("system:serviceaccounts", "system:authenticated")
    cm_lock = Attributes("system:serviceaccount:kube-system:foo", groups, "update", True, "", "configmaps",
                         "kube-system")
    assert classify(fs, cm_lock)["metadata"]["name"] == "workload-leader-election"
    mirror = Attributes("system:serviceaccount:kube-system:endpointslicemirroring-controller", groups, "update",
                        True, "", "endpoints", "default")
    assert classify(fs, mirror)["metadata"]["name"] == "endpoint-controller"
    by_name = {o["metadata"]["name"]: o["spec"] for o in fs}
    assert by_name["system-leader-election"]["rules"][0]["resourceRules"] == [
        {"verbs": ["get", "create", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "namespaces": ["*"]}]
    assert by_name["system-node-high"]["rules"][0]["resourceRules"][0]["namespaces"] == ["*"]
    assert [(o["metadata"]["name"], o["spec"]["matchingPrecedence"]) for o in fs] == [
        ("exempt", 1), ("probes", 2), ("system-leader-election", 100), ("endpoint-controller", 150),
        ("workload-leader-election", 200), ("system-node-high", 400), ("system-nodes", 500),
        ("kube-controller-manager", 800), ("kube-scheduler", 800), ("kube-system-service-accounts", 900),
        ("service-accounts", 9000), ("global-default", 9900), ("catch-all", 10000)]


def test_default_levels_have_kubes_nominal_limits() -> None:
    cfgs = [level_config(p) for p in default_priority_levels()]
    nominal = nominal_limits(cfgs, 600)
    assert nominal == {"exempt": 0, "catch-all": 13, "system": 74, "node-high": 98, "leader-election": 25,
                       "workload-high": 98, "workload-low": 245, "global-default": 49}


def test_reconcile_honours_autoupdate_annotation() -> None:
    expected = default_priority_levels()[2]
    assert reconcile(None, expected, mandatory=False) == expected
    edited = {**expected, "metadata": {"name": "system", "generation": 2,
                                       "annotations": {"apf.kubernetes.io/autoupdate-spec": "false"}},
              "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 1}}}
    assert reconcile(edited, expected, mandatory=False) is None
    auto = {**edited, "metadata": {**edited["metadata"], "annotations": {"apf.kubernetes.io/autoupdate-spec": "true"}}}
    assert reconcile(auto, expected, mandatory=False)["spec"] == expected["spec"]
    assert reconcile(expected, expected, mandatory=True) is None


def test_shuffle_sharding_spreads_flows() -> None:
    hands = [tuple(sorted(deal_hand(flow_hash("global-default", f"user-{i}"), 128, 6))) for i in range(1000)]
    assert all(len(set(h)) == 6 and all(0 <= c < 128 for c in h) for h in hands)
    assert len(set(hands)) == 1000  # distinct hands
    used = [0] * 128
    for h in hands:
        for c in h:
            used[c] += 1
    assert min(used) > 0 and max(used) < 3 * (6000 / 128)  # every queue dealt, none far above average


def test_seats_by_width() -> None:
    assert estimate_seats("get") == 1
    assert estimate_seats("list", objects=50) == 1
    assert estimate_seats("list", objects=450) == 5
    assert estimate_seats("list", objects=5000) == 10
    assert estimate_seats("list", objects=5000, limit=200) == 2
    assert estimate_seats("create", watchers=35) == 4
    assert estimate_seats("create", watchers=5) == 1
    assert estimate_seats("watch") == 1


def test_borrowing_lends_idle_levels_seats() -> None:
    cfgs = [level_config(_plc("busy", 50, lendable=0)), level_config(_plc("idle", 50, lendable=80))]
    nominal = nominal_limits(cfgs, 20)
    assert nominal == {"busy": 10, "idle": 10}
    limits = current_limits(cfgs, nominal, {"busy": 40, "idle": 0}, 20)
    assert limits == {"busy": 18, "idle": 2}  # idle keeps nominal - lendable
    capped = [level_config(_plc("busy", 50, borrow=30)), cfgs[1]]
    assert current_limits(capped, nominal, {"busy": 40, "idle": 0}, 20)["busy"] == 13
    # Half seats round away from zero (Go's math.Round, as kube's apf_controller.go): one seat with
    # 50% lendable lends it, and 50% borrowing borrows one.
    halves = [level_config(_plc("busy", 1, lendable=50, borrow=50)), level_config(_plc("idle", 1, lendable=50))]
    assert current_limits(halves, {"busy": 1, "idle": 1}, {"busy": 5, "idle": 0}, 2)["busy"] == 2


def _ticket(d: Dispatcher, tenant: str, level: str, user: str, now: float) -> Ticket:
    return Ticket(tenant, "s", "fs-s", level, f"uid-{level}", flow_hash("s", user), 1, now)


async def test_flood_queued_then_rejected_while_quiet_flow_served(autojump_clock: trio.testing.MockClock) -> None:
    d = Dispatcher(4)
    d.configure("t", 1, [], [_plc("lvl", 1, queues=16, hand=1, qlen=5)], trio.current_time())
    flood = [_ticket(d, "t", "lvl", "flooder", trio.current_time()) for _ in range(20)]
    for t in flood:
        d.admit(t, trio.current_time())
    states = [t.state for t in flood]
    assert states.count("executing") == 4 and states.count("queued") == 5 and states.count("rejected") == 11
    assert all(t.reason == "queue-full" and t.retry_after_s >= 1 for t in flood if t.state == "rejected")
    quiet = _ticket(d, "t", "lvl", "quiet", trio.current_time())
    d.admit(quiet, trio.current_time())
    assert quiet.state == "queued" and quiet.queue != flood[4].queue
    await trio.sleep(0.01)
    started = d.finish(flood[0], trio.current_time())
    assert started == [quiet]  # fair queuing: the quiet queue's head goes before the flood's backlog


async def test_exempt_never_waits(autojump_clock: trio.testing.MockClock) -> None:
    d = Dispatcher(1)
    exempt = {"metadata": {"name": "exempt", "uid": "u"}, "spec": {"type": "Exempt", "exempt": {}}}
    d.configure("t", 1, [], [_plc("lvl", 1, qlen=1), exempt], trio.current_time())
    busy = _ticket(d, "t", "lvl", "a", trio.current_time())
    d.admit(busy, trio.current_time())
    for _ in range(100):
        t = _ticket(d, "t", "exempt", "root", trio.current_time())
        assert d.admit(t, trio.current_time()) == [t] and t.state == "executing"


async def test_retry_after_matches_queue_drain(autojump_clock: trio.testing.MockClock) -> None:
    d = Dispatcher(2)
    d.configure("t", 1, [], [_plc("lvl", 1, queues=1, hand=1, qlen=10)], trio.current_time())
    qs = d.tenants["t"].levels["lvl"]
    qs.service_s = 1.0  # requests take 1 s
    ts = [_ticket(d, "t", "lvl", "u", trio.current_time()) for _ in range(13)]
    for t in ts:
        d.admit(t, trio.current_time())
    assert ts[-1].state == "rejected"
    # 12 seats of 1 s work ahead on one queue served at 2 seats: 6 s.
    assert ts[-1].retry_after_s == 6


async def test_tenant_flood_cannot_starve_another(autojump_clock: trio.testing.MockClock) -> None:
    d = Dispatcher(4)
    for tenant in ("a", "b"):
        d.configure(tenant, 1, [], [_plc("lvl", 1, queues=64, hand=4, qlen=50)], trio.current_time())
    a = [_ticket(d, "a", "lvl", f"u{i}", trio.current_time()) for i in range(40)]
    for t in a:
        d.admit(t, trio.current_time())
    assert d.tenants["a"].executing_seats == 4
    b = [_ticket(d, "b", "lvl", "bob", trio.current_time()) for _ in range(2)]
    for t in b:
        d.admit(t, trio.current_time())
    started = d.finish(a[0], trio.current_time()) + d.finish(a[1], trio.current_time())
    assert started == b  # freed seats go to the tenant holding fewer


async def test_reconfigured_level_keeps_seats_and_queue(autojump_clock: trio.testing.MockClock) -> None:
    d = Dispatcher(2)
    d.configure("t", 1, [], [_plc("lvl", 1, queues=4, hand=1, qlen=10)], trio.current_time())
    ts = [_ticket(d, "t", "lvl", "u", trio.current_time()) for _ in range(5)]
    for t in ts:
        d.admit(t, trio.current_time())
    assert [t.state for t in ts].count("executing") == 2
    d.configure("t", 2, [], [_plc("lvl", 1, queues=8, hand=2, qlen=10)], trio.current_time())
    new = d.tenants["t"].levels["lvl"]
    assert new.queued_requests == 3 and all(t.qs is new for t in ts[2:])
    started = d.finish(ts[0], trio.current_time())  # seats back to the old QueueSet, then the new dispatches
    assert len(started) == 1 and started[0].qs is new and d.executing_seats == 2


async def test_incremental_counters_match_the_queues(autojump_clock: trio.testing.MockClock) -> None:
    """The per-queue seat sums and the active-queue count are kept incrementally (the reject path
    reads them per request): after any mix of admits, finishes, withdrawals and a reconfiguration
    they equal what counting the queues gives."""
    import random

    rng = random.Random(7)
    d = Dispatcher(6)
    d.configure("t", 1, [], [_plc("lvl", 1, queues=8, hand=3, qlen=4)], trio.current_time())
    live: list[Ticket] = []
    for step in range(600):
        now = trio.current_time()
        op = rng.random()
        if op < 0.5:
            t = Ticket("t", "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", f"u{rng.randrange(12)}"),
                       rng.randint(1, 3), now)
            d.admit(t, now)
            live.append(t)
        elif op < 0.8:
            ex = [t for t in live if t.state == "executing"]
            if ex:
                d.finish(rng.choice(ex), now)
        elif op < 0.95:
            q = [t for t in live if t.state == "queued"]
            if q:
                d.withdraw(rng.choice(q), now, "time-out")
        elif step % 7 == 0:
            d.configure("t", step, [], [_plc("lvl", 1, queues=rng.choice((4, 8)), hand=2, qlen=4)], now)
        live = [t for t in live if t.state in ("queued", "executing")]
        await trio.sleep(0.001)
        for qs in {id(t.qs): t.qs for t in live if t.qs is not None}.values():
            assert qs is not None
            assert qs.active == sum(1 for q in qs.queues if q.requests or q.executing_seats)
            assert all(q.queued_seats == sum(t.seats for t in q.requests) for q in qs.queues)


async def test_quiet_tenant_served_within_one_seat_release_then_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    """A flooding tenant holds every seat, is queued, then rejected; a quiet tenant's first request
    starts at the first seat released, and while it keeps asking a seat stays free for it, so the
    next ones start at once (the flood's are queued and rejected meanwhile). Once it has been quiet
    for ``reserve_s`` the flood takes every seat again (work-conserving)."""
    d = Dispatcher(3, reserve_s=5.0)
    for tenant in ("a", "b"):
        d.configure(tenant, 1, [], [_plc("lvl", 1, queues=16, hand=2, qlen=5)], trio.current_time())
    flood = [_ticket(d, "a", "lvl", "flooder", trio.current_time()) for _ in range(20)]
    for t in flood:
        d.admit(t, trio.current_time())
    states = [t.state for t in flood]
    assert states.count("executing") == 3 and states.count("queued") == 10 and states.count("rejected") == 7
    assert all(t.reason == "queue-full" and t.retry_after_s >= 1 for t in flood if t.state == "rejected")
    executing = [t for t in flood if t.state == "executing"]

    quiet = _ticket(d, "b", "lvl", "quiet", trio.current_time())
    d.admit(quiet, trio.current_time())
    assert quiet.state == "queued"
    await trio.sleep(0.5)
    assert d.finish(executing.pop(0), trio.current_time()) == [quiet]  # within one seat release
    await trio.sleep(0.01)
    assert d.finish(quiet, trio.current_time()) == []  # b asked just now: its seat stays free
    assert d.executing_seats == 2 and d.tenants["a"].queued == 10

    all_a = list(flood)
    for _ in range(20):  # b keeps asking, a keeps flooding: b never waits, a is capped at 2 seats
        more = [_ticket(d, "a", "lvl", "flooder", trio.current_time()) for _ in range(3)]
        for t in more:
            d.admit(t, trio.current_time())
        all_a += more
        assert all(t.state in ("queued", "rejected") for t in more)
        q = _ticket(d, "b", "lvl", "quiet", trio.current_time())
        assert d.admit(q, trio.current_time()) == [q] and q.state == "executing"
        await trio.sleep(0.2)
        assert d.finish(q, trio.current_time()) == []
        started = d.finish(next(t for t in all_a if t.state == "executing"), trio.current_time())
        assert [t.tenant for t in started] == ["a"]  # the freed seat back to the flood's queue
        assert d.tenants["a"].executing_seats == 2

    assert sum(t.state == "rejected" for t in all_a[20:]) >= 30  # of 60: the queues stay full
    await trio.sleep(5.0)  # b silent for reserve_s: a may take every seat again
    d.finish(next(t for t in all_a if t.state == "executing"), trio.current_time())
    assert d.tenants["a"].executing_seats == 3


async def test_seats_kept_for_idle_tenants_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """At most half the server's seats are kept for idle asking tenants; none for a tenant holding
    seats elsewhere in the fleet; none with reserve_s 0."""
    def flood_holds(reserve_s: float, quiet: int, elsewhere: dict[str, int] | None = None) -> int:
        d = Dispatcher(6, reserve_s=reserve_s)
        d.elsewhere = elsewhere or {}
        tenants = ["a"] + [f"q{i}" for i in range(quiet)]
        for tenant in tenants:
            d.configure(tenant, 1, [], [_plc("lvl", 1, queues=16, hand=2, qlen=50)], 0.0)
        for tenant in tenants[1:]:  # each asked once, got a seat, gave it back
            t = _ticket(d, tenant, "lvl", "q", 0.0)
            d.admit(t, 0.0)
            d.finish(t, 0.0)
        for _ in range(20):
            d.admit(_ticket(d, "a", "lvl", "flooder", 0.0), 0.0)
        return d.tenants["a"].executing_seats

    assert flood_holds(10.0, 0) == 6
    assert flood_holds(10.0, 1) == 5
    assert flood_holds(10.0, 2) == 4
    assert flood_holds(10.0, 5) == 3  # half of 6, however many asked
    assert flood_holds(10.0, 2, {"q0": 1}) == 5  # q0 holds a seat on another gateway
    assert flood_holds(0.0, 5) == 6
