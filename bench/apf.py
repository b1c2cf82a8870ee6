"""B12 and B13: fairness under a flood (API Priority and Fairness).

``python -m bench.apf [--gateways 1|2] [--seconds S]`` alone; ``make bench`` runs both (rows B12, B13).

One nats-server and one (B12) or two (B13, with ``--apf-fleet-leases 3``: each tenant's seats leased
from its owner gateway) jetkube gateways on it, each with a seat budget that fits
one Python process (``--max-requests-inflight 2 --max-mutating-requests-inflight 1``, 3 seats: every
executing request shares one core, so a seat is a share of CPU; kube's 600 seats are for many
cores). Two tenants (logical clusters), each with one user:

- capacity: A's LIST rate measured first, closed loop (16 connections per gateway, 5 s, a process
  per gateway: ``bench/_openloop.py --closed-conns``);
- tenant A lists 500 ConfigMaps (5 seats each, capped at its level's maximum) open loop at
  ``--flood-x`` (10) times that capacity (``bench/_openloop.py``, one process per gateway, at most
  ``--flood-conns`` connections each: a request finding them all busy is counted as not sent);
- tenant B GETs one ConfigMap open-loop at 5% of the capacity, round robin over the gateways.

Printed: the capacity, A's offered and sent rates as multiples of it, A's 429s (and that they carry
Retry-After and the PF headers), B's p50/p99 unloaded, on a busy machine (one spinning process per
core, A sending nothing: the floor this machine sets when the flood's generator and the gateways
fill its cores), beside A at capacity (closed loop in processes of their own, no rejections: what
A's admitted requests alone cost B) and under the flood, and whether p99 stayed
within 2x, the gateways' CPU under the flood, B's share of the requests dispatched under the flood,
the seat lease round trips per request dispatched (with leases) and the load average; for B12 also
the reject path's cost alone (A's flow moved to a level that rejects everything, wrk GETs: gateway
CPU per answer).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

from bus import run_nats_server

from ._util import proc_cpu_s
from ._wrk import ensure_wrk

A_TOKEN, B_TOKEN = "b12-flood-token", "b12-quiet-token"
A_USER, B_USER = "flood-a", "quiet-b"
TA, TB = "b12-a", "b12-b"
NS = "default"
OBJECTS = 500
FLOOD_X = 10.0  # A's open-loop rate, times the LIST capacity measured first
FLOOD_CONNS = 1000  # the open-loop flood's connections per gateway, at most
FLEET_LEASES_S = 3.0  # B13's --apf-fleet-leases: seats leased from each tenant's owner gateway
#: Each phase's length (unloaded, beside A at capacity, under the flood) in ``make bench`` (quick: 8 s).
#: B sends at 5% of the capacity, so a 20 s phase had ~630 samples and its p99 was the 7th slowest:
#: measured run to run, B12's unloaded p99 alone moved 3.9-5.5 ms (and with it the 2x line) and
#: the flooded one 7.5-11.3 ms on the same code. 40 s phases: ~1,100-1,250 samples each (three B12
#: runs on the same code, 2026-11-30: 4.87 -> 7.99, 4.73 -> 9.08 and, in ``make bench``'s runner,
#: 5.37 -> 11.88 ms: less noise in each p99, not a different answer).
PHASE_S, QUICK_PHASE_S = 40.0, 8.0
FC = "/apis/flowcontrol.apiserver.k8s.io/v1"
LC = "/apis/tenancy.jetkube.io/v1alpha1/logicalclusters"


def _in(tenant: str, path: str) -> str:
    return f"/clusters/{tenant}{path}"


A_LIST = _in(TA, f"/api/v1/namespaces/{NS}/configmaps")
B_GET = _in(TB, f"/api/v1/namespaces/{NS}/configmaps/cm-0001")


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1)]


class _Gw:
    def __init__(self, proc: trio.Process, url: str, admin: str, leases_s: float = 0.0) -> None:
        self.proc, self.url, self.admin = proc, url, admin
        self.leases_s = leases_s


async def _start(data: Path, nats_url: str, inflight: int, mutating: int, fleet_period_s: float,
                 fleet_leases_s: float = 0.0, extra_args: tuple[str, ...] = ()) -> _Gw:
    tokens = data.parent / "tokens.csv"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data), "--port", "0",
         "--insecure-port", "0", "--token-file", str(tokens), "--nats-url", nats_url,
         "--max-requests-inflight", str(inflight), "--max-mutating-requests-inflight", str(mutating),
         "--apf-fleet-period", str(fleet_period_s), "--apf-fleet-leases", str(fleet_leases_s), *extra_args],
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    buf = b""
    while b"\n" not in buf:
        chunk = await proc.stdout.receive_some()
        if not chunk:
            raise RuntimeError("jetkube exited before it was ready")
        buf += chunk
    line = buf.decode().splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split()[2:])
    kube = yaml.safe_load(Path(fields["kubeconfig"]).read_text())
    return _Gw(proc, fields["http"], kube["users"][0]["user"]["token"], fleet_leases_s)


def _client(url: str, token: str, conns: int = 16) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                             limits=httpx.Limits(max_connections=conns))


async def _until(probe: Any, what: str, timeout_s: float = 60.0) -> None:
    with trio.fail_after(timeout_s):
        while not await probe():
            await trio.sleep(0.1)


async def _setup(gws: list[_Gw]) -> None:
    """Tenants A and B (LogicalClusters), a view binding for each tenant's user, A's 500 ConfigMaps
    and B's one; every gateway sees all of it before the measurement."""
    g1 = gws[0]
    async with _client(g1.url, g1.admin) as c:
        for t in (TA, TB):
            r = await c.post(LC, json={"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                                       "metadata": {"name": t}})
            assert r.status_code == 201, r.text

            async def ready(t: str = t) -> bool:
                r = await c.get(f"{LC}/{t}")
                return r.status_code == 200 and (r.json().get("status") or {}).get("phase") == "Ready"

            await _until(ready, f"tenant {t}")
        for t, user in ((TA, A_USER), (TB, B_USER)):
            crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "b12-view"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
            r = await c.post(_in(t, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"), json=crb)
            assert r.status_code == 201, r.text

        async def make(tenant: str, lo: int, n: int) -> None:
            for i in range(lo, n, 16):
                r = await c.post(_in(tenant, f"/api/v1/namespaces/{NS}/configmaps"),
                                 json={"metadata": {"name": f"cm-{i:04d}"}, "data": {"v": "x" * 200}})
                assert r.status_code == 201, r.text

        async with trio.open_nursery() as n:
            for lo in range(16):
                n.start_soon(make, TA, lo, OBJECTS)
            n.start_soon(make, TB, 1, 2)
    for gw in gws:
        async with _client(gw.url, A_TOKEN) as a, _client(gw.url, B_TOKEN) as b:
            async def seen(a: httpx.AsyncClient = a, b: httpx.AsyncClient = b) -> bool:
                ra, rb = await a.get(A_LIST), await b.get(B_GET)
                return ra.status_code == 200 and len(ra.json()["items"]) >= OBJECTS and rb.status_code == 200

            await _until(seen, "the seeded objects")


CLOSED_CONNS = 16  # A's closed loop (capacity, and beside B at capacity): connections per gateway


async def _closed_loop(urls: list[str], seconds: float) -> list[trio.Process]:
    """A's LIST closed loop, ``CLOSED_CONNS`` connections per gateway, each gateway's in a process of
    its own (``bench/_openloop.py --closed-conns``): B's client, timed meanwhile, does not share an
    event loop with A's answers, and A is not held back by a Python HTTP client (httpx in this
    process reached 425-536 LIST/s on two gateways where these reach 846-937)."""
    return [await _a_openloop(url, "--closed-conns", str(CLOSED_CONNS), "--seconds", str(seconds)) for url in urls]


async def _a_openloop(url: str, *args: str) -> trio.Process:
    """``bench/_openloop.py`` sending A's LIST to ``url`` as A, in a process of its own (its JSON
    line read by :func:`_openloop_result`); ``args``: how (``--rate``/``--closed-conns``, ``--seconds``…)."""
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench._openloop", "--url", url, "--path", A_LIST, "--token", A_TOKEN,
         "--timeout", "20", *args], stdout=subprocess.PIPE)


async def _capacity(urls: list[str], seconds: float) -> float:
    """A's LISTs answered 200 per second, closed loop (:func:`_closed_loop`)."""
    done = [await _openloop_result(p) for p in await _closed_loop(urls, seconds)]
    return sum(int(d.get("codes", {}).get("200", 0)) for d in done) / seconds


async def _quiet(urls: list[str], rate: float, seconds: float, stages: dict[str, list[float]] | None = None,
                 starts: list[float] | None = None) -> tuple[list[float], dict[int, int]]:
    """Open loop: one GET every 1/rate s (round robin over the gateways), each timed on its own (a
    slow one does not delay the next). ``stages`` (if given) collects where each request's time went,
    from httpx's trace hook: ``pool`` (waiting for a pooled connection), ``connect`` (a new TCP
    connection: the kernel's accept queue), ``send`` (the request written) and ``answer`` (from the
    request written to the response's head). ``starts`` (if given) gets each request's start (wall
clock), in the order of the latencies returned."""
    lat: list[float] = []
    codes: dict[int, int] = {}
    clients = [_client(url, B_TOKEN, 64) for url in urls]
    try:
        async def one(c: httpx.AsyncClient) -> None:
            t0 = time.perf_counter()
            marks: dict[str, float] = {}

            async def trace(name: str, info: Any) -> None:
                marks[name] = time.perf_counter()

            r = await c.get(B_GET, extensions={"trace": trace} if stages is not None else {})
            t1 = time.perf_counter()
            lat.append(t1 - t0)
            if starts is not None:
                starts.append(phase0 + (t0 - perf0))
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if stages is not None:
                m = marks.get
                c0, c1 = m("connection.connect_tcp.started"), m("connection.connect_tcp.complete")
                s0 = m("http11.send_request_headers.started")
                h0, h1 = m("http11.receive_response_headers.started"), m("http11.receive_response_headers.complete")
                if c0 is not None and c1 is not None:
                    stages.setdefault("connect", []).append(c1 - c0)
                if s0 is not None:
                    stages.setdefault("pool", []).append(s0 - t0 - ((c1 - c0) if c0 and c1 else 0.0))
                if s0 is not None and h0 is not None:
                    stages.setdefault("send", []).append(h0 - s0)
                if h0 is not None and h1 is not None:
                    stages.setdefault("answer", []).append(h1 - h0)

        phase0, perf0 = time.time(), time.perf_counter()
        async with trio.open_nursery() as n:
            start = trio.current_time()
            k = 0
            while trio.current_time() - start < seconds:
                n.start_soon(one, clients[k % len(clients)])
                k += 1
                await trio.sleep_until(start + k / rate)
    finally:
        for c in clients:
            await c.aclose()
    return lat, codes


#: A spinning process (the busy-machine phase): ``python -c _SPIN SECONDS``, bounded by its time.
_SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


async def _openloop_result(proc: trio.Process) -> dict[str, Any]:
    """The JSON line a ``bench._openloop`` process prints, once it has ended ({} if none)."""
    out = b""
    assert proc.stdout is not None
    while chunk := await proc.stdout.receive_some():
        out += chunk
    await proc.wait()
    got: dict[str, Any] = json.loads(out.decode().split("OPENLOOP ", 1)[1]) if b"OPENLOOP " in out else {}
    return got


def _stage_summary(stages: dict[str, list[float]]) -> dict[str, Any]:
    """Per stage of B's requests: how many had it, p50 and p99 in ms."""
    return {k: {"n": len(v), "p50_ms": round(_pct(v, 50) * 1000, 2), "p99_ms": round(_pct(v, 99) * 1000, 2)}
            for k, v in sorted(stages.items())}


def _wrk_lua(token: str, path: str) -> str:
    """wrk's script: GET ``path`` as ``token``; 429s counted (and those without Retry-After) in each
    thread and summed at the end (wrk's done() runs in its own Lua state: threads are read back)."""
    return f"""
wrk.method = "GET"
wrk.path = "{path}"
wrk.headers["Authorization"] = "Bearer {token}"
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) c429 = 0; c429nr = 0 end
function response(status, headers, body)
  if status == 429 then
    c429 = c429 + 1
    if headers["Retry-After"] == nil and headers["retry-after"] == nil then c429nr = c429nr + 1 end
  end
end
function done(summary, latency, requests)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("c429"); b = b + t:get("c429nr") end
  io.write(string.format('B12 {{"requests":%d,"duration_us":%d,"c429":%d,"c429_no_retry_after":%d}}\\n',
                         summary.requests, summary.duration, a, b))
end
"""


def _wrk_result(text: str) -> dict[str, Any]:
    """requests, duration_us, c429, c429_no_retry_after and non_2xx from wrk's output."""
    a: dict[str, Any] = {"requests": 0, "duration_us": 1, "c429": 0, "c429_no_retry_after": 0}
    if "B12 " in text:
        a.update(json.loads(text.split("B12 ", 1)[1].splitlines()[0]))
    a["non_2xx"] = sum(int(ln.split(":")[1]) for ln in text.splitlines() if "Non-2xx" in ln)
    a["socket_errors"] = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if "Socket errors" in ln), "")
    return a


