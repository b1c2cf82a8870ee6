"""Audit under a policy file: accepted writes (from the log), denials and reads (the audit stream),
the query API and CLI, a gateway killed between append and answer, and no secret anywhere."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
import trio

from bus import open_bridge
from gateway._cli import _parser
from gateway._commands import run as run_command
from gateway._pki import write_kubeconfig
from tests.conftest import poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
EVENTS = "/apis/audit.jetkube.io/v1/events"
SECRET_VALUE = "hunter2-Sup3rSecret-value"
POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
- level: Metadata
  verbs: ["get", "list", "watch"]
- level: Request
"""


def files(tmp_path: Path) -> tuple[Path, Path]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('alice-token-AAAA,alice,uid-alice,"system:masters"\nbob-token-BBBB,bob,uid-bob,"system:masters"\n'
                      "carol-token-CCCC,carol,uid-carol\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return tokens, policy


def client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def events(c: httpx.AsyncClient, **params: str) -> list[dict]:
    r = await c.get(EVENTS, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines() if line]


async def test_audit_of_writes_denials_and_reads_under_a_policy(start_server, tmp_path: Path) -> None:
    tokens, policy_file = files(tmp_path)
    from gateway._settings import load_audit_policy

    policy = load_audit_policy(str(policy_file))
    g1 = await start_server(token_file=str(tokens), audit_policy=policy)
    g2 = await start_server(token_file=str(tokens), audit_policy=policy)
    assert g1.http_url and g2.http_url
    alice, bob, carol = client(g1.http_url, "alice-token-AAAA"), client(g2.http_url, "bob-token-BBBB"), \
        client(g2.http_url, "carol-token-CCCC")
    nobody = client(g1.http_url, "wrong-token-ZZZZ")
    async with alice, bob, carol, nobody:
        with trio.fail_after(60):
            r = await alice.post(CM, json={"metadata": {"name": "a1"}, "data": {"k": "v"}})
            assert r.status_code == 201
            create_id = r.headers["Audit-Id"]
            r = await bob.patch(f"{CM}/a1", content=b'{"data":{"k":"w"}}',
                                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200
            secret = {"metadata": {"name": "s1"}, "stringData": {"password": SECRET_VALUE}}
            r = await alice.post(SECRETS, json=secret)
            assert r.status_code == 201, r.text
            r = await bob.get(f"{SECRETS}/s1")
            assert r.status_code == 200 and r.json()["data"]["password"]
            read_id = r.headers["Audit-Id"]
            r = await carol.post(CM, json={"metadata": {"name": "nope"}, "data": {"k": SECRET_VALUE}})
            assert r.status_code == 403
            denied_id = r.headers["Audit-Id"]
            r = await nobody.get(CM)
            assert r.status_code == 401
            unauth_id = r.headers["Audit-Id"]
            r = await alice.get("/healthz")  # None under the policy

            # Denials and reads are written off the request path: wait for them to be there.
            async def recorded() -> bool:
                ids = {e["auditID"] for e in await events(alice)}
                return {read_id, denied_id, unauth_id} <= ids

            await poll_until(recorded)
            got = await events(bob)  # from the other gateway: the trail is shared
            by_id: dict[str, list[dict]] = {}
            for e in got:
                by_id.setdefault(e["auditID"], []).append(e)
            times = [e["stageTimestamp"] for e in got]
            assert times == sorted(times)  # merged by time
            (create,) = by_id[create_id]
            assert create["kind"] == "Event" and create["apiVersion"] == "audit.k8s.io/v1"
            assert create["level"] == "RequestResponse" and create["verb"] == "create"
            assert create["user"]["username"] == "alice" and create["responseStatus"]["code"] == 201
            assert create["objectRef"]["name"] == "a1" and create["responseObject"]["data"] == {"k": "v"}
            patches = [e for e in got if e["verb"] == "patch"]
            assert patches and patches[0]["user"]["username"] == "bob"
            secret_writes = [e for e in got if e.get("objectRef", {}).get("resource") == "secrets"]
            assert {e["verb"] for e in secret_writes} == {"create", "get"}
            assert all(e["level"] == "Metadata" for e in secret_writes)  # capped whatever the policy says
            (read,) = by_id[read_id]
            assert read["level"] == "Metadata" and read["responseStatus"]["code"] == 200
            (denied,) = by_id[denied_id]
            assert denied["user"]["username"] == "carol" and denied["responseStatus"]["code"] == 403
            assert denied["annotations"]["authorization.k8s.io/decision"] == "forbid"
            assert "requestObject" not in denied
            (unauth,) = by_id[unauth_id]
            assert unauth["responseStatus"]["code"] == 401 and unauth["user"]["username"] == ""
            assert not [e for e in got if e.get("requestURI", "").startswith("/healthz")]

            # Filters.
            assert {e["user"]["username"] for e in await events(alice, user="bob")} == {"bob"}
            assert {e["verb"] for e in await events(alice, verb="patch")} == {"patch"}
            assert {e["objectRef"]["resource"] for e in await events(alice, resource="secrets")} == {"secrets"}
            assert await events(alice, since="2999-01-01T00:00:00Z") == []
            assert len(await events(alice, limit="2")) == 2
            # Not everyone may read the trail.
            r = await carol.get(EVENTS)
            assert r.status_code == 403

            # The CLI, through a kubeconfig for alice.
            kc = tmp_path / "alice.kubeconfig"
            write_kubeconfig(kc, server=g1.https_url, ca_cert=Path(g1.kubeconfig).parent / "pki" / "ca.crt",
                             token="alice-token-AAAA")
            out = io.StringIO()
            args = _parser().parse_args(["audit", "--kubeconfig", str(kc), "--user", "carol", "-o", "jsonl"])
            assert await trio.to_thread.run_sync(run_command, args, out) == 0
            lines = [json.loads(x) for x in out.getvalue().splitlines()]
            assert lines and all(e["user"]["username"] == "carol" for e in lines)
            out = io.StringIO()
            args = _parser().parse_args(["audit", "--kubeconfig", str(kc), "--resource", "configmaps"])
            assert await trio.to_thread.run_sync(run_command, args, out) == 0
            assert "alice" in out.getvalue() and "AUDIT-ID" in out.getvalue()
            out = io.StringIO()
            args = _parser().parse_args(["history", "cm/a1", "-n", "default", "--kubeconfig", str(kc), "--diff"])
            assert await trio.to_thread.run_sync(run_command, args, out) == 0
            assert "-  k: v" in out.getvalue() and "+  k: w" in out.getvalue()
            out = io.StringIO()
            args = _parser().parse_args(["history", "configmap", "a1", "--kubeconfig", str(kc), "-o", "json"])
            assert await trio.to_thread.run_sync(run_command, args, out) == 0
            assert [i["user"]["username"] for i in json.loads(out.getvalue())["items"]] == ["alice", "bob"]

            # No secret value and no token anywhere: the whole audit stream, raw, and the derived trail.
            async with open_bridge(g1.nats_url) as bridge:
                raw = b""
                seq = 1
                while True:
                    reply = await bridge.request("$JS.API.DIRECT.GET.JETKUBE_AUDIT",
                                                 json.dumps({"seq": seq}).encode(), timeout_s=5)
                    if reply.status is not None:
                        break
                    raw += reply.data + b"\n"
                    seq = int((reply.headers or {})["Nats-Sequence"]) + 1
            assert raw.count(b'"auditID"') >= 3
            trail = (await alice.get(EVENTS)).content
            encoded = base64.b64encode(SECRET_VALUE.encode())
            for blob in (raw, trail):
                for needle in (SECRET_VALUE.encode(), encoded, b"AAAA", b"BBBB", b"CCCC", b"ZZZZ",
                               g1.admin_token.encode()):
                    assert needle not in blob, needle

            # Dropped records are counted in /metrics (none here).
            r = await alice.get("/metrics")
            assert 'jetkube_audit_events_dropped_total{kind="read"} 0.0' in r.text


async def test_a_write_is_audited_even_if_the_gateway_dies_before_answering(start_server, tmp_path: Path,
                                                                            nats_url: str) -> None:
    """kill -9 a gateway process after JetStream acknowledged a write's append and before the
    gateway answered it: the write is in the audit trail (read through another gateway)."""
    survivor = await start_server()
    data_dir = tmp_path / "victim"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.integration.audit_crash_support", "serve", "--data-dir", str(data_dir),
         "--port", "0", "--insecure-port", "0", "--nats-url", nats_url], stdout=-1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with trio.fail_after(60):
            buf = b""
            assert proc.stdout is not None
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some()
                assert chunk, "the gateway exited before it was ready"
                buf += chunk
            url = buf.decode().split("http=")[1].split()[0]
            token = (data_dir / "pki" / "tokens.csv").read_text().split(",")[0]
            outcome: list[object] = []
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                         timeout=30) as c, client(survivor.http_url or "", survivor.admin_token) as s:

                async def write() -> None:
                    try:
                        outcome.append(await c.post(CM, json={"metadata": {"name": "crashme"}}))
                    except httpx.HTTPError as e:
                        outcome.append(e)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(write)
                    # The append is acknowledged once another gateway sees the object.
                    await poll_until(lambda: _status(s, f"{CM}/crashme", 200))
                    proc.send_signal(signal.SIGKILL)
                assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError), outcome  # never answered
                found = [e for e in await events(s, verb="create", resource="configmaps")
                         if e["objectRef"]["name"] == "crashme"]
                assert len(found) == 1 and found[0]["responseStatus"]["code"] == 201
    finally:
        proc.kill()
        await proc.wait()


async def _status(c: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await c.get(path)).status_code == code
