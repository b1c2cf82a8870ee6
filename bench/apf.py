"""B12: fairness under a flood (API Priority and Fairness). ``python -m bench.apf [--seconds S]``.

One jetkube (embedded nats-server) with a seat budget that fits one Python process
(``--max-requests-inflight 2 --max-mutating-requests-inflight 1``, 3 seats: every executing
request shares one core, so a seat is a share of CPU; kube's 600 seats are for many cores). Two requesters, each its own flow of the ``global-default`` level (ByUser;
tenant resolution by path is the tenancy issue's: until it lands, the two requesters are two users
of one tenant, and the cross-tenant layer is the unit tests'):

- A lists 500 ConfigMaps (5 seats each) from ``--flood-conns`` closed-loop wrk connections;
- B GETs one ConfigMap open-loop at 5% of the capacity measured first (A's LIST rate, closed loop).

Printed: the capacity, A's offered rate as a multiple of it, A's 429s (and that they carry
Retry-After), B's p50/p99 unloaded and under the flood, and whether p99 stayed within 2x.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

from ._util import proc_cpu_s

A_TOKEN, B_TOKEN = "b12-flood-token", "b12-quiet-token"
NS = "default"
OBJECTS = 500


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1)]


async def _start(data: Path, inflight: int, mutating: int) -> tuple[trio.Process, str, str]:
    tokens = data / "tokens.csv"
    tokens.write_text(f"{A_TOKEN},flood-a,u-a\n{B_TOKEN},quiet-b,u-b\n")
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data / "jk"), "--port", "0",
         "--insecure-port", "0", "--token-file", str(tokens), "--max-requests-inflight", str(inflight),
         "--max-mutating-requests-inflight", str(mutating)], stdout=subprocess.PIPE)
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
    return proc, fields["http"], kube["users"][0]["user"]["token"]


async def _seed(url: str, admin_token: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30) as c:
        crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "b12-view"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                              "kind": "ClusterRole", "name": "view"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": n}
                            for n in ("flood-a", "quiet-b")]}
        assert (await c.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=crb)).status_code == 201

        async def make(lo: int) -> None:
            for i in range(lo, OBJECTS, 16):
                r = await c.post(f"/api/v1/namespaces/{NS}/configmaps",
                                 json={"metadata": {"name": f"cm-{i:04d}"}, "data": {"v": "x" * 200}})
                assert r.status_code == 201, r.text

        async with trio.open_nursery() as n:
            for lo in range(16):
                n.start_soon(make, lo)


async def _capacity(url: str, seconds: float) -> float:
    done = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {A_TOKEN}"}, timeout=30,
                                 limits=httpx.Limits(max_connections=32)) as c:
        deadline = trio.current_time() + seconds

        async def loop() -> None:
            nonlocal done
            while trio.current_time() < deadline:
                r = await c.get(f"/api/v1/namespaces/{NS}/configmaps")
                if r.status_code == 200:
                    done += 1

        async with trio.open_nursery() as n:
            for _ in range(16):
                n.start_soon(loop)
    return done / seconds


async def _quiet(url: str, rate: float, seconds: float) -> tuple[list[float], dict[int, int]]:
    """Open loop: one GET every 1/rate s, each timed on its own (a slow one does not delay the next)."""
    lat: list[float] = []
    codes: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {B_TOKEN}"}, timeout=30,
                                 limits=httpx.Limits(max_connections=64)) as c:
        async def one() -> None:
            t0 = time.perf_counter()
            r = await c.get(f"/api/v1/namespaces/{NS}/configmaps/cm-0001")
            lat.append(time.perf_counter() - t0)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

        async with trio.open_nursery() as n:
            start = trio.current_time()
            k = 0
            while trio.current_time() - start < seconds:
                n.start_soon(one)
                k += 1
                await trio.sleep_until(start + k / rate)
    return lat, codes


def _wrk_lua(token: str) -> str:
    return f"""
