"""``--audit-webhook-mode blocking`` and ``blocking-strict`` (gateway/_audit_webhook.py BlockingWebhook):
the TLS webhook of test_audit_webhook receives each request's events before the client gets its
answer, through two gateways and many requests; a failing webhook does not fail requests in
``blocking`` (what it missed arrives later, from the forwarder, once) but fails them in
``blocking-strict`` with kube's 500 and nothing written; a gateway killed between a write's append and
its answer leaves no hole."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway._audit_webhook import AuditForwarder, WebhookOptions
from gateway._gate import Gate
from gateway._server import serve
from gateway._settings import Settings, load_audit_policy
from tests.conftest import client_for, poll_until, reject_level_for
from tests.integration.test_audit_webhook import (
    CM,
    SECRETS,
    TOKENS,
    AuditWebhook,
    start_audit_webhook,
    webhook_kubeconfig,
)

pytestmark = pytest.mark.integration

#: Every stage (RequestReceived too), except for Secrets, whose RequestReceived is omitted.
POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/metrics"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
  omitStages: ["RequestReceived"]
- level: Metadata
  verbs: ["get", "list", "watch"]
- level: RequestResponse
"""
OURS = {"alice", "bob", "carol", "dave"}
DAVE = "dave-token-DDDD"  # no rights; flow control rejects his requests in the test of 429s


def _setup(tmp: Path, wh: AuditWebhook, mode: str) -> dict[str, Any]:
    tokens = tmp / "tokens.csv"
    tokens.write_text(f'{TOKENS["alice"]},alice,uid-alice,"system:masters"\n'
                      f'{TOKENS["bob"]},bob,uid-bob,"system:masters"\n{TOKENS["carol"]},carol,uid-carol\n'
                      f'{DAVE},dave,uid-dave\n')
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    opts = WebhookOptions(config_file=str(webhook_kubeconfig(tmp, wh)), mode=mode, batch_max_size=50,
                          batch_max_wait_s=0.1, initial_backoff_s=0.02, throttle_qps=0,
                          blocking_timeout_s=2.0, mark_grace_s=2.0)
    return {"token_file": str(tokens), "audit_policy": load_audit_policy(str(policy)), "audit_webhook": opts}


def _client(url: str | None, who: str) -> httpx.AsyncClient:
    assert url
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {({**TOKENS, 'dave': DAVE}).get(who, 'wrong-ZZZZ')}"},
                             timeout=60)


def _stages(wh: AuditWebhook) -> dict[tuple[str, str], int]:
    """(auditID, stage) -> how many times the webhook accepted it."""
    out: dict[tuple[str, str], int] = {}
    for e in wh.events():
        k = (e["auditID"], e["stage"])
        out[k] = out.get(k, 0) + 1
    return out


def _ours(wh: AuditWebhook) -> dict[tuple[str, str], int]:
    return {k: n for k, n in _stages(wh).items()
            if any(e["auditID"] == k[0] and (e.get("user", {}).get("username") in OURS) for e in wh.events())}


