"""Request lines through a real server: one JSON line per request, kube's fields and code, the audit
ID of the ``Audit-Id`` header, watches at their end, text format, and never a token or a Secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
import trio

from gateway._logging import AuditIdFilter, JsonFormatter, TextFormatter
from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"


class Captured:
    """Everything logged (every logger, INFO and up) while it is installed, formatted as configured."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.out = io.StringIO()
        self.handler = logging.StreamHandler(self.out)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(AuditIdFilter())

    @property
    def text(self) -> str:
        return self.out.getvalue()

    def http(self) -> list[dict[str, object]]:
        """The request lines (JSON)."""
        return [d for d in map(json.loads, self.text.splitlines()) if d.get("msg") == "HTTP"]

    def by_audit_id(self, audit_id: str) -> dict[str, object]:
        (line,) = [d for d in self.http() if d.get("audit-ID") == audit_id]
        return line


def _capture(formatter: logging.Formatter) -> Iterator[Captured]:
    c = Captured(formatter)
    root = logging.getLogger()
    old = root.level
    root.addHandler(c.handler)
    root.setLevel(logging.INFO)
    try:
        yield c
    finally:
        root.removeHandler(c.handler)
        root.setLevel(old)


@pytest.fixture
def logs() -> Iterator[Captured]:
    yield from _capture(JsonFormatter())


@pytest.fixture
def text_logs() -> Iterator[Captured]:
    yield from _capture(TextFormatter())


async def test_one_line_per_request(start_server: StartServer, logs: Captured) -> None:
    running = await start_server(request_log="all")
    assert running.http_url is not None
    with trio.fail_after(30):
        async with client_for(running) as api, httpx.AsyncClient(base_url=running.http_url, timeout=30) as anon:
            created = await api.post(CM, json={"metadata": {"name": "c1"}, "data": {"k": "v"}},
                                     headers={"User-Agent": "logs-test/1"})
            missing = await api.get(f"{CM}/nope")
            unauthenticated = await anon.get(CM)
            async with api.stream("GET", f"{CM}?watch=1&timeoutSeconds=1") as w:
                assert w.status_code == 200
                events = [line async for line in w.aiter_lines() if line]
    assert (created.status_code, missing.status_code, unauthenticated.status_code) == (201, 404, 401)
    assert sorted(json.loads(e)["object"]["metadata"]["name"] for e in events) == ["c1", "kube-root-ca.crt"]

    line = logs.by_audit_id(created.headers["Audit-Id"])
    assert {k: line[k] for k in ("level", "logger", "msg", "verb", "URI", "userAgent", "resp", "user")} == {
        "level": "info", "logger": "jetkube.httplog", "msg": "HTTP", "verb": "POST", "URI": CM,
        "userAgent": "logs-test/1", "resp": 201, "user": "admin"}
    assert re.fullmatch(r"127\.0\.0\.1:\d+", str(line["srcIP"]))
    assert re.fullmatch(r"[\d.]+(ns|µs|ms|s)", str(line["latency"]))

    line = logs.by_audit_id(missing.headers["Audit-Id"])
    assert (line["verb"], line["URI"], line["resp"], line["user"]) == ("GET", f"{CM}/nope", 404, "admin")

    line = logs.by_audit_id(unauthenticated.headers["Audit-Id"])
    assert (line["verb"], line["resp"]) == ("LIST", 401)
    assert "user" not in line  # nobody was authenticated

    line = logs.by_audit_id(w.headers["Audit-Id"])
    assert (line["verb"], line["URI"], line["resp"]) == ("WATCH", f"{CM}?watch=1&timeoutSeconds=1", 200)
    assert re.fullmatch(r"1(\.\d+)?s", str(line["latency"])), line["latency"]  # open for its timeout

    # One line per request, no more: the four above (plus none from the server's own work).
    assert len(logs.http()) == 4


async def test_default_logs_only_server_errors(start_server: StartServer, logs: Captured) -> None:
    running = await start_server()
    with trio.fail_after(30):
        async with client_for(running) as api:
            assert (await api.post(CM, json={"metadata": {"name": "c1"}})).status_code == 201
            assert (await api.get(f"{CM}/nope")).status_code == 404
    assert logs.http() == []


async def test_text_format(start_server: StartServer, text_logs: Captured) -> None:
    running = await start_server(request_log="all")
    with trio.fail_after(30):
        async with client_for(running) as api:
            r = await api.get(f"{CM}/nope")
    (line,) = [t for t in text_logs.text.splitlines() if "jetkube.httplog: HTTP" in t]
    assert f'audit-ID="{r.headers["Audit-Id"]}" verb="GET" URI="{CM}/nope" latency="' in line
    assert line.endswith(" resp=404 user=\"admin\"")


async def test_never_a_token_or_a_secret(start_server: StartServer, logs: Captured) -> None:
    running = await start_server(request_log="all")
    value = "s3cret-value-that-must-not-be-logged"
    encoded = base64.b64encode(value.encode()).decode()
    wrong = "not-a-token-0123456789abcdef"
    secret = {"metadata": {"name": "s1"}, "data": {"password": encoded}, "stringData": {"plain": value}}
    assert running.http_url is not None
    with trio.fail_after(30):
        async with client_for(running) as api, httpx.AsyncClient(
                base_url=running.http_url, timeout=30, headers={"Authorization": f"Bearer {wrong}"}) as bad:
            assert (await api.post(SECRETS, json=secret)).status_code == 201
            assert (await api.get(f"{SECRETS}/s1")).status_code == 200
            assert (await api.put(f"{SECRETS}/s1", json={**secret, "metadata": {"name": "s1"}})).status_code == 200
            # Invalid: the Status names the field, never the body's values.
            assert (await api.post(SECRETS, json={"metadata": {"name": "s2"}, "data": {"k": value}})
                    ).status_code == 400
            assert (await bad.post(SECRETS, json=secret)).status_code == 401
    assert len(logs.http()) == 5
    for forbidden in (running.admin_token, wrong, value, encoded, "Bearer", "Authorization"):
        assert forbidden not in logs.text, forbidden
