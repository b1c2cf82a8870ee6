"""``jetkube_apf_pacing_*`` (gateway/_metrics.py from gateway/_pacing.py's RejectPacer): connections
waiting for a pacing slot and slots held now, by tenant for at most ``MAX_PACING_TENANTS`` tenants
(the rest summed under ``_other``: a flood of tenants cannot grow the label space), and the holds and
slots taken as counters over all tenants."""

from __future__ import annotations

import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gateway._metrics import MAX_PACING_TENANTS, OTHER_TENANTS
from gateway._pacing import RejectPacer
from tests.unit.test_metrics_scrape import populated


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) if f.name.startswith("jetkube_apf_pacing")
            for s in f.samples}


async def test_pacing_metrics_by_tenant_bounded() -> None:
    m = populated(tenants=["t0"], kinds=1)
    assert not _samples(await m.render())  # not serving yet: no pacer, no series
    m.pacer = pacer = RejectPacer(slots=1)
    tenants = [f"t{i:02}" for i in range(MAX_PACING_TENANTS + 5)]
    async with trio.open_nursery() as n:
        for i, t in enumerate(tenants):
            await pacer.acquire(t, "10.0.0.1")  # a slot each, at once
            for _ in range(3 if i == 0 else 1 if i < MAX_PACING_TENANTS + 2 else 0):
                n.start_soon(pacer.acquire, t, "10.0.0.1")  # waits: the tenant's one slot is held
        await trio.testing.wait_all_tasks_blocked()
        s = _samples(await m.render())
        waiting = {dict(k[1])["tenant"]: v for k, v in s.items() if k[0] == "jetkube_apf_pacing_connections_waiting"}
        held = {dict(k[1])["tenant"]: v for k, v in s.items() if k[0] == "jetkube_apf_pacing_slots_held"}
        # The busiest tenants by name (t00 first: 3 waiting), the others summed.
        assert set(waiting) == set(held) == {*tenants[:MAX_PACING_TENANTS], OTHER_TENANTS}
        assert waiting["t00"] == 3 and waiting["t01"] == 1 and held["t00"] == 1
        assert waiting[OTHER_TENANTS] == 2 and held[OTHER_TENANTS] == 5  # t10, t11 wait; t10..t14 hold
        assert sum(waiting.values()) == pacer.waiting() == 3 + MAX_PACING_TENANTS + 1
        assert s[("jetkube_apf_pacing_holds_total", ())] == pacer.paced == sum(waiting.values())
        assert s[("jetkube_apf_pacing_slots_taken_total", ())] == len(tenants)
        for t in tenants:  # every slot given back: the waiters take them in turn, then none is left
            for _ in range(5):
                pacer.release(t, "10.0.0.1")
                await trio.testing.wait_all_tasks_blocked()
    s = _samples(await m.render())
    assert not [k for k in s if k[0] in ("jetkube_apf_pacing_connections_waiting", "jetkube_apf_pacing_slots_held")]
    assert s[("jetkube_apf_pacing_slots_taken_total", ())] == len(tenants) + pacer.paced
