"""Fault-test helpers: a bounded write load through gateways, watches that record what they see, and
the checks against the log itself (every acknowledged write at its resourceVersion, none twice)."""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bus import BusError, LogMessage, LogReader, StreamConfig, open_bridge, open_log, parse_subject

CM = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}


@dataclass
class Outcome:
    gateway: str
    audit_id: str
    status: int  # 0: no HTTP answer (connection error)
    rv: int  # the acknowledged resourceVersion (0 when not acknowledged)
    started: float
    ended: float
    name: str
    body: dict[str, Any] = field(default_factory=dict)


class WriteLoad:
    """Writers that each create an object, then patch it, over and over; every request bounded."""

    def __init__(self, per_request_s: float) -> None:
        self.per_request_s = per_request_s
        self.outcomes: list[Outcome] = []
        self.acks = 0
        self._ack_changed = trio.Event()
        self.stop = trio.Event()

    async def wait_acks(self, n: int) -> None:
        while self.acks < n:
            await self._ack_changed.wait()

    async def writer(self, api: httpx.AsyncClient, gateway: str, tag: str, max_writes: int) -> None:
        name = ""
        for i in range(max_writes):
            if self.stop.is_set():
                return
            t0 = trio.current_time()
            if i % 3 == 0:
                name = f"{tag}-{i}"
                call = api.post(CM, json={"metadata": {"name": name}, "data": {"n": "0"}})
            else:
                call = api.patch(f"{CM}/{name}", content=json.dumps({"data": {"n": str(i)}}).encode(),
                                 headers=MERGE)
            with trio.fail_after(self.per_request_s):  # a hang fails the test
                try:
                    r = await call
                except httpx.TransportError:
                    self.outcomes.append(Outcome(gateway, "", 0, 0, t0, trio.current_time(), name))
                    await trio.sleep(0.05)  # backoff after a connection error, as a client would
                    continue
            body = r.json()
            ok = r.status_code in (200, 201)
            rv = int(body["metadata"]["resourceVersion"]) if ok else 0
            self.outcomes.append(Outcome(gateway, r.headers.get("Audit-Id", ""), r.status_code, rv, t0,
                                         trio.current_time(), name, {} if ok else body))
            if ok:
                self.acks += 1
                ev, self._ack_changed = self._ack_changed, trio.Event()
                ev.set()
            elif r.status_code == 404 and i % 3:
                continue  # the create of this object was not acknowledged (and did not land)
            else:
                await trio.sleep(0.05)  # honour Retry-After loosely: a short backoff

    async def start_writers(self, nursery: trio.Nursery, clients: list[httpx.AsyncClient], tag: str, *,
                            per_client: int, max_writes: int, acks: int) -> None:
        """Start ``per_client`` writers on each gateway's client (gateway ``gw<i>``); return once
        ``acks`` writes were acknowledged (bounded)."""
        for i, c in enumerate(clients):
            for j in range(per_client):
                nursery.start_soon(self.writer, c, f"gw{i}", f"{tag}{i}{j}", max_writes)
        with trio.fail_after(20):
            await self.wait_acks(acks)

    def acked(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.rv]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.rv and o.status != 404]

    def check_answers(self, allowed: frozenset[int] = frozenset({200, 201, 404, 503, 504})) -> None:
        """Every answer is a success or a Status with a retryable code; never a 500."""
        for o in self.outcomes:
            if o.status == 0:
                continue
            assert o.status in allowed, (o.status, o.body)
            if not o.rv:
                assert o.body.get("kind") == "Status", o.body

    def figures(self, t_fault: float) -> dict[str, float]:
        """Longest gap between acknowledgements around the fault, failures, time to the first
        acknowledgement of a write that began after the fault."""
        ends = sorted(o.ended for o in self.acked())
        gaps = [b - a for a, b in itertools.pairwise(ends)]
        after = [o.ended for o in self.acked() if o.started > t_fault]
        return {"longest_ack_gap_s": max(gaps, default=math.nan), "failed": float(len(self.failed())),
                "connection_errors": float(sum(1 for o in self.outcomes if o.status == 0)),
                "first_ack_after_fault_s": (min(after) - t_fault) if after else math.nan,
                "slowest_request_s": max((o.ended - o.started for o in self.outcomes), default=0.0),
                "acked": float(len(self.acked()))}


class Watcher:
    """A watch on one gateway's default-namespace configmaps from a resourceVersion."""

    def __init__(self, api: httpx.AsyncClient, gateway: str, from_rv: int) -> None:
        self.api = api
        self.gateway = gateway
        self.from_rv = from_rv
        self.rvs: list[int] = []
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        url = f"{CM}?watch=1&resourceVersion={self.from_rv}&timeoutSeconds=300"
        async with self.api.stream("GET", url, timeout=httpx.Timeout(10, read=None)) as r:
            assert r.status_code == 200, await r.aread()
            task_status.started()
            async for line in r.aiter_lines():
                if not line:
                    continue
                ev = json.loads(line)
                assert ev["type"] in ("ADDED", "MODIFIED", "DELETED"), ev
                self.rvs.append(int(ev["object"]["metadata"]["resourceVersion"]))
                ev_, self._changed = self._changed, trio.Event()
                ev_.set()
        raise AssertionError(f"the watch on {self.gateway} ended")

    async def wait_rv(self, rv: int) -> None:
        while not self.rvs or self.rvs[-1] < rv:
            await self._changed.wait()


