"""``--tracing-config-file``: kube's TracingConfiguration decoded once at start, a bad file refused
with a clear error; kube's request span names."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway._cli import main
from gateway._routes import parse
from gateway._settings import TracingConfig, TracingConfigError, load_tracing_config
from gateway._tracing import context_of, span_name, traceparent_of
from kinds import Registry


def write(tmp_path: Path, text: str) -> str:
    f = tmp_path / "tracing.yaml"
    f.write_text(text)
    return str(f)


def test_a_kube_tracing_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: TracingConfiguration\n"
                           "endpoint: collector:4318\nsamplingRatePerMillion: 10000\n")
    want = TracingConfig(endpoint="collector:4318", sampling_rate_per_million=10_000)
    assert load_tracing_config(path) == want
    # Both fields are optional, as in kube; v1 is accepted too.
    path = write(tmp_path, "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n")
    assert load_tracing_config(path) == TracingConfig(endpoint="localhost:4318", sampling_rate_per_million=0)


@pytest.mark.parametrize(("endpoint", "url"), [
    ("localhost:4318", "http://localhost:4318/v1/traces"),
    ("https://otel.example:4318", "https://otel.example:4318/v1/traces"),
    ("http://otel.example:4318/custom", "http://otel.example:4318/custom"),
])
def test_the_otlp_http_url(endpoint: str, url: str) -> None:
    assert TracingConfig(endpoint=endpoint).otlp_url == url


HEAD = "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: TracingConfiguration\n"


@pytest.mark.parametrize(("text", "message"), [
    (HEAD + "samplingRatePerMillion: 2000000\n", "2000000 must be between 0 and 1000000"),
    (HEAD + "samplingRatePerMillion: -1\n", "must be between 0 and 1000000"),
    (HEAD + "samplingRate: 5\n", "unknown field `samplingRate`"),
    (HEAD + "endpoint: 'a b'\n", "is not a host:port"),
    ("apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AdmissionConfiguration\n",
     "expected kind TracingConfiguration"),
    ("apiVersion: v1\nkind: TracingConfiguration\n", "expected kind TracingConfiguration"),
    ("kind: TracingConfiguration\n", "missing required field `apiVersion`"),
    ("apiVersion: [unclosed\n", "while parsing"),
    ("- a list\n", "Expected `object`"),
])
def test_a_bad_file_is_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TracingConfigError, match=path) as e:
        load_tracing_config(path)
    assert message in str(e.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TracingConfigError, match="No such file"):
        load_tracing_config(str(tmp_path / "absent.yaml"))


def test_serve_stops_at_start_on_a_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"
                           "samplingRatePerMillion: many\n")
    with pytest.raises(SystemExit) as e:
        main(["serve", "--data-dir", str(tmp_path / "jk"), "--tracing-config-file", path])
    err = str(e.value.code)  # printed on stderr, exit status 1
    assert f"jetkube serve: --tracing-config-file {path}: Expected `int | null`, got `str`" in err
    assert "at `$.samplingRatePerMillion`" in err


@pytest.mark.parametrize(("method", "path", "name"), [
    ("GET", "/api/v1/namespaces/default/configmaps/c1",
     "GET /api/v1/namespaces/{:namespace}/configmaps/{:name}"),
    ("POST", "/api/v1/namespaces/default/configmaps", "POST /api/v1/namespaces/{:namespace}/configmaps"),
    ("GET", "/apis/coordination.k8s.io/v1/leases", "GET /apis/coordination.k8s.io/v1/leases"),
    ("DELETE", "/api/v1/namespaces/n1", "DELETE /api/v1/namespaces/{:namespace}/namespaces/{:name}"),
    ("POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token",
     "POST /api/v1/namespaces/{:namespace}/serviceaccounts/{:name}/token"),
    ("GET", "/version", "GET"),
    ("GET", "/healthz", "GET"),
])
def test_kubes_span_names(method: str, path: str, name: str) -> None:
    assert span_name(method, parse(path, Registry())) == name


def test_a_traceparent_round_trips() -> None:
    from opentelemetry import trace

    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert traceparent_of(trace.get_current_span(context_of(tp)).get_span_context()) == tp