async def _profile(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy samples of a gateway while the flood runs (bench/_profile.py folds them)."""
    from . import _profile as prof

    spy = prof.py_spy()
    if spy is None:
        return {"error": "py-spy not installed (pip install -e '.[bench]')"}
    raw = out.with_suffix(".raw")
    proc = await trio.run_process([spy, "record", "--pid", str(pid), "--duration", str(max(2, int(seconds))),
                                   "--rate", "100", "--format", "raw", "--threads", "--gil", "--output", str(raw)],
                                  capture_stdout=True, capture_stderr=True, check=False)
    if not raw.exists():
        return {"error": proc.stderr.decode()[-500:]}
    folded = prof.fold(raw.read_text(), top=15)
    out.write_text(json.dumps(folded, indent=1))
    return folded


async def reject_cost(gw: _Gw, data: Path, seconds: float = 5.0, conns: int = 64) -> dict[str, Any]:
    """The reject path alone: tenant A's user moved to a level of no seats that rejects (Reject, 0
    shares), then wrk GETs one of A's ConfigMaps. Nearly every answer is a 429; the gateway's CPU per
    answer is what a rejection costs (a figure a shared machine's load moves far less than a latency)."""
    async with _client(gw.url, gw.admin) as c:
        r = await c.post(_in(TA, f"{FC}/prioritylevelconfigurations"), json={
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": {"name": "b12-reject"}, "spec": {"type": "Limited", "limited": {
                "nominalConcurrencyShares": 0, "limitResponse": {"type": "Reject"}}}})
        assert r.status_code == 201, r.text
        r = await c.post(_in(TA, f"{FC}/flowschemas"), json={
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": "b12-reject"},
            "spec": {"priorityLevelConfiguration": {"name": "b12-reject"}, "matchingPrecedence": 10,
                     "rules": [{"subjects": [{"kind": "User", "user": {"name": A_USER}}],
                                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                   "namespaces": ["*"], "clusterScope": True}]}]}})
        assert r.status_code == 201, r.text
    wrk = await trio.to_thread.run_sync(ensure_wrk, lambda msg: print(msg, file=sys.stderr))
    if wrk is None:
        return {"reject_error": "wrk missing and apt-get could not install it"}
    lua = data / "reject.lua"
    lua.write_text(_wrk_lua(A_TOKEN, _in(TA, f"/api/v1/namespaces/{NS}/configmaps/cm-0001")))
    cpu0, t0 = proc_cpu_s(gw.proc.pid) or 0.0, time.monotonic()
    res = await trio.run_process([wrk, "-t1", f"-c{conns}", f"-d{int(seconds)}s", "-s", str(lua), gw.url],
                                 capture_stdout=True, check=False)
    cpu1, t1 = proc_cpu_s(gw.proc.pid) or 0.0, time.monotonic()
    w = _wrk_result(res.stdout.decode())
    n = w["requests"]
    return {"reject_answers_per_s": round(n / max(1e-9, t1 - t0), 1),
            "reject_share": round(w["c429"] / max(1, n), 3),
            "reject_gateway_cpu_us_per_answer": round(1e6 * (cpu1 - cpu0) / max(1, n), 1),
            "reject_gateway_cpu_cores": round((cpu1 - cpu0) / max(1e-9, t1 - t0), 2)}


