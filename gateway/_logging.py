"""Structured logs: JSON lines (or text), kube's one line per request, the audit ID on every line.

Everything logs through the standard :mod:`logging` module; :func:`configure_logging` (called once,
by the entry point) puts one handler on the root logger with :class:`JsonFormatter` or
:class:`TextFormatter` and :class:`AuditIdFilter`.

The request line is kube-apiserver's ``httplog`` line (``k8s.io/apiserver/pkg/server/httplog``):
message ``HTTP`` with ``verb`` (the metrics' verb: LIST, WATCH, APPLY ...), ``URI``, ``latency`` (as
Go prints a duration), ``userAgent``, ``audit-ID``, ``srcIP`` (address:port), ``resp`` (the status
code) and ``user`` (once authenticated). It is written once, when the request ends; a watch ends
when its stream does, so its latency is how long it was open. Which requests get a line is each
server's ``Settings.request_log``: ``all`` (kube at ``-v=3``), ``errors`` (5xx only) or ``none``.

Invariant: a line never carries a credential or a body. The request line is built from the fields
above only (no header but User-Agent, no body); other lines carry what their callers pass.

The audit ID of the request being served is in a context variable set when the request starts.
Each request runs in its own task (hypercorn spawns one per request, copying the connection task's
context), so the value never leaks between requests. Actor workers are long-lived tasks started
before any request: a request's context does not reach them, so actors pass ``extra={"audit_id":
req.audit_id}`` where they log about a request.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any, TextIO

import msgspec
import trio

LOG_FORMATS = ("json", "text")
REQUEST_LOG_MODES = ("all", "errors", "none")

#: The logger of the per-request lines.
HTTP_LOG = logging.getLogger("jetkube.httplog")

# Bounds on the client-chosen strings copied into a request line (kube truncates its audit ID the same way).
MAX_FIELD_CHARS = 1024

_current: ContextVar[RequestLog | None] = ContextVar("jetkube_request_log", default=None)
_json = msgspec.json.Encoder(enc_hook=str)
# Attributes every LogRecord has: anything else on a record was passed in ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "audit_id", "taskName"}


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String`` writes it ("812.5µs", "3.2ms", "1m30s"): kube's
    JSON logs encode a latency this way, and log queries written for them parse it."""
    ns = max(0, round(seconds * 1e9))
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _fraction(ns, 1_000, 3) + "µs"
    if ns < 1_000_000_000:
        return _fraction(ns, 1_000_000, 6) + "ms"
    whole_s, rem = divmod(ns, 1_000_000_000)
    h, rest = divmod(whole_s, 3600)
    m, s = divmod(rest, 60)
    secs = _fraction(s * 1_000_000_000 + rem, 1_000_000_000, 9) + "s"
    if h:
        return f"{h}h{m}m{secs}"
    if m:
        return f"{m}m{secs}"
    return secs


def _fraction(n: int, unit: int, digits: int) -> str:
    whole, rem = divmod(n, unit)
    return f"{whole}.{rem:0{digits}d}".rstrip("0") if rem else str(whole)


def should_log_request(mode: str, code: int) -> bool:
    """Whether a request answered ``code`` gets a line under ``--request-log=mode``."""
    return mode == "all" or (mode == "errors" and code >= 500)


def _bounded(s: str) -> str:
    return s if len(s) <= MAX_FIELD_CHARS else s[:MAX_FIELD_CHARS] + "..."


def request_fields(*, verb: str, uri: str, latency_s: float, user_agent: str, src_ip: str, code: int,
                   user: str) -> dict[str, Any]:
    """The fields of kube's request line, in kube's order (the audit ID goes on the record); pure."""
    fields: dict[str, Any] = {"verb": verb, "URI": _bounded(uri), "latency": go_duration(latency_s),
                              "userAgent": _bounded(user_agent), "srcIP": src_ip, "resp": code}
    if user:
        fields["user"] = _bounded(user)
    return fields


