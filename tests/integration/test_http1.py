"""HTTP/1.1 responses carry their reason phrase, for raw clients and the official Python client
(issue 7, item 13)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import kubernetes
import pytest
import trio

from gateway import Running

pytestmark = pytest.mark.integration


async def status_line(server: Running, request: bytes) -> bytes:
    assert server.http_url is not None
    u = urlsplit(server.http_url)
    async with await trio.open_tcp_stream(u.hostname, u.port) as stream:
        await stream.send_all(request)
        data = b""
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            assert chunk, data
            data += chunk
    return data.split(b"\r\n", 1)[0]


async def test_raw_status_lines(server: Running) -> None:
    auth = b"Authorization: Bearer " + server.admin_token.encode() + b"\r\n"
    body = b'{"metadata":{"name":"twice"}}'
    post = (b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    with trio.fail_after(10):
        assert await status_line(server, post) == b"HTTP/1.1 201 Created"
        assert await status_line(server, post) == b"HTTP/1.1 409 Conflict"
        get = b"GET /api/v1/namespaces/default/configmaps/none HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        assert await status_line(server, get) == b"HTTP/1.1 404 Not Found"
        assert await status_line(server, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n") == b"HTTP/1.1 401 Unauthorized"


async def test_python_client_sees_the_reason(server: Running) -> None:
    def scenario() -> Any:
        api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig)))
        body = {"metadata": {"name": "dup"}}
        api.create_namespaced_config_map("default", body)
        try:
            api.create_namespaced_config_map("default", body)
        except kubernetes.client.ApiException as e:
            return e
        raise AssertionError("the second create succeeded")

    with trio.fail_after(30):
        err = await trio.to_thread.run_sync(scenario)
    assert err.status == 409
    assert err.reason == "Conflict"
    assert str(err).startswith("(409)\nReason: Conflict\n")
