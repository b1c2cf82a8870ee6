"""A started gateway has set up the cyclic collector once, after its projection caught up
(gateway/_server.py ``tune_gc``): the objects the start folded are frozen, the thresholds raised."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from gateway import _server
from gateway._server import GC_THRESHOLDS
from projections import Projection
from tests.conftest import StartServer, client_for


async def test_serve_tunes_the_collector_after_the_projection_caught_up(
        start_server: StartServer, api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # objects in the log before the second gateway starts: it folds them at start
    for i in range(20):
        r = await api.post("/api/v1/namespaces/default/configmaps",
                           json={"metadata": {"name": f"gc-{i}"}, "data": {"k": "v"}})
        assert r.status_code == 201, r.text
    last = int(r.json()["metadata"]["resourceVersion"])  # the log's head as the second gateway starts
    projections: list[Projection] = []
    real_run = Projection.run

    async def run(self: Projection, *args: Any, **kwargs: Any) -> Any:
        projections.append(self)
        return await real_run(self, *args, **kwargs)

    # At each call: (its projection ready, what it had applied, objects frozen before, after).
    calls: list[tuple[bool, int, int, int]] = []
    real = _server.tune_gc

    def spy(*args: Any, **kwargs: Any) -> None:
        p = projections[-1]
        frozen = gc.get_freeze_count()
        real(*args, **kwargs)
        calls.append((p.ready.is_set(), p.store.applied, frozen, gc.get_freeze_count()))

    monkeypatch.setattr(Projection, "run", run)
    monkeypatch.setattr(_server, "tune_gc", spy)
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        second = await start_server()
        assert len(projections) == 1 and len(calls) == 1
        ready, applied, frozen_before, frozen_after = calls[0]
        # after the projection caught up (the objects created above folded) ...
        assert ready and applied >= last
        # ... what the second gateway's start built was frozen then (the first gateway of this
        # process froze the heap of its own start before: the count grew), its store among it
        assert frozen_after > frozen_before
        store = projections[0].store
        assert not any(o is store for o in gc.get_objects())
        assert gc.get_threshold() == GC_THRESHOLDS
        # the second gateway serves what it folded at start
        async with client_for(second) as c:
            r = await c.get("/api/v1/namespaces/default/configmaps/gc-19")
            assert r.status_code == 200
    finally:
        gc.set_threshold(*before)
