"""The domain: what a Kubernetes kind is, independent of the wire and of HTTP.

One definition per kind (``ResourceDef``), the registry of served kinds, the built-in kinds'
schemas (``kubernetes-validate``), the validation primitives and field validation, the per-kind
strategies (defaulting, validation, prepare-for-create/update), and the domain errors every
request can end in (``ApiError`` and its family; the gateway maps them to a Status in one place).

This package imports nothing of ours; ``bus``, ``projections``, ``actors`` and ``gateway`` import it.
"""

from ._defs import (
    BUILTIN,
    CLUSTER_ANNOTATION,
    DEFAULT_NAMESPACES,
    FLOWCONTROL_GROUP,
    IMMORTAL_NAMESPACES,
    LOGICAL_CLUSTERS,
    NAMESPACES,
    TENANCY_GROUP,
    Registry,
    ResourceDef,
    field_value,
)
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
from ._printers import CREATED_DESCRIPTION, NAME_DESCRIPTION, Column, Doc, Printer, printer_for
from ._printing import (
    format_label_selector,
    format_labels,
    human_duration,
    parse_time,
    rfc3339_seconds,
    translate_timestamp_since,
)
from ._protobuf import KIND_MESSAGES, MESSAGES, SPECIAL, VERSIONLESS_KINDS, Field, message_for_kind
from ._schemas import definitions, load_schemas, patch_schema, schema_for
from ._strategy import NAMESPACE_FINALIZER, Strategy, strategy_for
from ._validation import is_qualified_name, is_valid_label_value

__all__ = [
    "BUILTIN",
    "CLUSTER_ANNOTATION",
    "CREATED_DESCRIPTION",
    "DEFAULT_NAMESPACES",
    "FLOWCONTROL_GROUP",
    "IMMORTAL_NAMESPACES",
    "KIND_MESSAGES",
    "LOGICAL_CLUSTERS",
    "MESSAGES",
    "NAMESPACES",
    "NAMESPACE_FINALIZER",
    "NAME_DESCRIPTION",
    "SPECIAL",
    "TENANCY_GROUP",
    "VERSIONLESS_KINDS",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Cause",
    "Column",
    "Conflict",
    "Doc",
    "Expired",
    "Field",
    "Forbidden",
    "Gone",
    "InternalError",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "Printer",
    "Registry",
    "RequestEntityTooLarge",
    "ResourceDef",
    "ServiceUnavailable",
    "Strategy",
    "Timeout",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "definitions",
    "field_value",
    "format_label_selector",
    "format_labels",
    "human_duration",
    "invalid",
    "is_qualified_name",
    "is_valid_label_value",
    "load_schemas",
    "message_for_kind",
    "parse_time",
    "patch_schema",
    "printer_for",
    "rfc3339_seconds",
    "schema_for",
    "strategy_for",
    "translate_timestamp_since",
]
