"""The gateway's one set-up of Python's cyclic collector (gateway/_server.py ``tune_gc``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway._server import GC_THRESHOLDS, tune_gc


@pytest.fixture
def gc_state() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_thresholds_raised_and_the_start_frozen(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    gc.set_threshold(700, 10, 10)  # Python's defaults
    built_at_start = [{"i": i} for i in range(1000)]  # tracked, long-lived
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_start)
    assert not any(o is built_at_start for o in gc.get_objects())  # frozen: no generation holds it


def test_an_embedders_higher_thresholds_are_kept(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    gc.set_threshold(50_000, 5, 40)
    tune_gc()
    assert gc.get_threshold() == (50_000, GC_THRESHOLDS[1], 40)


def test_the_experiment_knob_replaces_them(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETKUBE_GC_THRESHOLD", "2000,5,7")
    tune_gc()
    assert gc.get_threshold() == (2000, 5, 7)
