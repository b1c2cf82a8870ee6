"""The gateway's one set-up of Python's cyclic collector (gateway/_server.py ``tune_gc``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from gateway._server import (
    GC_THRESHOLDS,
    GcThresholdError,
    _collections,
    gc_thresholds_from_env,
    pace_young_collections,
    tune_gc,
)


@pytest.fixture
def gc_state() -> Iterator[None]:
    """The collector as the test found it: thresholds, and nothing left frozen."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_thresholds_raised_and_the_start_frozen(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    gc.set_threshold(700, 10, 10)  # Python's defaults
    built_at_start = [{"i": i} for i in range(1000)]  # tracked, long-lived
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_start)
    assert not any(o is built_at_start for o in gc.get_objects())  # frozen: no generation holds it


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_garbage_of_the_start_is_collected_not_frozen(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s8b LOW 4: a cycle that became garbage during the start (no collection reached it
    yet) is collected by ``tune_gc``, not frozen for ever with the live state."""
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    gc.disable()  # (no automatic collection between making the garbage and tune_gc)
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # cyclic garbage, not yet collected
        tune_gc()
        assert gone() is None
    finally:
        gc.enable()


def test_an_embedders_higher_thresholds_are_kept(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    gc.set_threshold(50_000, 5, 40)
    tune_gc()
    assert gc.get_threshold() == (50_000, GC_THRESHOLDS[1], 40)


def test_the_experiment_knob_replaces_them(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETKUBE_GC_THRESHOLD", "2000,5,7")
    tune_gc()
    assert gc.get_threshold() == (2000, 5, 7)


@pytest.mark.parametrize("bad", ["2000,10", "a,b,c", "1,2,3,4", "10000,-1,10", " , , "])
def test_a_malformed_knob_is_refused_with_one_line(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("JETKUBE_GC_THRESHOLD", bad)
    with pytest.raises(GcThresholdError) as e:
        gc_thresholds_from_env()
    assert "JETKUBE_GC_THRESHOLD" in str(e.value) and "\n" not in str(e.value)


def test_serve_refuses_a_malformed_knob_at_start_in_one_line(tmp_path: object) -> None:
    """``jetkube serve`` with a bad ``JETKUBE_GC_THRESHOLD``: exit status 1 and one line on stderr,
    before anything starts (no NATS, no data directory written), not a traceback once caught up."""
    data = f"{tmp_path}/data"
    env = {"JETKUBE_GC_THRESHOLD": "2000,10", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "gateway", "serve", "--data-dir", data], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "jetkube serve: JETKUBE_GC_THRESHOLD='2000,10': want three integers, e.g. 10000,10,10"]
    assert not os.path.exists(data)


def _pile_up_young(n: int, keep: list[list[int]]) -> list[list[int]]:
    """``n`` young tracked objects allocated while as many old ones die: CPython 3.11's young count
    (allocations minus deallocations) stays put, so no young collection starts (the flood's case)."""
    young = []
    for _ in range(n):
        young.append([1])
        keep.pop()
    return young


def test_old_objects_dying_hold_back_the_young_collection(gc_state: None) -> None:
    """What :func:`pace_young_collections` is for, on this Python: tens of thousands of young objects
    and no collection started by the count."""
    gc.set_threshold(10_000, 10, 10)
    old = [[i] for i in range(60_000)]
    gc.collect()  # the old ones to the oldest generation
    before = _collections()
    young = _pile_up_young(40_000, old)
    assert _collections() == before  # the collector never ran
    assert len(gc.get_objects(0)) >= 40_000  # ... while the young generation holds them all
    del young


async def test_a_young_collection_runs_in_each_period_without_one(gc_state: None, autojump_clock: Any) -> None:
    gc.set_threshold(10_000, 10, 10)
    old = [[i] for i in range(60_000)]
    gc.collect()
    async with trio.open_nursery() as n:
        n.start_soon(pace_young_collections, 0.1)
        await trio.sleep(0.05)
        young = _pile_up_young(30_000, old)
        assert len(gc.get_objects(0)) >= 30_000
        await trio.sleep(0.1)  # the pacer's period passed without a collection: it ran one
        assert len(gc.get_objects(0)) < 1_000
        n.cancel_scope.cancel()
    del young


async def test_no_extra_collection_while_the_count_works(gc_state: None, autojump_clock: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A period in which the collector ran (of any generation) adds none; one without does."""
    ran: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: ran.append(generation))
    stats = [{"collections": 0}, {"collections": 0}, {"collections": 0}]
    monkeypatch.setattr(gc, "get_stats", lambda: stats)
    async with trio.open_nursery() as n:
        n.start_soon(pace_young_collections, 0.1)
        await trio.sleep(0.05)
        for gen in (0, 1, 2, 0):
            stats[gen]["collections"] += 1  # the collector ran on its own in this period
            await trio.sleep(0.1)
        assert ran == []
        await trio.sleep(0.1)  # a period without one
        assert ran == [0]
        monkeypatch.setattr(gc, "get_threshold", lambda: (0, 10, 10))  # automatic collection off
        await trio.sleep(0.3)
        assert ran == [0]  # ... and so the pacer's
        n.cancel_scope.cancel()
