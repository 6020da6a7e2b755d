"""The replicated KV state machine: turns committed entries into storage writes.

Only the apply task calls ``apply``. A batch of committed entries becomes one atomic storage
batch that also records the applied index, so a crash leaves data and applied index
consistent; whatever an unsynced batch lost is re-applied from the log on restart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from storage.base import KvOp, Store
from trioraft.kv.commands import Delete, Put, decode_command
from wire.errors import InvalidRequest
from wire.messages import Entry, EntryKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriteResult:
    revision: int
    existed: bool


class KVStateMachine:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._applied = store.applied_index()

    @property
    def applied(self) -> int:
        return self._applied

    def apply(self, entries: Sequence[Entry]) -> dict[int, WriteResult]:
        """Apply committed entries in order; return the result of each NORMAL entry by index.

        Entries at or below the applied index (re-delivered after a restart) are skipped.
        """
        ops: list[KvOp] = []
        results: dict[int, WriteResult] = {}
        # Keys written earlier in this batch: their stored value is stale for `existed`.
        overlay: dict[bytes, bytes | None] = {}
        last = self._applied
        for entry in entries:
            if entry.index <= self._applied:
                continue
            last = entry.index
            if entry.kind != EntryKind.NORMAL:
                continue
            try:
                cmd = decode_command(entry.data)
            except InvalidRequest as exc:
                log.error("log entry %d: %s; skipped", entry.index, exc)
                continue
            key = cmd.key
            existed = (overlay[key] if key in overlay else self._store.get(key)) is not None
            if isinstance(cmd, Put):
                ops.append((key, cmd.value))
                overlay[key] = cmd.value
            elif isinstance(cmd, Delete):
                if existed:
                    ops.append((key, None))
                overlay[key] = None
            results[entry.index] = WriteResult(entry.index, existed)
        if last > self._applied:
            self._store.apply(ops, last)
            self._applied = last
        return results

    def get(self, key: bytes) -> bytes | None:
        return self._store.get(key)
