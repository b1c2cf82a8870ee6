"""The last stage of requests that end late or early, as kube's audit filter records them: a watch
gets ``ResponseStarted`` when its headers go out and ``ResponseComplete`` when its stream ends (its
client closes it, its ``timeoutSeconds`` runs out, the server stops), each once, in that order, under
the policy's omitStages; a request whose client goes away before its answer (a 499) gets
``ResponseComplete`` with kube's "Connection closed early" status. In batch mode (the audit stream,
read through the query API) and in the webhook's blocking mode."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway import _app, _fast
from gateway._server import serve
from gateway._settings import Settings, load_audit_policy
from projections._projection import Projection
from tests.conftest import poll_until
from tests.integration.test_audit import client, events, files
from tests.integration.test_audit_webhook import TOKENS, start_audit_webhook
from tests.integration.test_audit_webhook_blocking import _client, _setup

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
SERVICES = "/api/v1/namespaces/default/services"
QUIET = "/api/v1/namespaces/quiet/configmaps"
#: test_audit's tokens; secrets' watches omit ResponseStarted, services' ResponseComplete, and the
#: namespace "quiet" is not audited at all.
POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: None
  namespaces: ["quiet"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
  omitStages: ["ResponseStarted"]
- level: Metadata
  resources:
  - group: ""
    resources: ["services"]
  omitStages: ["ResponseComplete"]
- level: Metadata
  verbs: ["get", "list", "watch"]
- level: Request
"""
#: resourceVersions no log reaches in a test: the spied wait for them blocks until the client goes.
FAR = 10**12
CLOSED_EARLY = {"metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200}


async def _watch(c: httpx.AsyncClient, url: str, *, until_end: bool, first: bool = True) -> str:
    """A watch from resourceVersion 0: ended by the client after its first event (or its headers:
    not ``first``), or read until the server ends it (``until_end``); its audit ID."""
    async with c.stream("GET", f"{url}{'&' if '?' in url else '?'}watch=1&resourceVersion=0") as r:
        assert r.status_code == 200
        aid = r.headers["Audit-Id"]
        if until_end:
            async for _ in r.aiter_lines():
                pass
        elif first:
            async for line in r.aiter_lines():
                if line:
                    break
    return aid


class _Far(list[int]):
    """The FAR waits entered; ``left``: the client of the last one has closed its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.left = trio.Event()


def _spy_far_waits(monkeypatch: pytest.MonkeyPatch) -> _Far:
    """Projection.wait_for of a FAR resourceVersion waits until the test's client has gone, then
    waits as it does (3 s, then ResourceVersionTooLarge): the app's handler is cancelled meanwhile
    (quart-trio watches for the disconnect), the fast path finds the client gone after the wait."""
    entered = _Far()
    real = Projection.wait_for

    async def wait_for(self: Projection, seq: int, timeout_s: float | None = None) -> None:
        if seq < FAR:
            return await real(self, seq, timeout_s)
        entered.append(seq)
        await entered.left.wait()
        await real(self, seq, timeout_s)

    monkeypatch.setattr(Projection, "wait_for", wait_for)
    return entered


async def _cancelled_get(c: httpx.AsyncClient, url: str, entered: _Far, n: int,
                         headers: dict[str, str] | None = None) -> None:
    """A GET the server holds (a FAR wait); the client goes away once the server is in it."""
    entered.left = trio.Event()
    async with trio.open_nursery() as nursery:
        async def get() -> None:
            await c.get(url, headers=headers)
            raise AssertionError("answered")

        nursery.start_soon(get)
        await poll_until(lambda: len(entered) >= n)
        nursery.cancel_scope.cancel()
    entered.left.set()  # (httpx closed the connection on the cancellation)


def _spy_body_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fast path's and the app's body reads, spied: the list of those entered (by module)."""
    entered: list[str] = []
    for mod in (_fast, _app):
        async def spy(*a: Any, _real: Any = mod._read_body, _name: str = mod.__name__, **k: Any) -> bytes:
            entered.append(_name)
            return await _real(*a, **k)

        monkeypatch.setattr(mod, "_read_body", spy)
    return entered


async def _cancelled_post(url: str | None, path: str, token: str, content_type: str, entered: list[str],
                          n: int) -> None:
    """A create whose body never finishes: the client goes away once the server is reading it."""
    assert url
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                          f"Content-Type: {content_type}\r\nContent-Length: 200\r\n\r\n{{".encode())
    await poll_until(lambda: len(entered) >= n)
    await stream.aclose()


