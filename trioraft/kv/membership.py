"""The cluster membership as of the applied index, kept with the state machine.

Configuration entries (and leaders' address announcements, see
``trioraft.core.confstate``) change it when they are applied; the new value is written in
the same storage batch as the applied index, under ``layout.META_MEMBERSHIP``: the index
of the entry that set it (u64 big-endian), then the membership (``encode_membership``). So
a restarted node knows its membership as of its applied index, and the configuration
entries above that index in its log bring it up to date (``RawNode(membership=...)``).
A snapshot of the state machine carries it along.

A node of a new cluster has nothing stored until the first change applies: its base is
the initial voters of its configuration (``set_base``). A node that joined an existing
cluster stores the membership it was given right away (``write_base``).
"""

from __future__ import annotations

import logging

from storage.base import KvOp, Store
from trioraft.core.confstate import (
    Membership,
    decode_membership,
    encode_membership,
    next_membership,
)
from trioraft.kv import layout
from wire.errors import StorageError
from wire.messages import Entry, EntryKind

log = logging.getLogger(__name__)


class MembershipRecord:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.stored = False
        # (index of the entry that set it, membership) as of the applied index
        self.value: tuple[int, Membership] | None = self._load()
        self._staged = self.value  # during an apply batch

    def _load(self) -> tuple[int, Membership] | None:
        raw = self._store.get(layout.META_MEMBERSHIP)
        if raw is None:
            return None
        try:
            if len(raw) < 8:
                raise ValueError("too short")
            value = layout.unpack_u64(raw[:8]), decode_membership(raw[8:])
        except ValueError as exc:
            raise StorageError(f"data dir {self._store.path}: membership record: {exc}") from None
        self.stored = True
        return value

    def set_base(self, index: int, m: Membership) -> None:
        """The membership before any change was applied (nothing is stored yet)."""
        if self.value is None:
            self.value = self._staged = (index, m)

    def write_base(self, index: int, m: Membership) -> None:
        """Store ``m`` (set by entry ``index``) as the membership of a node that joins an
        existing cluster (its state machine is empty). Unsynced, like every apply."""
        ops: list[KvOp] = [
            (layout.META_LAYOUT, layout.pack_u64(layout.LAYOUT_VERSION)),
            (layout.META_MEMBERSHIP, layout.pack_u64(index) + encode_membership(m)),
        ]
        self._store.apply(ops, self._store.applied_index())
        self.value = self._staged = (index, m)
        self.stored = True

    def stage(self, entry: Entry, ops: list[KvOp], out: list[tuple[int, Membership]]) -> None:
        """A non-NORMAL entry is applied: if it changes the membership, queue the write and
        report ``(index, membership)`` in ``out``."""
        prev = self._staged[1] if self._staged is not None else None
        try:
            if entry.kind is EntryKind.CONFIG:
                after: Membership | None = decode_membership(entry.data)
            else:
                after = next_membership(prev, entry) if prev is not None else None
        except ValueError as exc:  # the core refuses such entries: this is damage
            log.error("log entry %d: bad configuration entry (%s); skipped", entry.index, exc)
            return
        if after is None or after == prev:
            return
        self._staged = (entry.index, after)
        ops.append(
            (layout.META_MEMBERSHIP, layout.pack_u64(entry.index) + encode_membership(after))
        )
        out.append((entry.index, after))

    def commit(self) -> None:
        """The batch was stored."""
        self.value = self._staged
        self.stored = self.stored or self.value is not None

    def rollback(self) -> None:
        self._staged = self.value

    def reload(self) -> None:
        """The state machine was replaced (a snapshot was installed)."""
        value = self._load()
        if value is not None:
            self.value = self._staged = value