async def read_log(url: str, replicas: int = 3, timeout_s: float = 30) -> list[LogMessage]:
    """Every message of the stream, from the log itself (a fresh connection).

    Right after a fault the cluster may be electing a leader, the stream's or the meta group's (a
    node back from SIGSTOP campaigns at once and unseats the meta leader: nats-server's Raft has no
    pre-vote). Until one is elected a consumer create times out, finds no responders, or answers
    "JetStream system temporarily unavailable" (10008); each round takes 4-9 s. So opening is
    retried for up to ``timeout_s``. And a consumer placed on a follower that has just restarted can
    sit behind the stream for a long while (seen: 50 s, while the gateways' projections resubscribed
    through their stall detector): a reader that delivers nothing for 5 s is replaced, as the
    projections do, from the next sequence (at most 6 times)."""
    async with open_bridge(url) as bridge:

        async def open_from(seq: int) -> tuple[int, LogReader]:
            last: BusError | None = None
            with trio.move_on_after(timeout_s):
                while True:
                    try:
                        log = await open_log(bridge, StreamConfig(replicas=replicas))
                        return await log.head(), await log.open_reader(log.prefix + ".>", seq)
                    except BusError as e:
                        last = e
                        await trio.sleep(0.2)  # polling the cluster's election: bounded above
            raise AssertionError(f"the log did not open within {timeout_s}s: {last!r}") from last

        head, reader = await open_from(1)
        out: list[LogMessage] = []
        replaced = 0
        try:
            while not out or out[-1].seq < head:
                with trio.move_on_after(5):
                    out.extend(await reader.next_batch())
                    continue
                replaced += 1
                assert replaced <= 6, f"the log's readers stalled at {out[-1].seq if out else 0} of {head}"
                await reader.aclose()
                _, reader = await open_from(out[-1].seq + 1 if out else 1)
        finally:
            await reader.aclose()
        return out


def default_configmaps(messages: list[LogMessage], after: int) -> list[int]:
    out = []
    for m in messages:
        if m.seq <= after:
            continue
        try:
            k = parse_subject("jk", m.subject)
        except ValueError:
            continue
        if k.resource == "configmaps" and k.namespace == "default":
            out.append(m.seq)
    return out


def check_log(messages: list[LogMessage], load: WriteLoad) -> None:
    """Every acknowledged write is in the log at its resourceVersion with its request's Msg-Id, and
    no request was applied twice (each request's audit ID names at most one message)."""
    by_seq = {m.seq: m for m in messages}
    requests = Counter(m.msg_id.split(":", 1)[0] for m in messages if m.msg_id)
    twice = {a: c for a, c in requests.items() if c > 1}
    assert not twice, f"requests applied more than once: {twice}"
    for o in load.acked():
        m = by_seq.get(o.rv)
        assert m is not None, f"acknowledged write {o} is not in the log"
        assert m.msg_id.split(":", 1)[0] == o.audit_id, (o, m.msg_id)
        assert parse_subject("jk", m.subject).name == o.name


def check_watch(w: Watcher, messages: list[LogMessage]) -> None:
    """In order, no repeat, no gap: exactly the log's default-namespace configmap changes after the
    watch's start, up to what the watch has seen."""
    assert w.rvs == sorted(set(w.rvs)), f"{w.gateway}: out of order or repeated"
    want = [s for s in default_configmaps(messages, w.from_rv) if s <= w.rvs[-1]]
    missing = sorted(set(want) - set(w.rvs))
    assert w.rvs == want, f"{w.gateway}: missing {missing[:10]}, extra {sorted(set(w.rvs) - set(want))[:10]}"


async def settle(load: WriteLoad, watchers: list[Watcher], url: str) -> list[LogMessage]:
    """Once the load has stopped: wait (bounded) until every watch has seen the last acknowledged
    write, then read the whole log."""
    head = max(o.rv for o in load.acked())
    with trio.fail_after(20):
        for w in watchers:
            await w.wait_rv(head)
    return await read_log(url)


def check_all(load: WriteLoad, watchers: list[Watcher], messages: list[LogMessage]) -> None:
    load.check_answers()
    check_log(messages, load)
    for w in watchers:
        check_watch(w, messages)


@dataclass
class GatewayProcess:
    """A ``jetkube serve`` subprocess: its plain-HTTP URL and admin token."""

    proc: trio.Process
    url: str
    token: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    async def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s; reaped either way."""
        if self.proc.returncode is None:
            self.proc.terminate()
            with trio.move_on_after(10):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def ready_line(proc: trio.Process, prefix: str, timeout_s: float) -> str:
    """The first line a server process prints (bounded), checked to start with ``prefix``."""
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(timeout_s):
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some()
            assert chunk, f"{prefix!r} never came: the process exited"
            buf += chunk
    line = buf.decode()
    assert line.startswith(prefix), line
    return line


async def start_gateway_process(data_dir: Path, *args: str) -> GatewayProcess:
    """Start ``jetkube serve --data-dir DATA_DIR --port 0 --insecure-port 0 ARGS`` and wait (bounded)
    for its ready line. The caller stops it (``stop``) in a ``finally``."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--insecure-port", "0", *args], stdout=-1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = await ready_line(proc, "jetkube ready:", 30)
        token = (data_dir / "pki" / "tokens.csv").read_text().split(",")[0]
        return GatewayProcess(proc, line.split("http=")[1].split()[0], token)
    except BaseException:
        with trio.CancelScope(shield=True):
            proc.kill()
            await proc.wait()
        raise
