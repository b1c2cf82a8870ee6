"""``jetkube replay --to RV|TIME [--tenant T] [-o DIR]``: the state as it was at a past version, as YAML.

The log is folded up to that sequence into a projection store (projections/_store.py, the same fold
every gateway runs), reading only the tenant's subjects with ``--tenant``. A ``rich`` progress bar
shows the fold on a terminal. Then every object is written to
``DIR/<tenant>/<namespace or _cluster>/<resource>[.<group>]/<name>.yaml``, as stored (its
resourceVersion is the sequence of the revision it was then). A Secret's ``data`` is written as
the API serves it (base64); nothing of any object's content is ever logged or printed.

It reads the log directly: ``--nats-url`` (and the NATS credential flags of ``serve``), or, without
it, the embedded nats-server of ``--data-dir`` (the running one's, or started here on its store).
A version below the log's compaction point (history retention) is refused, as a read would be (410).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio
import yaml

from bus import (
    Log,
    NatsAuth,
    StreamConfig,
    all_filter,
    open_bridge,
    open_log,
    redact_url,
    run_nats_server,
    tenant_token,
)
from projections import ResourceVersionTooLarge, TooOldResourceVersion, check_retained, resolve_version
from projections._history import check_still_retained
from projections._store import Store


@dataclass(frozen=True)
class ReplayResult:
    at: int
    objects: int
    files: list[Path]


def add_replay_command(sub: Any) -> None:
    r = sub.add_parser("replay", help="the state as it was at a past version, folded from the log, as YAML files")
    r.add_argument("--to", required=True, metavar="RV|TIME", help="a resourceVersion, or an RFC 3339 time")
    r.add_argument("--tenant", default=None, help="only this tenant (logical cluster); default: every tenant")
    r.add_argument("-o", "--output-dir", default=None, help="where to write (default: ./replay-<RV>)")
    r.add_argument("--data-dir", default=".jetkube", help="the embedded nats-server's store (without --nats-url)")
    r.add_argument("--nats-url", default=None)
    r.add_argument("--nats-user", default=None)
    r.add_argument("--nats-password-file", default=None)
    r.add_argument("--nats-creds", default=None)
    r.add_argument("--nats-nkey-seed", default=None)
    r.add_argument("--nats-tls-ca", default=None)
    r.add_argument("--nats-tls-cert", default=None)
    r.add_argument("--nats-tls-key", default=None)
    r.add_argument("--stream", default="JETKUBE", help="JetStream stream name")
    r.add_argument("--encryption-provider-config", default=None, metavar="FILE",
                   help="the serve flag's file, to read resources encrypted at rest")


def _safe(token: str) -> str:
    """A path component: names are DNS-ish, but never trust a log with a path."""
    return re.sub(r"[/\x00]", "_", token) or "_"


def object_path(root: Path, tenant: str, group: str, resource: str, namespace: str, name: str) -> Path:
    kind_dir = resource if not group else f"{resource}.{group}"
    return root / _safe(tenant) / (_safe(namespace) if namespace else "_cluster") / _safe(kind_dir) / f"{_safe(name)}.yaml"


async def fold_to(log: Log, at: int, tenant: str | None, progress: Any = None) -> Store:
    """The store as of sequence ``at`` (of one tenant's subjects, or all), folded from the log."""
    store = Store(log.prefix, ring_size=1)  # no watcher: the smallest ring
    flt = all_filter(log.prefix) if tenant is None else f"{log.prefix}.{tenant_token(tenant)}.>"
    reader = await log.open_reader(flt, 1)
    try:
        while not (reader.pending == 0 and reader.buffered == 0):
            batch = await reader.next_batch()
            for m in batch:
                if m.seq > at:
                    return store
                store.apply(m)
            if progress is not None:
                progress(batch[-1].seq)
            if batch[-1].seq >= at:
                return store
    finally:
        await reader.aclose()
    return store


def write_manifests(store: Store, root: Path) -> list[Path]:
    """One file per object. The tree is the owner's only (0700 directories, 0600 files): it holds
    Secrets' data, as ``kubectl get -o yaml`` would print it."""
    files = []
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for (tenant, group, resource), st in sorted(store.resources.items()):
        for ns, name, entry in st.iter_entries(None):
            path = object_path(root, tenant, group, resource, ns, name)
            for d in reversed([p for p in path.parents if root in p.parents]):
                d.mkdir(mode=0o700, exist_ok=True)
            obj = msgspec.json.decode(entry.data)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))
            files.append(path)
    return files


async def replay(log: Log, to: str, *, tenant: str | None, out_dir: Path | None, show_progress: bool) -> ReplayResult:
    at = await resolve_version(log, to)
    await check_retained(log, at)
    root = out_dir or Path(f"replay-{at}")
    if show_progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn(f"folding the log to {at}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=True) as bar:
            task = bar.add_task("fold", total=at)
            store = await fold_to(log, at, tenant, lambda seq: bar.update(task, completed=min(seq, at)))
    else:
        store = await fold_to(log, at, tenant)
    await check_still_retained(log, at)  # no purge began while folding
    files = await trio.to_thread.run_sync(write_manifests, store, root)
    return ReplayResult(at, len(files), files)


def _running_embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded nats-server a running jetkube holds on ``data_dir`` (its store is
    locked, bus/_embedded.py); None when nobody holds it."""
    store = data_dir / "nats"
    conf, pw, lock = store / "nats.conf", store / "nats-password", store / "LOCK"
    if not (conf.exists() and pw.exists() and lock.exists()):
        return None
    with lock.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a jetkube (or its nats-server) runs on this store
            m = re.search(r'listen: "([^"]+)"', conf.read_text())
            return f"nats://jetkube:{pw.read_text().strip()}@{m.group(1)}" if m else None
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


async def run_replay(args: argparse.Namespace) -> int:
    encryption = None
    if args.encryption_provider_config:
        from ._settings import load_encryption_config

        encryption = load_encryption_config(args.encryption_provider_config)
    auth = NatsAuth(user=args.nats_user, password_file=args.nats_password_file, creds_file=args.nats_creds,
                    nkey_seed_file=args.nats_nkey_seed, tls_ca_file=args.nats_tls_ca,
                    tls_cert_file=args.nats_tls_cert, tls_key_file=args.nats_tls_key)
    async with AsyncExitStack() as stack:
        url = args.nats_url
        if not url:
            url = _running_embedded_url(Path(args.data_dir))
            if url is None:
                url = await stack.enter_async_context(run_nats_server(Path(args.data_dir) / "nats"))
            bridge = await stack.enter_async_context(open_bridge(url))
        else:
            bridge = await stack.enter_async_context(open_bridge(url, auth=auth))
        log = await open_log(bridge, StreamConfig(name=args.stream), encryption=encryption)
        try:
            result = await replay(log, args.to, tenant=args.tenant,
                                  out_dir=Path(args.output_dir) if args.output_dir else None,
                                  show_progress=sys.stderr.isatty())
        except ValueError:
            print(f"jetkube replay: --to {args.to!r}: want a resourceVersion or an RFC 3339 time", file=sys.stderr)
            return 2
        except (TooOldResourceVersion, ResourceVersionTooLarge) as e:
            print(f"jetkube replay: --to {args.to}: {e}", file=sys.stderr)
            return 1
        root = Path(args.output_dir) if args.output_dir else Path(f"replay-{result.at}")
        print(f"{result.objects} objects as of resourceVersion {result.at} written to {root} "
              f"(from {redact_url(url)})")
    return 0
