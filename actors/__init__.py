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
from ._auth import TokenAuthenticator, parse_token_csv
from ._authn import Authenticator, CertificateAuthority, FrontProxy
from ._authz import MASTERS, Attributes, Authorizer, Decision, attributes_of, forbidden, parse_modes
from ._controllers import SYSTEM_USER, Controllers
from ._flowcontrol import REJECT_MESSAGE, Admission, FlowControl, dump_priority_levels, dump_queues
from ._limits import MAX_COPY_BYTES, MAX_DEPTH, MAX_JSON_PATCH_OPERATIONS, depth_exceeds
from ._oidc import AuthenticationConfigError, AuthenticationConfiguration, OIDCAuthenticator, validate_config
from ._pipeline import Pipeline
from ._resource import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, ResourceCore, now_rfc3339
from ._runtime import Actor, ReplySlot
from ._tenancy import OWNER_ANNOTATION, Tenancy, tenant_exists, tenant_not_found, valid_tenant_name
from ._tokens import JWKS_PATH, SigningKey, jwks, openid_configuration
from ._tracing import NO_SPAN, Spans
from .messages import Allowed, Request, UserInfo, WriteResult

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "JWKS_PATH",
    "MASTERS",
    "MAX_COPY_BYTES",
    "MAX_DEPTH",
    "MAX_JSON_PATCH_OPERATIONS",
    "MERGE_PATCH",
    "NO_SPAN",
    "OWNER_ANNOTATION",
    "REJECT_MESSAGE",
    "STRATEGIC_PATCH",
    "SYSTEM_USER",
    "Actor",
    "Admission",
    "AllocationSettings",
    "Allocators",
    "Allowed",
    "AlreadyExists",
    "ApiError",
    "Attributes",
    "AuthenticationConfigError",
    "AuthenticationConfiguration",
    "Authenticator",
    "Authorizer",
    "BadRequest",
    "Cause",
    "CertificateAuthority",
    "Conflict",
    "Controllers",
    "Decision",
    "Expired",
    "FlowControl",
    "Forbidden",
    "FrontProxy",
    "Gone",
    "InternalError",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "OIDCAuthenticator",
    "Pipeline",
    "ReplySlot",
    "Request",
    "RequestEntityTooLarge",
    "ResourceCore",
    "ServiceUnavailable",
    "SigningKey",
    "Spans",
    "Tenancy",
    "Timeout",
    "TokenAuthenticator",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "UserInfo",
    "WriteResult",
    "attributes_of",
    "body_duplicate_fields",
    "body_strict_errors",
    "depth_exceeds",
    "dump_priority_levels",
    "dump_queues",
    "forbidden",
    "invalid",
    "jwks",
    "now_rfc3339",
    "openid_configuration",
    "parse_modes",
    "parse_token_csv",
    "tenant_exists",
    "tenant_not_found",
    "valid_tenant_name",
    "validate_config",
    "warning_header",
    "yaml_duplicate_key",
    "yaml_strict_error",
]
