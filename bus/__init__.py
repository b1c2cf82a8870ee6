"""The wire: NATS connection, the JetStream log, subjects, and the event types.

Everything here is trio-native; only this package touches asyncio (nats-py).
"""

from ._auth import NatsAuth, redact_url, server_urls
from ._bridge import Bridge, Reply, open_bridge
from ._broadcast import Broadcast
from ._cursor import LeasedCursor
from ._embedded import (
    BoundChild,
    cluster_node_config,
    free_port,
    nats_server_binary,
    run_nats_server,
    spawn_bound,
)
from ._encryption import EncryptionConfig, EncryptionConfigError, UndecryptableMessage
from ._errors import (
    BusClosed,
    BusDisconnected,
    BusError,
    BusRefused,
    BusTimeout,
    BusUnavailable,
    JetStreamError,
    MsgIdCollision,
    NoResponders,
    StreamMismatch,
    WrongLastSequence,
)
from ._log import Log, StreamConfig, open_log
from ._reader import LogReader
from ._responder import Responder
from ._snapshots import SnapshotBucket, snapshot_name, snapshot_seq
from ._stats import FAST_BUCKETS, Histogram
from ._subjects import (
    ANY_TENANT,
    PLACEHOLDER,
    ROOT_TENANT,
    Key,
    SubjectError,
    all_filter,
    apf_seats_subject,
    decode_token,
    encode_token,
    is_system_subject,
    object_subject,
    parse_subject,
    resource_filter,
    system_subject,
    tenant_of_token,
    tenant_token,
)
from ._types import (
    Actor,
    Event,
    EventType,
    LogMessage,
    decode_event,
    encode_event,
    encode_object_with_rv_slot,
    object_bytes,
)

__all__ = [
    "ANY_TENANT",
    "FAST_BUCKETS",
    "PLACEHOLDER",
    "ROOT_TENANT",
    "Actor",
    "BoundChild",
    "Bridge",
    "Broadcast",
    "BusClosed",
    "BusDisconnected",
    "BusError",
    "BusRefused",
    "BusTimeout",
    "BusUnavailable",
    "EncryptionConfig",
    "EncryptionConfigError",
    "Event",
    "EventType",
    "Histogram",
    "JetStreamError",
    "Key",
    "LeasedCursor",
    "Log",
    "LogMessage",
    "LogReader",
    "MsgIdCollision",
    "NatsAuth",
    "NoResponders",
    "Reply",
    "Responder",
    "SnapshotBucket",
    "StreamConfig",
    "StreamMismatch",
    "SubjectError",
    "UndecryptableMessage",
    "WrongLastSequence",
    "all_filter",
    "apf_seats_subject",
    "cluster_node_config",
    "decode_event",
    "decode_token",
    "encode_event",
    "encode_object_with_rv_slot",
    "encode_token",
    "free_port",
    "is_system_subject",
    "nats_server_binary",
    "object_bytes",
    "object_subject",
    "open_bridge",
    "open_log",
    "parse_subject",
    "redact_url",
    "resource_filter",
    "run_nats_server",
    "server_urls",
    "snapshot_name",
    "snapshot_seq",
    "spawn_bound",
    "system_subject",
    "tenant_of_token",
    "tenant_token",
]
