"""The one typed, frozen settings object, decoded once at the entry point."""

from __future__ import annotations

from typing import Any

import msgspec

from bus import NatsAuth

# The Kubernetes minor version we report: the schemas served are 1.33's (kubernetes-validate), and
# gcloud's kubectl dispatcher runs kubectl.1.<minor>, which we test (1.27-1.33 all work).
KUBE_MINOR = "33"


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

    def version_info(self) -> dict[str, Any]:
        return {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0-jetkube",
                "gitCommit": "jetkube", "gitTreeState": "clean", "buildDate": "2026-11-27T00:00:00Z",
                "goVersion": "python", "compiler": "gc", "platform": "linux/amd64"}
