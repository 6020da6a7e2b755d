"""trioraft: a Raft consensus node and replicated key-value service for trio programs."""

from trioraft._client_types import CasResult, ReadResult, ScanResult, TxnResult
from trioraft._client_watch import Watch
from trioraft.client import Client, Consistency, open_client, open_embedded_client
from trioraft.config import NodeConfig, load_config
from trioraft.errors import (
    Busy,
    ChangeInProgress,
    Compacted,
    ConfigError,
    InvalidRequest,
    NotLeader,
    ProposalDropped,
    SessionExpired,
    StorageError,
    Timeout,
    TrioraftError,
    Unavailable,
    WireError,
)
from trioraft.gc_policy import tune_gc
from trioraft.node import LeaderInfo, Node, NodeBuilder
from wire.client_messages import (
    Compare,
    CompareOp,
    CompareTarget,
    Event,
    EventType,
    KeyValue,
    OpKind,
    OpResult,
    TxnOp,
)
from wire.member_messages import (
    ClusterMembership,
    ClusterMetadata,
    MemberAddress,
    MemberChange,
    MemberOp,
)

__version__ = "0.1.0"

__all__ = [
    "Busy",
    "CasResult",
    "ChangeInProgress",
    "Client",
    "ClusterMembership",
    "ClusterMetadata",
    "Compacted",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "ConfigError",
    "Consistency",
    "Event",
    "EventType",
    "InvalidRequest",
    "KeyValue",
    "LeaderInfo",
    "MemberAddress",
    "MemberChange",
    "MemberOp",
    "Node",
    "NodeBuilder",
    "NodeConfig",
    "NotLeader",
    "OpKind",
    "OpResult",
    "ProposalDropped",
    "ReadResult",
    "ScanResult",
    "SessionExpired",
    "StorageError",
    "Timeout",
    "TrioraftError",
    "TxnOp",
    "TxnResult",
    "Unavailable",
    "Watch",
    "WireError",
    "__version__",
    "load_config",
    "open_client",
    "open_embedded_client",
    "tune_gc",
]
