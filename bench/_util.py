"""Small shared pieces: latency histograms, /proc readings, Prometheus text, request bodies.

Nothing here starts a process or opens a socket except :func:`http_call` (a blocking one-shot
request for setup steps, run in a thread by the orchestrator).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import time
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


# ---- latency histogram ---------------------------------------------------------------------------

class Hist:
    """Log-bucketed latency histogram (about 1% resolution), mergeable across processes."""

    __slots__ = ("b", "max", "n", "total")

    def __init__(self) -> None:
        self.b: dict[int, int] = {}
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        us = seconds * 1e6
        k = int(math.log(us) * 100) if us >= 1.0 else 0
        b = self.b
        b[k] = b.get(k, 0) + 1
        self.n += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def merge(self, other: Hist) -> None:
        for k, c in other.b.items():
            self.b[k] = self.b.get(k, 0) + c
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, p: float, missing: int = 0) -> float | None:
        """Seconds at percentile ``p``; ``missing`` samples count as infinitely slow (inf)."""
        total = self.n + missing
        if total == 0:
            return None
        rank = max(1, math.ceil(p / 100.0 * total))
        if rank > self.n:
            return math.inf
        seen = 0
        for k in sorted(self.b):
            seen += self.b[k]
            if seen >= rank:
                return min(math.exp((k + 0.5) / 100) / 1e6, self.max) if k else 1e-6
        return self.max

    def summary(self, missing: int = 0) -> dict[str, Any]:
        def ms(v: float | None) -> float | None:
            if v is None:
                return None
            return v if math.isinf(v) else round(v * 1000, 3)

        return {"count": self.n, "mean_ms": ms(self.total / self.n) if self.n else None,
                "p50_ms": ms(self.percentile(50, missing)), "p90_ms": ms(self.percentile(90, missing)),
                "p99_ms": ms(self.percentile(99, missing)), "p999_ms": ms(self.percentile(99.9, missing)),
                "max_ms": ms(self.max) if self.n else None}

    def to_json(self) -> dict[str, Any]:
        return {"b": {str(k): c for k, c in self.b.items()}, "n": self.n, "total": self.total, "max": self.max}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Hist:
        h = cls()
        h.b = {int(k): int(c) for k, c in d.get("b", {}).items()}
        h.n, h.total, h.max = int(d.get("n", 0)), float(d.get("total", 0.0)), float(d.get("max", 0.0))
        return h


# ---- /proc -------------------------------------------------------------------------------------------

def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all threads), seconds; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon of a process, bytes."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def machine_cpu() -> tuple[float, float, float]:
    """(busy, steal, total) jiffies of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    steal = parts[7] if len(parts) > 7 else 0
    total = sum(parts[:8])
    return float(total - idle - steal), float(steal), float(total)


