"""``MemoryStore``: the ``Store`` in memory, with the same semantics as ``RocksStore``.

For core and runtime tests: same truncation rules, same errors for bad appends, the same
applied index, scans in byte order on a view fixed at the call, ``StorageError`` after
``close``.

Crash model. Every ``append`` and ``apply`` is one write; writes reach "disk" in order,
as RocksDB's write-ahead log does, and ``sync`` makes every earlier write durable. A crash
(power loss) keeps the writes up to the last ``sync`` and possibly a prefix of the later
ones, never a later write without the earlier ones. ``crash_copy(extra_writes=n)`` returns
the store that would be found after such a crash: everything synced plus the first ``n``
unsynced writes (default 0: the most pessimistic outcome). So state-machine applies done
after the last sync are dropped too, and the applied index goes back with them: the node
replays them from the log. A clean ``close`` + ``reopen`` keeps everything (the OS had it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from storage.base import Identity, KvOp, RaftState
from storage.rules import check_append, check_identity, check_wanted_identity
from wire.errors import StorageError
from wire.messages import Entry, HardState, SnapshotMeta

MEMORY_PATH = ":memory:"


@dataclass(slots=True)
class _State:
    """One copy of everything a store holds; ``log`` is contiguous from ``log[0].index``
    (``start.index + 1`` after compaction)."""

    log: list[Entry] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)
    kv: dict[bytes, bytes] = field(default_factory=dict)
    applied: int = 0
    start: SnapshotMeta | None = None  # the log start after compaction / an install
    installing: SnapshotMeta | None = None  # an install began and has not finished

    def copy(self) -> _State:
        return _State(
            list(self.log),
            self.hard_state,
            dict(self.kv),
            self.applied,
            self.start,
            self.installing,
        )

    @property
    def last_index(self) -> int:
        if self.log:
            return self.log[-1].index
        return self.start.index if self.start is not None else 0

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        if entries:
            cut = entries[0].index - self.log[0].index if self.log else 0
            if cut <= 0:
                self.log = list(entries)
            else:
                del self.log[cut:]  # conflict truncation: drop the old suffix
                self.log.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state

    def apply(self, ops: Sequence[KvOp], applied_index: int) -> None:
        for key, value in ops:
            if value is None:
                self.kv.pop(key, None)
            else:
                self.kv[key] = value
        self.applied = applied_index


@dataclass(frozen=True, slots=True)
class _Append:
    entries: tuple[Entry, ...]
    hard_state: HardState | None

    def replay(self, state: _State) -> None:
        state.append(self.entries, self.hard_state)


@dataclass(frozen=True, slots=True)
class _Apply:
    ops: tuple[KvOp, ...]
    applied_index: int

    def replay(self, state: _State) -> None:
        state.apply(self.ops, self.applied_index)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A snapshot write: compaction (``kv`` None, not ``finish``), the install marker
    (``begin``), the state machine replaced (``kv``), or the install finished."""

    meta: SnapshotMeta
    begin: bool = False
    kv: tuple[tuple[bytes, bytes], ...] | None = None
    finish: bool = False
    hard_state: HardState | None = None

    def replay(self, state: _State) -> None:
        if self.begin:
            state.installing = self.meta
        elif self.kv is not None:
            state.kv = dict(self.kv)
        elif self.finish:
            state.log, state.start, state.applied = [], self.meta, self.meta.index
            state.installing = None
            if self.hard_state is not None:
                state.hard_state = self.hard_state
        else:  # compaction
            state.log = [e for e in state.log if e.index > self.meta.index]
            state.start = self.meta


_Write = _Append | _Apply | _Snapshot  # one write not yet synced, replayed onto the durable copy


class MemoryView:
    """A copy of the state machine: ``StateView``."""

    def __init__(self, applied: int, items: list[tuple[bytes, bytes]]) -> None:
        self.applied_index = applied
        self._items = items

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._items)

    def close(self) -> None:
        self._items = []


