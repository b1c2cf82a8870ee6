"""``--stream-replicas`` against a real 3-node JetStream cluster: the stream is created replicated,
gateways given every node's URL share it, and a stream with another replica count stops the start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from bus import StreamConfig, StreamMismatch, open_bridge, open_log
from tests.conftest import StartServer, client_for
from tests.natscluster import NatsCluster

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


async def test_r3_stream_through_two_gateways(nats_cluster: NatsCluster, start_server: StartServer) -> None:
    a = await start_server(nats_url=nats_cluster.url, stream_replicas=3)
    b = await start_server(nats_url=nats_cluster.url, stream_replicas=3)
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(30):
            info = await nats_cluster.stream_info("JETKUBE")
            assert info is not None and info["config"]["num_replicas"] == 3, info
            assert len(info["cluster"]["replicas"]) == 2, info["cluster"]  # the leader plus two
            for i in range(10):
                r = await api_a.post(CM, json={"metadata": {"name": f"r3-{i}"}, "data": {"i": str(i)}})
                assert r.status_code == 201, r.text
                g = await api_b.get(f"{CM}/r3-{i}")
                assert g.status_code == 200 and g.json() == r.json()
            obj = (await api_b.get(f"{CM}/r3-0")).json()
            u = await api_b.put(f"{CM}/r3-0", json=obj | {"data": {"i": "b"}})
            assert u.status_code == 200, u.text
            assert (await api_a.put(f"{CM}/r3-0", json=obj)).status_code == 409  # CAS across gateways


async def test_a_stream_with_other_replicas_is_an_error_at_start(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with open_bridge(nats_cluster.url) as bridge:
            await open_log(bridge, StreamConfig(replicas=1))  # an R1 stream, as a first single-node start made
            with pytest.raises(StreamMismatch, match="exists with 1 replica"):
                await open_log(bridge, StreamConfig(replicas=3))
        proc = await trio.run_process(
            [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "jk"), "--port", "0",
             "--nats-url", nats_cluster.url, "--stream-replicas", "3"],
            capture_stdout=True, capture_stderr=True, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "JETKUBE exists with 1 replica(s), but 3 were asked for" in err, err
    assert "Traceback" not in err and nats_cluster.password not in err
    assert b"jetkube ready" not in proc.stdout
