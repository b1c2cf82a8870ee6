"""Bad input a client can send, case by case (issue 7): each answer is the 4xx kube-apiserver gives,
with its Status reason, within a bound, and leaves the store exactly as it was.

Every case runs against a fresh server (a real nats-server, and `jetkube serve` as its own process
with a memory limit: see `bad_input_support`) seeded with a few objects,
so one case that breaks the server cannot hide or cause another's failure. After the request:
the stream's last sequence and a consistent LIST of every kind (items and resourceVersions) are
compared with what they were before, and a ConfigMap is written, read and deleted to show that the
server still serves (and still holds its NATS connection).

The expected codes are kube-apiserver's:
- no token: authentication runs before anything reads the body or the query, so 401 whatever
  else is wrong (and without waiting for a slow body);
- undecodable bodies and query parameters (wrong JSON/YAML types, non-base64 bytes, int64
  overflow, non-ASCII digits in resourceVersion/timeoutSeconds, bad continue tokens, bad
  selectors): 400 BadRequest;
- a decodable object or option that fails validation (ownerReferences without their required
  fields, fieldManager over 128 bytes, a JSON patch whose result cannot be an object): 422 Invalid;
- a JSON patch of more than 10,000 operations: 413 RequestEntityTooLarge;
- a resourceVersion precondition that does not match (one beyond the log head never can): 409;
- impersonating a user: the request is then authorized as that user, never as the caller.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import trio

from bus import Log
from tests.integration.bad_input_support import (
    REQUEST_BOUND_S,
    Server,
    assert_serving,
    assert_unchanged,
    listable_paths,
    open_server_log,
    server_process,
    store_state,
)

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
ROLES = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
JSON = "application/json"
YAML = "application/yaml"
JSON_PATCH = "application/json-patch+json"
BEYOND_HEAD = "999999999"


@dataclass(frozen=True)
class Answer:
    code: int
    body: Any


@dataclass
class Env:
    running: Server
    api: httpx.AsyncClient  # with the admin token
    anon: httpx.AsyncClient  # with no Authorization header
    log: Log
    target: dict[str, Any] = field(default_factory=dict)  # the seeded ConfigMap "target"
    continue_token: str = ""  # a real continue token of a LIST of ConfigMaps with limit=1
    sa_token: str = ""  # a real service-account token (TokenRequest)


Send = Callable[[Env], Awaitable[Answer]]


def _answer(r: httpx.Response) -> Answer:
    try:
        return Answer(r.status_code, r.json())
    except ValueError:
        return Answer(r.status_code, r.text[:500])


def req(method: str, path: str, body: bytes | None = None, ctype: str | None = JSON, *,
        token: bool = True, headers: dict[str, str | bytes] | None = None) -> Send:
    """A request from the table: with the admin token or with none."""
    async def send(env: Env) -> Answer:
        h: dict[str, str | bytes] = dict(headers or {})
        if ctype is not None:
            h["Content-Type"] = ctype
        client = env.api if token else env.anon
        return _answer(await client.request(method, path, content=body, headers=h))
    return send


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def cm_json(name: str, rest: str) -> bytes:
    return (f'{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},{rest}}}').encode()


def alias_bomb(levels: int = 9) -> bytes:
    """The billion-laughs document: each level a list of ten aliases of the one before."""
    lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: lol}', 'x:',
             '  a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    prev = "a"
    for i in range(1, levels):
        name = f"a{i}"
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
        prev = name
    lines.append(f"data: {{k: *{prev}}}")
    return ("\n".join(lines) + "\n").encode()


def anchors_past_3mib() -> bytes:
    """About 1 MiB of YAML whose one anchor, aliased three times, expands to over 4 MiB."""
    blob = "x" * (1024 * 1024 - 512)
    return (f'apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: anchors}}\n'
            f'data:\n  k0: &a "{blob}"\n  k1: *a\n  k2: *a\n  k3: *a\n').encode()


def with_rv(token: str, rv_literal: str) -> str:
    """A real continue token with its resourceVersion replaced by a raw JSON literal (kept as
    text, so 1e400 reaches the server as written)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    doc = json.loads(raw)
    assert "rv" in doc, doc
    marker = '"rv":' + json.dumps(doc["rv"])
    assert marker in raw, raw
    return base64.urlsafe_b64encode(raw.replace(marker, f'"rv":{rv_literal}').encode()).decode().rstrip("=")


