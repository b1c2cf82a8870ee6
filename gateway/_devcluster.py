"""``jetkube dev-cluster``: the scale-out topology as local loopback processes, for people without a
container runtime: a 3-node NATS JetStream cluster (nats-server from the wheel, one store each), N
``jetkube serve`` gateways on an R3 stream sharing one CA, serving certificate, token file and
service-account key, and a small TCP load balancer in front (:class:`LoadBalancer`: round robin over
the gateways whose ``/readyz`` answers 200, a gateway that refuses a connection out of rotation at
once; TLS passes through, so every gateway serves the same kubeconfig).

Everything runs in one nursery. A gateway that exits (``kill -9`` one to see a fault) leaves the load
balancer's rotation and the others serve on; the last gateway's exit, or a nats-server's, ends the
whole cluster (this is a development tool, not a supervisor: nothing is restarted). Cancellation
terminates every child (SIGTERM, then SIGKILL after 5 s); every child is bound to this process
(``PR_SET_PDEATHSIG``), so killing it (even with SIGKILL) sends them SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h11
import trio

from bus import cluster_node_config, free_port, nats_server_binary, spawn_bound

from ._pki import ensure_pki, ensure_service_account_key, write_kubeconfig

log = logging.getLogger("jetkube.devcluster")


@dataclass(frozen=True)
class DevCluster:
    """What ``run_dev_cluster`` reports once every part is ready."""

    https_url: str  # the load balancer
    kubeconfig: Path
    nats_url: str
    gateways: tuple[str, ...]  # each gateway's HTTPS URL


def _nats_configs(root: Path, password: str, nodes: int) -> tuple[list[Path], list[int], list[int]]:
    ports = [free_port() for _ in range(nodes)]
    routes = [free_port() for _ in range(nodes)]
    monitors = [free_port() for _ in range(nodes)]
    confs = []
    for i in range(nodes):
        store = root / "nats" / f"n{i + 1}"
        store.mkdir(parents=True, exist_ok=True)
        conf = store / "nats.conf"
        conf.write_text(cluster_node_config(f"n{i + 1}", port=ports[i], monitor_port=monitors[i],
                                            route_port=routes[i], route_ports=routes, user="jetkube",
                                            password=password, store=store))
        conf.chmod(0o600)
        confs.append(conf)
    return confs, ports, monitors


async def _poll(probe: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll another process's state (there is no event to wait on), bounded."""
    with trio.move_on_after(timeout_s):
        while not await probe():
            await trio.sleep(0.1)
        return
    raise RuntimeError(f"dev-cluster: {what} not ready within {timeout_s}s")


async def run_dev_cluster(root: Path, *, port: int = 0, gateways: int = 2, nodes: int = 3,
                          task_status: trio.TaskStatus[DevCluster] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the cluster until cancelled; report :class:`DevCluster` once the load balancer serves."""
    root.mkdir(parents=True, exist_ok=True)
    pki = await trio.to_thread.run_sync(ensure_pki, root)
    sa_key = await trio.to_thread.run_sync(ensure_service_account_key, root)
    password = pki.admin_token[:24]  # a dev secret: the NATS password is not shown to clients
    confs, nats_ports, monitors = _nats_configs(root, password, nodes)
    nats_url = ",".join(f"nats://jetkube:{password}@127.0.0.1:{p}" for p in nats_ports)
    async with trio.open_nursery() as nursery:
        for conf in confs:
            nursery.start_soon(_child, [nats_server_binary(), "-c", str(conf)], conf.parent / "nats-server.log")

        async def nats_ready() -> bool:
            for m in monitors:
                status, body = await _http_get(m, "/jsz")
                try:
                    meta = json.loads(body).get("meta_cluster") or {} if status == 200 else {}
                except ValueError:
                    return False
                if not meta.get("leader") or meta.get("cluster_size") != nodes:
                    return False
            return True

        await _poll(nats_ready, 60, "the NATS cluster")
        backends: list[tuple[int, int]] = []  # (https port, http port) of each gateway
        exited = 0

        async def gateway_child(argv: list[str], log_path: Path) -> None:
            """A gateway that exits leaves the load balancer's rotation; the last one ends the cluster."""
            nonlocal exited
            try:
                await _child(argv, log_path)
            except RuntimeError as e:
                exited += 1
                if exited == gateways:
                    raise RuntimeError(f"dev-cluster: every gateway exited; the last: {e}") from None
                log.warning("%s; the load balancer sends new connections to the others", e)

        for i in range(gateways):
            data = root / f"gw{i}"
            if not (data / "pki").exists():
                shutil.copytree(pki.ca_cert.parent, data / "pki")  # one CA, certificate and tokens
            https_port, http_port = free_port(), free_port()
            argv = [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data), "--port", str(https_port),
                    "--insecure-port", str(http_port), "--nats-url", nats_url, "--stream-replicas",
                    str(min(3, nodes)), "--service-account-key-file", str(sa_key),
                    "--workers", "1"]  # one process per replica: the topology is the replicas shown
            nursery.start_soon(gateway_child, argv, root / f"gw{i}.log")
            backends.append((https_port, http_port))
        lb = LoadBalancer([Backend(https, http) for https, http in backends],
                          (("Authorization", f"Bearer {pki.admin_token}"),))

        async def all_ready() -> bool:
            await lb.check_health()
            return len(lb.healthy) == len(backends)

        await _poll(all_ready, 90, "the gateways")
        listeners = await nursery.start(partial(lb.serve, port))
        lb_port = listeners[0].socket.getsockname()[1]
        https_url = f"https://127.0.0.1:{lb_port}"
        kubeconfig = root / "kubeconfig"
        write_kubeconfig(kubeconfig, server=https_url, ca_cert=pki.ca_cert, token=pki.admin_token,
                         client_cert=pki.admin_cert, client_key=pki.admin_key)
        task_status.started(DevCluster(https_url, kubeconfig, nats_url,
                                       tuple(f"https://127.0.0.1:{p}" for p, _ in backends)))


