"""Durable state of a trioraft node: the Raft log, hard state, identity and the kv data.

``open_store`` opens the RocksDB-backed store; ``MemoryStore`` is its in-memory twin for
tests. Both implement the ``Store`` protocol of ``storage.base``.
"""

from storage.base import FORMAT_VERSION, Identity, KvOp, RaftState, Store
from storage.memory import MemoryStore
from storage.rocks import RocksStore, open_store

__all__ = [
    "FORMAT_VERSION",
    "Identity",
    "KvOp",
    "MemoryStore",
    "RaftState",
    "RocksStore",
    "Store",
    "open_store",
]