async def test_blocking_answers_only_once_the_webhook_has_the_events(start_server, nursery, tmp_path: Path) -> None:
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking")
    g1, g2 = await start_server(**kw), await start_server(**kw)
    clients = {"alice": _client(g1.http_url, "alice"), "bob": _client(g2.http_url, "bob"),
               "carol": _client(g2.http_url, "carol"), "nobody": _client(g1.http_url, "nobody")}
    #: (auditID, stage) each answered request must have had accepted before its answer.
    expected: set[tuple[str, str]] = set()
    checked = 0

    async def do(who: str, method: str, url: str, code: int, *, received: bool = True, **kw: Any) -> str:
        nonlocal checked
        r = await clients[who].request(method, url, **kw)
        assert r.status_code == code, r.text
        aid = r.headers["Audit-Id"]
        have = _stages(wh)  # as the answer arrived: no waiting
        want = {(aid, "ResponseComplete")} | ({(aid, "RequestReceived")} if received else set())
        assert all(have.get(k) == 1 for k in want), (method, url, code, want, have.get((aid, "RequestReceived")))
        expected.update(want)
        checked += 1
        return aid

    async def worker(i: int) -> None:
        who = "alice" if i % 2 else "bob"  # both gateways
        for j in range(6):
            name = f"b-{i}-{j}"
            await do(who, "POST", CM, 201, json={"metadata": {"name": name}, "data": {"k": str(j)}})
            await do(who, "GET", f"{CM}/{name}", 200)
            if j % 2:
                await do(who, "PATCH", f"{CM}/{name}", 200, content=b'{"data":{"k":"p"}}',
                         headers={"Content-Type": "application/merge-patch+json"})
            if j % 3 == 0:
                await do(who, "DELETE", f"{CM}/{name}", 200)
        await do(who, "GET", CM, 200)
        await do(who, "POST", SECRETS, 201, received=False,
                 json={"metadata": {"name": f"s-{i}"}, "stringData": {"password": "pw-XYZ"}})
        await do("carol", "POST", CM, 403, json={"metadata": {"name": f"no-{i}"}})
        await do("carol", "GET", SECRETS, 403, received=False)
        r = await clients["nobody"].get(CM)  # 401: no user to route by: its ResponseComplete only
        assert r.status_code == 401 and _stages(wh).get((r.headers["Audit-Id"], "ResponseComplete")) == 1

    try:
        with trio.fail_after(120):
            async with trio.open_nursery() as n:
                for i in range(8):
                    n.start_soon(worker, i)
            assert checked >= 8 * 14
            # A watch: its ResponseStarted before the stream's headers.
            async with clients["alice"].stream("GET", f"{CM}?watch=1&resourceVersion=0") as r:
                assert r.status_code == 200
                aid = r.headers["Audit-Id"]
                have = _stages(wh)
                assert have.get((aid, "RequestReceived")) == 1 and have.get((aid, "ResponseStarted")) == 1
                expected.update({(aid, "RequestReceived"), (aid, "ResponseStarted")})
            # Sentinels the forwarder alone sends (the webhook refuses them on the request path): once
            # they arrived, the forwarder has passed every earlier event of both streams.
            await _forwarder_passed(wh, clients)
        # Exactly once each: what the request paths sent, the forwarder skipped.
        ours = _ours(wh)
        assert expected <= set(ours)
        assert {k: n for k, n in ours.items() if n != 1} == {}
        assert all(e["level"] == "Metadata" for e in wh.events() if e.get("objectRef", {}).get("resource") == "secrets")
        assert b"pw-XYZ" not in b"".join(wh.bodies)
        rr = [e for e in wh.events() if e["stage"] == "RequestReceived"]
        assert rr and all("responseStatus" not in e and e["stageTimestamp"] == e["requestReceivedTimestamp"]
                          for e in rr)
    finally:
        for c in clients.values():
            await c.aclose()


