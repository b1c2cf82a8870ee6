"""Consistent reads are linearizable across gateways while head queries are shared: a write
acknowledged by one gateway is seen by the next GET or LIST on another, many times over, with
other consistent reads in flight on that gateway the whole time (so most reads share a head
query with others: the coalescing in ``bus.Log.head`` is what is exercised).

Two latencies are injected so that a read which took the answer of a query sent before it
arrived would miss the write: each head query's answer comes back 60 ms late, and the reading
gateway's projection applies what it reads 150 ms late. A read must wait for a query *sent* after
it began: that one's head includes the acknowledged write, and the read then waits for the
projection to apply it.
(Checked: with ``Log.head`` changed to let a caller take the answer of the query in flight, the
first test fails within its first rounds.)"""

from __future__ import annotations

import httpx
import pytest
import trio

from bus import LogMessage
from bus._log import Log
from projections import Projection
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

NS = "/api/v1/namespaces/lin/configmaps"
ROUNDS = 20


async def test_a_write_acknowledged_on_one_gateway_is_read_on_the_other(start_server: StartServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    queries = [0]
    real_state, real_apply, real_init = Log.stream_state, Projection._apply, Projection.__init__
    projections: list[Projection] = []

    def init(self: Projection, *a: object, **kw: object) -> None:
        real_init(self, *a, **kw)  # type: ignore[arg-type]
        projections.append(self)

    async def late_answer(self: Log) -> dict[str, object]:
        queries[0] += 1
        state = await real_state(self)
        await trio.sleep(0.06)  # an injected latency (the answer travels back slowly), not a synchronisation
        return state

    async def late_apply(self: Projection, batch: list[LogMessage]) -> None:
        if self is projections[-1]:
            await trio.sleep(0.15)  # an injected latency: the reading gateway's projection is behind the log
        await real_apply(self, batch)

    monkeypatch.setattr(Projection, "__init__", init)
    monkeypatch.setattr(Log, "stream_state", late_answer)
    monkeypatch.setattr(Projection, "_apply", late_apply)
    g1, g2 = await start_server(), await start_server()
    reads = [0]
    with trio.fail_after(120):
        async with client_for(g1) as c1, client_for(g2) as c2, client_for(g2) as noise:
            assert (await c1.post("/api/v1/namespaces", json={"metadata": {"name": "lin"}})).status_code == 201
            stop = trio.Event()

            async def hammer(i: int) -> None:
                """Consistent reads on gateway 2 beside the checked ones, all the time."""
                while not stop.is_set():
                    r = await noise.get(f"{NS}/cm-{i}" if i % 2 else NS)
                    assert r.status_code in (200, 404)
                    reads[0] += 1

            async def check(i: int) -> None:
                name = f"cm-{i}"
                created = await c1.post(NS, json={"metadata": {"name": name}, "data": {"v": "0"}})
                assert created.status_code == 201, created.text
                rv = created.json()["metadata"]["resourceVersion"]
                got = await c2.get(f"{NS}/{name}")
                assert got.status_code == 200, (name, got.text)
                assert got.json()["metadata"]["resourceVersion"] == rv
                updated = await c1.put(f"{NS}/{name}", json={**got.json(), "data": {"v": "1"}})
                assert updated.status_code == 200, updated.text
                rv2 = updated.json()["metadata"]["resourceVersion"]
                got = await c2.get(f"{NS}/{name}")
                assert (got.json()["data"], got.json()["metadata"]["resourceVersion"]) == ({"v": "1"}, rv2)
                listed = await c2.get(NS)
                assert int(listed.json()["metadata"]["resourceVersion"]) >= int(rv2)
                assert {"v": "1"} in [o["data"] for o in listed.json()["items"] if o["metadata"]["name"] == name]
                reads[0] += 3

            async with trio.open_nursery() as nursery:
                for i in range(12):
                    nursery.start_soon(hammer, i)
                for i in range(ROUNDS):
                    await check(i)
                stop.set()
    # The reads shared head queries (many more reads than queries), and the checks held anyway.
    assert reads[0] > 2 * queries[0] > 0, (reads[0], queries[0])


async def test_reads_on_the_writing_gateway_see_its_writes_under_concurrent_reads(server: object) -> None:
    """The same on one gateway, writes and reads from many tasks at once: every GET after an
    acknowledged write sees it (the head query it waits for was sent after the write's ack)."""
    async with client_for(server) as c:  # type: ignore[arg-type]
        assert (await c.post("/api/v1/namespaces", json={"metadata": {"name": "lin"}})).status_code == 201

        async def writer_reader(k: int, client: httpx.AsyncClient) -> None:
            for i in range(15):
                name = f"w{k}-{i}"
                created = await client.post(NS, json={"metadata": {"name": name}})
                assert created.status_code == 201, created.text
                got = await client.get(f"{NS}/{name}")
                assert got.status_code == 200, got.text
                assert got.json()["metadata"]["resourceVersion"] == created.json()["metadata"]["resourceVersion"]

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for k in range(8):
                    nursery.start_soon(writer_reader, k, c)
