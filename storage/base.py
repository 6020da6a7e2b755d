"""The storage interface, shared by the RocksDB store and its in-memory twin.

One store per node holds the Raft log, the hard state, the node's identity and the state
machine's data. Ownership (see docs/architecture.md): only the persist task calls
``append``/``sync``; only the apply task calls ``apply``; any task may read.

Durability contract:
- ``append`` and ``apply`` write atomically (one write batch each) but do **not** sync.
- ``sync`` makes everything written before it durable (one fsync of the WAL, which gives
  group commit: every batch written since the last sync rides on it). It blocks and releases
  the GIL, so the node calls it from a worker thread.
- State-machine applies are never synced on their own: after a crash the applied index may
  go back, and the node re-applies committed entries from the (synced) log.

Failure contract (docs/durability.md):
- ``append``, ``apply`` and ``sync`` raise ``StorageError`` when the disk fails (full, I/O
  error). Nothing written since the last successful ``sync`` is then known to be durable,
  and the store refuses further writes until ``recover()`` succeeds; the caller then
  rewrites whatever it had not synced (appends are idempotent) and syncs again. Reads keep
  working while the store waits for recovery.
- ``DataCorruption`` (a ``StorageError``) means stored data is damaged: retrying will not
  help. Opening or loading a damaged store raises it, naming the dir and the log index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from wire.errors import StorageError
from wire.messages import Entry, HardState, SnapshotMeta

FORMAT_VERSION = 1


class DataCorruption(StorageError):
    """Stored data fails a checksum or is malformed; the message names the dir (and the log
    index where known). Not transient: the node must not start on it."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a data dir belongs to; checked on every open."""

    cluster_id: int
    node_id: int
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class RaftState:
    """What Raft recovers on start: hard state and the whole stored log, in index order.

    After log compaction (docs/snapshots.md) ``snapshot`` is where the log starts: the last
    compacted index and term; ``entries`` then begin at ``snapshot.index + 1``."""

    hard_state: HardState
    entries: list[Entry]
    snapshot: SnapshotMeta | None = None


# A state-machine write: (key, value) puts, (key, None) deletes. Applied in order.
KvOp = tuple[bytes, bytes | None]


class Store(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def identity(self) -> Identity: ...

    # --- Raft log and hard state (persist task) ---
    def load_raft_state(self) -> RaftState: ...

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        """Write entries and/or hard state in one atomic batch, unsynced.

        Entries are consecutive. If stored entries exist at ``entries[0].index`` or above,
        they are replaced: every stored entry with index >= ``entries[0].index`` that is not
        in ``entries`` is deleted (Raft conflict truncation, §5.3).
        """
        ...

    def sync(self) -> None:
        """Block until everything written so far is durable. Call from a worker thread."""
        ...

    def recover(self) -> None:
        """After ``append``/``apply``/``sync`` raised: make writes possible again (the
        RocksDB store reopens its DB). No-op if nothing failed. Raises ``StorageError`` if
        not possible yet; call again later. Must not run while a ``sync`` is in flight."""
        ...

    # --- State machine (apply task) ---
    def applied_index(self) -> int: ...

    def apply(self, ops: Sequence[KvOp], applied_index: int) -> None:
        """Apply ops in order and record ``applied_index`` in the same atomic batch, unsynced."""
        ...

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Keys starting with ``prefix`` in byte order, with their values."""
        ...

    def close(self) -> None: ...


class StateView(Protocol):
    """A point-in-time copy of the state machine (``SnapshotStore.open_view``)."""

    @property
    def applied_index(self) -> int: ...

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every state-machine key and value, in byte order of the keys."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SnapshotStore(Store, Protocol):
    """A ``Store`` that supports snapshots and log compaction (docs/snapshots.md).

    Threads: ``open_view`` and the install steps may run in a worker thread while the
    owner thread reads; the caller serializes them with each other and with writes to the
    state machine (the apply task is idle while it installs).
    """

    def entry_term(self, index: int) -> int | None:
        """Term of stored entry ``index`` (or of the log start); None if not stored."""
        ...

    def compact_log(self, index: int, voters: tuple[int, ...], membership: bytes = b"") -> None:
        """Delete stored entries up to ``index`` (which must be stored and applied) and
        record ``index``/its term (and the configuration there) as the log start, in one
        unsynced batch. No-op at or below the current start."""
        ...

    def open_view(self, scratch_dir: str) -> StateView:
        """A consistent copy of the state machine now, taken without stopping writes
        (RocksDB: a checkpoint under ``scratch_dir``, removed on ``close``). Blocking."""
        ...

    def pending_install(self) -> SnapshotMeta | None:
        """A snapshot install that a crash interrupted, to be redone before anything else."""
        ...

    def begin_install(self, meta: SnapshotMeta) -> None:
        """Step 1 of an install: record (durably, before returning) that ``meta`` is being
        installed. From here until ``finish_install`` the state machine is incomplete and
        a reopened store reports ``pending_install``."""
        ...

    def replace_kv(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Step 2: replace the whole state machine by ``items`` (keys in byte order)."""
        ...

    def finish_install(self, meta: SnapshotMeta, hard_state: HardState | None = None) -> None:
        """Step 3, one atomic batch: applied index and log start = ``meta``, the whole log
        deleted, ``hard_state`` (if given) stored, the install marker cleared; then synced.
        Blocking (it syncs)."""
        ...
