"""The projection's change feed for controllers (``Projection.subscribe_changes``): a subscription
with ``accept`` is sent exactly the changes it accepts, in log order, as one without it sees them;
``follow_changes`` hands every change on in order, several per scheduling round (bounded), and ends
when the channel closes. And each controller's filter accepts every change its ``on_change`` acts
on, over a random log of many kinds, tenants, creates, updates and deletes."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import msgspec
import trio
import trio.testing

from actors._controllers import ROOT_CA_CONFIGMAP, SA_TOKEN_SECRET, Controllers
from actors._crd_controller import CrdControllers
from actors._gc import GarbageCollector
from actors._gc import _wants as _gc_wants
from actors._quota_controller import QuotaController
from actors._runtime import every
from actors._tenancy import Tenancy
from bus import Actor, Event, Key, LogMessage, encode_event, encode_object_with_rv_slot, object_subject
from kinds import Registry
from projections import DELETED, Change, ChangeFeed, Entry, follow_changes
from projections import _feed as feed_module
from tests.unit.test_snapshot_format import PREFIX, TENANTS, fresh_projection, make_log

Item = tuple[tuple[str, str, str], Change]


def _drain(recv: trio.MemoryReceiveChannel[Item]) -> list[Item]:
    out = []
    while True:
        try:
            out.append(recv.receive_nowait())
        except trio.WouldBlock:
            return out


def test_a_filtered_subscription_is_sent_exactly_what_it_accepts_in_log_order() -> None:
    p = fresh_projection()
    every = p.subscribe_changes()
    asked: list[tuple[tuple[str, str, str], int]] = []

    def configmaps_of_one_tenant(key: tuple[str, str, str], ch: Change) -> bool:
        asked.append((key, ch.seq))
        return key[0] == TENANTS[1] and key[2] == "configmaps"

    some = p.subscribe_changes(accept=configmaps_of_one_tenant)
    none = p.subscribe_changes(accept=lambda key, ch: False)
    log = make_log(3000)
    for i in range(0, len(log), 100):  # batches, as the reader hands them over
        p.apply_batch(log[i:i + 100])
    all_items = _drain(every)
    assert len(all_items) > 2500  # (junk messages and nothing else skipped)
    want = [(k, ch.seq) for k, ch in all_items if k[0] == TENANTS[1] and k[2] == "configmaps"]
    assert 50 < len(want) < len(all_items)
    assert [(k, ch.seq) for k, ch in _drain(some)] == want
    assert _drain(none) == []
    # The test saw every change once, as it was applied, with the change itself.
    assert asked == [(k, ch.seq) for k, ch in all_items]


class _Steps(trio.abc.Instrument):
    """How many changes the follower had handled after each of its task steps."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen
        self.task: trio.lowlevel.Task | None = None
        self.marks: list[int] = []

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.marks.append(len(self.seen))


def test_follow_changes_hands_on_every_change_in_order_several_per_round() -> None:
    seen: list[int] = []
    steps = _Steps(seen)
    n = feed_module.FOLLOW_BATCH * 3 + 5

    async def main() -> None:
        send, recv = trio.open_memory_channel[Any](1000)
        for i in range(n):
            send.send_nowait((("root", "", "configmaps"), i))

        async def follow() -> None:
            steps.task = trio.lowlevel.current_task()
            await follow_changes(recv, lambda key, i: seen.append(i))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == list(range(n))
            for i in range(n, n + 3):  # later changes wake it again
                send.send_nowait((("root", "", "configmaps"), i))
            await trio.testing.wait_all_tasks_blocked()
            assert seen == list(range(n + 3))
            send.close()  # a closed channel ends it
        assert steps.marks[-1] == n + 3

    trio.run(main, instruments=[steps])
    # At most FOLLOW_BATCH changes per step, and no step per change: a handful for the whole queue.
    gains = [b - a for a, b in zip([0, *steps.marks], steps.marks, strict=False)]
    assert max(gains) == feed_module.FOLLOW_BATCH
    assert len([g for g in gains if g]) == 5  # 64 + 64 + 64 + 5, then the 3 later ones in one step


