"""``jetkube dev-cluster``: 3 nats-servers, 2 gateways and the TCP load balancer as local processes;
a client with the written kubeconfig's CA and token works through the load balancer, keeps working
on new connections when one gateway is killed -9, and SIGTERM stops everything."""

from __future__ import annotations

import os
import select
import signal
import ssl
import sys
from pathlib import Path

import httpx
import pytest
import trio
import yaml

from tests.conftest import poll_until
from tests.integration.cluster_support import ready_line

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


def _children(pid: int) -> list[int]:
    """``pid``'s children (from /proc; none once it is gone)."""
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    except FileNotFoundError:
        return []


def _gateway_pid(parent: int, data_dir: Path) -> int:
    """The pid of the dev cluster's gateway child serving ``data_dir`` (from /proc)."""
    children = _children(parent)
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"serve" in argv and str(data_dir).encode() in argv:
            return pid
    raise AssertionError(f"no gateway child for {data_dir} among {children}")


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    out: set[int] = set()
    for c in _children(pid):
        out |= {c} | _descendants(c)
    return out


def _alive(pidfd: int) -> bool:
    """The process behind ``pidfd`` has not exited (its pidfd is not readable yet)."""
    return not select.select([pidfd], [], [], 0)[0]


async def test_a_dev_cluster_killed_leaves_no_process_behind(tmp_path: Path) -> None:
    """``kill -9`` of the dev cluster: its nats-servers and gateways (bound to it) get SIGTERM and
    end, rather than live on holding their ports and stores."""
    root = tmp_path / "dc"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "dev-cluster", "--data-dir", str(root), "--port", "0"],
        stdout=-1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    children: dict[int, int] = {}  # pid -> its pidfd, readable once the process has exited (no polling)
    try:
        await ready_line(proc, "jetkube dev-cluster ready:", 90)
        children = {c: os.pidfd_open(c) for c in _descendants(proc.pid)}
        assert len(children) >= 5, children  # 3 nats-servers, 2 gateways
        proc.kill()
        await proc.wait()
        with trio.fail_after(40):  # a gateway drains on SIGTERM; nats-server stops at once
            for fd in children.values():
                await trio.lowlevel.wait_readable(fd)
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
        for fd in children.values():  # (only if the test failed: nothing is left for the next tests)
            if _alive(fd):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)


async def test_dev_cluster_serves_through_the_load_balancer(tmp_path: Path) -> None:
    root = tmp_path / "dc"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "dev-cluster", "--data-dir", str(root), "--port", "0"],
        stdout=-1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = await ready_line(proc, "jetkube dev-cluster ready:", 90)
        fields = dict(f.split("=", 1) for f in line.split()[3:])
        kubeconfig = yaml.safe_load(Path(fields["kubeconfig"]).read_text())
        server = kubeconfig["clusters"][0]["cluster"]["server"]
        assert server == fields["https"]
        token = kubeconfig["users"][0]["user"]["token"]
        gateways = fields["gateways"].split(",")
        assert len(gateways) == 2 and server not in gateways
        ca = ssl.create_default_context(cafile=str(root / "pki" / "ca.crt"))
        async with httpx.AsyncClient(base_url=server, verify=ca, timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as api:
            with trio.fail_after(30):
                r = await api.post(CM, json={"metadata": {"name": "through-lb"}})
                assert r.status_code == 201, r.text
                for _ in range(4):  # new connections, round robin over both gateways
                    async with httpx.AsyncClient(base_url=server, verify=ca,
                                                 headers={"Authorization": f"Bearer {token}"}) as one:
                        g = await one.get(f"{CM}/through-lb")
                        assert g.status_code == 200 and g.json() == r.json()
                for gw in gateways:  # each gateway serves the same certificate and tokens
                    async with httpx.AsyncClient(base_url=gw, verify=ca,
                                                 headers={"Authorization": f"Bearer {token}"}) as one:
                        assert (await one.get(f"{CM}/through-lb")).status_code == 200
            # kill -9 one gateway: the cluster serves on; new connections through the balancer all
            # reach the other (the dead one refuses, the balancer hands the client on), none fails.
            victim = _gateway_pid(proc.pid, root / "gw0")
            os.kill(victim, signal.SIGKILL)
            with trio.fail_after(10):
                await poll_until(lambda: not Path(f"/proc/{victim}").exists())
            with trio.fail_after(30):
                for i in range(6):
                    async with httpx.AsyncClient(base_url=server, verify=ca,
                                                 headers={"Authorization": f"Bearer {token}"}) as one:
                        r = await one.post(CM, json={"metadata": {"name": f"after-kill-{i}"}})
                        assert r.status_code == 201, r.text
            assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            await proc.wait()
        assert proc.returncode == 0
        for url in [server, *gateways]:  # the load balancer and every gateway are gone
            host, port = url.removeprefix("https://").rsplit(":", 1)
            with pytest.raises(OSError):
                await trio.open_tcp_stream(host, int(port))
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