def continue_with(rv_literal: str) -> Send:
    async def send(env: Env) -> Answer:
        token = with_rv(env.continue_token, rv_literal)
        return _answer(await env.api.get(f"{CM}?limit=1&continue={token}"))
    return send


def put_beyond_head() -> Send:
    async def send(env: Env) -> Answer:
        obj = dict(env.target)
        obj["metadata"] = dict(obj["metadata"], resourceVersion=BEYOND_HEAD)
        obj["data"] = {"a": "changed"}
        return _answer(await env.api.put(f"{CM}/target", json=obj))
    return send


def delete_beyond_head() -> Send:
    async def send(env: Env) -> Answer:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": BEYOND_HEAD}}
        return _answer(await env.api.request("DELETE", f"{CM}/target", json=body))
    return send


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_exp_abc(signed: bool) -> Send:
    """A service-account JWT whose exp is the string "abc": signed with a made-up key, or with the
    fleet's own key (so the server gets past the signature to the claims)."""
    async def send(env: Env) -> Answer:
        head, body, _ = env.sa_token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["exp"] = "abc"
        if signed:
            token = env.running.signing_key.sign(claims)
        else:
            token = f"{head}.{_b64(json.dumps(claims).encode())}.{_b64(b'not-a-signature')}"
        return _answer(await env.anon.get(CM, headers={"Authorization": f"Bearer {token}"}))
    return send


def slow_body_wrong_token() -> Send:
    """A POST that announces 1 MiB and sends a dozen bytes, with a wrong token: the 401 must come
    without waiting for a body that never arrives. A raw socket, since HTTP clients finish sending
    before they read."""
    async def send(env: Env) -> Answer:
        u = urlsplit(env.running.http_url)
        assert u.hostname in ("127.0.0.1", "localhost", "::1")
        stream = await trio.open_tcp_stream(u.hostname, u.port or 80)
        async with stream:
            await stream.send_all(
                f"POST {CM} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer wrong\r\n"
                f"Content-Type: application/json\r\nContent-Length: {1024 * 1024}\r\n\r\n".encode()
                + b'{"metadata":')
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                assert chunk, f"connection closed without an answer: {buf!r}"
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:")), None)
            while length is not None and len(rest) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                rest += chunk
            try:
                return Answer(status, json.loads(rest))
            except ValueError:
                return Answer(status, rest[:500].decode(errors="replace"))
    return send


def role(name: str) -> bytes:
    return json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
                       "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}).encode()


@dataclass(frozen=True)
class Case:
    send: Send
    code: int
    reason: str
    message: str = ""


def json_patch_ops(n: int) -> bytes:
    """n operations that would each succeed (a test of a value the target holds): only the count
    is wrong."""
    return json.dumps([{"op": "test", "path": "/data/a", "value": "x"}] * n).encode()


def self_copies(n: int) -> bytes:
    """Copy /data into itself n times: each copy doubles it (2^n entries)."""
    return json.dumps([{"op": "copy", "from": "/data", "path": f"/data/c{i}"} for i in range(n)]).encode()


LONG_UNICODE_ROLE = "ü" * 700
LONG_ASCII_ROLE = "r" * 100_000