def _msg(seq: int, tenant: str, group: str, resource: str, ns: str, name: str, *, delete: bool = False,
         fields: dict[str, str] | None = None, body: dict[str, Any] | None = None,
         meta: dict[str, Any] | None = None) -> LogMessage:
    obj = {"kind": "X", "apiVersion": "v1",
           "metadata": {"name": name, **({"namespace": ns} if ns else {}), **(meta or {})}, **(body or {})}
    data, at = encode_object_with_rv_slot(obj)
    ev = Event(type="delete" if delete else "put", object=msgspec.Raw(data), rv_at=at,  # type: ignore[arg-type]
               verb="delete" if delete else "create", audit_id=f"a{seq}", time="t", actor=Actor(user="u"),
               fields=fields or {})
    return LogMessage(seq, object_subject(PREFIX, Key(tenant, group, resource, ns, name)), encode_event(ev))


def _controller_log(n: int, seed: int) -> list[LogMessage]:
    """Namespaces (some terminating), ResourceQuotas in some namespaces, ConfigMaps (the root CA
    among them), Secrets (some service account tokens), ServiceAccounts and Pods, created and
    deleted, in two tenants."""
    rnd = random.Random(seed)
    out = []
    for seq in range(1, n + 1):
        tenant = rnd.choice(("root", "acme"))
        ns = f"ns-{rnd.randrange(4)}"
        delete = rnd.random() < 0.3
        pick = rnd.randrange(7)
        if pick == 0:
            phase = rnd.choice(("Active", "Terminating"))
            out.append(_msg(seq, tenant, "", "namespaces", "", ns, delete=delete, fields={"status.phase": phase}))
        elif pick == 1:
            out.append(_msg(seq, tenant, "", "resourcequotas", ns, f"q{rnd.randrange(2)}", delete=delete,
                            body={"spec": {"hard": {"count/configmaps": "10"}}}))
        elif pick == 2:
            name = rnd.choice((ROOT_CA_CONFIGMAP, "cm-1", "cm-2"))
            out.append(_msg(seq, tenant, "", "configmaps", ns, name, delete=delete))
        elif pick == 3:
            kind = rnd.choice((SA_TOKEN_SECRET, "Opaque"))
            out.append(_msg(seq, tenant, "", "secrets", ns, f"s{rnd.randrange(3)}", delete=delete,
                            fields={"type": kind}))
        elif pick == 4:
            out.append(_msg(seq, tenant, "", "serviceaccounts", ns, f"sa{rnd.randrange(3)}", delete=delete))
        elif pick == 5:
            out.append(_msg(seq, tenant, "", "pods", ns, f"p{rnd.randrange(3)}", delete=delete,
                            body={"status": {"phase": rnd.choice(("Running", "Succeeded"))}}))
        else:
            out.append(_msg(seq, tenant, "apps", "deployments", ns, f"d{rnd.randrange(3)}", delete=delete))
    return out


def test_the_controllers_filters_accept_every_change_their_on_change_acts_on() -> None:
    """Each change's ``on_change`` is run as the change is applied (the earliest a subscriber can
    see it) and once more on the final state (the latest): whatever the namespace controller acts
    on in either, its filter sent; so for the quota controller as applied, and what it would act on
    only later (a quota created in the namespace after the change) is recounted by that quota's
    own change, which was sent."""
    trio.run(_controllers_filters)


