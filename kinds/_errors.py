"""Domain errors of the decision side.

Every error a request can end in is one of these. The gateway maps them to a Kubernetes
``Status`` in one function (``gateway._status.status_for``); nothing else formats a Status.
The names follow ``metav1.StatusReason``.
"""

from __future__ import annotations

import msgspec


class Cause(msgspec.Struct, frozen=True, omit_defaults=True):
    """One ``details.causes[]`` entry: ``reason`` is a ``metav1.CauseType``."""

    reason: str
    message: str
    field: str = ""


class ApiError(Exception):
    """Base of every error that becomes a Kubernetes Status."""

    code: int = 500
    reason: str = "InternalError"
    #: ``"details": {}`` in the Status even with nothing in it, as kube's ``NewGenericServerResponse`` writes
    #: the errors of its go-restful router (a 406 or 415 of a route's ``Produces``).
    empty_details: bool = False

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        group: str = "",
        kind: str = "",
        causes: tuple[Cause, ...] = (),
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class NotAcceptable(ApiError):
    code, reason = 406, "NotAcceptable"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Gone(ApiError):
    code, reason = 410, "Gone"


class Expired(ApiError):
    code, reason = 410, "Expired"


class RequestEntityTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class InternalError(ApiError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class Timeout(ApiError):
    code, reason = 504, "Timeout"


def invalid(kind: str, name: str, causes: list[Cause] | tuple[Cause, ...], group: str = "") -> Invalid:
    """The apiserver's ``NewInvalid``: ``<Kind>[.<group>] "<name>" is invalid: <field>: <message>, ...``
    (the qualified kind, as ``GroupKind.String()``: ``Role.rbac.authorization.k8s.io``)."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return Invalid(f'{qualified} "{name}" is invalid: {joined}', name=name, group=group, kind=kind,
                   causes=tuple(causes))
