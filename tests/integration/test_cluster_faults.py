"""Faults on a 3-node JetStream cluster (R3 stream) under a bounded write load through two gateways:
nothing acknowledged is lost or applied twice, clients see Status answers (never a hang or a 500),
and watches opened before the fault see every change in order with no gap and no repeat."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bus import StreamConfig, open_bridge, open_log
from tests.conftest import StartServer, client_for
from tests.integration.cluster_support import (
    CM,
    GatewayProcess,
    Watcher,
    WriteLoad,
    check_all,
    check_log,
    check_watch,
    read_log,
    settle,
    start_gateway_process,
)
from tests.natscluster import NatsCluster

# No rerun: the failures these tests had were the verifier's, each now handled where it arose (the
# cluster's formation bound in tests/natscluster.py, the log reader's elections and stalls in
# cluster_support.read_log); the product's own recovery is what the assertions check.
pytestmark = pytest.mark.integration

STREAM = "JETKUBE"
# An append retries "no responders" with the same Msg-Id for 10 s (bus Log): longer than the
# election after a kill -9 (4.5-7.5 s measured, SCALE.md), so most writes outlast it.
PER_REQUEST_S = 15.0


def _report(name: str, figures: dict[str, float]) -> None:
    print(f"\n{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()))


async def _two_gateways_with_watches(nats_cluster: NatsCluster, start_server: StartServer, nursery: trio.Nursery,
                                     **settings: object) -> tuple[list[object], list[Watcher]]:
    gws = [await start_server(nats_url=nats_cluster.url, stream_replicas=3, **settings) for _ in range(2)]
    clients = [client_for(g) for g in gws]
    start = await clients[0].post(CM, json={"metadata": {"name": "start"}})
    assert start.status_code == 201, start.text
    rv0 = int(start.json()["metadata"]["resourceVersion"])
    watchers = [Watcher(c, f"gw{i}", rv0) for i, c in enumerate(clients)]
    for w in watchers:
        await nursery.start(w.run)
    first = await clients[1].post(CM, json={"metadata": {"name": "first"}})
    for w in watchers:  # both watches are open and delivering before any fault
        await w.wait_rv(int(first.json()["metadata"]["resourceVersion"]))
    return clients, watchers


async def test_kill_9_stream_leader_under_load(nats_cluster: NatsCluster, start_server: StartServer) -> None:
    with trio.fail_after(80):
        async with trio.open_nursery() as nursery:
            clients, watchers = await _two_gateways_with_watches(nats_cluster, start_server, nursery)
            load = WriteLoad(PER_REQUEST_S)
            async with trio.open_nursery() as writers:
                await load.start_writers(writers, clients, "k", per_client=2, max_writes=1500, acks=40)
                leader = await nats_cluster.stream_leader(STREAM)
                await nats_cluster.kill(leader)
                t_kill = trio.current_time()
                new = await nats_cluster.stream_leader(STREAM, not_=leader.name)
                t_elected = trio.current_time() - t_kill
                acks_at_election = load.acks
                with trio.fail_after(20):  # writes succeed again once a new leader is elected
                    await load.wait_acks(acks_at_election + 40)
                load.stop.set()
            messages = await settle(load, watchers, nats_cluster.url)
            nursery.cancel_scope.cancel()
    for c in clients:
        await c.aclose()
    check_all(load, watchers, messages)
    figures = load.figures(t_kill) | {"new_leader_after_s": t_elected}
    _report(f"kill -9 stream leader {leader.name} (new {new.name})", figures)
    assert figures["slowest_request_s"] < 12  # the 10 s append deadline, then a Status
    assert figures["first_ack_after_fault_s"] < 12  # within the election time (4-9 s) and a retry
    assert figures["longest_ack_gap_s"] < 12


async def test_follower_stop_and_restart_no_gap(nats_cluster: NatsCluster, start_server: StartServer) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            clients, watchers = await _two_gateways_with_watches(nats_cluster, start_server, nursery)
            load = WriteLoad(PER_REQUEST_S)
            async with trio.open_nursery() as writers:
                for i, c in enumerate(clients):
                    writers.start_soon(load.writer, c, f"gw{i}", f"f{i}", 1500)
                with trio.fail_after(20):
                    await load.wait_acks(30)
                leader = await nats_cluster.stream_leader(STREAM)
                # The follower hosting most of the gateways' consumers (projections, watches read
                # through them): its stop is the case where a reader must notice and move.
                hosts = await nats_cluster.consumer_hosts(STREAM)
                follower = max((n for n in nats_cluster.nodes if n is not leader), key=lambda n: hosts[n.name])
                await nats_cluster.terminate(follower)
                t_stop = trio.current_time()
                with trio.fail_after(20):
                    await load.wait_acks(load.acks + 30)
                nats_cluster.start(follower)
                await nats_cluster.wait_ready()
                with trio.fail_after(20):
                    await load.wait_acks(load.acks + 30)
                load.stop.set()
            messages = await settle(load, watchers, nats_cluster.url)
            nursery.cancel_scope.cancel()
    for c in clients:
        await c.aclose()
    check_all(load, watchers, messages)
    figures = load.figures(t_stop)
    _report(f"stop and restart follower {follower.name} (consumers per node {dict(hosts)})", figures)
    assert figures["longest_ack_gap_s"] < 5


async def test_whole_cluster_restart_keeps_every_object_and_version(nats_cluster: NatsCluster,
                                                                    start_server: StartServer) -> None:
    with trio.fail_after(60):
        gw = await start_server(nats_url=nats_cluster.url, stream_replicas=3)
        async with client_for(gw) as api:
            for i in range(30):
                r = await api.post(CM, json={"metadata": {"name": f"keep-{i}"}, "data": {"i": str(i)}})
                assert r.status_code == 201, r.text
            await api.delete(f"{CM}/keep-0")
            before = (await api.get(CM)).json()
        before_log = await read_log(nats_cluster.url)
        for n in nats_cluster.nodes:
            await nats_cluster.terminate(n)
        t0 = trio.current_time()
        for n in nats_cluster.nodes:
            nats_cluster.start(n)
        await nats_cluster.wait_ready()
        # A gateway started with the cluster (before the stream has a leader again) waits for the
        # stream, then rebuilds its projection from the restarted cluster's log.
        gw2 = await start_server(nats_url=nats_cluster.url, stream_replicas=3)
        print(f"\nwhole-cluster restart: a new gateway ready after {trio.current_time() - t0:.3f}s")
        async with client_for(gw2) as api:
            after = (await api.get(CM)).json()
        after_log = await read_log(nats_cluster.url)
    assert after_log == before_log
    assert after["items"] == before["items"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]



REQUEST_TIMEOUT_S = 2.0
DEADLINE_MARGIN_S = 0.75  # the HTTP round trip and a loaded 2-core machine


@pytest.mark.parametrize("role", ["leader", "follower"])
async def test_sigstop_the_gateways_nats_node(nats_cluster: NatsCluster, start_server: StartServer,
                                             role: str) -> None:
    """The node a gateway is connected to (the stream's leader, or a follower) freezes for longer
    than the request deadline: the gateway answers 503/504 Status (no hang), turns unready, and
    recovers after SIGCONT, its projection and its watch catching up with what another gateway
    wrote meanwhile."""
    with trio.fail_after(80):
        async with open_bridge(nats_cluster.url) as bridge:
            await open_log(bridge, StreamConfig(replicas=3))
        leader = await nats_cluster.stream_leader(STREAM)
        frozen = leader if role == "leader" else next(n for n in nats_cluster.nodes if n is not leader)
        async with trio.open_nursery() as nursery:
            # g1 knows only the node that will freeze: it must recover when that node comes back.
            g1 = await start_server(nats_url=nats_cluster.node_url(frozen), stream_replicas=3,
                                    request_timeout_s=REQUEST_TIMEOUT_S)
            others = ",".join(nats_cluster.node_url(n) for n in nats_cluster.nodes if n is not frozen)
            g2 = await start_server(nats_url=others, stream_replicas=3)
            api1, api2 = client_for(g1), client_for(g2)
            start = await api1.post(CM, json={"metadata": {"name": "before"}})
            assert start.status_code == 201, start.text
            watcher = Watcher(api1, "g1", int(start.json()["metadata"]["resourceVersion"]))
            await nursery.start(watcher.run)
            nats_cluster.sigstop(frozen)
            t_stop = trio.current_time()
            with trio.fail_after(5):
                while (await api1.get("/readyz")).status_code != 503:
                    pass  # each probe waits up to 1 s for the log's answer
            t_unready = trio.current_time() - t_stop
            answers = []
            for verb, call in (("create", api1.post(CM, json={"metadata": {"name": "during"}})),
                               ("list", api1.get(CM)), ("get", api1.get(f"{CM}/before"))):
                t0 = trio.current_time()
                with trio.fail_after(8):  # a hang fails here; the deadline is asserted below
                    r = await call
                took = trio.current_time() - t0
                answers.append((verb, r.status_code, round(took, 3)))
                assert r.status_code in (503, 504), (verb, r.text)
                assert r.json()["kind"] == "Status" and r.headers.get("Retry-After"), r.text
                # Reads too: the consistent read's head query is bounded by the request deadline.
                assert took < REQUEST_TIMEOUT_S + DEADLINE_MARGIN_S, answers
            written = []
            with trio.fail_after(20):  # the others elect a new stream leader if the frozen node led it
                for i in range(10):
                    r = await api2.post(CM, json={"metadata": {"name": f"meanwhile-{i}"}})
                    assert r.status_code == 201, r.text
                    written.append(r.json())
            nats_cluster.cont(frozen)
            t_cont = trio.current_time()
            with trio.fail_after(30):
                while (await api1.get("/readyz")).status_code != 200:
                    await trio.sleep(0.05)  # polling the gateway's readiness: bounded above
                t_ready = trio.current_time() - t_cont
                await watcher.wait_rv(int(written[-1]["metadata"]["resourceVersion"]))
                items = {o["metadata"]["name"]: o for o in (await api1.get(CM)).json()["items"]}
                for o in written:
                    assert items[o["metadata"]["name"]] == o
                # A write through the node just thawed: its first may still time out (once in a CI run
                # under load: 504 at the 2 s request deadline while the node caught up); a client
                # retries a Status with Retry-After, and a retried create may find its first try (409).
                while True:
                    r = await api1.post(CM, json={"metadata": {"name": "after"}})
                    if r.status_code in (201, 409):
                        break
                    assert r.status_code in (503, 504) and r.headers.get("Retry-After"), r.text
                assert (await api1.get(f"{CM}/after")).status_code == 200
            messages = await read_log(nats_cluster.url)
            nursery.cancel_scope.cancel()
    for c in (api1, api2):
        await c.aclose()
    check_watch(watcher, messages)
    print(f"\nSIGSTOP {frozen.name} (stream {role}): answers {answers}, readyz 503 after "
          f"{t_unready:.3f}s; after SIGCONT ready in {t_ready:.3f}s")


async def test_kill_9_one_gateway_process_under_load(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    """Two ``jetkube serve`` processes on the R3 cluster; one is killed -9 under write load through
    both: clients of the dead one see connection errors, the other's see none, and every
    acknowledged write is in the log at its resourceVersion, none twice."""
    gws: list[GatewayProcess] = []
    try:
        with trio.fail_after(60):
            for i in range(2):
                gws.append(await start_gateway_process(tmp_path / f"gw{i}", "--nats-url", nats_cluster.url,
                                                       "--stream-replicas", "3"))
            clients = [g.client() for g in gws]
            load = WriteLoad(PER_REQUEST_S)
            async with trio.open_nursery() as writers:
                await load.start_writers(writers, clients, "p", per_client=2, max_writes=600, acks=40)
                gws[0].proc.kill()
                t_kill = trio.current_time()
                await gws[0].proc.wait()
                with trio.fail_after(20):
                    await load.wait_acks(load.acks + 40)
                load.stop.set()
            messages = await read_log(nats_cluster.url)
            for c in clients:
                await c.aclose()
    finally:
        with trio.CancelScope(shield=True):
            for g in gws:
                await g.stop()
    load.check_answers()
    check_log(messages, load)
    survivor = [o for o in load.outcomes if o.gateway == "gw1"]
    assert all(o.rv or o.status == 404 for o in survivor), [o for o in survivor if not o.rv]
    assert any(o.rv and o.started > t_kill for o in survivor)
    dead = [o for o in load.outcomes if o.gateway == "gw0" and o.started > t_kill]
    assert all(o.status == 0 for o in dead)  # connection refused, never a wrong answer
    _report("kill -9 one gateway process", load.figures(t_kill))
    assert gws[1].proc.returncode == 0  # the survivor shut down cleanly on SIGTERM
