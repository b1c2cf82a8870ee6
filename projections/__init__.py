"""The read side: followers of the log that build queryable state, watches and views."""

from ._errors import (
    BadContinue,
    ContinueExpired,
    ProjectionError,
    ResourceVersionTooLarge,
    TooOldResourceVersion,
)
from ._projection import ContinueNeedsHistory, ListResult, Projection, ProjectionSettings, decode_continue
from ._rbac import RBAC_GROUP, Binding, RbacIndex, Rule, TenantRbac
from ._selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_int64,
    parse_label_selector,
)
from ._store import ADDED, DELETED, MODIFIED, Change, Entry, ResourceState, Store
from ._watch import BOOKMARK, WatchFilter, WatchStream

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "MODIFIED",
    "RBAC_GROUP",
    "BadContinue",
    "Binding",
    "Change",
    "ContinueExpired",
    "ContinueNeedsHistory",
    "Entry",
    "FieldSelector",
    "LabelSelector",
    "ListResult",
    "Projection",
    "ProjectionError",
    "ProjectionSettings",
    "RbacIndex",
    "ResourceState",
    "ResourceVersionTooLarge",
    "Rule",
    "SelectorError",
    "Store",
    "TenantRbac",
    "TooOldResourceVersion",
    "WatchFilter",
    "WatchStream",
    "decode_continue",
    "parse_field_selector",
    "parse_int64",
    "parse_label_selector",
]