async def _controllers_filters() -> None:
    for seed in range(4):
        p = fresh_projection()
        ctl = Controllers.__new__(Controllers)
        ctl.tenant, ctl.projection = "root", p
        quota = QuotaController.__new__(QuotaController)
        quota.projection, quota._changed, quota.settle_s = p, {}, 1.0
        acted: dict[str, set[int]] = {"ctl": set(), "quota": set()}
        current: list[int] = [0]

        def act(name: str, *_: Any) -> None:
            acted[name].add(current[0])  # noqa: B023 - (this seed's, called within it)

        ctl.enqueue = partial(act, "ctl")  # type: ignore[method-assign]
        quota.enqueue = partial(act, "quota")  # type: ignore[method-assign]
        quota.schedule = partial(act, "quota")  # type: ignore[method-assign]
        quota._settled_at = lambda tenant, ns: 0.0  # type: ignore[method-assign]
        feeds = {"ctl": p.subscribe_changes(accept=ctl.wants), "quota": p.subscribe_changes(accept=quota.wants)}
        every = p.subscribe_changes()
        sent: dict[str, set[int]] = {"ctl": set(), "quota": set()}
        changes: list[Item] = []
        for m in _controller_log(1500, seed):
            p.apply_batch([m])
            for name, feed in feeds.items():
                sent[name] |= {ch.seq for _, ch in _drain(feed)}
            for item in _drain(every):
                changes.append(item)
                (tenant, group, resource), ch = item
                current[0] = ch.seq
                ctl.on_change(ch, tenant, group, resource)
                quota.on_change(tenant, group, resource, ch)
        for name in ("ctl", "quota"):
            assert acted[name], f"the log should make the {name} controller act"
            assert acted[name] <= sent[name], name
            assert len(sent[name]) < len(changes) * 0.8, f"the {name} filter should leave changes out"
        acted = {"ctl": set(), "quota": set()}
        for (tenant, group, resource), ch in changes:  # later, on the final state
            current[0] = ch.seq
            ctl.on_change(ch, tenant, group, resource)
            quota.on_change(tenant, group, resource, ch)
        assert acted["ctl"] <= sent["ctl"]
        quota_puts = [(key[0], ch.namespace, ch.seq) for key, ch in changes
                      if key[1:] == ("", "resourcequotas") and ch.type != DELETED and ch.seq in sent["quota"]]
        for key, ch in changes:
            if ch.seq in acted["quota"] and ch.seq not in sent["quota"]:
                assert any(t == key[0] and ns == ch.namespace and seq > ch.seq for t, ns, seq in quota_puts)


def _gc_log(n: int, seed: int) -> list[LogMessage]:
    """ConfigMaps and Deployments in two namespaces: some owned by others (references added,
    changed and dropped), some deleting (deletionTimestamp, finalizers), created, updated, deleted."""
    rnd = random.Random(seed)
    out = []
    for seq in range(1, n + 1):
        ns = f"ns-{rnd.randrange(2)}"
        resource = rnd.choice(("configmaps", "configmaps", "deployments"))
        group = "apps" if resource == "deployments" else ""
        name = f"o{rnd.randrange(12)}"
        meta: dict[str, Any] = {"uid": f"uid-{resource}-{ns}-{name}"}
        r = rnd.random()
        if r < 0.3:
            owner = f"o{rnd.randrange(12)}"
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner,
                                        "uid": f"uid-deployments-{ns}-{owner}"}]
        elif r < 0.4:
            meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
            meta["finalizers"] = ["foregroundDeletion"]
        out.append(_msg(seq, "root", group, resource, ns, name, delete=rnd.random() < 0.2, meta=meta))
    return out


def test_the_collector_fed_what_it_accepts_acts_as_one_fed_every_change() -> None:
    """Two collectors on one projection, one subscribed with its filter, one to every change, each
    handling the changes as they are applied: the same work queued in the same order, the same
    owner index; and the filter left changes out."""
    for seed in range(4):
        p = fresh_projection()
        gcs = [GarbageCollector(p, Registry(), None, None) for _ in range(2)]  # type: ignore[arg-type]
        queued: list[list[Any]] = [[], []]
        for gc_, q in zip(gcs, queued, strict=True):
            gc_.enqueue = lambda task, key, q=q: q.append((task, key))  # type: ignore[method-assign]
        feeds = [p.subscribe_changes(accept=_gc_wants), p.subscribe_changes()]
        sent = 0
        for m in _gc_log(1500, seed):
            p.apply_batch([m])
            for gc_, feed in zip(gcs, feeds, strict=True):
                items = _drain(feed)
                if feed is feeds[0]:
                    sent += len(items)
                for key, ch in items:
                    gc_.on_change(*key, ch)
        assert queued[0] == queued[1]
        assert len(queued[0]) > 50
        assert gcs[0].index._owners == gcs[1].index._owners
        assert gcs[0].index._dependents == gcs[1].index._dependents
        assert sent < 1500 * 0.8


