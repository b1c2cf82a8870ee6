"""Answers in YAML (kube's YAML serializer, ``application/yaml``): a GET, a LIST, a write's answer and
any Status when the Accept negotiates YAML; a watch asking for YAML is 406 (YAML has no stream
serializer); an Accept kube serves nothing of is 406 in JSON; JSON stays JSON."""

from __future__ import annotations

import httpx
import msgspec
import pytest
import trio
import yaml

from gateway import _app as app_mod
from gateway._table import NOT_ACCEPTABLE, NOT_ACCEPTABLE_STREAM
from tests.conftest import StartServer, client_for, poll_until

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
            assert _executing(contexts[0]) == 0  # every seat back once answered
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
