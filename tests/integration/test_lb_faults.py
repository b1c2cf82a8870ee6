"""Faults behind the dev cluster's TCP load balancer (gateway/_devcluster.py's LoadBalancer, run
in-process in front of ``jetkube serve`` processes on one nats-server or the 3-node test cluster), as
clients see them: a gateway killed -9 under a write load that retries through the balancer while a
client-go style watch held by that gateway resumes on another, and a watch (the official ``kubernetes`` Python client) that resumes
on the other replica when its gateway drains."""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
import uuid
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

from bus import parse_subject, run_nats_server
from gateway._devcluster import Backend, LoadBalancer
from tests.conftest import poll_until
from tests.integration.cluster_support import CM, GatewayProcess, read_log, start_gateway_process
from tests.natscluster import run_nats_cluster

pytestmark = pytest.mark.integration


class HoldingBalancer(LoadBalancer):
    """The dev cluster's balancer with one fault added for the test: once ``hold`` names a backend,
    what that backend sends to its clients is kept back (``held``, per client connection) instead of
    delivered, as if it were still on the wire when the backend dies. A write whose answer is held
    has landed, and its client will see only a broken connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold: int | None = None
        self.held: dict[int, bytearray] = {}  # id of the client connection -> bytes held back
        self.held_changed = trio.Event()

    async def deliver(self, dst: trio.SocketStream, data: bytes, *, backend: int, to_client: bool) -> None:
        if to_client and backend == self.hold:
            self.held.setdefault(id(dst), bytearray()).extend(data)
            ev, self.held_changed = self.held_changed, trio.Event()
            ev.set()
            return
        await super().deliver(dst, data, backend=backend, to_client=to_client)

    def held_writes(self) -> dict[str, int]:
        """name -> status of each write whose whole success answer (head and body) is held back."""
        out = {}
        for data in self.held.values():
            head = data.split(b"\r\n", 1)[0].split()
            m = _NAME.search(data)
            if len(head) > 1 and head[1] in (b"200", b"201") and m:
                out[m.group(1).decode()] = int(head[1])
        return out


@dataclass
class Balanced:
    gateways: list[GatewayProcess]
    lb: HoldingBalancer
    url: str  # the load balancer's plain-HTTP URL
    ports: list[int]  # each gateway's port

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=15,
                                 headers={"Authorization": f"Bearer {self.gateways[0].token}"}, **kw)


@asynccontextmanager
async def _balanced_gateways(tmp_path: Path, nats_url: str, *args: str, count: int = 2,
                             health_interval_s: float = 1.0) -> AsyncIterator[Balanced]:
    """``count`` gateway processes sharing one PKI (one token), behind the dev cluster's load balancer
    (a gateway leaves the rotation when its /readyz is not 200 or it refuses a connection)."""
    gws: list[GatewayProcess] = []
    try:
        with trio.fail_after(30 * count):
            for i in range(count):
                if i:  # one CA, certificate and tokens, as dev-cluster does
                    shutil.copytree(tmp_path / "gw0" / "pki", tmp_path / f"gw{i}" / "pki")
                gws.append(await start_gateway_process(tmp_path / f"gw{i}", "--nats-url", nats_url, *args))
        ports = [int(g.url.rsplit(":", 1)[1]) for g in gws]
        lb = HoldingBalancer([Backend(p, p) for p in ports], (("Authorization", f"Bearer {gws[0].token}"),),
                             health_interval_s)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(lb.serve)
            assert lb.healthy == set(ports)
            port = listeners[0].socket.getsockname()[1]
            yield Balanced(gws, lb, f"http://127.0.0.1:{port}", ports)
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


@dataclass
class Attempt:
    writer: int
    name: str
    started: float
    ended: float
    status: int  # 0: a connection error (``error`` names it)
    error: str = ""


class ResumingWatch:
    """A watch through the balancer that resumes as client-go's RetryWatcher does: when its connection
    breaks or ends, it watches again from the last resourceVersion it received (an event's or a
    bookmark's), never re-listing. ``calls`` is the resourceVersion each connection asked from."""

    def __init__(self, api: httpx.AsyncClient, from_rv: int) -> None:
        self.api = api
        self.rv = from_rv
        self.seen: list[tuple[str, str, int]] = []  # (type, name, resourceVersion) of every change
        self.calls: list[int] = []
        self.breaks: list[str] = []
        self._changed = trio.Event()

    async def run(self, max_connections: int = 4) -> None:
        for _ in range(max_connections):  # bounded resumes
            self.calls.append(self.rv)
            url = f"{CM}?watch=1&allowWatchBookmarks=true&resourceVersion={self.rv}"
            try:
                async with self.api.stream("GET", url, timeout=httpx.Timeout(10, read=None)) as r:
                    assert r.status_code == 200, await r.aread()
                    async for line in r.aiter_lines():
                        if not line:
                            continue
                        ev = json.loads(line)
                        md = ev["object"]["metadata"]
                        self.rv = int(md["resourceVersion"])
                        if ev["type"] != "BOOKMARK":
                            assert ev["type"] in ("ADDED", "MODIFIED", "DELETED"), ev
                            self.seen.append((ev["type"], md["name"], self.rv))
                            ev_, self._changed = self._changed, trio.Event()
                            ev_.set()
                self.breaks.append("ended")
            except httpx.TransportError as e:
                self.breaks.append(type(e).__name__)
        raise AssertionError(f"the watch broke {max_connections} times: {self.breaks}")

    async def wait_seen(self, name: str) -> None:
        while name not in {n for _, n, _ in self.seen}:
            await self._changed.wait()


_NAME = re.compile(rb'"name":"(lb-[0-9]+-[0-9]+)"')


@asynccontextmanager
async def _nats(tmp_path: Path, replicas: int) -> AsyncIterator[str]:
    """One nats-server (R1), or the 3-node test cluster (R3): its client URL."""
    if replicas == 1:
        async with run_nats_server(tmp_path / "nats") as url:
            yield url
    else:
        async with run_nats_cluster(tmp_path / "cluster") as cluster:
            yield cluster.url


@pytest.mark.parametrize("replicas", [1, 3], ids=["R1", "R3"])
async def test_kill_9_one_gateway_behind_the_load_balancer(tmp_path: Path, replicas: int) -> None:
    """Three gateways behind the balancer, on one nats-server (R1) or a 3-node cluster (R3). 4 clients each create 40 configmaps and update each once
    (a PUT carrying the resourceVersion it read: a precondition); two keep their connection, two
    open one per request, as clients do either way. A request that fails with a connection error is
    retried through the balancer with the same object (same name, same nonce, same precondition). A
    client-go style watch goes through the balancer too; the gateway holding it is killed -9 after
    60 acknowledgements, while the balancer holds back what it sends (so some writes land whose
    answer is lost: their retries must answer 409, AlreadyExists or Conflict, and the object found
    must be the client's own write).

    Checked: every name is created once and updated once (exactly two events in the log), every 201
    and 200 is in the log at its resourceVersion and the objects listed afterwards are the clients'
    updates at the log's versions; clients see only 201/200, a 409 on a retry whose first attempt
    landed, or a connection error on a request in flight at the kill (at most one per client and no
    more than the killed gateway's connections); the balancer sends no connection to the dead gateway
    once it exited (it is out of rotation from its first refused connection, not the next health
    check) and both survivors take the traffic; the watch resumes once, from the last
    resourceVersion it received, on a survivor, with no gap and no repeat."""
    writers, per_writer = 4, 40
    names = [f"lb-{c}-{i}" for c in range(writers) for i in range(per_writer)]
    nonce = {n: uuid.uuid4().hex for n in names}
    acked: dict[tuple[str, str], int] = {}  # (name, "create" | "update") -> resourceVersion of its 2xx
    landed: list[tuple[str, str]] = []  # retried writes answered 409 whose first attempt had landed
    attempts: list[Attempt] = []
    wrong: list[tuple[str, int, str]] = []
    progress = trio.Event()
    # No periodic health check during the test (only the one at start): the dead gateway must leave
    # the rotation by refusing a connection, not by luck of the check's timing.
    async with (_nats(tmp_path, replicas) as nats_url,
                _balanced_gateways(tmp_path, nats_url, "--stream-replicas", str(replicas), count=3,
                                   health_interval_s=3600) as lb):

        async def write(c: int, api: httpx.AsyncClient, name: str, step: str, body: dict[str, Any]) -> int:
            """One write, retried on a connection error; the resourceVersion it left (0: failed)."""
            for attempt in range(5):  # bounded retries
                t0 = trio.current_time()
                try:
                    if step == "create":
                        r = await api.post(CM, json=body)
                    else:
                        r = await api.put(f"{CM}/{name}", json=body)
                except httpx.TransportError as e:
                    attempts.append(Attempt(c, name, t0, trio.current_time(), 0, type(e).__name__))
                    continue  # the balancer sends the retry to a gateway in rotation
                attempts.append(Attempt(c, name, t0, trio.current_time(), r.status_code))
                if r.status_code in (200, 201):
                    acked[(name, step)] = rv = int(r.json()["metadata"]["resourceVersion"])
                    return rv
                reason = {"create": "AlreadyExists", "update": "Conflict"}[step]
                if r.status_code == 409 and attempt and r.json().get("reason") == reason:
                    got = await api.get(f"{CM}/{name}")  # what landed is this client's write
                    if got.status_code == 200 and got.json()["data"] == body["data"]:
                        landed.append((name, step))
                        return int(got.json()["metadata"]["resourceVersion"])
                    wrong.append((name, got.status_code, got.text[:200]))
                else:
                    wrong.append((name, r.status_code, r.text[:200]))
                return 0
            wrong.append((name, 0, "no answer after 5 attempts"))
            return 0

        async def writer(c: int) -> None:
            nonlocal progress
            limits = httpx.Limits(max_keepalive_connections=0) if c % 2 else httpx.Limits()
            async with lb.client(limits=limits) as api:
                for i in range(per_writer):
                    name = f"lb-{c}-{i}"
                    obj = {"metadata": {"name": name}, "data": {"writer": str(c), "nonce": nonce[name]}}
                    if rv := await write(c, api, name, "create", obj):
                        obj = {"metadata": {"name": name, "resourceVersion": str(rv)},
                               "data": {**obj["data"], "step": "updated"}}
                        await write(c, api, name, "update", obj)
                    ev, progress = progress, trio.Event()
                    ev.set()

        with trio.fail_after(120):
            async with lb.client() as api:
                start = await api.post(CM, json={"metadata": {"name": "lb-start"}})
                assert start.status_code == 201, start.text
            rv0 = int(start.json()["metadata"]["resourceVersion"])
            async with trio.open_nursery() as nursery, lb.client() as watch_api:
                watch = ResumingWatch(watch_api, rv0)
                nursery.start_soon(watch.run)
                async with lb.client() as api:
                    assert (await api.post(CM, json={"metadata": {"name": "lb-first"}})).status_code == 201
                await watch.wait_seen("lb-first")
                open_watches = [await _open_watches(g) for g in lb.gateways]
                assert sorted(open_watches) == [0, 0, 1], open_watches
                victim_i = open_watches.index(1)
                victim, victim_port = lb.gateways[victim_i], lb.ports[victim_i]
                survivors = [p for p in lb.ports if p != victim_port]
                async with trio.open_nursery() as writing:
                    for c in range(writers):
                        writing.start_soon(writer, c)
                    while len(acked) < 60:
                        await progress.wait()
                    lb.lb.hold = victim_port  # what the victim answers from now on stays on the "wire"
                    while not lb.lb.held_writes():
                        await lb.lb.held_changed.wait()
                    conns_at_kill = lb.lb.active[victim_port]
                    opened_at_kill = Counter(lb.lb.opened)
                    t_kill = trio.current_time()
                    victim.proc.kill()
                    await victim.proc.wait()
                    # A connection can still reach the victim between the signal and its exit (the
                    # kernel completes handshakes on its listener until its sockets close).
                    opened_at_exit = Counter(lb.lb.opened)
                    await poll_until(lambda: lb.lb.active[victim_port] == 0)  # its connections are closed
                    t_gone = trio.current_time()
                async with lb.client() as api:
                    last = await api.post(CM, json={"metadata": {"name": "lb-last"}})
                    assert last.status_code == 201, last.text
                    listed = (await api.get(CM)).json()
                await watch.wait_seen("lb-last")
                nursery.cancel_scope.cancel()
            messages = await read_log(nats_url, replicas=replicas)
        assert all(g.proc.returncode is None for g in lb.gateways if g is not victim)
        opened_after = {p: lb.lb.opened[p] - opened_at_exit[p] for p in lb.ports}
        conns_dying = conns_at_kill + opened_at_exit[victim_port] - opened_at_kill[victim_port]
        in_rotation = set(lb.lb.healthy)
        held = lb.lb.held_writes()

    assert not wrong, wrong[:5]
    # Every write exactly once: acknowledged, or landed with its answer lost (found as written on retry).
    every = sorted((n, step) for n in names for step in ("create", "update"))
    assert sorted([*acked, *landed]) == every
    events = _configmap_events(messages, "lb-")
    per_name = Counter(n for _, n in events)
    assert {n for n, k in per_name.items() if k != (2 if n in nonce else 1)} == set(), "a write applied twice"
    assert set(per_name) == {*names, "lb-start", "lb-first", "lb-last"}
    seqs: dict[str, list[int]] = {}
    for seq, n in events:
        seqs.setdefault(n, []).append(seq)
    assert {k: v for k, v in acked.items() if seqs[k[0]][0 if k[1] == "create" else 1] != v} == {}
    items = {i["metadata"]["name"]: i for i in listed["items"] if i["metadata"]["name"] in nonce}
    assert sorted(items) == sorted(names)  # exactly one object per name, the client's own update
    assert all(int(i["metadata"]["resourceVersion"]) == seqs[n][1] and i["data"]["nonce"] == nonce[n]
               and i["data"]["step"] == "updated" for n, i in items.items())
    # The answers held back when the gateway died: those writes landed, their clients retried into a 409.
    held_steps = {(n, "create" if status == 201 else "update") for n, status in held.items()}
    assert held_steps and held_steps <= set(landed), (held, landed)
    # Connection errors: only requests in flight at the kill (begun before the balancer had closed
    # the dead gateway's connections), at most one per client, no more than the connections it had
    # open when killed or accepted while dying.
    errors = [a for a in attempts if a.status == 0]
    assert errors and all(a.started < t_gone for a in errors), [a for a in errors if a.started >= t_gone]
    assert max(Counter(a.writer for a in errors).values()) == 1, errors
    assert len(errors) < conns_dying  # one of the victim's connections was the watch
    assert {a.name for a in errors} >= set(held)
    # The balancer: nothing more to the dead gateway once it exited, both survivors serve the load.
    assert opened_after[victim_port] == 0 and victim_port not in in_rotation
    assert all(opened_after[p] > 0 for p in survivors), opened_after
    # The watch: one resume, from the last version it received, no gap, no repeat.
    want = [s for s, _ in _configmap_events(messages, "lb-") if s > rv0]
    got = [rv for _, n, rv in watch.seen]
    assert got == want, f"missing {sorted(set(want) - set(got))[:10]}, extra or repeated {len(got) - len(set(got))}"
    assert len(watch.calls) == 2 and len(watch.breaks) == 1, (watch.calls, watch.breaks)
    assert watch.calls[1] == max(rv for rv in got if rv <= watch.calls[1])  # resumed from its last version
    print(f"\nkill -9 behind the LB (3 gateways, R{replicas}): {len(acked)} writes acknowledged, {len(landed)} retried "
          f"writes answered 409 (had landed; {len(held_steps)} with their answer held back: {sorted(held_steps)}), "
          f"{len(errors)} connection errors ({dict(Counter(a.error for a in errors))}) of {conns_dying} "
          f"connections on the victim ({conns_at_kill} at the kill); its connections closed {t_gone - t_kill:.3f}s after the kill; new "
          f"connections after the kill {opened_after}; watch broke with {watch.breaks[0]}, resumed from rv "
          f"{watch.calls[1]}, {len(got)} changes seen")


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
