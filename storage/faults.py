"""``FaultyStore``: any ``Store``, with a disk that fails on demand (fault injection).

``fail("append", "sync", "apply")`` makes those calls raise ``StorageError`` without reaching
the wrapped store: a failed ``append`` or ``apply`` writes nothing, a failed ``sync`` makes
nothing durable (on a ``MemoryStore``, ``crash_copy`` then shows what a crash would keep).
The failure semantics of ``RocksStore`` follow: once a write or sync has failed, every
later write and sync is refused until ``recover()`` succeeds. Reads always pass through.

``fail(*ops)`` lasts until ``heal()`` (a full disk): ``recover()`` fails meanwhile.
``fail(*ops, times=n)`` fails only the next ``n`` calls of those operations that reach
the disk (a transient error): ``recover()`` succeeds, and the next call may fail again.
Thread-safe: ``sync`` runs in a worker thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence

from storage.base import DataCorruption, Identity, KvOp, RaftState, Store
from wire.errors import StorageError
from wire.messages import Entry, HardState

OPERATIONS = ("append", "sync", "apply")


class FaultyStore:
    """Wraps ``inner``; see the module docstring."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._faults: dict[str, int | None] = {}  # op -> failures left (None: until healed)
        self._message = ""
        self._corrupt = False
        self._broken: StorageError | None = None
        self.injected: Counter[str] = Counter()  # failures raised so far, by operation
        self.refused = 0  # writes refused while broken (not reaching the disk)

    # --- fault control ---

    def fail(
        self, *ops: str, times: int | None = None, reason: str = "I/O error", corrupt: bool = False
    ) -> None:
        """Make ``ops`` fail: the next ``times`` calls of each, or all until ``heal()``.
        ``corrupt`` raises ``DataCorruption`` (damaged data) instead of a write failure."""
        unknown = set(ops) - set(OPERATIONS)
        if unknown or not ops:
            raise ValueError(f"operations must be among {OPERATIONS}, not {sorted(unknown)}")
        with self._lock:
            for op in ops:
                self._faults[op] = times
            self._message = reason
            self._corrupt = corrupt

    def heal(self) -> None:
        """The disk works again; ``recover()`` will now succeed."""
        with self._lock:
            self._faults.clear()

    @property
    def failing(self) -> bool:
        """A fault is active."""
        with self._lock:
            return any(left is None or left > 0 for left in self._faults.values())

    @property
    def broken(self) -> bool:
        """A write failed and ``recover()`` has not succeeded since."""
        return self._broken is not None

    # --- Store ---

    @property
    def path(self) -> str:
        return self.inner.path

    @property
    def identity(self) -> Identity:
        return self.inner.identity

    def load_raft_state(self) -> RaftState:
        return self.inner.load_raft_state()

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        self._write("append")
        self.inner.append(entries, hard_state)

    def sync(self) -> None:
        self._write("sync")
        self.inner.sync()

    def recover(self) -> None:
        with self._lock:
            if self._broken is not None:
                if any(left is None for left in self._faults.values()):
                    raise StorageError(f"data dir {self.path}: still failing ({self._broken})")
                self._broken = None  # a counted fault may strike again at the next write
        self.inner.recover()

    def applied_index(self) -> int:
        return self.inner.applied_index()

    def apply(self, ops: Sequence[KvOp], applied_index: int) -> None:
        self._write("apply")
        self.inner.apply(ops, applied_index)

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(prefix)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"<FaultyStore {self.inner!r} faults={self._faults} broken={self.broken}>"

    # --- internals ---

    def _write(self, op: str) -> None:
        with self._lock:
            if self._broken is not None:
                self.refused += 1
                raise StorageError(
                    f"data dir {self.path}: writes refused until recovered ({self._broken})"
                )
            left = self._faults.get(op, 0)
            if left is None or left > 0:
                if left is not None:
                    self._faults[op] = left - 1
                self.injected[op] += 1
                message = f"data dir {self.path}: {op} failed: injected fault: {self._message}"
                if self._corrupt:
                    raise DataCorruption(message)
                self._broken = StorageError(message)
                raise self._broken