def _by_id(recs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in recs:
        out.setdefault(e["auditID"], []).append(e)
    return out


def _check_watch(recs: list[dict[str, Any]], stages: tuple[str, ...]) -> None:
    assert [e["stage"] for e in recs] == list(stages), recs
    assert all(e["responseStatus"]["code"] == 200 and e["verb"] == "watch" for e in recs)
    assert [e["stageTimestamp"] for e in recs] == sorted(e["stageTimestamp"] for e in recs)



async def _two_watches_until_stopped(client: httpx.AsyncClient, stop: trio.Event) -> list[str]:
    """Open two watches (one with a selector) on the gateway ``stop`` stops, stop it once both are
    open, and return their audit IDs after both streams ended."""
    opened: list[str] = []
    async with trio.open_nursery() as n:
        async def until_stopped(url: str) -> None:
            async with client.stream("GET", url) as r:
                assert r.status_code == 200
                opened.append(r.headers["Audit-Id"])
                async for _ in r.aiter_lines():
                    pass

        n.start_soon(until_stopped, f"{CM}?watch=1&resourceVersion=0")
        n.start_soon(until_stopped, f"{CM}?watch=1&labelSelector=app%3Dx")
        await poll_until(lambda: len(opened) == 2)
        stop.set()
    return opened

async def test_watches_and_cancelled_requests_get_their_response_complete(start_server, nursery, nats_url: str,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, policy_file = files(tmp_path)
    policy_file.write_text(POLICY)
    kw: dict[str, Any] = {"token_file": str(tokens), "audit_policy": load_audit_policy(str(policy_file))}
    g1, g2 = await start_server(**kw), await start_server(**kw)
    stop3 = trio.Event()  # a third gateway the test stops, its watches open
    with trio.fail_after(30):
        g3 = await nursery.start(partial(serve, Settings(data_dir=str(tmp_path / "g3"), port=0, insecure_port=0,
                                                         nats_url=nats_url, graceful_timeout_s=0.5, **kw),
                                         shutdown=stop3))
    entered = _spy_far_waits(monkeypatch)
    a1, b2, a2, b1, a3 = (client(g1.http_url, "alice-token-AAAA"), client(g2.http_url, "bob-token-BBBB"),
                          client(g2.http_url, "alice-token-AAAA"), client(g1.http_url, "bob-token-BBBB"),
                          client(g3.http_url, "alice-token-AAAA"))
    ids: dict[str, tuple[str, ...]] = {}  # auditID -> the stages expected
    async with a1, b2, a2, b1, a3:
        with trio.fail_after(120):
            for i in range(6):
                r = await a1.post(CM, json={"metadata": {"name": f"c{i}", "labels": {"app": "x" if i % 2 else "y"}}})
                assert r.status_code == 201, r.text
            assert (await a1.post(SECRETS, json={"metadata": {"name": "s0"}})).status_code == 201
            assert (await a1.post(SERVICES, json={"metadata": {"name": "v0"}, "spec": {
                "ports": [{"port": 80}]}})).status_code == 201
            both = ("ResponseStarted", "ResponseComplete")
            # Ended by the client (after the first event), with and without selectors, both gateways.
            for c, url in ((a1, CM), (b2, f"{CM}?labelSelector=app%3Dx"), (a2, f"{CM}?fieldSelector=metadata.name%3Dc2"),
                           (b1, f"{CM}?labelSelector=app%20in%20(x,y)")):
                ids[await _watch(c, url, until_end=False)] = both
            # Ended by their timeoutSeconds (the stream read to its end), concurrently.
            async with trio.open_nursery() as n:
                async def timed(c: httpx.AsyncClient, url: str) -> None:
                    ids[await _watch(c, url, until_end=True)] = both

                for c, url in ((a1, f"{CM}?timeoutSeconds=1"), (b2, f"{CM}?timeoutSeconds=1&labelSelector=app%3Dy"),
                               (a2, f"{CM}?timeoutSeconds=2&fieldSelector=metadata.name%3Dc1")):
                    n.start_soon(timed, c, url)
            # omitStages: a secrets watch has its ResponseComplete only, a services watch its
            # ResponseStarted only; the namespace "quiet" nothing.
            ids[await _watch(a1, SECRETS, until_end=False)] = ("ResponseComplete",)
            ids[await _watch(b2, f"{SERVICES}?timeoutSeconds=1", until_end=True)] = ("ResponseStarted",)
            quiet = await _watch(a1, QUIET, until_end=False, first=False)
            # Ended by the server stopping: two watches open on g3 (one with a selector).
            opened = await _two_watches_until_stopped(a3, stop3)
            ids.update(dict.fromkeys(opened, both))
            # Requests whose client went away before the answer: the fast path's GET, the app's
            # (a YAML answer) GET and LIST, on both gateways.
            gone_before = len(entered)
            await _cancelled_get(a1, f"{CM}/c0?resourceVersion={FAR}", entered, gone_before + 1)
            await _cancelled_get(b2, f"{CM}/c1?resourceVersion={FAR + 1}", entered, gone_before + 2)
            await _cancelled_get(a2, f"{CM}?resourceVersion={FAR + 2}&resourceVersionMatch=NotOlderThan", entered,
                                 gone_before + 3, headers={"Accept": "application/yaml"})
            await _cancelled_get(b1, f"{CM}/c3?resourceVersion={FAR + 3}", entered, gone_before + 4,
                                 headers={"Accept": "application/yaml"})
            # Creates whose client went away while sending the body (never on the log): the fast
            # path's (JSON) and the app's (YAML).
            bodies = _spy_body_reads(monkeypatch)
            await _cancelled_post(g1.http_url, f"{CM}?fieldManager=gone-fast", "alice-token-AAAA",
                                  "application/json", bodies, 1)
            await _cancelled_post(g2.http_url, f"{CM}?fieldManager=gone-app", "bob-token-BBBB",
                                  "application/yaml", bodies, 2)
            assert bodies == ["gateway._fast", "gateway._app"]

            by_id: dict[str, list[dict[str, Any]]] = {}

            async def trail() -> bool:
                nonlocal by_id
                by_id = _by_id(await events(a1, limit="10000"))
                gone = [e for e in by_id.values() if str(FAR)[:6] in e[0]["requestURI"]]
                posts = [e for e in by_id.values() if "gone-" in e[0]["requestURI"]]
                return all(len(by_id.get(a, ())) >= len(s) for a, s in ids.items()) and len(gone) == 4 \
                    and len(posts) == 2

            await poll_until(trail)  # the audit stream's writer appends off the request path
        assert len(ids) == 4 + 3 + 2 + 2
        for aid, stages in ids.items():
            _check_watch(by_id[aid], stages)
        assert quiet not in by_id
        gone = [recs for recs in by_id.values() if str(FAR)[:6] in recs[0]["requestURI"]]
        assert len(gone) == 4
        for recs in gone:
            assert [e["stage"] for e in recs] == ["ResponseComplete"]
            assert recs[0]["responseStatus"] == CLOSED_EARLY and recs[0]["verb"] in ("get", "list")
            assert recs[0]["user"]["username"] in ("alice", "bob")
        assert {e[0]["verb"] for e in gone} == {"get", "list"}
        posts = [recs for recs in by_id.values() if "gone-" in recs[0]["requestURI"]]
        assert sorted(recs[0]["user"]["username"] for recs in posts) == ["alice", "bob"]
        for recs in posts:
            assert [(e["stage"], e["verb"]) for e in recs] == [("ResponseComplete", "create")]
            assert recs[0]["responseStatus"] == CLOSED_EARLY


async def test_blocking_watches_and_cancelled_requests_send_their_response_complete(
        start_server, nursery, nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking")
    g1, g2 = await start_server(**kw), await start_server(**kw)
    stop3 = trio.Event()
    with trio.fail_after(30):
        g3 = await nursery.start(partial(serve, Settings(data_dir=str(tmp_path / "g3"), port=0, insecure_port=0,
                                                         nats_url=nats_url, graceful_timeout_s=0.5, **kw),
                                         shutdown=stop3))
    entered = _spy_far_waits(monkeypatch)
    alice, bob, alice3 = _client(g1.http_url, "alice"), _client(g2.http_url, "bob"), _client(g3.http_url, "alice")
    ids: list[str] = []
    async with alice, bob, alice3:
        with trio.fail_after(120):
            for i in range(4):
                r = await alice.post(CM, json={"metadata": {"name": f"w{i}", "labels": {"app": "x"}}})
                assert r.status_code == 201, r.text
            ids.append(await _watch(alice, CM, until_end=False))
            ids.append(await _watch(bob, f"{CM}?labelSelector=app%3Dx", until_end=False))
            async with trio.open_nursery() as n:
                async def timed(c: httpx.AsyncClient, url: str) -> None:
                    ids.append(await _watch(c, url, until_end=True))

                n.start_soon(timed, alice, f"{CM}?timeoutSeconds=1")
                n.start_soon(timed, bob, f"{CM}?timeoutSeconds=1&fieldSelector=metadata.name%3Dw1")
            opened = await _two_watches_until_stopped(alice3, stop3)
            ids += opened
            await _cancelled_get(alice, f"{CM}/w0?resourceVersion={FAR}", entered, 1)
            await _cancelled_get(bob, f"{CM}?resourceVersion={FAR + 1}&resourceVersionMatch=NotOlderThan",
                                 entered, 2)
            bodies = _spy_body_reads(monkeypatch)  # a create whose client went away mid-body
            await _cancelled_post(g2.http_url, f"{CM}?fieldManager=gone-app", TOKENS["bob"], "application/json",
                                  bodies, 1)
            await poll_until(lambda: all((a, "ResponseComplete") in {(e["auditID"], e["stage"]) for e in wh.events()}
                                         for a in ids)
                             and sum(1 for e in wh.events() if e["stage"] == "ResponseComplete"
                                     and (str(FAR)[:6] in e["requestURI"] or "gone-" in e["requestURI"])) == 3)
        got = _by_id(wh.events())
        for aid in ids:
            assert [e["stage"] for e in got[aid]] == ["RequestReceived", "ResponseStarted", "ResponseComplete"], \
                got[aid]
            assert all(e["responseStatus"]["code"] == 200 for e in got[aid][1:])
        gone = [recs for recs in got.values() if str(FAR)[:6] in recs[0]["requestURI"] or "gone-" in recs[0]["requestURI"]]
        assert len(gone) == 3 and sorted(recs[0]["verb"] for recs in gone) == ["create", "get", "list"]
        for recs in gone:
            assert [e["stage"] for e in recs] == ["RequestReceived", "ResponseComplete"]
            assert recs[1]["responseStatus"] == CLOSED_EARLY

