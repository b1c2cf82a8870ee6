"""The decision side: the actor runtime and the authn, authz, admission and resource actors."""

from ._auth import TokenAuthenticator, authorize, parse_token_csv
from ._controllers import SYSTEM_USER, Controllers
from ._errors import (
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
from ._fieldvalidation import warning_header
from ._pipeline import Pipeline
from ._resource import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, ResourceCore, now_rfc3339
from ._runtime import Actor, ReplySlot
from ._tokens import SigningKey
from .messages import Allowed, Request, UserInfo, WriteResult

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "SYSTEM_USER",
    "Actor",
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
    "Timeout",
    "TokenAuthenticator",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "UserInfo",
    "WriteResult",
    "authorize",
    "invalid",
    "now_rfc3339",
    "parse_token_csv",
    "warning_header",
]
