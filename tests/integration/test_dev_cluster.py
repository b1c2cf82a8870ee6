"""``jetkube dev-cluster``: 3 nats-servers, 2 gateways and the TCP load balancer as local processes;
a client with the written kubeconfig's CA and token works through the load balancer, keeps working
on new connections when one gateway is killed -9, and SIGTERM stops everything."""

from __future__ import annotations

import os
import signal
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


def _gateway_pid(parent: int, data_dir: Path) -> int:
    """The pid of the dev cluster's gateway child serving ``data_dir`` (from /proc)."""
    children = [int(c) for t in Path(f"/proc/{parent}/task").iterdir()
                for c in (t / "children").read_text().split()]
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"serve" in argv and str(data_dir).encode() in argv:
            return pid
    raise AssertionError(f"no gateway child for {data_dir} among {children}")


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
        async with httpx.AsyncClient(base_url=server, verify=str(root / "pki" / "ca.crt"), timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as api:
            with trio.fail_after(30):
                r = await api.post(CM, json={"metadata": {"name": "through-lb"}})
                assert r.status_code == 201, r.text
                for _ in range(4):  # new connections, round robin over both gateways
                    async with httpx.AsyncClient(base_url=server, verify=str(root / "pki" / "ca.crt"),
                                                 headers={"Authorization": f"Bearer {token}"}) as one:
                        g = await one.get(f"{CM}/through-lb")
                        assert g.status_code == 200 and g.json() == r.json()
                for gw in gateways:  # each gateway serves the same certificate and tokens
                    async with httpx.AsyncClient(base_url=gw, verify=str(root / "pki" / "ca.crt"),
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
                    async with httpx.AsyncClient(base_url=server, verify=str(root / "pki" / "ca.crt"),
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
