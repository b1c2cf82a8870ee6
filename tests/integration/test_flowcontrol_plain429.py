"""Flow control's 429 as kube-apiserver writes it, from every path that answers one: the app (Quart's
handler and the fast path), the reject gate, and the gate's replay of the same request on a rejected
connection (gateway/_hypercorn_ext.py). kube's priority-and-fairness filter rejects with
``tooManyRequests``: ``Retry-After``, then Go's ``http.Error`` (``text/plain; charset=utf-8``,
``X-Content-Type-Options: nosniff``, ``Too many requests, please try again later.`` and a newline),
whatever the client accepts. client-go cannot decode that as a Status, so a kubectl user sees
client-go's generic 429 (``newUnstructuredResponseError``), and the Python client the text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from actors import FlowControl
from gateway._gate import Gate
from gateway._hypercorn_ext import PACE_REPLAY
from tests.conftest import StartServer, client_for, poll_until, reject_level_for

pytestmark = pytest.mark.integration
CM = "/api/v1/namespaces/default/configmaps"
BODY = b"Too many requests, please try again later.\n"
TEXT = "text/plain; charset=utf-8"
KUBECTL_429 = ("Error from server (TooManyRequests): the server has received too many requests and has asked us "
               "to try again later (get configmaps)")


def _gauge(metrics: str, name: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines()
               if ln.startswith(name + "{") and 'priority_level="tiny"' in ln)


def _kubes(r: httpx.Response, head: bool = False) -> None:
    """kube's APF rejection: 429, its plain text, Retry-After, nosniff, the PF UIDs, an Audit-Id (and, from
    its WithCacheControl filter outside flow control's, ``Cache-Control: no-cache, private``)."""
    assert r.status_code == 429, (r.status_code, r.text)
    assert r.headers["Content-Type"] == TEXT and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Retry-After"] == "1" and r.headers.get_list("Cache-Control") == ["no-cache, private"]
    assert r.content == (b"" if head else BODY)
    # Go's server: http.Error's 43 bytes buffered, the handler done, so a Content-Length even for a HEAD,
    # whose body it then eats (net/http server.go chunkWriter.writeHeader: ``!isHEAD || len(p) > 0``).
    assert r.headers["Content-Length"] == str(len(BODY))
    assert r.headers["X-Kubernetes-PF-FlowSchema-UID"] and r.headers["X-Kubernetes-PF-PriorityLevel-UID"]
    assert r.headers["Audit-Id"]
    assert "kind" not in r.text  # not a Status


def _shape(r: httpx.Response) -> tuple[Any, ...]:
    """The answer's bytes but its Date and Audit-Id: its header lines in order, and its body."""
    return tuple((k.lower(), v) for k, v in r.headers.raw if k.lower() not in (b"date", b"audit-id")), r.content


