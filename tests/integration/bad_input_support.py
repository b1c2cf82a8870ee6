"""What both bad-input suites check after every request: the answer is not a 5xx, it came within
a bound, and the store is unchanged.

The server under test runs as its own process (`python -m gateway serve`, as `make serve` runs
it), never in the test's trio loop: hostile input that sends a handler into a CPU or memory
spin (a YAML alias bomb expanded to 10^9 nodes) would otherwise block the very loop whose
`fail_after` should catch it, and take the machine's memory with it. The process gets an address
space limit (`SERVER_MEMORY_BYTES`) so a blow-up ends that server, not the machine, and the test
fails on its bound.

"Unchanged" is read two ways that do not trust each other: the JetStream stream's last sequence
(straight from the log, so nothing was appended, not even an event no projection shows), and a
consistent LIST of every listable kind the server's discovery names, compared item by item with
their resourceVersions and the lists' own resourceVersions.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors import SigningKey
from bus import Log, StreamConfig, open_bridge, open_log

# One request's bound: every answer, including each 4xx to hostile input, comes within this.
REQUEST_BOUND_S = 10.0


# The address space a server under hostile input may use (a normal one stays well under 1 GiB).
SERVER_MEMORY_BYTES = 3 * 1024**3


@dataclass(frozen=True)
class Server:
    """A `jetkube serve` process on the test's nats-server."""

    http_url: str
    admin_token: str
    nats_url: str
    proc: trio.Process
    signing_key: SigningKey  # the server's own service-account key (its key file), to forge claims with

    def client(self, *, token: bool = True) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if token else {}
        return httpx.AsyncClient(base_url=self.http_url, headers=headers, timeout=30)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SERVER_MEMORY_BYTES, SERVER_MEMORY_BYTES))


@pytest.fixture
async def server_process(nursery: trio.Nursery, tmp_path: Path, nats_url: str) -> AsyncIterator[Server]:
    """A jetkube process (plain HTTP on a free loopback port) with a memory limit; its output is
    drained while it runs and shown when a test fails; it is stopped at teardown."""
    output = bytearray()
    ready = trio.Event()
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "jk"), "--host", "127.0.0.1",
         "--port", "0", "--insecure-port", "0", "--nats-url", nats_url],
        stdout=-1, stderr=-2, env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_limit_memory)

    async def drain() -> None:
        assert proc.stdout is not None
        async for chunk in proc.stdout:
            output.extend(chunk)
            if b"\n" in output:
                ready.set()
        ready.set()

    nursery.start_soon(drain)
    try:
        with trio.fail_after(60):
            await ready.wait()
        line = output.split(b"\n", 1)[0].decode()
        assert line.startswith("jetkube ready:"), output.decode(errors="replace")[-3000:]
        http_url = line.split("http=")[1].split()[0]
        token = (tmp_path / "jk" / "pki" / "tokens.csv").read_text().split(",")[0]
        key = SigningKey((tmp_path / "jk" / "pki" / "sa.key").read_bytes())
        yield Server(http_url, token, nats_url, proc, key)
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            with trio.move_on_after(5):
                await proc.wait()
        sys.stderr.write(output.decode(errors="replace")[-5000:])  # shown by pytest for a failed test


@dataclass(frozen=True)
class StoreState:
    head: int  # the stream's last sequence
    lists: dict[str, tuple[str, list[Any]]]  # list path -> (list resourceVersion, items as served)


async def listable_paths(api: httpx.AsyncClient) -> list[str]:
    """Every kind the server serves a LIST of, at cluster scope, from its own discovery."""
    paths: list[str] = []
    versions = [("/api/v1", "v1")]
    with trio.fail_after(REQUEST_BOUND_S):
        groups = (await api.get("/apis")).json()["groups"]
    versions += [(f"/apis/{g['preferredVersion']['groupVersion']}", g["name"]) for g in groups]
    for prefix, _ in versions:
        with trio.fail_after(REQUEST_BOUND_S):
            r = await api.get(prefix)
        assert r.status_code == 200, (prefix, r.text)
        for res in r.json()["resources"]:
            if "/" not in res["name"] and "list" in res.get("verbs", []):
                paths.append(f"{prefix}/{res['name']}")
    assert "/api/v1/configmaps" in paths and "/apis/rbac.authorization.k8s.io/v1/roles" in paths, paths
    return sorted(paths)


async def store_state(api: httpx.AsyncClient, log: Log, paths: list[str]) -> StoreState:
    """The stream head, then a consistent LIST of every path (each waits until the server's
    projection has applied at least that head)."""
    with trio.fail_after(REQUEST_BOUND_S):
        head = await log.head()
    lists: dict[str, tuple[str, list[Any]]] = {}
    for path in paths:
        with trio.fail_after(REQUEST_BOUND_S):
            r = await api.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        body = r.json()
        lists[path] = (body["metadata"]["resourceVersion"], body["items"])
    return StoreState(head, lists)


def assert_unchanged(before: StoreState, after: StoreState, case: str) -> None:
    assert after.head == before.head, f"{case}: the log grew from {before.head} to {after.head}"
    for path, (rv, items) in before.lists.items():
        got_rv, got_items = after.lists[path]
        assert got_items == items, f"{case}: {path} changed:\n{json.dumps(got_items)[:2000]}"
        assert got_rv == rv, f"{case}: {path} resourceVersion moved from {rv} to {got_rv}"


@asynccontextmanager
async def open_server_log(nats_url: str) -> AsyncIterator[Log]:
    """The server's own stream (the default one), read directly from its nats-server."""
    async with open_bridge(nats_url) as bridge:
        yield await open_log(bridge, StreamConfig())


async def assert_serving(api: httpx.AsyncClient, case: str, server: Server) -> None:
    """The server process is alive and still writes through NATS and reads back: create, read
    and delete a ConfigMap."""
    assert server.proc.returncode is None, f"{case}: the server exited with {server.proc.returncode}"
    path = "/api/v1/namespaces/default/configmaps"
    with trio.fail_after(REQUEST_BOUND_S):
        r = await api.post(path, json={"metadata": {"name": "still-serving"}, "data": {"k": "v"}})
        assert r.status_code == 201, f"{case}: the server no longer writes: {r.status_code} {r.text[:500]}"
        assert (await api.get(f"{path}/still-serving")).json()["data"] == {"k": "v"}
        assert (await api.delete(f"{path}/still-serving")).status_code == 200