def test_a_filter_that_raises_fails_open_and_never_stops_the_fold(caplog: Any) -> None:
    """A subscription whose ``accept`` raises (now and then) is sent those changes anyway; every
    message of the batch is applied, the waiters are released, the other subscriptions get what they
    always get, and the error is logged once, however often it raises."""
    p = fresh_projection()
    every = p.subscribe_changes()
    calls = 0

    def flaky(key: tuple[str, str, str], ch: Change) -> bool:
        nonlocal calls
        calls += 1
        if calls % 5 == 0:
            raise KeyError("a bug in a controller's filter")
        return key[2] == "configmaps"

    some = p.subscribe_changes(accept=flaky)
    log = make_log(1000)
    released = trio.Event()

    async def main() -> None:
        async with trio.open_nursery() as n:
            async def waiter() -> None:
                await p.wait_for(log[-1].seq, timeout_s=5)
                released.set()
            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            with caplog.at_level("ERROR", logger="jetkube.projections"):
                p.apply_batch(log)  # one batch: a raising filter must not stop it half-way
    trio.run(main)
    assert released.is_set()
    assert p.store.applied == log[-1].seq
    all_items = _drain(every)
    assert len(all_items) > 900
    got = [(k, ch.seq) for k, ch in _drain(some)]
    raised = [i for i in range(len(all_items)) if (i + 1) % 5 == 0]
    want = [(k, ch.seq) for i, (k, ch) in enumerate(all_items) if k[2] == "configmaps" or (i + 1) % 5 == 0]
    assert got == want  # the changes it raised on were sent too
    assert p.filter_errors == len(raised) > 100
    assert len([r for r in caplog.records if "change filter" in r.getMessage()]) == 1


def test_a_change_dropped_for_a_full_subscription_is_counted_and_signalled() -> None:
    p = fresh_projection()
    drops: list[int] = []
    full = p.subscribe_changes(max_queued=10, on_drop=lambda: drops.append(1))
    roomy = p.subscribe_changes()
    p.apply_batch(make_log(100))
    sent = len(_drain(roomy))
    assert len(_drain(full)) == 10
    assert p.feed_drops == len(drops) == sent - 10 > 50


def test_the_collector_resyncs_once_drained_after_the_feed_dropped_a_change() -> None:
    """A dependent lets go of an owner waiting in foreground deletion, and that change is lost (the
    collector's channel was full). Its later updates, with no owner references before or after, are
    filtered out, so they cannot repair the index; the collector resyncs instead as soon as it has
    handled what was queued: the stale entry goes and the waiting owner is queued at once, not at the
    next periodic resync (60 s)."""
    p = fresh_projection()
    gc_ = GarbageCollector(p, Registry(), None, None, feed_size=2)  # type: ignore[arg-type]
    queued: list[tuple[str, str]] = []
    gc_.enqueue = lambda task, key: queued.append((task, key.name))  # type: ignore[method-assign]
    ref = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "o", "uid": "u-o", "blockOwnerDeletion": True}]
    other = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "p", "uid": "u-p"}]
    d = Key("root", "", "configmaps", "n", "d")

    async def main() -> None:
        changes = gc_.subscribe()
        async with trio.open_nursery() as n:
            n.start_soon(gc_._follow, changes)
            p.apply_batch([_msg(1, "root", "apps", "deployments", "n", "o", meta={
                "uid": "u-o", "deletionTimestamp": "2026-11-30T00:00:00Z", "finalizers": ["foregroundDeletion"]})])
            p.apply_batch([_msg(2, "root", "", "configmaps", "n", "d", meta={"uid": "u-d", "ownerReferences": ref})])
            await trio.testing.wait_all_tasks_blocked()
            assert [r.uid for r in gc_.index.owners(d)] == ["u-o"]
            queued.clear()
            # One batch: other dependents fill the channel (the first is handed to the waiting follower,
            # two are queued), and d's release is dropped.
            p.apply_batch([_msg(2 + i, "root", "", "configmaps", "n", f"f{i}",
                                meta={"uid": f"u-f{i}", "ownerReferences": other}) for i in (1, 2, 3)]
                          + [_msg(6, "root", "", "configmaps", "n", "d", meta={"uid": "u-d"})])
            assert p.feed_drops == 1
            # A later update of d, no references before or after: filtered out.
            p.apply_batch([_msg(7, "root", "", "configmaps", "n", "d", meta={"uid": "u-d"}, body={"data": {"k": "v"}})])
            await trio.testing.wait_all_tasks_blocked()
            assert gc_.index.owners(d) == ()
            assert ("owner", "o") in queued
            assert gc_.resync_after_loss == 1
            n.cancel_scope.cancel()
    trio.run(main)


