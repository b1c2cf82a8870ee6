"""``/metrics`` after a scripted mix of requests: kube-apiserver's series with exact counts, labels and
buckets, jetkube's own, who may read it, and ``promtool check metrics`` on the whole text."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gateway import Running
from gateway._metrics import (
    REQUEST_DURATION_BUCKETS,
    REQUEST_SLI_BUCKETS,
    RESPONSE_SIZE_BUCKETS,
    WATCH_EVENT_SIZE_BUCKETS,
)
from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
SEL = "labelSelector=app%3Dmetrics"
COORD = {"group": "coordination.k8s.io", "resource": "leases"}
CM_GVK = {"group": "", "version": "v1", "kind": "ConfigMap", "tenant": "root"}


class Scrape:
    """One parsed exposition: samples by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {(s.name, frozenset(s.labels.items())): s.value
                        for f in self.families.values() for s in f.samples}

    def value(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no {name}{labels} in\n" + "\n".join(
            f"{n} {dict(ls)}" for n, ls in self.samples if n == name)
        return self.samples[key]

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def buckets(self, name: str, **labels: str) -> list[str]:
        return [dict(ls)["le"] for n, ls in self.samples
                if n == name + "_bucket" and {k: v for k, v in ls if k != "le"} == labels]


def request(verb: str, scope: str, code: str = "", *, resource: str = "configmaps", group: str = "",
            version: str = "v1", subresource: str = "", dry_run: str | None = "",
            tenant: str = "root") -> dict[str, str]:
    """kube's request-metric label set (``code``/``dry_run`` left out when not given), and the
    tenant (jetkube's label beside kube's)."""
    labels = {"verb": verb, "group": group, "version": version, "resource": resource,
              "subresource": subresource, "scope": scope, "component": "apiserver", "tenant": tenant}
    if dry_run is not None:
        labels["dry_run"] = dry_run
    if code:
        labels["code"] = code
    return labels


def metrics_path(code: str = "", **kw: Any) -> dict[str, str]:
    return request("GET", "", code, resource="", version="", subresource="/metrics", **kw)


def kube_buckets(bounds: tuple[float, ...]) -> list[str]:
    """Bucket bounds as Prometheus text writes them (Go's float formatting)."""
    from prometheus_client.utils import floatToGoString

    return [floatToGoString(b) for b in bounds] + ["+Inf"]