wrk.method = "GET"
wrk.path = "/api/v1/namespaces/{NS}/configmaps"
wrk.headers["Authorization"] = "Bearer {token}"
local codes = {{}}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status == 429 and headers["Retry-After"] == nil then codes["429-no-retry-after"] = (codes["429-no-retry-after"] or 0) + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format('B12 {{"requests":%d,"duration_us":%d}}\\n', summary.requests, summary.duration))
end
"""


async def _profile(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy samples of the gateway while the flood runs (bench/_profile.py folds them)."""
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


async def reject_cost(url: str, admin_token: str, data: Path, seconds: float = 5.0,
                      conns: int = 64, pid: int | None = None) -> dict[str, Any]:
    """The reject path alone: A's flow moved to a level of no seats that rejects (Reject, 0 shares),
    then wrk GETs one ConfigMap as A. Nearly every answer is a 429; the gateway's CPU per answer is
    what a rejection costs (a figure a shared machine's load moves far less than a latency)."""
    fc = "/apis/flowcontrol.apiserver.k8s.io/v1"
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30) as c:
        r = await c.post(f"{fc}/prioritylevelconfigurations", json={
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": {"name": "b12-reject"}, "spec": {"type": "Limited", "limited": {
                "nominalConcurrencyShares": 0, "limitResponse": {"type": "Reject"}}}})
        assert r.status_code == 201, r.text
        r = await c.post(f"{fc}/flowschemas", json={
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": "b12-reject"},
            "spec": {"priorityLevelConfiguration": {"name": "b12-reject"}, "matchingPrecedence": 10,
                     "rules": [{"subjects": [{"kind": "User", "user": {"name": "flood-a"}}],
                                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                   "namespaces": ["*"], "clusterScope": True}]}]}})
        assert r.status_code == 201, r.text
    lua = data / "reject.lua"
    lua.write_text(_wrk_lua(A_TOKEN).replace(f'"/api/v1/namespaces/{NS}/configmaps"',
                                            f'"/api/v1/namespaces/{NS}/configmaps/cm-0001"'))
    assert pid is not None
    cpu0, t0 = proc_cpu_s(pid) or 0.0, time.monotonic()
    res = await trio.run_process(["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "-s", str(lua), url],
                                 capture_stdout=True, check=False)
    cpu1, t1 = proc_cpu_s(pid) or 0.0, time.monotonic()
    text = res.stdout.decode()
    a = json.loads(text.split("B12 ", 1)[1].splitlines()[0]) if "B12 " in text else {"requests": 0}
    non2xx = sum(int(ln.split(":")[1]) for ln in text.splitlines() if "Non-2xx" in ln)
    return {"reject_answers_per_s": round(a["requests"] / max(1e-9, t1 - t0), 1),
            "reject_share": round(non2xx / max(1, a["requests"]), 3),
            "reject_gateway_cpu_us_per_answer": round(1e6 * (cpu1 - cpu0) / max(1, a["requests"]), 1),
            "reject_gateway_cpu_cores": round((cpu1 - cpu0) / max(1e-9, t1 - t0), 2)}


async def main(seconds: float, flood_conns: int, inflight: int, mutating: int,
               profile: Path | None = None, only_reject_cost: bool = False) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="jetkube-b12-"))
    proc, url, admin = await _start(data, inflight, mutating)
    try:
        await _seed(url, admin)
        if only_reject_cost:
            if profile is None:
                return await reject_cost(url, admin, data, pid=proc.pid)
            out: dict[str, Any] = {}
            async with trio.open_nursery() as n:
                async def spy() -> None:
                    await trio.sleep(1.0)
                    folded = await _profile(proc.pid, 3.0, profile)
                    out["profile"] = {k: folded.get(k) for k in ("samples", "components", "main_thread_self")}
                n.start_soon(spy)
                out.update(await reject_cost(url, admin, data, pid=proc.pid))
            return out
        cap = await _capacity(url, 5.0)
        rate_b = max(1.0, 0.05 * cap)
        unloaded, codes0 = await _quiet(url, rate_b, seconds)
        lua = data / "flood.lua"
        lua.write_text(_wrk_lua(A_TOKEN))
        cpu0, t0 = proc_cpu_s(proc.pid) or 0.0, time.monotonic()
        wrk = await trio.lowlevel.open_process(
            ["wrk", "-t1", f"-c{flood_conns}", f"-d{int(seconds) + 4}s", "--timeout", "20s", "-s", str(lua), url],
            stdout=subprocess.PIPE)
        await trio.sleep(2.0)  # the flood established
        # A's rejections, sampled: 429 with Retry-After and the PF headers.
        samples: list[dict[str, str]] = []
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {A_TOKEN}"}, timeout=30) as c:
            async def sample() -> None:
                with trio.move_on_after(seconds):  # a queued sample may wait up to the queue-wait bound
                    await _sample()

            async def _sample() -> None:
                for _ in range(40):
                    r = await c.get(f"/api/v1/namespaces/{NS}/configmaps")
                    if r.status_code == 429:
                        samples.append({k: r.headers.get(k, "") for k in (
                            "Retry-After", "X-Kubernetes-PF-FlowSchema-UID", "X-Kubernetes-PF-PriorityLevel-UID")})

            folded: dict[str, Any] = {}

            async def spy() -> None:
                assert profile is not None
                folded.update(await _profile(proc.pid, seconds - 1, profile))

            async with trio.open_nursery() as n:
                n.start_soon(sample)
                if profile is not None:
                    n.start_soon(spy)
                loaded, codes1 = await _quiet(url, rate_b, seconds)
        out = b""
        assert wrk.stdout is not None
        while chunk := await wrk.stdout.receive_some():
            out += chunk
        await wrk.wait()
        cpu1, t1 = proc_cpu_s(proc.pid) or 0.0, time.monotonic()
        text = out.decode()
        a = json.loads(text.split("B12 ", 1)[1].splitlines()[0]) if "B12 " in text else {"requests": 0,
                                                                                           "duration_us": 1}
        non2xx = 0
        for ln in text.splitlines():
            if "Non-2xx" in ln:
                non2xx = int(ln.split(":")[1])
        a_rate = a["requests"] / (a["duration_us"] / 1e6)
        res = {"capacity_list_per_s": round(cap, 1), "b_rate_per_s": round(rate_b, 1),
               "a_offered_per_s": round(a_rate, 1), "a_offered_x_capacity": round(a_rate / cap, 1),
               "a_requests": a["requests"], "a_non_2xx": non2xx,
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
               # The gateway's CPU per request it answered during the flood (mostly 429s): the cost
               # of the reject path, less sensitive to a shared machine's load than latencies.
               "gateway_cpu_cores_under_flood": round((cpu1 - cpu0) / max(1e-9, t1 - t0), 2),
               "gateway_cpu_us_per_answered": round(1e6 * (cpu1 - cpu0) / max(
                   1, a["requests"] + len(loaded) + len(samples)), 1)}
        res["b_p99_within_2x"] = res["b_loaded_p99_ms"] <= 2 * res["b_unloaded_p99_ms"]
        res.update(await reject_cost(url, admin, data, pid=proc.pid))
        if profile is not None:
            res["profile"] = {k: folded.get(k) for k in ("samples", "components", "main_thread_self",
                                                         "jetkube_inclusive", "error") if k in folded}
        return res
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.apf", description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--flood-conns", type=int, default=600)
    ap.add_argument("--max-requests-inflight", type=int, default=2)
    ap.add_argument("--max-mutating-requests-inflight", type=int, default=1)
    ap.add_argument("--profile", type=Path, default=None, metavar="FILE",
                    help="py-spy the gateway under the flood; the folded profile to FILE (JSON)")
    ap.add_argument("--reject-cost-only", action="store_true",
                    help="only the reject path's cost (A on a level that rejects; wrk GETs)")
    ns = ap.parse_args()
    print(json.dumps(trio.run(main, ns.seconds, ns.flood_conns, ns.max_requests_inflight,
                              ns.max_mutating_requests_inflight, ns.profile, ns.reject_cost_only), indent=1))
