"""The one typed, frozen settings object, decoded once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml

from bus import NatsAuth

# The Kubernetes minor version we report: the schemas served are 1.33's (kubernetes-validate), and
# gcloud's kubectl dispatcher runs kubectl.1.<minor>, which we test (1.27-1.33 all work).
KUBE_MINOR = "33"


TRACING_API_VERSIONS = ("apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1",
                        "apiserver.config.k8s.io/v1alpha1")
DEFAULT_OTLP_ENDPOINT = "localhost:4318"


class TracingConfig(msgspec.Struct, frozen=True, kw_only=True):
    """kube-apiserver's ``TracingConfiguration`` (``--tracing-config-file``), decoded.

    ``endpoint`` is an OTLP/HTTP collector: ``host:port`` (sent to ``http://host:port/v1/traces``)
    or a URL. kube's default, ``localhost:4317``, is OTLP/gRPC; ours is the OTLP/HTTP port.
    ``sampling_rate_per_million``: new traces sampled per million requests (kube's default, 0:
    only requests whose incoming ``traceparent`` is sampled are traced).
    """

    endpoint: str = DEFAULT_OTLP_ENDPOINT
    sampling_rate_per_million: int = 0

    @property
    def otlp_url(self) -> str:
        url = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
        scheme, _, rest = url.partition("://")
        return url if "/" in rest.strip("/") else f"{scheme}://{rest.rstrip('/')}/v1/traces"


class _TracingConfigFile(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    api_version: str
    kind: str
    endpoint: str | None = None
    sampling_rate_per_million: int | None = None


class TracingConfigError(ValueError):
    """A ``--tracing-config-file`` that cannot be used; the message names the file and the field."""


def load_tracing_config(path: str) -> TracingConfig:
    """Read and check a TracingConfiguration file (YAML or JSON), as kube-apiserver does at start."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        doc = msgspec.convert(raw, _TracingConfigFile)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as e:
        raise TracingConfigError(f"{path}: {e}") from None
    if doc.kind != "TracingConfiguration" or doc.api_version not in TRACING_API_VERSIONS:
        raise TracingConfigError(f"{path}: expected kind TracingConfiguration with apiVersion one of "
                                 f"{', '.join(TRACING_API_VERSIONS)}, got {doc.kind!r} {doc.api_version!r}")
    rate = 0 if doc.sampling_rate_per_million is None else doc.sampling_rate_per_million
    if not 0 <= rate <= 1_000_000:
        raise TracingConfigError(f"{path}: samplingRatePerMillion: {rate} must be between 0 and 1000000")
    if doc.endpoint is not None and (not doc.endpoint.strip() or any(c.isspace() for c in doc.endpoint)):
        raise TracingConfigError(f"{path}: endpoint: {doc.endpoint!r} is not a host:port or URL")
    return TracingConfig(endpoint=doc.endpoint or DEFAULT_OTLP_ENDPOINT, sampling_rate_per_million=rate)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: str = ".jetkube"
    host: str = "127.0.0.1"
    port: int = 6443
    nats_url: str | None = None  # None: run an embedded nats-server in <data_dir>/nats
    nats_auth: NatsAuth = NatsAuth()  # credentials and TLS for nats_url (the embedded one has its own)
    nats_restart_delay_s: float = 0.2  # embedded nats-server: pause before restarting a dead one
    token_file: str | None = None
    service_account_key_file: str | None = None  # PEM private key; default: <data_dir>/pki/sa.key, generated
    insecure_port: int | None = None
    stream: str = "JETKUBE"
    subject_prefix: str = "jk"
    stream_replicas: int = 1
    request_timeout_s: float = 60.0
    min_request_timeout_s: float = 1800.0  # watches without timeoutSeconds last [1, 2) x this
    max_body_bytes: int = 3 * 1024 * 1024
    tenancy_by_path: bool = False
    graceful_timeout_s: float = 5.0
    # kube's --shutdown-delay-duration: after SIGTERM, /readyz answers 503 at once while the
    # listeners keep serving this long, so a load balancer sees the gateway unready before it closes.
    shutdown_delay_s: float = 0.0
    kubeconfig: str | None = None  # default: <data_dir>/kubeconfig
    run_controllers: bool = True
    watch_ring_size: int = 10_000  # recent changes per resource served to resuming watches from memory
    watch_queue: int = 10_000  # events a watcher may fall behind before it is cut off
    bookmark_interval_s: float = 60.0
    log_level: str = "WARNING"
    log_format: str = "json"  # json (one object per line) or text
    # Which requests get kube's per-request line: all (kube at -v=3), errors (5xx) or none. kube
    # logs none at its default verbosity, and logs what fails on the server's side.
    request_log: str = "errors"
    # kube-apiserver's --service-cluster-ip-range and --service-node-port-range: where Services'
    # cluster IPs (the first address is the `kubernetes` service's) and node ports come from.
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    tracing: TracingConfig | None = None  # --tracing-config-file; None: off (OpenTelemetry not imported)

    def version_info(self) -> dict[str, Any]:
        return {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0-jetkube",
                "gitCommit": "jetkube", "gitTreeState": "clean", "buildDate": "2026-11-27T00:00:00Z",
                "goVersion": "python", "compiler": "gc", "platform": "linux/amd64"}