async def test_blocking_requests_answered_before_routing_send_both_stages(start_server, nursery, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """kube's audit filter runs right after authentication: whatever answers an authenticated request
    later (an unknown tenant's 404, a ``/clusters/*/`` refusal, the history and audit APIs, a route
    refused, flow control's 429, authorization's 403) its RequestReceived was taken first and its
    ResponseComplete before the answer; each (auditID, stage) exactly once, none from the forwarder
    again. The reject gate steps aside in blocking modes (kube sends RequestReceived before APF)."""
    gate_answers: list[int] = []
    real_reject = Gate._reject

    async def counted(self: Gate, *args: Any) -> None:
        gate_answers.append(1)
        await real_reject(self, *args)

    monkeypatch.setattr(Gate, "_reject", counted)
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking")
    g1, g2 = await start_server(**kw), await start_server(**kw)
    clients = {"alice": _client(g1.http_url, "alice"), "bob": _client(g2.http_url, "bob"),
               "carol": _client(g2.http_url, "carol"), "dave": _client(g1.http_url, "dave")}
    expected: set[tuple[str, str]] = set()
    codes: dict[str, int] = {}

    async def do(who: str, method: str, url: str, want: set[int], **kw: Any) -> None:
        r = await clients[who].request(method, url, **kw)
        assert r.status_code in want, (method, url, r.status_code, r.text)
        aid = r.headers["Audit-Id"]
        have = _stages(wh)  # as the answer arrived
        stages = {(aid, "RequestReceived"), (aid, "ResponseComplete")}
        assert all(have.get(k) == 1 for k in stages), (method, url, r.status_code, {k: have.get(k) for k in stages})
        expected.update(stages)
        key = f"{method} {url.split('?')[0]} {r.status_code}"
        codes[key] = codes.get(key, 0) + 1

    hist = "/apis/history.jetkube.io/v1/namespaces/default/configmaps"
    try:
        with trio.fail_after(150):
            async with trio.open_nursery() as n:
                for i in range(4):
                    n.start_soon(partial(_answered, clients[("alice", "bob")[i % 2]], "POST", CM,
                                         json={"metadata": {"name": f"h-{i}"}}))

            async def worker(i: int) -> None:
                a = ("alice", "bob")[i % 2]  # both gateways
                await do(a, "GET", f"/clusters/nope-{i}{CM}", {404})  # an unknown tenant
                await do(a, "POST", f"/clusters/nope-{i}{CM}", {404}, json={"metadata": {"name": "x"}})
                await do("carol", "GET", f"/clusters/*{CM.replace('/namespaces/default', '')}", {403})
                await do(a, "POST", f"/clusters/*{CM}", {405}, json={"metadata": {"name": "x"}})
                await do(a, "GET", f"/clusters/*{CM.replace('/namespaces/default', '')}", {200})
                await do(a, "GET", f"{hist}/h-{i % 4}", {200})  # the history API
                await do("carol", "GET", f"{hist}/h-{i % 4}", {403})
                await do(a, "GET", "/apis/history.jetkube.io/v1/namespaces/default/nothings/x", {404})
                await do(a, "GET", "/apis/audit.jetkube.io/v1/events?limit=5", {200})  # the audit API
                await do("carol", "GET", "/apis/audit.jetkube.io/v1/events", {403})
                await do(a, "PUT", "/api/v1/configmaps", {405}, json={})  # routes refused before the stages
                await do(a, "GET", f"{CM}/h-0/nothing", {404})
                await do(a, "GET", "/apis/nothing.example.com/v1/things", {404})
                await do(a, "GET", "/debug/api_priority_and_fairness/dump_priority_levels", {200})
                # Impersonation refused (kube checks it after its audit filter): audited as carol's.
                await do("carol", "GET", CM, {403}, headers={"Impersonate-User": "alice"})
                await do("carol", "POST", CM, {403}, headers={"Impersonate-User": "bob"},
                         json={"metadata": {"name": "imp"}})

            async with trio.open_nursery() as n:
                for i in range(8):
                    n.start_soon(worker, i)
            assert sum(codes.values()) == 8 * 16

            # Flow control's 429s: dave's requests go to a level of no seats that rejects.
            async with client_for(g1) as admin:
                await reject_level_for(admin, "dave", {"nominalConcurrencyShares": 0})
            rejected = 0
            for _ in range(4):
                before = codes.get(f"GET {CM} 429", 0)
                async with trio.open_nursery() as n:
                    for i in range(16):
                        n.start_soon(partial(do, "dave", "GET", f"{CM}?limit={i + 1}", {403, 429}))
                rejected += codes.get(f"GET {CM} 429", 0) - before
            assert rejected >= 8, codes
            assert gate_answers == []  # every 429 went through the app's audit filter

            # Sentinels the forwarder alone sends: once they arrived, it has passed everything before.
            await _forwarder_passed(wh, clients)
        ours = _ours(wh)
        assert expected <= set(ours)
        assert {k: n for k, n in ours.items() if n != 1} == {}
        impersonating = [e for e in wh.events() if e["requestURI"] == CM and e["user"]["username"] == "carol"]
        assert len(impersonating) == 8 * 2 * 2, len(impersonating)  # both stages, the requester named
        assert all(e.get("responseStatus", {}).get("code", 403) == 403 and e["verb"] in ("list", "create")
                   for e in impersonating)
        print("requests by kind:", sorted(codes.items()))
    finally:
        for c in clients.values():
            await c.aclose()


async def test_blocking_a_forwarder_hand_over_sends_no_write_twice(start_server, nursery, tmp_path: Path,
                                                                    nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forwarding gateway stops after it saved an audit stream position past the marks of writes
    its log position has not reached (it reads the log ``blocking_timeout_s + mark_grace_s`` behind):
    the gateway taking over reads those marks again, so each write's ResponseComplete, sent on its
    request path, is not sent a second time."""
    forwarders: list[AuditForwarder] = []
    real_init = AuditForwarder.__init__

    def spy(self: AuditForwarder, *a: Any, **k: Any) -> None:
        real_init(self, *a, **k)
        forwarders.append(self)

    monkeypatch.setattr(AuditForwarder, "__init__", spy)
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking")
    kw["audit_webhook"] = dataclasses.replace(kw["audit_webhook"], mark_grace_s=10.0, lease_s=3.0)
    stop_a = trio.Event()
    with trio.fail_after(30):
        await nursery.start(partial(serve, Settings(data_dir=str(tmp_path / "a"), port=0, insecure_port=0,
                                                    nats_url=nats_url, graceful_timeout_s=0.5, **kw),
                                    shutdown=stop_a))
    fa = forwarders[0]
    await start_server(**kw)
    fb = forwarders[1]
    try:
        with trio.fail_after(120):
            await poll_until(lambda: fa.stats.leader)
            gb = await start_server(**kw)  # the gateway the requests go through
            fc = forwarders[2]
            async with _client(gb.http_url, "bob") as c:
                ids, seqs = [], []
                for i in range(20):
                    r = await c.post(CM, json={"metadata": {"name": f"ho-{i}"}})
                    assert r.status_code == 201, r.text
                    ids.append(r.headers["Audit-Id"])
                    seqs.append(int(r.json()["metadata"]["resourceVersion"]))
                # The leader read the marks and saved an audit position past them, its log position
                # still before the writes (held back): the hand-over window.
                await poll_until(lambda: all(q in fa._sent for q in seqs))
                top = max(at for at, _ in fa._mark_at)
                await poll_until(lambda: fa.stats.position["audit"] >= top)
                assert fa.stats.position["log"] < min(seqs), (fa.stats.position, min(seqs))
                stop_a.set()  # the leader stops and hands over at once
                await poll_until(lambda: fb.stats.leader or fc.stats.leader)
                wh.up = False
                late = await _answered(c, "POST", CM, json={"metadata": {"name": "ho-late"}})
                wh.up = True
                await poll_until(lambda: (late, "ResponseComplete") in _stages(wh))
        have = _stages(wh)
        assert {i: have.get((i, "ResponseComplete")) for i in ids if have.get((i, "ResponseComplete")) != 1} == {}
        assert have[(late, "ResponseComplete")] == 1
    finally:
        stop_a.set()



async def _forwarder_passed(wh: AuditWebhook, clients: dict[str, httpx.AsyncClient]) -> None:
    """A write and a read while the webhook refuses (so the forwarder alone sends their records),
    then wait until both arrived: the forwarder has passed every earlier event of both streams."""
    wh.up = False
    late_write = await _answered(clients["alice"], "POST", CM, json={"metadata": {"name": "late"}})
    late_read = await _answered(clients["bob"], "GET", f"{CM}/late")
    wh.up = True
    await poll_until(lambda: {(late_write, "ResponseComplete"), (late_read, "ResponseComplete")} <= set(_stages(wh)))

async def _answered(c: httpx.AsyncClient, method: str, url: str, **kw: Any) -> str:
    r = await c.request(method, url, **kw)
    assert r.status_code in (200, 201), r.text
    return r.headers["Audit-Id"]


async def test_blocking_a_failing_webhook_fails_no_request_and_loses_no_write(start_server, nursery,
                                                                               tmp_path: Path) -> None:
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking")
    g1, g2 = await start_server(**kw), await start_server(**kw)
    a, b = _client(g1.http_url, "alice"), _client(g2.http_url, "bob")
    ids: set[str] = set()
    try:
        with trio.fail_after(120):
            wh.up = False

            async def worker(c: httpx.AsyncClient, i: int) -> None:
                for j in range(4):
                    ids.add(await _answered(c, "POST", CM, json={"metadata": {"name": f"f-{i}-{j}"}}))
                    ids.add(await _answered(c, "GET", f"{CM}/f-{i}-{j}"))

            async with trio.open_nursery() as n:
                for i in range(10):
                    n.start_soon(worker, (a, b)[i % 2], i)
            assert len(ids) == 80
            assert not {e["auditID"] for e in wh.events()} & ids  # the webhook took none of them
            wh.up = True
            await poll_until(lambda: {(i, "ResponseComplete") for i in ids} <= set(_stages(wh)))
        ours = _stages(wh)
        assert all(ours[(i, "ResponseComplete")] == 1 for i in ids)  # from the forwarder, once
        assert not [i for i in ids if (i, "RequestReceived") in ours]  # as kube: not sent later
        async with client_for(g1) as admin:
            r = await admin.get("/metrics")
            failures = [float(x.split()[1]) for x in r.text.splitlines()
                        if x.startswith("jetkube_audit_webhook_post_failures_total ")]
            assert failures and failures[0] >= 40
    finally:
        await a.aclose()
        await b.aclose()


async def test_blocking_strict_refuses_requests_the_webhook_did_not_take(start_server, nursery,
                                                                        tmp_path: Path) -> None:
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking-strict")
    g1, g2 = await start_server(**kw), await start_server(**kw)
    plain = await start_server(token_file=kw["token_file"])  # no webhook: sees the state as it is
    a, b, p = _client(g1.http_url, "alice"), _client(g2.http_url, "bob"), _client(plain.http_url, "alice")
    try:
        with trio.fail_after(120):
            wh.up = False
            refused: list[str] = []

            async def refuse(c: httpx.AsyncClient, i: int) -> None:
                r = await c.post(CM, json={"metadata": {"name": f"x-{i}"}})
                assert r.status_code == 500
                assert r.headers["Content-Type"].startswith("text/plain")
                assert r.text == f'Internal Server Error: "{CM}": failed to store audit event'
                refused.append(r.headers["Audit-Id"])
                r = await c.get(f"{CM}/x-{i}?resourceVersion=0")
                assert r.status_code == 500
                assert r.text == f'Internal Server Error: "{CM}/x-{i}?resourceVersion=0": failed to store audit event'
                refused.append(r.headers["Audit-Id"])

            async with trio.open_nursery() as n:
                for i in range(12):
                    n.start_soon(refuse, (a, b)[i % 2], i)
            # kubectl shows kube's answer as kube's server gives it.
            out = await trio.to_thread.run_sync(lambda: _kubectl(g1.kubeconfig, tmp_path, "create", "configmap", "kc"))
            assert out.returncode != 0 and "failed to store audit event" in out.stderr, out.stderr
            print("kubectl, strict, webhook down:", out.stderr.strip())
            # Nothing was written: no object, and no write on the log for the trail or the forwarder.
            r = await p.get(CM)
            assert not [o for o in r.json()["items"] if o["metadata"]["name"].startswith("x-")]
            # A stage the policy omits is not needed: Secrets are served (their ResponseComplete is
            # then not taken either, which fails nothing, as kube).
            r = await a.post(SECRETS, json={"metadata": {"name": "s"}, "stringData": {"k": "v"}})
            assert r.status_code == 201, r.text
            secret_write = r.headers["Audit-Id"]
            wh.up = True
            ok = [await _answered((a, b)[i % 2], "POST", CM, json={"metadata": {"name": f"y-{i}"}}) for i in range(6)]
            have = _stages(wh)
            assert all(have.get((i, s)) == 1 for i in ok for s in ("RequestReceived", "ResponseComplete"))
            out = await trio.to_thread.run_sync(lambda: _kubectl(g2.kubeconfig, tmp_path, "create", "configmap", "kc"))
            assert out.returncode == 0, out.stderr
            await poll_until(lambda: (secret_write, "ResponseComplete") in _stages(wh))  # the forwarder's
        sent = {e["auditID"] for e in wh.events()}
        assert not sent & set(refused)  # a refused request has no event at all
    finally:
        for c in (a, b, p):
            await c.aclose()


async def test_blocking_a_write_whose_gateway_died_before_answering_reaches_the_webhook(
        start_server, nursery, tmp_path: Path, nats_url: str) -> None:
    """kill -9 a blocking-mode gateway after JetStream acknowledged a write's append and before it
    answered (so before it sent the write's event): the forwarder, on the other gateway, sends it."""
    wh = await start_audit_webhook(nursery, tmp_path)
    kw = _setup(tmp_path, wh, "blocking")
    survivor = await start_server(**kw)  # first: it holds the forwarder's lease
    data_dir = tmp_path / "victim"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.integration.audit_crash_support", "serve", "--data-dir", str(data_dir),
         "--port", "0", "--insecure-port", "0", "--nats-url", nats_url, "--audit-webhook-mode", "blocking",
         "--audit-webhook-config-file", kw["audit_webhook"].config_file, "--audit-policy-file",
         str(tmp_path / "policy.yaml"), "--token-file", kw["token_file"]],
        stdout=-1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with trio.fail_after(90):
            buf = b""
            assert proc.stdout is not None
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some()
                assert chunk, "the gateway exited before it was ready"
                buf += chunk
            url = buf.decode().split("http=")[1].split()[0]
            outcome: list[object] = []
            async with _client(url, "alice") as c, _client(survivor.http_url, "bob") as s:
                async def write() -> None:
                    try:
                        outcome.append(await c.post(CM, json={"metadata": {"name": "crashme"}}))
                    except httpx.HTTPError as e:
                        outcome.append(e)

                async with trio.open_nursery() as n:
                    n.start_soon(write)
                    await poll_until(lambda: _exists(s, f"{CM}/crashme"))  # appended and acknowledged
                    proc.send_signal(signal.SIGKILL)
                assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError), outcome
                await poll_until(lambda: _crashme(wh))  # the forwarder's, once the write is old enough
        assert len(_crashme(wh)) == 1
        received = [e for e in wh.events() if e["stage"] == "RequestReceived" and e["verb"] == "create"
                    and e["user"]["username"] == "alice"]
        assert len(received) == 1 and received[0]["auditID"] == _crashme(wh)[0]["auditID"]
    finally:
        proc.kill()
        await proc.wait()


def _kubectl(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], check=False, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "HOME": str(home)})


def _crashme(wh: AuditWebhook) -> list[dict[str, Any]]:
    return [e for e in wh.events() if e["stage"] == "ResponseComplete"
            and e.get("objectRef", {}).get("name") == "crashme" and e["verb"] == "create"]


async def _exists(c: httpx.AsyncClient, path: str) -> bool:
    return (await c.get(path)).status_code == 200

