"""The one place results and errors become HTTP: status codes, ``Status`` objects, bodies.

The write side answers with domain results (``actors.messages``: Stored, Deleted,
DeletedCollection, Succeeded) and raises the ``ApiError`` family; :func:`write_response` and
:func:`status_for` are what HTTP makes of them.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio
from quart import Response

from actors import (
    ApiError,
    BadRequest,
    Deleted,
    DeletedCollection,
    Expired,
    InternalError,
    Rejected,
    ServiceUnavailable,
    Stored,
    Succeeded,
    Timeout,
    WriteResult,
)
from bus import BusClosed, BusError, BusTimeout, NoResponders, SubjectError
from projections import (
    BadContinue,
    ContinueExpired,
    ResourceVersionTooLarge,
    SelectorError,
    TooOldResourceVersion,
)

log = logging.getLogger("jetkube.gateway")
_enc = msgspec.json.Encoder()
#: Go's ``http.Error``: kube-apiserver's filters answer some errors in plain text, not as a Status.
PLAIN_TEXT = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
#: kube-apiserver's ``WithCacheControl`` filter (``endpoints/filters/cachecontrol.go``), outside every handler
#: and every other filter that answers (authentication, flow control, timeouts): each answer carries
#: ``Cache-Control: no-cache, private`` unless its handler set one of its own (OpenAPI's ``public, immutable``).
#: Added where answers get their headers: :class:`ApiResponse` (the app's) and ``_gate.response_headers``
#: (the fast path's, the reject gate's and its replays').
NO_CACHE = "no-cache, private"
CACHE_CONTROL = (b"cache-control", NO_CACHE.encode())


class ApiResponse(Response):
    """The app's response class: a Quart response with :data:`CACHE_CONTROL` from the start (after its
    Content-Type and Content-Length), which a handler replaces by setting its own, as kube's filter sets
    it before the handler runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers.add("Cache-Control", NO_CACHE)


class BodyTimeout(Exception):
    """The client did not send its whole request body in time."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.timeout_s = timeout_s


class ReadTimeout(Exception):
    """A consistent read could not learn the log's head, or catch up with it, within the request deadline."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.timeout_s = timeout_s


def to_api_error(exc: BaseException) -> ApiError:
    """Every exception a request can end in, as the ApiError the client sees."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BodyTimeout):
        err = ApiError(f"the request body was not received within {exc.timeout_s:g}s")
        err.code, err.reason = 408, "Timeout"
        return err
    if isinstance(exc, SelectorError | BadContinue):
        return BadRequest(str(exc))
    if isinstance(exc, SubjectError):
        # A name or namespace too long to be stored (reads by name never build a subject: they
        # answer 404 from the projection, as kube does for an impossible name).
        return BadRequest(f"the object's name or namespace is too long to be stored: {exc}")
    if isinstance(exc, ResourceVersionTooLarge):
        return Timeout(f"Too large resource version: {exc.wanted}, current: {exc.applied}", retry_after_s=1)
    if isinstance(exc, TooOldResourceVersion):
        return Expired(f"too old resource version: {exc.seq} ({exc.first})")
    if isinstance(exc, ContinueExpired):
        return Expired("The provided continue parameter is too old to display a consistent list result. You can "
                       "start a new list without the continue parameter.")
    if isinstance(exc, ReadTimeout):
        return Timeout(f"the log did not answer the consistent read within the request deadline "
                       f"({exc.timeout_s:g}s); retry it", retry_after_s=1)
    if isinstance(exc, BusTimeout | trio.TooSlowError):
        return Timeout("the log did not acknowledge in time; the request may have been applied, retry it",
                       retry_after_s=1)
    if isinstance(exc, NoResponders | BusClosed | BusError):
        return ServiceUnavailable(f"the log is unavailable: {exc}", retry_after_s=1)
    log.error("unexpected error", exc_info=exc)
    return InternalError(f"an internal error occurred: {type(exc).__name__}")


def status_object(err: ApiError) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if err.name:
        details["name"] = err.name
    if err.group:
        details["group"] = err.group
    if err.kind:
        details["kind"] = err.kind
    if err.causes:
        details["causes"] = [msgspec.to_builtins(c) for c in err.causes]
    if err.retry_after_s:
        details["retryAfterSeconds"] = err.retry_after_s
    obj: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": err.message}
    if err.reason:  # empty when an admission webhook denies without one (kube omits it)
        obj["reason"] = err.reason
    if details or err.empty_details:
        obj["details"] = details
    obj["code"] = err.code
    return obj


def status_for(exc: BaseException) -> tuple[int, bytes, dict[str, str]]:
    """(HTTP code, body, extra headers) for any exception: its Status in JSON, except flow control's
    rejection, which kube-apiserver's priority-and-fairness filter writes with Go's ``http.Error``
    (``tooManyRequests``: ``Retry-After``, then the message and a newline in plain text, with
    ``X-Content-Type-Options: nosniff``; whatever the client accepts). A ``Content-Type`` in the
    extra headers replaces the JSON one."""
    err = to_api_error(exc)
    headers = {"Retry-After": str(err.retry_after_s)} if err.retry_after_s else {}
    if isinstance(err, Rejected):
        return err.code, err.message.encode() + b"\n", headers | PLAIN_TEXT
    return err.code, _enc.encode(status_object(err)), headers


def _success(code: int | None = None, details: dict[str, Any] | None = None) -> bytes:
    obj: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        obj["details"] = details
    if code is not None:
        obj["code"] = code
    return _enc.encode(obj)


def write_response(result: WriteResult) -> tuple[int, bytes]:
    """(HTTP code, JSON body) of a write's result, as kube-apiserver's handlers answer.

    201 for a create (also an update or apply that created); a delete answers the deleted
    object's Status (200), or the object still being deleted (200; 202 when the client asked for
    cascading explicitly with ``orphanDependents: false``, as kube's delete handler); a
    deletecollection the list of what it deleted; a binding or an eviction a Success Status.
    """
    if isinstance(result, Stored):
        return (201 if result.created else 200), result.object
    if isinstance(result, Deleted):
        if result.pending:
            return (202 if result.cascading else 200), result.object
        return 200, _success(details={"name": result.name, "group": result.group, "kind": result.kind,
                                      "uid": result.uid})
    if isinstance(result, DeletedCollection):
        return 200, b'{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"},"items":[%s]}' % (
            result.list_kind.encode(), result.api_version.encode(), result.resource_version,
            b",".join(result.items))
    if isinstance(result, Succeeded):
        code = 201 if result.created else 200
        return code, _success(code)
    raise TypeError(f"not a write result: {type(result).__name__}")
