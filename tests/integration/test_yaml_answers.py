"""Answers in YAML (kube's YAML serializer, ``application/yaml``): a GET, a LIST, a write's answer and
any Status when the Accept negotiates YAML; a watch asking for YAML is 406 (YAML has no stream
serializer); an Accept kube serves nothing of is 406 in JSON; JSON stays JSON."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import partial
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
import trio.testing
import yaml

from gateway import _app as app_mod
from gateway._table import NOT_ACCEPTABLE, NOT_ACCEPTABLE_STREAM
from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
Y = {"Accept": "application/yaml"}
ROUTE_406 = ("406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, "
             "application/vnd.kubernetes.protobuf")


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
                # An Accept kube serves nothing of: its router's 406 (tests/unit/test_route_accept.py) in JSON.
                r = await c.get(f"{CM}/{names[0]}", headers={"Accept": "text/html"})
                assert r.status_code == 406 and r.headers["Content-Type"] == "application/json"
                assert r.json()["message"] == ROUTE_406
            # Unauthenticated: the 401 Status in YAML too.
            async with httpx.AsyncClient(base_url=str(g1.http_url), timeout=30) as anon:
                r = await anon.get(CM, headers={**Y, "Authorization": "Bearer nope"})
                assert r.status_code == 401 and _yaml(r)["reason"] == "Unauthorized"
            # A watch in JSON still streams.
            async with a.stream("GET", CM, params={"watch": "true", "timeoutSeconds": "1"}) as r:
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
                lines = [ln async for ln in r.aiter_lines() if ln]
            assert len(lines) >= len(names)


def _executing(ctx: app_mod.Context) -> int:
    """Requests holding flow control seats on ``ctx``'s gateway now (exempt ones included)."""
    return sum(qs.executing_requests for tf in ctx.pipeline.flow_control.dispatcher.tenants.values()
               for qs in tf.levels.values())


def _record_contexts(monkeypatch: pytest.MonkeyPatch) -> list[app_mod.Context]:
    """Every gateway Context made from now on (the servers the test starts), in order."""
    contexts: list[app_mod.Context] = []
    post_init = app_mod.Context.__post_init__

    def recorded(self: app_mod.Context) -> None:
        contexts.append(self)
        post_init(self)

    monkeypatch.setattr(app_mod.Context, "__post_init__", recorded)
    return contexts


async def test_a_yaml_answer_is_made_in_the_requests_seat_large_ones_on_their_own_threads(
        start_server: StartServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s8a finding 3: the YAML encode runs while the request holds its flow control seat (kube
    serializes in its handler, inside APF), in the loop for a small answer, and for a large one (a LIST
    over ``YAML_INLINE_BYTES``) in a worker thread of the gateway's own limiter (``Context.yaml_slots``,
    ``YAML_THREADS``), not trio's default one. Seen from the encoder: the executing count and the limiter."""
    contexts = _record_contexts(monkeypatch)
    real = app_mod.encode_yaml
    seen: list[tuple[int, bool, int, int]] = []  # (executing, in a worker thread, yaml threads busy, body bytes)

    def encode(body: bytes) -> bytes:
        ctx = contexts[0]
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # a worker thread: read the loop's state in the loop
            seen.append((*trio.from_thread.run_sync(lambda: (_executing(ctx), True, ctx.yaml_slots.borrowed_tokens)),
                         len(body)))
        else:
            seen.append((_executing(ctx), False, ctx.yaml_slots.borrowed_tokens, len(body)))
        return real(body)

    monkeypatch.setattr(app_mod, "encode_yaml", encode)
    g = await start_server()
    assert len(contexts) == 1 and contexts[0].yaml_slots.total_tokens == app_mod.YAML_THREADS == 2
    with trio.fail_after(60):
        async with client_for(g) as c:
            for i in range(40):  # a LIST of ~100 KiB: over YAML_INLINE_BYTES
                r = await c.post(CM, json={"metadata": {"name": f"big{i}"}, "data": {"v": "x" * 2500}})
                assert r.status_code == 201, r.text
            r = await c.post(CM, json={"metadata": {"name": "huge"}, "data": {"v": "x" * 20_000}})
            assert r.status_code == 201, r.text
            assert seen == [] and _executing(contexts[0]) == 0
            r = await c.get(f"{CM}/big0", headers=Y)
            assert r.status_code == 200 and _yaml(r)["data"]["v"] == "x" * 2500
            r = await c.get(f"{CM}/missing", headers=Y)
            assert r.status_code == 404 and _yaml(r)["reason"] == "NotFound"
            r = await c.get(f"{CM}/huge", headers=Y)  # one object of ~20 KB: over 8 KiB, in a thread
            assert r.status_code == 200 and _yaml(r)["data"]["v"] == "x" * 20_000
            r = await c.get(CM, headers=Y)
            assert r.status_code == 200
            assert {f"big{i}" for i in range(40)} <= {o["metadata"]["name"] for o in _yaml(r)["items"]}
            # every seat back once answered (after the last byte left the server: the client may read
            # it before the server's task goes on, which it does before the loop is idle)
            await trio.testing.wait_all_tasks_blocked()
            assert _executing(contexts[0]) == 0
    assert [(e, thread, busy) for e, thread, busy, _ in seen] == [(1, False, 0), (1, False, 0), (1, True, 1),
                                                                  (1, True, 1)]
    assert seen[3][3] > seen[2][3] > app_mod.YAML_INLINE_BYTES == 8 * 1024 > seen[0][3]


