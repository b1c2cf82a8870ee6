"""``jetkube_apf_pacing_*`` on a real server's ``/metrics`` (gateway/_server.py hands the metrics its
hypercorn config's pacer; the series' content: tests/unit/test_pacing_metrics.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_metrics import Scrape

pytestmark = pytest.mark.integration


async def test_the_pacing_series_are_served(api: httpx.AsyncClient) -> None:
    r = await api.get("/metrics")
    assert r.status_code == 200
    s = Scrape(r.text)
    assert s.value("jetkube_apf_pacing_holds_total") == 0  # nothing rejected, nothing paced
    assert s.value("jetkube_apf_pacing_slots_taken_total") == 0
    for gauge in ("jetkube_apf_pacing_connections_waiting", "jetkube_apf_pacing_slots_held"):
        assert s.families[gauge].type == "gauge" and not s.families[gauge].samples  # no tenant paced now
