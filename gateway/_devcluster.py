"""``jetkube dev-cluster``: the scale-out topology as local loopback processes, for people without a
container runtime: a 3-node NATS JetStream cluster (nats-server from the wheel, one store each), N
``jetkube serve`` gateways on an R3 stream sharing one CA, serving certificate, token file and
service-account key, and a small TCP load balancer in front (round robin over the gateways whose
``/readyz`` answers 200; TLS passes through, so every gateway serves the same kubeconfig).

Everything runs in one nursery: a child that exits ends the whole cluster (this is a development
tool, not a supervisor); cancellation terminates every child (SIGTERM, then SIGKILL after 5 s).
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h11
import trio

from bus import cluster_node_config, free_port, nats_server_binary

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
        for i in range(gateways):
            data = root / f"gw{i}"
            if not (data / "pki").exists():
                shutil.copytree(pki.ca_cert.parent, data / "pki")  # one CA, certificate and tokens
            https_port, http_port = free_port(), free_port()
            argv = [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data), "--port", str(https_port),
                    "--insecure-port", str(http_port), "--nats-url", nats_url, "--stream-replicas",
                    str(min(3, nodes)), "--service-account-key-file", str(sa_key)]
            nursery.start_soon(_child, argv, root / f"gw{i}.log")
            backends.append((https_port, http_port))
        headers = (("Authorization", f"Bearer {pki.admin_token}"),)
        healthy: set[int] = set()

        async def check_health() -> None:
            for https_port, http_port in backends:
                if (await _http_get(http_port, "/readyz", headers))[0] == 200:
                    healthy.add(https_port)
                else:
                    healthy.discard(https_port)

        async def all_ready() -> bool:
            await check_health()
            return len(healthy) == len(backends)

        await _poll(all_ready, 90, "the gateways")
        nursery.start_soon(_health_loop, check_health)
        listeners = await nursery.start(partial(trio.serve_tcp, partial(_proxy, _round_robin(backends, healthy)),
                                                port, host="127.0.0.1"))
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
    Cancellation terminates it (SIGTERM, SIGKILL after 5 s: trio's default)."""
    with log_path.open("ab") as out:
        proc = await trio.run_process(argv, check=False, stdout=out, stderr=subprocess.STDOUT)
    raise RuntimeError(f"dev-cluster: {argv[0]} exited with code {proc.returncode}; see {log_path}")


async def _health_loop(check: Callable[[], Awaitable[None]]) -> None:
    while True:
        await check()
        await trio.sleep(1.0)  # the health-check interval


def _round_robin(backends: list[tuple[int, int]], healthy: set[int]) -> Callable[[], int | None]:
    order = itertools.cycle([p for p, _ in backends])

    def pick() -> int | None:
        for _ in range(len(backends)):
            p = next(order)
            if p in healthy:
                return p
        return None

    return pick


async def _proxy(pick: Callable[[], int | None], client: trio.SocketStream) -> None:
    """One client connection, passed through (TLS included) to the next healthy gateway."""
    async with client:
        backend = pick()
        if backend is None:
            return  # nothing healthy: close, the client retries
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", backend)
        except OSError:
            return
        async with upstream, trio.open_nursery() as n:
            n.start_soon(_pump, client, upstream, n.cancel_scope)
            n.start_soon(_pump, upstream, client, n.cancel_scope)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        scope.cancel()  # one side closed: close the pair
