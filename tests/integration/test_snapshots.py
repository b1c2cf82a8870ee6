"""Projection snapshots on a real nats-server (projections/_snapshot.py, bus/_snapshots.py): a start
from a snapshot plus the log's tail folds to what a full replay folds; damaged, truncated and
foreign snapshots are refused and the start falls back to the previous one or to sequence 1; two
writers on one stream do not both write; a gateway restarted from a snapshot answers LIST, GET
and watches (from before the snapshot too) exactly as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors import RetentionSettings, RetentionStats
from actors._retention import run_pass
from bus import (
    ANY_TENANT,
    Key,
    Log,
    LogMessage,
    SnapshotBucket,
    StreamConfig,
    all_filter,
    open_bridge,
    open_log,
    snapshot_name,
)
from gateway import Running, Settings, serve
from projections import (
    Projection,
    ProjectionSettings,
    SnapshotSettings,
    WatchFilter,
    parse_field_selector,
    parse_label_selector,
)
from projections._snapshot import capture, encode
from tests.conftest import client_for, poll_until
from tests.unit.test_snapshot_format import dump, dump_views, make_log

pytestmark = pytest.mark.integration

NO_TIMER = SnapshotSettings(write=False)
ALL = WatchFilter(None, parse_label_selector(""), parse_field_selector(""))


async def append_all(log: Log, msgs: list[LogMessage]) -> None:
    """Append ``msgs``' payloads one after the other, in order (sequences come from the log)."""
    for m in msgs:
        await log.append(m.subject, m.data, msg_id=f"{m.msg_id}-{m.seq}", expected_seq=None)


@asynccontextmanager
async def running(log: Log, snapshots: SnapshotSettings | None) -> AsyncIterator[Projection]:
    p = Projection(log, ProjectionSettings(snapshots=snapshots))
    async with trio.open_nursery() as n:
        with trio.fail_after(60):
            await n.start(p.run)
        yield p
        n.cancel_scope.cancel()


async def full_fold(log: Log) -> Projection:
    async with running(log, None) as p:
        await p.wait_for(await log.head())
        return p


def same(a: Projection, b: Projection) -> None:
    assert dump(a.store) == dump(b.store)
    assert dump_views(a) == dump_views(b)


def same_purged(a: Projection, b: Projection) -> None:
    """:func:`same` for a log that retention purged: which resource a fold met first, and how many
    foreign messages it skipped, depend on which messages were left (no read shows either)."""
    da, db = dump(a.store), dump(b.store)
    assert da["applied"] == db["applied"]
    assert sorted(da["resources"]) == sorted(db["resources"])
    assert dump_views(a) == dump_views(b)


async def watch_from(p: Projection, tenant: str, group: str, resource: str, rv: int, n: int) -> list[
        tuple[str, int, bytes]]:
    """The first ``n`` events a watch from ``rv`` is sent."""
    out: list[tuple[str, int, bytes]] = []
    async with p.watch(tenant, group, resource, ALL, resource_version=rv, send_initial=False,
                       bookmarks=False) as gen:
        with trio.fail_after(30):
            async for batch in gen:
                out += [(ty, ch.seq, ch.object(ty)) for ty, ch in batch if not isinstance(ch, int)]
                if len(out) >= n:
                    break
    return out


def changes_after(full: Projection, tenant: str, group: str, resource: str, rv: int) -> int:
    """How many changes of the resource a full fold (whose ring holds them all) has after ``rv``."""
    st = full.store.peek(tenant, group, resource)
    assert st.ring_floor == 0
    return sum(1 for ch in st.ring if ch.seq > rv)


