"""Structured logs: Go durations, the request-line decision and fields, the JSON and text formatters,
the audit-ID filter, the entry point's configuration, and the audit ID on an actor's line."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from collections.abc import Iterator

import pytest
import trio

from actors import Actor, InternalError, Request
from actors._runtime import ReplySlot
from gateway._cli import _parser, settings_from_args
from gateway._logging import (
    HTTP_LOG,
    MAX_FIELD_CHARS,
    AuditIdFilter,
    JsonFormatter,
    TextFormatter,
    begin_request,
    configure_logging,
    go_duration,
    note_user,
    request_fields,
    should_log_request,
)

SCOPE = {"raw_path": b"/api/v1/namespaces/a%20b/configmaps", "query_string": b"watch=1",
         "client": ("127.0.0.1", 5555)}


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (-1, "0s"), (1e-9, "1ns"), (999e-9, "999ns"), (1.5e-6, "1.5µs"), (2e-6, "2µs"),
    (0.0032, "3.2ms"), (0.123456789, "123.456789ms"), (1, "1s"), (1.5, "1.5s"), (1.000000001, "1.000000001s"),
    (90, "1m30s"), (3600, "1h0m0s"), (3723.25, "1h2m3.25s"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_request_log_modes() -> None:
    assert [should_log_request("all", c) for c in (200, 404, 500)] == [True, True, True]
    assert [should_log_request("errors", c) for c in (200, 401, 499, 500, 503)] == [False] * 3 + [True] * 2
    assert [should_log_request("none", c) for c in (200, 500)] == [False, False]


def test_request_fields_kube_order_and_bounds() -> None:
    f = request_fields(verb="LIST", uri="/api/v1/pods", latency_s=0.0025, user_agent="kubectl/v1.33",
                       src_ip="127.0.0.1:5555", code=200, user="admin")
    assert list(f) == ["verb", "URI", "latency", "userAgent", "srcIP", "resp", "user"]
    assert f["latency"] == "2.5ms" and f["resp"] == 200
    long = request_fields(verb="GET", uri="/" + "x" * 5000, latency_s=0, user_agent="u" * 5000, src_ip="",
                          code=401, user="")
    assert "user" not in long
    assert len(long["URI"]) == len(long["userAgent"]) == MAX_FIELD_CHARS + 3


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """The ``jetkube`` loggers at INFO into a JSON handler with the audit-ID filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(AuditIdFilter())
    logger = logging.getLogger("jetkube")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_line_with_the_current_requests_audit_id(lines: io.StringIO) -> None:
    async def one_request() -> None:
        line = begin_request("all", "audit-1", SCOPE, "kubectl/v1.33")
        logging.getLogger("jetkube.gateway").warning("something about %s", "it", extra={"k": 1})
        note_user("alice")
        line.end("WATCH", 200)

    async def another() -> None:
        logging.getLogger("jetkube.gateway").warning("not in a request")

    trio.run(one_request)  # its own context: the audit ID does not outlive the run
    trio.run(another)
    first, http, other = parsed(lines)
    assert first["msg"] == "something about it" and first["audit-ID"] == "audit-1" and first["k"] == 1
    assert first["level"] == "warning" and first["logger"] == "jetkube.gateway"
    assert str(first["caller"]).startswith("test_log_format.py:") and isinstance(first["ts"], float)
    assert http["msg"] == "HTTP" and http["logger"] == "jetkube.httplog"
    assert {k: http[k] for k in ("verb", "URI", "userAgent", "audit-ID", "srcIP", "resp", "user")} == {
        "verb": "WATCH", "URI": "/api/v1/namespaces/a%20b/configmaps?watch=1", "userAgent": "kubectl/v1.33",
        "audit-ID": "audit-1", "srcIP": "127.0.0.1:5555", "resp": 200, "user": "alice"}
    assert str(http["caller"]).startswith("test_log_format.py:")  # the caller of end(), not _logging.py
    assert "audit-ID" not in other


def test_json_error_and_explicit_audit_id(lines: io.StringIO) -> None:
    def in_a_request() -> None:
        begin_request("all", "from-context", SCOPE, "")
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("jetkube.actors").exception("crashed", extra={"audit_id": "explicit"})

    contextvars.copy_context().run(in_a_request)  # the audit ID stays in that context
    (line,) = parsed(lines)
    assert line["audit-ID"] == "explicit" and "ValueError: bad" in str(line["err"])
    assert "\n" not in lines.getvalue().rstrip("\n")  # one line, the traceback escaped inside it


def test_text_format() -> None:
    record = logging.LogRecord("jetkube.httplog", logging.INFO, "x.py", 1, "HTTP", (), None)
    for k, v in {"audit_id": "a-1", "verb": "POST", "URI": '/p?q="x"', "resp": 201}.items():
        setattr(record, k, v)
    text = TextFormatter().format(record)
    assert text.endswith(' INFO jetkube.httplog: HTTP audit-ID="a-1" verb="POST" URI="/p?q=\\"x\\"" resp=201')


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, http_level = list(root.handlers), root.level, HTTP_LOG.level
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        HTTP_LOG.setLevel(http_level)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_flags_and_configure_logging(fmt: str, root_restored: None) -> None:
    contextvars.copy_context().run(_flags_and_configure_logging, fmt)


def _flags_and_configure_logging(fmt: str) -> None:
    args = _parser().parse_args(["serve", "--log-format", fmt, "--request-log", "all", "--log-level", "error"])
    s = settings_from_args(args)
    assert (s.log_format, s.request_log, s.log_level) == (fmt, "all", "ERROR")
    defaults = settings_from_args(_parser().parse_args(["serve"]))
    assert (defaults.log_format, defaults.request_log, defaults.log_level) == ("json", "errors", "WARNING")
    out = io.StringIO()
    configure_logging(s.log_level, s.log_format, s.request_log, stream=out)
    logging.getLogger("jetkube.gateway").warning("below the level: dropped")
    begin_request(s.request_log, "aid", SCOPE, "ua").end("GET", 200)  # request lines pass at any level
    (text,) = out.getvalue().splitlines()
    if fmt == "json":
        assert json.loads(text)["audit-ID"] == "aid"
    else:
        assert 'jetkube.httplog: HTTP audit-ID="aid" verb="GET"' in text
    out = io.StringIO()
    configure_logging("INFO", fmt, "none", stream=out)
    begin_request("all", "aid", SCOPE, "ua").end("GET", 500)
    assert out.getvalue() == ""


_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="")


async def test_actor_lines_carry_the_messages_audit_id(lines: io.StringIO) -> None:
    """A worker is started before the request it serves: the request's context does not reach it
    (trio copies the context when a task starts), so the actor names the audit ID itself."""
    seen: list[str] = []

    async def handler(msg: Request, reply: ReplySlot) -> None:
        seen.append(_REQUEST.get())
        raise RuntimeError("boom")

    a: Actor[Request] = Actor("t", handler, mailbox_size=1, workers=1)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        _REQUEST.set("in the request's task")
        begin_request("all", "in the request's task", SCOPE, "")
        with pytest.raises(InternalError), trio.fail_after(5):
            await a.ask(Request(verb="get", audit_id="req-7"), timeout_s=5)
        n.cancel_scope.cancel()
    assert seen == [""]
    (line,) = parsed(lines)
    assert line["msg"] == "actor t crashed on 'Request'; restarted" and line["audit-ID"] == "req-7"
