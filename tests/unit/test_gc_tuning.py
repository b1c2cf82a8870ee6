"""The gateway's one set-up of Python's cyclic collector (gateway/_server.py ``tune_gc``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest

from gateway._server import GC_THRESHOLDS, GcThresholdError, gc_thresholds_from_env, tune_gc


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