CASES: dict[str, Case] = {
    # Without a token: 401 before anything looks at the body or query.
    "yaml-alias-bomb-no-token": Case(req("POST", CM, alias_bomb(), YAML, token=False), 401, "Unauthorized"),
    "brackets-1000-no-token": Case(req("POST", CM, b"[" * 1000, JSON, token=False), 401, "Unauthorized"),
    "non-ascii-bearer": Case(req("GET", CM, None, None, token=False,
                                 headers={"Authorization": "Bearer üñí©ødé".encode()}), 401, "Unauthorized"),
    "slow-body-wrong-token": Case(slow_body_wrong_token(), 401, "Unauthorized"),
    "bad-query-no-token": Case(req("GET", CM + "?resourceVersion=%C2%B2&limit=x", token=False), 401,
                               "Unauthorized"),
    "impersonate-no-token": Case(req("GET", CM, None, None, token=False, headers={"Impersonate-User": "alice"}),
                                 401, "Unauthorized"),
    # Deep, huge and self-expanding bodies.
    "json-depth-1000": Case(req("POST", CM, cm_json("deep", '"data":' + nested(1000))), 400, "BadRequest"),
    "yaml-depth-500": Case(req("POST", CM, b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: "
                               + nested(500).encode() + b"\n", YAML), 400, "BadRequest"),
    "yaml-alias-bomb": Case(req("POST", CM, alias_bomb(), YAML), 400, "BadRequest"),
    "json-patch-depth-500": Case(req("PATCH", f"{CM}/target",
                                     b'[{"op":"add","path":"/data/deep","value":' + nested(500).encode() + b"}]",
                                     JSON_PATCH), 400, "BadRequest", "exceeded max depth"),
    "json-patch-10001-ops": Case(req("PATCH", f"{CM}/target", json_patch_ops(10_001), JSON_PATCH), 413,
                                 "RequestEntityTooLarge", "10000"),
    "json-patch-self-copy-21": Case(req("PATCH", f"{CM}/target", self_copies(21), JSON_PATCH), 422, "Invalid"),
    # kube decodes this (3 aliases are within go-yaml's alias ratio), then ConfigMap validation
    # refuses data over 1 MiB. jetkube bounds what a body decodes to at kube's request limit (3 MiB), so anchors cannot expand
    # one past it: 413 before any object is built (kube expands it, then its ConfigMap size check says 422).
    "yaml-1mib-anchors-past-3mib": Case(req("POST", CM, anchors_past_3mib(), YAML), 413, "RequestEntityTooLarge",
                                        "expands to more than"),
    # Numbers that are not ASCII decimal.
    "rv-superscript-two": Case(req("GET", CM + "?resourceVersion=%C2%B2"), 400, "BadRequest"),
    "rv-circled-one": Case(req("GET", CM + "?resourceVersion=%E2%91%A0"), 400, "BadRequest"),
    "rv-arabic-indic-one": Case(req("GET", CM + "?resourceVersion=" + quote("١")), 400, "BadRequest"),
    "get-rv-arabic-indic-one": Case(req("GET", f"{CM}/target?resourceVersion=" + quote("١")), 400, "BadRequest"),
    "continue-rv-1e400": Case(continue_with("1e400"), 400, "BadRequest"),
    "continue-rv-negative": Case(continue_with("-5"), 400, "BadRequest"),
    "watch-rv-superscript-two": Case(req("GET", CM + "?watch=1&resourceVersion=%C2%B2"), 400, "BadRequest"),
    "watch-timeout-10e400": Case(req("GET", CM + "?watch=1&timeoutSeconds=1" + "0" * 400), 400, "BadRequest"),
    "limit-arabic-indic": Case(req("GET", CM + "?limit=" + quote("١")), 400, "BadRequest"),
    # Wrong types at schema positions.
    "ssar-resource-list": Case(req("POST", SSAR, json.dumps(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
         "spec": {"resourceAttributes": {"resource": ["x"], "verb": "get"}}}).encode()), 400, "BadRequest"),
    "owner-references-unknown-only": Case(req("POST", CM, cm_json("owned", '"data":{}').replace(
        b'"name":"owned"', b'"name":"owned","ownerReferences":[{"x":1}]')), 422, "Invalid", "ownerReferences"),
    "binary-data-not-base64": Case(req("POST", CM, cm_json("bin", '"binaryData":{"k":"!!not base64!!"}')), 400,
                                   "BadRequest"),
    "field-manager-129": Case(req("POST", CM + "?fieldManager=" + "m" * 129, cm_json("fm", '"data":{}')), 422,
                              "Invalid", "fieldManager"),
    "generation-10e26": Case(req("POST", CM, cm_json("gen", '"data":{}').replace(
        b'"name":"gen"', b'"name":"gen","generation":100000000000000000000000000')), 400, "BadRequest"),
    # Preconditions and collection deletes.
    "put-rv-beyond-head": Case(put_beyond_head(), 409, "Conflict"),
    "delete-rv-precondition-beyond-head": Case(delete_beyond_head(), 409, "Conflict"),
    "deletecollection-bad-label-selector": Case(req("DELETE", CM + "?labelSelector=" + quote("a in (")), 400,
                                                "BadRequest"),
    "deletecollection-unknown-field-selector": Case(req("DELETE", CM + "?fieldSelector=spec.nothing%3Dx"), 400,
                                                    "BadRequest"),
    # Tokens and impersonation.
    "jwt-exp-abc": Case(jwt_exp_abc(signed=False), 401, "Unauthorized"),
    "jwt-exp-abc-signed": Case(jwt_exp_abc(signed=True), 401, "Unauthorized"),
    # system:masters may impersonate: the request is then alice's, who may not touch configmaps.
    "impersonate-alice": Case(req("GET", CM, None, None, headers={"Impersonate-User": "alice"}), 403, "Forbidden",
                              'configmaps is forbidden: User "alice" cannot list'),
    "impersonate-alice-write": Case(req("POST", CM, cm_json("as-alice", '"data":{}'),
                                        headers={"Impersonate-User": "alice"}), 403, "Forbidden",
                                      'configmaps is forbidden: User "alice" cannot create'),
    # Long names: kube validates Role names as path segments only; every jetkube name is part of a
    # NATS subject, so path-segment names are bounded at 253 bytes (422, kube's wording); the server
    # must refuse them without losing its NATS connection (the case then checks it still serves).
    "role-name-700-u-umlaut": Case(req("POST", ROLES, role(LONG_UNICODE_ROLE)), 422, "Invalid",
                                   "must be no more than 253 characters"),
    "role-name-100000-ascii": Case(req("POST", ROLES, role(LONG_ASCII_ROLE)), 422, "Invalid",
                                   "must be no more than 253 characters"),
}


