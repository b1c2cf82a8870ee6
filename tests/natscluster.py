"""A 3-node NATS JetStream cluster on loopback for tests: real nats-servers from the wheel.

Each node has its own config (client, route and monitoring ports, chosen free), its own JetStream
store and the same generated user/password; the routes list every node (SCALE.md section 1). The
test owns the processes: it can ``kill -9``, stop, SIGSTOP/SIGCONT and restart each node on the
same store and ports; every node still running is stopped when the block exits.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bus import cluster_node_config, free_port, nats_server_binary

USER = "jetkube"


@dataclass
class Node:
    name: str
    port: int
    route_port: int
    monitor_port: int
    store: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = field(default=False)  # SIGSTOPped

    @property
    def monitor(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"


class NatsCluster:
    """Three nodes n1..n3; ``url`` lists all of them (comma-separated, with credentials)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.password = secrets.token_urlsafe(16)
        self.nodes: list[Node] = []
        for i in range(1, size + 1):
            store = root / f"n{i}"
            store.mkdir(parents=True, exist_ok=True)
            self.nodes.append(Node(f"n{i}", free_port(), free_port(), free_port(), store, store / "nats.conf"))
        route_ports = [n.route_port for n in self.nodes]
        for n in self.nodes:
            n.conf.write_text(cluster_node_config(
                n.name, port=n.port, monitor_port=n.monitor_port, route_port=n.route_port, route_ports=route_ports,
                user=USER, password=self.password, store=n.store, cluster="jk",
                jetstream_extra="  max_memory_store: 256MB\n  max_file_store: 1GB\n"))
        self._http = httpx.AsyncClient(timeout=2)

    def node_url(self, node: Node) -> str:
        return f"nats://{USER}:{self.password}@127.0.0.1:{node.port}"

    @property
    def url(self) -> str:
        return ",".join(self.node_url(n) for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # ---- processes ------------------------------------------------------------------------------

    def start(self, node: Node) -> None:
        assert node.proc is None or node.proc.poll() is not None, f"{node.name} is running"
        with open(node.store / "nats-server.log", "ab") as out:
            node.proc = subprocess.Popen([nats_server_binary(), "-c", str(node.conf)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        node.stopped = False

    async def kill(self, node: Node) -> None:
        """``kill -9`` and reap."""
        assert node.proc is not None
        node.proc.kill()
        await self._reap(node)

    async def terminate(self, node: Node) -> None:
        """SIGTERM (a clean shutdown) and reap; SIGKILL after 10 s."""
        assert node.proc is not None
        if node.stopped:
            self.cont(node)
        node.proc.terminate()
        with trio.move_on_after(10):
            await self._reap(node)
            return
        await self.kill(node)

    async def _reap(self, node: Node) -> None:
        assert node.proc is not None
        with trio.fail_after(10):
            while node.proc.poll() is None:
                await trio.sleep(0.01)  # polling another process's exit: bounded above

    def sigstop(self, node: Node) -> None:
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGSTOP)
        node.stopped = True

    def cont(self, node: Node) -> None:
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGCONT)
        node.stopped = False

    async def stop_all(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                if n.stopped:
                    self.cont(n)
                n.proc.kill()
        for n in self.nodes:
            if n.proc is not None:
                await self._reap(n)

    async def aclose(self) -> None:
        await self.stop_all()
        await self._http.aclose()

    # ---- state, from the monitoring ports -------------------------------------------------------

    async def _get(self, node: Node, path: str) -> dict[str, Any] | None:
        try:
            r = await self._http.get(node.monitor + path)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None and not n.stopped]

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Until every running node reports JetStream with a meta leader of a cluster of the full
        size (``/healthz?js-enabled-only=true``, ``/jsz``).

        The bound allows several failed meta-leader elections: nats-server's Raft waits a random
        4-9 s before campaigning again after a failed one (a split vote is likely when three nodes
        start together). Measured at a load average of 7-10 on 2 cores: 61 of 70 formations in
        0.3-1.2 s, 9 in 4.6-9.4 s (one failed round); 30 s allowed barely three rounds."""
        waiting: dict[str, str] = {}
        try:
            with trio.fail_after(timeout_s):
                while True:
                    waiting = {n.name: f"exited with {n.proc.returncode}" for n in self.nodes
                               if n.proc is not None and n.proc.poll() is not None}
                    for n in self.running():
                        h = await self._get(n, "/healthz?js-enabled-only=true")
                        jsz = await self._get(n, "/jsz")
                        meta = (jsz or {}).get("meta_cluster") or {}
                        if h is None or not meta.get("leader") or meta.get("cluster_size") != len(self.nodes):
                            waiting[n.name] = f"healthz {'ok' if h is not None else 'down'}, meta {meta}"
                    if not waiting:
                        return
                    await trio.sleep(0.1)  # polling other processes' state: bounded above
        except trio.TooSlowError:
            # Say which node held the cluster back, with the end of its log: a flake is diagnosable.
            tails = {n: self.log_tail(self.node(n)) for n in waiting}
            raise AssertionError(f"cluster not ready after {timeout_s}s: {waiting}; logs: {tails}") from None

    def log_tail(self, node: Node, lines: int = 8) -> str:
        try:
            return "\n".join((node.store / "nats-server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return repr(e)

    async def stream_info(self, stream: str) -> dict[str, Any] | None:
        """The stream's detail (config, state, cluster) as a running node's ``/jsz`` reports it."""
        for n in self.running():
            jsz = await self._get(n, "/jsz?accounts=true&streams=true&config=true")
            for acc in (jsz or {}).get("account_details") or []:
                for st in acc.get("stream_detail") or []:
                    if st.get("name") == stream:
                        return dict(st)
        return None

    async def consumer_hosts(self, stream: str) -> Counter[str]:
        """How many of the stream's consumers each node leads (``/jsz``)."""
        hosts: Counter[str] = Counter()
        for n in self.running():
            jsz = await self._get(n, "/jsz?accounts=true&streams=true&consumers=true")
            for acc in (jsz or {}).get("account_details") or []:
                for st in acc.get("stream_detail") or []:
                    if st.get("name") == stream:
                        for c in st.get("consumer_detail") or []:
                            leader = (c.get("cluster") or {}).get("leader")
                            if leader:
                                hosts[leader] += 1
            if hosts:
                return hosts
        return hosts

    async def stream_leader(self, stream: str, timeout_s: float = 20, *, not_: str | None = None) -> Node:
        """The node leading the stream (waiting, bounded, for one other than ``not_``)."""
        with trio.fail_after(timeout_s):
            while True:
                st = await self.stream_info(stream)
                leader = ((st or {}).get("cluster") or {}).get("leader")
                if leader and leader != not_:
                    return self.node(leader)
                await trio.sleep(0.05)  # polling the cluster's election: bounded above

    async def client_nodes(self) -> list[Node]:
        """The running nodes that hold at least one client connection (``/connz``)."""
        out = []
        for n in self.running():
            c = await self._get(n, "/connz")
            if c and c.get("num_connections", 0) > 0:
                out.append(n)
        return out


@asynccontextmanager
async def run_nats_cluster(root: Path, size: int = 3) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(root, size)
    try:
        for n in cluster.nodes:
            cluster.start(n)
        await cluster.wait_ready()
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            await cluster.aclose()