async def test_apf_rejections_are_kubes_plain_text(start_server: StartServer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate steps aside until ``gate_on``: the first rejections are the app's.
    real_rejecting = FlowControl.rejecting
    gate_on = [False]
    monkeypatch.setattr(FlowControl, "rejecting", lambda self: gate_on[0] and real_rejecting(self))
    answered: dict[str, str] = {}  # Audit-Id -> "gate" or "replay"
    real_reject = Gate._reject

    async def spied(self: Gate, scope: Any, send: Any, *args: Any) -> None:
        path = "replay" if PACE_REPLAY in scope else "gate"  # (a replay's scope is a copy holding it)

        async def spy(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered[dict(message["headers"])[b"audit-id"].decode()] = path
            await send(message)

        await real_reject(self, scope, spy, *args)

    monkeypatch.setattr(Gate, "_reject", spied)
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("alice-token,alice,u-alice\n")
    gw = await start_server(token_file=str(tokens), request_timeout_s=120.0)
    assert gw.http_url is not None
    url = urlsplit(gw.http_url)
    blockers: list[trio.SocketStream] = []
    with trio.fail_after(120):
        async with client_for(gw) as admin:
            # alice's requests for resources go to a level of a few seats that rejects and never borrows.
            level_uid, schema_uid = await reject_level_for(
                admin, "alice", {"nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0})
            r = await admin.post(CM, json={"metadata": {"name": "cm-1"}})
            assert r.status_code == 201, r.text

            # Every seat of the level held: creates by alice whose bodies never come (flow control
            # admits a request before its body is read; each holds its seat until the body timeout).
            try:
                for n in range(1, 11):
                    s = await trio.open_tcp_stream(url.hostname, url.port)
                    blockers.append(s)
                    await s.send_all(b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer alice-token\r\n"
                                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                                     % (CM.encode(), url.netloc.encode()))

                    async def held(n: int = n) -> bool:
                        m = (await admin.get("/metrics")).text
                        return _gauge(m, "apiserver_flowcontrol_current_executing_seats") == n

                    await poll_until(held)
                    m = (await admin.get("/metrics")).text
                    if n >= _gauge(m, "apiserver_flowcontrol_current_limit_seats"):
                        break
                else:
                    raise AssertionError("the level's seats were never all held")

                alice_headers = {"Authorization": "Bearer alice-token"}
                async with httpx.AsyncClient(base_url=gw.http_url, headers=alice_headers, timeout=30,
                                             limits=httpx.Limits(max_connections=1)) as alice:
                    # (1) The app's answers (Quart's handler, the fast path), whatever is asked or accepted.
                    by_app: list[httpx.Response] = []
                    for _ in range(3):
                        by_app.append(await alice.get(CM))
                    asked = [await alice.get(f"{CM}/cm-1"), await alice.get(CM, params={"limit": "5"}),
                             await alice.get(CM, params={"watch": "1"}),
                             await alice.get(CM, headers={"Accept": "application/yaml"}),
                             await alice.get(CM, headers={"Accept": "application/vnd.kubernetes.protobuf"}),
                             await alice.post(CM, json={"metadata": {"name": "new"}}),
                             await alice.post(CM, content=b"metadata:\n  name: new\n",
                                              headers={"Content-Type": "application/yaml"})]
                    for r in by_app + asked:
                        _kubes(r)
                        assert r.headers["X-Kubernetes-PF-FlowSchema-UID"] == schema_uid
                        assert r.headers["X-Kubernetes-PF-PriorityLevel-UID"] == level_uid
                        assert r.headers["Content-Length"] == str(len(BODY))
                    _kubes(await alice.head(CM), head=True)
                    assert not answered  # none of them was the gate's

                    # (2) The gate's and its replays': the same request again on three connections.
                    gate_on[0] = True
                    out: list[httpx.Response] = []
                    heads: list[httpx.Response] = []

                    async def again(i: int) -> None:
                        async with httpx.AsyncClient(base_url=gw.http_url, headers=alice_headers, timeout=30,
                                                     limits=httpx.Limits(max_connections=1)) as c:
                            for _ in range(4):
                                if i == 3:
                                    heads.append(await c.head(CM))
                                else:
                                    out.append(await c.get(CM))

                    async with trio.open_nursery() as nursery:
                        for i in range(4):
                            nursery.start_soon(again, i)
                    for r in out:
                        _kubes(r)
                    for r in heads:  # a HEAD's: the same head, no body
                        _kubes(r, head=True)
                    assert {answered.get(r.headers["Audit-Id"]) for r in heads} == {"gate", "replay"}
                    by_gate = [r for r in out if answered.get(r.headers["Audit-Id"]) == "gate"]
                    by_replay = [r for r in out if answered.get(r.headers["Audit-Id"]) == "replay"]
                    assert by_gate and len(by_replay) >= 3, (len(by_gate), len(by_replay), len(out))
                    # Byte for byte the same answer (but its Date and Audit-Id) from the gate and its
                    # replays; the app's has the same header lines, in Quart's order.
                    assert {_shape(r) for r in by_gate + by_replay} == {_shape(by_gate[0])}
                    assert {(tuple(sorted(_shape(r)[0])), r.content) for r in by_app} == {
                        (tuple(sorted(_shape(by_gate[0])[0])), BODY)}

                # (3) The official Python client: an ApiException of the 429, its text as the body.
                cfg = k8s.Configuration()
                cfg.host = gw.http_url
                cfg.api_key = {"authorization": "alice-token"}
                cfg.api_key_prefix = {"authorization": "Bearer"}
                core = k8s.CoreV1Api(k8s.ApiClient(cfg))
                calls = [lambda: core.list_namespaced_config_map("default"),
                         lambda: core.read_namespaced_config_map("cm-1", "default"),
                         lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "py"}})]
                for call in calls:
                    with pytest.raises(ApiException) as e:
                        await trio.to_thread.run_sync(call)
                    assert (e.value.status, e.value.reason) == (429, "Too Many Requests")
                    assert e.value.body == BODY.decode()
                    assert e.value.headers["Content-Type"] == TEXT and e.value.headers["Retry-After"] == "1"

                # (4) kubectl (as alice, over TLS: a kubeconfig of the plain-HTTP port got 401s here): client-go
                # retries a 429 with Retry-After (10 times, 1 s apart here), then reports its generic
                # TooManyRequests, as against kube-apiserver.
                done = await trio.run_process(["kubectl", "--kubeconfig", str(gw.kubeconfig), "--token=alice-token",
                                               "get", "configmaps"],
                                              capture_stdout=True, capture_stderr=True, check=False,
                                              env={**os.environ, "HOME": str(tmp_path)})
                assert done.returncode == 1
                assert done.stderr.decode().strip().splitlines()[-1] == KUBECTL_429, done.stderr.decode()
            finally:
                for s in blockers:
                    await s.aclose()
