"""Hostile and malformed input (issue 7, items 8-11, 14, 18): authentication comes before any
body work, every bound answers a 4xx Status (never a 500), and the server stays responsive."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.lowlevel

from gateway import Running
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
J = {"Content-Type": "application/json"}
Y = {"Content-Type": "application/yaml"}


def expect(r: httpx.Response, code: int, reason: str, text: str = "") -> dict:
    assert r.status_code == code, r.text[:500]
    body = r.json()
    assert body["kind"] == "Status" and body["code"] == code and body["reason"] == reason, body
    assert text in body["message"], body["message"]
    return body


def alias_bomb() -> bytes:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


async def answered_meanwhile(api: httpx.AsyncClient, bad: object) -> httpx.Response:
    """Send ``bad`` (an awaitable request) and, while it runs, a GET that must be answered first
    or soon after: the server stays responsive during a bad request."""
    result: list[httpx.Response] = []
    async with trio.open_nursery() as n:
        async def send_bad() -> None:
            result.append(await bad)  # type: ignore[misc]

        n.start_soon(send_bad)
        await trio.lowlevel.checkpoint()  # let the bad request go out first
        with trio.fail_after(3):
            assert (await api.get("/api/v1/namespaces/default")).status_code == 200
    return result[0]


async def raw_request(server: Running, head: bytes, body: bytes = b"") -> tuple[bytes, bytes]:
    """(status line and headers, body start) for a request written by hand, with its Content-Length
    promising more than ``body`` when the test wants a slow client."""
    assert server.http_url is not None
    u = urlsplit(server.http_url)
    stream = await trio.open_tcp_stream(u.hostname, u.port)
    async with stream:
        await stream.send_all(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, data
            data += chunk
        headers, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(h.split(b":")[1]) for h in headers.lower().split(b"\r\n")
                      if h.startswith(b"content-length:"))
        while len(rest) < length:
            chunk = await stream.receive_some(65536)
            assert chunk, rest
            rest += chunk
        return headers, rest


# --- item 8: authentication before any body work ------------------------------------------


async def test_unauthenticated_bodies_cost_nothing(server: Running, api: httpx.AsyncClient) -> None:
    assert server.http_url is not None
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as anon:
        with trio.fail_after(10):
            bomb = alias_bomb()
            assert len(bomb) < 500
            r = await answered_meanwhile(api, anon.post(CM, content=bomb, headers=Y))
            expect(r, 401, "Unauthorized")
            assert r.headers["Connection"] == "close"
            expect(await anon.post(CM, content=b"[" * 1000, headers=J), 401, "Unauthorized")
            bad = {"Authorization": b"Bearer \xc3\xa9t\xc3\xa9", **J}
            expect(await anon.post(CM, content=b"{}", headers=bad), 401, "Unauthorized")
            expect(await anon.get(CM, headers={"Authorization": b"Bearer \xff\xfe"}), 401, "Unauthorized")
            expect(await anon.get(CM, headers={"Authorization": b"Bearer a.b.\xc3\xa9"}), 401, "Unauthorized")
            expect(await anon.post("/nothing/here", content=b"x", headers=J), 401, "Unauthorized")


async def test_wrong_token_with_a_slow_body_is_answered_at_once(server: Running) -> None:
    head = (b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
    with trio.fail_after(5):
        headers, _ = await raw_request(server, head, b'{"metadata":')
    assert headers.startswith(b"HTTP/1.1 401"), headers
    assert b"\r\nconnection: close" in headers.lower()


async def test_a_body_that_never_ends_times_out(start_server: StartServer) -> None:
    server = await start_server(request_timeout_s=1.0)
    head = (b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + server.admin_token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    with trio.fail_after(5):
        headers, body = await raw_request(server, head, b'{"metadata":')
    assert headers.startswith(b"HTTP/1.1 408"), headers
    assert b"\r\nconnection: close" in headers.lower()
    assert b'"reason":"Timeout"' in body


# --- item 14: Connection: close when the body was not read --------------------------------


async def test_keep_alive_survives_many_early_answers(server: Running) -> None:
    assert server.http_url is not None
    body = b'{"metadata":{"name":"x"},"data":{"k":"' + b"v" * 200_000 + b'"}}'
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=server.http_url, limits=limits, timeout=30,
                                 headers={"Authorization": "Bearer wrong", **J}) as anon:
        with trio.fail_after(60):
            for _ in range(300):
                r = await anon.post(CM, content=body)
                assert r.status_code == 401
                assert r.headers["Connection"] == "close"


# --- item 9: nesting and expansion --------------------------------------------------------


async def test_nesting_is_a_400(api: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        expect(await api.post(CM, content=b'{"metadata":{"name":"d"},"data":' + b"[" * 1000 + b"]" * 1000 + b"}",
                              headers=J), 400, "BadRequest", "exceeded max depth")
        expect(await api.post(CM, content=b"[" * 100_000, headers=J), 400, "BadRequest", "exceeded max depth")
        expect(await api.post(CM, content=b"metadata: {name: d}\ndata: " + b"[" * 500 + b"]" * 500, headers=Y),
               400, "BadRequest")
        assert (await api.post(CM, json={"metadata": {"name": "p"}})).status_code == 201
        deep = b'{"metadata":{"labels":' + b'{"a":' * 500 + b"1" + b"}" * 500 + b"}}"
        for ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            expect(await api.patch(f"{CM}/p", content=deep, headers={"Content-Type": ctype}), 400, "BadRequest")
        ops = b'[{"op":"add","path":"/data","value":' + b"[" * 500 + b"]" * 500 + b"}]"
        expect(await api.patch(f"{CM}/p", content=ops, headers={"Content-Type": "application/json-patch+json"}),
               400, "BadRequest")


async def test_yaml_anchors_cannot_expand_a_body(api: httpx.AsyncClient) -> None:
    big = "x" * (1024 * 1024 - 200)
    body = (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: anchors}}\ndata:\n  a: &s {big}\n"
            "  b: *s\n  c: *s\n  d: *s\n  e: *s\n").encode()
    with trio.fail_after(20):
        expect(await api.post(CM, content=body, headers=Y), 413, "RequestEntityTooLarge")
        assert (await api.get(f"{CM}/anchors")).status_code == 404
        r = await answered_meanwhile(api, api.post(CM, content=alias_bomb(), headers=Y))
        expect(r, 400, "BadRequest", "document contains excessive aliasing")


async def test_json_patch_bounds(api: httpx.AsyncClient) -> None:
    jp = {"Content-Type": "application/json-patch+json"}
    with trio.fail_after(30):
        assert (await api.post(CM, json={"metadata": {"name": "jp"}, "data": {"k": "v" * 1000}})).status_code == 201
        ops = [{"op": "copy", "from": "/data", "path": f"/data/c{i}"} for i in range(21)]
        r = await answered_meanwhile(api, api.patch(f"{CM}/jp", content=json.dumps(ops), headers=jp))
        expect(r, 422, "Invalid", "the accumulated size increase of copy is")
        many = [{"op": "test", "path": "/metadata/name", "value": "jp"}] * 10_001
        expect(await api.patch(f"{CM}/jp", content=json.dumps(many), headers=jp), 413, "RequestEntityTooLarge",
               "The allowed maximum operations in a JSON patch is 10000, got 10001")
        r = await api.patch(f"{CM}/jp", content=json.dumps(many[:10_000]), headers=jp)
        assert r.status_code == 200, r.text


# --- items 10 and 11: query values -----------------------------------------------------------


def token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("query", [
    "resourceVersion=%C2%B2", "resourceVersion=%E2%91%A0", "resourceVersion=%D9%A1",
    "watch=1&resourceVersion=%C2%B2", "watch=1&timeoutSeconds=1" + "0" * 400, "timeoutSeconds=%D9%A1&watch=1",
    "limit=%D9%A1", "limit=1&continue=" + token('{"rv":1e400,"start":""}'),
    "limit=1&continue=" + token('{"rv":-5,"start":""}'),
])
async def test_bad_query_values_are_400(api: httpx.AsyncClient, query: str) -> None:
    with trio.fail_after(10):
        expect(await api.get(f"{CM}?{query}"), 400, "BadRequest")


async def test_bad_resource_version_on_get_is_400(api: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        assert (await api.post(CM, json={"metadata": {"name": "rv"}})).status_code == 201
        for rv in ("%C2%B2", "%E2%91%A0", "%D9%A1"):
            expect(await api.get(f"{CM}/rv?resourceVersion={rv}"), 400, "BadRequest")


# --- item 18: impersonation is checked, never ignored (issue 8: kube's impersonate verb) -------


async def test_impersonation_headers_are_refused(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "plain.csv"
    tokens.write_text("plain-token,plain,plain-uid\n")
    server = await start_server(token_file=str(tokens))
    user = "plain"
    async with httpx.AsyncClient(base_url=server.http_url or "", timeout=30,
                                 headers={"Authorization": "Bearer plain-token"}) as api:
        with trio.fail_after(20):
            body = expect(await api.get(CM, headers={"Impersonate-User": "alice"}), 403, "Forbidden")
            assert body["message"] == (f'users "alice" is forbidden: User "{user}" cannot impersonate resource "users" '
                                       f'in API group "" at the cluster scope')
            assert body["details"] == {"name": "alice", "kind": "users"}
            body = expect(await api.post(CM, json={"metadata": {"name": "as-alice"}},
                                         headers={"Impersonate-User": "alice", "Impersonate-Group": "g"}), 403, "Forbidden")
            async with client_for(server) as admin:
                assert (await admin.get(f"{CM}/as-alice")).status_code == 404
            body = expect(await api.delete(f"{CM}/x", headers={"Impersonate-User": "system:serviceaccount:ns1:sa1"}),
                          403, "Forbidden")
            assert body["message"] == (f'serviceaccounts "sa1" is forbidden: User "{user}" cannot impersonate resource '
                                       f'"serviceaccounts" in API group "" in the namespace "ns1"')
            for headers in ({"Impersonate-Group": "g"}, {"Impersonate-Uid": "u-1"}, {"Impersonate-Extra-Scopes": "s"}):
                expect(await api.get(CM, headers=headers), 400, "BadRequest", "without impersonating a user")
            assert server.http_url is not None
            async with httpx.AsyncClient(base_url=server.http_url) as anon:
                expect(await anon.get(CM, headers={"Impersonate-User": "alice"}), 401, "Unauthorized")
            async with client_for(server) as c:
                assert (await c.get(CM)).status_code == 200


# --- item 16: repeated members under fieldValidation ----------------------------------------


async def test_duplicate_fields_by_field_validation(api: httpx.AsyncClient) -> None:
    def body(name: str) -> bytes:
        return b'{"metadata":{"name":"%s","name":"%s"},"data":{"k":"1","k":"2"}}' % (name.encode(), name.encode())

    with trio.fail_after(20):
        r = await api.post(f"{CM}?fieldValidation=Strict", content=body("strict"), headers=J)
        expect(r, 400, "BadRequest", 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding '
                                     'error: duplicate field "metadata.name", duplicate field "data.k"')
        assert (await api.get(f"{CM}/strict")).status_code == 404
        for query in ("?fieldValidation=Warn", ""):
            name = f"warn{len(query)}"
            r = await api.post(f"{CM}{query}", content=body(name), headers=J)
            assert r.status_code == 201, r.text
            assert r.headers.get_list("Warning") == ['299 - "duplicate field \\"metadata.name\\""',
                                                     '299 - "duplicate field \\"data.k\\""']
            assert r.json()["data"] == {"k": "2"}
        r = await api.post(f"{CM}?fieldValidation=Ignore", content=body("ignore"), headers=J)
        assert r.status_code == 201 and "Warning" not in r.headers
        r = await api.put(f"{CM}/ignore?fieldValidation=Strict", content=body("ignore"), headers=J)
        expect(r, 400, "BadRequest", 'strict decoding error: duplicate field "metadata.name"')


async def test_http2_survives_answers_before_the_body(server: Running) -> None:
    """kubectl speaks HTTP/2: a 401 sent before a large body was read must end that stream only."""
    ctx = ssl.create_default_context(cafile=str(server.kubeconfig.parent / "pki" / "ca.crt"))
    ctx.check_hostname = False
    async with httpx.AsyncClient(base_url=server.https_url, http2=True, verify=ctx, timeout=30) as c:
        with trio.fail_after(30):
            for _ in range(3):
                r = await c.post(CM, content=b" " * 300_000, headers={"Authorization": "Bearer wrong", **J})
                assert r.http_version == "HTTP/2" and r.status_code == 401
                assert "connection" not in r.headers
            admin = {"Authorization": f"Bearer {server.admin_token}"}
            r = await c.post(CM, json={"metadata": {"name": "h2"}}, headers=admin)
            assert r.status_code == 201, r.text
