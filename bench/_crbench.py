"""BC and BS: custom resources and server-side apply, each as a ratio to the ConfigMap or update
figure measured beside it in the same run (the machine is shared; only figures side by side compare).

BC  create / get / update of a custom resource whose CRD has 5 CEL rules (``bench.crd``'s App:
    structural schema, pruning, the rules on every write) against the same three for a ConfigMap
    holding the same values as strings, on G1 with the same load: rows ``BC/create``, ``BC/get``,
    ``BC/update``, ratio = custom resource / ConfigMap.
BS  server-side apply against update for the same change: the same ConfigMaps' body (a changing
    ``data.rev``) sent as a PUT with resourceVersion, then as an apply patch (``application/
    apply-patch+yaml``, one manager, force) to other ConfigMaps made alike; ratio = apply / update.
    Both with the Python load generator (wrk has no apply script). The in-process cost of the
    managedFields work alone (``bench.ssa_cost``) is in the note.

Each pair runs in the order A, B, B, A (half the usual duration each), so that a drift of the
shared machine's load weighs on both figures alike.

Objects read and updated are created through the API first (each load's own set), so every kind
goes through the same path; updates own their objects per connection (never two in flight).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from . import crd as crdbench
from ._util import NAME, RV

if TYPE_CHECKING:
    from ._runner import Bench

CRD_NAME = "apps.bench.example.com"


def cm_target(ns: str) -> dict[str, Any]:
    def obj(rev: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": NAME, "namespace": ns, "labels": {"app": "bench"}}
        data = {"replicas": "2", "maxReplicas": "5", "image": crdbench.SPEC["image"], "mode": "fast",
                "tags": "a,b-c,d1"}
        if rev:
            meta["resourceVersion"] = RV
            data["rev"] = RV
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}

    return {"collection": f"/api/v1/namespaces/{ns}/configmaps", "create": obj(False), "update": obj(True)}


def cr_target(ns: str) -> dict[str, Any]:
    def obj(rev: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": NAME, "namespace": ns, "labels": {"app": "bench"}}
        spec = dict(crdbench.SPEC)
        if rev:
            meta["resourceVersion"] = RV
            spec["tags"] = ["a", "b-c", RV]  # a changed value every update (tags match '^[a-z0-9-]+$')
        return {"apiVersion": "bench.example.com/v1", "kind": "App", "metadata": meta, "spec": spec}

    return {"collection": f"/apis/bench.example.com/v1/namespaces/{ns}/apps", "create": obj(False),
            "update": obj(True)}


def _filled(tmpl: dict[str, Any], name: str) -> dict[str, Any]:
    import copy
    out = copy.deepcopy(tmpl)
    out["metadata"]["name"] = name
    return out


async def _setup(bench: Bench, namespaces: tuple[str, ...], crd: bool) -> None:
    gw = bench.g1
    assert gw is not None
    for ns in namespaces:
        code, body = await bench.api(gw, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        if code not in (201, 409):
            raise RuntimeError(f"cannot create namespace {ns}: {code} {body}")
    if not crd:
        return
    code, body = await bench.api(gw, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crdbench.CRD)
    if code not in (201, 409):
        raise RuntimeError(f"the bench CRD was not accepted: {code} {str(body)[:1000]}")
    with trio.fail_after(30):
        while (await bench.api(gw, "GET", cr_target(namespaces[0])["collection"]))[0] != 200:
            await trio.sleep(0.05)


async def _make(bench: Bench, target: dict[str, Any], prefix: str, count: int) -> list[list[Any]]:
    """``count`` objects ``<prefix><i>`` created through the API (8 at a time); [name, rv] each."""
    gw = bench.g1
    assert gw is not None
    out: list[list[Any]] = [[] for _ in range(count)]
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            name = f"{prefix}{i}"
            code, body = await bench.api(gw, "POST", target["collection"], _filled(target["create"], name))
            if code != 201:
                raise RuntimeError(f"create {name}: {code} {str(body)[:500]}")
            out[i] = [name, int(body["metadata"]["resourceVersion"])]

    async with trio.open_nursery() as n:
        for _ in range(8):
            n.start_soon(worker)
    return out


def _row(bench: Bench, sid: str, title: str, r: dict[str, Any], base: dict[str, Any], base_label: str,
         what: str) -> dict[str, Any]:
    row = bench.http_row(sid, r, "", 0.0)
    del row["ceiling_key"], row["target_ratio"]
    ratio = r["rps"] / base["rps"] if base.get("rps") else None
    # Server CPU per request is the steadier figure on a shared machine (rates follow its load).
    cpu, base_cpu = ((x.get("server") or {}).get("server_cpu_us_per_request") for x in (r, base))
    if cpu and base_cpu:
        what += f"; server CPU {cpu:.0f}us/request vs {base_cpu:.0f}us ({cpu / base_cpu:.2f}x)"
    row.update(title=title, ceiling=base["rps"], ceiling_label=base_label, ratio=ratio, met=None,
               target=f"(info) reported beside {base_label}", informational=True,
               note=f"{what}; {base_label}: {base['rps']:,.0f}/s p99 {base['lat_ms']['p99_ms']:.1f}ms; " + row["note"],
               baseline=base)
    if r.get("ok", 0) < r.get("requests", 0):
        bench.log(f"   {sid}: {r['requests'] - r['ok']} of {r['requests']} requests failed: {r.get('errors')}")
    return row


async def _current(bench: Bench, target: dict[str, Any], prefix: str) -> list[list[Any]]:
    """[name, rv] of the objects ``<prefix>*`` as they are now (after a load changed them)."""
    gw = bench.g1
    assert gw is not None
    code, body = await bench.api(gw, "GET", target["collection"])
    if code != 200:
        raise RuntimeError(f"list {target['collection']}: {code}")
    return [[i["metadata"]["name"], int(i["metadata"]["resourceVersion"])] for i in body["items"]
            if i["metadata"]["name"].startswith(prefix)]


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Two runs of a load as one: requests over time, the worse latencies, CPU per request."""
    out = dict(runs[0])
    ok = sum(r["ok"] for r in runs)
    el = sum(r["elapsed_s"] for r in runs)
    out.update(ok=ok, requests=sum(r["requests"] for r in runs), rps=ok / el if el else 0.0, elapsed_s=el,
               lat_ms={k: max(r["lat_ms"][k] for r in runs) for k in runs[0]["lat_ms"]}, runs=runs)
    cpu = [(r["ok"], (r.get("server") or {}).get("server_cpu_us_per_request")) for r in runs]
    if ok and all(c for _, c in cpu):
        out["server"] = {**(runs[0].get("server") or {}),
                         "server_cpu_us_per_request": sum(n * c for n, c in cpu) / ok}  # type: ignore[operator]
    return out


