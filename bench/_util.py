"""Small shared pieces: latency histograms, /proc readings, Prometheus text, request bodies.

Nothing here starts a process or opens a socket except :func:`http_call` (a blocking one-shot
request for setup steps, run in a thread by the orchestrator).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
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
    for actor in ("authn", "flowcontrol", "authz", "admission", "resource"):
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
#
# A load writes one resource: a collection path and body templates. A template is an object whose
# variable parts are the markers below; :func:`split_body` encodes it once and cuts it where they
# are, so a load generator (Python or wrk's Lua) builds each body by joining bytes.

NAME, RV, TIME = "@@name@@", "@@rv@@", "@@time@@"
_MARKS = (NAME, RV, TIME)
_MARK_RE = re.compile("|".join(re.escape(m) for m in _MARKS))
_VALUE = "v" * 110


def split_body(template: dict[str, Any]) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    """(parts, slots): the compact JSON of ``template`` cut at its markers, and the markers in order.

    body = parts[0] + value(slots[0]) + parts[1] + ... + parts[-1]
    """
    text = json.dumps(template, separators=(",", ":"))
    slots = tuple(m.group(0) for m in _MARK_RE.finditer(text))
    parts = tuple(p.encode() for p in _MARK_RE.split(text))
    return parts, slots


def fill_body(parts: tuple[bytes, ...], slots: tuple[str, ...], values: dict[str, bytes]) -> bytes:
    out = [parts[0]]
    for slot, part in zip(slots, parts[1:]):
        out.append(values[slot])
        out.append(part)
    return b"".join(out)


def cm_object(ns: str, size: int = 1024, *, with_rv: bool = False, with_time: bool = False) -> dict[str, Any]:
    """A ConfigMap template of about ``size`` bytes (name, and rv or send time, as markers).

    with_rv puts the rv into ``data`` too, so every update changes the object: an identical PUT is
    a no-op that writes nothing.
    """
    meta: dict[str, Any] = {"name": NAME}
    if with_rv:
        meta["resourceVersion"] = RV
    meta.update(namespace=ns, labels={"app": "bench", "tier": "load"})
    head = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"'
    meta_tail = f'","namespace":"{ns}","labels":{{"app":"bench","tier":"load"}}}},"data":{{'
    used = len(head) + len(meta_tail) + 40 + (40 if with_rv else 0) + (30 if with_time else 0)
    data: dict[str, str] = {}
    i = 0
    while used < size - 20:
        value = _VALUE[: max(1, min(110, size - used - 20))]
        data[f"key-{i}"] = value
        used += len(f'"key-{i}":"{value}",')
        i += 1
    if with_rv:
        data["rev"] = RV
    if with_time:
        data["sent"] = TIME
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def cm_body(ns: str, name: str, size: int = 1024, rv: int | None = None) -> bytes:
    parts, slots = split_body(cm_object(ns, size, with_rv=rv is not None))
    r = str(rv).encode()
    return fill_body(parts, slots, {NAME: name.encode(), RV: r})


def cm_target(ns: str, size: int = 1024, *, with_time: bool = False) -> dict[str, Any]:
    """The ConfigMap load: collection path and create/update templates (the default of every load)."""
    return {"collection": f"/api/v1/namespaces/{ns}/configmaps",
            "create": cm_object(ns, size, with_time=with_time), "update": cm_object(ns, size, with_rv=True)}


POD_REV_ANNOTATION = "bench.jetkube.io/rev"


def pod_object(ns: str, *, with_time: bool = False) -> dict[str, Any]:
    """A Pod as a Deployment's pod template would make it (about 3 KB): an app container, a proxy
    sidecar and an init container, with env, ports, resources, probes, mounts and volumes. It
    leaves most fields to the server's defaulting (restartPolicy, dnsPolicy, imagePullPolicy,
    ports' protocol, probes' periods, volumes' defaultMode, ...)."""
    labels = {"app": "shop-api", "release": "shop-prod", "version": "2.14.3", "pod-template-hash": "7d9f8c6b5d"}
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"}
    if with_time:
        annotations["bench.jetkube.io/sent"] = TIME

    def env(**kv: str) -> list[dict[str, Any]]:
        return [{"name": k, "value": v} for k, v in kv.items()]

    field = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}}
             for n, p in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                          ("POD_IP", "status.podIP"), ("NODE_NAME", "spec.nodeName"))]
    app = {
        "name": "api", "image": "registry.example.com/shop/api:2.14.3",
        "args": ["--config=/etc/shop/config.yaml", "--listen=:8080", "--metrics-listen=:9102"],
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9102}],
        "env": [*field, *env(LOG_LEVEL="info", DB_HOST="shop-db.shop.svc.cluster.local",
                             DB_PORT="5432", DB_NAME="shop",
                             GOMAXPROCS="2"),
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}],
        "envFrom": [{"configMapRef": {"name": "shop-api-env"}}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 10,
                          "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/shop", "readOnly": True},
                         {"name": "tls", "mountPath": "/etc/shop/tls", "readOnly": True},
                         {"name": "cache", "mountPath": "/var/cache/shop"}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    proxy = {
        "name": "proxy", "image": "envoyproxy/envoy:v1.31.2",
        "ports": [{"name": "https", "containerPort": 8443}, {"name": "admin", "containerPort": 9901}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 10},
        "volumeMounts": [{"name": "envoy", "mountPath": "/etc/envoy", "readOnly": True},
                         {"name": "tls", "mountPath": "/etc/tls", "readOnly": True}],
    }
    init = {
        "name": "migrate", "image": "registry.example.com/shop/api:2.14.3",
        "command": ["/app/shop-api", "migrate", "--wait-for-db=60s"],
        "env": [*env(DB_HOST="shop-db.shop.svc.cluster.local", DB_PORT="5432", DB_NAME="shop"),
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": NAME, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {
            "initContainers": [init], "containers": [app, proxy],
            "volumes": [{"name": "config", "configMap": {"name": "shop-api-config"}},
                        {"name": "envoy", "configMap": {"name": "shop-api-envoy",
                                                        "items": [{"key": "envoy.yaml", "path": "envoy.yaml"}]}},
                        {"name": "tls", "secret": {"secretName": "shop-api-tls"}},
                        {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
            "serviceAccountName": "shop-api", "terminationGracePeriodSeconds": 45,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [{"key": "workload", "operator": "Equal", "value": "api", "effect": "NoSchedule"}],
        },
    }


def update_object(stored: dict[str, Any], ns: str) -> dict[str, Any]:
    """The update template for an object as the server stored it, as a client's read-modify-write
    sends it: the stored object (its defaults included, its status left out) with the name, the
    resourceVersion and a changing annotation as markers, so every PUT changes the object and
    none changes what is immutable."""
    obj = {k: v for k, v in stored.items() if k != "status"}
    meta = {k: v for k, v in stored["metadata"].items()
            if k not in ("uid", "creationTimestamp", "managedFields", "generation", "resourceVersion", "name")}
    obj["metadata"] = {"name": NAME, "resourceVersion": RV, **meta, "namespace": ns,
                       "annotations": {**(meta.get("annotations") or {}), POD_REV_ANNOTATION: RV}}
    return obj


def pod_target(ns: str, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Pod load: collection path, the create template, and the update template built from a
    pod as the server stored it (the create template itself when none is given)."""
    return {"collection": f"/api/v1/namespaces/{ns}/pods", "create": pod_object(ns),
            "update": update_object(stored if stored is not None else pod_object(ns), ns)}


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