async def seed(env: Env) -> None:
    with trio.fail_after(REQUEST_BOUND_S * 3):
        r = await env.api.post(CM, json={"metadata": {"name": "target"}, "data": {"a": "x"}})
        assert r.status_code == 201, r.text
        env.target = r.json()
        for name in ("page-1", "page-2"):
            assert (await env.api.post(CM, json={"metadata": {"name": name}})).status_code == 201
        page = (await env.api.get(f"{CM}?limit=1")).json()
        env.continue_token = page["metadata"]["continue"]
        assert env.continue_token
        r = await env.api.post("/api/v1/namespaces/default/serviceaccounts/default/token",
                               json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        assert r.status_code == 201, r.text
        env.sa_token = r.json()["status"]["token"]


def check_answer(case: Case, got: Answer) -> None:
    shown = json.dumps(got.body)[:1000] if not isinstance(got.body, str) else got.body
    assert got.code < 500, f"a {got.code} to client input: {shown}"
    assert got.code == case.code, f"expected {case.code} {case.reason}, got {got.code}: {shown}"
    if case.reason:
        assert isinstance(got.body, dict) and got.body.get("kind") == "Status", shown
        assert got.body.get("reason") == case.reason and got.body.get("code") == case.code, shown
        assert case.message in got.body.get("message", ""), shown


__all__ = ["server_process"]  # the fixture, imported for pytest


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_input_case(name: str, server_process: Server) -> None:
    case = CASES[name]
    server = server_process
    async with open_server_log(server.nats_url) as log, server.client() as api, server.client(token=False) as anon:
        env = Env(server, api, anon, log)
        await seed(env)
        paths = await listable_paths(api)
        before = await store_state(api, log, paths)
        with trio.fail_after(REQUEST_BOUND_S):  # no hang: every answer within the bound
            try:
                got = await case.send(env)
            except httpx.TransportError as e:
                raise AssertionError(f"no complete answer: the server broke the connection ({e!r})") from e
        check_answer(case, got)
        assert_unchanged(before, await store_state(api, log, paths), name)
        await assert_serving(api, name, server)

