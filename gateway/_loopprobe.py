"""A diagnostic of the event loop's stalls: long trio task steps, gc pauses, the loop's lag.

Off unless ``JETKUBE_LOOP_PROBE=<path prefix>`` is set; then the gateway process writes
``<prefix>.<pid>.json`` every 5 s and at exit. It measures:

- every task step (trio ``Instrument``: ``before_task_step``/``after_task_step``): a histogram of
  wall durations, and each step longer than ``JETKUBE_LOOP_PROBE_MS`` (default 10 ms) with its task,
  its wall and thread-CPU time (a step whose wall time is far above its CPU time was not on a core:
  the process was preempted), the gc time inside it, and where it was: a watchdog thread samples the
  main thread's stack once the step has run for the threshold (the sample is taken when the thread
  next gets the GIL: a long C call shows as the frame after it);
- every gc collection (``gc.callbacks``): pause, its thread CPU, generation; with
  ``JETKUBE_LOOP_PROBE_CENSUS=S``, once, S seconds after the start, the old generation by type; with
  ``JETKUBE_LOOP_PROBE_FULLGC=1`` a full collection every 5 s (what one costs on the heap as it is then),
  each with a census (the last is kept);
- the loop's lag: a task sleeping 5 ms, how late it wakes (what any ready task waits for);
- where the time of a long step or a late wake went (Linux ``/proc/self/task/*/schedstat``, sampled by the
  watchdog every 2 ms): the trio thread on a core, the trio thread runnable but waiting for a core (the
  OS run queue: the machine is oversubscribed), the other threads of the process on a core (while the
  trio thread sleeps, they may hold the GIL), and the rest (the trio thread asleep: the GIL, or I/O).
  The sampling itself (a file read per thread every 2 ms, each releasing and retaking the GIL) may
  inflate that "asleep" share (not measured). Without schedstat the summary says so (``"schedstat": false``);
- the run queue: each batch of task steps trio runs between two polls of the kernel (``after_io_wait``
  to ``before_io_wait``): how many steps it ran and how long it took (a task made runnable during a
  batch waits for the whole batch, then for its own place in the next), and each batch longer than the
  threshold.

With ``JETKUBE_LOOP_PROBE_TRACE=<substring>``, each request whose path contains it is traced through
its stages (:func:`mark`): the connection accepted, its bytes read (the last read before the app was
called), the app called, the app returned; each with the time and the number of batches run so far,
so that a slow request shows where it waited and how many turns of the run queue that cost.

It costs two calls and four clock reads per task step (about 6% of a create's CPU in a py-spy
profile): a diagnostic, not a metric. ``python -m gateway._loopprobe FILE [SINCE UNTIL]`` prints a
summary (long steps grouped by task and the first frame of ours in their sample).
"""

from __future__ import annotations

import collections
import gc
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

_BOUNDS_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
_MAX_LONG = 20_000  # long steps kept (each a few hundred bytes)
_BATCH_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def _batch_bucket(n: int) -> int:
    for i, b in enumerate(_BATCH_BOUNDS):
        if n <= b:
            return i
    return len(_BATCH_BOUNDS)


def _bucket(ms: float) -> int:
    for i, b in enumerate(_BOUNDS_MS):
        if ms <= b:
            return i
    return len(_BOUNDS_MS)


def _stack(frame: Any, depth: int = 14) -> list[str]:
    out = []
    for fs in traceback.extract_stack(frame, limit=40)[::-1]:
        fn = fs.filename
        for marker in ("/site-packages/", "/lib/python3"):
            i = fn.find(marker)
            if i >= 0:
                fn = fn[i + len(marker):]
                break
        else:
            fn = os.path.relpath(fn) if fn.startswith("/") else fn
        out.append(f"{fn}:{fs.lineno} {fs.name}")
        if len(out) >= depth:
            break
    return out


