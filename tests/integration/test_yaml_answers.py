"""Answers in YAML (kube's YAML serializer, ``application/yaml``): a GET, a LIST, a write's answer and
any Status when the Accept negotiates YAML; a watch asking for YAML is 406 (YAML has no stream
serializer); an Accept kube serves nothing of is 406 in JSON; JSON stays JSON."""

from __future__ import annotations

import httpx
import pytest
import trio
import yaml

from gateway import _app as app_mod
from gateway._table import NOT_ACCEPTABLE, NOT_ACCEPTABLE_STREAM
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
Y = {"Accept": "application/yaml"}


def _yaml(r: httpx.Response) -> dict:
    assert r.headers["Content-Type"] == "application/yaml", (r.status_code, r.headers, r.text)
    return yaml.safe_load(r.content)


@pytest.mark.parametrize("inline", [True, False], ids=["in-loop", "worker-thread"])
async def test_gets_lists_writes_and_errors_answered_in_yaml(start_server: StartServer, inline: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if not inline:  # every answer made YAML in a worker thread (as a large one is)
        monkeypatch.setattr(app_mod, "YAML_INLINE_BYTES", 0)
    g1, g2 = await start_server(), await start_server()
    with trio.fail_after(60):
        async with client_for(g1) as a, client_for(g2) as b:
            names = [f"y{i}" for i in range(12)]
            for i, n in enumerate(names):
                data = {"k": f"v{i}", "multi": "line one\nline two\n", "num": "123", "flag": "true"}
                if i % 2:  # a YAML body, answered in YAML
                    body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n},
                                           "data": data})
                    r = await a.post(CM, content=body, headers={"Content-Type": "application/yaml", **Y})
                    assert r.status_code == 201 and _yaml(r)["metadata"]["name"] == n
                else:
                    r = await a.post(CM, json={"metadata": {"name": n}, "data": data})
                    assert r.status_code == 201 and r.headers["Content-Type"] == "application/json"
            for c in (a, b):  # either gateway
                for n in names:
                    as_json = (await c.get(f"{CM}/{n}")).json()
                    r = await c.get(f"{CM}/{n}", headers=Y)
                    assert r.status_code == 200 and _yaml(r) == as_json
                    assert b"multi: |\n    line one\n    line two\n" in r.content  # a literal block, as go-yaml
                listed = await c.get(CM, params={"labelSelector": ""})
                r = await c.get(CM, headers=Y)
                got = _yaml(r)
                assert got["kind"] == "ConfigMapList" and got["apiVersion"] == "v1"
                assert got["items"] == listed.json()["items"]
                # JSON stays JSON, whatever else is accepted after it; wildcards are JSON.
                for accept in ("application/json, application/yaml", "*/*", "application/yaml;q=0.5, application/json"):
                    r = await c.get(f"{CM}/{names[0]}", headers={"Accept": accept})
                    assert r.headers["Content-Type"] == "application/json", accept
                # A Status in YAML: a missing object, a conflict, a bad request.
                r = await c.get(f"{CM}/missing", headers=Y)
                st = _yaml(r)
                assert r.status_code == 404 and st["kind"] == "Status" and st["reason"] == "NotFound"
                assert st == (await c.get(f"{CM}/missing")).json()
                r = await c.post(CM, json={"metadata": {"name": names[0]}}, headers=Y)
                assert r.status_code == 409 and _yaml(r)["reason"] == "AlreadyExists"
                r = await c.get(CM, params={"limit": "x"}, headers=Y)
                assert r.status_code == 400 and _yaml(r)["kind"] == "Status"
                # A watch cannot be YAML: 406 (its Status in YAML, as kube negotiates the error).
                r = await c.get(CM, params={"watch": "true"}, headers=Y)
                st = _yaml(r)
                assert r.status_code == 406 and st["reason"] == "NotAcceptable" and st["message"] == NOT_ACCEPTABLE_STREAM
                # An Accept kube serves nothing of: 406 in JSON.
                r = await c.get(f"{CM}/{names[0]}", headers={"Accept": "text/html"})
                assert r.status_code == 406 and r.headers["Content-Type"] == "application/json"
                assert r.json()["message"] == NOT_ACCEPTABLE
            # Unauthenticated: the 401 Status in YAML too.
            async with httpx.AsyncClient(base_url=str(g1.http_url), timeout=30) as anon:
                r = await anon.get(CM, headers={**Y, "Authorization": "Bearer nope"})
                assert r.status_code == 401 and _yaml(r)["reason"] == "Unauthorized"
            # A watch in JSON still streams.
            async with a.stream("GET", CM, params={"watch": "true", "timeoutSeconds": "1"}) as r:
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
                lines = [ln async for ln in r.aiter_lines() if ln]
            assert len(lines) >= len(names)
