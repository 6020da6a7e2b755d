"""trioraft: a Raft consensus node and replicated key-value service for trio programs."""

from trioraft.client import Client, Consistency, open_client
from trioraft.config import NodeConfig, load_config
from trioraft.errors import (
    Busy,
    Compacted,
    ConfigError,
    InvalidRequest,
    NotLeader,
    ProposalDropped,
    StorageError,
    Timeout,
    TrioraftError,
    Unavailable,
    WireError,
)
from trioraft.node import LeaderInfo, Node, NodeBuilder

__version__ = "0.1.0"

__all__ = [
    "Busy",
    "Client",
    "Compacted",
    "ConfigError",
    "Consistency",
    "InvalidRequest",
    "LeaderInfo",
    "Node",
    "NodeBuilder",
    "NodeConfig",
    "NotLeader",
    "ProposalDropped",
    "StorageError",
    "Timeout",
    "TrioraftError",
    "Unavailable",
    "WireError",
    "__version__",
    "load_config",
    "open_client",
]
