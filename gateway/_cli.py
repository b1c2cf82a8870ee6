"""``jetkube serve``: the entry point. Flags are decoded here, once, into Settings."""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
from functools import partial
from pathlib import Path

import trio
import yaml

from actors import AuthenticationConfigError, parse_modes, parse_token_csv
from bus import NatsAuth, StreamMismatch, redact_url
from kinds._allocation import IPRange, PortRange
from projections import DEFAULT_POLICY

from ._audit_webhook import MODES, WebhookOptions, load_webhook_config, parse_duration
from ._commands import add_commands
from ._commands import run as run_command
from ._devcluster import run_dev_cluster
from ._logging import LOG_FORMATS, REQUEST_LOG_MODES, configure_logging
from ._pki import ensure_pki, ensure_service_account_key, issue_cert, write_kubeconfig
from ._replay import add_replay_command, run_replay
from ._server import GcThresholdError, ReadOnlyAtError, gc_thresholds_from_env, serve
from ._settings import (
    Settings,
    TracingConfigError,
    load_audit_policy,
    load_encryption_config,
    load_tracing_config,
)
from ._workers import CannotListen, WorkerLink, default_workers, supervise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jetkube", description="A Kubernetes-compatible API server on NATS JetStream")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the API server")
    s.add_argument("--data-dir", default=".jetkube", help="certificates, kubeconfig and the embedded NATS store")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=6443, help="HTTPS port (0: any free port)")
    s.add_argument("--nats-url", default=None,
                   help="an external NATS with JetStream (default: embedded); may carry user:password@")
    s.add_argument("--nats-user", default=None, help="NATS user (with --nats-password-file)")
    s.add_argument("--nats-password-file", default=None, help="a file holding the NATS password")
    s.add_argument("--nats-creds", default=None, help="a NATS .creds file (JWT and nkey seed)")
    s.add_argument("--nats-nkey-seed", default=None, help="a file holding an nkey seed")
    s.add_argument("--nats-tls-ca", default=None, help="CA bundle to verify the NATS server's certificate")
    s.add_argument("--nats-tls-cert", default=None, help="client certificate for NATS (mutual TLS)")
    s.add_argument("--nats-tls-key", default=None, help="the client certificate's key")
    s.add_argument("--token-file", default=None, help='static tokens: token,user,uid,"group1,group2"')
    s.add_argument("--client-ca-file", default=None,
                   help="CA bundle client certificates must be signed by (CN: user, O: groups; default: the "
                        "generated CA, DATA_DIR/pki/ca.crt)")
    s.add_argument("--requestheader-client-ca-file", default=None,
                   help="front-proxy authentication: X-Remote-User/-Group/-Extra-* headers are trusted only "
                        "from a client certificate signed by this CA bundle (default: off)")
    s.add_argument("--requestheader-allowed-names", default="",
                   help="comma-separated common names the front proxy's certificate may have (default: any)")
    s.add_argument("--authentication-config", default=None,
                   help="an AuthenticationConfiguration file (apiserver.config.k8s.io/v1): OIDC issuers (jwt), "
                        "anonymous with conditions")
    s.add_argument("--anonymous-auth", action="store_true",
                   help="serve requests without credentials as system:anonymous (group "
                        "system:unauthenticated); off by default")
    s.add_argument("--service-account-key-file", default=None,
                   help="PEM private key (EC P-256: ES256, RSA: RS256) signing service-account tokens; give "
                        "every replica the same file (default: DATA_DIR/pki/sa.key, generated)")
    s.add_argument("--authorization-mode", default="RBAC",
                   help="authorizers in order, comma-separated, as kube-apiserver's: RBAC (default), AlwaysAllow "
                        "(every authenticated request: for tests only), AlwaysDeny; system:masters may always "
                        "do everything")
    s.add_argument("--tracing-config-file", default=None,
                   help="a TracingConfiguration (apiserver.config.k8s.io): OpenTelemetry traces to an "
                        "OTLP/HTTP endpoint at samplingRatePerMillion (default: no tracing)")
    s.add_argument("--encryption-provider-config", default=None, metavar="FILE",
                   help="kube's EncryptionConfiguration (apiserver.config.k8s.io/v1): the listed resources "
                        "(e.g. secrets) are stored encrypted (aesgcm or aescbc keys; identity) in the log")
    s.add_argument("--audit-policy-file", default=None,
                   help="an audit.k8s.io/v1 Policy (default: secrets, configmaps, token requests and reviews at "
                        "Metadata, reads at Metadata, other requests at RequestResponse)")
    s.add_argument("--audit-max-age", type=float, default=7 * 24 * 3600.0, metavar="SECONDS",
                   help="how long the audit stream keeps reads and denials (writes are audited from the log)")
    s.add_argument("--audit-max-bytes", type=int, default=1 << 30, help="the audit stream's size bound")
    s.add_argument("--audit-queue-size", type=int, default=10_000,
                   help="audit records waiting to be written; when full, reads are dropped and counted")
    s.add_argument("--audit-webhook-config-file", default=None, metavar="FILE",
                   help="a kubeconfig naming the audit webhook: audit events are POSTed to it as audit.k8s.io/v1 "
                        "EventLists, followed from the log and the audit stream (at least once, never dropped)")
    s.add_argument("--audit-webhook-mode", default="batch", choices=MODES,
                   help="batch: events are forwarded off the request path; blocking: each request also sends "
                        "its events and waits for the webhook (a failure is logged, the request goes on); "
                        "blocking-strict: as blocking, and a RequestReceived event not sent fails the request")
    s.add_argument("--audit-webhook-batch-max-size", type=int, default=400, help="events per EventList at most")
    s.add_argument("--audit-webhook-batch-max-wait", default="30s", metavar="DURATION",
                   help="how long a batch waits for more events after its first one (e.g. 30s, 500ms)")
    s.add_argument("--audit-webhook-batch-buffer-size", type=int, default=10_000,
                   help="events read ahead of the webhook at most (the streams hold the rest: nothing is dropped)")
    s.add_argument("--audit-webhook-batch-throttle-qps", type=float, default=10.0,
                   help="EventList POSTs per second at most (0: no throttle)")
    s.add_argument("--audit-webhook-batch-throttle-burst", type=int, default=15, help="POSTs at once at most")
    s.add_argument("--audit-webhook-initial-backoff", default="10s", metavar="DURATION",
                   help="the wait before retrying a failed POST (then 1.5x per try, up to 60s; retried until accepted)")
    s.add_argument("--history-max-age", type=float, default=0.0, metavar="SECONDS",
                   help="purge revisions older than this from the log, keeping each object's state as of then "
                        "(0: keep everything); versions below the compaction point answer 410 Expired")
    s.add_argument("--history-max-revisions-per-object", type=int, default=0, metavar="N",
                   help="keep at most N revisions of each object (the latest always; 0: no limit)")
    s.add_argument("--history-retention-interval", type=float, default=60.0, metavar="SECONDS",
                   help="how often the background purge runs")
    s.add_argument("--read-only", action="store_true",
                   help="serve reads only: every write answers 405 MethodNotAllowed; no controllers run")
    s.add_argument("--at", default=None, metavar="RV|TIME",
                   help="with --read-only: serve the state as it was at this resourceVersion (or RFC 3339 time)")
    s.add_argument("--insecure-port", type=int, default=None, help="also serve plain HTTP here (tokens required)")
    s.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig (default: DATA_DIR/kubeconfig)")
    s.add_argument("--stream", default="JETKUBE", help="JetStream stream name")
    s.add_argument("--stream-replicas", type=int, default=1, help="stream replicas (a NATS cluster for > 1)")
    s.add_argument("--no-snapshots", action="store_true",
                   help="fold the log from sequence 1 at every start and write no projection snapshots")
    s.add_argument("--snapshot-every-events", type=int, default=50_000, metavar="N",
                   help="write a projection snapshot when the log moved N events past the last one (0: this "
                        "gateway never writes one; it still starts from them). One gateway of a fleet writes")
    s.add_argument("--snapshot-every", type=float, default=600.0, metavar="SECONDS",
                   help="... or when it moved at all and this long passed")
    s.add_argument("--snapshot-min-interval", type=float, default=30.0, metavar="SECONDS",
                   help="never two snapshots closer than this")
    s.add_argument("--shutdown-delay-duration", type=float, default=0.0, metavar="SECONDS",
                   help="after SIGTERM, keep serving with /readyz answering 503 this long before the listeners "
                        "close (as kube's flag: give the load balancer's health check time to notice)")
    s.add_argument("--max-requests-inflight", type=int, default=400,
                   help="as kube's flag: with --max-mutating-requests-inflight, the seats API Priority and "
                        "Fairness shares among priority levels and tenants")
    s.add_argument("--max-mutating-requests-inflight", type=int, default=200, help="as kube's flag")
    s.add_argument("--apf-fleet-period", type=float, default=1.0, metavar="SECONDS",
                   help="API Priority and Fairness across gateways: each tells the others on the same NATS "
                        "what every tenant holds and waits for this often, and freed seats go first to the "
                        "waiting tenant holding fewest in the whole fleet (0: this gateway alone)")
    s.add_argument("--apf-fleet-leases", type=float, default=5.0, metavar="TTL_SECONDS",
                   help="fleet-wide seat budgets: each tenant's priority levels get their limit times the "
                        "gateways alive across the fleet, owned by one gateway per shard of tenants (a KV lease "
                        "with this TTL) from which the others lease seats over NATS request/reply; while the "
                        "owner is unreachable each gateway keeps its own share (default 5; 0: off, every "
                        "gateway's limits are its own)")
    s.add_argument("--apf-fleet-fallback", type=float, default=0.0, metavar="FRACTION",
                   help="with --apf-fleet-leases, the share of a level's fleet budget a gateway uses while the "
                        "budget's owner is unreachable (0: the budget divided by the gateways alive)")
    s.add_argument("--service-cluster-ip-range", default="10.96.0.0/12",
                   help="CIDR of Services' cluster IPs (IPv4; the first address is the kubernetes service's)")
    s.add_argument("--service-node-port-range", default="30000-32767",
                   help="ports for NodePort Services, <first>-<last> inclusive")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="gateway processes serving the same port, each with its own NATS connection and "
                        "projection, supervised by this one (restarted if one dies); default: $JETKUBE_WORKERS, "
                        "else the number of cores. 1: this process serves, alone")
    s.add_argument("--log-level", default="WARNING", type=str.upper,
                   choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    s.add_argument("--log-format", choices=LOG_FORMATS, default="json",
                   help="json: one object per line (default); text: one human-readable line")
    s.add_argument("--request-log", choices=REQUEST_LOG_MODES, default="errors",
                   help="which requests get a line when they end: all (kube's -v=3), errors (5xx, the "
                        "default), none")
    d = sub.add_parser("dev-cluster", help="3 NATS nodes, gateways and a load balancer as local processes")
    d.add_argument("--data-dir", default=".jetkube-cluster", help="stores, certificates, logs and the kubeconfig")
    d.add_argument("--port", type=int, default=6443, help="the load balancer's HTTPS port (0: any free port)")
    d.add_argument("--gateways", type=int, default=2, help="jetkube serve processes behind the load balancer")
    d.add_argument("--log-level", default="WARNING", type=str.upper,
                   choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    k = sub.add_parser("pki", help="certificates and tokens shared by several replicas")
    ksub = k.add_subparsers(dest="pki_command", required=True)
    i = ksub.add_parser("init", help="create (once) DATA_DIR/pki: the CA, the serving certificate, the admin "
                                     "token and the service-account key, for replicas that mount the same files")
    i.add_argument("--data-dir", default=".jetkube", help="the same --data-dir the replicas are given")
    i.add_argument("--san", action="append", default=[],
                   help="an extra DNS name or IP address for the serving certificate, such as the load "
                        "balancer's (repeatable); a certificate lacking one is re-issued by the same CA")
    i.add_argument("--server", default=None, help="also write a kubeconfig for this URL (the load balancer's)")
    i.add_argument("--kubeconfig", default=None, help="where to write it (default: DATA_DIR/pki/kubeconfig)")
    i.add_argument("--probe-token-file", default=None,
                   help=f"also a token for user {PROBE_USER} (public paths only: /readyz, /livez, /healthz, "
                        "/version) in the token file, and written alone to this file (mode 0644) for a load "
                        "balancer's health checks")
    i.add_argument("--monitoring-token-file", default=None,
                   help=f"also a token for user {MONITORING_USER} in group system:monitoring (reads /metrics) "
                        "in the token file, and written alone to this file (mode 0644) for Prometheus")
    c = sub.add_parser("certs", help="client certificates signed by the cluster CA")
    csub = c.add_subparsers(dest="certs_command", required=True)
    u = csub.add_parser("user", help="mint a client certificate for user NAME (CN=NAME, O=each --group), "
                                     "signed by DATA_DIR/pki/ca.key; writes NAME.crt and NAME.key (0600)")
    u.add_argument("name")
    u.add_argument("--group", action="append", default=[], help="a group (the certificate's O; repeatable)")
    u.add_argument("--days", type=int, default=365, help="validity in days (default: 365)")
    u.add_argument("--data-dir", default=".jetkube", help="where the CA is (DATA_DIR/pki)")
    u.add_argument("--out-dir", default=".", help="where to write NAME.crt and NAME.key (default: .)")

    add_commands(sub)  # history, get --at, audit: API clients (gateway/_commands.py)
    add_replay_command(sub)  # replay: reads the log itself (gateway/_replay.py)
    return p


def certs_user(data_dir: Path, name: str, *, groups: list[str], days: int = 365,
               out_dir: Path = Path(".")) -> tuple[Path, Path]:
    """``jetkube certs user``: a client certificate for ``name`` in ``groups`` signed by the CA of
    ``data_dir`` (created if missing, as on a first start). Returns the certificate and key paths."""
    if days < 1:
        raise SystemExit("jetkube certs user: --days must be at least 1")
    if not name or "/" in name or name in (".", ".."):
        raise SystemExit(f"jetkube certs user: {name!r} cannot name the certificate files")
    pki = ensure_pki(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    crt, key = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    issue_cert(pki.ca_cert.parent, name, crt, key, client=True, organizations=groups, days=days)
    return crt, key


PROBE_USER = "system:lb-probe"
MONITORING_USER = "system:jetkube-monitoring"


def _extra_token(tokens_file: Path, user: str, groups: str, out: Path) -> Path:
    """The token of ``user`` in the token file (added once, with ``groups``), also written alone to
    ``out`` (mode 0644: its reader may run as another user)."""
    rows = parse_token_csv(tokens_file.read_text())
    token = next((t for t, u in rows.items() if u.name == user), None)
    if token is None:
        token = secrets.token_urlsafe(32)
        with tokens_file.open("a") as f:
            f.write(f"{token},{user},{user}" + (f',"{groups}"' if groups else "") + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(token)
    out.chmod(0o644)
    return out


def pki_init(data_dir: Path, *, sans: list[str], server: str | None = None, kubeconfig: str | None = None,
             probe_token_file: str | None = None, monitoring_token_file: str | None = None) -> list[Path]:
    """``jetkube pki init``: the shared material of several replicas, created once (kept on a rerun;
    the serving certificate is re-issued if a requested name is missing). Returns the files written."""
    pki = ensure_pki(data_dir, sans)
    files = [pki.ca_cert, pki.cert, pki.key, pki.tokens_file, ensure_service_account_key(data_dir),
             *(p for p in (pki.admin_cert, pki.admin_key) if p is not None)]
    if probe_token_file:
        files.append(_extra_token(pki.tokens_file, PROBE_USER, "", Path(probe_token_file)))
    if monitoring_token_file:
        files.append(_extra_token(pki.tokens_file, MONITORING_USER, "system:monitoring", Path(monitoring_token_file)))
    if server:
        path = Path(kubeconfig) if kubeconfig else data_dir / "pki" / "kubeconfig"
        write_kubeconfig(path, server=server, ca_cert=pki.ca_cert, token=pki.admin_token,
                         client_cert=pki.admin_cert, client_key=pki.admin_key)
        files.append(path)
    return files


async def _dev_cluster(args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            cluster = await nursery.start(partial(run_dev_cluster, Path(args.data_dir), port=args.port,
                                                  gateways=args.gateways))
            print(f"jetkube dev-cluster ready: https={cluster.https_url} kubeconfig={cluster.kubeconfig} "
                  f"gateways={','.join(cluster.gateways)} nats={redact_url(cluster.nats_url)}", flush=True)
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


async def _main(settings: Settings, worker: WorkerLink | None = None) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    shutdown.set()
                    return

        nursery.start_soon(on_signals)
        running = await nursery.start(lambda task_status: serve(settings, shutdown=shutdown,  # type: ignore
                                                                worker=worker, task_status=task_status))
        if worker is not None:
            worker.ready()  # the parent prints the ready line once every worker is ready
        else:
            extra = f" http={running.http_url}" if running.http_url else ""
            print(f"jetkube ready: https={running.https_url}{extra} kubeconfig={running.kubeconfig} "
                  f"nats={redact_url(running.nats_url)}", flush=True)
        await shutdown.wait()
        nursery.cancel_scope.deadline = (trio.current_time() + settings.shutdown_delay_s
                                         + settings.graceful_timeout_s + 10)


def _audit_webhook_options(args: argparse.Namespace) -> WebhookOptions | None:
    if not args.audit_webhook_config_file:
        return None
    try:
        load_webhook_config(args.audit_webhook_config_file)  # unusable: refused at start, not later
        opts = WebhookOptions(config_file=args.audit_webhook_config_file, mode=args.audit_webhook_mode,
                              batch_max_size=args.audit_webhook_batch_max_size,
                              batch_max_wait_s=parse_duration(args.audit_webhook_batch_max_wait),
                              buffer_size=args.audit_webhook_batch_buffer_size,
                              throttle_qps=args.audit_webhook_batch_throttle_qps,
                              throttle_burst=args.audit_webhook_batch_throttle_burst,
                              initial_backoff_s=parse_duration(args.audit_webhook_initial_backoff))
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise SystemExit(f"jetkube serve: --audit-webhook-config-file: {e}") from None
    if opts.batch_max_size < 1 or opts.buffer_size < opts.batch_max_size or opts.batch_max_wait_s <= 0 \
            or opts.initial_backoff_s < 0 or opts.throttle_qps < 0 or opts.throttle_burst < 1:
        raise SystemExit("jetkube serve: --audit-webhook-batch-max-size and -max-wait must be positive, the buffer "
                         "at least a batch, the backoff and QPS not negative, the burst at least 1")
    return opts


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The flags of ``jetkube serve``, decoded once into Settings."""
    auth = NatsAuth(user=args.nats_user, password_file=args.nats_password_file, creds_file=args.nats_creds,
                    nkey_seed_file=args.nats_nkey_seed, tls_ca_file=args.nats_tls_ca,
                    tls_cert_file=args.nats_tls_cert, tls_key_file=args.nats_tls_key)
    try:
        tracing = load_tracing_config(args.tracing_config_file) if args.tracing_config_file else None
    except TracingConfigError as e:
        raise SystemExit(f"jetkube serve: --tracing-config-file {e}") from None
    try:
        modes = parse_modes(args.authorization_mode)
    except ValueError as e:
        raise SystemExit(f"jetkube serve: --authorization-mode: {e}") from None
    try:
        IPRange(args.service_cluster_ip_range)
        PortRange(args.service_node_port_range)
    except ValueError as e:
        raise SystemExit(f"jetkube serve: {e}") from None
    try:
        policy = load_audit_policy(args.audit_policy_file) if args.audit_policy_file else DEFAULT_POLICY
    except (OSError, ValueError) as e:
        raise SystemExit(f"jetkube serve: --audit-policy-file {e}") from None
    try:
        encryption = load_encryption_config(args.encryption_provider_config) \
            if args.encryption_provider_config else None
    except (OSError, ValueError) as e:
        raise SystemExit(f"jetkube serve: --encryption-provider-config {e}") from None
    if args.history_max_age < 0 or args.history_max_revisions_per_object < 0 or args.history_retention_interval <= 0:
        raise SystemExit("jetkube serve: --history-max-age and --history-max-revisions-per-object must be >= 0, "
                         "--history-retention-interval > 0")
    if args.at is not None and not args.read_only:
        raise SystemExit("jetkube serve: --at needs --read-only (a server at a past version cannot take writes)")
    if args.snapshot_every <= 0 or args.snapshot_min_interval < 0:
        raise SystemExit("jetkube serve: --snapshot-every must be positive and --snapshot-min-interval not negative")
    if args.audit_max_age < 60:
        raise SystemExit("jetkube serve: --audit-max-age must be at least 60 seconds")
    audit_webhook = _audit_webhook_options(args)
    return Settings(audit_webhook=audit_webhook, encryption=encryption, audit_policy=policy, audit_max_age_s=args.audit_max_age, audit_max_bytes=args.audit_max_bytes,
                    audit_queue=args.audit_queue_size, history_max_age_s=args.history_max_age,
                    history_max_revisions=args.history_max_revisions_per_object,
                    history_retention_interval_s=args.history_retention_interval, read_only=args.read_only,
                    read_only_at=args.at or "", data_dir=args.data_dir, host=args.host, port=args.port,
                    nats_url=args.nats_url,
                    nats_auth=auth, token_file=args.token_file, tracing=tracing,
                    client_ca_file=args.client_ca_file, anonymous_auth=args.anonymous_auth,
                    authentication_config=args.authentication_config,
                    requestheader_client_ca_file=args.requestheader_client_ca_file,
                    requestheader_allowed_names=tuple(n.strip() for n in args.requestheader_allowed_names.split(",")
                                                      if n.strip()),
                    service_account_key_file=args.service_account_key_file, insecure_port=args.insecure_port,
                    kubeconfig=args.kubeconfig, stream=args.stream, stream_replicas=args.stream_replicas,
                    shutdown_delay_s=args.shutdown_delay_duration,
                    snapshots=not args.no_snapshots, snapshot_every_events=max(0, args.snapshot_every_events),
                    snapshot_every_s=args.snapshot_every, snapshot_min_interval_s=args.snapshot_min_interval,
                    log_level=args.log_level, authorization_modes=modes,
                    service_cluster_ip_range=args.service_cluster_ip_range,
                    service_node_port_range=args.service_node_port_range,
                    log_format=args.log_format, request_log=args.request_log,
                    max_requests_inflight=args.max_requests_inflight,
                    max_mutating_requests_inflight=args.max_mutating_requests_inflight,
                    apf_fleet_period_s=args.apf_fleet_period,
                    apf_fleet_lease_ttl_s=max(0.0, args.apf_fleet_leases),
                    apf_fleet_fallback=min(1.0, max(0.0, args.apf_fleet_fallback)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.command == "dev-cluster":
        configure_logging(args.log_level, "text", "errors")
        trio.run(_dev_cluster, args)
        return 0
    if args.command == "replay":
        try:
            return trio.run(run_replay, args)
        except (OSError, ValueError) as e:  # the encryption config, the output directory
            print(f"jetkube replay: {e}", file=sys.stderr)
            return 2
    if args.command in ("history", "audit", "get", "tenant"):
        return run_command(args)
    if args.command == "pki":
        for path in pki_init(Path(args.data_dir), sans=args.san, server=args.server, kubeconfig=args.kubeconfig,
                             probe_token_file=args.probe_token_file,
                             monitoring_token_file=args.monitoring_token_file):
            print(path, flush=True)
        return 0
    if args.command == "certs":
        for path in certs_user(Path(args.data_dir), args.name, groups=args.group, days=args.days,
                               out_dir=Path(args.out_dir)):
            print(path, flush=True)
        return 0
    settings = settings_from_args(args)
    try:
        gc_thresholds_from_env()
    except GcThresholdError as e:
        raise SystemExit(f"jetkube serve: {e}") from None
    configure_logging(settings.log_level, settings.log_format, settings.request_log)
    worker = WorkerLink.from_env()
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit("jetkube serve: --workers must be at least 1")
    code = 0
    try:
        try:
            if worker is not None:
                trio.run(_main, worker.settings(settings), worker)
            elif workers > 1:
                code = trio.run(supervise, settings, argv, workers)
            else:
                trio.run(_main, settings)
        except* StreamMismatch as eg:  # an operator's decision to make: say what and how, no traceback
            print(f"jetkube: {eg.exceptions[0]}", file=sys.stderr)
            code = 2
        except* ReadOnlyAtError as eg:
            leaf: BaseException = eg
            while isinstance(leaf, BaseExceptionGroup):  # raised inside nested nurseries
                leaf = leaf.exceptions[0]
            print(f"jetkube serve: {leaf}", file=sys.stderr)
            code = 2
        except* CannotListen as eg:  # a worker's listener or the parent's reservation: the port is taken
            leaf = eg
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            print(f"jetkube serve: {leaf}", file=sys.stderr)
            code = 1
        except* AuthenticationConfigError as eg:
            print(f"jetkube serve: --authentication-config {eg.exceptions[0]}", file=sys.stderr)
            code = 2
    except KeyboardInterrupt:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