def test_a_feed_resyncs_once_drained_after_a_loss() -> None:
    """``ChangeFeed``: a change offered to a full feed is dropped and counted, and the follower,
    once it has handled what was queued, resyncs once (however many were lost); a loss signalled
    from upstream (``lose``) while the feed is empty wakes the follower, which resyncs at once."""
    feed = ChangeFeed(2)
    handled: list[str] = []
    resyncs: list[int] = []
    ch = [Change(i, "put", "", f"c{i}", Entry(i, b"{}", {}, {}), None) for i in range(5)]

    async def main() -> None:
        async with trio.open_nursery() as n:
            assert [feed.offer((("t", "", "configmaps"), c)) for c in ch] == [True, True, False, False, False]
            assert feed.dropped == 3 and feed.lost
            n.start_soon(feed.follow, lambda key, c: handled.append(c.name), lambda: resyncs.append(len(handled)))
            await trio.testing.wait_all_tasks_blocked()
            assert handled == ["c0", "c1"] and resyncs == [2] and not feed.lost  # after the queued ones
            feed.lose()  # upstream: nothing queued here
            await trio.testing.wait_all_tasks_blocked()
            assert handled == ["c0", "c1"] and resyncs == [2, 2] and feed.resyncs == 2
            assert feed.offer((("t", "", "configmaps"), ch[2]))
            await trio.testing.wait_all_tasks_blocked()
            assert handled == ["c0", "c1", "c2"] and resyncs == [2, 2]  # no loss: no resync
            n.cancel_scope.cancel()
    trio.run(main)


def test_the_namespace_controller_repairs_a_dropped_change_at_once() -> None:
    """Session 10, defect 3: a ServiceAccount ``default`` deleted, and that change lost (the
    controller's feed was full): the namespace controller resyncs as soon as it has handled what
    was queued, so the namespace is reconciled (its ``default`` made again) at once, not at the
    periodic resync (60 s; the clock jumps ahead whenever every task waits)."""
    p = fresh_projection()
    ctl = Controllers(p, Registry(), None)  # type: ignore[arg-type]
    enqueued: dict[str, float] = {}
    repaired = [trio.Event()]

    def enqueue(ns: str) -> None:
        enqueued.setdefault(ns, trio.current_time())
        if ns == "n3":
            repaired[0].set()

    ctl.enqueue = enqueue  # type: ignore[method-assign]

    async def main() -> None:
        feed = p.feed(2, accept=ctl.wants)
        async with trio.open_nursery() as n:
            n.start_soon(ctl._follow, feed)
            n.start_soon(every, ctl.resync_s, ctl.resync)
            p.apply_batch([_msg(1 + i, "root", "", "namespaces", "", f"n{i}", fields={"status.phase": "Active"})
                           for i in range(4)])
            await trio.testing.wait_all_tasks_blocked()
            assert p.feed_drops > 0  # (four namespaces into a feed of two: the start of a loss too)
            await trio.testing.wait_all_tasks_blocked()
            enqueued.clear()
            repaired[0] = trio.Event()
            start = trio.current_time()
            # One batch: the root CA ConfigMap edited in three namespaces fills the feed (the first
            # handed to the waiting follower, two queued), and n3's ServiceAccount deletion is dropped.
            drops = p.feed_drops
            p.apply_batch([_msg(10 + i, "root", "", "configmaps", f"n{i}", ROOT_CA_CONFIGMAP) for i in range(3)]
                          + [_msg(13, "root", "", "serviceaccounts", "n3", "default", delete=True)])
            assert p.feed_drops == drops + 1
            with trio.fail_after(ctl.resync_s / 2):
                await repaired[0].wait()
            assert enqueued["n3"] - start < 1.0 and feed.resyncs >= 1
            assert p.feed_resyncs == feed.resyncs  # (jetkube_projection_change_feed_resyncs_total)
            n.cancel_scope.cancel()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_crd_controllers_repair_a_key_their_full_work_queue_dropped() -> None:
    """Review of session 10, L1: the CRD controllers have no periodic resync, so a CRD whose key their
    full work queue dropped was never reconciled (until its next change or a restart). Now the
    queue goes through every CRD once drained after a drop: all of them are reconciled, at once."""
    p = fresh_projection()
    ctl = CrdControllers(p, Registry(), None, queue_size=2)  # type: ignore[arg-type]
    seen: dict[tuple[str, str], float] = {}
    done = trio.Event()
    names = [f"c{i}.example.com" for i in range(5)]

    async def reconcile(tenant: str, name: str) -> None:
        seen.setdefault((tenant, name), trio.current_time())
        if len(seen) == len(names):
            done.set()

    ctl.reconcile = reconcile  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(ctl.run)
            p.apply_batch([_msg(1 + i, "acme", "apiextensions.k8s.io", "customresourcedefinitions", "", name,
                                body={"spec": {"group": "example.com"}}) for i, name in enumerate(names)])
            with trio.fail_after(10.0):
                await done.wait()
            assert ctl.queue.dropped > 0 and ctl.queue.resyncs == 1
            assert set(seen) == {("acme", name) for name in names} and max(seen.values()) < 1.0
            n.cancel_scope.cancel()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_change_lost_by_the_tenancy_router_resyncs_every_tenants_controllers() -> None:
    """The tenancy controller routes its feed to each tenant's controllers (``ChangeFeed.offer``):
    a change lost from its own feed may have been any tenant's, so every route resyncs (and the
    logical clusters are reconciled again); a change lost from a full route resyncs that route."""
    t = Tenancy.__new__(Tenancy)
    t._wake = trio.Event()
    routes = {"acme": (ChangeFeed(10), ChangeFeed(10)), "beta": (ChangeFeed(1),)}
    t._routes = routes  # type: ignore[assignment]
    resyncs: dict[tuple[str, int], int] = {}
    ch = [Change(i, "put", "n", f"c{i}", Entry(i, b"{}", {}, {}), None) for i in range(6)]

    async def main() -> None:
        own = ChangeFeed(2)
        async with trio.open_nursery() as n:
            for name, feeds in routes.items():
                for i, f in enumerate(feeds):
                    def resync(key: tuple[str, int] = (name, i)) -> None:
                        resyncs[key] = resyncs.get(key, 0) + 1
                    n.start_soon(f.follow, lambda key, c: None, resync)
            await trio.testing.wait_all_tasks_blocked()
            assert [own.offer(((tenant, "", "configmaps"), c))
                    for tenant, c in zip(("acme", "acme", "beta"), ch, strict=False)] == [True, True, False]
            n.start_soon(t._follow, own)
            await trio.testing.wait_all_tasks_blocked()
            assert resyncs == {("acme", 0): 1, ("acme", 1): 1, ("beta", 0): 1} and t._wake.is_set()
            # Three of beta's changes routed in one step: one handed to its follower, one queued (a
            # route of one), one dropped: only beta resyncs.
            assert all(own.offer((("beta", "", "configmaps"), c)) for c in ch[3:])
            await trio.testing.wait_all_tasks_blocked()
            assert routes["beta"][0].dropped == 1 and own.dropped == 1
            assert resyncs == {("acme", 0): 1, ("acme", 1): 1, ("beta", 0): 2}
            n.cancel_scope.cancel()
    trio.run(main)


