"""`jetkube serve --workers 2` as a real process tree: both workers serve the one port (a burst of
connections is spread over both), a write on
one is read through the other, a watch on one sees writes made through the other, a worker killed
with -9 is restarted while the other keeps serving, SIGTERM ends everything (nats-server last),
a killed parent takes its workers along, and a worker failing at start ends the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import poll_until, spawn_serve
from tests.integration.test_serve_process import Serve, _alive, _children, _cmdline

pytestmark = pytest.mark.integration

HEADER = "x-jetkube-worker"


def _worker(r: httpx.Response) -> tuple[int, int]:
    """(index, pid) from a worker's answer."""
    index, pid = r.headers[HEADER].split(" pid=")
    return int(index), int(pid)


def _listening_inodes(port: int) -> set[int]:
    """The inodes of the TCP sockets listening on ``port`` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # state LISTEN
                found.add(int(f[9]))
    return found


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _workers_of(proc: trio.Process) -> list[int]:
    return [p for p in _children(proc.pid) if b"gateway" in _cmdline(p)]


async def _pinned(serve: Serve, stack: list[httpx.AsyncClient], want: int) -> dict[int, list[httpx.AsyncClient]]:
    """``want`` keep-alive connections (one-connection clients) to each of the two workers: new
    connections are opened until both workers have answered that many."""
    got: dict[int, list[httpx.AsyncClient]] = {0: [], 1: []}
    while min(len(v) for v in got.values()) < want:
        c = serve.client(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        stack.append(c)
        r = await c.get("/readyz")
        assert r.status_code == 200, r.text
        got[_worker(r)[0]].append(c)
    return got


async def test_two_workers_serve_one_port_consistently_and_are_supervised(tmp_path: Path) -> None:
    data_dir = tmp_path / "jk"
    with trio.fail_after(60):
        proc, line = await spawn_serve(data_dir, "--workers", "2")
    serve = Serve(proc, line, data_dir)
    clients: list[httpx.AsyncClient] = []
    try:
        assert line.endswith(" workers=2"), line
        nats_pid = int((data_dir / "nats" / "nats.pid").read_text())
        assert len(_workers_of(proc)) == 2

        # Many requests over many connections (a new one per request) land on both workers.
        seen: dict[int, int] = {}
        with trio.fail_after(30):
            async def one(i: int) -> None:
                async with serve.client() as c:  # its own connection
                    r = await c.get("/api/v1/namespaces/default")
                    assert r.status_code == 200, r.text
                    index = _worker(r)[0]
                    seen[index] = seen.get(index, 0) + 1
            while len(seen) < 2 or sum(seen.values()) < 40:
                async with trio.open_nursery() as n:
                    for i in range(20):
                        n.start_soon(one, i)
        assert set(seen) == {0, 1}, seen

        # A burst of connections opened at once (as a load generator or a restarted client pool opens
        # them) is spread over both workers: each listens on a socket of its own (SO_REUSEPORT). With
        # one shared socket, the worker that woke first accepted a burst whole (64 of 64 wrk
        # connections, 4 runs of 5).
        host, port = serve.http_url.removeprefix("http://").rsplit(":", 1)
        burst: dict[int, int] = {0: 0, 1: 0}
        with trio.fail_after(30):
            socks = []
            try:
                for _ in range(32):  # connected by the kernel before any worker accepts
                    sock = trio.socket.socket()
                    socks.append(sock)
                    await sock.connect((host.strip("[]"), int(port)))
                for sock in socks:
                    await sock.send(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
                for sock in socks:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = await sock.recv(4096)
                        assert chunk, head
                        head += chunk
                    line = next(h for h in head.split(b"\r\n") if h.lower().startswith(HEADER.encode() + b":"))
                    burst[int(line.split(b":", 1)[1].split()[0])] += 1
            finally:
                for sock in socks:
                    sock.close()
        assert min(burst.values()) >= 4, burst  # binomial(32, 1/2) below 4: about 1 in 400,000
        # How: each worker holds a listening socket of its own on the port, the parent none.
        listening = _listening_inodes(int(port))
        held = [_socket_inodes(p) & listening for p in _workers_of(proc)]
        assert len(listening) == 2 and [len(h) for h in held] == [1, 1] and held[0] != held[1], (listening, held)
        assert not _socket_inodes(proc.pid) & listening

        with trio.fail_after(60):
            conns = await _pinned(serve, clients, 2)
            pinned = {i: c[0] for i, c in conns.items()}
            base = "/api/v1/namespaces/default/configmaps"
            # A watch on worker 0 sees what is written through worker 1 (and through worker 0).
            async with conns[0][1].stream("GET", f"{base}?watch=1&labelSelector=t%3Dw&timeoutSeconds=60") as watch:
                assert watch.status_code == 200
                # Writes on one worker are read, consistently, through the other: each at once.
                rvs: dict[str, str] = {}
                for i in range(16):
                    writer, reader = (pinned[1], pinned[0]) if i % 2 else (pinned[0], pinned[1])
                    r = await writer.post(base, json={"metadata": {"name": f"cm-{i}", "labels": {"t": "w"}},
                                                      "data": {"i": str(i)}})
                    assert r.status_code == 201, r.text
                    rv = r.json()["metadata"]["resourceVersion"]
                    got = await reader.get(f"{base}/cm-{i}")
                    assert got.status_code == 200, got.text
                    assert got.json()["metadata"]["resourceVersion"] == rv
                    assert _worker(got)[0] != _worker(r)[0]
                    rvs[f"cm-{i}"] = rv
                listed = await pinned[1].get(f"{base}?labelSelector=t%3Dw")
                assert {i["metadata"]["name"]: i["metadata"]["resourceVersion"]
                        for i in listed.json()["items"]} == rvs
                events: dict[str, str] = {}
                lines = watch.aiter_lines()
                while len(events) < len(rvs):
                    ev = json.loads(await lines.__anext__())
                    assert ev["type"] == "ADDED", ev
                    events[ev["object"]["metadata"]["name"]] = ev["object"]["metadata"]["resourceVersion"]
                assert events == rvs

            # Every worker accepts the one kubeconfig (a real kubectl, over TLS, several connections).
            for _ in range(4):
                out = await trio.run_process(["kubectl", "--kubeconfig", str(data_dir / "kubeconfig"), "get",
                                              "configmaps", "-l", "t=w", "-o", "name"], capture_stdout=True)
                assert sorted(out.stdout.decode().split()) == sorted(f"configmap/{n}" for n in rvs)

        # kill -9 of worker 1: worker 0 keeps serving throughout; worker 1 comes back with a new pid.
        index_of = {i: _worker(await c.get("/readyz"))[1] for i, c in pinned.items()}
        os.kill(index_of[1], signal.SIGKILL)
        served_meanwhile = 0
        with trio.fail_after(60):
            async def back() -> bool:
                nonlocal served_meanwhile
                r = await pinned[0].get(f"{base}/cm-0")
                assert r.status_code == 200 and _worker(r) == (0, index_of[0])
                served_meanwhile += 1
                try:
                    async with serve.client() as c:
                        r = await c.get("/readyz")
                except httpx.HTTPError:
                    return False
                return r.status_code == 200 and _worker(r)[0] == 1
            await poll_until(back)
        restarted = [p for p in _workers_of(proc) if p != index_of[0]]
        assert len(restarted) == 1 and restarted[0] != index_of[1], restarted
        assert served_meanwhile >= 1
        async with serve.client() as c:
            r = await c.get(f"{base}/cm-15")
            assert r.status_code == 200

        # SIGTERM to the parent: the workers drain and exit, nats-server stops last, nothing is left.
        workers = _workers_of(proc)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await proc.wait() == 0
            await poll_until(lambda: not any(_alive(p) for p in [*workers, nats_pid]))
    finally:
        for c in clients:
            await c.aclose()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_killed_parent_takes_its_workers_along(tmp_path: Path, nats_url: str) -> None:
    with trio.fail_after(60):
        proc, _ = await spawn_serve(tmp_path / "jk", "--workers", "2", "--nats-url", nats_url)
    try:
        workers = _workers_of(proc)
        assert len(workers) == 2
        proc.kill()
        await proc.wait()
        with trio.fail_after(30):  # PR_SET_PDEATHSIG: SIGTERM, and they drain and exit
            await poll_until(lambda: not any(_alive(p) for p in workers))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_worker_failing_at_start_ends_the_server_with_its_code(tmp_path: Path, nats_url: str) -> None:
    import sys

    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "jk"), "--port", "0",
             "--workers", "2", "--nats-url", nats_url, "--read-only", "--at", "999999"],
            capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr.decode()[-2000:]
    assert b"jetkube ready" not in done.stdout
    assert b"--at 999999" in done.stderr


async def test_a_port_already_served_is_refused_in_one_line(tmp_path: Path, nats_url: str) -> None:
    """Another server's port, even one of this user's that listens with SO_REUSEPORT (its workers'
    group, which a second server would otherwise join and split connections with): exit 1, said once."""
    import socket
    import sys

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "jk"), "--port", str(port),
                 "--workers", "2", "--nats-url", nats_url],
                capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
    err = done.stderr.decode()
    assert done.returncode == 1, err[-2000:]
    assert f"jetkube serve: cannot listen on 127.0.0.1:{port}: Address already in use" in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


async def test_sigterm_drains_every_worker_then_the_port_refuses(tmp_path: Path, nats_url: str) -> None:
    with trio.fail_after(60):
        proc, line = await spawn_serve(tmp_path / "jk", "--workers", "2", "--nats-url", nats_url,
                                       "--shutdown-delay-duration", "20")
    serve = Serve(proc, line, tmp_path / "jk")
    try:
        proc.send_signal(signal.SIGTERM)
        draining: set[int] = set()

        async def both_draining() -> bool:  # each worker: /readyz 503 while it still serves
            async with serve.client() as c:
                r = await c.get("/readyz")
            if r.status_code == 503:
                draining.add(_worker(r)[0])
            return draining == {0, 1}

        # Which worker accepts a connection is the kernel's choice: under load one may win every race for
        # a while, so the drain window is long enough (20 s) to see both.
        with trio.fail_after(20):
            await poll_until(both_draining)

        async def refused() -> bool:  # then the listeners close: refused at once, not queued
            try:
                async with serve.client() as c:
                    await c.get("/readyz")
            except httpx.ConnectError:
                return True
            except (httpx.RemoteProtocolError, httpx.ReadError):  # accepted into the backlog as the listener closed
                return False
            return False

        with trio.fail_after(30):
            await poll_until(refused)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
