"""Flow control's defaults: requests across tenants (``/clusters/*/``) are root's system:masters'
(classified by root's FlowSchemas: exempt, counted as root's in the APF series, as ``*`` in the
request series); fleet seat leases are on by default and what a level may execute here (leased,
fixed share or local) shows in the debug dump and in ``apiserver_flowcontrol_current_limit_seats``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import actors._apf_fleet
import actors._pipeline
from actors._apf_fleet import SHARDS, preferred_owner, shard_of
from tests.conftest import StartServer, client_for, poll_until
from tests.integration.test_tenancy import create_tenant

pytestmark = pytest.mark.integration
FC = "/apis/flowcontrol.apiserver.k8s.io/v1"
DUMP = "/debug/api_priority_and_fairness/dump_priority_levels"
TENANTS = ("t1", "t2")
PER_TENANT = 15


def _series(text: str, name: str) -> dict[str, float]:
    """``name``'s samples by their label string."""
    out: dict[str, float] = {}
    for ln in text.splitlines():
        if ln.startswith((name + "{", name + " ")):
            labels, value = ln[len(name):].rsplit(" ", 1)
            out[labels] = float(value)
    return out


def _dump(text: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in ln.split(",")] for ln in text.splitlines()]
    assert rows[0][10:] == ["CurrentLimitSeats", "LimitSource"], rows[0]
    return {r[0]: r for r in rows[1:]}


async def _uids(c: httpx.AsyncClient, prefix: str = "") -> tuple[str, str]:
    fs = (await c.get(f"{prefix}{FC}/flowschemas/exempt")).json()["metadata"]["uid"]
    pl = (await c.get(f"{prefix}{FC}/prioritylevelconfigurations/exempt")).json()["metadata"]["uid"]
    return fs, pl


async def test_requests_across_tenants_are_roots_system_masters(start_server: StartServer) -> None:
    gw = await start_server()
    with trio.fail_after(90):
        async with client_for(gw) as admin:
            for tenant in TENANTS:
                await create_tenant(admin, tenant)
            for prefix in ("", *(f"/clusters/{t}" for t in TENANTS)):
                for i in range(PER_TENANT):
                    r = await admin.post(f"{prefix}/api/v1/namespaces/default/configmaps",
                                         json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
                    assert r.status_code == 201, r.text
            root_uids = await _uids(admin)
            t1_uids = await _uids(admin, "/clusters/t1")
            assert root_uids != t1_uids
            before = (await admin.get("/metrics")).text
            wild = "/clusters/*/api/v1/configmaps"
            answers = [await admin.get(wild), await admin.get(wild, params={"limit": "10"}),
                       await admin.get(wild, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}),
                       await admin.get(wild, params={"labelSelector": "x!=y"}),
                       await admin.get("/clusters/*/api/v1"),
                       await admin.get(f"{wild}", params={"watch": "1", "timeoutSeconds": "1"})]
            assert [r.status_code for r in answers] == [200] * len(answers)
            assert len(answers[0].json()["items"]) >= PER_TENANT * 3
            for r in answers:  # classified by root's FlowSchemas: system:masters is exempt, as in kube
                assert (r.headers["X-Kubernetes-PF-FlowSchema-UID"],
                        r.headers["X-Kubernetes-PF-PriorityLevel-UID"]) == root_uids, r.request.url
            # A tenant's own request stays its own tenant's.
            r = await admin.get("/clusters/t1/api/v1/configmaps")
            assert (r.headers["X-Kubernetes-PF-FlowSchema-UID"], r.headers["X-Kubernetes-PF-PriorityLevel-UID"]) \
                == t1_uids
            after = (await admin.get("/metrics")).text
        key = '{flow_schema="exempt",priority_level="exempt",tenant="root"}'
        dispatched = "apiserver_flowcontrol_dispatched_requests_total"
        # the six, and the /metrics scrape that took "after" (the one taking "before" was counted in it)
        assert _series(after, dispatched)[key] - _series(before, dispatched)[key] == len(answers) + 1
        flow_lines = [ln for ln in after.splitlines() if ln.startswith("apiserver_flowcontrol_")]
        assert flow_lines and not [ln for ln in flow_lines if 'tenant="*"' in ln]  # no phantom tenant "*"
        served = _series(after, "jetkube_tenant_requests_total")
        assert served['{code="200",tenant="*",verb="list"}'] == 4 and served['{code="200",tenant="*",verb="watch"}'] == 1