async def test_snapshot_plus_tail_equals_a_full_replay_on_nats(nats_url: str) -> None:
    msgs = make_log(2000, seed=11)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        await append_all(log, msgs[:1200])
        async with running(log, NO_TIMER) as writer:
            assert writer.snapshots is not None
            seq = await writer.snapshots.write(writer.store)
        assert seq == 1200
        await append_all(log, msgs[1200:])
        async with running(log, NO_TIMER) as p:
            assert p.snapshots is not None
            assert p.snapshots.stats.loaded_seq == 1200 and p.start_from == 1200
            assert sum(p.snapshots.stats.rejected.values()) == 0
            await p.wait_for(2000)
            full = await full_fold(log)
            same(p, full)
            # A watch from a resourceVersion older than the snapshot is read from the log: the same events.
            for tenant, group, resource in [("root", "", "configmaps"), ("acme", "", "secrets"),
                                            ("globex", "rbac.authorization.k8s.io", "clusterroles")]:
                for rv in (1, 900, 1199, 1200, 1600):
                    n = changes_after(full, tenant, group, resource, rv)
                    assert n > 0
                    got = await watch_from(p, tenant, group, resource, rv, n)
                    assert got == await watch_from(full, tenant, group, resource, rv, n), (tenant, resource, rv)
            assert p.watch_starts["log"] > 0
            # Across tenants (/clusters/*/) too: from the log, then the rings, each object in its tenant.
            for group, resource in [("", "configmaps"), ("rbac.authorization.k8s.io", "clusterroles")]:
                for rv in (1, 900, 1199, 1200, 1600):
                    n = sum(changes_after(full, t, group, resource, rv) for t in ("root", "acme", "globex"))
                    starts = p.watch_starts["log"]
                    got = await watch_from(p, ANY_TENANT, group, resource, rv, n)
                    assert got == await watch_from(full, ANY_TENANT, group, resource, rv, n), (resource, rv)
                    assert b"tenancy.jetkube.io/cluster" in got[0][2]
                    assert p.watch_starts["log"] == starts + (rv < 1200)


