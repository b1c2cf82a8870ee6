"""The cluster phase (issue 13's figures): a 3-node NATS JetStream cluster on loopback, 1-3 gateways
behind the dev cluster's TCP load balancer (run inside the orchestrator), on an R1 and an R3 stream.

B11X  create and get throughput and write p99 through the LB for 1, 2 and 3 gateways, R1 then R3
      (every stream is deleted between the two); R3 rows carry R1's figure as their ceiling.
F1    on R3 with 3 gateways: a paced create load at half the measured 3-gateway R3 create rate;
      the stream leader's nats-server is killed with SIGKILL; the longest gap between acks, the
      failed requests, and acknowledged loss (every acked resourceVersion read back; must be 0).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import trio

from ._procs import Child, Gateway, spawn, start_gateway, stop_gateway

if TYPE_CHECKING:
    from ._runner import Bench

NODES = 3
GET_NAMES = 300


class Cluster:
    """3 nats-servers (children of the bench), gateways on one stream, LB listeners over them."""

    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.nodes: list[Child] = []
        self.url = ""
        self.gws: list[Gateway] = []
        self.pki_from: Any = None

    async def start_nats(self) -> None:
        from bus import nats_server_binary
        from gateway._devcluster import _http_get, _nats_configs

        root = self.b.run_dir / f"cluster-{id(self):x}"  # each cluster its own stores: F1 starts from no stream
        confs, ports, monitors = _nats_configs(root, "benchpass", NODES)
        self.url = ",".join(f"nats://jetkube:benchpass@127.0.0.1:{p}" for p in ports)
        for conf in confs:
            self.nodes.append(spawn(self.b.children, [nats_server_binary(), "-c", str(conf)],
                                    conf.parent / "nats-server.log"))
        with trio.fail_after(60):
            while True:  # polling other processes' monitoring endpoints, bounded above
                ok = 0
                for m in monitors:
                    status, body = await _http_get(m, "/jsz")
                    meta = (json.loads(body).get("meta_cluster") or {}) if status == 200 else {}
                    ok += bool(meta.get("leader")) and meta.get("cluster_size") == NODES
                if ok == NODES:
                    return
                await trio.sleep(0.2)

    async def js_api(self, api: str) -> dict[str, Any]:
        from bus import open_bridge

        with trio.fail_after(15):
            async with open_bridge(self.url) as bridge:
                reply = await bridge.request(f"$JS.API.{api}", b"{}", timeout_s=10)
                return dict(json.loads(reply.data))

    async def delete_streams(self) -> None:
        """Every stream of the cluster (the log, the audit stream, KV buckets): the next gateways create them
        with their own --stream-replicas."""
        names = (await self.js_api("STREAM.NAMES")).get("streams") or []
        for name in names:
            await self.js_api(f"STREAM.DELETE.{name}")

    async def start_gateways(self, replicas: int, count: int) -> None:
        for i in range(count):
            gw = await start_gateway(self.b.children, f"C{i + 1}", self.b.run_dir / f"cgw-r{replicas}-{i}", self.url,
                                     pki_from=self.pki_from,
                                     extra_args=("--stream-replicas", str(replicas), *self.b.serve_args))
            self.pki_from = self.pki_from or gw.data_dir / "pki"
            self.gws.append(gw)

    async def stop_gateways(self) -> None:
        for gw in self.gws:
            await stop_gateway(self.b.children, gw)
        self.gws = []

    async def leader_index(self) -> int:
        info = await self.js_api("STREAM.INFO.JETKUBE")
        return int(info["cluster"]["leader"].lstrip("n")) - 1

    def close(self) -> None:
        for n in self.nodes:
            self.b.children.stop(n.pid)


async def _lb(nursery: trio.Nursery, gws: list[Gateway]) -> int:
    """The dev cluster's round-robin TCP proxy over these gateways' (plain HTTP) ports."""
    from gateway._devcluster import Backend, LoadBalancer

    lb = LoadBalancer([Backend(g.port, g.port) for g in gws], (("Authorization", f"Bearer {gws[0].token}"),))
    listeners = await nursery.start(lb.serve)
    return int(listeners[0].socket.getsockname()[1])


async def _seed(b: Bench, gw: Gateway, ns: str) -> None:
    code, body = await b.api(gw, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    if code not in (201, 409):
        raise RuntimeError(f"cannot create namespace {ns}: {code} {body}")
    for i in range(GET_NAMES):
        code, body = await b.api(gw, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                                 {"metadata": {"name": f"x-{i}"}, "data": {"k": "v" * 512}})
        if code not in (201, 409):
            raise RuntimeError(f"seeding {ns}/x-{i}: {code} {body}")


async def b11x(b: Bench) -> list[dict[str, Any]]:
    """B11 extended: 1, 2, 3 gateways through the LB on R1 and R3."""
    from ._runner import _ms

    c = Cluster(b)
    rows: list[dict[str, Any]] = []
    r1: dict[tuple[int, str], float] = {}
    try:
        await c.start_nats()
        for replicas in (1, 3):
            await c.start_gateways(replicas, 3)
            try:
                await _seed(b, c.gws[0], "bx")
                async with trio.open_nursery() as nursery:
                    for n in (1, 2, 3):
                        port = await _lb(nursery, c.gws[:n])
                        for op in ("create", "get"):
                            r = await b.measured(c.gws[:n], lambda op=op, port=port, n=n, replicas=replicas: b.load(  # type: ignore[misc]
                                ports=[port], token=c.gws[0].token, op=op, ns="bx", prefix=f"r{replicas}n{n}",
                                names=("x-", GET_NAMES), duration_s=b.p.b11_s,
                                name=f"B11X-R{replicas}-{n}-{op}"),
                                extra_pids={f"nats{i + 1}": k.pid for i, k in enumerate(c.nodes)})
                            if replicas == 1:
                                r1[(n, op)] = r["rps"]
                            base = r1.get((n, op)) if replicas == 3 else r1.get((1, op))
                            ratio = r["rps"] / base if base else None
                            cpu = r["cpu"]
                            rows.append({
                                "id": f"B11X/R{replicas}/{n}gw/{op}", "value": r["rps"], "unit": "/s",
                                "ceiling": base, "ratio": ratio,
                                "ceiling_label": f"R1 {n}gw" if replicas == 3 else "R1 1gw",
                                "target": "(info) R3 cost vs R1" if replicas == 3 else "(info) scaling vs 1 gateway",
                                "met": None,
                                "note": f"p99 {_ms(r['lat_ms']['p99_ms'])}; machine busy {cpu.get('machine_busy')}"
                                        + (f", errors {r['errors']}" if r.get("errors") else ""),
                                "details": r})
                    nursery.cancel_scope.cancel()
            finally:
                await c.stop_gateways()
            if replicas == 1:
                await c.delete_streams()
        creates = [row["value"] for row in rows if row["id"].startswith("B11X/R3/") and row["id"].endswith("/create")]
        b.f1_base_rps = max(creates) if creates else None
    finally:
        c.close()
    return rows


async def f1(b: Bench) -> list[dict[str, Any]]:
    """F1: SIGKILL the stream leader under a paced create load at half the measured rate."""
    c = Cluster(b)
    base = getattr(b, "f1_base_rps", None) or 200.0
    rate = max(10.0, base / 2)
    duration = 10.0 if b.quick else 20.0
    kill_at = duration / 3
    try:
        await c.start_nats()
        await c.start_gateways(3, 3)
        ns = "f1"
        code, body = await b.api(c.gws[0], "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        if code not in (201, 409):
            raise RuntimeError(f"cannot create namespace {ns}: {code} {body}")
        async with trio.open_nursery() as nursery:
            port = await _lb(nursery, c.gws)
            spec = {"kind": "http", "targets": [["127.0.0.1", port]], "token": c.gws[0].token, "connections": 32,
                    "duration_s": duration, "max_requests": int(rate * duration) + 1, "op": "create", "ns": ns,
                    "prefix": "f1", "body_bytes": b.p.body_bytes, "rate": rate, "record_acks": True}
            result: dict[str, Any] = {}

            async def run_load() -> None:
                result.update(await b.worker("bench._loadgen", None, spec, "F1-load", duration + 90))

            async def kill_leader() -> None:
                await trio.sleep(kill_at)  # the moment of the fault, inside the bounded load
                idx = await c.leader_index()
                result["killed"] = f"n{idx + 1}"
                result["kill_t"] = time.monotonic()
                os.kill(c.nodes[idx].pid, signal.SIGKILL)

            async with trio.open_nursery() as inner:
                inner.start_soon(run_load)
                inner.start_soon(kill_leader)
            nursery.cancel_scope.cancel()
        # The longest write outage: the longest gap between two acks (the load runs before and after the kill).
        # If no write is acked after the kill, the outage lasts until the load's end.
        kill_t = result.get("kill_t", 0.0)
        acks = sorted(t for _, t in result.get("acks", []))
        gaps = [(y - x, y) for x, y in itertools.pairwise([*acks, kill_t + duration - kill_at])]
        gap, gap_end = max(gaps, default=(duration, None))
        # When writes were acknowledged again, from the kill: the end of the longest gap.
        resumed = gap_end - kill_t if gap_end is not None and kill_t else None
        failed = result["requests"] - result["ok"] + sum(result.get("errors", {}).values())
        # Acknowledged loss: every acked resourceVersion is an object of the namespace with that version.
        with trio.fail_after(60):
            code, listed = await b.api(c.gws[1], "GET", f"/api/v1/namespaces/{ns}/configmaps")
        if code != 200:
            raise RuntimeError(f"list after the fault: {code} {str(listed)[:300]}")
        present = {int(o["metadata"]["resourceVersion"]) for o in listed["items"]}
        acked = [rv for rv, _ in result.get("acks", [])]
        lost = sum(1 for rv in acked if rv not in present)
        display = f"{gap:.2f}s outage, {failed} failed, {len(acked)} acked, {lost} lost"
        return [{"id": "F1", "value": gap, "unit": "s", "display": display, "target": "acked loss 0",
                 "met": lost == 0,
                 "note": f"killed stream leader {result.get('killed')} at {kill_at:.0f}s of {duration:.0f}s"
                         + (f", writes acked again {resumed:.2f}s after" if resumed is not None else "") + "; paced "
                         f"{rate:.0f}/s (half of {base:.0f}/s), 32 connections through the LB to 3 gateways; codes "
                         f"{result.get('codes')}, errors {result.get('errors')}",
                 "details": {"rate": rate, "gap_s": gap, "failed": failed, "acked": len(acked), "lost": lost,
                             "codes": result.get("codes"), "errors": result.get("errors"),
                             "killed": result.get("killed"), "resumed_after_kill_s": resumed}}]
    finally:
        await c.stop_gateways()
        c.close()


def header(sid: str, b: Bench) -> str:
    load = "wrk -t1" if b.wrk else "python loadgen"
    if sid == "B11X":
        return (f"3 nats-servers (cluster), 1/2/3 gateways behind the dev cluster's TCP LB (in the orchestrator), "
                f"{b.p.conns} connections ({load}), {b.p.b11_s:.0f}s each, create and get of {GET_NAMES} names; "
                f"R1 stream then R3; on {os.cpu_count()} cores everything shares the machine")
    return ("3 nats-servers, R3 stream, 3 gateways behind the LB; paced creates at half B11X's best R3 create rate; "
            "SIGKILL of the stream leader's nats-server; acked loss checked by reading every acked version back")
