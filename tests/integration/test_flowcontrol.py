"""API Priority and Fairness against a real nats-server: kube's objects served and bootstrapped."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from actors._apf_bootstrap import default_flow_schemas, default_priority_levels
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration
FC = "/apis/flowcontrol.apiserver.k8s.io/v1"


async def test_default_objects_bootstrapped(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        fs = (await api.get(f"{FC}/flowschemas")).json()
        pl = (await api.get(f"{FC}/prioritylevelconfigurations")).json()
    names = {o["metadata"]["name"] for o in fs["items"]}
    assert names == {o["metadata"]["name"] for o in default_flow_schemas()}
    levels = {o["metadata"]["name"]: o for o in pl["items"]}
    assert set(levels) == {o["metadata"]["name"] for o in default_priority_levels()}
    assert levels["workload-low"]["spec"]["limited"]["nominalConcurrencyShares"] == 100
    assert levels["exempt"]["metadata"]["annotations"]["apf.kubernetes.io/autoupdate-spec"] == "true"


TOKENS = "alice-token,alice,u-alice\nbob-token,bob,u-bob\n"


async def _burst(c: httpx.AsyncClient, n: int, path: str = "/version") -> list[httpx.Response]:
    out: list[httpx.Response] = []

    async def one() -> None:
        out.append(await c.get(path))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return out


async def test_flood_rejected_others_served_flowschema_changes_apply(start_server: StartServer,
                                                                     tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    assert gw.http_url is not None
    with trio.fail_after(60):
        async with client_for(gw, limits=httpx.Limits(max_connections=200)) as admin, \
                httpx.AsyncClient(base_url=gw.http_url, headers={"Authorization": "Bearer alice-token"},
                                  timeout=30, limits=httpx.Limits(max_connections=200)) as alice, \
                httpx.AsyncClient(base_url=gw.http_url, headers={"Authorization": "Bearer bob-token"},
                                  timeout=30) as bob:
            fs = {o["metadata"]["name"]: o for o in (await admin.get(f"{FC}/flowschemas")).json()["items"]}
            pl = {o["metadata"]["name"]: o for o in (await admin.get(f"{FC}/prioritylevelconfigurations")).json()[
                "items"]}
            # Before: alice is one flow of global-default (49 seats and queues): a burst is served.
            before = await _burst(alice, 40)
            assert {r.status_code for r in before} == {200}
            r = before[0]
            assert r.headers["X-Kubernetes-PF-FlowSchema-UID"] == fs["global-default"]["metadata"]["uid"]
            assert r.headers["X-Kubernetes-PF-PriorityLevel-UID"] == pl["global-default"]["metadata"]["uid"]
            # A FlowSchema puts alice on a level of one seat that rejects rather than queues.
            tiny = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
                    "metadata": {"name": "tiny"}, "spec": {"type": "Limited", "limited": {
                        "nominalConcurrencyShares": 0, "limitResponse": {"type": "Reject"}}}}
            r = await admin.post(f"{FC}/prioritylevelconfigurations", json=tiny)
            assert r.status_code == 201, r.text
            tiny_uid = r.json()["metadata"]["uid"]
            schema = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
                      "metadata": {"name": "alice"}, "spec": {
                          "priorityLevelConfiguration": {"name": "tiny"}, "matchingPrecedence": 50,
                          "distinguisherMethod": {"type": "ByUser"},
                          "rules": [{"subjects": [{"kind": "User", "user": {"name": "alice"}}],
                                     "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                                     "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                        "namespaces": ["*"], "clusterScope": True}]}]}}
            r = await admin.post(f"{FC}/flowschemas", json=schema)
            assert r.status_code == 201, r.text
            fs_uid = r.json()["metadata"]["uid"]
            # alice's flood is of consistent LISTs: each holds its seat across the log's head query. (A
            # /version is answered within one scheduling step, so a burst of them never overlaps on the
            # level's seat and nothing would be rejected.)
            binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": "alice-view"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}
            r = await admin.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=binding)
            assert r.status_code == 201, r.text
            results: dict[str, list[httpx.Response]] = {}

            async def run(name: str, c: httpx.AsyncClient, n: int, path: str = "/version") -> None:
                results[name] = await _burst(c, n, path)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "alice", alice, 60, "/api/v1/namespaces/default/configmaps")
                nursery.start_soon(run, "admin", admin, 60)
                nursery.start_soon(run, "bob", bob, 5)
            rejected = [r for r in results["alice"] if r.status_code == 429]
            assert rejected and all(r.status_code in (200, 429) for r in results["alice"])
            for r in rejected:
                assert int(r.headers["Retry-After"]) >= 1
                assert r.headers["X-Kubernetes-PF-FlowSchema-UID"] == fs_uid
                assert r.headers["X-Kubernetes-PF-PriorityLevel-UID"] == tiny_uid
                # kube's http.Error: plain text (tests/integration/test_flowcontrol_plain429.py)
                assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert r.content == b"Too many requests, please try again later.\n"
            # Exempt (system:masters) is never rejected; another user's flow goes through.
            assert {r.status_code for r in results["admin"]} == {200}
            assert results["admin"][0].headers["X-Kubernetes-PF-FlowSchema-UID"] == fs["exempt"]["metadata"]["uid"]
            assert {r.status_code for r in results["bob"]} == {200}


async def test_metrics_have_flowcontrol_series(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        assert (await api.get("/api/v1/namespaces")).status_code == 200
        text = (await api.get("/metrics")).text
    assert 'apiserver_flowcontrol_dispatched_requests_total{flow_schema="exempt",priority_level="exempt",' \
           'tenant="root"}' in text
    assert "apiserver_flowcontrol_current_executing_seats{" in text
    assert "apiserver_flowcontrol_request_wait_duration_seconds_bucket{" in text


async def test_debug_dumps(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    with trio.fail_after(30):
        async with client_for(gw) as admin, httpx.AsyncClient(
                base_url=str(gw.http_url), headers={"Authorization": "Bearer alice-token"}, timeout=30) as alice:
            r = await admin.get("/debug/api_priority_and_fairness/dump_priority_levels")
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
            lines = r.text.splitlines()
            assert lines[0].split(",")[0] == "PriorityLevelName" and "CancelledRequests" in lines[0]
            assert {ln.split(",")[0] for ln in lines[1:]} >= {"exempt", "catch-all", "global-default"}
            r = await admin.get("/debug/api_priority_and_fairness/dump_queues")
            assert r.status_code == 200
            assert sum(1 for ln in r.text.splitlines() if ln.startswith("workload-low,")) == 128
            # Authorized as kube: a nonResourceURL get that a plain user is not granted.
            r = await alice.get("/debug/api_priority_and_fairness/dump_queues")
            assert r.status_code == 403


def _executing(dump: str, level: str) -> int:
    for line in dump.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if cells[0] == level:
            return int(cells[5])
    raise AssertionError(f"no {level} in {dump}")


async def test_watch_holds_a_seat_only_for_its_initial_events(api: httpx.AsyncClient) -> None:
    dump = "/debug/api_priority_and_fairness/dump_priority_levels"
    with trio.fail_after(30):
        for i in range(5):
            r = await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"w{i}"}})
            assert r.status_code == 201
        watch = ("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                 "&resourceVersionMatch=NotOlderThan")
        async with api.stream("GET", watch) as stream:
            assert stream.headers["X-Kubernetes-PF-FlowSchema-UID"]
            async for line in stream.aiter_lines():
                if "k8s.io/initial-events-end" in line:
                    break
            # Only the dump request itself executes: the watch gave its seat back.
            assert _executing((await api.get(dump)).text, "exempt") == 1
        for _ in range(2):  # plain watches, opened and closed: nothing left held
            async with api.stream("GET", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1"):
                pass
        assert _executing((await api.get(dump)).text, "exempt") == 1