async def test_a_corrupted_snapshot_falls_back(nats_url: str) -> None:
    msgs = make_log(1500, seed=3)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        bucket = SnapshotBucket(bridge, log.stream)
        await append_all(log, msgs[:500])
        async with running(log, NO_TIMER) as w:
            assert w.snapshots is not None
            assert await w.snapshots.write(w.store) == 500
            await append_all(log, msgs[500:1000])
            await w.wait_for(1000)
            good_1000 = await w.snapshots.write(w.store)
        assert good_1000 == 1000
        await append_all(log, msgs[1000:])
        full = await full_fold(log)
        assert [s for s, _, _ in await bucket.list()] == [500, 1000]

        # The newest damaged: the one before it, plus a longer tail.
        blob = await bucket.get(snapshot_name(1000))
        damaged = bytearray(blob)
        damaged[len(damaged) // 2] ^= 0xFF
        await bucket.put(snapshot_name(1000), bytes(damaged))
        async with running(log, NO_TIMER) as p:
            assert p.snapshots is not None
            assert p.snapshots.stats.loaded_seq == 500
            assert p.snapshots.stats.rejected["corrupt"] == 1
            await p.wait_for(1500)
            same(p, full)

        # Truncated, and one of another stream under the expected name: refused, down to a full fold.
        await bucket.put(snapshot_name(1000), blob[:-4096])
        other = await open_log(bridge, StreamConfig(name="OTHER", prefix="jk2"))
        other_store = Projection(other).store
        await bucket.put(snapshot_name(500), encode(capture(other_store), identity=await other.identity(),
                                                    prefix="jk"))
        async with running(log, NO_TIMER) as p:
            assert p.snapshots is not None
            assert p.snapshots.stats.loaded_seq == 0 and p.start_from == 0
            assert p.snapshots.stats.rejected["corrupt"] == 1 and p.snapshots.stats.rejected["mismatch"] == 1
            await p.wait_for(1500)
            same(p, full)

        # A snapshot beyond the stream's head (the stream was reset): refused without being read.
        await bucket.put(snapshot_name(99_999), blob)
        async with running(log, NO_TIMER) as p:
            assert p.snapshots is not None
            assert p.snapshots.stats.rejected == {"corrupt": 1, "mismatch": 2, "format": 0, "unreadable": 0,
                                                 "compacted": 0}
            assert p.snapshots.stats.loaded_seq == 0


async def test_retention_after_a_snapshot_then_a_restart_folds_as_a_full_fold(nats_url: str) -> None:
    """A snapshot, then history retention: a purged tombstone after the snapshot makes it unusable (its
    tail would miss that deletion: a full fold instead); a revisions cap that moves the compaction
    point past a snapshot purges no last revision, so that snapshot is still used. Either way the
    restarted state is exactly a full fold of what the log holds."""
    msgs = make_log(3000, seed=13)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        await append_all(log, msgs[:1000])
        async with running(log, NO_TIMER) as w:
            assert w.snapshots is not None
            assert await w.snapshots.write(w.store) == 1000
            at_snapshot = {log.subject(Key(t, g, r, ns, n)) for (t, g, r), st in w.store.resources.items()
                           for ns, n, _ in st.iter_entries(None)}
        await append_all(log, msgs[1000:2000])
        # Age: everything stored before the 1,500th message is older than the maximum age.
        cut = (await log.subject_messages(msgs[1499].subject, 1500, limit=1))[0][0]
        stored = datetime.fromisoformat(cut.stored_at.replace("Z", "+00:00")[:26] + "+00:00")
        stats = RetentionStats()
        plan = await run_pass(log, RetentionSettings(max_age_s=3600), stats, now=stored + timedelta(hours=1), done={})
        point, horizon, _ = await log.compaction_record()
        assert 1000 < horizon == plan.tombstones <= point == plan.point < 1501
        # The tail after the snapshot did lose deletions: objects in the snapshot left no trace in the log.
        left = set(await log.subjects(all_filter(log.prefix)))
        assert at_snapshot - left
        async with running(log, NO_TIMER) as p:
            assert p.snapshots is not None
            assert p.snapshots.stats.rejected["compacted"] == 1 and p.snapshots.stats.loaded_seq == 0
            await p.wait_for(2000)
            same_purged(p, await full_fold(log))
            assert p.compacted == point
            # A snapshot at or above H is trusted again (this one at the head).
            seq2 = await p.snapshots.write(p.store)
        assert seq2 >= 2000
        # A revisions cap moves the compaction point past that snapshot, purging no last revision.
        await append_all(log, msgs[2000:])
        plan = await run_pass(log, RetentionSettings(max_revisions=1), stats, now=datetime.now(UTC), done={})
        point2, horizon2, _ = await log.compaction_record()
        assert point2 > seq2 and horizon2 == horizon and plan.tombstones == 0
        async with running(log, NO_TIMER) as p:
            assert p.snapshots is not None
            assert p.snapshots.stats.loaded_seq == seq2 and p.start_from == seq2
            assert sum(p.snapshots.stats.rejected.values()) == 0
            await p.wait_for(await log.head())
            same_purged(p, await full_fold(log))
            assert p.compacted == point2


async def test_a_purge_during_a_start_leaves_no_deleted_object_behind(nats_url: str) -> None:
    """A fold that applied objects, then history retention purged their tombstones (with everything
    before them) ahead of it: once caught up, the start drops the objects the log no longer holds,
    so the state is a full fold of what the log holds."""
    msgs = make_log(2500, seed=17)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        await append_all(log, msgs)
        p = Projection(log)
        p.apply_batch(msgs[:1000])  # what the start's reader had applied when the purge ran
        cut = (await log.subject_messages(msgs[1799].subject, 1800, limit=1))[0][0]
        stored = datetime.fromisoformat(cut.stored_at.replace("Z", "+00:00")[:26] + "+00:00")
        await run_pass(log, RetentionSettings(max_age_s=3600), RetentionStats(), now=stored + timedelta(hours=1),
                       done={})
        _, horizon, _ = await log.compaction_record()
        assert horizon > 1000
        present = set(await log.subjects(all_filter(log.prefix)))
        ghosts = {k for (t, g, r), st in p.store.resources.items() for ns, n, _ in st.iter_entries(None)
                  if log.subject(k := Key(t, g, r, ns, n)) not in present}
        assert ghosts  # the reader will never see their deletions
        assert any(k.group == "rbac.authorization.k8s.io" for k in ghosts)
        await p._forget_purged(0)
        assert not any(p.store.get(k) for k in ghosts)
        # The rest of what the log holds, as the reader goes on.
        reader = await log.open_reader(all_filter(log.prefix), 1001)
        try:
            with trio.fail_after(30):
                while p.store.applied < await log.head():
                    p.apply_batch(await reader.next_batch())
        finally:
            await reader.aclose()
        same_purged(p, await full_fold(log))
        # Nothing moved since: nothing more to drop.
        before = dump(p.store)
        await p._forget_purged(horizon)
        assert dump(p.store) == before


async def test_two_writers_do_not_fight(nats_url: str) -> None:
    msgs = make_log(1200, seed=5)
    fast = SnapshotSettings(every_events=50, every_s=3600, min_interval_s=0.1, check_s=0.05, lease_s=3.0)

    async def feed(lo: int, hi: int) -> None:
        for i in range(lo, hi, 50):
            await append_all(log, msgs[i:i + 50])
            await trio.sleep(0.15)  # pacing of the load (the writers look every 50 ms), not synchronisation

    async def until(cond: Any) -> None:
        with trio.fail_after(20):
            while not cond():
                await trio.sleep(0.05)  # in-process counters of the writers' own loops

    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        bucket = SnapshotBucket(bridge, log.stream)
        await append_all(log, msgs[:200])
        async with trio.open_nursery() as nursery:
            scopes: list[trio.CancelScope] = []
            gws: list[Projection] = []

            async def gw(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with trio.CancelScope() as scope:
                    async with running(log, fast) as p:
                        scopes.append(scope)
                        gws.append(p)
                        task_status.started()
                        await trio.sleep_forever()

            await nursery.start(gw)
            await nursery.start(gw)
            stats = [p.snapshots.stats for p in gws if p.snapshots is not None]
            # Started on 200 events and no snapshot: one is due at once, without waiting for more.
            await until(lambda: max(s.last_written_seq for s in stats) == 200)
            await feed(200, 800)
            await until(lambda: max(s.last_written_seq for s in stats) >= 800)
            writes = [s.written for s in stats]
            assert min(writes) == 0 and max(writes) >= 3, writes
            assert [s.lease_held for s in stats].count(True) == 1
            assert sum(s.write_failures for s in stats) == 0
            assert len(await bucket.list()) == 2  # keep=2: the older ones were deleted
            # The writer stops (and gives its lease up): the other one takes over.
            h = writes.index(max(writes))
            scopes[h].cancel()
            other = stats[1 - h]
            await feed(800, 1200)
            await until(lambda: other.last_written_seq >= 1200)
            assert other.lease_held and other.written >= 2
            nursery.cancel_scope.cancel()


# ---- a gateway restarted from a snapshot --------------------------------------------------------

@asynccontextmanager
async def gateway(nats_url: str, data_dir: Path, **kw: Any) -> AsyncIterator[Running]:
    stop = trio.Event()
    async with trio.open_nursery() as n:
        settings = Settings(data_dir=str(data_dir), port=0, insecure_port=0, nats_url=nats_url,
                            graceful_timeout_s=0.5, **kw)
        with trio.fail_after(60):
            r = await n.start(partial(serve, settings, shutdown=stop))
        try:
            yield r
        finally:
            stop.set()


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples (over its labels) in an exposition."""
    got = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + " ", name + "{"))]
    if not got:
        raise KeyError(name)
    return sum(got)


async def observe(c: httpx.AsyncClient, old_rv: str) -> dict[str, Any]:
    """What a client sees: LISTs (several kinds, namespaces and tenants), GETs, and watches from a
    resourceVersion older than any snapshot (timeoutSeconds ends them)."""
    out: dict[str, Any] = {}
    for tenant in ("", "/clusters/acme"):
        for path in ("/api/v1/namespaces/snap-a/configmaps", "/api/v1/namespaces/snap-b/configmaps",
                     "/api/v1/configmaps", "/api/v1/namespaces/snap-a/secrets", "/api/v1/namespaces",
                     "/apis/rbac.authorization.k8s.io/v1/clusterroles?labelSelector=snap%3Dyes",
                     "/api/v1/namespaces/snap-a/configmaps?limit=7"):
            r = await c.get(tenant + path)
            assert r.status_code == 200, r.text
            body = r.json()
            out[f"LIST {tenant}{path}"] = (body["metadata"].get("continue"), body["items"])
        for name in ("cm-3", "cm-4", "cm-10", "cm-11"):
            r = await c.get(f"{tenant}/api/v1/namespaces/snap-a/configmaps/{name}")
            out[f"GET {tenant} {name}"] = (r.status_code, r.json())
        r = await c.get(f"{tenant}/api/v1/namespaces/snap-a/configmaps",
                        params={"watch": "1", "resourceVersion": old_rv, "timeoutSeconds": "1"})
        out[f"WATCH {tenant}"] = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        assert out[f"WATCH {tenant}"], tenant
    # Across tenants, from a resourceVersion older than any snapshot (served from the log after a
    # start from one, from the rings after a full fold).
    r = await c.get("/clusters/*/api/v1/namespaces/snap-a/configmaps",
                    params={"watch": "1", "resourceVersion": old_rv, "timeoutSeconds": "1"})
    out["WATCH *"] = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert {e["object"]["metadata"]["annotations"]["tenancy.jetkube.io/cluster"] for e in out["WATCH *"]} == {
        "root", "acme"}, out["WATCH *"]
    return out


async def test_a_gateway_restarted_from_a_snapshot_serves_the_same(nats_url: str, tmp_path: Path) -> None:
    snap = {"snapshot_every_events": 60, "snapshot_min_interval_s": 0.0}
    async with gateway(nats_url, tmp_path / "g1", **snap) as g1, client_for(g1) as c:
        r = await c.post("/apis/tenancy.jetkube.io/v1alpha1/logicalclusters", json={
            "apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster", "metadata": {"name": "acme"}})
        assert r.status_code == 201, r.text
        with trio.fail_after(30):
            await poll_until(lambda: _tenant_ready(c, "acme"))
        first_rv = ""
        for tenant in ("", "/clusters/acme"):
            for ns in ("snap-a", "snap-b"):
                r = await c.post(f"{tenant}/api/v1/namespaces", json={"metadata": {"name": ns}})
                assert r.status_code == 201, r.text
            for i in range(25):
                for ns in ("snap-a", "snap-b"):
                    r = await c.post(f"{tenant}/api/v1/namespaces/{ns}/configmaps", json={
                        "metadata": {"name": f"cm-{i}", "labels": {"i": str(i % 3)}}, "data": {"i": str(i)}})
                    assert r.status_code == 201, r.text
                    first_rv = first_rv or r.json()["metadata"]["resourceVersion"]
            for i in range(5):
                r = await c.post(f"{tenant}/api/v1/namespaces/snap-a/secrets", json={
                    "metadata": {"name": f"s-{i}"}, "stringData": {"password": f"pw-{i}"}})
                assert r.status_code == 201, r.text
                r = await c.post(f"{tenant}/apis/rbac.authorization.k8s.io/v1/clusterroles", json={
                    "metadata": {"name": f"snap-role-{i}", "labels": {"snap": "yes"}}, "rules": []})
                assert r.status_code == 201, r.text
            for i in range(0, 25, 4):
                r = await c.delete(f"{tenant}/api/v1/namespaces/snap-a/configmaps/cm-{i}")
                assert r.status_code == 200, r.text
            for i in range(2, 25, 4):
                r = await c.patch(f"{tenant}/api/v1/namespaces/snap-a/configmaps/cm-{i}",
                                  json={"data": {"patched": "yes"}},
                                  headers={"Content-Type": "application/merge-patch+json"})
                assert r.status_code == 200, r.text
        # Until no snapshot is due any more (the writer caught up), so the last one written is final.
        with trio.fail_after(30):
            await poll_until(lambda: _snapshot_caught_up(c, 60))
        written = metric((await c.get("/metrics")).text, "jetkube_snapshot_last_written_sequence")
    # The only snapshot writer has stopped: the newest snapshot is final, whatever comes next.
    assert written > 0
    async with open_bridge(nats_url) as bridge:
        newest = (await SnapshotBucket(bridge, "JETKUBE").list())[-1][0]
    assert newest >= written
    # The tail, written through a gateway that neither loads nor writes snapshots (a full fold): the
    # reference the restarted gateway is compared with.
    async with gateway(nats_url, tmp_path / "gt", snapshots=False) as gt, client_for(gt) as c:
        for i in range(3):
            r = await c.patch(f"/api/v1/namespaces/snap-a/configmaps/cm-{i + 1}", json={"data": {"tail": str(i)}},
                              headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
        tail_rv = int(r.json()["metadata"]["resourceVersion"])
        # What a client sees, once two looks in a row agree (the controllers may still be creating
        # what new namespaces and tenants get: default service accounts, root CA ConfigMaps).
        before = await observe(c, first_rv)
        with trio.fail_after(60):
            while (again := await observe(c, first_rv)) != before:
                before = again
        m1 = (await c.get("/metrics")).text
    assert metric(m1, "jetkube_projection_start_sequence") == 0
    assert tail_rv > newest
    async with open_bridge(nats_url) as bridge:
        assert (await SnapshotBucket(bridge, "JETKUBE").list())[-1][0] == newest  # none written since
    async with gateway(nats_url, tmp_path / "g2", snapshot_every_events=0) as g2, client_for(g2) as c2:
        m2 = (await c2.get("/metrics")).text
        assert metric(m2, "jetkube_projection_start_sequence") == newest
        assert metric(m2, "jetkube_projection_applied_sequence") >= tail_rv  # and the tail was folded
        assert metric(m2, "jetkube_snapshot_rejected_total") == 0
        after = await observe(c2, first_rv)
    assert after.keys() == before.keys()
    for k in before:
        assert after[k] == before[k], k


async def _tenant_ready(c: httpx.AsyncClient, name: str) -> bool:
    r = await c.get(f"/apis/tenancy.jetkube.io/v1alpha1/logicalclusters/{name}")
    return r.status_code == 200 and (r.json().get("status") or {}).get("phase") == "Ready"


async def _snapshot_caught_up(c: httpx.AsyncClient, every: int) -> bool:
    text = (await c.get("/metrics")).text
    last = metric(text, "jetkube_snapshot_last_written_sequence")
    return last > 0 and metric(text, "jetkube_projection_applied_sequence") - last < every
