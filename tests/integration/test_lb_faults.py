"""Faults behind the dev cluster's TCP load balancer (gateway/_devcluster.py, run in-process in front
of two ``jetkube serve`` processes on one nats-server), as a client sees them: a gateway killed -9
under a write load that retries through the balancer, and a watch (the official ``kubernetes``
Python client) that resumes on the other replica when its gateway drains."""

from __future__ import annotations

import functools
import shutil
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import trio

from bus import parse_subject
from gateway._devcluster import _health_loop, _http_get, _proxy, _round_robin
from tests.integration.cluster_support import CM, GatewayProcess, read_log, start_gateway_process

pytestmark = pytest.mark.integration


@dataclass
class Balanced:
    gateways: list[GatewayProcess]
    url: str  # the load balancer's plain-HTTP URL
    ports: list[int]  # each gateway's port

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=15,
                                 headers={"Authorization": f"Bearer {self.gateways[0].token}"})


@asynccontextmanager
async def _balanced_gateways(tmp_path: Path, nats_url: str, *args: str) -> AsyncIterator[Balanced]:
    """Two gateway processes sharing one PKI (one token), behind the dev cluster's load balancer and
    health loop (a gateway leaves the rotation when its /readyz is not 200)."""
    gws: list[GatewayProcess] = []
    try:
        with trio.fail_after(60):
            for i in range(2):
                if i:  # one CA, certificate and tokens, as dev-cluster does
                    shutil.copytree(tmp_path / "gw0" / "pki", tmp_path / f"gw{i}" / "pki")
                gws.append(await start_gateway_process(tmp_path / f"gw{i}", "--nats-url", nats_url, *args))
        ports = [int(g.url.rsplit(":", 1)[1]) for g in gws]
        headers = (("Authorization", f"Bearer {gws[0].token}"),)
        healthy: set[int] = set(ports)

        async def check_health() -> None:
            for p in ports:
                if (await _http_get(p, "/readyz", headers))[0] == 200:
                    healthy.add(p)
                else:
                    healthy.discard(p)

        pick = _round_robin([(p, p) for p in ports], healthy)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_health_loop, check_health)
            listeners = await nursery.start(partial(trio.serve_tcp, partial(_proxy, pick), 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            yield Balanced(gws, f"http://127.0.0.1:{port}", ports)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for g in gws:
                await g.stop()


def _configmap_events(messages: list[Any], prefix: str) -> list[tuple[int, str]]:
    """(seq, name) of every change to the test's configmaps (names starting with ``prefix``) in the log."""
    out = []
    for m in messages:
        try:
            k = parse_subject("jk", m.subject)
        except ValueError:
            continue
        if k.resource == "configmaps" and k.namespace == "default" and k.name.startswith(prefix):
            out.append((m.seq, k.name))
    return out


async def _open_watches(gw: GatewayProcess) -> int:
    """How many configmap watches the gateway is serving (its apiserver_longrunning_requests)."""
    async with gw.client() as c:
        text = (await c.get("/metrics")).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("apiserver_longrunning_requests{") and 'resource="configmaps"' in line)


async def test_kill_9_one_gateway_behind_the_load_balancer(tmp_path: Path, nats_url: str) -> None:
    """200 creates by 4 clients through the balancer; one gateway is killed -9 after 60 acks. A
    request that fails with a connection error is retried through the balancer with the same name:
    every name ends up created exactly once, every 201 is in the log at its resourceVersion, and
    no client saw anything but 201, a 409 on a retry, or a connection error."""
    names = [f"lb-{c}-{i}" for c in range(4) for i in range(50)]
    acked: dict[str, int] = {}  # name -> resourceVersion of its 201
    conflicts: list[str] = []  # retried creates answered 409 AlreadyExists: the first attempt landed
    conn_errors: list[tuple[str, str]] = []
    wrong: list[tuple[str, int, str]] = []
    progress = trio.Event()
    async with _balanced_gateways(tmp_path, nats_url) as lb:

        async def writer(c: int) -> None:
            nonlocal progress
            async with lb.client() as api:
                for i in range(50):
                    name = f"lb-{c}-{i}"
                    for attempt in range(20):  # bounded retries
                        try:
                            r = await api.post(CM, json={"metadata": {"name": name}, "data": {"c": str(c)}})
                        except httpx.TransportError as e:
                            conn_errors.append((name, type(e).__name__))
                            continue  # the balancer sends the retry to a healthy gateway
                        if r.status_code == 201:
                            acked[name] = int(r.json()["metadata"]["resourceVersion"])
                        elif r.status_code == 409 and attempt and r.json().get("reason") == "AlreadyExists":
                            conflicts.append(name)
                        else:
                            wrong.append((name, r.status_code, r.text[:200]))
                        break
                    else:
                        wrong.append((name, 0, "no answer after 20 attempts"))
                    ev, progress = progress, trio.Event()
                    ev.set()

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for c in range(4):
                    nursery.start_soon(writer, c)
                while len(acked) < 60:
                    await progress.wait()
                victim = lb.gateways[0]
                victim.proc.kill()
                await victim.proc.wait()
                acks_at_kill = len(acked)
            async with lb.client() as api:
                for _ in range(20):  # a client's retry: the balancer may not have noticed the kill yet
                    try:
                        listed = (await api.get(CM)).json()
                        break
                    except httpx.TransportError:
                        continue
            messages = await read_log(nats_url, replicas=1)
        assert lb.gateways[1].proc.returncode is None  # the survivor served everything after the kill

    assert not wrong, wrong[:5]
    assert conn_errors, "the kill hit no in-flight request: the test proved nothing"
    assert set(acked) | set(conflicts) == set(names) and not set(acked) & set(conflicts)
    events = _configmap_events(messages, "lb-")
    per_name = Counter(n for _, n in events)
    assert {n for n, k in per_name.items() if k != 1} == set(), "a create applied twice"
    assert set(per_name) == set(names)
    seq_of = {n: s for s, n in events}
    assert {n: seq_of[n] for n in acked} == acked  # each 201 is in the log at its resourceVersion
    items = [i for i in listed["items"] if i["metadata"]["name"].startswith("lb-")]
    assert sorted(i["metadata"]["name"] for i in items) == sorted(names)  # exactly one object per name
    assert all(int(i["metadata"]["resourceVersion"]) == seq_of[i["metadata"]["name"]] for i in items)
    print(f"\nkill -9 behind the LB: {len(acked)} created (201), {len(conflicts)} retried creates "
          f"answered 409 (had landed), {len(conn_errors)} connection errors "
          f"({dict(Counter(t for _, t in conn_errors))}), killed at {acks_at_kill} acks")


async def test_watch_resumes_on_the_other_replica_when_its_gateway_drains(tmp_path: Path, nats_url: str) -> None:
    """The kubernetes client's Watch (in a thread) through the balancer; SIGTERM on the gateway that
    holds it (--shutdown-delay-duration 1.5): the watch ends cleanly, the client re-lists nothing and
    resumes from its last resourceVersion on the other replica, and sees every change written while
    it was away, in order, no gap, no repeat."""
    async with _balanced_gateways(tmp_path, nats_url, "--shutdown-delay-duration", "1.5") as lb:
        async with lb.client() as api:
            first = await api.post(CM, json={"metadata": {"name": "w-start"}})
            assert first.status_code == 201, first.text
            rv0 = int(first.json()["metadata"]["resourceVersion"])
        cfg = kubernetes.client.Configuration(host=lb.url, api_key={"authorization": f"Bearer {lb.gateways[0].token}"})
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))
        token = trio.lowlevel.current_trio_token()
        seen: list[tuple[str, str, int]] = []  # (type, name, resourceVersion)
        calls: list[str] = []  # the resourceVersion each (re)connection of the watch asked from
        changed = trio.Event()
        ended = trio.Event()  # the first watch connection ended (the client is about to resume)
        resume = threading.Event()

        def notify() -> None:
            nonlocal changed
            ev, changed = changed, trio.Event()
            ev.set()

        @functools.wraps(core.list_namespaced_config_map)
        def list_cms(*args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs["resource_version"])
            if len(calls) == 2:  # the resume: hold it until the writes of the gap are done
                trio.from_thread.run_sync(ended.set, trio_token=token)
                assert resume.wait(30)
            return core.list_namespaced_config_map(*args, **kwargs)

        def watch() -> None:
            w = kubernetes.watch.Watch()
            # No timeout_seconds: the client resumes by itself, as client-go's retry watcher does;
            # _request_timeout bounds every connect and read.
            for ev in w.stream(list_cms, "default", resource_version=str(rv0), _request_timeout=(5, 20)):
                md = ev["object"].metadata
                seen.append((ev["type"], md.name, int(md.resource_version)))
                trio.from_thread.run_sync(notify, trio_token=token)
                if md.name == "w-last":
                    w.stop()

        async def wait_seen(name: str) -> None:
            while name not in {n for _, n, _ in seen}:
                await changed.wait()

        async def write(api: httpx.AsyncClient, name: str) -> None:
            r = await api.post(CM, json={"metadata": {"name": name}})
            assert r.status_code == 201, r.text

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(trio.to_thread.run_sync, watch, abandon_on_cancel=True))
                async with lb.client() as api:
                    await write(api, "w-before")
                    await wait_seen("w-before")
                    open_watches = [await _open_watches(g) for g in lb.gateways]
                    assert sorted(open_watches) == [0, 1], open_watches
                    holder = open_watches.index(1)
                    lb.gateways[holder].proc.terminate()  # SIGTERM: drain
                    for i in range(5):  # while the holder drains (its /readyz 503, still serving)
                        await write(api, f"w-drain-{i}")
                    await ended.wait()  # the server ended the watch: the client asks to resume
                    await lb.gateways[holder].proc.wait()
                    assert lb.gateways[holder].proc.returncode == 0
                    for i in range(5):  # while the client is away
                        await write(api, f"w-gap-{i}")
                    patched = await api.patch(f"{CM}/w-before", json={"data": {"k": "v"}},
                                              headers={"Content-Type": "application/merge-patch+json"})
                    assert patched.status_code == 200, patched.text
                    assert (await api.delete(f"{CM}/w-start")).status_code == 200
                    resume.set()
                    await wait_seen("w-gap-4")
                    on_other = await _open_watches(lb.gateways[1 - holder])
                    await write(api, "w-last")
                    await wait_seen("w-last")
        messages = await read_log(nats_url, replicas=1)

    want = [s for s, _ in _configmap_events(messages, "w-") if s > rv0]
    got = [rv for _, n, rv in seen if n.startswith("w-")]
    assert got == want, f"missing {sorted(set(want) - set(got))}, extra or repeated {got}"
    assert len(calls) == 2, calls  # one resume, not a relist
    before_end = [rv for rv in got if rv <= int(calls[1])]
    assert calls[0] == str(rv0) and int(calls[1]) == before_end[-1]  # resumed from its last version
    assert on_other == 1  # the resumed watch is served by the other replica
    print(f"\nwatch across drain: {len(got)} changes after rv {rv0}, ended at rv {calls[1]}, resumed on "
          f"the other replica, {len(want) - len(before_end)} delivered after the resume; types "
          f"{dict(Counter(t for t, _, _ in seen))}")
