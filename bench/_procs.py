"""Processes the benchmark starts: jetkube gateways, worker children, the no-op server.

Every child is registered with a :class:`Children` set and killed in its ``close`` (called from
the orchestrator's ``finally``), so nothing outlives a run, whatever fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ._util import proc_mem

READY = re.compile(r"jetkube ready: https=(\S+)(?: http=(\S+))? kubeconfig=(\S+) nats=(\S+)")


class Children:
    """Every process started, by pid; ``close`` stops those still alive (TERM, then KILL)."""

    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def add(self, p: subprocess.Popen[bytes]) -> None:
        self.procs[p.pid] = p

    def discard(self, pid: int) -> None:
        self.procs.pop(pid, None)

    def stop(self, pid: int) -> None:
        """Stop one child we started (TERM, then KILL) and forget it."""
        p = self.procs.pop(pid, None)
        if p is not None:
            stop_popen(p, 5.0)

    def close(self) -> None:
        alive = [p for p in self.procs.values() if p.poll() is None]
        for p in alive:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for p in alive:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        self.procs.clear()


@dataclass
class ChildResult:
    rc: int | None
    output: str
    cpu_s: float
    wall_s: float
    timed_out: bool = False


@dataclass
class Child:
    """A running child; :meth:`wait` reaps it with ``wait4`` to get its own CPU time."""

    popen: subprocess.Popen[bytes]
    out_path: Path
    children: Children
    t0: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def write_stdin(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode())
        self.popen.stdin.flush()

    async def wait(self, timeout_s: float) -> ChildResult:
        pid = self.popen.pid
        timed_out = False
        cpu = 0.0
        rc: int | None = None
        with trio.move_on_after(timeout_s) as scope:
            _, status, ru = await trio.to_thread.run_sync(os.wait4, pid, 0, abandon_on_cancel=True)
            rc = os.waitstatus_to_exitcode(status)
            cpu = ru.ru_utime + ru.ru_stime
            self.popen.returncode = rc
        if scope.cancelled_caught:
            timed_out = True
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            # The abandoned wait4 thread reaps it; give it a moment.
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                await trio.sleep(0.05)
            self.popen.returncode = -9
        self.children.discard(pid)
        try:
            output = self.out_path.read_text(errors="replace")
        except OSError:
            output = ""
        return ChildResult(rc, output, cpu, time.monotonic() - self.t0, timed_out)


REPO = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment for children: the repository on the path, so ``-m bench._x`` resolves."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def spawn(children: Children, argv: list[str], out_path: Path, *, stdin: bool = False,
          env: dict[str, str] | None = None, cwd: str | None = None) -> Child:
    env = env or child_env()
    cwd = cwd or str(REPO)
    out = open(out_path, "wb")  # noqa: SIM115 - handed to the child
    try:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, env=env, cwd=cwd)
    finally:
        out.close()
    children.add(p)
    return Child(p, out_path, children)


# ---- jetkube gateways ----------------------------------------------------------------------------------

@dataclass
class Gateway:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    token: str
    data_dir: Path
    ready_s: float
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss(self) -> dict[str, int]:
        return proc_mem(self.popen.pid)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


async def start_gateway(children: Children, name: str, data_dir: Path, nats_url: str, *,
                        pki_from: Path | None = None, timeout_s: float = 120.0,
                        extra_args: tuple[str, ...] = (), workers: int = 1) -> Gateway:
    """``jetkube serve`` on loopback (plain HTTP on a free insecure port); wait for its ready line.

    ``ready_s`` is the time from spawn to the ready line (process start, imports, stream setup,
    projection caught up with the log head, actors started, listeners bound).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if pki_from is not None and not (data_dir / "pki").exists():
        shutil.copytree(pki_from, data_dir / "pki")
    log_path = data_dir / "stderr.log"
    argv = [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
            "--port", "0", "--insecure-port", "0", "--nats-url", nats_url, "--workers", str(workers), *extra_args]
    err = open(log_path, "wb")  # noqa: SIM115, ASYNC230 - handed to the child
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,  # noqa: ASYNC220
                             env=child_env(),
                             cwd=str(REPO))
    finally:
        err.close()
    children.add(p)
    assert p.stdout is not None
    line = b""
    try:
        with trio.fail_after(timeout_s):
            line = await trio.to_thread.run_sync(p.stdout.readline, abandon_on_cancel=True)
    except trio.TooSlowError:
        stop_popen(p)
        raise RuntimeError(f"{name}: not ready within {timeout_s}s; log tail:\n{_tail(log_path)}") from None
    ready_s = time.monotonic() - t0
    m = READY.search(line.decode(errors="replace"))
    if not m or not m.group(2):
        stop_popen(p)
        raise RuntimeError(f"{name}: no ready line (got {line[:200]!r}); log tail:\n{_tail(log_path)}")
    port = int(m.group(2).rsplit(":", 1)[1])
    token = (data_dir / "pki" / "tokens.csv").read_text().split(",", 1)[0].strip()
    return Gateway(name, p, port, token, data_dir, ready_s, log_path)


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def stop_popen(p: subprocess.Popen[Any], timeout_s: float = 15.0) -> None:
    if p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
    except OSError:
        pass


async def stop_gateway(children: Children, gw: Gateway) -> None:
    await trio.to_thread.run_sync(stop_popen, gw.popen)
    children.discard(gw.pid)


def child_pids(pid: int) -> list[int]:
    """The children of a process (a gateway's or a no-op server's workers)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def find_pid(cmdline_part: str) -> int | None:
    """The pid of a process whose command line contains ``cmdline_part`` (our nats-server)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline_part in cmd:
            return int(d.name)
    return None
