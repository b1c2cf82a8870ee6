"""``jetkube serve``: the entry point. Flags are decoded here, once, into Settings."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from bus import NatsAuth, redact_url

from ._server import serve
from ._settings import Settings, TracingConfigError, load_tracing_config


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
    s.add_argument("--service-account-key-file", default=None,
                   help="PEM private key (EC P-256: ES256, RSA: RS256) signing service-account tokens; give "
                        "every replica the same file (default: DATA_DIR/pki/sa.key, generated)")
    s.add_argument("--tracing-config-file", default=None,
                   help="a TracingConfiguration (apiserver.config.k8s.io): OpenTelemetry traces to an "
                        "OTLP/HTTP endpoint at samplingRatePerMillion (default: no tracing)")
    s.add_argument("--insecure-port", type=int, default=None, help="also serve plain HTTP here (tokens required)")
    s.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig (default: DATA_DIR/kubeconfig)")
    s.add_argument("--stream", default="JETKUBE", help="JetStream stream name")
    s.add_argument("--stream-replicas", type=int, default=1, help="stream replicas (a NATS cluster for > 1)")
    s.add_argument("--tenancy-by-path", action="store_true", help="serve /clusters/<tenant>/ prefixes")
    s.add_argument("--log-level", default="WARNING")
    return p


async def _main(settings: Settings) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    shutdown.set()
                    return

        nursery.start_soon(on_signals)
        running = await nursery.start(lambda task_status: serve(settings, shutdown=shutdown,  # type: ignore
                                                                task_status=task_status))
        extra = f" http={running.http_url}" if running.http_url else ""
        print(f"jetkube ready: https={running.https_url}{extra} kubeconfig={running.kubeconfig} "
              f"nats={redact_url(running.nats_url)}", flush=True)
        await shutdown.wait()
        nursery.cancel_scope.deadline = trio.current_time() + settings.graceful_timeout_s + 10


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The flags of ``jetkube serve``, decoded once into Settings."""
    auth = NatsAuth(user=args.nats_user, password_file=args.nats_password_file, creds_file=args.nats_creds,
                    nkey_seed_file=args.nats_nkey_seed, tls_ca_file=args.nats_tls_ca,
                    tls_cert_file=args.nats_tls_cert, tls_key_file=args.nats_tls_key)
    try:
        tracing = load_tracing_config(args.tracing_config_file) if args.tracing_config_file else None
    except TracingConfigError as e:
        raise SystemExit(f"jetkube serve: --tracing-config-file {e}") from None
    return Settings(data_dir=args.data_dir, host=args.host, port=args.port, nats_url=args.nats_url,
                    nats_auth=auth, token_file=args.token_file, tracing=tracing,
                    service_account_key_file=args.service_account_key_file, insecure_port=args.insecure_port,
                    kubeconfig=args.kubeconfig, stream=args.stream, stream_replicas=args.stream_replicas,
                    tenancy_by_path=args.tenancy_by_path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    try:
        trio.run(_main, settings)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
