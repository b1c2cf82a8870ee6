"""The webhook audit backend (--audit-webhook-config-file): a TLS webhook of the test's own receives
the audit events of two gateways as EventLists - every expected audit ID, a backlog after it was
down, no secret - and exactly one gateway forwards."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from gateway._audit_webhook import WebhookOptions, load_webhook_config
from gateway._pki import ensure_pki
from gateway._settings import load_audit_policy
from tests.conftest import poll_until
from tests.integration.test_audit import POLICY, SECRET_VALUE
from tests.integration.webhook_support import request_body, serve_tls

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
WEBHOOK_TOKEN = "webhook-token-WWWW-9f8e7d"
TOKENS = {"alice": "alice-token-AAAA", "bob": "bob-token-BBBB", "carol": "carol-token-CCCC"}
OUR_USERS = {"alice", "bob", "carol", ""}


@dataclass
class AuditWebhook:
    url: str = ""
    ca_pem: bytes = b""
    up: bool = True  # when False, every POST answers 503 (the webhook is down)
    bodies: list[bytes] = field(default_factory=list)  # every accepted EventList, as received
    refused: int = 0
    bad_auth: int = 0

    def events(self) -> list[dict[str, Any]]:
        return [e for b in self.bodies for e in json.loads(b)["items"]]

    def ids(self) -> set[str]:
        return {e["auditID"] for e in self.events()}


async def start_audit_webhook(nursery: trio.Nursery, tmp: Path) -> AuditWebhook:
    pki = ensure_pki(tmp / "audit-webhook-pki")
    wh = AuditWebhook(ca_pem=pki.ca_cert.read_bytes())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        headers = dict(scope["headers"])
        status = 200
        if headers.get(b"authorization") != f"Bearer {WEBHOOK_TOKEN}".encode():
            wh.bad_auth += 1
            status = 401
        elif not wh.up:
            wh.refused += 1
            status = 503
        else:
            assert scope["method"] == "POST" and scope["path"] == "/audit"
            wh.bodies.append(body)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b""})

    wh.url = f"https://127.0.0.1:{await serve_tls(nursery, app, pki)}/audit"
    return wh


def webhook_kubeconfig(tmp: Path, wh: AuditWebhook) -> Path:
    path = tmp / "audit-webhook.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "webhook",
        "clusters": [{"name": "audit", "cluster": {
            "server": wh.url, "certificate-authority-data": base64.b64encode(wh.ca_pem).decode()}}],
        "users": [{"name": "apiserver", "user": {"token": WEBHOOK_TOKEN}}],
        "contexts": [{"name": "webhook", "context": {"cluster": "audit", "user": "apiserver"}}]}))
    return path


def test_kubeconfig_is_read_as_kube_reads_it(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    (tmp_path / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    (tmp_path / "kc").write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://audit.example:8443/x",
                                               "certificate-authority": "ca.pem"}}],
        "users": [{"name": "u", "user": {"client-certificate": str(pki.cert), "client-key": str(pki.key)}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))
    t = load_webhook_config(str(tmp_path / "kc"))
    assert t.url == "https://audit.example:8443/x" and "Authorization" not in t.headers
    (tmp_path / "bad").write_text(yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"server": "ftp://x"}}]}))
    with pytest.raises(ValueError, match="not an http"):
        load_webhook_config(str(tmp_path / "bad"))


async def _metric(c: httpx.AsyncClient, name: str) -> float:
    r = await c.get("/metrics")
    assert r.status_code == 200
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def test_webhook_receives_every_audit_event_of_two_gateways(start_server, nursery, tmp_path: Path) -> None:
    wh = await start_audit_webhook(nursery, tmp_path)
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{TOKENS["alice"]},alice,uid-alice,"system:masters"\n'
                      f'{TOKENS["bob"]},bob,uid-bob,"system:masters"\n{TOKENS["carol"]},carol,uid-carol\n')
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    opts = WebhookOptions(config_file=str(webhook_kubeconfig(tmp_path, wh)), batch_max_size=5, batch_max_wait_s=0.2,
                          initial_backoff_s=0.1, throttle_qps=0)
    kw = {"token_file": str(tokens), "audit_policy": load_audit_policy(str(policy_file)), "audit_webhook": opts}
    g1 = await start_server(**kw)
    g2 = await start_server(**kw)
    assert g1.http_url and g2.http_url

    def client(url: str, who: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKENS.get(who, 'wrong-ZZZZ')}"},
                                 timeout=30)

    alice, bob, carol = client(g1.http_url, "alice"), client(g2.http_url, "bob"), client(g2.http_url, "carol")
    nobody = client(g1.http_url, "nobody")
    expected: set[str] = set()

    async def do(c: httpx.AsyncClient, method: str, url: str, code: int, **kw: Any) -> None:
        r = await c.request(method, url, **kw)
        assert r.status_code == code, r.text
        expected.add(r.headers["Audit-Id"])

    async def traffic(tag: str) -> None:
        for i in range(6):
            c = alice if i % 2 else bob  # writes through both gateways
            await do(c, "POST", CM, 201, json={"metadata": {"name": f"{tag}-{i}"}, "data": {"k": str(i)}})
            await do(c, "GET", f"{CM}/{tag}-{i}", 200)
        await do(bob, "PATCH", f"{CM}/{tag}-1", 200, content=b'{"data":{"k":"w"}}',
                 headers={"Content-Type": "application/merge-patch+json"})
        await do(alice, "DELETE", f"{CM}/{tag}-2", 200)
        await do(alice, "GET", CM, 200)
        await do(alice, "POST", SECRETS, 201,
                 json={"metadata": {"name": f"{tag}-s"}, "stringData": {"password": SECRET_VALUE}})
        await do(bob, "GET", f"{SECRETS}/{tag}-s", 200)
        await do(carol, "POST", CM, 403, json={"metadata": {"name": f"{tag}-no"}, "data": {"k": SECRET_VALUE}})
        await do(carol, "GET", SECRETS, 403)
        await do(nobody, "GET", CM, 401)

    def ours() -> set[str]:
        return {e["auditID"] for e in wh.events() if e["auditID"] in expected
                or e.get("user", {}).get("username") in OUR_USERS
                or e.get("impersonatedUser", {}).get("username") in OUR_USERS}

    async with alice, bob, carol, nobody:
        with trio.fail_after(90):
            await traffic("a")
            await poll_until(lambda: expected <= wh.ids())
            assert ours() == expected  # exactly these: nothing of ours is missing or made up

            # The webhook goes down: requests still answer at once; the backlog arrives when it is back.
            wh.up = False
            before = set(expected)
            with trio.fail_after(20):
                await traffic("b")
            await poll_until(lambda: wh.refused >= 2)
            assert not (expected - before) & wh.ids()
            wh.up = True
            await poll_until(lambda: expected <= wh.ids())
            assert ours() == expected

        # Batches: EventLists of at most batch_max_size events; the webhook authenticated every POST.
        for b in wh.bodies:
            doc = json.loads(b)
            assert doc["kind"] == "EventList" and doc["apiVersion"] == "audit.k8s.io/v1"
            assert 1 <= len(doc["items"]) <= 5
            assert all(e["kind"] == "Event" and e["apiVersion"] == "audit.k8s.io/v1" for e in doc["items"])
        assert wh.bad_auth == 0
        # At least once: a batch sent again is the only duplicate there may be (here, none was lost).
        by_id: dict[tuple[str, str], int] = {}
        for e in wh.events():
            by_id[(e["auditID"], e["stage"])] = by_id.get((e["auditID"], e["stage"]), 0) + 1
        assert max(by_id.values()) == 1
        events = {e["auditID"]: e for e in wh.events()}
        denied = [e for e in events.values() if e["responseStatus"]["code"] == 403]
        assert len(denied) == 4 and {e["user"]["username"] for e in denied} == {"carol"}
        assert {e["responseStatus"]["code"] for e in events.values() if e["auditID"] in expected} == \
            {200, 201, 401, 403}
        assert all(e["level"] == "Metadata" for e in events.values()
                   if e.get("objectRef", {}).get("resource") == "secrets")

        # Never a secret's value or a token in what the webhook got.
        raw = b"".join(wh.bodies)
        for secret in (SECRET_VALUE, base64.b64encode(SECRET_VALUE.encode()).decode(), *TOKENS.values(),
                       g1.admin_token, WEBHOOK_TOKEN):
            assert secret.encode() not in raw

        # Exactly one gateway of the two forwards.
        async with httpx.AsyncClient(base_url=g1.http_url, headers={"Authorization": f"Bearer {g1.admin_token}"}) as a1, \
                httpx.AsyncClient(base_url=g2.http_url, headers={"Authorization": f"Bearer {g2.admin_token}"}) as a2:
            leaders = [await _metric(a, "jetkube_audit_webhook_leader") for a in (a1, a2)]
            assert sorted(leaders) == [0.0, 1.0]
            leader = (a1, a2)[leaders.index(1.0)]
            assert await _metric(leader, "jetkube_audit_webhook_post_failures_total") >= 2
            assert await _metric(leader, "jetkube_audit_webhook_events_sent_total") >= len(expected)


async def test_a_stopped_forwarder_hands_over_and_the_next_resumes(nursery, nats_url: str, tmp_path: Path) -> None:
    """The leader stops with a backlog the webhook has not taken (it is down): the other gateway
    takes the lease and sends the backlog, from the positions the first one wrote."""
    from functools import partial

    from gateway._server import serve as serve_gateway
    from gateway._settings import Settings

    wh = await start_audit_webhook(nursery, tmp_path)
    opts = WebhookOptions(config_file=str(webhook_kubeconfig(tmp_path, wh)), batch_max_size=50,
                          batch_max_wait_s=0.2, initial_backoff_s=0.1, throttle_qps=0, lease_s=3.0)
    stops = [trio.Event(), trio.Event()]
    gws = []
    for i, stop in enumerate(stops):
        s = Settings(data_dir=str(tmp_path / f"g{i}"), port=0, insecure_port=0, nats_url=nats_url,
                     graceful_timeout_s=0.5, audit_webhook=opts)
        with trio.fail_after(30):
            gws.append(await nursery.start(partial(serve_gateway, s, shutdown=stop)))
    ids: set[str] = set()
    clients = [httpx.AsyncClient(base_url=g.http_url, headers={"Authorization": f"Bearer {g.admin_token}"},
                                 timeout=30) for g in gws]
    try:
        with trio.fail_after(60):
            async def writes(tag: str) -> None:
                for i in range(10):
                    r = await clients[i % 2].post(CM, json={"metadata": {"name": f"{tag}-{i}"}})
                    assert r.status_code == 201, r.text
                    ids.add(r.headers["Audit-Id"])

            await writes("x")
            await poll_until(lambda: ids <= wh.ids())
            leaders = [await _metric(c, "jetkube_audit_webhook_leader") for c in clients]
            assert sorted(leaders) == [0.0, 1.0]
            first = leaders.index(1.0)
            wh.up = False
            await writes("y")
            await poll_until(lambda: wh.refused >= 1)
            stops[first].set()  # the leader stops with the backlog unsent
            other = clients[1 - first]
            await poll_until(lambda: _is_leader(other))
            wh.up = True
            await poll_until(lambda: ids <= wh.ids())
            sent = [e["auditID"] for e in wh.events()]
            assert len(sent) - len(set(sent)) <= 10  # at most the batch in flight was sent twice
    finally:
        for c in clients:
            await c.aclose()
        for stop in stops:
            stop.set()


async def _is_leader(c: httpx.AsyncClient) -> bool:
    return await _metric(c, "jetkube_audit_webhook_leader") == 1.0


async def test_a_webhook_nobody_listens_on_never_holds_requests(start_server, tmp_path: Path) -> None:
    from bus import free_port

    wh = AuditWebhook(url=f"https://127.0.0.1:{free_port()}/audit",
                      ca_pem=ensure_pki(tmp_path / "pki").ca_cert.read_bytes())
    opts = WebhookOptions(config_file=str(webhook_kubeconfig(tmp_path, wh)), batch_max_size=10, batch_max_wait_s=0.1,
                          initial_backoff_s=0.05, throttle_qps=0)
    g = await start_server(audit_webhook=opts)
    async with httpx.AsyncClient(base_url=g.http_url, headers={"Authorization": f"Bearer {g.admin_token}"},
                                 timeout=30) as c:
        with trio.fail_after(30):
            for i in range(30):
                r = await c.post(CM, json={"metadata": {"name": f"d-{i}"}})
                assert r.status_code == 201
                assert (await c.get(f"{CM}/d-{i}")).status_code == 200
            await poll_until(lambda: _failures_at_least(c, 3))
            assert await _metric(c, "jetkube_audit_webhook_events_sent_total") == 0
            assert (await c.get("/readyz")).status_code == 200


async def _failures_at_least(c: httpx.AsyncClient, n: int) -> bool:
    return await _metric(c, "jetkube_audit_webhook_post_failures_total") >= n


async def test_jetkube_serve_with_the_flags(nursery, nats_url: str, tmp_path: Path) -> None:
    """The process, configured by its flags (kube's names), forwards a kubectl-style write."""
    from tests.conftest import spawn_serve

    wh = await start_audit_webhook(nursery, tmp_path)
    data_dir = tmp_path / "jk"
    with trio.fail_after(60):
        proc, line = await spawn_serve(
            data_dir, "--nats-url", nats_url, "--audit-webhook-config-file", str(webhook_kubeconfig(tmp_path, wh)),
            "--audit-webhook-batch-max-size", "3", "--audit-webhook-batch-max-wait", "200ms",
            "--audit-webhook-initial-backoff", "100ms")
        try:
            http = dict(f.split("=", 1) for f in line.split() if "=" in f)["http"]
            token = yaml.safe_load((data_dir / "kubeconfig").read_text())["users"][0]["user"]["token"]
            ids = set()
            async with httpx.AsyncClient(base_url=http, headers={"Authorization": f"Bearer {token}"}) as c:
                for i in range(7):
                    r = await c.post(CM, json={"metadata": {"name": f"p-{i}"}})
                    assert r.status_code == 201, r.text
                    ids.add(r.headers["Audit-Id"])
            await poll_until(lambda: ids <= wh.ids())
            assert max(len(json.loads(b)["items"]) for b in wh.bodies) <= 3
        finally:
            proc.terminate()
            await proc.wait()


async def test_kill_9_of_the_forwarder_loses_nothing(nursery, nats_url: str, tmp_path: Path) -> None:
    """The forwarding process is killed (no hand-over) with a backlog the webhook refused: the other
    gateway takes the lease when it lapses (15 s) and delivers the backlog from the written position."""
    from tests.conftest import spawn_serve

    wh = await start_audit_webhook(nursery, tmp_path)
    flags = ("--nats-url", nats_url, "--audit-webhook-config-file", str(webhook_kubeconfig(tmp_path, wh)),
             "--audit-webhook-batch-max-wait", "100ms", "--audit-webhook-initial-backoff", "100ms")
    procs = []
    try:
        with trio.fail_after(90):
            first, _ = await spawn_serve(tmp_path / "a", *flags)
            procs.append(first)
            second, line = await spawn_serve(tmp_path / "b", *flags)
            procs.append(second)
            http = dict(f.split("=", 1) for f in line.split() if "=" in f)["http"]
            token = yaml.safe_load((tmp_path / "b" / "kubeconfig").read_text())["users"][0]["user"]["token"]
            ids: set[str] = set()
            async with httpx.AsyncClient(base_url=http, headers={"Authorization": f"Bearer {token}"}) as c:
                async def writes(tag: str) -> None:
                    for i in range(8):
                        r = await c.post(CM, json={"metadata": {"name": f"{tag}-{i}"}})
                        assert r.status_code == 201, r.text
                        ids.add(r.headers["Audit-Id"])

                await writes("k")
                await poll_until(lambda: ids <= wh.ids())
                assert await _metric(c, "jetkube_audit_webhook_leader") == 0.0  # the first one forwards
                wh.up = False
                await writes("l")
                await poll_until(lambda: wh.refused >= 1)
                first.kill()
                await first.wait()
                wh.up = True
                await poll_until(lambda: ids <= wh.ids())
                assert await _metric(c, "jetkube_audit_webhook_leader") == 1.0
    finally:
        for p in procs:
            p.kill()
            await p.wait()