class LoopProbe(trio.abc.Instrument):
    def __init__(self, threshold_ms: float = 10.0) -> None:
        self.threshold = threshold_ms / 1000
        self.steps = [0] * (len(_BOUNDS_MS) + 1)
        self.step_s = 0.0
        self.long: list[dict[str, Any]] = []
        self.long_dropped = 0
        self.gc = {g: [0] * (len(_BOUNDS_MS) + 1) for g in (0, 1, 2)}
        self.gc_s = {0: 0.0, 1: 0.0, 2: 0.0}
        self.gc_max_ms = {0: 0.0, 1: 0.0, 2: 0.0}
        self.gc_cpu_s = {0: 0.0, 1: 0.0, 2: 0.0}
        #: JETKUBE_LOOP_PROBE_CENSUS=S: S seconds after the start, count the old generation's objects by type once.
        census = float(os.environ.get("JETKUBE_LOOP_PROBE_CENSUS", "0") or 0)
        self.census_after = time.time() + census if census else 0.0
        self.census: dict[str, Any] = {}
        self.gc_long: list[dict[str, Any]] = []
        self.lag = [0] * (len(_BOUNDS_MS) + 1)
        self.lag_long: list[tuple[float, float, dict[str, float]]] = []
        self.batch_steps = [0] * (len(_BATCH_BOUNDS) + 1)  # batches by their number of steps
        self.batch_ms = [0] * (len(_BOUNDS_MS) + 1)  # batches by their wall duration
        self.batch_s = [0.0] * (len(_BATCH_BOUNDS) + 1)  # wall time spent in batches of each size
        self.batch_long: list[tuple[float, int, float]] = []  # (at, steps, ms) of batches over the threshold
        self._b0 = 0.0
        self._bn = 0
        self._bnames: dict[str, int] = {}
        self.batches = 0
        self.trace_match = os.environ.get("JETKUBE_LOOP_PROBE_TRACE", "")
        self.traces: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._c0 = 0.0
        self._task: Any = None
        self._step_id = 0
        self._sampled_id = -1
        self._sample: list[str] | None = None
        self._gc_in_step = 0.0
        self._gc_t0 = 0.0
        self._gc_c0 = 0.0
        self._main = threading.get_ident()
        self._main_tid = threading.get_native_id()
        #: (perf_counter, trio thread on-core ns, trio thread run-queue ns, other threads on-core ns), every 2 ms
        self._sched: collections.deque[tuple[float, int, int, int]] = collections.deque(maxlen=4096)
        self._stop = threading.Event()
        self.started = time.time()
        #: Whether this kernel gives ``/proc/self/task/*/schedstat`` (known once installed): without it
        #: no step or late wake is split, and the summary and the report say so.
        self.schedstat: bool | None = None

    # ---- trio instrument
    def after_io_wait(self, timeout: float) -> None:
        self._b0 = time.perf_counter()
        self._bn = 0
        self._bnames.clear()
        self.batches += 1

    def before_io_wait(self, timeout: float) -> None:
        b0 = self._b0
        if not b0:
            return
        d = time.perf_counter() - b0
        n = self._bn
        self._b0 = 0.0
        if not n:
            return
        k = _batch_bucket(n)
        self.batch_steps[k] += 1
        self.batch_s[k] += d
        self.batch_ms[_bucket(d * 1000)] += 1
        if d >= self.threshold and len(self.batch_long) < _MAX_LONG:
            top = sorted(self._bnames.items(), key=lambda kv: -kv[1])[:4]
            self.batch_long.append((round(time.time() - d, 4), n, round(d * 1000, 2), top))

    def before_task_step(self, task: Any) -> None:
        self._bn += 1
        name = task.name.rsplit(".", 1)[-1]
        self._bnames[name] = self._bnames.get(name, 0) + 1
        self._task = task
        self._gc_in_step = 0.0
        self._step_id += 1
        self._c0 = time.thread_time()
        self._t0 = time.perf_counter()

    def after_task_step(self, task: Any) -> None:
        t0 = self._t0
        if not t0:  # the step that installed the probe
            return
        d = time.perf_counter() - t0
        self._t0 = 0.0
        self.step_s += d
        self.steps[_bucket(d * 1000)] += 1
        if d >= self.threshold:
            cpu = time.thread_time() - self._c0
            if len(self.long) < _MAX_LONG:
                sample = self._sample if self._sampled_id == self._step_id else None
                if sample is None:  # where the step ended (its task's frame)
                    coro = getattr(task, "coro", None)
                    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                    where = _stack(frame, 4) if frame is not None else []
                else:
                    where = sample
                self.long.append({"at": round(time.time() - (time.perf_counter() - t0), 4),
                                  "ms": round(d * 1000, 2), "cpu_ms": round(cpu * 1000, 2),
                                  "gc_ms": round(self._gc_in_step * 1000, 2), "task": task.name,
                                  "sampled": sample is not None, "where": where, **self._split(t0)})
            else:
                self.long_dropped += 1

    # ---- gc.callbacks
    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_c0 = time.thread_time()
            self._gc_t0 = time.perf_counter()
            return
        d = time.perf_counter() - self._gc_t0
        cpu = time.thread_time() - self._gc_c0
        g = info.get("generation", 0)
        self.gc[g][_bucket(d * 1000)] += 1
        self.gc_s[g] += d
        self.gc_max_ms[g] = max(self.gc_max_ms[g], d * 1000)
        if self._t0:
            self._gc_in_step += d
        self.gc_cpu_s[g] += cpu
        if g == 2 and self.census_after and time.time() >= self.census_after:
            self.census_after = 0.0  # once: what the old generation is made of (costly: a walk of it)
            counts: dict[str, int] = {}
            for o in gc.get_objects(2):
                t = type(o)
                k = f"{t.__module__}.{t.__qualname__}"
                counts[k] = counts.get(k, 0) + 1
            self.census = {"at": time.time(), "objects": sum(counts.values()),
                           "top": sorted(counts.items(), key=lambda kv: -kv[1])[:40]}
        if d * 1000 >= 5 and len(self.gc_long) < _MAX_LONG:
            self.gc_long.append({"at": round(time.time(), 4), "gen": g, "ms": round(d * 1000, 2),
                                 "cpu_ms": round(cpu * 1000, 2), "collected": info.get("collected"),
                                 "gen2_after": gc.get_count()[2] if g == 2 else None})

    # ---- where the wall time went (schedstat)
    def _read_sched(self) -> tuple[float, int, int, int] | None:
        """(now, trio thread on-core ns, its run-queue wait ns, the other threads' on-core ns)."""
        try:
            own, others = 0, 0
            delay = 0
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                    fields = f.read().split()
                if int(tid) == self._main_tid:
                    own, delay = int(fields[0]), int(fields[1])
                else:
                    others += int(fields[0])
            return (time.perf_counter(), own, delay, others)
        except (OSError, ValueError, IndexError):
            return None

    def _split(self, t0: float) -> dict[str, float]:
        """From the sample before ``t0`` to now: ms the trio thread ran, waited for a core, the other
        threads ran, and the rest (the trio thread asleep)."""
        end = self._read_sched()
        start = next((x for x in reversed(list(self._sched)) if x[0] <= t0), None)
        if end is None or start is None:
            return {}
        wall = (end[0] - start[0]) * 1000
        run, runq, others = ((end[i] - start[i]) / 1e6 for i in (1, 2, 3))
        return {"win_ms": round(wall, 2), "run_ms": round(run, 2), "runq_ms": round(runq, 2),
                "others_ms": round(others, 2), "asleep_ms": round(max(0.0, wall - run - runq), 2)}

    # ---- the watchdog thread
    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            x = self._read_sched()
            if x is not None:
                self._sched.append(x)
            t0 = self._t0
            if t0 and time.perf_counter() - t0 >= self.threshold and self._sampled_id != self._step_id:
                sid = self._step_id
                frame = sys._current_frames().get(self._main)
                if frame is not None and self._t0 == t0:
                    self._sample = _stack(frame)
                    self._sampled_id = sid

    async def lag_task(self) -> None:
        while True:
            t = time.perf_counter()
            await trio.sleep(0.005)
            late = time.perf_counter() - t - 0.005
            self.lag[_bucket(late * 1000)] += 1
            if late >= self.threshold and len(self.lag_long) < _MAX_LONG:
                self.lag_long.append((round(time.time(), 4), round(late * 1000, 2), self._split(t + 0.005)))

    def summary(self) -> dict[str, Any]:
        edges = [*map(str, _BOUNDS_MS), "inf"]
        return {"pid": os.getpid(), "started": self.started, "now": time.time(), "threshold_ms": self.threshold * 1000,
                "bucket_le_ms": edges, "steps": self.steps, "step_s": round(self.step_s, 3),
                "gc": {str(g): {"hist": h, "total_s": round(self.gc_s[g], 4), "max_ms": round(self.gc_max_ms[g], 2),
                                "cpu_s": round(self.gc_cpu_s[g], 4)}
                       for g, h in self.gc.items()}, "census": self.census,
                "gc_threshold": gc.get_threshold(), "gc_frozen": gc.get_freeze_count(), "schedstat": self.schedstat,
                "lag": self.lag, "lag_long": self.lag_long, "gc_long": self.gc_long,
                "batch_le_steps": [*map(str, _BATCH_BOUNDS), "inf"], "batch_steps": self.batch_steps,
                "batch_s": [round(x, 3) for x in self.batch_s], "batch_ms": self.batch_ms,
                "batch_long": self.batch_long, "traces": self.traces,
                "long": self.long, "long_dropped": self.long_dropped}

    def write(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.summary(), f)
        os.replace(tmp, path)