async def test_fleet_leases_are_on_by_default_and_shown(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("alice-token,alice,u-alice\n")
    t0 = trio.current_time()
    leased = await start_server(token_file=str(tokens))
    started_leased = trio.current_time() - t0
    t0 = trio.current_time()
    local = await start_server(token_file=str(tokens), apf_fleet_lease_ttl_s=0)
    started_local = trio.current_time() - t0
    assert started_leased < 30 and started_local < 30
    with trio.fail_after(60):
        for gw, source in ((leased, "lease"), (local, "local")):
            async with client_for(gw) as admin, httpx.AsyncClient(
                    base_url=str(gw.http_url), headers={"Authorization": "Bearer alice-token"}, timeout=30) as alice:
                # alice is global-default's (a queuing level): served at once, leased or not
                t0 = trio.current_time()
                assert (await alice.get("/version")).status_code == 200
                first = trio.current_time() - t0
                assert first < 5, first  # (a lease request is bounded by min(1 s, TTL/4), then the fixed share)

                async def shows(source: str = source, alice: httpx.AsyncClient = alice,
                                admin: httpx.AsyncClient = admin) -> bool:
                    assert (await alice.get("/version")).status_code == 200
                    return _dump((await admin.get(DUMP)).text)["global-default"][11] == source

                await poll_until(shows)
                dump = _dump((await admin.get(DUMP)).text)
                text = (await admin.get("/metrics")).text
                limits = _series(text, "apiserver_flowcontrol_current_limit_seats")
                nominal = _series(text, "apiserver_flowcontrol_nominal_limit_seats")
                seats = int(dump["global-default"][10])
                assert limits['{priority_level="global-default",tenant="root"}'] == seats > 0
                if source == "local":  # (with one gateway alone, the budget is the local limit)
                    assert seats >= nominal['{priority_level="global-default",tenant="root"}']
                assert dump["exempt"][10:] == ["<none>", "exempt"]
                assert dump["catch-all"][11] == "local"  # a Reject level cannot wait for a lease
                leases = _series(text, "jetkube_apf_fleet_leases")
                assert (leases[""] >= 1) if source == "lease" else not leases
                # alone, this gateway owns every shard (it answers its own lease requests)
                assert _series(text, "jetkube_apf_fleet_owner_shards").get("") == (8 if source == "lease" else None)
    print(f"started in {started_leased:.2f} s with leases, {started_local:.2f} s without")


async def test_shard_ownership_spreads_over_the_gateways(start_server: StartServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Three gateways with the default leases: each shard ends owned by its preferred gateway (the
    first to start took all of them, then handed the others' over once it heard them), and a
    gateway whose tenant's shard another one owns leases its seats from it."""
    monkeypatch.setattr(actors._apf_fleet, "HANDOVER_AFTER_S", 1.0)
    pipelines: list[Any] = []
    run = actors._pipeline.Pipeline.run

    async def recorded(self: Any, **kw: Any) -> Any:
        pipelines.append(self)
        return await run(self, **kw)

    monkeypatch.setattr(actors._pipeline.Pipeline, "run", recorded)
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("alice-token,alice,u-alice\n")
    gws = [await start_server(token_file=str(tokens)) for _ in range(3)]
    ids = [p.apf_fleet.gateway for p in pipelines]

    def owners() -> list[list[int]]:
        return [[i for i, p in enumerate(pipelines) if s in p.apf_leases.owner.owned] for s in range(SHARDS)]

    with trio.fail_after(60):
        await poll_until(lambda: owners() == [[ids.index(preferred_owner(s, ids))] for s in range(SHARDS)])
        assert len({o[0] for o in owners()}) > 1, owners()  # (spread: not all on one gateway)
        assert sum(p.apf_leases.owner.handovers for p in pipelines) >= 1
        handed = 0.0
        for gw in gws:
            async with client_for(gw) as admin:
                handed += _series((await admin.get("/metrics")).text, "jetkube_apf_fleet_owner_handovers_total")[""]
        assert handed == sum(p.apf_leases.owner.handovers for p in pipelines)
        owner = owners()[shard_of("root")][0]
        for i, gw in enumerate(gws):
            async with client_for(gw) as admin, httpx.AsyncClient(
                    base_url=str(gw.http_url), headers={"Authorization": "Bearer alice-token"}, timeout=30) as alice:
                async def leased(alice: httpx.AsyncClient = alice, admin: httpx.AsyncClient = admin) -> bool:
                    assert (await alice.get("/version")).status_code == 200
                    return _dump((await admin.get(DUMP)).text)["global-default"][11] == "lease"

                await poll_until(leased)
                assert (i == owner) or pipelines[i].apf_leases.requests > 0
        # the owner answered the others' lease requests
        assert sum(b.answered for b, _ in pipelines[owner].apf_leases.owner.owned.values()) >= 2
