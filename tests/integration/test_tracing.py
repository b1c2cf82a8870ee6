"""OpenTelemetry traces with the SDK's in-memory exporter: one trace per request, a child span per
actor stage, the log append and the consistent-read wait; the client's traceparent honoured;
sampling rate 0 records nothing; with tracing off OpenTelemetry is never imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway import Running, Settings, serve
from gateway._settings import TracingConfig
from tests.conftest import client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"


@asynccontextmanager
async def traced_server(tmp_path: Path, nats_url: str, rate: int,
                        spans: list[ReadableSpan]) -> AsyncIterator[Running]:
    """A traced jetkube; on leaving, it stops (flushing its exporter) and ``spans`` gets every span."""
    exporter = InMemorySpanExporter()
    stop = trio.Event()
    settings = Settings(data_dir=str(tmp_path / "jk"), port=0, insecure_port=0, nats_url=nats_url,
                        graceful_timeout_s=0.5, tracing=TracingConfig(sampling_rate_per_million=rate))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            running = await nursery.start(partial(serve, settings, shutdown=stop, span_exporter=exporter))
            try:
                yield running
            finally:
                stop.set()
    spans.extend(exporter.get_finished_spans())


def by_trace(spans: list[ReadableSpan]) -> dict[int, list[ReadableSpan]]:
    out: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        assert s.context is not None
        out.setdefault(s.context.trace_id, []).append(s)
    return out


def tree(trace: list[ReadableSpan]) -> tuple[ReadableSpan, Callable[[ReadableSpan], list[str]]]:
    """The trace's request span, and a function giving a span's children's names (sorted)."""
    (root,) = [s for s in trace if s.kind == SpanKind.SERVER]

    def children(parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        parent_id = parent.context.span_id
        return sorted(s.name for s in trace if s.parent is not None and s.parent.span_id == parent_id)

    return root, children


def named(trace: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in trace if s.name == name]
    return span


async def test_one_trace_per_request_with_the_stage_spans(tmp_path: Path, nats_url: str) -> None:
    spans: list[ReadableSpan] = []
    async with traced_server(tmp_path, nats_url, 1_000_000, spans) as running, client_for(running) as api:
        r = await api.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t1"}})
        assert r.status_code == 201, r.text
        create_audit_id = r.headers["Audit-Id"]
        r = await api.get(f"{CM}/t1")
        assert r.status_code == 200
        r = await api.get("/version")
        assert r.status_code == 200
    traces = list(by_trace(spans).values())
    assert len(traces) == 3  # one per request; the controllers' own writes carry no trace
    names = {tree(t)[0].name: t for t in traces}
    assert set(names) == {"POST /api/v1/namespaces/{:namespace}/configmaps",
                          "GET /api/v1/namespaces/{:namespace}/configmaps/{:name}", "GET"}

    create = names["POST /api/v1/namespaces/{:namespace}/configmaps"]
    root, children = tree(create)
    assert children(root) == ["admission", "authn", "authz", "resource"]
    assert children(named(create, "resource")) == ["log append"]
    attrs = dict(root.attributes or {})
    assert attrs["http.method"] == "POST" and attrs["http.target"] == CM
    assert attrs["http.status_code"] == 201 and attrs["audit-id"] == create_audit_id
    assert root.parent is None

    get = names["GET /api/v1/namespaces/{:namespace}/configmaps/{:name}"]
    root, children = tree(get)
    # A read is authorized, then served by the gateway after a consistent read (resourceVersion unset).
    assert children(root) == ["authn", "authz", "consistent read wait"]
    assert dict(root.attributes or {})["http.status_code"] == 200


async def test_the_clients_traceparent_is_the_parent(tmp_path: Path, nats_url: str) -> None:
    spans: list[ReadableSpan] = []
    # Rate 0: only the client's sampled trace is followed (kube's parent-based sampler).
    async with traced_server(tmp_path, nats_url, 0, spans) as running, client_for(running) as api:
        r = await api.get(f"{CM}/absent", headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"})
        assert r.status_code == 404
    (trace,) = by_trace(spans).values()
    root, children = tree(trace)
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    assert f"{root.parent.span_id:016x}" == CLIENT_SPAN_ID and root.parent.is_remote
    assert children(root) == ["authn", "authz", "consistent read wait"]


async def test_sampling_rate_zero_records_no_span(tmp_path: Path, nats_url: str) -> None:
    spans: list[ReadableSpan] = []
    async with traced_server(tmp_path, nats_url, 0, spans) as running, client_for(running) as api:
        r = await api.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t0"}})
        assert r.status_code == 201
        assert (await api.get(f"{CM}/t0")).status_code == 200
        # A client's traceparent that is not sampled is followed too: not recorded.
        r = await api.get(CM, headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-00"})
        assert r.status_code == 200
    assert spans == []


OFF_SCRIPT = """
import sys
from functools import partial

import httpx
import trio

from gateway import Settings, serve


async def main(nats_url: str, data_dir: str, traceparent: str, cm: str) -> None:
    stop = trio.Event()
    settings = Settings(data_dir=data_dir, port=0, insecure_port=0, nats_url=nats_url, graceful_timeout_s=0.5)
    async with trio.open_nursery() as nursery:
        running = await nursery.start(partial(serve, settings, shutdown=stop))
        async with httpx.AsyncClient(base_url=running.http_url, timeout=30,
                                     headers={"Authorization": f"Bearer {running.admin_token}",
                                              "traceparent": traceparent}) as api:
            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "off"}}
            r = await api.post(cm, json=obj)
            assert r.status_code == 201, r.text
            assert (await api.get(f"{cm}/off")).status_code == 200
        stop.set()
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    assert loaded == [], loaded
    print("no opentelemetry")


trio.run(main, *sys.argv[1:])
"""


async def test_tracing_off_never_imports_opentelemetry(tmp_path: Path, nats_url: str) -> None:
    with trio.fail_after(60):
        done: Any = await trio.run_process([sys.executable, "-c", OFF_SCRIPT, nats_url, str(tmp_path / "jk"),
                                            f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01", CM],
                                           cwd=REPO, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "no opentelemetry"
    assert isinstance(done, subprocess.CompletedProcess)
