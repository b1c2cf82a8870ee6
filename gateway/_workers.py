"""``jetkube serve --workers N``: N gateway processes serving one port, supervised by
the process the operator started.

The parent (:func:`supervise`) does what happens once per server, then runs the workers:

1. the data directory, the PKI, the tokens and the service-account key (``_server._first_start``),
   before any worker starts: every worker reads the same files, so every worker accepts the same
   kubeconfig, tokens and client certificates;
2. the ports (HTTPS, and plain HTTP with ``--insecure-port``), reserved once: a socket bound with
   SO_REUSEPORT that never listens, held until the server stops (``--port 0`` picks the port here);
3. the embedded nats-server (unless ``--nats-url``), started once and stopped last;
4. N workers: ``python -m gateway serve`` with the same flags and ``JETKUBE_WORKER`` in their
   environment (:class:`WorkerLink`: the ports, the NATS URL, the worker's index). Each worker is
   a whole gateway: its own NATS connection, projection, actors and /metrics registry, and its own
   listening socket on the reserved port (SO_REUSEPORT, opened when it is ready to serve, handed to
   hypercorn as an ``fd://N`` bind). N workers are N gateways on one
   NATS, which the system already supports: what must run once per cluster holds a lease (the
   snapshot writer, the audit webhook forwarder) and the rest is idempotent (controllers, bootstrap);
   API Priority and Fairness's seats (--max-requests-inflight and --max-mutating-requests-inflight,
   which are the server's) are shared out, each worker holding 1/N of them (rounded up);
5. once every worker has said it is ready (a line on a pipe), the kubeconfig and the ready line.

A listening socket per worker in one SO_REUSEPORT group (as nginx's ``reuseport`` and Envoy do), not
one socket shared by the workers (hypercorn's own ``--workers``): the kernel spreads new connections
over the workers' sockets by a hash of the client's address and port. With one shared socket,
whichever worker is waiting in accept takes the next connection, and a burst of connections (a load
generator's, a restarted client pool's) goes to one worker whole: 64 of 64 wrk connections on one
worker in four runs of five (measured, 2 cores), which left the other idle for as long as the
connections lived (the benchmark's M2 ran at 1.02 cores of 2). The costs, and why they are small:
- connections queued on a worker's socket when that worker dies are reset (its socket closes with
  it); clients reconnect, and the kernel sends new connections to the sockets still listening;
- a restarting worker gets connections only once it listens, which it does when it is ready;
- connections queued on a worker's socket when it stops listening at shutdown are reset too (the
  workers close their listeners at about the same time, after the shutdown delay; Linux 5.14+
  hands them to a socket still listening with ``sysctl net.ipv4.tcp_migrate_req=1``);
- the port is held by the parent (bound without SO_REUSEADDR: no other process can bind it while
  no worker listens; only processes of the same user can join an SO_REUSEPORT group, Linux), and
  a port some socket already holds (another server's, this user's too) is refused at start.

Supervision: a worker that exits is logged with its exit code and restarted after a backoff (0.5 s,
doubling up to 30 s; back to 0.5 s after a worker lived 60 s). A worker that fails before the
server was first ready ends the server with its exit code (a bad flag, a stream mismatch: another
try would fail the same way). SIGTERM or SIGINT: every worker gets SIGTERM and drains as a single
gateway does (readiness 503, the shutdown delay, watches ended, the graceful window); one still
alive after that plus 10 s is killed; the embedded nats-server stops last. The workers are bound to
the parent (``bus.spawn_bound``: ``PR_SET_PDEATHSIG``): if it is killed they get SIGTERM and drain.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio
from hypercorn.utils import repr_socket_addr

from bus import BoundChild, NatsAuth, redact_url, run_nats_server, spawn_bound

from ._pki import write_kubeconfig
from ._server import _first_start
from ._settings import Settings

log = logging.getLogger("jetkube")

ENV = "JETKUBE_WORKER"  # set by the parent in each worker's environment: a JSON WorkerLink
DEFAULT_ENV = "JETKUBE_WORKERS"  # the default of --workers (else the cores this process may run on)
HEADER = b"x-jetkube-worker"  # on every answer of a worker: "<index> pid=<pid>"
BACKOFF_FIRST_S, BACKOFF_MAX_S, BACKOFF_RESET_S = 0.5, 30.0, 60.0
STOP_MARGIN_S = 10.0


def default_workers() -> int:
    """``$JETKUBE_WORKERS`` if set, else the number of cores this process may run on."""
    raw = os.environ.get(DEFAULT_ENV, "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"jetkube serve: ${DEFAULT_ENV}={raw!r} is not a number") from None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class WorkerLink(msgspec.Struct, frozen=True):
    """What a worker is told by its parent (``$JETKUBE_WORKER``, JSON)."""

    index: int
    workers: int
    ready_fd: int
    port: int
    insecure_port: int | None
    nats_url: str | None  # the embedded server's URL (credentials in it); None: the flags' --nats-url

    @classmethod
    def from_env(cls) -> WorkerLink | None:
        raw = os.environ.pop(ENV, None)
        return msgspec.json.decode(raw, type=cls) if raw else None

    def settings(self, s: Settings) -> Settings:
        """A worker's settings: the parent's ports and NATS, and its share of APF's seats."""
        changes: dict[str, Any] = {
            "port": self.port, "insecure_port": self.insecure_port,
            "max_requests_inflight": math.ceil(s.max_requests_inflight / self.workers),
            "max_mutating_requests_inflight": math.ceil(s.max_mutating_requests_inflight / self.workers)}
        if self.nats_url is not None:
            changes.update(nats_url=self.nats_url, nats_auth=NatsAuth())
        return msgspec.structs.replace(s, **changes)

    @property
    def header(self) -> tuple[bytes, bytes]:
        return HEADER, f"{self.index} pid={os.getpid()}".encode()  # read once, by serve

    def listeners(self, host: str) -> tuple[int, int | None]:
        """This worker's listening sockets on the parent's ports (HTTPS, plain HTTP or None), as
        file descriptors for hypercorn's ``fd://`` binds (hypercorn owns and closes them)."""
        https = _listen(host, self.port, reuse_port=True).detach()
        try:
            http = None if self.insecure_port is None else _listen(host, self.insecure_port, reuse_port=True).detach()
        except BaseException:
            os.close(https)
            raise
        return https, http

    def ready(self) -> None:
        """Tell the parent this worker serves (and let go of the pipe)."""
        try:
            os.write(self.ready_fd, b"ready\n")
        finally:
            os.close(self.ready_fd)


