"""The pure Raft core: no I/O, no clocks, no threads; see ``RawNode``.

Imports only the standard library and ``wire.messages`` / ``wire.errors``
(enforced by ``tests/core/test_purity.py``).
"""

from trioraft.core.rawnode import RawNode
from trioraft.core.types import (
    CoreConfig,
    CoreInvariantError,
    ReadState,
    Ready,
    Role,
    SoftState,
    Status,
)

__all__ = [
    "CoreConfig",
    "CoreInvariantError",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "SoftState",
    "Status",
]
