"""BP: B1, B2 and B3 for Pods (a ~3.3 KB Deployment-style pod that the server defaults and
validates) beside the ConfigMap figures, as rows ``B1/pod``, ``B2/pod`` and ``B3/pod`` against
the same C1 ceilings (the C1-write and C1-get runs bracketing BP).

The same load code path as B1-B3, with another target (bench._util.pod_target): creates POST
``pod_object``; GETs read pods seeded on the log from a pod jetkube created (so they are stored
as jetkube stores them, defaults included); updates PUT the stored pod back (status left out,
as a client's read-modify-write sends it) with a changing annotation, so every update is a
write and none touches what is immutable in a pod spec.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._util import NAME, RV, fill_body, pod_object, pod_target, split_body

if TYPE_CHECKING:
    from ._runner import Bench

NAMESPACES = ("b1p", "b2p", "b3p")
ROWS = ("B1/pod", "B2/pod", "B3/pod")


def body_bytes(tmpl: dict[str, Any]) -> int:
    parts, slots = split_body(tmpl)
    return len(fill_body(parts, slots, {NAME: b"b1p-0-1000", RV: b"1000000"}))


async def prepare(bench: Bench) -> dict[str, Any]:
    """Namespaces, the template pod (created through jetkube) and a check that the update template
    is accepted; the pod as jetkube stored it."""
    gw = bench.g1
    assert gw is not None
    for ns in (*NAMESPACES, "tmpl"):
        code, body = await bench.api(gw, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        if code not in (201, 409):
            raise RuntimeError(f"cannot create namespace {ns}: {code} {body}")
        # The pod runs as this service account: kube's ServiceAccount admission refuses a pod
        # whose account does not exist.
        sa = pod_object(ns)["spec"]["serviceAccountName"]
        code, body = await bench.api(gw, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": sa}})
        if code not in (201, 409):
            raise RuntimeError(f"cannot create service account {ns}/{sa}: {code} {body}")
    parts, slots = split_body(pod_object("tmpl"))
    code, stored = await bench.api(gw, "POST", "/api/v1/namespaces/tmpl/pods",
                                   json.loads(fill_body(parts, slots, {NAME: b"t-pod"})))
    if code == 409:
        code, stored = await bench.api(gw, "GET", "/api/v1/namespaces/tmpl/pods/t-pod")
    if code not in (200, 201) or not isinstance(stored, dict):
        raise RuntimeError(f"the bench pod was not accepted: {code} {str(stored)[:1500]}")
    bench.templates["pods"] = {"group": "", "object": stored}
    parts, slots = split_body(pod_target("tmpl", stored)["update"])
    rv = stored["metadata"]["resourceVersion"].encode()
    code, updated = await bench.api(gw, "PUT", "/api/v1/namespaces/tmpl/pods/t-pod",
                                    json.loads(fill_body(parts, slots, {NAME: b"t-pod", RV: rv})))
    if code != 200:
        raise RuntimeError(f"the bench pod's update was not accepted: {code} {str(updated)[:1500]}")
    return stored


async def run(bench: Bench) -> list[dict[str, Any]]:
    gw = bench.g1
    assert gw is not None
    p = bench.p
    stored = await prepare(bench)
    sent = body_bytes(pod_object("b1p"))
    stored_bytes = len(json.dumps(stored, separators=(",", ":")))
    update_bytes = body_bytes(pod_target("b3p", stored)["update"])
    rows: list[dict[str, Any]] = []

    def row(sid: str, r: dict[str, Any], key: str, target: float, p99_max_ms: float | None, title: str,
            what: str) -> dict[str, Any]:
        out = bench.http_row(sid, r, key, target, p99_max_ms)
        out["title"] = title
        out["ceiling_tag"] = "BP"  # the C1 runs bracketing BP, not those beside B1-B3
        cm = next((x for x in bench.rows if x.get("id") == sid.split("/")[0] and "error" not in x), None)
        vs = f"; {r['rps'] / cm['value']:.2f}x the ConfigMap figure of this run" if cm and cm.get("value") else ""
        out["note"] = f"{what}{vs}; " + out["note"]
        if r.get("ok", 0) < r.get("requests", 0):
            bench.log(f"   {sid}: {r['requests'] - r['ok']} of {r['requests']} requests failed: {r.get('errors')}")
        return out

    # B1/pod: creates.
    t1 = pod_target("b1p", stored)
    r = await bench.measured([gw], lambda: bench.load(ports=[gw.port], token=gw.token, op="create", ns="b1p",
                                                      prefix="b1p", duration_s=p.http_s, name="B1-pod", target=t1))
    rows.append(row("B1/pod", r, "C1-write", 0.60, 1000.0, "create a Pod",
                    f"POST pods, {sent:,} B bodies ({stored_bytes:,} B as stored, defaulted)"))

    # B2/pod: consistent GETs of pods seeded on the log.
    await bench.seed(bench.nats_url, [bench.group("pods", ["b2p"], p.b2_names, "gp-")], "seed-b2-pod")
    await bench.wait_applied(gw, await bench.log_api.head())
    t2 = pod_target("b2p", stored)
    r = await bench.measured([gw], lambda: bench.load(ports=[gw.port], token=gw.token, op="get", ns="b2p",
                                                      names=("gp-", p.b2_names), duration_s=p.http_s,
                                                      name="B2-pod", target=t2))
    rows.append(row("B2/pod", r, "C1-get", 0.85, None, "get a Pod by name",
                    f"consistent GET of {p.b2_names} pods by name ({stored_bytes:,} B each)"))

    # B3/pod: PUTs of the stored pods with resourceVersion.
    d = await bench.seed(bench.nats_url, [bench.group("pods", ["b3p"], p.b3_objects, "up-")], "seed-b3-pod",
                         want_seqs=p.b3_objects)
    await bench.wait_applied(gw, await bench.log_api.head())
    t3 = pod_target("b3p", stored)
    objects = d["objects_rv"]
    r = await bench.measured([gw], lambda: bench.load(ports=[gw.port], token=gw.token, op="update", ns="b3p",
                                                      objects=objects, duration_s=p.http_s, name="B3-pod",
                                                      target=t3))
    rows.append(row("B3/pod", r, "C1-write", 0.55, None, "update a Pod with resourceVersion",
                    f"PUT of {p.b3_objects} stored pods with resourceVersion, {update_bytes:,} B bodies "
                    f"(the stored pod less its status, a changed annotation)"))
    return rows


def header(bench: Bench) -> str:
    p = bench.p
    load = "wrk -t1" if bench.wrk else "python loadgen"
    sent = body_bytes(pod_object("b1p"))
    return (f"B1, B2, B3 with Pods (2 containers + 1 init container, env, ports, resources, probes, 5 volumes; "
            f"{sent:,} B create bodies, defaulted and validated by the server): {p.conns} connections ({load}), "
            f"{p.http_s:.0f}s each; {p.b2_names} pods for GETs, {p.b3_objects} for PUTs (seeded on the log)")
