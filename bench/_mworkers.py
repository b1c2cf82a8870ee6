"""M1 and M2: ``jetkube serve --workers N`` (N = the cores) on create and get, each beside C1 run
with the same number of no-op worker processes on hypercorn's trio worker (``bench._noop --workers N``:
a listening socket per worker on one port, SO_REUSEPORT, as jetkube's workers listen).

The gateway is started after B2's objects are on the log (every worker's projection folds them at
start). Server CPU per request sums the parent and every worker; /metrics is not used here (a
scrape answers for whichever worker accepted the connection). With B7 wanted too, B7 and B7o run
again on this server (rows ``B7/workers``, ``B7o/workers``), their writes paced at half M1's rate:
the consistent-read target on the server as it runs by default, every core.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import trio

from ._procs import child_pids, spawn, start_gateway, stop_gateway
from ._util import NCPU, cm_body

if TYPE_CHECKING:
    from ._runner import Bench

TARGETS = {"M1": 0.60, "M2": 0.85}


def header(b: Bench) -> str:
    p = b.p
    load = "wrk -t1" if b.wrk else "python loadgen"
    return (f"jetkube serve --workers {NCPU} (the cores) vs C1 on {NCPU} hypercorn trio processes, a listening socket each "
            f"on one port (SO_REUSEPORT); {p.conns} connections ({load}); M1 = B1's creates ({p.http_s:.0f}s), M2 = B2's "
            f"consistent GETs ({p.http_s:.0f}s), each right after its C1 mix ({p.c1_s:.0f}s)")


def _cores(cpu: dict[str, Any], prefix: str) -> float:
    return round(sum(v for k, v in cpu.items() if k.startswith(prefix) and k.endswith("_cores")), 3)


async def run(b: Bench) -> list[dict[str, Any]]:
    g1 = b.g1
    assert g1 is not None
    await b.ensure_b2_objects()
    port_file = b.path("noop-workers.port")
    noop = spawn(b.children, [sys.executable, "-m", "bench._noop", str(port_file), "--workers", str(NCPU)],
                 b.path("noop-workers.log"))
    gw = None
    try:
        with trio.fail_after(60):
            while not port_file.exists() or not port_file.read_text().strip():
                if noop.popen.poll() is not None:
                    raise RuntimeError(f"no-op server exited: {noop.out_path.read_text()[-500:]}")
                await trio.sleep(0.05)
        noop_port = int(port_file.read_text())
        noop_pids = {"noop": noop.pid, **{f"noop_w{i}": p for i, p in enumerate(child_pids(noop.pid))}}
        gw = await start_gateway(b.children, "GM", b.run_dir / "gwm", b.nats_url, pki_from=g1.data_dir / "pki",
                                 extra_args=b.serve_args, workers=NCPU)
        gw_pids = {"jetkube": gw.pid, **{f"jetkube_w{i}": p for i, p in enumerate(child_pids(gw.pid))
                                          if b"gateway" in _cmdline(p)}}
        b.log(f"   jetkube --workers {NCPU}: pid {gw.pid}, workers {list(gw_pids.values())[1:]}, ready in "
              f"{gw.ready_s:.1f}s; no-op --workers {NCPU}: pid {noop.pid}")
        body = cm_body("bench", "c1-object", b.p.body_bytes)
        rows = []
        for sid, op, method in (("M1", "create", "POST"), ("M2", "get", "GET")):
            c1 = await b.measured([], lambda m=method, sid=sid: b.load(  # type: ignore[misc]
                ports=[noop_port], token="none", op="raw", method=m, path="/api/v1/namespaces/bench/configmaps",
                body=body if m == "POST" else b"", duration_s=b.p.c1_s, name=f"C1x{NCPU}-{sid}"),
                extra_pids=noop_pids)
            r = await b.measured([], lambda op=op, sid=sid: b.load(  # type: ignore[misc]
                ports=[gw.port], token=gw.token, op=op, ns="b1" if op == "create" else "b2", prefix="m1",
                names=("g-", b.p.b2_names), duration_s=b.p.http_s, name=sid), extra_pids=gw_pids)
            r["ceiling_run"] = c1
            ceiling = c1["rps"]
            ratio = r["rps"] / ceiling if ceiling else None
            cores = _cores(r["cpu"], "jetkube")
            us = cores * r["cpu"]["wall_s"] / r["ok"] * 1e6 if r["ok"] else None
            c1_cores = _cores(c1["cpu"], "noop")
            c1_us = c1_cores * c1["cpu"]["wall_s"] / c1["ok"] * 1e6 if c1["ok"] else None
            lat = r["lat_ms"]
            rows.append({
                "id": sid, "value": r["rps"], "unit": "/s", "ceiling": ceiling,
                "ceiling_label": f"C1 x{NCPU} workers ({method})", "ratio": ratio,
                "target": f">= {TARGETS[sid]:.2f} x C1 x{NCPU}", "met": ratio is not None and ratio >= TARGETS[sid],
                "note": "; ".join(x for x in (
                    f"p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms, {r['ok']:,} ok"
                    + (f", errors {r['errors']}" if r.get("errors") else ""),
                    f"jetkube {cores} cores" + (f" ({us:.0f}us CPU/request)" if us else "")
                    + f", nats {r['cpu'].get('nats_cores')}",
                    f"C1 x{NCPU} {c1_cores} cores" + (f" ({c1_us:.0f}us/request)" if c1_us else ""),
                    f"loadgen {r.get('loadgen_cores')} (C1: {c1.get('loadgen_cores')}) cores",
                    f"machine busy {r['cpu'].get('machine_busy')}") if x),
                "details": r})
        if b.want("B7"):  # B7 on the server as it runs by default (every core), at half M1's write capacity
            m1 = next(r for r in rows if r["id"] == "M1")
            rows += await b.b7(on=(gw, gw_pids, float(m1["value"])))
        return rows
    finally:
        if gw is not None:
            await stop_gateway(b.children, gw)
        b.children.stop(noop.pid)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