class CannotListen(Exception):
    """A port this server was asked to serve cannot be had (in use, not permitted): said in one line."""


def _listen(host: str, port: int, *, reuse_port: bool = False, reuse_addr: bool = True,
            listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` as hypercorn would bind it, listening (backlog 2048) unless
    ``listen`` is false. ``reuse_port``: in the port's SO_REUSEPORT group (the parent's reservation
    and each worker's listener set it; only sockets of the same user can join). ``reuse_addr``
    (SO_REUSEADDR, as hypercorn sets): binds over connections left in TIME_WAIT; the reservation
    goes without it, else any process setting it could bind the port while no worker listens."""
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
    except OSError as e:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def _reserve(host: str, port: int) -> socket.socket:
    """The parent's hold on a port: bound in an SO_REUSEPORT group, never listening. A port some
    socket already holds (another server, even one of this user's, whose group this would join
    and split connections with) is refused first, as a single gateway's bind would be."""
    if port:
        _listen(host, port, listen=False).close()  # SO_REUSEADDR alone: fails on any holder but TIME_WAIT
    return _listen(host, port, reuse_port=True, reuse_addr=False, listen=False)


@dataclass
class _Worker:
    index: int
    child: BoundChild | None = None


class _Supervisor:
    def __init__(self, settings: Settings, argv: list[str], workers: int, link: dict[str, Any]) -> None:
        self.settings, self.argv, self.link = settings, argv, link
        self.workers = [_Worker(i) for i in range(workers)]
        self.shutdown = trio.Event()
        self.settled = trio.Event()  # every worker ready, or the server stopping
        self.ever_ready = False
        self.ready_count = 0
        self.exit_code = 0

    def stop(self, code: int = 0) -> None:
        if not self.shutdown.is_set():
            self.exit_code = code
        self.shutdown.set()
        self.settled.set()

    async def on_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.stop()
                return

    def _spawn(self, w: _Worker) -> tuple[BoundChild, int]:
        r, wfd = os.pipe()
        try:
            env = {**os.environ, ENV: json.dumps({**self.link, "index": w.index, "ready_fd": wfd})}
            child = spawn_bound([sys.executable, "-m", "gateway", *self.argv], pass_fds=(wfd,),
                                stdout=subprocess.DEVNULL, env=env)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(wfd)
        return child, r

    async def keep(self, w: _Worker) -> None:
        """Run worker ``w``, restarting it when it exits, until the server stops."""
        delay = BACKOFF_FIRST_S
        while not self.shutdown.is_set():
            started = trio.current_time()
            child, ready_r = self._spawn(w)
            w.child = child
            try:
                async with trio.lowlevel.FdStream(ready_r) as stream:
                    said = b""
                    while b"\n" not in said:
                        chunk = await stream.receive_some()
                        if not chunk:
                            break
                        said += chunk
                if said.startswith(b"ready"):
                    if self.ever_ready:
                        log.warning("jetkube worker %d (pid %d) is serving again", w.index, child.pid)
                    else:
                        self.ready_count += 1
                        if self.ready_count == len(self.workers):
                            self.ever_ready = True
                            self.settled.set()
                code = await child.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(child)
                child.close()
                w.child = None
            if self.shutdown.is_set():
                return
            if not self.ever_ready:
                log.error("jetkube worker %d (pid %d) exited with code %s before the server was ready; stopping",
                          w.index, child.pid, _describe(code))
                self.stop(code or 1)
                return
            if trio.current_time() - started >= BACKOFF_RESET_S:
                delay = BACKOFF_FIRST_S
            log.error("jetkube worker %d (pid %d) exited with code %s; restarting it in %.1fs",
                      w.index, child.pid, _describe(code), delay)
            with trio.move_on_after(delay):  # the backoff, cut short by a shutdown
                await self.shutdown.wait()
            delay = min(delay * 2, BACKOFF_MAX_S)

    def terminate_all(self) -> None:
        for w in self.workers:
            if w.child is not None and w.child.popen.poll() is None:
                try:
                    w.child.popen.send_signal(signal.SIGTERM)
                except OSError:
                    pass


def _describe(code: int) -> str:
    """An exit code as the shell would say it: ``-9 (SIGKILL)`` for a signal."""
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return str(code)


async def _stop(child: BoundChild) -> None:
    """Kill a worker that is still alive (the drain, if any, happened before) and reap it."""
    if child.popen.poll() is None:
        try:
            child.popen.kill()
        except OSError:
            pass
        with trio.move_on_after(5):
            await child.wait()


async def supervise(settings: Settings, argv: list[str], workers: int) -> int:
    """The parent of ``workers`` gateway processes; ``argv`` is this ``jetkube serve`` command
    line (the workers get the same). Returns the exit code."""
    pki = (await trio.to_thread.run_sync(_first_start, settings))[0]
    data_dir = Path(settings.data_dir)
    async with AsyncExitStack() as stack:
        # The ports, reserved (bound, not listening: no connection waits on these); each worker
        # listens on them with a socket of its own.
        https_sock = _reserve(settings.host, settings.port)
        stack.callback(https_sock.close)
        http_sock = None
        if settings.insecure_port is not None:
            http_sock = _reserve(settings.host, settings.insecure_port)
            stack.callback(http_sock.close)
        https = f"https://{repr_socket_addr(https_sock.family, https_sock.getsockname())}"
        http = f"http://{repr_socket_addr(http_sock.family, http_sock.getsockname())}" if http_sock else None
        nats_url, embedded = settings.nats_url, None
        if not nats_url:
            embedded = nats_url = await stack.enter_async_context(run_nats_server(
                data_dir / "nats", restart_delay_s=settings.nats_restart_delay_s))
        link = {"workers": workers, "port": https_sock.getsockname()[1],
                "insecure_port": http_sock.getsockname()[1] if http_sock else None, "nats_url": embedded}
        sup = _Supervisor(settings, argv, workers, link)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.on_signals)
            async with trio.open_nursery() as running:
                for w in sup.workers:
                    running.start_soon(sup.keep, w)
                await sup.settled.wait()
                if not sup.shutdown.is_set():
                    kubeconfig = Path(settings.kubeconfig) if settings.kubeconfig else data_dir / "kubeconfig"
                    write_kubeconfig(kubeconfig, server=https, ca_cert=pki.ca_cert, token=pki.admin_token,
                                     client_cert=pki.admin_cert, client_key=pki.admin_key)
                    extra = f" http={http}" if http else ""
                    print(f"jetkube ready: https={https}{extra} kubeconfig={kubeconfig} "
                          f"nats={redact_url(nats_url)} workers={workers}", flush=True)
                await sup.shutdown.wait()
                # Every worker drains as one gateway does; the keepers return as their workers exit.
                sup.terminate_all()
                # The reservations go now; each worker closes its listener after the shutdown delay,
                # and once the last has, new connections are refused, not queued for no one.
                for sock in (https_sock, http_sock):
                    if sock is not None:
                        sock.close()
                running.cancel_scope.deadline = (trio.current_time() + settings.shutdown_delay_s
                                                 + settings.graceful_timeout_s + STOP_MARGIN_S)
            nursery.cancel_scope.cancel()
    return sup.exit_code
