"""Horizontal scale and durability: two gateways on one NATS; restart on the same data dir."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio

from gateway import Settings, serve
from tests.conftest import StartServer, client_for, spawn_serve
from tests.integration.test_watch import read_events

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


async def test_write_on_one_read_on_other(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(30):
            for i in range(20):
                r = await api_a.post(CM, json={"metadata": {"name": f"x{i}"}})
                assert r.status_code == 201
                # Consistent read on the other replica right after the acknowledgement.
                g = await api_b.get(f"{CM}/x{i}")
                assert g.status_code == 200 and g.json() == r.json()
                lst = (await api_b.get(CM)).json()
                assert f"x{i}" in [it["metadata"]["name"] for it in lst["items"]]
                assert int(lst["metadata"]["resourceVersion"]) >= int(r.json()["metadata"]["resourceVersion"])
            # Update on B decided against what A wrote; conflicts across replicas still 409.
            r1 = await api_a.put(f"{CM}/x1", json=(await api_a.get(f"{CM}/x1")).json() | {"data": {"a": "1"}})
            stale = (await api_b.put(f"{CM}/x1", json=(await api_b.get(f"{CM}/x1")).json() | {"data": {"b": "1"}}))
            assert r1.status_code == 200 and stale.status_code == 200
            old = r1.json()
            assert (await api_b.put(f"{CM}/x1", json=old)).status_code == 409


async def test_watch_resume_across_replicas(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(30):
            start = (await api_a.post(CM, json={"metadata": {"name": "r0"}})).json()["metadata"]["resourceVersion"]
            want = []
            for i in range(1, 6):
                r = await api_a.post(CM, json={"metadata": {"name": f"r{i}"}})
                want.append(r.json()["metadata"]["resourceVersion"])
            events = await read_events(api_b, f"{CM}?watch=1&resourceVersion={start}", until_rv=want[-1])
            assert [e["object"]["metadata"]["resourceVersion"] for e in events] == want


async def test_restart_keeps_state_and_versions(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Embedded default: its own nats-server on the data dir; a restart keeps every object and version."""
    settings = Settings(data_dir=str(tmp_path / "data"), port=0, insecure_port=0, graceful_timeout_s=0.5)
    with trio.fail_after(60):
        stop = trio.Event()
        async with trio.open_nursery() as first:  # exits once the first server has fully stopped
            running = await first.start(lambda task_status: serve(settings, shutdown=stop, task_status=task_status))
            async with client_for(running) as api:
                await api.post("/api/v1/namespaces", json={"metadata": {"name": "keep"}})
                for i in range(5):
                    await api.post("/api/v1/namespaces/keep/configmaps", json={"metadata": {"name": f"k{i}"},
                                                                               "data": {"i": str(i)}})
                await api.delete("/api/v1/namespaces/keep/configmaps/k0")
                before_ns = (await api.get("/api/v1/namespaces")).json()
                before = (await api.get("/api/v1/configmaps")).json()
            stop.set()
        stop2 = trio.Event()
        running2 = await nursery.start(lambda task_status: serve(settings, shutdown=stop2, task_status=task_status))
        try:
            assert running2.admin_token == running.admin_token
            async with client_for(running2) as api:
                after_ns = (await api.get("/api/v1/namespaces")).json()
                after = (await api.get("/api/v1/configmaps")).json()
            assert after["items"] == before["items"] and after_ns["items"] == before_ns["items"]
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        finally:
            stop2.set()


async def test_two_gateway_processes(tmp_path: Path, nats_url: str) -> None:
    """Two real `jetkube serve --nats-url` processes."""
    procs = []
    urls = []
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            for i in range(2):
                send, recv = trio.open_memory_channel[str](1)

                async def run(i: int = i, send: trio.MemorySendChannel[str] = send) -> None:
                    proc, line = await spawn_serve(tmp_path / f"p{i}", "--nats-url", nats_url)
                    procs.append(proc)
                    await send.send(line)

                n.start_soon(run)
                line = await recv.receive()
                assert line.startswith("jetkube ready:")
                urls.append(line.split("http=")[1].split()[0])
        try:
            token = (tmp_path / "p0" / "pki" / "tokens.csv").read_text().split(",")[0]
            token_b = (tmp_path / "p1" / "pki" / "tokens.csv").read_text().split(",")[0]
            async with httpx.AsyncClient(base_url=urls[0], headers={"Authorization": f"Bearer {token}"}) as a, \
                    httpx.AsyncClient(base_url=urls[1], headers={"Authorization": f"Bearer {token_b}"}) as b:
                r = await a.post(CM, json={"metadata": {"name": "proc"}})
                assert r.status_code == 201
                g = await b.get(f"{CM}/proc")
                assert g.status_code == 200 and json.loads(g.content) == r.json()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                with trio.move_on_after(10):
                    await p.wait()
                if p.returncode is None:
                    p.kill()
        # After the finally, not inside it: a failure above is reported as itself, not masked by this one.
        assert [p.returncode for p in procs] == [0, 0]  # SIGTERM is a graceful shutdown


async def test_alternating_updates_across_replicas_never_conflict(start_server: StartServer) -> None:
    """A PUT with the resourceVersion just returned by the other replica is never a 409, even when
    this replica's projection has not applied that version yet."""
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(60):
            obj = (await api_a.post(CM, json={"metadata": {"name": "alt"}, "data": {"n": "0"}})).json()
            for i in range(1, 101):
                client = api_b if i % 2 else api_a
                r = await client.put(f"{CM}/alt", json=obj | {"data": {"n": str(i)}})
                assert r.status_code == 200, (i, r.text)
                obj = r.json()
