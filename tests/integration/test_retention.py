"""History retention (actors/_retention.py): old revisions purged, the latest of every live object kept,
tombstones aged out, the compaction point recorded first, and 410 Expired below it on GET, LIST and
watch on two gateways."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from actors import RetentionSettings, RetentionStats, run_retention
from actors._retention import run_pass
from bus import (
    Actor,
    BusTimeout,
    Event,
    Key,
    LeasedCursor,
    Log,
    NoResponders,
    StreamConfig,
    all_filter,
    encode_event,
    encode_object_with_rv_slot,
    open_bridge,
    open_log,
    resource_filter,
)
from gateway import Running, Settings, serve
from projections import TooOldResourceVersion
from projections._history import check_retained, rows_at
from tests.conftest import client_for, poll_until
from tests.integration.test_snapshots import metric

pytestmark = pytest.mark.trio

CM = "/api/v1/namespaces/default/configmaps"
H = "/apis/history.jetkube.io/v1"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _event(name: str, i: int, verb: str, delete: bool = False) -> bytes:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"i": str(i)}}
    data, rv_at = encode_object_with_rv_slot(obj)
    return encode_event(Event(type="delete" if delete else "put", object=msgspec.Raw(data), rv_at=rv_at, verb=verb,
                              audit_id=f"a{i}", time="2026-01-01T00:00:00Z", actor=Actor(user="t")))


async def _seed(log, n: int, objects: int, seed: int) -> list[tuple[int, str, bool, int]]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    live: set[str] = set()
    history = []
    for i in range(n):
        name = f"o{rng.randrange(objects)}"
        delete = name in live and rng.random() < 0.1
        verb = "delete" if delete else ("update" if name in live else "create")
        seq = await log.append(log.subject(Key("root", "", "configmaps", "ns", name)), _event(name, i, verb, delete),
                               msg_id=f"{seed}-{i}", expected_seq=None)
        history.append((seq, name, delete, i))
        (live.discard if delete else live.add)(name)
    return history


def _fold(history: list[tuple[int, str, bool, int]], at: int) -> dict[str, str]:
    state: dict[str, str] = {}
    for seq, name, deleted, i in history:
        if seq > at:
            break
        if deleted:
            state.pop(name, None)
        else:
            state[name] = str(i)
    return state


async def _rows(log, at: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    got, _ = await rows_at(log, resource_filter(log.prefix, "root", "", "configmaps"), at, start_after="", limit=0,
                           keep=lambda *_: True)
    return {rk.split("\x00")[1]: msgspec.json.decode(e.data)["data"]["i"] for rk, e in got}


async def test_revisions_cap_keeps_the_latest_and_moves_the_compaction_point(nats_url: str) -> None:
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="RV", prefix="rv"))
        with trio.fail_after(120):
            history = await _seed(log, 3000, 300, 1)
            head = history[-1][0]
            before = await log.subjects(all_filter("rv"))
            stats = RetentionStats()
            plan = await run_pass(log, RetentionSettings(max_revisions=2), stats, now=datetime.now(), done={})
            after = await log.subjects(all_filter("rv"))
            point, _ = await log.compaction_point()
            assert point == plan.point == stats.compaction_point > 0
            assert stats.purged_messages == sum(before.values()) - (sum(after.values()) - 1) > 1000  # - the record
            # At most two revisions of each object remain, and the object's last one among them.
            last = {}
            for seq, name, _, _ in history:
                last[log.subject(Key("root", "", "configmaps", "ns", name))] = seq
            for subject, n in after.items():
                if subject == log.compaction_subject:
                    continue
                assert n == min(2, before[subject])
                msgs, _ = await log.subject_messages(subject, 1, limit=10)
                assert msgs[-1].seq == last[subject]
                assert msgs[0].seq <= point
            # Every version from the compaction point on is whole; below it, 410 with kube's message.
            for at in (point, (point + head) // 2, head):
                assert await _rows(log, at) == _fold(history, at)
            with pytest.raises(TooOldResourceVersion, match=rf"too old resource version: {point - 1} \({point}\)"):
                await check_retained(log, point - 1)
            # The cap purges no last revision: no tombstone horizon (H) is recorded.
            assert (await log.compaction_record())[1] == plan.tombstones == 0
            # A second pass finds nothing to do; the compaction point only grows.
            done: dict[str, int] = {}
            await run_pass(log, RetentionSettings(max_revisions=2), stats, now=datetime.now(), done=done)
            assert (await log.compaction_point())[0] == point
            assert await log.subjects(all_filter("rv")) == after


async def test_age_keeps_the_state_at_the_cut_and_ages_tombstones_out(nats_url: str) -> None:
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="AG", prefix="ag"))
        with trio.fail_after(120):
            history = await _seed(log, 2000, 200, 2)
            head = history[-1][0]
            # Injected time: "now" is one hour after the 1200th write, with a max age of one hour.
            cut_msg = (await log.subject_messages(log.subject(Key("root", "", "configmaps", "ns",
                                                                  history[1200][1])), history[1200][0], limit=1))[0][0]
            stored = datetime.fromisoformat(cut_msg.stored_at.replace("Z", "+00:00")[:26] + "+00:00")
            stats = RetentionStats()
            plan = await run_pass(log, RetentionSettings(max_age_s=3600), stats, now=stored + timedelta(hours=1),
                                  done={})
            t = plan.point
            assert history[1100][0] <= t < history[1200][0] + 1  # the last write stored before the cut
            assert (await log.compaction_point())[0] == t
            assert stats.purged_messages > 500
            # The state at T and after is whole; below T is gone (410).
            for at in (t, (t + head) // 2, head):
                assert await _rows(log, at) == _fold(history, at)
            with pytest.raises(TooOldResourceVersion):
                await check_retained(log, t - 1)
            # Objects deleted at or before T (and not created again) left no trace; a tombstone after T stays.
            subjects = await log.subjects(all_filter("ag"))
            state_t = _fold(history, t)
            names_before_t = {name for seq, name, _, _ in history if seq <= t}
            for name in names_before_t:
                subject = log.subject(Key("root", "", "configmaps", "ns", name))
                touched_after = any(seq > t and n == name for seq, n, _, _ in history)
                if name not in state_t and not touched_after:
                    assert subject not in subjects, name
                elif name in state_t:
                    msgs, _ = await log.subject_messages(subject, 1, limit=1)
                    assert msgs[0].seq <= t  # its state at T is kept
            assert any(deleted and seq > t for seq, _, deleted, _ in history)
            # H: the highest tombstone purged: the highest deletion that is its object's state at T.
            last_at_t: dict[str, tuple[int, bool]] = {}
            for seq, name, deleted, _ in history:
                if seq <= t:
                    last_at_t[name] = (seq, deleted)
            horizon = max(seq for seq, deleted in last_at_t.values() if deleted)
            assert (await log.compaction_record())[:2] == (t, horizon) and plan.tombstones == horizon
            # A record written before H was kept says nothing about tombstones: H is taken to be C.
            point, _, at = await log.compaction_record()
            await log.append(log.compaction_subject, json.dumps({"seq": point + 1}).encode(), msg_id="old-record",
                             expected_seq=at)
            assert (await log.compaction_record())[:2] == (point + 1, point + 1)


async def test_410_below_the_compaction_point_on_two_gateways(start_server) -> None:  # type: ignore[no-untyped-def]
    g1 = await start_server(history_max_revisions=1, history_retention_interval_s=0.2)
    g2 = await start_server()
    async with client_for(g1) as a, client_for(g2) as b:
        with trio.fail_after(90):
            rvs = []
            for i in range(60):
                r = await a.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"},
                                           "data": {"v": "0"}})
                assert r.status_code == 201, r.text
            for round_ in range(3):
                for i in range(60):
                    r = await (a if i % 2 else b).patch(f"{CM}/c{i}", content=b'{"data":{"v":"%d"}}' % (round_ + 1),
                                                        headers=MERGE)
                    assert r.status_code == 200, r.text
                    rvs.append(int(r.json()["metadata"]["resourceVersion"]))
            old = rvs[0]

            async def compacted() -> bool:
                r = await b.get(f"{H}/compaction")
                return r.status_code == 200 and int(r.json()["resourceVersion"]) > old

            await poll_until(compacted)

            async def settled() -> bool:  # no write since: the point stops moving; both projections applied it
                p = int((await b.get(f"{H}/compaction")).json()["resourceVersion"])
                seen = []
                for c in (a, b):
                    m = await c.get("/metrics")
                    line = next(x for x in m.text.splitlines() if x.startswith("jetkube_log_compaction_point "))
                    seen.append(int(float(line.split()[1])))
                return seen == [p, p]

            await poll_until(settled)
            point = int((await b.get(f"{H}/compaction")).json()["resourceVersion"])
            # (the point may still move: both gateways' controllers write, e.g. kube-root-ca.crt)
            want = re.compile(rf"too old resource version: {old} \((\d+)\)")

            def expired(message: str) -> bool:
                m = want.fullmatch(message)
                return m is not None and int(m.group(1)) >= point
            for c in (a, b):
                r = await c.get(CM, params={"resourceVersion": str(old), "resourceVersionMatch": "Exact"})
                assert r.status_code == 410 and r.json()["reason"] == "Expired", r.text
                assert expired(r.json()["message"]), r.text
                r = await c.get(f"{CM}/c5", params={"resourceVersion": str(old), "resourceVersionMatch": "Exact"})
                assert r.status_code == 410 and expired(r.json()["message"]), r.text
                async with c.stream("GET", CM, params={"watch": "1", "resourceVersion": str(old)}) as w:
                    line = await w.aiter_lines().__anext__()
                ev = json.loads(line)
                assert ev["type"] == "ERROR" and ev["object"]["code"] == 410, line
                assert expired(ev["object"]["message"]), line
                # From the compaction point on: whole, and the latest of every object is there.
                exact: list[httpx.Response] = []

                async def exact_at_head(c: httpx.AsyncClient = c, exact: list[httpx.Response] = exact) -> bool:
                    head = (await c.get(CM)).json()["metadata"]["resourceVersion"]
                    exact[:] = [await c.get(CM, params={"resourceVersion": head, "resourceVersionMatch": "Exact"})]
                    return exact[0].status_code == 200  # 410 when a controller's write moved the point meanwhile

                await poll_until(exact_at_head)
                r = exact[0]
                got = {i["metadata"]["name"]: i["data"]["v"] for i in r.json()["items"]
                       if i["metadata"]["name"].startswith("c")}
                assert got == {f"c{i}": "3" for i in range(60)}


                async def one_revision_left(c: httpx.AsyncClient = c) -> bool:
                    # The purge runs subject by subject after the point is recorded: wait for c7's turn.
                    r = await c.get(f"{H}/namespaces/default/configmaps/c7")
                    return r.status_code == 200 and len(r.json()["items"]) == 1

                await poll_until(one_revision_left)
                r = await c.get(f"{H}/namespaces/default/configmaps/c7")
                live = (await c.get(f"{CM}/c7")).json()["metadata"]["resourceVersion"]
                assert [i["resourceVersion"] for i in r.json()["items"]] == [live]  # the latest is never purged
            r = await a.get("/readyz", params={"verbose": "1"})
            assert "[+]log-compaction ok (compaction point " in r.text, r.text
            r = await a.get("/metrics")
            assert "jetkube_history_purged_messages_total" in r.text and "jetkube_log_compaction_point" in r.text


async def test_one_gateway_purges_and_another_takes_over_when_it_stops(nats_url: str, tmp_path: Path) -> None:
    """Two gateways with retention on: only the purger's lease holder runs passes; when it stops (and
    releases the lease) the other one purges, well before the lease would have lapsed."""
    async with trio.open_nursery() as nursery:
        gws: list[Running] = []
        stops: list[trio.Event] = []
        stopped: list[trio.Event] = []

        async def gateway(i: int, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
            settings = Settings(data_dir=str(tmp_path / f"g{i}"), port=0, insecure_port=0, nats_url=nats_url,
                                graceful_timeout_s=0.5, history_max_revisions=1, history_retention_interval_s=0.2)
            try:
                await serve(settings, shutdown=stops[i], task_status=task_status)
            finally:
                stopped[i].set()

        for i in range(2):
            stops.append(trio.Event())
            stopped.append(trio.Event())
            with trio.fail_after(30):
                gws.append(await nursery.start(gateway, i))
        clients = [client_for(g) for g in gws]

        async def look() -> list[tuple[float, float, float]]:
            """(lease held, passes, purged messages) of each gateway still running."""
            out = []
            for c, done in zip(clients, stopped, strict=True):
                if done.is_set():
                    continue
                text = (await c.get("/metrics")).text
                out.append(tuple(metric(text, n) for n in ("jetkube_history_retention_lease_held",
                                                            "jetkube_history_retention_passes_total",
                                                            "jetkube_history_purged_messages_total")))
            return out

        async def revisions(c: httpx.AsyncClient, names: range, v: str) -> None:
            for i in names:
                r = await c.post(CM, json={"metadata": {"name": f"lease-{i}"}, "data": {"v": "0"}})
                assert r.status_code in (201, 409), r.text
                r = await c.patch(f"{CM}/lease-{i}", content=b'{"data":{"v":"%s"}}' % v.encode(), headers=MERGE)
                assert r.status_code == 200, r.text

        async def one_revision(c: httpx.AsyncClient, names: range) -> bool:
            for i in names:
                r = await c.get(f"{H}/namespaces/default/configmaps/lease-{i}")
                if r.status_code != 200 or len(r.json()["items"]) != 1:
                    return False
            return True

        try:
            await revisions(clients[0], range(20), "1")
            with trio.fail_after(30):
                await poll_until(lambda: one_revision(clients[1], range(20)))
                # Several passes later, one gateway did them all and holds the lease; the other none.
                await poll_until(lambda: _passes_at_least(look, 5))
            seen = await look()
            holder = next(i for i, (held, _, _) in enumerate(seen) if held == 1)
            other = 1 - holder
            assert seen[holder][1] >= 5 and seen[holder][2] >= 20, seen
            assert seen[other] == (0, 0, 0), seen

            stops[holder].set()
            with trio.fail_after(15):  # the lease lasts 30 s: only the holder's release makes this quick
                await stopped[holder].wait()
                await revisions(clients[other], range(20, 30), "2")
                await poll_until(lambda: one_revision(clients[other], range(20, 30)))
            (held, passes, purged), = await look()
            assert held == 1 and passes >= 1 and purged >= 10
        finally:
            for c in clients:
                await c.aclose()
            for s in stops:
                s.set()


async def _passes_at_least(look, n: int) -> bool:  # type: ignore[no-untyped-def]
    return max(p for _, p, _ in await look()) >= n


async def test_a_dead_purgers_lease_lapses_and_another_gateway_takes_over(nats_url: str) -> None:
    """A holder that stops renewing (killed: it never releases): no pass runs until its lease lapses,
    then the other purger takes over."""
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="LZ", prefix="lz"))
        await _seed(log, 200, 20, 3)
        dead = LeasedCursor(bridge, "LZ_RETENTION", "purger")
        assert await dead.claim("killed-gateway", 2.0) is not None
        lapses_at = trio.current_time() + 2.0
        stats = RetentionStats()
        async with trio.open_nursery() as nursery:
            await nursery.start(run_retention, log, RetentionSettings(max_revisions=1, interval_s=0.1, lease_s=0.6),
                                stats)
            with trio.fail_after(20):
                while not stats.passes:
                    await trio.sleep(0.05)  # the purger's own loop: its counter, in process
            assert trio.current_time() >= lapses_at - 0.1  # not before the dead holder's lease lapsed
            assert stats.lease_held and stats.purged_messages > 0
            assert await dead.claim("killed-gateway", 2.0) is None  # now the live purger's
            nursery.cancel_scope.cancel()
        assert not stats.lease_held
        assert await dead.claim("killed-gateway", 2.0) is not None  # released when it stopped


async def test_a_bus_error_in_the_retention_check_is_a_503_or_504(start_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An Exact LIST (and GET) at a past version reads the stream state and the compaction point at once
    (``check_retained``): the log failing either read is the client's 503 (unavailable) or 504 (no answer
    in time) with Retry-After, as before those reads were concurrent, never a 500."""
    gw = await start_server()
    async with client_for(gw) as c:
        with trio.fail_after(60):
            for i in range(20):
                r = await c.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"b{i}"}})
                assert r.status_code == 201, r.text
            old = r.json()["metadata"]["resourceVersion"]
            for i in range(20):
                r = await c.patch(f"{CM}/b{i}", content=b'{"data":{"v":"1"}}', headers=MERGE)
                assert r.status_code == 200, r.text
            exact = {"resourceVersion": old, "resourceVersionMatch": "Exact"}
            for method, error, code in [("compaction_point", NoResponders("no responders"), 503),
                                        ("stream_state", NoResponders("no responders"), 503),
                                        ("compaction_point", BusTimeout("no answer"), 504),
                                        ("stream_state", BusTimeout("no answer"), 504)]:
                async def fail(self: Log, *_a: object, error: Exception = error) -> object:
                    raise error

                with monkeypatch.context() as m:
                    m.setattr(Log, method, fail)
                    for path in (CM, f"{CM}/b3"):
                        r = await c.get(path, params=exact)
                        assert r.status_code == code and r.headers.get("Retry-After") == "1", (method, path, r.text)
                        assert r.json()["kind"] == "Status", r.text
            r = await c.get(CM, params=exact)
            assert r.status_code == 200 and len([i for i in r.json()["items"]
                                                 if i["metadata"]["name"].startswith("b")]) == 20, r.text
