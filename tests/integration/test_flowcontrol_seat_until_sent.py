"""A request holds its flow control seats until its answer is sent, as kube's: APF gives the seats
back when the handler returns, and kube's handler writes the answer before it returns. A LIST of
6 MB to a client that does not read holds its level's one seat: the same user's next request is
rejected until the client has read the answer, then served. Both answer paths: the fast path (plain
JSON) and the app (YAML)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration
FC = "/apis/flowcontrol.apiserver.k8s.io/v1"
TOKENS = "alice-token,alice,u-alice\n"
OBJECTS, VALUE_BYTES = 6, 1_000_000  # 6 MB: more than loopback's send buffer (4 MB at most) holds


async def _setup(admin: httpx.AsyncClient) -> None:
    """alice on a level of one seat that rejects rather than queues; allowed to read; 6 large
    ConfigMaps to list."""
    r = await admin.post(f"{FC}/prioritylevelconfigurations", json={
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": "one-seat"}, "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 0, "limitResponse": {"type": "Reject"}}}})
    assert r.status_code == 201, r.text
    r = await admin.post(f"{FC}/flowschemas", json={
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": "alice"},
        "spec": {"priorityLevelConfiguration": {"name": "one-seat"}, "matchingPrecedence": 50,
                 "distinguisherMethod": {"type": "ByUser"},
                 "rules": [{"subjects": [{"kind": "User", "user": {"name": "alice"}}],
                            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                               "namespaces": ["*"], "clusterScope": True}]}]}})
    assert r.status_code == 201, r.text
    r = await admin.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "alice-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})
    assert r.status_code == 201, r.text
    for i in range(OBJECTS):
        r = await admin.post("/api/v1/namespaces/default/configmaps", json={
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}"},
            "data": {"v": "x" * VALUE_BYTES}})
        assert r.status_code == 201, r.text


async def _read_head(sock: trio.socket.SocketType) -> tuple[bytes, int]:
    """The answer's status line and headers; the body's length (Content-Length)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await sock.recv(4096)
        assert chunk, "the server closed the connection before its answer's head"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + b"\r\n\r\n" + rest, length - len(rest)


@pytest.mark.parametrize("accept", ["application/json", "application/yaml"])
async def test_the_seat_is_held_until_the_answer_is_read(start_server: StartServer, tmp_path: Path,
                                                         accept: str) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    gw = await start_server(token_file=str(tokens))
    assert gw.http_url is not None
    host, port = httpx.URL(gw.http_url).host, httpx.URL(gw.http_url).port
    with trio.fail_after(90):
        async with client_for(gw) as admin, httpx.AsyncClient(
                base_url=gw.http_url, headers={"Authorization": "Bearer alice-token"}, timeout=30) as alice:
            await _setup(admin)
            assert (await alice.get("/version")).status_code == 200  # the seat is free
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                # A small receive window: the 6 MB answer cannot be written until this client reads.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                await sock.connect((host, port))
                await sock.send(b"GET /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer alice-token\r\nAccept: " + accept.encode() + b"\r\n\r\n")
                head, left = await _read_head(sock)  # the answer is being sent
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                assert left > 4_000_000
                # Its seat is still held: alice's next request finds no seat on her level.
                r = await alice.get("/version")
                assert r.status_code == 429, r.text
                assert r.headers["Retry-After"]
                while left > 0:  # read it all: the answer is sent, the seat given back
                    chunk = await sock.recv(1 << 20)
                    assert chunk, "the server closed the connection before its answer's end"
                    left -= len(chunk)
            # Given back once the server's send ends (its task, after the last byte left): retried
            # until then, each try a round trip (the fail_after above bounds them).
            while (r := await alice.get("/version")).status_code == 429:
                pass
            assert r.status_code == 200, r.text
