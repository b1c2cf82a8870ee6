"""Shared fixtures: a real nats-server on a free loopback port (from the wheel), and jetkube
servers running in the test's own trio nursery against it."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import trio

from bus import run_nats_server
from gateway import Running, Settings, serve
from tests.natscluster import NatsCluster, run_nats_cluster

# Every `jetkube serve` the suite starts is one process (the default of --workers is the number of
# cores), as before --workers existed; tests of workers pass --workers.
os.environ["JETKUBE_WORKERS"] = "1"


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    async with run_nats_server(tmp_path / "nats") as url:
        yield url


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    """A 3-node NATS JetStream cluster (tests/natscluster.py); ``.url`` lists every node."""
    async with run_nats_cluster(tmp_path / "cluster") as cluster:
        yield cluster


StartServer = Callable[..., Awaitable[Running]]


async def spawn_serve(data_dir: Path, *args: str) -> tuple[trio.Process, str]:
    """A `jetkube serve` process (any free HTTPS and plain-HTTP port, ``args`` added) and its ready
    line. The caller bounds it with ``trio.fail_after`` and stops the process."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--insecure-port", "0", "--workers", "1", *args], stdout=-1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        buf = b""
        assert proc.stdout is not None
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some()
            assert chunk, "jetkube exited before it was ready"
            buf += chunk
        line = buf.decode().splitlines()[0]
        assert line.startswith("jetkube ready:"), line
    except BaseException:
        proc.kill()  # never left running by a start that failed or was cancelled
        raise
    return proc, line


async def poll_until(probe: Callable[[], Any]) -> None:
    """Poll external state (another process, an HTTP endpoint) that has no event to wait on, every
    20 ms, until ``probe()`` (sync or async) is true. Callers bound it with ``trio.fail_after``."""
    while True:
        got = probe()
        if await got if inspect.isawaitable(got) else got:
            return
        await trio.sleep(0.02)


@pytest.fixture
async def start_server(nursery: trio.Nursery, tmp_path: Path, nats_url: str) -> AsyncIterator[StartServer]:
    """Start a jetkube on the shared nats-server; every started server stops at teardown."""
    stops: list[trio.Event] = []
    count = 0

    async def start(**overrides: Any) -> Running:
        nonlocal count
        count += 1
        kw: dict[str, Any] = {"data_dir": str(tmp_path / f"jk{count}"), "port": 0, "insecure_port": 0,
                              "nats_url": nats_url, "graceful_timeout_s": 0.5}
        kw.update(overrides)
        stop = trio.Event()
        stops.append(stop)
        with trio.fail_after(30):
            return await nursery.start(partial(serve, Settings(**kw), shutdown=stop))

    yield start
    for s in stops:
        s.set()


@pytest.fixture
async def server(start_server: StartServer) -> Running:
    return await start_server()


def client_for(running: Running, **kw: Any) -> httpx.AsyncClient:
    """An httpx client on the server's plain-HTTP port with the admin token."""
    assert running.http_url is not None
    return httpx.AsyncClient(base_url=running.http_url, headers={"Authorization": f"Bearer {running.admin_token}"},
                             timeout=30, **kw)


def kubectl_missing(what: str) -> NoReturn:
    """A kubectl the test needs is not installed: the test fails naming it (kubectl is on every
    machine here), unless ``JETKUBE_SKIP_KUBECTL=1`` opts out explicitly, which skips it by name."""
    if os.environ.get("JETKUBE_SKIP_KUBECTL") == "1":
        pytest.skip(f"{what} (JETKUBE_SKIP_KUBECTL=1)")
    pytest.fail(f"{what}; install it, or set JETKUBE_SKIP_KUBECTL=1 to skip the tests that run kubectl",
                pytrace=False)


def kubectl() -> str:
    """The path of the ``kubectl`` on PATH (see :func:`kubectl_missing` when there is none)."""
    return shutil.which("kubectl") or kubectl_missing("kubectl is not installed: it is not on PATH")


async def watch_until(c: httpx.AsyncClient, path: str, params: dict[str, str],
                      done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The events of a watch until ``done(events)`` (bounded by the caller)."""
    got: list[dict[str, Any]] = []
    async with c.stream("GET", path, params={"watch": "1", **params}) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line.strip():
                got.append(json.loads(line))
                if done(got):
                    return got
    raise AssertionError(f"the watch ended early: {got}")


async def default_service_account(api: httpx.AsyncClient, namespace: str, *, prefix: str = "") -> None:
    """Wait until ``namespace`` has its ``default`` ServiceAccount, which the serviceaccounts
    controller makes moments after the namespace (the ServiceAccount admission plugin waits 2 s
    for it, then refuses a pod, as kube's does; a loaded test machine may take longer). A LIST,
    then a WATCH from its resourceVersion for the ADDED event; ``prefix`` is a tenant's path
    (``/clusters/t1``). Callers bound it with ``trio.fail_after``."""
    path = f"{prefix}/api/v1/namespaces/{namespace}/serviceaccounts"
    params = {"fieldSelector": "metadata.name=default"}
    r = await api.get(path, params=params)
    assert r.status_code == 200, r.text
    if not r.json()["items"]:
        await watch_until(api, path, {**params, "resourceVersion": r.json()["metadata"]["resourceVersion"]},
                          lambda events: any(e["type"] == "ADDED" for e in events))


FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"


async def reject_level_for(admin: httpx.AsyncClient, user: str, limited: dict[str, Any]) -> tuple[str, str]:
    """A Reject priority level ``tiny`` (``limited``: its seats, lending) and a FlowSchema sending
    every resource request of ``user`` to it, created through ``admin``: (the level's UID, the schema's)."""
    r = await admin.post(f"{FLOWCONTROL}/prioritylevelconfigurations", json={
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": "tiny"}, "spec": {"type": "Limited", "limited": {
            **limited, "limitResponse": {"type": "Reject"}}}})
    assert r.status_code == 201, r.text
    level_uid = r.json()["metadata"]["uid"]
    r = await admin.post(f"{FLOWCONTROL}/flowschemas", json={
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": user},
        "spec": {"priorityLevelConfiguration": {"name": "tiny"}, "matchingPrecedence": 50,
                 "rules": [{"subjects": [{"kind": "User", "user": {"name": user}}],
                            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                               "namespaces": ["*"], "clusterScope": True}]}]}})
    assert r.status_code == 201, r.text
    return level_uid, r.json()["metadata"]["uid"]


@pytest.fixture
async def api(server: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(server) as c:
        yield c
