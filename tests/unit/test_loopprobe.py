"""The loop probe (JETKUBE_LOOP_PROBE): a long task step is recorded with its task, its CPU and a
sample of where it was; a gc collection is recorded with its generation; the file is written."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from gateway._loopprobe import LoopProbe, _installed, report, run_from_env


def _spin(seconds: float, until: Callable[[], bool] = lambda: True, limit_s: float = 10.0) -> None:
    """Busy for ``seconds``, then on until ``until()`` holds (bounded by ``limit_s``): on a loaded
    machine the watchdog thread may get the GIL only late in the step."""
    t = time.perf_counter()
    while time.perf_counter() - t < limit_s and (time.perf_counter() - t < seconds or not until()):
        pass


async def test_a_long_step_and_a_collection_are_recorded() -> None:
    probe = LoopProbe(threshold_ms=20)

    async def hog() -> None:
        await trio.lowlevel.checkpoint()
        # one step of at least 150 ms: the watchdog samples it after 20 ms (the step lasts until it has)
        _spin(0.15, until=lambda: probe._sampled_id == probe._step_id)
        gc.collect(1)
        await trio.lowlevel.checkpoint()

    with _installed(probe):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hog, name="the-hog")
    long = [x for x in probe.long if x["task"] == "the-hog"]
    assert len(long) == 1
    step = long[0]
    assert step["ms"] >= 150 and step["cpu_ms"] > 0
    assert step["sampled"] and any("_spin" in f for f in step["where"])
    assert sum(probe.gc[1]) >= 1 and step["gc_ms"] > 0
    assert sum(probe.steps) >= 3
    text = report(probe.summary())
    assert "the-hog @" in text
    if probe.schedstat:
        # where the wall time went (Linux schedstat): the busy step ran on a core (its thread CPU time
        # is schedstat's on-core time, within the window's), and on-core plus run-queue time fits in the
        # window (the rest, asleep, is what is left: it is not checked, it is defined so)
        assert step["win_ms"] >= 150 and step["run_ms"] >= 0.5 * step["cpu_ms"] > 0
        assert step["run_ms"] + step["runq_ms"] <= step["win_ms"] * 1.05
        assert "long steps by schedstat" in text and "not available" not in text
    else:  # a kernel without schedstat: the probe says so, and splits nothing
        assert probe.schedstat is False and "win_ms" not in step
        assert "schedstat: not available on this kernel" in text


async def test_without_schedstat_the_probe_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``/proc/*/task/*/schedstat`` is absent (some sandboxes, kernels without
    CONFIG_SCHED_INFO), a long step is recorded without a split and the report says why."""
    probe = LoopProbe(threshold_ms=20)
    monkeypatch.setattr(probe, "_read_sched", lambda: None)

    async def hog() -> None:
        await trio.lowlevel.checkpoint()
        _spin(0.05, until=lambda: probe._sampled_id == probe._step_id)
        await trio.lowlevel.checkpoint()

    with _installed(probe):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hog, name="the-hog")
    step = next(x for x in probe.long if x["task"] == "the-hog")
    assert "win_ms" not in step
    d = probe.summary()
    assert d["schedstat"] is False
    text = report(d)
    assert "schedstat: not available on this kernel" in text and "long steps by schedstat" not in text


async def test_run_from_env_writes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETKUBE_LOOP_PROBE", str(tmp_path / "probe"))
    async with trio.open_nursery() as nursery:
        await nursery.start(run_from_env)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    files = list(tmp_path.glob("probe.*.json"))
    assert len(files) == 1
    d = json.loads(files[0].read_text())
    assert sum(d["lag"]) >= 1 and d["threshold_ms"] == 10


async def test_off_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JETKUBE_LOOP_PROBE", raising=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_from_env)  # returns at once, nothing installed