class CpuWindow:
    """CPU used by some processes (and the machine) between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.t0 = 0.0
        self.c0: dict[str, float | None] = {}
        self.m0 = (0.0, 0.0, 0.0)
        self.result: dict[str, Any] = {}

    def start(self) -> CpuWindow:
        self.t0 = time.monotonic()
        self.c0 = {k: proc_cpu_s(p) for k, p in self.pids.items()}
        self.m0 = machine_cpu()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        m1 = machine_cpu()
        out: dict[str, Any] = {"wall_s": round(wall, 3)}
        tracked = 0.0
        for k, p in self.pids.items():
            c1, c0 = proc_cpu_s(p), self.c0.get(k)
            if c1 is not None and c0 is not None and wall > 0:
                out[f"{k}_cores"] = round((c1 - c0) / wall, 3)
                tracked += (c1 - c0) / wall
        dt = m1[2] - self.m0[2]
        if dt > 0:
            busy = (m1[0] - self.m0[0]) / dt
            out["machine_busy"] = round(busy, 3)  # fraction of all cores
            out["steal"] = round((m1[1] - self.m0[1]) / dt, 3)
            # Busy cores not charged to a tracked process (children that exited, kernel, others).
            out["untracked_cores"] = round(max(0.0, busy * NCPU - tracked), 3)
        self.result = out
        return out


# ---- Prometheus text ---------------------------------------------------------------------------------

def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, by its series (name and labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            continue
    return out


def series_sum(metrics: dict[str, float], name: str) -> float:
    """The sum of every series of ``name`` (all label sets) in :func:`parse_metrics`' result."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def stage_breakdown(before: dict[str, float] | None, after: dict[str, float] | None,
                    requests: int, wall_s: float, server_cores: float | None) -> dict[str, Any]:
    """Per-stage server time from the gateway's own counters (deltas over a scenario).

    ``jetkube_stage_duration_seconds`` (its ``_sum``) is wall time inside each actor's handler (it includes
    awaits: the resource actor's includes the append wait), so the resource actor's own share is
    its busy time minus the append time.
    """
    if before is None or after is None:
        return {"available": False}

    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    out: dict[str, Any] = {"available": True}
    stages: dict[str, Any] = {}
    for actor in ("authn", "flowcontrol", "authz", "admission", "resource", "admission-mutating",
                  "admission-validating"):
        h = d(f'jetkube_stage_duration_seconds_count{{stage="{actor}"}}')
        s = d(f'jetkube_stage_duration_seconds_sum{{stage="{actor}"}}')
        if f'jetkube_stage_duration_seconds_count{{stage="{actor}"}}' not in after:
            stages[actor] = None
            continue
        stages[actor] = {"handled": int(h), "busy_s": round(s, 4), "mean_us": round(s / h * 1e6, 1) if h else None}
    n_app = d("jetkube_log_append_duration_seconds_count")
    s_app = d("jetkube_log_append_duration_seconds_sum")
    if "jetkube_log_append_duration_seconds_count" in after:
        stages["append_wait"] = {"handled": int(n_app), "busy_s": round(s_app, 4),
                                 "mean_us": round(s_app / n_app * 1e6, 1) if n_app else None}
        res = stages.get("resource")
        if res and res["handled"]:
            own = res["busy_s"] - s_app
            stages["resource_excl_append"] = {"busy_s": round(own, 4),
                                              "mean_us": round(own / res["handled"] * 1e6, 1)}
    stages["encode"] = None  # not exported by the gateway (GET/LIST join stored bytes; no encode stage)
    out["stages"] = stages
    if server_cores is not None and requests:
        out["server_cpu_us_per_request"] = round(server_cores * wall_s / requests * 1e6, 1)
    return out


# ---- request bodies ----------------------------------------------------------------------------------

_VALUE = "v" * 110


def cm_body_parts(ns: str, size: int = 1024, *, with_rv: bool = False, with_time: bool = False
                  ) -> tuple[bytes, ...]:
    """A ConfigMap body of about ``size`` bytes, split where the variable parts go.

    plain:      body = pre + name + post
    with_rv:    body = pre + name + mid + rv + mid2 + rv + post (the rv also goes into ``data``,
                so every update changes the object: an identical PUT is a no-op that writes nothing)
    with_time:  body = pre + name + mid + send_time + post
    """
    head = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"'
    meta_tail = f'","namespace":"{ns}","labels":{{"app":"bench","tier":"load"}}}},"data":{{'
    used = len(head) + len(meta_tail) + 40 + (40 if with_rv else 0) + (30 if with_time else 0)
    keys = []
    i = 0
    while used < size - 20:
        chunk = f'"key-{i}":"{_VALUE[: max(1, min(110, size - used - 20))]}",'
        keys.append(chunk)
        used += len(chunk)
        i += 1
    data = "".join(keys).rstrip(",")
    if with_rv:
        pieces = [head, '","resourceVersion":"', meta_tail + data + ',"rev":"', '"}}']
        return (pieces[0].encode(), pieces[1].encode(), pieces[2].encode(), pieces[3].encode())
    if with_time:
        return (head.encode(), (meta_tail + data + ',"sent":"').encode(), b'"}}')
    return (head.encode(), (meta_tail + data + "}}").encode())


def cm_body(ns: str, name: str, size: int = 1024, rv: int | None = None) -> bytes:
    if rv is None:
        pre, post = cm_body_parts(ns, size)
        return pre + name.encode() + post
    pre, mid, mid2, post = cm_body_parts(ns, size, with_rv=True)
    r = str(rv).encode()
    return pre + name.encode() + mid + r + mid2 + r + post


# ---- one-shot HTTP for setup -------------------------------------------------------------------------

def http_call(port: int, method: str, path: str, token: str, body: bytes | None = None, *,
              timeout_s: float = 30.0, content_type: str = "application/json") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def http_json(port: int, method: str, path: str, token: str, obj: Any = None, **kw: Any) -> tuple[int, Any]:
    code, data = http_call(port, method, path, token, None if obj is None else json.dumps(obj).encode(), **kw)
    try:
        return code, json.loads(data) if data else None
    except ValueError:
        return code, data[:500]


def write_result(out_path: str, result: dict[str, Any]) -> None:
    """A child process's result for the orchestrator: written whole, then renamed into place."""
    result["pid"] = os.getpid()
    with open(out_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out_path + ".tmp", out_path)