#: The probe running in this process (JETKUBE_LOOP_PROBE), if any.
ACTIVE: LoopProbe | None = None


def mark() -> tuple[float, int] | None:
    """(now, batches run so far) while a probe runs, else None."""
    probe = ACTIVE
    return None if probe is None else (time.perf_counter(), probe.batches)


def trace(path: str, stages: dict[str, tuple[float, int] | None]) -> None:
    """Record one request's stages (from :func:`mark`) if its path matches ``JETKUBE_LOOP_PROBE_TRACE``:
    each stage's time (ms) and batches since the first stage."""
    probe = ACTIVE
    if probe is None or not probe.trace_match or probe.trace_match not in path or len(probe.traces) >= _MAX_LONG:
        return
    marks = {k: v for k, v in stages.items() if v is not None}
    if not marks:
        return
    t0, b0 = min(marks.values())
    probe.traces.append({"at": round(time.time() - (time.perf_counter() - t0), 4),
                         **{k: (round((t - t0) * 1000, 2), b - b0) for k, (t, b) in marks.items()}})


@contextmanager
def _installed(probe: LoopProbe) -> Iterator[None]:
    global ACTIVE
    trio.lowlevel.add_instrument(probe)
    ACTIVE = probe
    gc.callbacks.append(probe.on_gc)
    first = probe._read_sched()
    probe.schedstat = first is not None
    if first is not None:
        probe._sched.append(first)  # a step starting before the watchdog's first sample has one before it
    th = threading.Thread(target=probe._watch, name="loop-probe", daemon=True)
    th.start()
    try:
        yield
    finally:
        probe._stop.set()
        ACTIVE = None
        gc.callbacks.remove(probe.on_gc)
        trio.lowlevel.remove_instrument(probe)


