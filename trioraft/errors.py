"""trioraft's exception hierarchy (defined in ``wire.errors``, re-exported here)."""

from wire.errors import (
    ERROR_CODES,
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

__all__ = [
    "ERROR_CODES",
    "Busy",
    "ChangeInProgress",
    "Compacted",
    "ConfigError",
    "InvalidRequest",
    "NotLeader",
    "ProposalDropped",
    "SessionExpired",
    "StorageError",
    "Timeout",
    "TrioraftError",
    "Unavailable",
    "WireError",
]
