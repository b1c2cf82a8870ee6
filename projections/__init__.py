"""The read side: followers of the log that build queryable state, watches and views."""

from ._audit import (
    DEFAULT_POLICY,
    Attributes,
    Policy,
    PolicyError,
    level_and_stages,
    now_micro,
    parse_policy,
    parse_time,
    record_for_request,
    record_from_event,
    request_uri,
)
from ._errors import (
    BadContinue,
    ContinueExpired,
    ProjectionError,
    ResourceVersionTooLarge,
    TooOldResourceVersion,
)
from ._history import MAX_HISTORY_PAGE, Revision, revisions, row_key
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
from ._snapshot import SnapshotInvalid, Snapshots, SnapshotSettings, SnapshotStats
from ._store import ADDED, DELETED, MODIFIED, Change, Entry, ResourceState, Store
from ._watch import BOOKMARK, WatchFilter, WatchStream

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DEFAULT_POLICY",
    "DELETED",
    "MAX_HISTORY_PAGE",
    "MODIFIED",
    "RBAC_GROUP",
    "Attributes",
    "BadContinue",
    "Binding",
    "Change",
    "ContinueExpired",
    "ContinueNeedsHistory",
    "Entry",
    "FieldSelector",
    "LabelSelector",
    "ListResult",
    "Policy",
    "PolicyError",
    "Projection",
    "ProjectionError",
    "ProjectionSettings",
    "RbacIndex",
    "ResourceState",
    "ResourceVersionTooLarge",
    "Revision",
    "Rule",
    "SelectorError",
    "SnapshotInvalid",
    "SnapshotSettings",
    "SnapshotStats",
    "Snapshots",
    "Store",
    "TenantRbac",
    "TooOldResourceVersion",
    "WatchFilter",
    "WatchStream",
    "decode_continue",
    "level_and_stages",
    "now_micro",
    "parse_field_selector",
    "parse_int64",
    "parse_label_selector",
    "parse_policy",
    "parse_time",
    "record_for_request",
    "record_from_event",
    "request_uri",
    "revisions",
    "row_key",
]