async def run_from_env(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the probe while the caller's nursery lives when ``JETKUBE_LOOP_PROBE`` is set (else return
    at once), writing its file every 5 s and when cancelled."""
    prefix = os.environ.get("JETKUBE_LOOP_PROBE")
    if not prefix:
        task_status.started()
        return
    probe = LoopProbe(float(os.environ.get("JETKUBE_LOOP_PROBE_MS", "10")))
    full_gc = bool(os.environ.get("JETKUBE_LOOP_PROBE_FULLGC"))
    path = f"{prefix}.{os.getpid()}.json"
    with _installed(probe):
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe.lag_task)
                task_status.started()
                while True:
                    await trio.sleep(5.0)
                    if full_gc:  # JETKUBE_LOOP_PROBE_FULLGC=1: what a full collection of this heap costs now
                        probe.census_after = time.time()  # the census of the last one is kept
                        gc.collect()
                    probe.write(path)
        finally:
            probe.write(path)


def report(d: dict[str, Any], since: float = 0.0, until: float = float("inf"), top: int = 12) -> str:
    """A text summary of a probe file: step and lag histograms, gc pauses, the long steps by task
    and by the first frame of ours in their sample (between ``since`` and ``until``, wall time)."""
    edges = d["bucket_le_ms"]
    lines = [(f"pid {d['pid']}: {sum(d['steps']):,} steps, {d['step_s']:.1f}s in steps; gc threshold "
             f"{d['gc_threshold']}, frozen {d['gc_frozen']:,}")]
    lines.append("steps  <= ms: " + " ".join(f"{e}:{n}" for e, n in zip(edges, d["steps"], strict=True) if n))
    lines.append("lag    <= ms: " + " ".join(f"{e}:{n}" for e, n in zip(edges, d["lag"], strict=True) if n))
    if "batch_steps" in d:
        lines.append("batches <= steps (count, seconds): " + " ".join(
            f"{e}:{n}/{t:.1f}s" for e, n, t in zip(d["batch_le_steps"], d["batch_steps"], d["batch_s"], strict=True) if n))
        lines.append("batches <= ms: " + " ".join(f"{e}:{n}" for e, n in zip(edges, d["batch_ms"], strict=True) if n))
        bl = [x for x in d["batch_long"] if since <= x[0] <= until]
        if bl:
            lines.append(f"batches over the threshold in the window: {len(bl)}, steps mean "
                         f"{sum(x[1] for x in bl) / len(bl):.0f} max {max(x[1] for x in bl)}, ms mean "
                         f"{sum(x[2] for x in bl) / len(bl):.1f} max {max(x[2] for x in bl):.1f}")
    for g, v in d["gc"].items():
        lines.append(f"gc{g}: total {v['total_s']:.3f}s (cpu {v.get('cpu_s', 0):.3f}s) max {v['max_ms']:.1f}ms  <= ms: "
                     + " ".join(f"{e}:{n}" for e, n in zip(edges, v["hist"], strict=True) if n))
    gl = [x for x in d["gc_long"] if since <= x["at"] <= until]
    if gl:
        lines.append("gc pauses >= 5 ms in the window: " + ", ".join(
            f"gen{x['gen']} {x['ms']}ms (cpu {x.get('cpu_ms')})" for x in gl[:60]))
    long = [x for x in d["long"] if since <= x["at"] <= until]
    lines.append(f"long steps in the window: {len(long)} (dropped {d['long_dropped']}); "
                 f"sum {sum(x['ms'] for x in long):.0f} ms, of which cpu {sum(x['cpu_ms'] for x in long):.0f} ms, "
                 f"gc {sum(x['gc_ms'] for x in long):.0f} ms")
    def split(rows: list[dict[str, float]], what: str) -> None:
        rows = [r for r in rows if r]
        if rows:
            tot = {k: sum(r[k] for r in rows) for k in ("win_ms", "run_ms", "runq_ms", "others_ms", "asleep_ms")}
            lines.append(f"{what} ({len(rows)}; windows {tot['win_ms']:.0f} ms): trio thread on a core "
                         f"{tot['run_ms']:.0f} ms, waiting for a core {tot['runq_ms']:.0f} ms, asleep "
                         f"{tot['asleep_ms']:.0f} ms; the other threads on a core {tot['others_ms']:.0f} ms")

    if d.get("schedstat") is False:
        lines.append("schedstat: not available on this kernel (/proc/self/task/*/schedstat): "
                     "where the time of long steps and late wakes went is not split")
    split([x if "win_ms" in x else {} for x in long], "long steps by schedstat")
    lag_long = [x for x in d["lag_long"] if since <= x[0] <= until]
    split([x[2] for x in lag_long if len(x) > 2], "late wakes >= threshold by schedstat")
    for lo, hi in ((10, 50), (50, 100), (100, 1e9)):
        split([x[2] for x in lag_long if len(x) > 2 and lo <= x[1] < hi], f"  late by [{lo}, {hi}) ms")
    by: dict[str, list[float]] = {}
    for x in long:
        ours = next((f for f in x["where"] if not f.startswith(("trio/", "outcome/", "threading", "contextlib"))),
                    x["where"][0] if x["where"] else "?")
        key = f"{x['task'].rsplit('.', 1)[-1]} @ {ours}"
        by.setdefault(key, []).append((x["ms"], x["cpu_ms"]))
    for key, v in sorted(by.items(), key=lambda kv: -sum(a for a, _ in kv[1]))[:top]:
        v.sort()
        lines.append(f"  {len(v):5d}x sum {sum(a for a, _ in v):7.0f}ms (cpu {sum(b for _, b in v):6.0f}) "
                     f"max {v[-1][0]:6.1f}ms (cpu {v[-1][1]:5.1f})  {key}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    with open(args[0]) as fh:
        data = json.load(fh)
    print(report(data, float(args[1]) if len(args) > 1 else 0.0, float(args[2]) if len(args) > 2 else float("inf")))