async def test_a_client_gone_while_its_yaml_waits_for_a_thread_is_counted_499_and_its_seat_returned(
        start_server: StartServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s8b LOW 6: a large YAML answer waits for a ``yaml_slots`` token (both held here) in
    the request's flow control seat; its client goes away: the request is counted as cancelled (499),
    its seat comes back, and the next YAML answer is made once a token is free."""
    contexts = _record_contexts(monkeypatch)
    g = await start_server()
    ctx = contexts[0]
    with trio.fail_after(60):
        async with client_for(g) as c:
            for i in range(10):  # a LIST of ~27 KB: over YAML_INLINE_BYTES
                r = await c.post(CM, json={"metadata": {"name": f"gone{i}"}, "data": {"v": "x" * 2500}})
                assert r.status_code == 201, r.text
            holders = [object(), object()]
            for h in holders:
                ctx.yaml_slots.acquire_on_behalf_of_nowait(h)
            aborted = sum(ctx.metrics.aborts.values())
            async with trio.open_nursery() as nursery:
                async def get() -> None:
                    await c.get(CM, headers=Y)
                    raise AssertionError("answered")

                nursery.start_soon(get)
                await poll_until(lambda: ctx.yaml_slots.statistics().tasks_waiting == 1)
                assert _executing(ctx) == 1  # it waits in its seat
                nursery.cancel_scope.cancel()  # the client goes away (httpx closes the connection)
            await poll_until(lambda: _executing(ctx) == 0)
            assert ctx.yaml_slots.statistics().tasks_waiting == 0
            assert sum(ctx.metrics.aborts.values()) == aborted + 1
            assert [(k[0], n) for k, n in ctx.metrics.aborts.items() if n] == [("LIST", 1)]
            ctx.yaml_slots.release_on_behalf_of(holders[0])
            r = await c.get(CM, headers=Y)
            assert r.status_code == 200 and len(_yaml(r)["items"]) >= 10
            ctx.yaml_slots.release_on_behalf_of(holders[1])
            await trio.testing.wait_all_tasks_blocked()
            assert _executing(ctx) == 0


async def test_a_status_quart_answers_is_yaml_when_asked(start_server: StartServer) -> None:
    """Review s8a finding 8: a body declared past Quart's MAX_CONTENT_LENGTH is refused by Quart
    (werkzeug's 413, answered by the app's HTTPException handler): that Status is YAML too when the
    Accept asks for it, JSON otherwise."""
    g = await start_server()
    assert g.http_url is not None
    host, port = g.http_url.removeprefix("http://").rsplit(":", 1)

    async def post_huge(accept: str) -> tuple[int, dict[str, str], bytes]:
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                f"POST {CM} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {g.admin_token}\r\n"
                f"Content-Type: application/json\r\nAccept: {accept}\r\nContent-Length: {64 * 1024 * 1024}\r\n\r\n"
                .encode() + b"{" * 1024)
            got = b""
            while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < int(
                    dict(_headers(got)).get("content-length", "1000000")):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                got += chunk
        head, body = got.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), dict(_headers(got)), body

    with trio.fail_after(30):
        code, headers, body = await post_huge("application/yaml")
        assert code == 413 and headers["content-type"] == "application/yaml", (code, headers, body)
        st = yaml.safe_load(body)
        assert st["kind"] == "Status" and st["reason"] == "RequestEntityTooLarge" and st["code"] == 413
        code, headers, body = await post_huge("application/json")
        assert code == 413 and headers["content-type"] == "application/json"
        assert msgspec.json.decode(body) == st


def _headers(raw: bytes) -> list[tuple[str, str]]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, v in (ln.split(":", 1) for ln in head if ":" in ln)]


# --- views in YAML: Tables, PartialObjectMetadata(List) -------------------------------------------

TABLE_Y = "application/yaml;as=Table;v=v1;g=meta.k8s.io"
TABLE_J = "application/json;as=Table;v=v1;g=meta.k8s.io"
POM_Y = "application/yaml;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
POML_Y = "application/yaml;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _same_table(table: dict) -> dict:
    """A Table without its Age column (a cell of the clock: two answers a second apart differ in it)."""
    ages = [i for i, c in enumerate(table.get("columnDefinitions") or ()) if c["name"] == "Age"]
    out = dict(table)
    if table.get("columnDefinitions") is not None:
        out["columnDefinitions"] = [c for i, c in enumerate(table["columnDefinitions"]) if i not in ages]
    out["rows"] = [{**row, "cells": [c for i, c in enumerate(row["cells"]) if i not in ages]} for row in table["rows"]]
    return out


async def test_tables_and_metadata_views_answered_in_yaml(start_server: StartServer) -> None:
    """kube's ``AllowsMediaTypeTransform``: a Table is served in JSON or YAML, PartialObjectMetadata(List) in
    any of its types; the YAML view parses back to the JSON view (built-in kinds and a custom resource's
    printer columns, GET, LIST, includeObject, v1beta1, a write's answer, a deletecollection's), with
    ``Content-Type: application/yaml``. A watch asking a YAML view is 406 (no stream serializer), after a
    Table's bad includeObject (400). An error Status is negotiated without views (kube's
    ``ErrorNegotiated``): JSON for a lone YAML-view clause, YAML when a plain YAML clause is taken."""
    from tests.integration.test_crd import CRDS, established, widget, widget_crd

    g1, g2 = await start_server(), await start_server()
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    with trio.fail_after(90):
        async with client_for(g1) as a, client_for(g2) as b:
            names = [f"t{i}" for i in range(10)]
            for i, n in enumerate(names):
                r = await a.post(CM, json={"metadata": {"name": n, "labels": {"set": "t"}},
                                           "data": {"k": f"v{i}", "multi": "one\ntwo\n"}})
                assert r.status_code == 201, r.text
            assert (await a.post(CRDS, json=widget_crd())).status_code == 201
            await established(a, "widgets.example.com")

            async def served() -> bool:
                return [(await c.get(widgets)).status_code for c in (a, b)] == [200, 200]

            await poll_until(served)
            for i in range(8):
                r = await a.post(widgets, json=widget(f"w{i}", size=i + 1, color="blue"))
                assert r.status_code == 201, r.text
            for c in (a, b):
                for path, want, label in ((CM, names, "set=t"), (widgets, [f"w{i}" for i in range(8)], "app=w")):
                    for include in ("", "Object", "None"):
                        q = {"includeObject": include} if include else {}
                        for version in ("v1", "v1beta1"):
                            jt, yt = TABLE_J.replace("v1", version), TABLE_Y.replace("v1", version)
                            listed = {**q, "labelSelector": label}
                            as_json = (await c.get(path, params=listed, headers={"Accept": jt})).json()
                            r = await c.get(path, params=listed, headers={"Accept": yt})
                            got = _yaml(r)
                            assert got["kind"] == "Table" and got["apiVersion"] == f"meta.k8s.io/{version}"
                            assert [row["cells"][0] for row in got["rows"]] == want
                            assert _same_table(got) == _same_table(as_json)
                        for n in want[:3]:
                            as_json = (await c.get(f"{path}/{n}", params=q, headers={"Accept": TABLE_J})).json()
                            got = _yaml(await c.get(f"{path}/{n}", params=q, headers={"Accept": TABLE_Y}))
                            assert got["rows"][0]["cells"][0] == n and _same_table(got) == _same_table(as_json)
                    # the widget's columns are Name and its printer columns
                    if path == widgets:
                        assert [col["name"] for col in got["columnDefinitions"]] == ["Name", "Size", "Color"]
                    # PartialObjectMetadata(List) in YAML
                    as_json = (await c.get(path, params={"labelSelector": label},
                                           headers={"Accept": POML_Y.replace("yaml", "json")})).json()
                    got = _yaml(await c.get(path, params={"labelSelector": label}, headers={"Accept": POML_Y}))
                    assert got == as_json and got["kind"] == "PartialObjectMetadataList"
                    assert [o["metadata"]["name"] for o in got["items"]] == want
                    for n in want:
                        as_json = (await c.get(f"{path}/{n}", headers={"Accept": POM_Y.replace("yaml", "json")})).json()
                        got = _yaml(await c.get(f"{path}/{n}", headers={"Accept": POM_Y}))
                        assert got == as_json and got["kind"] == "PartialObjectMetadata" and "spec" not in got
                    # the other one of the two: 406, its Status in JSON (the lone clause is a view)
                    for url, accept, message in ((path, POM_Y, "is a list"), (f"{path}/{want[0]}", POML_Y, "not a list")):
                        r = await c.get(url, headers={"Accept": accept})
                        assert r.status_code == 406 and r.headers["Content-Type"] == "application/json", r.text
                        assert message in r.json()["message"]
                        r = await c.get(url, headers={"Accept": f"{accept}, application/yaml"})
                        assert r.status_code == 406 and message in _yaml(r)["message"]  # a plain YAML clause
                # A watch asking a YAML view: 406 (YAML has no stream serializer); a bad includeObject first.
                for accept in (TABLE_Y, POML_Y, f"{TABLE_Y}, application/json"):
                    r = await c.get(CM, params={"watch": "true"}, headers={"Accept": accept})
                    assert r.status_code == 406 and r.headers["Content-Type"] == "application/json", accept
                    assert r.json()["message"] == NOT_ACCEPTABLE_STREAM
                r = await c.get(CM, params={"watch": "true", "includeObject": "Nope"}, headers={"Accept": TABLE_Y})
                assert r.status_code == 400 and "includeObject" in r.json()["message"]
                # Errors: negotiated without views.
                r = await c.get(f"{CM}/missing", headers={"Accept": TABLE_Y})
                assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
                r = await c.get(f"{CM}/missing", headers={"Accept": f"{TABLE_J}, application/yaml"})
                assert r.status_code == 404 and _yaml(r)["reason"] == "NotFound"
                # JSON views stay JSON, whatever YAML follows.
                r = await c.get(CM, headers={"Accept": f"{TABLE_J}, {TABLE_Y}"})
                assert r.headers["Content-Type"].startswith("application/json") and r.json()["kind"] == "Table"
            # A write's answer in a YAML view: an object's PartialObjectMetadata, a one-row Table; a
            # deletecollection's list a Table.
            r = await a.post(CM, json={"metadata": {"name": "w-pom"}, "data": {"secret": "s3cr3t"}},
                             headers={"Accept": POM_Y})
            got = _yaml(r)
            assert r.status_code == 201 and got["kind"] == "PartialObjectMetadata" and b"s3cr3t" not in r.content
            assert got == (await a.get(f"{CM}/w-pom", headers={"Accept": POM_Y.replace("yaml", "json")})).json()
            r = await a.patch(f"{CM}/w-pom", json={"data": {"x": "y"}}, headers={
                "Accept": TABLE_Y, "Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200 and [row["cells"][0] for row in _yaml(r)["rows"]] == ["w-pom"]
            r = await a.post(CM, json={"metadata": {"name": "w-list"}}, headers={"Accept": POML_Y})
            assert r.status_code == 406 and r.headers["Content-Type"] == "application/json"
            r = await a.delete(CM, params={"labelSelector": "set=t"}, headers={"Accept": TABLE_Y})
            got = _yaml(r)
            assert r.status_code == 200 and got["kind"] == "Table"
            assert sorted(row["cells"][0] for row in got["rows"]) == sorted(names)
            r = await a.delete(f"{widgets}/w0", headers={"Accept": TABLE_Y})  # a Status stays one; an object a Table
            assert r.status_code == 200 and _yaml(r)["kind"] in ("Status", "Table")


# --- discovery documents --------------------------------------------------------------------------

AGG = "application/{}; g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList"


async def test_discovery_documents_answered_in_yaml(start_server: StartServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """kube's discovery handlers write with ``WriteObjectNegotiated`` and the apiserver's codecs: every
    legacy document (``/api``, ``/apis``, ``/api/v1``, each ``/apis/<group>`` and ``/apis/<group>/<version>``)
    is YAML for ``application/yaml``, the aggregated form for its YAML clause (the Content-Type echoes it),
    each parsing back to its JSON answer; negotiated without views (``DefaultEndpointRestrictions``): an
    Accept with no clause kube takes is 406 (in JSON), a group not served 404 first. The aggregated /apis
    (over ``YAML_INLINE_BYTES``) is made YAML in a worker thread of ``Context.yaml_slots``. kubectl's
    discovery is unchanged."""
    contexts = _record_contexts(monkeypatch)
    real = app_mod.encode_yaml
    threads: list[tuple[int, int]] = []  # (yaml threads busy, body bytes) of each encode in a worker thread

    def encode(body: bytes) -> bytes:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            threads.append((trio.from_thread.run_sync(lambda: contexts[0].yaml_slots.borrowed_tokens), len(body)))
        return real(body)

    monkeypatch.setattr(app_mod, "encode_yaml", encode)
    g = await start_server()
    with trio.fail_after(90):
        async with client_for(g) as c:
            groups = (await c.get("/apis")).json()["groups"]
            assert len(groups) > 10
            paths = ["/api", "/apis", "/api/v1"]
            for group in groups:
                paths.append(f"/apis/{group['name']}")
                paths += [f"/apis/{v['groupVersion']}" for v in group["versions"]]
            for path in paths:
                as_json = await c.get(path)
                assert as_json.headers["Content-Type"] == "application/json"
                for accept in ("application/yaml", "application/yaml, application/json", "text/html, application/yaml",
                               f"{TABLE_Y}, application/yaml"):
                    r = await c.get(path, headers={"Accept": accept})
                    assert r.status_code == 200 and _yaml(r) == as_json.json(), (path, accept)
                for accept in ("application/json, application/yaml", "*/*", "application/yaml;q=0.5, application/json"):
                    r = await c.get(path, headers={"Accept": accept})
                    assert r.headers["Content-Type"] == "application/json" and r.json() == as_json.json()
                # kube serves no view of a discovery document, and nothing but its types: 406, in JSON (a type
                # none of its go-restful routes' is the router's: /api, /api/v1, /apis/<group>/<version>; /apis and
                # /apis/<group> are kube-aggregator's, whose handlers negotiate alone)
                for accept in ("text/html", TABLE_Y, TABLE_J, "application/yaml;stream=watch"):
                    r = await c.get(path, headers={"Accept": accept})
                    assert r.status_code == 406 and r.headers["Content-Type"] == "application/json", (path, accept)
                    routed = accept == "text/html" and (path.startswith("/api/") or path == "/api" or path.count("/") == 3)
                    assert r.json()["reason"] == "NotAcceptable", (path, accept)
                    assert r.json()["message"] == (ROUTE_406 if routed else NOT_ACCEPTABLE), (path, accept)
            for path in ("/api/v1", "/apis/apps/v1", "/apis/apps"):  # the aggregated form is /api's and /apis' only
                r = await c.get(path, headers={"Accept": AGG.format("yaml", "v2")})
                assert r.status_code == 406 and r.json()["message"] == NOT_ACCEPTABLE
            # Not served: 404 before any 406, its Status in YAML when a plain YAML clause is taken.
            for accept in ("application/yaml", f"text/html, {TABLE_Y}, application/yaml"):
                r = await c.get("/apis/nothing.example.com/v1", headers={"Accept": accept})
                assert r.status_code == 404 and _yaml(r)["reason"] == "NotFound"
            r = await c.get("/apis/nothing.example.com", headers={"Accept": "text/html"})
            assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
            # Aggregated discovery in YAML: the Content-Type names the clause taken.
            for path in ("/api", "/apis"):
                for version in ("v2", "v2beta1"):
                    as_json = await c.get(path, headers={"Accept": AGG.format("json", version)})
                    assert as_json.headers["Content-Type"] == AGG.format("json", version).replace(" ", "")
                    for accept in (AGG.format("yaml", version), f"{AGG.format('yaml', version)}, {AGG.format('json', 'v2')}",
                                   f"text/html, {AGG.format('yaml', version)}"):
                        r = await c.get(path, headers={"Accept": accept})
                        assert r.status_code == 200 and r.headers["Vary"] == "Accept"
                        assert r.headers["Content-Type"] == AGG.format("yaml", version).replace(" ", ""), accept
                        doc = yaml.safe_load(r.content)
                        assert doc == as_json.json() and doc["apiVersion"] == f"apidiscovery.k8s.io/{version}"
            big = await c.get("/apis", headers={"Accept": AGG.format("json", "v2")})
            assert len(big.content) > app_mod.YAML_INLINE_BYTES
            assert any(busy == 1 and size == len(big.content) for busy, size in threads), threads
            # kubectl's discovery (aggregated, then each group-version legacy) still reads it.
            kubeconfig = Path(g.kubeconfig)
            out = await _kubectl(kubeconfig, tmp_path, "api-resources", "-o", "name")
            assert {"configmaps", "deployments.apps", "customresourcedefinitions.apiextensions.k8s.io"} <= set(out.split())
            assert msgspec.json.decode(await _kubectl(kubeconfig, tmp_path, "get", "--raw", "/api/v1")) == \
                (await c.get("/api/v1")).json()
    assert contexts[0].yaml_slots.borrowed_tokens == 0


async def _kubectl(kubeconfig: Path, home: Path, *args: str) -> str:
    binary = shutil.which("kubectl")
    assert binary is not None
    out = await trio.to_thread.run_sync(partial(
        subprocess.run, [binary, *args], check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}))
    assert out.returncode == 0, out.stderr
    return out.stdout


# --- OpenAPI: never YAML -------------------------------------------------------------------------


async def test_openapi_is_never_yaml(start_server: StartServer, tmp_path: Path) -> None:
    """kube-openapi answers ``/openapi/v2`` and each ``/openapi/v3/<group-version>`` in JSON or its
    protobuf only: an Accept with neither (``application/yaml`` among them) is 406 with no body; a YAML
    clause before JSON gets JSON; the ``/openapi/v3`` index is JSON whatever the Accept. kubectl (which
    reads OpenAPI v3 for ``explain``) is unchanged."""
    g = await start_server()
    with trio.fail_after(90):
        async with client_for(g) as c:
            v2 = await c.get("/openapi/v2")
            assert v2.status_code == 200 and v2.headers["Content-Type"] == "application/json"
            index = await c.get("/openapi/v3")
            paths = sorted(index.json()["paths"])
            assert len(paths) > 10
            for accept in ("application/yaml", "text/yaml", "text/html", "application/vnd.kubernetes.protobuf"):
                r = await c.get("/openapi/v2", headers={"Accept": accept})
                assert r.status_code == 406 and r.content == b"" and "content-type" not in r.headers, accept
                assert r.headers["Vary"] == "Accept"
                r = await c.get("/openapi/v3", headers={"Accept": accept})
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
                assert r.json() == index.json()
                for p in paths:
                    r = await c.get(f"/openapi/v3/{p}", headers={"Accept": accept})
                    assert r.status_code == 406 and r.content == b"" and "content-type" not in r.headers, (p, accept)
            for accept in ("application/yaml, application/json", "application/yaml, */*", "application/*"):
                r = await c.get("/openapi/v2", headers={"Accept": accept})
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
                assert r.content == v2.content
                for p in paths:
                    r = await c.get(f"/openapi/v3/{p}", headers={"Accept": accept})
                    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", (p, accept)
                    assert r.json()["openapi"].startswith("3.")
            # the protobuf, either spelling, and the JSON it is made of
            for accept in ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                           "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json"):
                r = await c.get("/openapi/v2", headers={"Accept": accept})
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
                assert r.content and not r.content.startswith(b"{")
            # an unknown group-version: 406 first for YAML (kube-openapi negotiates before it looks)
            r = await c.get("/openapi/v3/apis/nothing.example.com/v1", headers={"Accept": "application/yaml"})
            assert r.status_code == 406
            assert (await c.get("/openapi/v3/apis/nothing.example.com/v1")).status_code == 404
            out = await _kubectl(Path(g.kubeconfig), tmp_path, "explain", "configmap.data")
            assert "FIELD: data" in out or "data" in out
