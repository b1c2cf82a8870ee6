"""`jetkube serve` as a real process: kill -9 leaves no nats-server behind, a store has one owner,
and SIGTERM ends open watches cleanly and exits promptly."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio
import yaml

from bus import run_nats_server
from tests.conftest import poll_until, spawn_serve

pytestmark = pytest.mark.integration


class Serve:
    """One `jetkube serve` process on an embedded nats-server, started and ready."""

    def __init__(self, proc: trio.Process, line: str, data_dir: Path) -> None:
        self.proc = proc
        self.line = line
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        self.http_url = fields["http"]
        kubeconfig = yaml.safe_load((data_dir / "kubeconfig").read_text())
        self.token = kubeconfig["users"][0]["user"]["token"]

    def client(self, **kw: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=10, **kw)  # type: ignore[arg-type]

    def nats_server_pids(self) -> list[int]:
        return [p for p in _children(self.proc.pid) if b"nats-server" in _cmdline(p)]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


async def start_serve(data_dir: Path) -> Serve:
    proc, line = await spawn_serve(data_dir)
    return Serve(proc, line, data_dir)



async def test_kill_9_of_serve_takes_its_nats_server_along(tmp_path: Path) -> None:
    data_dir = tmp_path / "jk"
    with trio.fail_after(30):
        first = await start_serve(data_dir)
    try:
        password = (data_dir / "nats" / "nats-password").read_text().strip()
        assert password not in first.line  # the ready line shows the NATS URL without its password
        pids = first.nats_server_pids()
        assert len(pids) == 1, pids
        first.proc.kill()
        await first.proc.wait()
        t0 = trio.current_time()
        with trio.fail_after(10):
            await poll_until(lambda: not _alive(pids[0]))
        print(f"\nnats-server gone {trio.current_time() - t0:.3f}s after kill -9 of jetkube")
        with trio.fail_after(30):
            second = await start_serve(data_dir)
        try:
            async with second.client() as api:
                r = await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "x"}})
                assert r.status_code == 201, r.text
        finally:
            second.proc.terminate()
            with trio.fail_after(15):
                await second.proc.wait()
    finally:
        if first.proc.returncode is None:
            first.proc.kill()


async def test_a_store_has_one_nats_server(tmp_path: Path) -> None:
    from bus._embedded import NatsServerFailed

    with trio.fail_after(30):
        async with run_nats_server(tmp_path / "store"):
            with pytest.raises(NatsServerFailed, match="in use"):
                async with run_nats_server(tmp_path / "store", lock_wait_s=0.3):
                    pass
        # Released on exit: the store can be opened again.
        async with run_nats_server(tmp_path / "store"):
            pass


async def test_sigterm_ends_open_watches_cleanly_and_exits_promptly(tmp_path: Path) -> None:
    with trio.fail_after(30):
        srv = await start_serve(tmp_path / "jk")
    try:
        async with srv.client() as api, srv.client() as watcher:
            with trio.fail_after(10):
                r = await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "w"}})
                assert r.status_code == 201, r.text
            url = "/api/v1/namespaces/default/configmaps?watch=1&fieldSelector=metadata.name%3Dw"
            async with watcher.stream("GET", url) as w:
                assert w.status_code == 200
                lines = w.aiter_lines()
                with trio.fail_after(10):
                    first = await lines.__anext__()  # the stream is open: the initial ADDED event
                assert '"ADDED"' in first and '"w"' in first, first
                t0 = trio.current_time()
                srv.proc.send_signal(signal.SIGTERM)
                with trio.fail_after(2):
                    # A cut connection raises httpx.RemoteProtocolError (incomplete chunked body);
                    # a clean end of the stream just ends the iteration.
                    rest = [line async for line in lines]
                t_end = trio.current_time() - t0
            assert all(line.strip() == "" or "BOOKMARK" in line or "ADDED" in line for line in rest), rest
            # Both clients keep their (now idle) keep-alive connections open, as real clients do.
            with trio.fail_after(2):
                code = await srv.proc.wait()
            t_exit = trio.current_time() - t0
        assert code == 0
        print(f"\nSIGTERM: watch ended cleanly after {t_end:.3f}s, process exited after {t_exit:.3f}s")
    finally:
        if srv.proc.returncode is None:
            srv.proc.kill()