async def main(seconds: float, flood_conns: int, inflight: int, mutating: int, *, gateways: int = 1,
               profile: Path | None = None, only_reject_cost: bool = False, fleet_period_s: float = 1.0,
               work_dir: Path | None = None, flood_x: float = FLOOD_X,
               fleet_leases_s: float = 0.0, serve_args: tuple[str, ...] = ()) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="jetkube-b12-", dir=work_dir))
    (data / "tokens.csv").write_text(f"{A_TOKEN},{A_USER},u-a\n{B_TOKEN},{B_USER},u-b\n")
    gws: list[_Gw] = []
    async with run_nats_server(data / "nats") as nats_url:
        try:
            for i in range(gateways):
                if i:  # a fleet shares its CA and service-account key (as `jetkube pki init` makes them)
                    shutil.copytree(data / "jk1" / "pki", data / f"jk{i + 1}" / "pki")
                gws.append(await _start(data / f"jk{i + 1}", nats_url, inflight, mutating, fleet_period_s,
                                        fleet_leases_s, serve_args))
            await _setup(gws)
            if only_reject_cost:
                return await reject_cost(gws[0], data)
            return await _measure(gws, data, seconds, flood_conns, profile, flood_x)
        finally:
            for gw in gws:
                gw.proc.terminate()
            for gw in gws:
                with trio.move_on_after(10):
                    await gw.proc.wait()
                if gw.proc.returncode is None:
                    gw.proc.kill()


