"""``python -m bench.crd``: create / get / update of a custom resource whose CRD has 5 CEL rules,
beside the same for a ConfigMap, on one in-process jetkube over a real nats-server (its own data
directory, plain HTTP, ``CONC`` concurrent clients); then the CEL engine alone (evaluations/s of the
5 rules on one object, ``kinds._cel`` on cel-expr-python).

Prints one JSON object: ops/s and p50/p99 latency (ms) per kind and operation, and the CEL figure.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bus import run_nats_server
from gateway import Settings, serve

N = 600
CONC = 16
RULES = [
    {"rule": "self.replicas <= self.maxReplicas", "message": "replicas above maxReplicas"},
    {"rule": "self.image.startsWith('registry.example.com/')", "message": "image from the registry only"},
    {"rule": "size(self.tags) <= 8", "message": "at most 8 tags"},
    {"rule": "self.tags.all(t, t.matches('^[a-z0-9-]+$'))", "message": "tags are lowercase"},
    {"rule": "!has(self.mode) || self.mode in ['fast', 'safe']", "message": "unknown mode"},
]
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "apps.bench.example.com"},
    "spec": {"group": "bench.example.com", "scope": "Namespaced",
             "names": {"plural": "apps", "singular": "app", "kind": "App"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {
                     "type": "object", "x-kubernetes-validations": RULES,
                     "properties": {"replicas": {"type": "integer"}, "maxReplicas": {"type": "integer"},
                                    "image": {"type": "string"}, "mode": {"type": "string"},
                                    "tags": {"type": "array", "items": {"type": "string"}}}}}}}}]},
}
SPEC = {"replicas": 2, "maxReplicas": 5, "image": "registry.example.com/app:1", "mode": "fast",
        "tags": ["a", "b-c", "d1"]}


def cr(name: str, n: int = 0) -> dict[str, Any]:
    return {"apiVersion": "bench.example.com/v1", "kind": "App", "metadata": {"name": name},
            "spec": {**SPEC, "replicas": n % 5}}


def cm(name: str, n: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"replicas": str(n % 5), "image": SPEC["image"], "mode": "fast", "tags": "a,b-c,d1"}}


async def phase(c: httpx.AsyncClient, op: str, base: str, make: Any, prefix: str) -> dict[str, float]:
    lat: list[float] = []
    todo = iter(range(N))

    async def worker() -> None:
        for i in todo:
            name = f"{prefix}-{i}"
            t0 = time.perf_counter()
            if op == "create":
                r = await c.post(base, json=make(name, i))
                ok = r.status_code == 201
            elif op == "get":
                r = await c.get(f"{base}/{name}")
                ok = r.status_code == 200
            else:
                r = await c.put(f"{base}/{name}", json=make(name, i + 1))
                ok = r.status_code == 200
            if not ok:
                raise AssertionError(f"{op} {name}: {r.status_code} {r.text[:300]}")
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for _ in range(CONC):
            n.start_soon(worker)
    wall = time.perf_counter() - t0
    lat.sort()
    return {"ops_per_s": round(N / wall), "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2)}


def cel_rate() -> float:
    from kinds._crd import validate_custom
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[index]
    obj = cr("x", 1)
    validate_custom(obj, None, schema)
    calls = 5000
    t0 = time.perf_counter()
    for _ in range(calls):
        validate_custom(obj, None, schema)
    return calls * len(RULES) / (time.perf_counter() - t0)


async def main() -> dict[str, Any]:
    out: dict[str, Any] = {"n": N, "concurrency": CONC}
    with tempfile.TemporaryDirectory() as tmp:
        async with run_nats_server(Path(tmp) / "nats") as url, trio.open_nursery() as nursery:
            stop = trio.Event()
            running = await nursery.start(lambda task_status: serve(Settings(
                data_dir=str(Path(tmp) / "jk"), port=0, insecure_port=0, nats_url=url), shutdown=stop,
                task_status=task_status))
            limits = httpx.Limits(max_connections=CONC)
            async with httpx.AsyncClient(base_url=running.http_url, limits=limits, timeout=60,
                                         headers={"Authorization": f"Bearer {running.admin_token}"}) as c:
                assert (await c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                     json=CRD)).status_code == 201
                while (await c.get("/apis/bench.example.com/v1/namespaces/default/apps")).status_code != 200:
                    await trio.sleep(0.05)
                for label, base, make in (
                        ("configmap", "/api/v1/namespaces/default/configmaps", cm),
                        ("custom_resource_5_cel", "/apis/bench.example.com/v1/namespaces/default/apps", cr)):
                    out[label] = {op: await phase(c, op, base, make, "o") for op in ("create", "get", "update")}
            stop.set()
    out["cel_rule_evaluations_per_s"] = round(cel_rate())
    return out


if __name__ == "__main__":
    print(json.dumps(trio.run(main), indent=1))
    sys.exit(0)