def test_a_quota_created_while_its_change_was_lost_is_filled_in_at_once() -> None:
    """Session 10, defect 3: the quota controller fills in a new quota's status at once (its
    change: ``_needs_fill``); when that change is lost from the full feed, the resync that repairs
    the loss does the same, not a ``settle_s`` later (nor at the periodic resync, 300 s)."""
    p = fresh_projection()
    quota = QuotaController(p, Registry(), None, None)  # type: ignore[arg-type]
    enqueued: list[tuple[tuple[str, str], float]] = []
    quota.enqueue = lambda nk: enqueued.append((nk, trio.current_time()))  # type: ignore[method-assign]
    filled = {"spec": {"hard": {"pods": "1"}}, "status": {"hard": {"pods": "1"}, "used": {"pods": "0"}}}

    async def main() -> None:
        feed = p.feed(2, accept=quota.wants)
        async with trio.open_nursery() as n:
            n.start_soon(quota._follow, feed)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            # One batch: three settled quotas fill the feed, and d's new one (no status yet) is dropped.
            p.apply_batch([_msg(1 + i, "root", "", "resourcequotas", ns, "q", body=filled) for i, ns in enumerate("abc")]
                          + [_msg(4, "root", "", "resourcequotas", "d", "q", body={"spec": {"hard": {"pods": "1"}}})])
            assert p.feed_drops == 1
            await trio.testing.wait_all_tasks_blocked()
            assert feed.resyncs == 1 and (("root", "d"), start) in enqueued
            assert all(nk == ("root", "d") for nk, _ in enqueued)  # the settled ones: later (scheduled)
            n.cancel_scope.cancel()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
