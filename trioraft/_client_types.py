"""Results of client calls (frozen dataclasses), besides the wire types they carry
(``KeyValue``, ``OpResult``, ``Event``, ``Compare``, ``TxnOp`` from ``wire.client_messages``)."""

from __future__ import annotations

from dataclasses import dataclass

from wire.client_messages import KeyValue, OpResult


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A get: the value (None if absent), the applied index it reflects (``revision``), and
    the key's metadata (``kv``: create and mod revision, version) when it exists."""

    value: bytes | None
    revision: int
    kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class CasResult:
    """A compare-and-swap: whether it swapped, the revision (log index) of the attempt, and
    on failure the value found (``current``; None if the key was absent). ``current`` is
    None when it succeeded."""

    succeeded: bool
    revision: int
    current: bytes | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A transaction: which branch ran, its revision (log index), one result per op."""

    succeeded: bool
    revision: int
    results: list[OpResult]


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A scan page: the entries in key order, the applied index they reflect, and a
    ``continuation`` token for the next page (None when the range is exhausted)."""

    entries: list[KeyValue]
    revision: int
    continuation: bytes | None

    @property
    def more(self) -> bool:
        return self.continuation is not None