async def _measure(gws: list[_Gw], data: Path, seconds: float, flood_conns: int,
                   profile: Path | None, flood_x: float = FLOOD_X) -> dict[str, Any]:
    urls = [gw.url for gw in gws]
    c0 = await _fleet_counts(gws)
    cap = await _capacity(urls, 5.0)
    c1 = await _fleet_counts(gws)
    # Seat lease round trips per request while A alone runs at capacity (closed loop, no 429s).
    cap_dispatched = c1.get("dispatched_a", 0.0) - c0.get("dispatched_a", 0.0)
    cap_rts = c1.get("lease_requests", 0.0) - c0.get("lease_requests", 0.0)
    rate_b = max(1.0, 0.05 * cap)
    stages0: dict[str, list[float]] = {}
    unloaded, codes0 = await _quiet(urls, rate_b, seconds, stages0)
    # The machine's own floor: B while every core is kept busy by a spinning process and A sends
    # nothing. The flood's generator shares this machine with the gateways (loopback only), so under
    # the flood every process in B's path (its client, the gateway, nats-server) also waits for a
    # core; this phase measures what that alone costs B, with no request of A in any event loop.
    spinners = [await trio.lowlevel.open_process([sys.executable, "-c", _SPIN, str(seconds + 1.0)])
                for _ in range(os.cpu_count() or 1)]
    try:
        busy, _codes = await _quiet(urls, rate_b, seconds)
    finally:
        for sp in spinners:
            sp.kill()
            await sp.wait()
    # B beside A at capacity (closed loop, as measured: no rejections): the part of B's latency under
    # the flood that A's admitted requests cause (they share the gateway's one event loop with B's).
    # A's loop runs in processes of its own (bench/_openloop.py --closed-conns), not in B's client's.
    sat = await _closed_loop(urls, seconds)
    saturated, _codes = await _quiet(urls, rate_b, seconds)
    a_sat = [await _openloop_result(p) for p in sat]
    w0 = await _b_wait(gws)
    # The flood: open loop, ``flood_x`` times the capacity over all gateways (split evenly), for
    # the quiet phase plus 2 s to establish; bounded by ``flood_conns`` connections per gateway.
    flood_s = seconds + 2.0
    f0 = await _fleet_counts(gws)
    load0 = os.getloadavg()[0]
    cpu0, t0 = sum(proc_cpu_s(gw.proc.pid) or 0.0 for gw in gws), time.monotonic()
    floods = [await _a_openloop(url, "--rate", str(flood_x * cap / len(urls)), "--seconds", str(flood_s),
                                "--max-conns", str(flood_conns)) for url in urls]
    await trio.sleep(2.0)  # the flood established
    # A's rejections, sampled: 429 with Retry-After and the PF headers.
    samples: list[dict[str, str]] = []
    folded: dict[str, Any] = {}

    async def sample() -> None:
        with trio.move_on_after(seconds):  # a queued sample may wait up to the queue-wait bound
            async with _client(urls[-1], A_TOKEN) as c:
                for _ in range(40):
                    r = await c.get(A_LIST)
                    if r.status_code == 429:
                        samples.append({k: r.headers.get(k, "") for k in (
                            "Retry-After", "X-Kubernetes-PF-FlowSchema-UID", "X-Kubernetes-PF-PriorityLevel-UID")})

    async def spy() -> None:
        assert profile is not None
        folded.update(await _profile(gws[0].proc.pid, seconds - 1, profile))

    stages1: dict[str, list[float]] = {}
    starts1: list[float] = []
    async with trio.open_nursery() as n:
        n.start_soon(sample)
        if profile is not None:
            n.start_soon(spy)
        loaded, codes1 = await _quiet(urls, rate_b, seconds, stages1, starts1)
    # The flood's own CPU (it shares the machine with the gateways), read while it still runs.
    flood_cpu = sum(proc_cpu_s(fl.pid) or 0.0 for fl in floods) / max(1e-9, time.monotonic() - t0)
    a: dict[str, Any] = {}
    for fl in floods:
        got = await _openloop_result(fl)
        for k, v in got.items():
            if k == "codes":
                for code, n in v.items():
                    a.setdefault("codes", {})[code] = a.get("codes", {}).get(code, 0) + n
            elif isinstance(v, (int, float)) and k not in ("rate", "seconds", "send_seconds",
                                                           "all_connections_answered_s", "all_connections_answered_at"):
                a[k] = a.get(k, 0) + v
            elif k in ("seconds", "send_seconds"):
                a[k] = max(a.get(k, 0.0), v)
            elif k in ("all_connections_answered_s", "all_connections_answered_at"):  # the last one established
                a[k] = None if v is None or a.get(k, 0.0) is None else max(a.get(k, 0.0), v)
    cpu1, t1 = sum(proc_cpu_s(gw.proc.pid) or 0.0 for gw in gws), time.monotonic()
    load1 = os.getloadavg()[0]
    w1 = await _b_wait(gws)
    f1 = await _fleet_counts(gws)
    fleet = {k: f1.get(k, 0.0) - f0.get(k, 0.0) for k in f1}
    a_rate = a.get("attempted", 0) / max(1e-9, a.get("send_seconds", flood_s))
    a_sent = a.get("sent", 0) / max(1e-9, a.get("send_seconds", flood_s))
    a_requests = a.get("answered", 0)
    res: dict[str, Any] = {
        "gateways": len(gws), "capacity_list_per_s": round(cap, 1), "b_rate_per_s": round(rate_b, 1),
        "a_offered_per_s": round(a_rate, 1), "a_offered_x_capacity": round(a_rate / cap, 1) if cap else None,
        "a_sent_per_s": round(a_sent, 1), "a_sent_x_capacity": round(a_sent / cap, 1) if cap else None,
        "a_requests": a_requests, "a_attempted": a.get("attempted", 0), "a_sent": a.get("sent", 0),
        "a_not_sent_all_conns_busy": a.get("not_sent_all_busy", 0), "a_errors": a.get("errors", 0),
        "a_timeouts": a.get("timeouts", 0), "a_connections_opened": a.get("connections_opened", 0),
        "a_codes": a.get("codes", {}), "a_non_2xx": sum(n for c, n in a.get("codes", {}).items() if not
                                                        str(c).startswith("2")),
        "a_429": a.get("c429", 0), "a_429_without_retry_after": a.get("c429_no_retry_after", 0),
        "a_429_sampled": len(samples),
        "a_429_with_retry_after": sum(1 for s in samples if s["Retry-After"]),
        "a_429_with_pf_headers": sum(1 for s in samples if s["X-Kubernetes-PF-FlowSchema-UID"]
                                     and s["X-Kubernetes-PF-PriorityLevel-UID"]),
        "retry_after_values": sorted({s["Retry-After"] for s in samples}),
        "b_unloaded_p50_ms": round(_pct(unloaded, 50) * 1000, 2),
        "b_unloaded_p99_ms": round(_pct(unloaded, 99) * 1000, 2),
        "b_loaded_p50_ms": round(_pct(loaded, 50) * 1000, 2),
        "b_loaded_p99_ms": round(_pct(loaded, 99) * 1000, 2),
        "b_codes_unloaded": codes0, "b_codes_loaded": codes1,
        "b_saturated_p50_ms": round(_pct(saturated, 50) * 1000, 2),
        "b_saturated_p99_ms": round(_pct(saturated, 99) * 1000, 2),
        "a_saturated_per_s": round(sum(x.get("answered", 0) for x in a_sat) / seconds, 1),
        "a_saturated_429": sum(x.get("codes", {}).get("429", 0) for x in a_sat),
        "busy_spinners": len(spinners),
        "b_busy_p50_ms": round(_pct(busy, 50) * 1000, 2),
        "b_busy_p99_ms": round(_pct(busy, 99) * 1000, 2),
        "b_stages_unloaded": _stage_summary(stages0), "b_stages_loaded": _stage_summary(stages1),
        # The gateways' CPU under the flood, and per request they answered (mostly 429s).
        "gateway_cpu_cores_under_flood": round((cpu1 - cpu0) / max(1e-9, t1 - t0), 2),
        "flood_cpu_cores": round(flood_cpu, 2),
        "gateway_cpu_us_per_answered": round(1e6 * (cpu1 - cpu0) / max(1, a_requests + len(loaded)
                                                                        + len(samples)), 1)}
    res["b_p99_within_2x"] = res["b_loaded_p99_ms"] <= 2 * res["b_unloaded_p99_ms"]
    # The flood is established once each of its connections had a first answer (until then the
    # gateway also accepts connections and reads first requests, which are not paced). B's loaded
    # phase starts 2 s after the flood; if the flood took longer, B's requests sent before it was
    # established are told apart (a diagnostic: the target is on every request above).
    est, est_at = a.get("all_connections_answered_s"), a.get("all_connections_answered_at")
    res["a_established_s"] = est
    if est_at is not None:
        after = [x for x, t in zip(loaded, starts1, strict=True) if t >= est_at]
        res["b_loaded_after_established"] = {"n": len(after), "p50_ms": round(_pct(after, 50) * 1000, 2),
                                             "p99_ms": round(_pct(after, 99) * 1000, 2)}
    # Under the flood, over all gateways: each tenant's requests dispatched (B's share of them), and
    # with --apf-fleet-leases the seat lease round trips per request dispatched and the fallbacks.
    dispatched = fleet.get("dispatched_a", 0.0) + fleet.get("dispatched_b", 0.0)
    res["load_average_1m"] = [round(load0, 2), round(load1, 2)]
    res["dispatched_a"], res["dispatched_b"] = int(fleet.get("dispatched_a", 0)), int(fleet.get("dispatched_b", 0))
    res["b_share_of_dispatched"] = round(fleet.get("dispatched_b", 0.0) / dispatched, 4) if dispatched else None
    res["fleet_leases_ttl_s"] = fleet_leases_s_of(gws)
    if res["fleet_leases_ttl_s"]:
        res["lease_round_trips"] = int(fleet.get("lease_requests", 0))
        res["lease_round_trips_per_request"] = (round(fleet.get("lease_requests", 0.0) / dispatched, 4)
                                                if dispatched else None)
        res["lease_fallbacks"] = int(fleet.get("lease_fallbacks", 0))
        res["capacity_lease_round_trips"] = int(cap_rts)
        res["capacity_lease_round_trips_per_request"] = round(cap_rts / cap_dispatched, 4) if cap_dispatched else None
        res["lease_failures"] = int(fleet.get("lease_failures", 0))
    # Where B's time went: its mean wait in flow control's queues under the flood (from the
    # gateways' apiserver_flowcontrol_request_wait_duration_seconds), beside its latency.
    n_wait = w1[1] - w0[1]
    res["b_apf_wait_mean_ms"] = round(1000 * (w1[0] - w0[0]) / n_wait, 2) if n_wait else None
    if len(gws) == 1:
        res.update(await reject_cost(gws[0], data))
    if profile is not None:
        res["profile"] = {k: folded.get(k) for k in ("samples", "components", "main_thread_self",
                                                     "jetkube_inclusive", "error") if k in folded}
    return res


