"""Durable state of a trioraft node: the Raft log, hard state, identity and the kv data.

``open_store`` opens the RocksDB-backed store; ``MemoryStore`` is its in-memory twin for
tests. Both implement the ``Store`` protocol of ``storage.base``; ``FaultyStore`` wraps
either and fails writes on demand (fault-injection tests).
"""

from storage.base import FORMAT_VERSION, DataCorruption, Identity, KvOp, RaftState, Store
from storage.faults import FaultyStore
from storage.memory import MemoryStore
from storage.rocks import RocksStore, open_store

__all__ = [
    "FORMAT_VERSION",
    "DataCorruption",
    "FaultyStore",
    "Identity",
    "KvOp",
    "MemoryStore",
    "RaftState",
    "RocksStore",
    "Store",
    "open_store",
]
