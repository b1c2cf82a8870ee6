"""Schema-driven behaviour over HTTP: field validation, strategic merge metadata, YAML bodies,
Tables, aggregated discovery and OpenAPI documents."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import trio

import kinds._schemas as schemas

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_field_validation_modes(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        body = {"metadata": {"name": "fv", "bogus": 1}, "data": {"a": "b"}, "spec": {"x": 1}}
        r = await api.post(CM + "?fieldValidation=Strict", json=body)
        assert r.status_code == 400
        assert r.json()["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding '
                                       'error: unknown field "metadata.bogus", unknown field "spec"')
        r = await api.post(CM, json=body)  # Warn is the default
        assert r.status_code == 201
        assert r.headers.get_list("Warning") == ['299 - "unknown field \\"metadata.bogus\\""',
                                                 '299 - "unknown field \\"spec\\""']
        assert "spec" not in r.json() and "bogus" not in r.json()["metadata"]
        r = await api.post(CM + "?fieldValidation=Ignore", json=dict(body, metadata={"name": "fv2", "x": 1}))
        assert r.status_code == 201 and "Warning" not in r.headers and "x" not in r.json()["metadata"]
        r = await api.patch(f"{CM}/fv?fieldValidation=Strict", content=b'{"nope":1}',
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 422 and r.json()['reason'] == 'Invalid'
        assert 'unknown field "nope"' in r.json()["message"]
        r = await api.post(CM + "?fieldValidation=Loud", json={"metadata": {"name": "fv3"}})
        assert r.status_code == 400


async def test_strategic_merge_uses_schema_keys(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        sa = "/api/v1/namespaces/default/serviceaccounts"
        await api.post(sa, json={"metadata": {"name": "smp"}, "secrets": [{"name": "a"}, {"name": "b"}]})
        r = await api.patch(f"{sa}/smp", content=b'{"secrets":[{"name":"c"},{"$patch":"delete","name":"a"}]}',
                            headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert r.status_code == 200, r.text
        assert [s["name"] for s in r.json()["secrets"]] == ["c", "b"]
        r = await api.patch(f"{sa}/smp", content=b'{"metadata":{"finalizers":["x.io/a"]}}',
                            headers={"Content-Type": "application/strategic-merge-patch+json"})
        r = await api.patch(f"{sa}/smp", content=b'{"metadata":{"finalizers":["x.io/b"]}}',
                            headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert sorted(r.json()["metadata"]["finalizers"]) == ["x.io/a", "x.io/b"]  # merged, not replaced


async def test_yaml_bodies(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await api.post(CM, content=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n",
                           headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201 and r.json()["data"] == {"k": "v"}


async def test_tables_and_discovery(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        await api.post(CM, json={"metadata": {"name": "t1"}, "data": {"a": "1", "b": "2"}})
        r = await api.get(CM, headers={"Accept": TABLE})
        t = r.json()
        assert t["kind"] == "Table" and [c["name"] for c in t["columnDefinitions"]] == ["Name", "Data", "Age"]
        # Row 0 is kube-root-ca.crt (the root-CA controller's), row 1 ours.
        assert [row["cells"][:2] for row in t["rows"]] == [["kube-root-ca.crt", 1], ["t1", 2]]
        assert t["rows"][1]["object"]["kind"] == "PartialObjectMetadata"
        r = await api.get(CM + "?includeObject=Object", headers={"Accept": TABLE})
        assert r.json()["rows"][1]["object"]["data"] == {"a": "1", "b": "2"}
        accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
        r = await api.get("/apis", headers={"Accept": accept})
        assert r.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        assert "coordination.k8s.io" in [g["metadata"]["name"] for g in r.json()["items"]]
        r = await api.get("/api", headers={"Accept": accept.split(",", 1)[1]})
        assert r.json()["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
        index = (await api.get("/openapi/v3")).json()["paths"]
        url = index["api/v1"]["serverRelativeURL"]
        doc = (await api.get(url)).json()
        cm_schema = doc["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"]
        assert cm_schema["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "ConfigMap", "version": "v1"}]
        r = await api.get("/openapi/v3/api/v1?hash=stale", follow_redirects=False)
        assert r.status_code == 301 and r.headers["Location"] == url
        pb = await api.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
        assert pb.status_code == 200 and pb.headers["Content-Type"] == "application/octet-stream" and pb.content[:1]


async def test_schemas_are_loaded_at_start_off_the_trio_loop(start_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    schemas._load.cache_clear()
    threads: list[threading.Thread] = []
    read = schemas._read

    def recording_read(version: str) -> Any:
        threads.append(threading.current_thread())
        return read(version)

    monkeypatch.setattr(schemas, "_read", recording_read)
    with trio.fail_after(30):
        await start_server()
    # Loaded before the server said it was ready, and never on the thread that runs trio.
    assert schemas._load.cache_info().currsize == 1 and threads
    assert all(t is not threading.main_thread() for t in threads)