async def _abba(bench: Bench, a: Any, b: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads ``a`` and ``b`` in the order a, b, b, a (a drift of the machine's load in between
    weighs on both alike); each the mean of its two runs."""
    ra1 = await a()
    rb1 = await b()
    rb2 = await b()
    ra2 = await a()
    return _mean([ra1, ra2]), _mean([rb1, rb2])


async def run_bc(bench: Bench) -> list[dict[str, Any]]:
    gw = bench.g1
    assert gw is not None
    p = bench.p
    dur = max(2.0, p.http_s / 2)
    await _setup(bench, ("bccr", "bccm"), crd=True)
    targets = {"cm": cm_target("bccm"), "cr": cr_target("bccr")}
    created = {"cm": 0, "cr": 0}

    def load(tag: str, op: str) -> Any:
        async def go() -> dict[str, Any]:
            t = targets[tag]
            kw: dict[str, Any] = {}
            if op == "create":
                created[tag] += 1
                kw["prefix"] = f"bc{tag}{created[tag]}"
            elif op == "get":
                kw["names"] = ("bcg-", p.b3_objects)
            else:
                kw["objects"] = await _current(bench, t, "bcg-")
            return await bench.measured([gw], lambda: bench.load(
                ports=[gw.port], token=gw.token, op=op, duration_s=dur, name=f"BC-{tag}-{op}", target=t, **kw))
        return go

    got: dict[str, dict[str, dict[str, Any]]] = {"cm": {}, "cr": {}}
    got["cm"]["create"], got["cr"]["create"] = await _abba(bench, load("cm", "create"), load("cr", "create"))
    for tag in ("cm", "cr"):
        await _make(bench, targets[tag], "bcg-", p.b3_objects)
    for op in ("get", "update"):
        got["cm"][op], got["cr"][op] = await _abba(bench, load("cm", op), load("cr", op))
    rows = []
    for op, title, what in (("create", "create a custom resource (5 CEL rules)", "POST, unique names"),
                            ("get", "get a custom resource by name", f"consistent GET of {p.b3_objects} objects"),
                            ("update", "update a custom resource with resourceVersion",
                             f"PUT of {p.b3_objects} objects, a changed value each time")):
        rows.append(_row(bench, f"BC/{op}", title, got["cr"][op], got["cm"][op], "ConfigMap", what))
    return rows


async def run_bs(bench: Bench) -> list[dict[str, Any]]:
    from . import ssa_cost

    gw = bench.g1
    assert gw is not None
    p = bench.p
    dur = max(2.0, p.http_s / 2)
    await _setup(bench, ("bsu", "bsa"), crd=False)
    targets = {"update": cm_target("bsu"), "apply": cm_target("bsa")}
    for t in targets.values():
        await _make(bench, t, "bs-", p.b3_objects)

    def load(op: str) -> Any:
        async def go() -> dict[str, Any]:
            t = targets[op]
            objects = await _current(bench, t, "bs-")
            return await bench.measured([gw], lambda: bench.load(
                ports=[gw.port], token=gw.token, op=op, objects=objects, duration_s=dur, name=f"BS-{op}",
                target=t, force_python=True))
        return go

    update, apply = await _abba(bench, load("update"), load("apply"))
    m = await trio.to_thread.run_sync(lambda: ssa_cost.measure(5, 400))
    what = (f"the same ConfigMap change ({p.b3_objects} objects) as an apply patch (force, one manager) vs a PUT; "
            f"in process, a 5-container Deployment's managedFields: update {m['update_us']:.0f}us, apply "
            f"{m['apply_us']:.0f}us per write (bench.ssa_cost)")
    return [_row(bench, "BS", "server-side apply vs update, same change", apply, update, "update", what)]


def header_bc(bench: Bench) -> str:
    p = bench.p
    load = "wrk -t1" if bench.wrk else "python loadgen"
    return (f"create, get, update of a custom resource (CRD with a structural schema and 5 CEL rules, ~330 B) and "
            f"of a ConfigMap of the same values (~300 B) on G1, in the order ConfigMap, CR, CR, ConfigMap: "
            f"{p.conns} connections ({load}), {max(2.0, p.http_s / 2):.0f}s each run; {p.b3_objects} objects for GETs "
            f"and PUTs")


def header_bs(bench: Bench) -> str:
    p = bench.p
    return (f"PUT with resourceVersion, then server-side apply (PATCH application/apply-patch+yaml, force) of the "
            f"same ConfigMap body, {p.b3_objects} objects each owned by one connection, in the order update, apply, "
            f"apply, update: {p.conns} connections (python loadgen), {max(2.0, p.http_s / 2):.0f}s each run")
