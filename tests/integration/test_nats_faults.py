"""NATS faults (issue 7): the bus survives a server that closes it, a dead or restarted nats-server,
and never lets a subject reach the wire that would make the server close the connection."""

from __future__ import annotations

import httpx
import pytest
import trio

from bus import Key, StreamConfig, open_bridge, open_log, resource_filter

pytestmark = pytest.mark.integration


async def test_bridge_replaces_a_connection_the_server_closed(nats_url: str) -> None:
    """A server -ERR ("maximum control line exceeded") makes nats-py close the client for good; the
    bridge opens a new connection and appends and readers carry on."""
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="F1", prefix="f1"))
            subj = log.subject(Key("default", "", "configmaps", "ns", "a"))
            assert await log.append(subj, b"one", msg_id="m1", expected_seq=0) == 1
            reader = await log.open_reader(resource_filter("f1", "default", "", "configmaps"), 1)
            try:
                assert [m.seq for m in await reader.next_batch()] == [1]
                assert bridge.connections == 1
                # Bypass the subjects module: a protocol line over max_control_line (4096 bytes).
                await bridge.run_coro(bridge.nc.publish("x" * 5000, b""), timeout_s=5)
                await bridge.wait_connections(2)
                assert bridge.connected
                assert await log.append(subj, b"two", msg_id="m2", expected_seq=1) == 2
                assert [m.seq for m in await reader.next_batch()] == [2]
            finally:
                await reader.aclose()


@pytest.mark.parametrize("name", ["ü" * 700, "a" * 100_000])
async def test_a_long_name_is_a_4xx_and_the_server_stays_connected(api: httpx.AsyncClient, name: str) -> None:
    roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"
    with trio.fail_after(30):
        r = await api.post(roles, json={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                        "metadata": {"name": name}, "rules": []})
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["kind"] == "Status"
        r = await api.get(f"{roles}/{name[:5000]}")  # httpx refuses longer URLs
        assert r.status_code == 404 and r.json()["reason"] == "NotFound", r.text
        with trio.fail_after(3):  # no 10 s append timeout: the connection is still up
            r = await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "after"}})
        assert r.status_code == 201, r.text
