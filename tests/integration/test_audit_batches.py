"""Reads' audit records appended in batches (gateway/_audit.py): one stored message per batch of reads
queued while the previous append was in flight, every record exactly once, each gateway's in order."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from bus import open_bridge
from gateway._audit import AuditSink
from projections import decode_records
from tests.conftest import client_for, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
EVENTS = "/apis/audit.jetkube.io/v1/events"


async def _stream(url: str) -> list[list[dict[str, Any]]]:
    """The audit stream, raw: each message's records."""
    out: list[list[dict[str, Any]]] = []
    async with open_bridge(url) as bridge:
        seq = 1
        while True:
            reply = await bridge.request("$JS.API.DIRECT.GET.JETKUBE_AUDIT", json.dumps({"seq": seq}).encode(),
                                         timeout_s=5)
            if reply.status is not None:
                return out
            out.append(decode_records(reply.data))
            seq = int((reply.headers or {})["Nats-Sequence"]) + 1


async def test_reads_are_audited_in_batches_each_once_and_in_order(start_server, nats_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    appended: list[int] = []
    append = AuditSink._append

    async def slow_append(self: AuditSink, log: Any, subject: str, payload: bytes, msg_id: str, records: int,
                          **kw: Any) -> None:
        await trio.sleep(0.03)  # injected latency: the reads answered meanwhile queue behind this append
        appended.append(records)
        await append(self, log, subject, payload, msg_id, records, **kw)

    monkeypatch.setattr(AuditSink, "_append", slow_append)
    g1, g2 = await start_server(), await start_server()
    names = [f"c{i}" for i in range(10)]
    ids: dict[str, set[str]] = {"g1": set(), "g2": set()}
    async with client_for(g1) as c1, client_for(g2) as c2:
        with trio.fail_after(90):
            for n in names:
                assert (await c1.post(CM, json={"metadata": {"name": n}})).status_code == 201

            async def reader(c: httpx.AsyncClient, who: str, k: int) -> None:
                for i in range(15):
                    r = await c.get(f"{CM}/{names[(k + i) % len(names)]}", headers={"User-Agent": f"ua-{who}"})
                    assert r.status_code == 200
                    ids[who].add(r.headers["Audit-Id"])

            async with trio.open_nursery() as nursery:
                for k in range(12):
                    nursery.start_soon(reader, c1, "g1", k)
                    nursery.start_soon(reader, c2, "g2", k)
            assert len(ids["g1"]) == len(ids["g2"]) == 12 * 15
            wanted = ids["g1"] | ids["g2"]

            async def all_queried() -> bool:
                r = await c1.get(EVENTS, params={"verb": "get", "limit": "10000"})
                got = {json.loads(line)["auditID"] for line in r.text.splitlines() if line}
                return wanted <= got

            await poll_until(all_queried)
            messages = await _stream(nats_url)

    reads = [rec for msg in messages for rec in msg if rec["auditID"] in wanted]
    assert sorted(r["auditID"] for r in reads) == sorted(wanted)  # each read once
    assert all(r["stage"] == "ResponseComplete" and r["verb"] == "get" for r in reads)
    assert max(appended) > 1 and len(messages) < sum(len(m) for m in messages)  # batched
    for who in ("g1", "g2"):  # a gateway's records are stored in the order they were recorded
        stamps = [r["stageTimestamp"] for r in reads if r["userAgent"] == f"ua-{who}"]
        assert len(stamps) == 12 * 15 and stamps == sorted(stamps)