class MemoryStore:
    """An in-memory ``Store``. ``path`` only names it in error messages."""

    def __init__(self, identity: Identity, path: str = MEMORY_PATH) -> None:
        check_wanted_identity(identity)
        self._identity = identity
        self._path = path
        self._live = _State()
        self._durable = _State()
        self._unsynced: list[_Write] = []
        self._lock = threading.Lock()  # sync() runs in a worker thread
        self._closed = False

    # --- Store ---

    @property
    def path(self) -> str:
        return self._path

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def last_index(self) -> int:
        """Index of the last stored log entry (0 when the log is empty)."""
        return self._live.last_index

    def load_raft_state(self) -> RaftState:
        self._check_open()
        with self._lock:
            return RaftState(self._live.hard_state, list(self._live.log), self._live.start)

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        self._check_open()
        if not entries and hard_state is None:
            return
        write = _Append(tuple(entries), hard_state)
        with self._lock:
            if entries:
                check_append(entries, self._live.last_index)
            write.replay(self._live)
            self._unsynced.append(write)

    def sync(self) -> None:
        self._check_open()
        with self._lock:
            for write in self._unsynced:
                write.replay(self._durable)
            self._unsynced.clear()

    def recover(self) -> None:
        """Nothing in memory fails; see ``storage.faults.FaultyStore`` for failures."""
        self._check_open()

    def applied_index(self) -> int:
        self._check_open()
        return self._live.applied

    def apply(self, ops: Sequence[KvOp], applied_index: int) -> None:
        self._check_open()
        write = _Apply(tuple(ops), applied_index)
        with self._lock:
            write.replay(self._live)
            self._unsynced.append(write)

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        return self._live.kv.get(key)

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Keys starting with ``prefix`` in byte order, as they were when ``scan`` was called."""
        self._check_open()
        with self._lock:
            items = sorted(kv for kv in self._live.kv.items() if kv[0].startswith(prefix))
        return self._scan(items)

    def close(self) -> None:
        self._closed = True

    # --- SnapshotStore ---

    def entry_term(self, index: int) -> int | None:
        self._check_open()
        with self._lock:
            start = self._live.start
            if start is not None and index == start.index:
                return start.term
            if index == 0:
                return 0
            for entry in self._live.log:
                if entry.index == index:
                    return entry.term
            return None

    def compact_log(self, index: int, voters: tuple[int, ...], membership: bytes = b"") -> None:
        start = self._live.start
        if index <= (start.index if start is not None else 0):
            return
        if index > self._live.applied:
            raise StorageError(
                f"data dir {self._path}: cannot compact the log to {index}, beyond the "
                f"applied index {self._live.applied}"
            )
        term = self.entry_term(index)
        if term is None:
            raise StorageError(f"data dir {self._path}: log entry {index} is not stored")
        self._write(_Snapshot(SnapshotMeta(index, term, voters, membership)))

    def open_view(self, scratch_dir: str) -> MemoryView:
        self._check_open()
        with self._lock:
            return MemoryView(self._live.applied, sorted(self._live.kv.items()))

    def pending_install(self) -> SnapshotMeta | None:
        self._check_open()
        return self._live.installing

    def begin_install(self, meta: SnapshotMeta) -> None:
        self._write(_Snapshot(meta, begin=True))
        self.sync()

    def replace_kv(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        meta = self._live.installing or SnapshotMeta()
        self._write(_Snapshot(meta, kv=tuple(items)))

    def finish_install(self, meta: SnapshotMeta, hard_state: HardState | None = None) -> None:
        self._write(_Snapshot(meta, finish=True, hard_state=hard_state))
        self.sync()

    def _write(self, write: _Snapshot) -> None:
        self._check_open()
        with self._lock:
            write.replay(self._live)
            self._unsynced.append(write)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"last_index={self.last_index}"
        return f"<MemoryStore {self._path} node {self._identity.node_id} {state}>"

    # --- simulation ---

    def crash_copy(self, *, extra_writes: int = 0) -> MemoryStore:
        """The store found after a crash now: the synced state plus the first
        ``extra_writes`` unsynced writes (see the module docstring). This store is untouched;
        works on a closed store too."""
        if extra_writes < 0:
            raise ValueError("extra_writes must be >= 0")
        with self._lock:
            state = self._durable.copy()
            for write in self._unsynced[:extra_writes]:
                write.replay(state)
            return self._successor(state, state.copy(), [])

    @property
    def unsynced_writes(self) -> int:
        """How many writes a crash now could lose."""
        return len(self._unsynced)

    def reopen(self, identity: Identity | None = None) -> MemoryStore:
        """Close this store cleanly and open its data again, as ``open_store`` would: every
        write is kept (the OS had it), unsynced writes stay unsynced, and StorageError if
        ``identity`` does not match."""
        self.close()
        if identity is not None:
            check_wanted_identity(identity)
            check_identity(self._path, self._identity, identity)
        with self._lock:
            return self._successor(self._live.copy(), self._durable.copy(), list(self._unsynced))

    # --- internals ---

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"data dir {self._path}: store is closed")

    def _successor(self, live: _State, durable: _State, unsynced: list[_Write]) -> MemoryStore:
        store = MemoryStore(self._identity, self._path)
        store._live, store._durable, store._unsynced = live, durable, unsynced
        return store

    def _scan(self, items: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for item in items:
            self._check_open()
            yield item
