"""The decision side: the actor runtime and the authn, authz, admission and resource actors."""

from kinds._errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Cause,
    Conflict,
    Expired,
    Forbidden,
    Gone,
    InternalError,
    Invalid,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    invalid,
)
from kinds._fieldvalidation import (
    body_duplicate_fields,
    body_strict_errors,
    warning_header,
    yaml_duplicate_key,
    yaml_strict_error,
)

from ._allocation import AllocationSettings, Allocators
from ._auth import TokenAuthenticator, authorize, parse_token_csv
from ._controllers import SYSTEM_USER, Controllers
from ._limits import MAX_COPY_BYTES, MAX_DEPTH, MAX_JSON_PATCH_OPERATIONS, depth_exceeds
from ._pipeline import Pipeline
from ._resource import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, ResourceCore, now_rfc3339
from ._runtime import Actor, ReplySlot
from ._tokens import SigningKey
from ._tracing import NO_SPAN, Spans
from .messages import Allowed, Request, UserInfo, WriteResult

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MAX_COPY_BYTES",
    "MAX_DEPTH",
    "MAX_JSON_PATCH_OPERATIONS",
    "MERGE_PATCH",
    "NO_SPAN",
    "STRATEGIC_PATCH",
    "SYSTEM_USER",
    "Actor",
    "AllocationSettings",
    "Allocators",
    "Allowed",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Cause",
    "Conflict",
    "Controllers",
    "Expired",
    "Forbidden",
    "Gone",
    "InternalError",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "Pipeline",
    "ReplySlot",
    "Request",
    "RequestEntityTooLarge",
    "ResourceCore",
    "ServiceUnavailable",
    "SigningKey",
    "Spans",
    "Timeout",
    "TokenAuthenticator",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "UserInfo",
    "WriteResult",
    "authorize",
    "body_duplicate_fields",
    "body_strict_errors",
    "depth_exceeds",
    "invalid",
    "now_rfc3339",
    "parse_token_csv",
    "warning_header",
    "yaml_duplicate_key",
    "yaml_strict_error",
]
