"""Watch semantics: exact resume from any version (ring or log), selectors, bookmarks, 410."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from bus import StreamConfig, open_bridge, open_log
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"


async def read_events(api: httpx.AsyncClient, url: str, *, until_rv: str | None = None, count: int | None = None,
                      until_type: str | None = None) -> list[dict[str, Any]]:
    """Read watch events until one has resourceVersion ``until_rv`` (or ``count`` events, or a type)."""
    out: list[dict[str, Any]] = []
    async with api.stream("GET", url) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line:
                continue
            ev = json.loads(line)
            out.append(ev)
            if until_rv is not None and ev["object"]["metadata"].get("resourceVersion") == until_rv:
                break
            if count is not None and len(out) >= count:
                break
            if until_type is not None and ev["type"] == until_type:
                break
    return out


async def record_history(api: httpx.AsyncClient) -> list[tuple[str, str, str]]:
    """Writes of every kind in two namespaces; returns (rv, type, name) of the default-namespace ones."""
    await api.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
    hist: list[tuple[str, str, str]] = []
    for i in range(6):
        r = await api.post(CM, json={"metadata": {"name": f"w{i}"}, "data": {"i": str(i)}})
        hist.append((r.json()["metadata"]["resourceVersion"], "ADDED", f"w{i}"))
        await api.post("/api/v1/namespaces/other/configmaps", json={"metadata": {"name": f"o{i}"}})
        r = await api.patch(f"{CM}/w{i}", content=b'{"data":{"x":"y"}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        hist.append((r.json()["metadata"]["resourceVersion"], "MODIFIED", f"w{i}"))
        if i % 2:
            await api.delete(f"{CM}/w{i}")
            got = (await api.get(CM)).json()["metadata"]["resourceVersion"]
            hist.append((got, "DELETED", f"w{i}"))
    return hist


async def test_resume_from_every_version_ring_and_log(start_server: StartServer) -> None:
    # A ring of 4 changes per resource: old versions are served from the log, recent ones from memory.
    server = await start_server(watch_ring_size=4)
    async with client_for(server) as api:
        with trio.fail_after(60):
            hist = await record_history(api)
            last_rv = hist[-1][0]
            for idx, (rv, _, _) in enumerate(hist[:-1]):
                events = await read_events(api, f"{CM}?watch=true&resourceVersion={rv}", until_rv=last_rv)
                got = [(e["object"]["metadata"]["resourceVersion"], e["type"], e["object"]["metadata"]["name"])
                       for e in events]
                assert got == hist[idx + 1:], f"resume from {rv}"


async def test_watch_from_zero_lists_then_streams(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        await api.post(CM, json={"metadata": {"name": "a"}})
        url = f"{CM}?watch=1&resourceVersion=0&fieldSelector=metadata.name%3Db"
        async with api.stream("GET", url) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            await api.post(CM, json={"metadata": {"name": "b"}})
            # Whether the watch began before or after b was created, b arrives as ADDED (a live
            # event or the synthetic one of resourceVersion=0); once it has, the watch is live, so
            # the patch below can only arrive as MODIFIED.
            first = json.loads(await anext(line async for line in lines if line))
            assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "b"
            assert "data" not in first["object"]
            await api.patch(f"{CM}/b", content=b'{"data":{"k":"v"}}',
                            headers={"Content-Type": "application/merge-patch+json"})
            second = json.loads(await anext(line async for line in lines if line))
            assert second["type"] == "MODIFIED" and second["object"]["metadata"]["name"] == "b"
            assert second["object"]["data"] == {"k": "v"}


async def test_label_selector_transitions(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await api.post(CM, json={"metadata": {"name": "t", "labels": {"app": "web"}}})
        rv = r.json()["metadata"]["resourceVersion"]
        await api.patch(f"{CM}/t", content=b'{"metadata":{"labels":{"app":"db"}}}',
                        headers={"Content-Type": "application/merge-patch+json"})
        r = await api.patch(f"{CM}/t", content=b'{"metadata":{"labels":{"app":"web"}}}',
                            headers={"Content-Type": "application/merge-patch+json"})
        last = r.json()["metadata"]["resourceVersion"]
        events = await read_events(api, f"{CM}?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb", until_rv=last)
        assert [e["type"] for e in events] == ["DELETED", "ADDED"]


async def test_initial_events_end_bookmark_and_periodic_bookmarks(start_server: StartServer) -> None:
    server = await start_server(bookmark_interval_s=0.2)
    async with client_for(server) as api:
        with trio.fail_after(20):
            await api.post(CM, json={"metadata": {"name": "i1"}})
            await api.post(CM, json={"metadata": {"name": "i2"}})
            r = await api.get(CM + "?watch=1&sendInitialEvents=true")
            assert r.status_code == 422
            events = await read_events(
                api, f"{CM}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
                until_type="BOOKMARK")
            # i1, i2 and kube-root-ca.crt (the root-CA controller's), then the bookmark.
            assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
            assert [e["object"]["metadata"]["name"] for e in events[:3]] == ["i1", "i2", "kube-root-ca.crt"]
            bm = events[-1]["object"]
            assert bm["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
            assert int(bm["metadata"]["resourceVersion"]) >= max(
                int(e["object"]["metadata"]["resourceVersion"]) for e in events[:3])
            head = (await api.get(CM)).json()["metadata"]["resourceVersion"]
            events = await read_events(api, f"{CM}?watch=1&resourceVersion={head}&allowWatchBookmarks=true",
                                       until_type="BOOKMARK")
            assert events[-1]["object"]["kind"] == "ConfigMap"
            assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(head)


async def test_watch_timeout_seconds_ends_stream(api: httpx.AsyncClient) -> None:
    # Real time: the server's timer ends the stream (the bus runs real I/O, so no autojump clock here).
    with trio.fail_after(20):
        r = await api.get(f"{CM}?watch=1&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Dnone")
        assert r.status_code == 200 and r.text == ""


async def test_expired_below_log_retention(start_server: StartServer, nats_url: str) -> None:
    server = await start_server(watch_ring_size=2)
    async with client_for(server) as api:
        with trio.fail_after(30):
            rvs = []
            for i in range(8):
                r = await api.post(CM, json={"metadata": {"name": f"e{i}"}})
                rvs.append(int(r.json()["metadata"]["resourceVersion"]))
            page = (await api.get(CM + "?limit=2")).json()
            token = page["metadata"]["continue"]
            await api.post(CM, json={"metadata": {"name": "after"}})
            async with open_bridge(nats_url) as bridge:
                log = await open_log(bridge, StreamConfig())
                await log._api(f"STREAM.PURGE.{log.stream}", {"seq": rvs[5]})  # keep sequences >= rvs[5]
            events = await read_events(api, f"{CM}?watch=1&resourceVersion={rvs[1]}", count=1)
            assert events[0]["type"] == "ERROR"
            assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
            r = await api.get(CM + f"?limit=2&continue={token}")
            assert r.status_code == 410 and r.json()["reason"] == "Expired"
            # Versions the log still holds resume exactly.
            events = await read_events(api, f"{CM}?watch=1&resourceVersion={rvs[5]}", count=2)
            assert [e["object"]["metadata"]["name"] for e in events] == ["e6", "e7"]


async def test_slow_watcher_is_cut_off_with_an_error(start_server: StartServer) -> None:
    """A watcher that stops reading is ended with an ERROR event, not buffered without bound."""
    server = await start_server(watch_queue=4)
    async with client_for(server) as api:
        with trio.fail_after(60):
            rv = (await api.get(CM)).json()["metadata"]["resourceVersion"]
            async with api.stream("GET", f"{CM}?watch=1&resourceVersion={rv}") as r:
                # Not reading: 64 MB of events cannot all sit in socket buffers, so the server's queue
                # of 4 fills and the watcher is cut off.
                blob = "x" * (1024 * 1024)
                for i in range(64):
                    assert (await api.post(CM, json={"metadata": {"name": f"big{i}"}, "data": {"b": blob}})
                            ).status_code == 201
                lines = [json.loads(line) async for line in r.aiter_lines() if line]
            assert lines[-1]["type"] == "ERROR" and lines[-1]["object"]["code"] == 429
            names = [e["object"]["metadata"]["name"] for e in lines[:-1]]
            assert names == [f"big{i}" for i in range(len(names))] and len(names) < 64