_MAX_BODY = 4 << 20  # health and /jsz answers are a few KiB


async def _http_get(port: int, path: str, headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on loopback with h11 (hypercorn's own HTTP/1 library), bounded to 2 s and
    4 MiB of body: (status, body), or (0, b"") on any failure. Enough for health checks."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=path,
                          headers=[("Host", "127.0.0.1"), ("Connection", "close"), *headers])
    status, body = 0, bytearray()
    with trio.move_on_after(2):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > _MAX_BODY:
                            return 0, b""
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        return status, bytes(body)
        except (OSError, h11.ProtocolError):
            return 0, b""
    return 0, b""


async def _child(argv: list[str], log_path: Path) -> None:
    """Run one child process with its output in ``log_path``; its exit ends the dev cluster.
    Cancellation terminates it (SIGTERM, SIGKILL after 5 s). The child is bound to this process
    (``bus.spawn_bound``: ``PR_SET_PDEATHSIG``, as ``jetkube serve`` binds its nats-server and
    workers): a dev cluster killed -9 leaves no nats-server or gateway behind holding its ports."""
    with log_path.open("ab") as out:
        child = spawn_bound(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        code = await child.wait()
    finally:
        await child.aclose()
    raise RuntimeError(f"dev-cluster: {argv[0]} exited with code {code}; see {log_path}")


@dataclass(frozen=True)
class Backend:
    port: int  # where client connections go (TLS passes through)
    health_port: int  # where ``/readyz`` is asked, in plain HTTP


class LoadBalancer:
    """A small TCP load balancer: each client connection is passed through (TLS included) to the next
    backend in round robin that is in rotation. A backend is in rotation while its ``/readyz``
    answers 200 (asked every ``interval_s``, all backends at once); one that refuses a connection
    leaves the rotation at once and the client is handed to the next (so a backend killed between
    two health checks costs only the connections it held), until a health check finds it ready.
    ``opened`` and ``active`` count connections per backend port (ever, and open now)."""

    def __init__(self, backends: Sequence[Backend], health_headers: tuple[tuple[str, str], ...] = (),
                 interval_s: float = 1.0) -> None:
        self.backends = list(backends)
        self.health_headers = health_headers
        self.interval_s = interval_s
        self.healthy: set[int] = set()
        self.opened: Counter[int] = Counter()
        self.active: Counter[int] = Counter()
        self._order = itertools.cycle([b.port for b in self.backends])

    async def check_health(self) -> None:
        async def one(b: Backend) -> None:
            if (await _http_get(b.health_port, "/readyz", self.health_headers))[0] == 200:
                self.healthy.add(b.port)
            else:
                self.healthy.discard(b.port)

        async with trio.open_nursery() as n:  # a frozen backend does not delay the others' checks
            for b in self.backends:
                n.start_soon(one, b)

    async def serve(self, port: int = 0, host: str = "127.0.0.1", *,
                    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED) -> None:
        """Check health, then listen and check every ``interval_s`` until cancelled; reports the listeners."""
        await self.check_health()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._health_loop)
            task_status.started(await nursery.start(partial(trio.serve_tcp, self._proxy, port, host=host)))

    async def _health_loop(self) -> None:
        while True:
            await trio.sleep(self.interval_s)  # the health-check interval
            await self.check_health()

    def _pick(self, tried: set[int]) -> int | None:
        for _ in range(len(self.backends)):
            p = next(self._order)
            if p in self.healthy and p not in tried:
                return p
        return None

    async def _proxy(self, client: trio.SocketStream) -> None:
        async with client:
            tried: set[int] = set()
            while (backend := self._pick(tried)) is not None:  # each backend tried once at most
                tried.add(backend)
                try:
                    upstream = await trio.open_tcp_stream("127.0.0.1", backend)
                    break
                except OSError:
                    self.healthy.discard(backend)  # out of rotation until a health check passes
            else:
                return  # nothing healthy: close, the client retries
            self.opened[backend] += 1
            self.active[backend] += 1
            try:
                async with upstream, trio.open_nursery() as n:
                    n.start_soon(self._pump, client, upstream, backend, False, n.cancel_scope)
                    n.start_soon(self._pump, upstream, client, backend, True, n.cancel_scope)
            finally:
                self.active[backend] -= 1

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, backend: int, to_client: bool,
                    scope: trio.CancelScope) -> None:
        try:
            while data := await src.receive_some(65536):
                await self.deliver(dst, data, backend=backend, to_client=to_client)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            scope.cancel()  # one side closed: close the pair

    async def deliver(self, dst: trio.SocketStream, data: bytes, *, backend: int, to_client: bool) -> None:
        """Send what was read from one side to the other (a fault test overrides this to hold data)."""
        await dst.send_all(data)
