"""Protobuf responses (``Accept: application/vnd.kubernetes.protobuf``) for get, list and watch, as
client-go's typed clients (kubectl 1.32+ ``describe``, controllers) request them."""

from __future__ import annotations

import httpx
import pytest
import trio

from gateway._protobuf import decode_k8s_protobuf, decode_watch_frames

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
PB = {"Accept": "application/vnd.kubernetes.protobuf, application/json"}


async def test_get_list_watch_in_protobuf(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        created = []
        for i in range(5):
            r = await api.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": f"p{i}", "labels": {"set": "pb"}}, "data": {"k": str(i)}, "binaryData": {"b": "AAE="}})
            assert r.status_code == 201, r.text
            created.append(r.json())

        r = await api.get(f"{CM}/p0", headers=PB)
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.kubernetes.protobuf"
        assert r.content.startswith(b"k8s\x00")
        assert decode_k8s_protobuf(r.content) == created[0]

        r = await api.get(CM, params={"labelSelector": "set=pb"}, headers=PB)
        listed = decode_k8s_protobuf(r.content)
        # Items of a protobuf list carry no apiVersion/kind (messages have no TypeMeta; client-go fills it).
        assert listed["kind"] == "ConfigMapList"
        assert listed["items"] == [{k: v for k, v in c.items() if k not in ("kind", "apiVersion")} for c in created]
        assert int(listed["metadata"]["resourceVersion"]) >= int(created[-1]["metadata"]["resourceVersion"])

        # JSON first in the header: JSON; a Table request is never protobuf.
        r = await api.get(f"{CM}/p0", headers={"Accept": "application/json, application/vnd.kubernetes.protobuf"})
        assert r.headers["content-type"].startswith("application/json")

        rv = created[-1]["metadata"]["resourceVersion"]
        params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "5", "allowWatchBookmarks": "true"}
        async with api.stream("GET", CM, params=params, headers=PB) as stream:
            assert stream.headers["content-type"] == "application/vnd.kubernetes.protobuf;stream=watch"
            r = await api.put(f"{CM}/p1", json={**created[1], "data": {"k": "new"}})
            assert r.status_code == 200, r.text
            r = await api.delete(f"{CM}/p2")
            assert r.status_code == 200, r.text
            buf = b""
            events: list[dict] = []
            async for chunk in stream.aiter_bytes():
                buf += chunk
                events = [e for e in decode_watch_frames(buf) if e["type"] != "BOOKMARK"]
                if len(events) >= 2:
                    break
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "p1"),
                                                                                  ("DELETED", "p2")]
        assert events[0]["object"]["data"] == {"k": "new"}
