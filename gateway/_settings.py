"""The one typed, frozen settings object, decoded once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml

from actors import AuthenticationConfigError
from bus import EncryptionConfig, NatsAuth
from projections import DEFAULT_POLICY, Policy, parse_policy

from ._audit_webhook import WebhookOptions

# The Kubernetes minor version we report: the schemas served are 1.33's (kubernetes-validate), and
# gcloud's kubectl dispatcher runs kubectl.1.<minor>, which we test (1.27-1.33 all work).
KUBE_MINOR = "33"


TRACING_API_VERSIONS = ("apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1",
                        "apiserver.config.k8s.io/v1alpha1")
DEFAULT_OTLP_ENDPOINT = "localhost:4318"


def load_encryption_config(path: str) -> EncryptionConfig:
    """kube's ``--encryption-provider-config`` file (an ``apiserver.config.k8s.io/v1``
    EncryptionConfiguration, YAML or JSON); EncryptionConfigError or OSError if unusable."""
    return EncryptionConfig.from_dict(yaml.safe_load(Path(path).read_text()))


def load_audit_policy(path: str) -> Policy:
    """An ``audit.k8s.io/v1`` Policy file (YAML or JSON); PolicyError or OSError if unusable."""
    return parse_policy(yaml.safe_load(Path(path).read_text()))


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


class AuthenticationSetup(msgspec.Struct, frozen=True):
    """The AuthenticationConfiguration file, loaded: its OIDC authenticators with their keys, and
    its anonymous section."""

    oidc: tuple[Any, ...] = ()  # actors.OIDCAuthenticator
    anonymous: bool = False
    anonymous_paths: tuple[str, ...] = ()


def load_authentication_config(path: str, *, anonymous_flag: bool = False) -> AuthenticationSetup:
    """Read, check and make usable an AuthenticationConfiguration (YAML or JSON), as kube-apiserver
    does at start: each issuer's JWKS from ``issuer.jwksFile`` or its discovery document (fetched
    now, over HTTPS, trusting ``issuer.certificateAuthority`` if given)."""
    from actors import AuthenticationConfiguration, OIDCAuthenticator, validate_config

    try:
        cfg = msgspec.convert(yaml.safe_load(Path(path).read_text()), AuthenticationConfiguration)
        validate_config(cfg)
        if cfg.anonymous is not None and anonymous_flag:
            raise AuthenticationConfigError("anonymous: Forbidden: anonymous is not allowed in the configuration "
                                            "file when --anonymous-auth is set")
        oidc = tuple(OIDCAuthenticator(a, issuer_keys(a.issuer)) for a in cfg.jwt)
    except (OSError, yaml.YAMLError, msgspec.ValidationError, AuthenticationConfigError, ValueError) as e:
        raise AuthenticationConfigError(f"{path}: {e}") from None
    anon = cfg.anonymous
    return AuthenticationSetup(oidc=oidc, anonymous=bool(anon and anon.enabled),
                               anonymous_paths=tuple(c.path for c in anon.conditions) if anon else ())


def issuer_keys(issuer: Any) -> dict[str, Any]:
    """An OIDC issuer's JWK Set: from ``issuer.jwksFile``, or through its discovery document (blocking)."""
    import json
    import ssl
    import urllib.request

    if issuer.jwks_file:
        return dict(json.loads(Path(issuer.jwks_file).read_text()))
    context = ssl.create_default_context(cadata=issuer.certificate_authority or None)

    def get(url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            return json.loads(r.read(1 << 20))

    url = issuer.discovery_url or issuer.url.rstrip("/") + "/.well-known/openid-configuration"
    discovery = get(url)
    if discovery.get("issuer") != issuer.url:
        raise ValueError(f"issuer.url: oidc: issuer did not match the issuer returned by provider, expected "
                         f"{issuer.url!r} got {discovery.get('issuer')!r}")
    jwks_uri = discovery.get("jwks_uri") or ""
    if not jwks_uri.startswith("https://"):
        raise ValueError(f"issuer {issuer.url}: jwks_uri {jwks_uri!r} is not an https URL")
    return dict(get(jwks_uri))


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: str = ".jetkube"
    host: str = "127.0.0.1"
    port: int = 6443
    nats_url: str | None = None  # None: run an embedded nats-server in <data_dir>/nats
    nats_auth: NatsAuth = NatsAuth()  # credentials and TLS for nats_url (the embedded one has its own)
    nats_restart_delay_s: float = 0.2  # embedded nats-server: pause before restarting a dead one
    token_file: str | None = None
    # x509 client certificates: the CA bundle they must be signed by (default: the generated CA).
    client_ca_file: str | None = None
    # Front-proxy (request-header) authentication, off unless the proxy's CA is given: X-Remote-*
    # headers count only on a connection whose client certificate this CA signed, with a CN from
    # requestheader_allowed_names (empty: any).
    requestheader_client_ca_file: str | None = None
    requestheader_allowed_names: tuple[str, ...] = ()
    anonymous_auth: bool = False  # requests without credentials as system:anonymous (kube's --anonymous-auth)
    # kube's --authentication-config: an AuthenticationConfiguration file (OIDC issuers, anonymous).
    authentication_config: str | None = None
    oidc_keys_refresh_s: float = 600.0  # OIDC issuers' keys are fetched (or read) again this often
    service_account_key_file: str | None = None  # PEM private key; default: <data_dir>/pki/sa.key, generated
    insecure_port: int | None = None
    stream: str = "JETKUBE"
    subject_prefix: str = "jk"
    stream_replicas: int = 1
    request_timeout_s: float = 60.0
    min_request_timeout_s: float = 1800.0  # watches without timeoutSeconds last [1, 2) x this
    max_body_bytes: int = 3 * 1024 * 1024
    # API Priority and Fairness: the server's seats (kube's flags; their sum, as kube mixes them).
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    # Fleet-wide APF: demand reports to the other gateways on the same NATS this often (0: off).
    apf_fleet_period_s: float = 1.0
    # Fleet-wide seat budgets (APF): leased from an owner gateway per shard of tenants, whose KV
    # lease and grants live this long (0: off, each gateway's limits are its own). While the owner
    # is unreachable: the budget / the gateways alive, or this fraction of the budget (> 0).
    # On by default: `serve --workers N` (and any fleet on one NATS) holds each tenant's budget
    # fleet-wide; nothing waits on it at startup (a level's first request waits one round trip,
    # or falls back to the local limit at once while no owner answers).
    apf_fleet_lease_ttl_s: float = 5.0
    apf_fleet_fallback: float = 0.0
    graceful_timeout_s: float = 5.0
    # kube's --shutdown-delay-duration: after SIGTERM, /readyz answers 503 at once while the
    # listeners keep serving this long, so a load balancer sees the gateway unready before it closes.
    shutdown_delay_s: float = 0.0
    kubeconfig: str | None = None  # default: <data_dir>/kubeconfig
    run_controllers: bool = True
    watch_ring_size: int = 10_000  # recent changes per resource served to resuming watches from memory
    watch_queue: int = 10_000  # events a watcher may fall behind before it is cut off
    bookmark_interval_s: float = 60.0
    # Projection snapshots (projections/_snapshot.py): start from the newest valid one plus the log's
    # tail, and (the gateway holding the writer's lease) write one when the store moved this many
    # events, or moved at all and this many seconds passed, never sooner than the minimum interval.
    snapshots: bool = True
    snapshot_every_events: int = 50_000
    snapshot_every_s: float = 600.0
    snapshot_min_interval_s: float = 30.0
    log_level: str = "WARNING"
    log_format: str = "json"  # json (one object per line) or text
    # Which requests get kube's per-request line: all (kube at -v=3), errors (5xx) or none. kube
    # logs none at its default verbosity, and logs what fails on the server's side.
    request_log: str = "errors"
    # kube's --authorization-mode, in order (RBAC, AlwaysAllow, AlwaysDeny); system:masters first always.
    authorization_modes: tuple[str, ...] = ("RBAC",)
    # kube-apiserver's --service-cluster-ip-range and --service-node-port-range: where Services'
    # cluster IPs (the first address is the `kubernetes` service's) and node ports come from.
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    tracing: TracingConfig | None = None  # --tracing-config-file; None: off (OpenTelemetry not imported)
    # Audit (gateway/_audit.py): the policy (--audit-policy-file; default: projections' DEFAULT_POLICY),
    # the audit stream's retention and the writer's queue.
    audit_policy: Policy = DEFAULT_POLICY
    # Encryption at rest of the configured resources' events in the log (--encryption-provider-config).
    encryption: EncryptionConfig | None = None
    audit_max_age_s: float = 7 * 24 * 3600.0
    audit_max_bytes: int = 1 << 30
    audit_queue: int = 10_000
    # The webhook audit backend (gateway/_audit_webhook.py, --audit-webhook-*); None: off.
    audit_webhook: WebhookOptions | None = None
    # jetkube serve --read-only [--at RV]: writes answer 405; with read_only_at the projection stops
    # there and serves the state as it was then (controllers and retention off).
    read_only: bool = False
    read_only_at: str = ""  # a resourceVersion or an RFC 3339 time; "": follow the log
    # History retention (actors/_retention.py): 0 = off (the log keeps every revision).
    history_max_age_s: float = 0.0
    history_max_revisions: int = 0
    history_retention_interval_s: float = 60.0

    def version_info(self) -> dict[str, Any]:
        return {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0-jetkube",
                "gitCommit": "jetkube", "gitTreeState": "clean", "buildDate": "2026-11-27T00:00:00Z",
                "goVersion": "python", "compiler": "gc", "platform": "linux/amd64"}
