"""The stall detector: a projection whose consumer stops delivering while still answering (here:
paused on the server, so heartbeats continue and the reader sees nothing wrong) resubscribes from
its last applied sequence once the stream head moves past it."""

from __future__ import annotations

import json

import pytest
import trio

from bus import open_bridge
from gateway import Running
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


async def test_a_silently_stalled_projection_resubscribes(start_server: StartServer) -> None:
    running: Running = await start_server()
    async with client_for(running) as api, open_bridge(running.nats_url) as bridge:
        with trio.fail_after(20):
            assert (await api.post(CM, json={"metadata": {"name": "before"}})).status_code == 201
            reply = await bridge.request("$JS.API.CONSUMER.NAMES.JETKUBE", b"{}", timeout_s=5)
            names = json.loads(reply.data)["consumers"]
            assert names
            for name in names:  # every consumer of the stream, the projection's among them
                r = await bridge.request(f"$JS.API.CONSUMER.PAUSE.JETKUBE.{name}",
                                         b'{"pause_until": "2100-01-01T00:00:00Z"}', timeout_s=5)
                assert json.loads(r.data).get("paused") is True, r.data
            t0 = trio.current_time()
            r = await api.post(CM, json={"metadata": {"name": "while-paused"}})
            assert r.status_code == 201, r.text  # acknowledged by the log; the projection lags
            while True:
                g = await api.get(f"{CM}/while-paused")  # a consistent read: 504 until caught up
                if g.status_code == 200:
                    break
                assert g.status_code == 504, g.text
            recovered = trio.current_time() - t0
            assert g.json() == r.json()
    print(f"\nstalled projection resubscribed; consistent read answered after {recovered:.3f}s")