async def promtool() -> str:
    """promtool (Debian's prometheus package), installed here when missing: part of this test's setup."""
    found = shutil.which("promtool")
    if found is None:
        assert os.geteuid() == 0, "promtool is missing; install Debian's prometheus package"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with trio.fail_after(900):
            await trio.run_process(["apt-get", "update", "-q"], capture_stdout=True, capture_stderr=True)
            await trio.run_process(["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
                                   env=env, capture_stdout=True, capture_stderr=True)
        found = shutil.which("promtool")
    assert found is not None
    return found


async def test_metrics_after_a_scripted_mix(start_server: StartServer, tmp_path: Path) -> None:
    tool = await promtool()
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('mon-token,prom,uid-prom,"system:monitoring"\nbob-token,bob,uid-bob\n')
    server = await start_server(token_file=str(tokens))
    assert server.http_url is not None
    url = server.http_url

    def as_user(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    with trio.fail_after(60):
        async with client_for(server) as api, httpx.AsyncClient(base_url=url, timeout=30) as anon, \
                as_user("mon-token") as mon, as_user("bob-token") as bob:
            for name in ("a", "b", "c"):
                r = await api.post(CM, json={"metadata": {"name": name, "labels": {"app": "metrics"}}})
                assert r.status_code == 201, r.text
            assert (await api.post(CM, json={"metadata": {"name": "a"}})).status_code == 409
            assert (await api.post(CM + "?dryRun=All", json={"metadata": {"name": "dry"}})).status_code == 201
            for name in ("l1", "l2"):
                assert (await api.post(LEASES, json={"metadata": {"name": name}})).status_code == 201
            for _ in range(2):
                assert (await api.get(CM + "/a")).status_code == 200
            assert (await api.get(CM + "/missing")).status_code == 404
            for _ in range(2):
                listed = await api.get(f"{CM}?{SEL}")
                assert listed.status_code == 200 and len(listed.json()["items"]) == 3
            assert (await api.get(LEASES)).status_code == 200  # consistent: the store has both leases
            assert (await anon.get(CM)).status_code == 401
            assert (await bob.get("/metrics")).status_code == 403
            assert (await anon.get("/metrics")).status_code == 401
            first = await mon.get("/metrics")
            assert first.status_code == 200
            assert first.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            # The writes above ran one at a time, and so did the reads.
            s = Scrape(first.text)
            assert s.value("apiserver_current_inflight_requests", request_kind="mutating") == 1
            assert s.value("apiserver_current_inflight_requests", request_kind="readOnly") == 1

            # A watch, scraped while it is open, then read to its end (timeoutSeconds ends it).
            async with api.stream("GET", f"{CM}?{SEL}&watch=1&timeoutSeconds=2") as w:
                assert w.status_code == 200
                lines = w.aiter_lines()
                events = [await lines.__anext__()]
                during = Scrape((await mon.get("/metrics")).text)
                events += [line async for line in lines if line]
            assert len(events) == 3
            assert during.value("apiserver_longrunning_requests", **request("WATCH", "namespace", dry_run=None)) == 1
            assert during.value("apiserver_registered_watchers", **CM_GVK) == 1
            # A second watch from the list's resourceVersion: served from the ring of recent changes.
            rv = listed.json()["metadata"]["resourceVersion"]
            async with api.stream("GET", f"{CM}?{SEL}&watch=1&timeoutSeconds=1&resourceVersion={rv}") as w:
                assert [line async for line in w.aiter_lines() if line] == []
            final = await mon.get("/metrics")
    s = Scrape(final.text)

    # apiserver_request_total: every request above, each once, with kube's labels.
    expected = {
        ("POST", "resource", "201", ""): 3, ("POST", "resource", "409", ""): 1, ("POST", "resource", "201", "All"): 1,
        ("GET", "resource", "200", ""): 2, ("GET", "resource", "404", ""): 1,
        ("LIST", "namespace", "200", ""): 2, ("LIST", "namespace", "401", ""): 1,
        ("WATCH", "namespace", "200", ""): 2,
    }
    for (verb, scope, code, dry), n in expected.items():
        assert s.value("apiserver_request_total", **request(verb, scope, code, dry_run=dry)) == n, (verb, code)
    assert s.value("apiserver_request_total", **request("POST", "resource", "201", version="v1", **COORD)) == 2
    assert s.value("apiserver_request_total", **request("LIST", "namespace", "200", **COORD)) == 1
    assert s.value("apiserver_request_total", **metrics_path("200")) == 2
    assert s.value("apiserver_request_total", **metrics_path("403")) == 1
    assert s.value("apiserver_request_total", **metrics_path("401")) == 1
    assert s.total("apiserver_request_total") == sum(expected.values()) + 2 + 1 + 4
    assert s.families["apiserver_request"].type == "counter"

    # Latency histograms with kube's buckets; dry runs are left out of the SLI one.
    post = request("POST", "resource")
    assert s.value("apiserver_request_duration_seconds_count", **post) == 4
    assert s.value("apiserver_request_duration_seconds_count", **request("POST", "resource", dry_run="All")) == 1
    assert s.buckets("apiserver_request_duration_seconds", **post) == kube_buckets(REQUEST_DURATION_BUCKETS)
    post_sli = request("POST", "resource", dry_run=None)
    assert s.value("apiserver_request_sli_duration_seconds_count", **post_sli) == 4
    assert s.buckets("apiserver_request_sli_duration_seconds", **post_sli) == kube_buckets(REQUEST_SLI_BUCKETS)
    assert s.value("apiserver_request_duration_seconds_count", **request("WATCH", "namespace")) == 2
    # Response sizes: GET and LIST only (whatever the code).
    get = request("GET", "resource", dry_run=None)
    assert s.value("apiserver_response_sizes_count", **get) == 3
    assert s.value("apiserver_response_sizes_count", **request("LIST", "namespace", dry_run=None)) == 3
    assert s.buckets("apiserver_response_sizes", **get) == kube_buckets(RESPONSE_SIZE_BUCKETS)
    assert s.total("apiserver_response_sizes_count") == 3 + 3 + 1 + 4  # + the leases LIST, the /metrics GETs
    assert ("apiserver_response_sizes_count", frozenset(request("POST", "resource", dry_run=None).items())) \
        not in s.samples

    # In flight since the previous scrape: only this one (reads, one at a time); nothing long-running now.
    assert s.value("apiserver_current_inflight_requests", request_kind="readOnly") == 1
    assert s.value("apiserver_current_inflight_requests", request_kind="mutating") == 0
    assert s.value("apiserver_longrunning_requests", **request("WATCH", "namespace", dry_run=None)) == 0
    assert s.value("apiserver_registered_watchers", **CM_GVK) == 0
    gvk = {"group": "", "version": "v1", "kind": "ConfigMap", "tenant": "root"}
    assert s.value("apiserver_watch_events_total", **gvk) == 3
    assert s.value("apiserver_watch_events_sizes_count", **gvk) == 3
    assert s.buckets("apiserver_watch_events_sizes", **gvk) == kube_buckets(WATCH_EVENT_SIZE_BUCKETS)
    assert s.value("apiserver_storage_objects", resource="leases.coordination.k8s.io", tenant="root") == 2
    assert s.value("apiserver_storage_objects", resource="namespaces", tenant="root") == 4
    assert s.families["apiserver_request_aborts"].type == "counter"
    assert s.total("apiserver_request_aborts_total") == 0

    # Process and Python collectors, on this server's own registry.
    assert s.value("process_cpu_seconds_total") > 0
    assert s.value("process_resident_memory_bytes") > 0
    assert s.total("python_info") == 1
    assert s.total("python_gc_collections_total") > 0

    # jetkube's own. Every request is authenticated first (the 401s too), then authorized; only
    # the 7 writes pass admission (the controllers write to the resource actor directly).
    requests = s.total("apiserver_request_total") + 1  # and this scrape, authenticated before it rendered
    assert s.value("jetkube_stage_duration_seconds_count", stage="authn") == requests
    assert s.value("jetkube_stage_duration_seconds_count", stage="authz") == requests - 2
    assert s.value("jetkube_stage_duration_seconds_count", stage="admission") == 7
    assert s.buckets("jetkube_stage_duration_seconds", stage="resource")[-1] == "+Inf"
    assert s.value("jetkube_actor_mailbox_depth", actor="resource") == 0
    assert s.value("jetkube_actor_mailbox_capacity", actor="resource") == 4096
    assert s.value("jetkube_log_append_duration_seconds_count") >= 5
    assert s.value("jetkube_log_append_conflicts_total") >= 1  # the second create of "a"
    applied = s.value("jetkube_projection_applied_sequence")
    assert s.value("jetkube_projection_head_sequence") >= s.value("jetkube_log_append_duration_seconds_count")
    assert s.value("jetkube_projection_lag_events") == max(0, s.value("jetkube_projection_head_sequence") - applied)
    assert s.value("jetkube_watch_starts_total", source="state") == 1
    assert s.value("jetkube_watch_starts_total", source="ring") == 1
    assert s.value("jetkube_watch_starts_total", source="log") == 0
    assert s.value("jetkube_projection_change_feed_dropped_total") == 0  # (a quiet gateway's feeds never fill)
    assert s.value("jetkube_projection_change_feed_resyncs_total") == 0
    assert s.value("jetkube_consistent_read_wait_seconds_count") >= 6
    assert s.value("jetkube_nats_connected") == 1
    assert s.value("jetkube_nats_connections_total") == 1
    assert s.value("jetkube_nats_reconnects_total") == 0

    with trio.fail_after(30):
        lint = await trio.run_process([tool, "check", "metrics"], stdin=final.content, capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr


async def test_two_servers_in_one_process_have_their_own_registries(start_server: StartServer) -> None:
    one, two = await start_server(), await start_server()
    with trio.fail_after(30):
        async with client_for(one) as a, client_for(two) as b:
            assert (await a.post(CM, json={"metadata": {"name": "only-on-one"}})).status_code == 201
            sa, sb = Scrape((await a.get("/metrics")).text), Scrape((await b.get("/metrics")).text)
    assert sa.value("apiserver_request_total", **request("POST", "resource", "201")) == 1
    assert ("apiserver_request_total", frozenset(request("POST", "resource", "201").items())) not in sb.samples


async def test_a_request_the_client_gives_up_on_is_counted_as_aborted(server: Running) -> None:
    async with client_for(server) as api:
        with trio.move_on_after(0.3) as gave_up:  # the read waits (bounded) for a sequence far ahead
            await api.get(CM + "/x?resourceVersion=99999999")
        assert gave_up.cancelled_caught
    # The server sees the connection close and cancels the handler; the abort is counted then
    # (the handler's cancellation also waits on the NATS thread, so no "all tasks blocked" point
    # marks it: the series is read until it appears, bounded).
    aborted = request("GET", "resource", dry_run=None)
    del aborted["component"]
    s: Scrape | None = None

    async def counted() -> bool:
        nonlocal s
        async with client_for(server) as api:
            s = Scrape((await api.get("/metrics")).text)
        return ("apiserver_request_aborts_total", frozenset(aborted.items())) in s.samples

    with trio.fail_after(10):
        await poll_until(counted)
    assert s is not None
    assert s.value("apiserver_request_aborts_total", **aborted) == 1
    assert ("apiserver_request_total", frozenset(request("GET", "resource", "200").items())) not in s.samples


async def test_apiserver_series_carry_the_tenant(start_server: StartServer) -> None:
    from tests.integration.test_crd import CRDS, widget, widget_crd
    from tests.integration.test_tenancy import create_tenant, t
    from tests.integration.test_tenancy_crds import crd_condition, serves

    tool = await promtool()
    server = await start_server()
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    with trio.fail_after(60):
        async with client_for(server) as api:
            await create_tenant(api, "t1")
            assert (await api.post(t("t1", CRDS), json=widget_crd())).status_code == 201
            await crd_condition(api, "t1", "widgets.example.com", "Established", "True")
            await serves(api, "t1", widgets)
            for i in range(3):
                assert (await api.post(t("t1", CM), json={"metadata": {"name": f"c{i}"}})).status_code == 201
                assert (await api.post(t("t1", widgets), json=widget(f"w{i}", size=i + 1))).status_code == 201
            assert (await api.post(CM, json={"metadata": {"name": "in-root"}})).status_code == 201
            for _ in range(2):  # an unknown tenant: 404, counted as root's (no label from a made-up name)
                assert (await api.get(t("nope", CM))).status_code == 404
            async with api.stream("GET", t("t1", widgets) + "?watch=1&timeoutSeconds=1") as w:
                assert len([line async for line in w.aiter_lines() if line]) == 3
            text = (await api.get("/metrics")).text
    s = Scrape(text)
    assert s.value("apiserver_request_total", **request("POST", "resource", "201", tenant="t1")) == 3
    assert s.value("apiserver_request_total", **request("POST", "resource", "201", group="example.com",
                                                        resource="widgets", tenant="t1")) == 3
    assert s.value("apiserver_request_total", **request("POST", "resource", "201")) == 1  # root's one
    assert s.value("apiserver_request_total", **request("LIST", "namespace", "404")) == 2  # the unknown tenant's
    assert not any(dict(ls).get("tenant") == "nope" for _, ls in s.samples)
    assert s.value("apiserver_request_duration_seconds_count", **request("POST", "resource", tenant="t1")) == 3
    widget_gvk = {"group": "example.com", "version": "v1", "kind": "Widget", "tenant": "t1"}
    assert s.value("apiserver_watch_events_total", **widget_gvk) == 3
    assert s.value("apiserver_registered_watchers", **widget_gvk) == 0
    assert s.value("apiserver_storage_objects", resource="widgets.example.com", tenant="t1") == 3
    assert s.value("apiserver_storage_objects", resource="configmaps", tenant="t1") >= 3  # + kube-root-ca.crt's
    assert s.value("apiserver_storage_objects", resource="namespaces", tenant="t1") == 4
    assert ("apiserver_storage_objects", frozenset({"resource": "widgets.example.com", "tenant": "root"}.items())) \
        not in s.samples
    # kube's own labels are all there, each series with the tenant beside them.
    for name in ("apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                 "apiserver_response_sizes_bucket", "apiserver_storage_objects", "apiserver_watch_events_total"):
        assert all("tenant" in dict(ls) for n, ls in s.samples if n == name), name
    with trio.fail_after(30):
        lint = await trio.run_process([tool, "check", "metrics"], stdin=text.encode(), capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
