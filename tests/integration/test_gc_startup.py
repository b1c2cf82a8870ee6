"""A started gateway has set up the cyclic collector once, after its projection caught up
(gateway/_server.py ``tune_gc``): the objects the start folded are frozen, the thresholds raised."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from gateway import _server
from gateway._server import GC_THRESHOLDS
from tests.conftest import StartServer, client_for


async def test_serve_tunes_the_collector_after_the_projection_caught_up(
        start_server: StartServer, api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # objects in the log before the second gateway starts: it folds them at start
    for i in range(20):
        r = await api.post("/api/v1/namespaces/default/configmaps",
                           json={"metadata": {"name": f"gc-{i}"}, "data": {"k": "v"}})
        assert r.status_code == 201, r.text
    calls: list[int] = []
    real = _server.tune_gc

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(_server, "tune_gc", spy)
    monkeypatch.delenv("JETKUBE_GC_THRESHOLD", raising=False)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        second = await start_server()
        assert calls == [1]
        assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
        # the second gateway serves what it folded at start
        async with client_for(second) as c:
            r = await c.get("/api/v1/namespaces/default/configmaps/gc-19")
            assert r.status_code == 200
    finally:
        gc.set_threshold(*before)