class RequestLog:
    """One request's line, written at its end by :meth:`end` or, for a watch, by :meth:`watch_body`."""

    __slots__ = ("audit_id", "mode", "src_ip", "started", "uri", "user", "user_agent")

    def __init__(self, mode: str, audit_id: str, scope: Any, user_agent: str) -> None:
        self.mode = mode
        self.audit_id = audit_id
        self.started = time.perf_counter()
        # The path as the client sent it (kube logs RequestURI), not as decoded.
        path = scope.get("raw_path") or scope.get("path", "").encode()
        query = scope.get("query_string") or b""
        self.uri = (path + b"?" + query if query else path).decode("latin-1")
        client = scope.get("client")
        self.src_ip = f"{client[0]}:{client[1]}" if client else ""
        self.user_agent = user_agent
        self.user = ""

    def end(self, verb: str, code: int) -> None:
        """The request is answered ``code``: its line, if the mode wants one."""
        if should_log_request(self.mode, code):
            HTTP_LOG.info("HTTP", stacklevel=2, extra={"audit_id": self.audit_id, **request_fields(
                verb=verb, uri=self.uri, latency_s=time.perf_counter() - self.started, user_agent=self.user_agent,
                src_ip=self.src_ip, code=code, user=self.user)})

    async def watch_body(self, body: AsyncIterator[bytes], verb: str) -> AsyncIterator[bytes]:
        """``body`` (a watch stream, answered 200), with the request's line written when it ends,
        however it ends (its timeout, shutdown, the client going away). Closes ``body``."""
        try:
            async for chunk in body:
                yield chunk
        finally:
            self.end(verb, 200)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await body.aclose()  # type: ignore[attr-defined]


def begin_request(mode: str, audit_id: str, scope: Any, user_agent: str) -> RequestLog:
    """A request starts in this task: its line-to-be, and its audit ID on every line logged here."""
    line = RequestLog(mode, audit_id, scope, user_agent)
    _current.set(line)
    return line


def note_user(name: str) -> None:
    """The current request's authenticated user, for its line."""
    line = _current.get()
    if line is not None:
        line.user = name


def current_audit_id() -> str:
    """The audit ID of the request this task serves, or ""."""
    line = _current.get()
    return line.audit_id if line is not None else ""


class AuditIdFilter(logging.Filter):
    """Gives every record an ``audit_id``: the one passed in ``extra``, else the current request's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "audit_id", ""):
            record.audit_id = current_audit_id()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with kube's JSON keys (``ts`` in epoch milliseconds, ``caller``,
    ``logger``, ``msg``, ``err``) plus ``level``, ``audit-ID`` when a request is concerned, and
    every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": record.created * 1000, "level": record.levelname.lower(),
                               "logger": record.name, "caller": f"{record.filename}:{record.lineno}",
                               "msg": record.getMessage()}
        audit_id = getattr(record, "audit_id", "")
        if audit_id:
            out["audit-ID"] = audit_id
        out.update(_extras(record))
        if record.exc_info:
            out["err"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["err"] = record.exc_text
        return _json.encode(out).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` (strings quoted, as klog's text format does)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = _extras(record)
        audit_id = getattr(record, "audit_id", "")
        if audit_id:
            fields = {"audit-ID": audit_id, **fields}
        kv = "".join(f" {k}={v if isinstance(v, int | float) else json.dumps(str(v))}" for k, v in fields.items())
        return super().formatMessage(record) + kv


def configure_logging(level: str, log_format: str, request_log: str, *,
                      stream: TextIO | None = None) -> logging.Handler:
    """The process's logging, once, at the entry point: one handler on the root logger (stderr, as
    kube logs) in ``log_format``, at ``level``; the request lines pass whatever ``level`` is, since
    ``request_log`` decides about them."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(AuditIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    HTTP_LOG.setLevel(logging.INFO if request_log != "none" else logging.CRITICAL + 1)
    return handler
