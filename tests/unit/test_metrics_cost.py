"""bench.metrics_cost times what the server does per request for the metrics: check it times that."""

from __future__ import annotations

import json
from pathlib import Path

from bench.metrics_cost import CASES, one_request, per_call_us, server_cpu_us
from gateway._metrics import ServerMetrics
from kinds import Registry


def test_one_request_records_what_the_server_records_per_request() -> None:
    registry = Registry()
    m = ServerMetrics(None, None, registry)  # type: ignore[arg-type]
    for case in CASES.values():
        one_request(m, registry, *case)()
    assert m.requests == {
        ("POST", "", "", "v1", "configmaps", "", "resource", "201", "root"): 1,
        ("GET", "", "", "v1", "configmaps", "", "resource", "200", "root"): 1,
    }
    assert m.inflight == [0, 0] and m.inflight_max == [1, 1]
    assert sum(h.count for h in m.response_sizes.values()) == 1  # the GET's
    assert 0 < per_call_us(one_request(m, registry, *CASES["B2"]), calls=100) < 10_000


def test_server_cpu_is_the_median_over_runs(tmp_path: Path) -> None:
    files = []
    for i, cpu in enumerate((900.0, 1200.0, 1000.0)):
        f = tmp_path / f"run{i}.json"
        rows = [{"id": "B1", "details": {"server": {"server_cpu_us_per_request": cpu}}}, {"id": "C1-get"}]
        f.write_text(json.dumps({"rows": rows}))
        files.append(f)
    assert server_cpu_us(files, "B1") == 1000.0
    assert server_cpu_us(files, "B2") is None
