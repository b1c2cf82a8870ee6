"""History figures: one object's history among many events, and a resource as of an old version.

    .venv/bin/python -m bench._history [--events 200000] [--objects 10000] [--store DIR]
    .venv/bin/python -m bench._history --http [--store DIR] [--reps 4] [--no-snapshots] [--runs N]

Starts its own nats-server (from the wheel; on ``--store DIR``, seeded once and reused after),
appends ``--events`` CAS events spread over ``--objects`` ConfigMaps (plus one object written 50
times, spread through the log), then times, each several times: the history of that object
(``projections.revisions``: one batch direct get of its subject); an Exact LIST of every object at a
version half-way through the log from the log alone (``rows_at``: every object changed since, the
worst case), and a page of 500; for scale, the same LIST folded from the log as before (an ordered
read of the resource from sequence 1); then, through a projection following the log as a gateway
does, the current LIST from memory and the Exact LIST at the middle and at 1,000 events before the
head (each with its JSON body). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

from bus import (
    Actor,
    Event,
    Key,
    StreamConfig,
    encode_event,
    encode_object_with_rv_slot,
    open_bridge,
    open_log,
    resource_filter,
    run_nats_server,
)
from gateway._reads import list_body
from kinds import Registry
from projections import Projection, WatchFilter
from projections._history import revisions, rows_at


def _event(name: str, i: int, verb: str) -> bytes:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "bench",
                                                                   "uid": f"u-{name}"}, "data": {"i": str(i)}}
    data, rv_at = encode_object_with_rv_slot(obj)
    return encode_event(Event(type="put", object=msgspec.Raw(data), rv_at=rv_at, verb=verb, audit_id=f"a{i}",
                              time="2026-01-01T00:00:00Z", actor=Actor(user="bench")))


async def _timed(n: int, fn) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def fill(log, events: int, objects: int, hot: Key) -> None:  # type: ignore[no-untyped-def]
    """Append ``events`` events over ``objects`` ConfigMaps, and every ``events // 50``-th to ``hot``;
    256 appends in flight."""
    hot_every = max(1, events // 50)
    send, recv = trio.open_memory_channel[tuple[str, bytes, str]](1024)
    # Appends are CAS on the subject's last sequence, as jetkube's writes are (an object comes back
    # every ``objects`` events, far more than the 256 in flight, so they never conflict).
    last: dict[str, int] = {}

    async def writer(recv: trio.MemoryReceiveChannel[tuple[str, bytes, str]]) -> None:
        async with recv:
            async for subject, payload, mid in recv:
                last[subject] = await log.append(subject, payload, msg_id=mid, expected_seq=last.get(subject, 0))

    async with trio.open_nursery() as nursery:
        for _ in range(256):
            nursery.start_soon(writer, recv.clone())
        await recv.aclose()
        async with send:
            for i in range(events):
                if i % hot_every == 0:
                    await send.send((log.subject(hot), _event("hot", i, "update"), f"h{i}"))
                else:
                    name = f"o{i % objects}"
                    key = Key("default", "", "configmaps", "bench", name)
                    await send.send((log.subject(key), _event(name, i, "create" if i < objects else "update"),
                                     f"m{i}"))


async def main(events: int, objects: int, store: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        async with run_nats_server(Path(store or d) / "nats") as url, open_bridge(url) as bridge:
            log = await open_log(bridge, StreamConfig(name="BENCHH", prefix="bh"))
            hot = Key("default", "", "configmaps", "bench", "hot")
            t0 = time.perf_counter()
            if int((await log.stream_state())["last_seq"]) == 0:  # --store: seeded once, reused after
                await fill(log, events, objects, hot)
            fill_s = time.perf_counter() - t0
            state = await log.stream_state()
            head = int(state["last_seq"])
            hist = await _timed(20, lambda: revisions(log, hot, limit=100))
            revs, _ = await revisions(log, hot, limit=100)
            at = head // 2
            flt = resource_filter("bh", "default", "", "configmaps")
            everything = WatchFilter.for_request(Registry().by_resource("", "configmaps"), None, "", "")
            # From the log alone (no projection): every object changed since ``at``, the worst case.
            exact = await _timed(3, lambda: rows_at(log, flt, at, start_after="", limit=0, keep=lambda *_: True))
            rows, _ = await rows_at(log, flt, at, start_after="", limit=0, keep=lambda *_: True)
            page = await _timed(3, lambda: rows_at(log, flt, at, start_after="", limit=500, keep=lambda *_: True))

            async def fold() -> None:
                reader = await log.open_reader(flt, 1)
                try:
                    while not (reader.pending == 0 and reader.buffered == 0):
                        batch = await reader.next_batch()
                        if batch[-1].seq >= at:
                            break
                finally:
                    await reader.aclose()

            folded = await _timed(1, fold)
            # The same through a projection that follows the log, as a gateway serves them: the current
            # LIST from memory, and the Exact LIST at ``at`` and at a recent version (most objects unchanged
            # since: read from memory), each with its JSON body built.
            cm = Registry().by_resource("", "configmaps")
            projection = Projection(log)
            async with trio.open_nursery() as nursery:
                await nursery.start(projection.run)
                await projection.wait_for(head)

                async def current() -> None:
                    list_body(cm, projection.list("root", "", "configmaps", everything))

                async def exact_at(seq: int) -> None:
                    list_body(cm, await projection.list_at("root", "", "configmaps", everything, seq))

                cur = await _timed(5, current)
                p_exact = await _timed(3, lambda: exact_at(at))
                recent = head - objects // 10
                p_recent = await _timed(3, lambda: exact_at(recent))
                nursery.cancel_scope.cancel()
            return {
                "events": head, "stream_bytes": int(state["bytes"]), "objects": objects + 1, "fill_s": round(fill_s, 1),
                "history_revisions": len(revs), "history_ms_median": round(statistics.median(hist), 2),
                "history_ms_max": round(max(hist), 2),
                "exact_list_at": at, "exact_list_objects": len(rows),
                "exact_list_ms_median": round(statistics.median(exact), 1),
                "exact_list_limit500_ms_median": round(statistics.median(page), 1),
                "fold_from_1_ms": round(folded[0], 1),
                "current_list_ms_median": round(statistics.median(cur), 1),
                "projection_exact_list_ms_median": round(statistics.median(p_exact), 1),
                "projection_exact_list_recent_at": recent,
                "projection_exact_list_recent_ms_median": round(statistics.median(p_recent), 1),
            }


# ---- through HTTP: a gateway in a process of its own, as a client sees it ---------------------------


async def _gateway_child(url: str, data_dir: str, snapshots: bool) -> None:
    """The gateway of ``--http``, run in a child process: serves the bench's stream and prints its
    address and token on one line."""
    from functools import partial

    from gateway import Settings, serve

    async with trio.open_nursery() as nursery:
        running = await nursery.start(partial(serve, Settings(
            data_dir=data_dir, port=0, insecure_port=0, nats_url=url, stream="BENCHH", subject_prefix="bh",
            graceful_timeout_s=0.5, snapshots=snapshots)))
        print(json.dumps({"url": running.http_url, "token": running.admin_token}), flush=True)


async def http(events: int, objects: int, store: str | None, reps: int, snapshots: bool) -> dict[str, object]:
    """Exact LISTs through HTTP against the current LIST, each ``reps`` times in two alternating
    rounds: wall time with the JSON body parsed by the client, and the CPU the gateway and
    nats-server processes spent on each request (read from /proc around it)."""
    import subprocess
    import sys

    import httpx

    from ._procs import stop_popen
    from ._util import proc_cpu_s

    with tempfile.TemporaryDirectory() as d:
        async with run_nats_server(Path(store or d) / "nats") as url:
            async with open_bridge(url) as bridge:
                log = await open_log(bridge, StreamConfig(name="BENCHH", prefix="bh"))
                if int((await log.stream_state())["last_seq"]) == 0:
                    await fill(log, events, objects, Key("default", "", "configmaps", "bench", "hot"))
            nats_pid = next((int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                             and _parent(p) == os.getpid() and "nats-server" in _comm(p)), None)
            child = subprocess.Popen(  # noqa: ASYNC220 - started once
                [sys.executable, "-m", "bench._history", "--gateway-child", url, "--data-dir", d,
                 *(() if snapshots else ("--no-snapshots",))],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parent.parent))
            try:
                assert child.stdout is not None
                with trio.fail_after(600):
                    line = await trio.to_thread.run_sync(child.stdout.readline)
                gw = json.loads(line)
                rows: dict[str, list[tuple[float, float, float]]] = {}
                async with httpx.AsyncClient(base_url=gw["url"], timeout=120,
                                             headers={"Authorization": f"Bearer {gw['token']}"}) as c:
                    path = "/api/v1/namespaces/bench/configmaps"
                    head = int((await c.get(path)).json()["metadata"]["resourceVersion"])
                    plan = {
                        "current": {},
                        "exact_middle": {"resourceVersion": str(head // 2), "resourceVersionMatch": "Exact"},
                        "exact_recent": {"resourceVersion": str(head - objects // 10), "resourceVersionMatch": "Exact"},
                        "exact_middle_limit500": {"resourceVersion": str(head // 2), "resourceVersionMatch": "Exact",
                                                  "limit": "500"},
                    }
                    counts: dict[str, int] = {}
                    trio_cpu: dict[str, list[float]] = {}  # the gateway's main (trio) thread
                    for _ in range(2):
                        for label, params in plan.items():
                            for _ in range(reps):
                                c0, n0 = proc_cpu_s(child.pid) or 0.0, (proc_cpu_s(nats_pid) or 0.0) if nats_pid else 0.0
                                m0 = _thread_cpu_s(child.pid)
                                t0 = time.perf_counter()
                                r = await c.get(path, params=params)
                                body = r.json()
                                wall = (time.perf_counter() - t0) * 1000
                                c1, n1 = proc_cpu_s(child.pid) or 0.0, (proc_cpu_s(nats_pid) or 0.0) if nats_pid else 0.0
                                m1 = _thread_cpu_s(child.pid)
                                assert r.status_code == 200, r.text[:300]
                                counts[label] = len(body["items"])
                                rows.setdefault(label, []).append((wall, (c1 - c0) * 1000, (n1 - n0) * 1000))
                                trio_cpu.setdefault(label, []).append((m1 - m0) * 1000)
            finally:
                stop_popen(child)
    base = statistics.median(w for w, _, _ in rows["current"])
    out: dict[str, object] = {"events": head, "objects": objects + 1, "reps": 2 * reps, "snapshots": snapshots}
    for label, v in rows.items():
        wall = statistics.median(w for w, _, _ in v)
        out[label] = {"items": counts[label], "wall_ms_median": round(wall, 1), "x_current": round(wall / base, 2),
                      "gateway_cpu_ms_median": round(statistics.median(g for _, g, _ in v), 1),
                      "gateway_trio_thread_cpu_ms_median": round(statistics.median(trio_cpu[label]), 1),
                      "nats_cpu_ms_median": round(statistics.median(n for _, _, n in v), 1),
                      "wall_ms_all": [round(w) for w, _, _ in v]}
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return out


def pooled(runs: list[dict[str, Any]]) -> dict[str, object]:
    """Several ``--http`` runs (each with its own gateway) as one figure: for each kind of request the
    median wall of every request of every run against the median of every current LIST, each run's
    own ratio, and how many runs were at most 5x."""
    cur = statistics.median(w for r in runs for w in r["current"]["wall_ms_all"])  # type: ignore[index]
    out: dict[str, object] = {"runs": len(runs), "current_wall_ms_median": round(cur, 1),
                              "loadavg": [r["loadavg"] for r in runs]}
    for label in ("exact_middle", "exact_recent", "exact_middle_limit500"):
        wall = statistics.median(w for r in runs for w in r[label]["wall_ms_all"])  # type: ignore[index]
        xs = [r[label]["x_current"] for r in runs]  # type: ignore[index]
        out[label] = {"wall_ms_median": round(wall, 1), "x_current": round(wall / cur, 2), "x_runs": xs,
                      "runs_at_most_5x": sum(x <= 5 for x in xs),
                      "gateway_cpu_ms_runs": [r[label]["gateway_cpu_ms_median"] for r in runs],  # type: ignore[index]
                      "nats_cpu_ms_runs": [r[label]["nats_cpu_ms_median"] for r in runs]}  # type: ignore[index]
    return out


def _thread_cpu_s(pid: int) -> float:
    """utime + stime of a process's main thread (the gateway's trio thread), seconds."""
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parent(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _comm(p: Path) -> str:
    try:
        return (p / "comm").read_text()
    except OSError:
        return ""


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--objects", type=int, default=10_000)
    p.add_argument("--store", help="keep the nats-server store here and reuse it (seeded when empty)")
    p.add_argument("--http", action="store_true",
                   help="time Exact LISTs against the current LIST through a gateway in its own process")
    p.add_argument("--reps", type=int, default=4, help="--http: requests of each kind per round (2 rounds)")
    p.add_argument("--no-snapshots", action="store_true",
                   help="--http: the gateway folds the log at start (its rings hold the last changes)")
    p.add_argument("--runs", type=int, default=1,
                   help="--http: that many runs, each with a gateway of its own, pooled (bench._history.pooled)")
    p.add_argument("--gateway-child", metavar="NATS_URL", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.gateway_child:
        trio.run(_gateway_child, a.gateway_child, a.data_dir, not a.no_snapshots)
    elif a.http and a.runs > 1:
        done = [trio.run(http, a.events, a.objects, a.store, a.reps, not a.no_snapshots) for _ in range(a.runs)]
        print(json.dumps({"pooled": pooled(done), "each": done}))
    elif a.http:
        print(json.dumps(trio.run(http, a.events, a.objects, a.store, a.reps, not a.no_snapshots)))
    else:
        print(json.dumps(trio.run(main, a.events, a.objects, a.store)))