def fleet_leases_s_of(gws: list[_Gw]) -> float:
    return max((gw.leases_s for gw in gws), default=0.0)


async def _fleet_counts(gws: list[_Gw]) -> dict[str, float]:
    """Summed over the gateways' /metrics: requests dispatched for A and B, seat lease round trips,
    failures and fallbacks (counters: the caller takes differences)."""
    out: dict[str, float] = {}

    def add(k: str, v: float) -> None:
        out[k] = out.get(k, 0.0) + v

    for gw in gws:
        async with _client(gw.url, gw.admin) as c:
            text = (await c.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
                for key, t in (("dispatched_a", TA), ("dispatched_b", TB)):
                    if f'tenant="{t}"' in line:
                        add(key, float(line.rsplit(" ", 1)[1]))
            elif line.startswith("jetkube_apf_fleet_lease_requests_total "):
                add("lease_requests", float(line.rsplit(" ", 1)[1]))
            elif line.startswith("jetkube_apf_fleet_lease_fallbacks_total "):
                add("lease_fallbacks", float(line.rsplit(" ", 1)[1]))
            elif line.startswith("jetkube_apf_fleet_lease_failures_total{"):
                add("lease_failures", float(line.rsplit(" ", 1)[1]))
    return out


async def _b_wait(gws: list[_Gw]) -> tuple[float, float]:
    """(sum, count) of tenant B's flow-control waits on every gateway, from /metrics."""
    total, count = 0.0, 0.0
    for gw in gws:
        async with _client(gw.url, gw.admin) as c:
            text = (await c.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("apiserver_flowcontrol_request_wait_duration_seconds_") and f'tenant="{TB}"' in line:
                if line.startswith("apiserver_flowcontrol_request_wait_duration_seconds_sum"):
                    total += float(line.rsplit(" ", 1)[1])
                elif line.startswith("apiserver_flowcontrol_request_wait_duration_seconds_count"):
                    count += float(line.rsplit(" ", 1)[1])
    return total, count


# ---- make bench (bench/_runner.py) ---------------------------------------------------------------------


def header(sid: str, seconds: float, flood_conns: int) -> str:
    gws = (f"two gateways on one NATS (fleet-wide APF: reports every 1 s, seats leased from each tenant's owner, "
           f"--apf-fleet-leases {FLEET_LEASES_S:g})" if sid == "B13" else "one gateway")
    return (f"{gws}, 3 seats each; tenant A: LIST of {OBJECTS} ConfigMaps open loop at {FLOOD_X:.0f}x the measured "
            f"LIST capacity (at most {flood_conns} connections per gateway); tenant B: GET at 5% of the capacity, "
            f"open loop; {seconds:.0f}s each: unloaded, every core busy (spinning processes, no A), beside A at "
            f"capacity, under the flood")


def rows(sid: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    """The runner's row: B's p99 under the flood against 2x its unloaded p99, A's 429s."""
    x = r.get("a_offered_x_capacity") or 0.0
    ok_p99 = bool(r["b_p99_within_2x"])
    ok_429 = (r["a_429"] > 0 and r["a_429_without_retry_after"] == 0
              and r["a_429_with_retry_after"] == r["a_429_sampled"])
    note = (f"capacity {r['capacity_list_per_s']:.0f} LIST/s (closed loop); A offered {r['a_offered_per_s']:.0f}/s "
            f"({x:.1f}x, open loop), sent {r['a_sent_per_s']:.0f}/s ({r['a_sent_x_capacity']:.1f}x; "
            f"{r['a_not_sent_all_conns_busy']:,} not sent: all connections busy), {r['a_timeouts']:,} timed out, "
            f"{r['a_errors']:,} errors; {r['a_429']:,} of {r['a_requests']:,} answered 429 "
            f"({r['a_429_without_retry_after']} without Retry-After); sampled 429s "
            f"{r['a_429_sampled']} (Retry-After on {r['a_429_with_retry_after']}, values "
            f"{','.join(r['retry_after_values']) or '-'}; PF headers on {r['a_429_with_pf_headers']}); "
            f"B p50 {r['b_unloaded_p50_ms']:.0f} -> {r['b_loaded_p50_ms']:.0f} ms, "
            f"p99 {r['b_unloaded_p99_ms']:.0f} -> {r['b_loaded_p99_ms']:.0f} ms, B codes {r['b_codes_loaded']}, "
            f"B's mean wait in flow control's queues {r.get('b_apf_wait_mean_ms')} ms; "
            f"B on a machine whose {r.get('busy_spinners')} cores are kept busy by spinning processes, A sending "
            f"nothing (the machine's floor): p50 {r.get('b_busy_p50_ms')} ms, p99 {r.get('b_busy_p99_ms')} ms; "
            f"B beside A at capacity without the flood (closed loop, A {r.get('a_saturated_per_s')}/s, "
            f"{r.get('a_saturated_429')} 429s): p50 {r.get('b_saturated_p50_ms')} ms, "
            f"p99 {r.get('b_saturated_p99_ms')} ms; "
            f"gateway CPU {r['gateway_cpu_cores_under_flood']} cores under the flood, the flood's generator "
            f"{r.get('flood_cpu_cores')}")
    if r.get("b_share_of_dispatched") is not None:
        note += f"; B's share of the requests dispatched under the flood {r['b_share_of_dispatched']:.1%}"
    if r.get("fleet_leases_ttl_s"):
        note += (f"; seat lease round trips {r['lease_round_trips']:,} "
                 f"({r['lease_round_trips_per_request']} per request dispatched; at capacity without the flood "
                 f"{r['capacity_lease_round_trips_per_request']}), fallbacks {r['lease_fallbacks']}")
    if r.get("a_established_s") is not None:
        ae = r.get("b_loaded_after_established") or {}
        note += (f"; the flood established (each connection answered once) {r['a_established_s']:.1f}s after it started"
                 f" (B's phase starts at 2 s); B's {ae.get('n', 0)} requests sent after that: "
                 f"p50 {ae.get('p50_ms')} ms, p99 {ae.get('p99_ms')} ms")
    note += f"; load average {r['load_average_1m'][0]}-{r['load_average_1m'][1]}"
    if "reject_gateway_cpu_us_per_answer" in r:
        note += (f"; reject path alone: {r['reject_gateway_cpu_us_per_answer']:.0f} us gateway CPU per 429 "
                 f"({r['reject_answers_per_s']:.0f}/s, {r['reject_share']:.0%} rejected)")
    if (r.get("a_sent_x_capacity") or 0.0) < 10:
        note += f"; the flood reached {r.get('a_sent_x_capacity')}x capacity on the wire, not 10x"
    return [{"id": sid, "value": r["b_loaded_p99_ms"], "unit": "ms",
             "target": f"B p99 <= 2x unloaded ({2 * r['b_unloaded_p99_ms']:.0f} ms); A 429 + Retry-After",
             "met": ok_p99 and ok_429, "note": note, "details": r}]


def phase_s(quick: bool) -> float:
    return QUICK_PHASE_S if quick else PHASE_S


async def scenario(sid: str, *, quick: bool, run_dir: Path) -> list[dict[str, Any]]:
    r = await main(phase_s(quick), FLOOD_CONNS, 2, 1, gateways=2 if sid == "B13" else 1, work_dir=run_dir,
                   fleet_leases_s=FLEET_LEASES_S if sid == "B13" else 0.0)
    return rows(sid, r)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.apf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=PHASE_S, help="each phase's length")
    ap.add_argument("--gateways", type=int, default=1, help="1: B12; 2: B13 (the flood on each)")
    ap.add_argument("--flood-conns", type=int, default=FLOOD_CONNS, help="the flood's connections per gateway, at most")
    ap.add_argument("--flood-x", type=float, default=FLOOD_X, help="A's open-loop rate, times the measured capacity")
    ap.add_argument("--max-requests-inflight", type=int, default=2)
    ap.add_argument("--max-mutating-requests-inflight", type=int, default=1)
    ap.add_argument("--apf-fleet-period", type=float, default=1.0, help="the gateways' --apf-fleet-period")
    ap.add_argument("--apf-fleet-leases", type=float, default=None, metavar="TTL_SECONDS",
                    help=f"the gateways' --apf-fleet-leases (default: {FLEET_LEASES_S:g} with 2 gateways, else 0)")
    ap.add_argument("--profile", type=Path, default=None, metavar="FILE",
                    help="py-spy the (first) gateway under the flood; the folded profile to FILE (JSON)")
    ap.add_argument("--reject-cost-only", action="store_true",
                    help="only the reject path's cost (A on a level that rejects; wrk GETs)")
    ap.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="an extra flag for the gateways' `jetkube serve` (repeatable), e.g. "
                         "--serve-arg=--audit-policy-file=FILE")
    ns = ap.parse_args()
    print(json.dumps(trio.run(lambda: main(
        ns.seconds, ns.flood_conns, ns.max_requests_inflight, ns.max_mutating_requests_inflight,
        gateways=ns.gateways, profile=ns.profile, only_reject_cost=ns.reject_cost_only,
        fleet_period_s=ns.apf_fleet_period, flood_x=ns.flood_x,
        fleet_leases_s=(FLEET_LEASES_S if ns.gateways > 1 else 0.0) if ns.apf_fleet_leases is None
        else ns.apf_fleet_leases, serve_args=tuple(ns.serve_arg))), indent=1))
