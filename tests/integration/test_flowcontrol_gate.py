"""The reject gate (gateway/_gate.py): flow control's 429s answered before Quart are the app's 429s
(headers, kube's plain-text body), counted in the same metrics and audited the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway._fast import FastPath
from gateway._gate import Gate
from gateway._settings import load_audit_policy
from tests.conftest import StartServer, client_for, poll_until, reject_level_for

pytestmark = pytest.mark.integration
CM = "/api/v1/namespaces/default/configmaps"
EVENTS = "/apis/audit.jetkube.io/v1/events"
POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""


def _sum(metrics: str, prefix: str, *needles: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines()
               if ln.startswith(prefix) and all(n in ln for n in needles))


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "quart"])
async def test_gate_rejections_are_the_apps(start_server: StartServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """(``fast``: the reads the gate lets through go on to the fast path, or to Quart's handler.)"""
    monkeypatch.setattr(FastPath, "enabled", fast)
    gate_ids: set[str] = set()
    real_reject = Gate._reject

    async def counted(self: Gate, scope: Any, send: Any, *args: Any) -> None:
        async def spy(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                gate_ids.add(dict(message["headers"])[b"audit-id"].decode())
            await send(message)

        await real_reject(self, scope, spy, *args)

    monkeypatch.setattr(Gate, "_reject", counted)
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("alice-token,alice,u-alice\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    gw = await start_server(token_file=str(tokens), audit_policy=load_audit_policy(str(policy)))
    with trio.fail_after(90):
        async with client_for(gw) as admin, httpx.AsyncClient(
                base_url=str(gw.http_url), headers={"Authorization": "Bearer alice-token"}, timeout=30,
                limits=httpx.Limits(max_connections=100)) as alice:
            for i in range(30):  # something to list, so a LIST takes a moment
                r = await admin.post(CM, json={"metadata": {"name": f"cm-{i}"}, "data": {"v": "x" * 500}})
                assert r.status_code == 201, r.text
            # alice's reads go to a level of no seats that rejects: one at a time is served.
            level_uid, schema_uid = await reject_level_for(admin, "alice", {"nominalConcurrencyShares": 0})
            before = (await admin.get("/metrics")).text

            out: list[httpx.Response] = []

            async def one(i: int) -> None:
                out.append(await alice.get(CM, params={"limit": "500"} if i % 2 else None))

            for _ in range(3):  # the first rejections through the app, then (within 1 s) the gate's
                async with trio.open_nursery() as n:
                    for i in range(60):
                        n.start_soon(one, i)
            rejected = [r for r in out if r.status_code == 429]
            assert {r.status_code for r in out} <= {403, 429}  # not authorized when let through
            by_gate = [r for r in rejected if r.headers["Audit-Id"] in gate_ids]
            by_app = [r for r in rejected if r.headers["Audit-Id"] not in gate_ids]
            assert by_gate and by_app, (len(by_gate), len(by_app))

            def shape(r: httpx.Response) -> tuple[Any, ...]:
                h = {k.lower(): v for k, v in r.headers.items() if k.lower() not in ("date", "audit-id")}
                return tuple(sorted(h.items())), r.content

            assert {shape(r) for r in by_gate} == {shape(r) for r in by_app}
            r = by_gate[0]
            assert r.headers["X-Kubernetes-PF-FlowSchema-UID"] == schema_uid
            assert r.headers["X-Kubernetes-PF-PriorityLevel-UID"] == level_uid
            # kube's priority-and-fairness filter answers with Go's http.Error: plain text, not a Status.
            assert int(r.headers["Retry-After"]) >= 1 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.content == b"Too many requests, please try again later.\n"
            head = await alice.head(CM)  # HEAD: the same headers, no body
            assert head.status_code in (403, 429) and head.content == b""

            # Counted as the app counts them: request totals by code, flow control's rejections.
            after = (await admin.get("/metrics")).text
            req_429 = _sum(after, "apiserver_request_total{", 'code="429"') - _sum(
                before, "apiserver_request_total{", 'code="429"')
            assert req_429 == len(rejected) + (head.status_code == 429)
            fc = ("apiserver_flowcontrol_rejected_requests_total{", 'flow_schema="alice"')
            assert _sum(after, *fc) - _sum(before, *fc) == req_429
            # Each request authenticated once, those the gate let through too (and this scrape).
            authn = ("jetkube_stage_duration_seconds_count{", 'stage="authn"')
            assert _sum(after, *authn) - _sum(before, *authn) == len(out) + 2

            # Audited as the app audits them.
            ids = {r.headers["Audit-Id"] for r in rejected}

            async def recorded() -> bool:
                r = await admin.get(EVENTS)
                return ids <= {json.loads(ln)["auditID"] for ln in r.text.splitlines() if ln}

            await poll_until(recorded)
            r = await admin.get(EVENTS)
            events = {e["auditID"]: e for e in map(json.loads, r.text.splitlines()) if e["auditID"] in ids}

            def record(e: dict[str, Any]) -> tuple[Any, ...]:
                return (e["verb"], e["user"]["username"], e["responseStatus"]["code"], e["objectRef"],
                        e["level"], e["stage"], sorted(e))

            gate_records = {json.dumps(record(events[r.headers["Audit-Id"]])) for r in by_gate}
            app_records = {json.dumps(record(events[r.headers["Audit-Id"]])) for r in by_app}
            assert gate_records == app_records
            assert {events[r.headers["Audit-Id"]]["requestURI"] for r in by_gate} <= {CM, f"{CM}?limit=500"}
