"""NATS faults (issue 7): the bus survives a server that closes it, a dead or restarted nats-server,
and never lets a subject reach the wire that would make the server close the connection."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from bus import Key, StreamConfig, open_bridge, open_log, resource_filter
from gateway import Running, Settings, serve
from tests.conftest import client_for, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


async def test_bridge_replaces_a_connection_the_server_closed(nats_url: str) -> None:
    """A server -ERR ("maximum control line exceeded") makes nats-py close the client for good; the
    bridge opens a new connection and appends and readers carry on."""
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="F1", prefix="f1"))
            subj = log.subject(Key("default", "", "configmaps", "ns", "a"))
            assert await log.append(subj, b"one", msg_id="m1", expected_seq=0) == 1
            reader = await log.open_reader(resource_filter("f1", "default", "", "configmaps"), 1)
            try:
                assert [m.seq for m in await reader.next_batch()] == [1]
                assert bridge.connections == 1
                # Bypass the subjects module: a protocol line over max_control_line (4096 bytes).
                await bridge.run_coro(bridge.nc.publish("x" * 5000, b""), timeout_s=5)
                await bridge.wait_connections(2)
                assert bridge.connected
                assert await log.append(subj, b"two", msg_id="m2", expected_seq=1) == 2
                assert [m.seq for m in await reader.next_batch()] == [2]
            finally:
                await reader.aclose()


@pytest.mark.parametrize("name", ["ü" * 700, "a" * 100_000])
async def test_a_long_name_is_a_4xx_and_the_server_stays_connected(api: httpx.AsyncClient, name: str) -> None:
    roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"
    with trio.fail_after(30):
        r = await api.post(roles, json={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                        "metadata": {"name": name}, "rules": []})
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["kind"] == "Status"
        r = await api.get(f"{roles}/{name[:5000]}")  # httpx refuses longer URLs
        assert r.status_code == 404 and r.json()["reason"] == "NotFound", r.text
        with trio.fail_after(3):  # no 10 s append timeout: the connection is still up
            r = await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "after"}})
        assert r.status_code == 201, r.text



async def test_embedded_nats_killed_is_noticed_restarted_and_nothing_is_lost(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "jk"), port=0, insecure_port=0, nats_url=None,
                        graceful_timeout_s=0.5, nats_restart_delay_s=4.0)  # a window to observe the outage
    stop = trio.Event()
    with trio.fail_after(30):
        running: Running = await nursery.start(partial(serve, settings, shutdown=stop))
    try:
        async with client_for(running) as api:
            with trio.fail_after(30):
                for i in range(20):
                    r = await api.post(CM, json={"metadata": {"name": f"before-{i}"}})
                    assert r.status_code == 201, r.text
                assert (await api.get("/readyz")).status_code == 200
            pid = int((tmp_path / "jk" / "nats" / "nats.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            t_kill = trio.current_time()

            async def unready() -> bool:
                return (await api.get("/readyz")).status_code == 503

            with trio.fail_after(1):
                await poll_until(unready)
            t_unready = trio.current_time() - t_kill
            assert (await api.get("/livez")).status_code == 200
            t0 = trio.current_time()
            with trio.fail_after(2):
                r = await api.post(CM, json={"metadata": {"name": "during"}})
            t_write, during = trio.current_time() - t0, r.status_code
            assert r.status_code in (503, 504), r.text
            status = r.json()
            assert status["kind"] == "Status", status
            assert status["reason"] in ("ServiceUnavailable", "Timeout"), status
            assert r.headers.get("Retry-After")
            with trio.fail_after(2):
                r = await api.get(CM)
            assert r.status_code == 503 and r.json()["reason"] == "ServiceUnavailable", r.text

            async def ready() -> bool:
                return (await api.get("/readyz")).status_code == 200

            with trio.fail_after(20):
                await poll_until(ready)
            t_ready = trio.current_time() - t_kill
            assert int((tmp_path / "jk" / "nats" / "nats.pid").read_text()) != pid
            with trio.fail_after(10):
                r = await api.post(CM, json={"metadata": {"name": "after"}})
                assert r.status_code == 201, r.text
                names = {o["metadata"]["name"] for o in (await api.get(CM)).json()["items"]}
            assert {f"before-{i}" for i in range(20)} | {"after"} <= names
            print(f"\nkill -9 nats-server: readyz 503 after {t_unready:.3f}s, write answered {during} "
                  f"in {t_write:.3f}s, ready again after {t_ready:.3f}s (restart delay 4 s)")
    finally:
        stop.set()
