"""Graceful drain: from the moment shutdown begins, /readyz answers 503 while the listeners keep
serving for the shutdown delay (in-flight and new requests are answered); then they close."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from gateway import Settings, serve
from tests.conftest import client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


async def test_readiness_turns_off_before_the_listener_closes(tmp_path: Path, nats_url: str) -> None:
    settings = Settings(data_dir=str(tmp_path / "jk"), port=0, insecure_port=0, nats_url=nats_url,
                        graceful_timeout_s=2.0, shutdown_delay_s=5.0)
    stop = trio.Event()
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            running = await nursery.start(partial(serve, settings, shutdown=stop))
            async with client_for(running) as api:
                assert (await api.get("/readyz")).status_code == 200
                first = await api.post(CM, json={"metadata": {"name": "d0"}})
                assert first.status_code == 201, first.text
                rv = int(first.json()["metadata"]["resourceVersion"])
                in_flight: list[httpx.Response] = []

                async def get_next_version() -> None:
                    # Waits for the projection to apply rv + 1: in flight when shutdown begins.
                    in_flight.append(await api.get(f"{CM}/d1?resourceVersion={rv + 1}"))

                async with trio.open_nursery() as reads:
                    reads.start_soon(get_next_version)
                    await trio.testing.wait_all_tasks_blocked()
                    t0 = trio.current_time()
                    stop.set()
                    ready = await api.get("/readyz?verbose")
                    assert ready.status_code == 503 and "[-]shutdown: draining" in ready.text, ready.text
                    assert (await api.get("/livez")).status_code == 200
                    # The listener still accepts: a new connection creates the object the read waits for.
                    async with client_for(running) as fresh:
                        created = await fresh.post(CM, json={"metadata": {"name": "d1"}})
                        assert created.status_code == 201, created.text
                        assert (await fresh.get("/readyz")).status_code == 503
                answered_in = trio.current_time() - t0
                assert in_flight[0].status_code == 200, in_flight[0].text
                assert answered_in < settings.shutdown_delay_s  # all of it while the listener was open
        # serve returned: the listener is closed now.
        async with client_for(running) as late:
            with pytest.raises(httpx.ConnectError):
                await late.get("/readyz")
