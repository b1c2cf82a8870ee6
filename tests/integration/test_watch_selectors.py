"""Selector transitions on every watch path (issue 7): a watch resumed from version V with a label
or field selector sees what kube's cacher sends (cache_watcher.go ``convertToWatchEvent``):
ADDED for an object that starts matching, MODIFIED while it keeps matching, DELETED when it stops
matching or is deleted while matching, nothing otherwise. The same history is watched from the
memory ring (a server whose ring holds everything) and from the log (a server with a ring of 4,
pushed past V by writes in another namespace)."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
import trio

import gateway._server
from projections import ProjectionSettings
from tests.conftest import StartServer, client_for
from tests.integration.test_watch import read_events

pytestmark = pytest.mark.integration

EV = "/api/v1/namespaces/default/events"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _event(name: str, app: str, reason: str, namespace: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": app}}, "reason": reason, "message": "m",
            "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "p"}}


async def _history(api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """Objects before V, changes after it, filler elsewhere, and the final ``zend``.
    Returns V and name@step -> resourceVersion."""
    for name, app, reason in (("mover", "a", "A"), ("joiner", "b", "B"), ("stayer", "a", "A"),
                              ("goner", "a", "A"), ("outsider", "b", "B")):
        r = await api.post(EV, json=_event(name, app, reason))
        assert r.status_code == 201, r.text
    v = r.json()["metadata"]["resourceVersion"]
    rvs: dict[str, str] = {}

    async def patch(name: str, body: bytes) -> None:
        r = await api.patch(f"{EV}/{name}", content=body, headers=MERGE)
        assert r.status_code == 200, r.text
        rvs[f"{name}@{len(rvs)}"] = r.json()["metadata"]["resourceVersion"]

    async def delete(name: str) -> None:
        r = await api.delete(f"{EV}/{name}")
        assert r.status_code == 200, r.text
        rvs[f"{name}@{len(rvs)}"] = (await api.get(EV)).json()["metadata"]["resourceVersion"]

    async def create(name: str, app: str, reason: str) -> None:
        r = await api.post(EV, json=_event(name, app, reason))
        assert r.status_code == 201, r.text
        rvs[f"{name}@{len(rvs)}"] = r.json()["metadata"]["resourceVersion"]

    await patch("mover", b'{"metadata":{"labels":{"app":"b"}},"reason":"B"}')  # stops matching
    await patch("joiner", b'{"metadata":{"labels":{"app":"a"}},"reason":"A"}')  # starts matching
    await patch("stayer", b'{"message":"x"}')  # keeps matching
    await delete("goner")  # deleted while matching
    await patch("outsider", b'{"message":"x"}')  # never matches
    await delete("mover")  # deleted after it stopped matching
    await create("newbie", "a", "A")
    await create("newout", "b", "B")
    await api.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
    for i in range(6):  # more than a ring of 4 holds: V is only in the log for the small-ring server
        r = await api.post("/api/v1/namespaces/other/events", json=_event(f"f{i}", "f", "F", "other"))
        assert r.status_code == 201, r.text
    await create("zend", "a", "A")
    return v, rvs


ALL = ["MODIFIED mover@0", "MODIFIED joiner@1", "MODIFIED stayer@2", "DELETED goner@3", "MODIFIED outsider@4",
       "DELETED mover@5", "ADDED newbie@6", "ADDED newout@7", "ADDED zend@8"]
SELECTED = ["DELETED mover@0", "ADDED joiner@1", "MODIFIED stayer@2", "DELETED goner@3", "ADDED newbie@6",
            "ADDED zend@8"]
CASES = [
    (EV, "", ALL),
    (EV, "labelSelector=app%3Da", SELECTED),
    (EV, "fieldSelector=reason%3DA", SELECTED),
    (EV, "labelSelector=app%3Da&fieldSelector=reason%3DA", SELECTED),
    ("/api/v1/events", "labelSelector=app%3Da", SELECTED),
    ("/api/v1/events", "fieldSelector=reason%3DA", SELECTED),
]


@pytest.mark.parametrize("log_reads", ["whole", "tiny"])
async def test_selector_transitions_on_ring_and_log_paths(start_server: StartServer, monkeypatch: pytest.MonkeyPatch,
                                                          log_reads: str) -> None:
    small = await start_server(watch_ring_size=4)
    async with client_for(small) as api:
        with trio.fail_after(60):
            v, rvs = await _history(api)
    if log_reads == "tiny":
        # Log reads of 2 messages that remember 1 object: previous states are fetched again after
        # being forgotten, and across batch boundaries.
        monkeypatch.setattr(gateway._server, "ProjectionSettings",
                            functools.partial(ProjectionSettings, reader_batch=2, history_objects=1))
        small = await start_server(watch_ring_size=4)
    big = await start_server()  # replays the whole log into a ring of 10 000
    by_rv = {rv: step for step, rv in rvs.items()}
    for server, path in ((big, "ring"), (small, "log")):
        async with client_for(server) as api:
            with trio.fail_after(60):
                for url, query, want in CASES:
                    events = await read_events(api, f"{url}?watch=1&resourceVersion={v}&{query}",
                                               until_rv=rvs["zend@8"])
                    got = [f"{e['type']} {by_rv.get(e['object']['metadata']['resourceVersion'], '?')}"
                           for e in events]
                    assert got == want, f"{path} path, {url}?{query}"
                    names = [e["object"]["metadata"]["name"] for e in events]
                    assert names == [w.split(" ")[1].split("@")[0] for w in want], f"{path} path, {url}?{query}"
                    if query:
                        # An object leaving the selection is sent as it was before (kube: the previous
                        # object with the event's resourceVersion): every object sent matches.
                        assert all(e["object"]["metadata"]["labels"]["app"] == "a" and e["object"]["reason"] == "A"
                                   for e in events), f"{path} path, {url}?{query}"
