"""The Raft log as the core sees it: entries, and how far they are durable, committed, applied.

The log from ``first_index`` on is held in memory. A snapshot (§7) lets a prefix go:
``compact_to`` drops the entries up to an applied index, and ``restore`` replaces the whole
log with an installed snapshot. Index ``first_index - 1`` is then the last compacted entry,
whose term is ``snapshot_term``.

Markers and their invariants::

    first_index - 1 <= applied <= committed <= last_index     (committed never decreases)
    applied <= written <= in_progress <= last_index
    stabled <= written

- ``stabled``: the shell confirmed that entries up to here are durable (``advance`` of a
  synced Ready, or ``synced``).
- ``written``: the shell wrote entries up to here, in order, though perhaps not synced yet:
  any later write (an apply) reaches the disk after them, so a crash cannot keep the later
  write without them. Committed entries are applied up to here.
- ``in_progress``: entries up to here were handed to the shell in a ``Ready``.
- ``applied``: entries up to here were handed to the state machine and advanced.

Applied entries are kept packed, each as one ``bytes`` (term, kind, then the data), where
the rest of the log is ``Entry`` objects. CPython's collector never tracks ``bytes``, while
every ``Entry`` is tracked: a node holds up to ``snapshot_entries`` applied entries, and
collections scanning them paused the node for 5-80 ms at a time under write load
(docs/performance.md, "No collections under write load"). Packing happens once, when
entries are applied; reading a packed entry (a lagging follower's catch-up, ``entry``,
``slice``) rebuilds its ``Entry``. Applied entries are committed, so packed ones are never
truncated, only compacted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from itertools import chain, islice

from trioraft.core.types import CoreInvariantError
from wire.messages import Entry, EntryKind

_PACKED_HEAD = struct.Struct("<QB")  # an applied entry: term, kind; then its data
_DATA = _PACKED_HEAD.size
_KIND_AT = 8  # the kind's byte in a packed entry
_NORMAL = int(EntryKind.NORMAL)
_KINDS = {int(kind): kind for kind in EntryKind}


def entry_size(entry: Entry) -> int:
    """The size counted against ``max_append_bytes``: the payload length."""
    return len(entry.data)


class RaftLog:
    __slots__ = (
        "_entries",
        "_packed",
        "applied",
        "committed",
        "conflicts",
        "first_index",
        "in_progress",
        "on_append",
        "snapshot_term",
        "stabled",
        "written",
    )

    def __init__(
        self,
        entries: Sequence[Entry] = (),
        *,
        first_index: int = 1,
        snapshot_term: int = 0,
        committed: int = 0,
        applied: int = 0,
    ) -> None:
        """A log whose ``entries`` (starting at ``first_index``) are all durable."""
        for offset, entry in enumerate(entries):
            if entry.index != first_index + offset:
                raise ValueError(
                    f"entries must be consecutive from {first_index}; "
                    f"entry #{offset} has index {entry.index}"
                )
        self._packed: list[bytes] = []  # entries first_index .. first_index + len - 1
        self._entries: list[Entry] = list(entries)  # the rest, up to last_index
        self.first_index = first_index
        self.snapshot_term = snapshot_term
        last = first_index - 1 + len(self._entries)
        if not first_index - 1 <= applied <= committed <= last:
            raise ValueError(
                f"need {first_index - 1} <= applied ({applied}) <= committed ({committed}) "
                f"<= last index ({last})"
            )
        self.committed = committed
        self.applied = applied
        self.stabled = last
        self.written = last
        self.in_progress = last
        self.conflicts = 0  # appends that replaced entries (a new leader's log won)
        self._pack_to(applied)
        # Called after every append with the entries that replaced the log from their first
        # index on (Raft follows configuration entries with it: trioraft.core.membership).
        self.on_append: Callable[[Sequence[Entry]], None] | None = None

    # --- reading ---------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.first_index - 1 + len(self._packed) + len(self._entries)

    @property
    def last_term(self) -> int:
        term = self.term_at(self.last_index)
        assert term is not None
        return term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or beyond the end."""
        first = self.first_index
        hot = first + len(self._packed)
        if hot <= index < hot + len(self._entries):
            return self._entries[index - hot].term
        if first <= index < hot:
            term: int = _PACKED_HEAD.unpack_from(self._packed[index - first])[0]
            return term
        if index == first - 1:
            return self.snapshot_term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def entry(self, index: int) -> Entry:
        """The entry at ``index``, which must be in the log (``first_index`` on)."""
        hot = self.first_index + len(self._packed)
        if index >= hot:
            return self._entries[index - hot]
        packed = self._packed[index - self.first_index]
        term, kind = _PACKED_HEAD.unpack_from(packed)
        return Entry(term, index, _KINDS[kind], packed[_DATA:])

    def slice(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Entries with ``lo <= index < hi`` (clamped to the log)."""
        lo = max(lo, self.first_index)
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return ()
        hot = self.first_index + len(self._packed)
        if lo >= hot:
            return tuple(self._entries[lo - hot : hi - hot])
        packed = map(self.entry, range(lo, min(hi, hot)))
        return tuple(chain(packed, self._entries[: max(hi - hot, 0)]))

    def non_normal_from(self, lo: int) -> list[Entry]:
        """The entries from ``lo`` on that are not NORMAL (configuration changes, no-ops),
        found without rebuilding the packed NORMAL ones: start-up reads the whole log."""
        lo = max(lo, self.first_index)
        first, hot = self.first_index, self.first_index + len(self._packed)
        packed = self._packed
        out = [self.entry(i) for i in range(lo, hot) if packed[i - first][_KIND_AT] != _NORMAL]
        rest = islice(self._entries, max(lo - hot, 0), None)
        out += [e for e in rest if e.kind is not EntryKind.NORMAL]
        return out

    def entries_from(self, lo: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries from ``lo`` whose sizes sum to at most ``max_bytes``, but at least one."""
        out: list[Entry] = []
        total = 0
        lo = max(lo, self.first_index)
        hot = self.first_index + len(self._packed)
        packed = map(self.entry, range(lo, hot))  # rebuilt only as far as taken
        for entry in chain(packed, islice(self._entries, max(lo - hot, 0), None)):
            total += entry_size(entry)
            if out and total > max_bytes:
                break
            out.append(entry)
        return tuple(out)

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Election restriction (§5.4.1): is a log ending at (last_index, last_term) at
        least as up-to-date as ours?"""
        ours = self.last_term
        return last_term > ours or (last_term == ours and last_index >= self.last_index)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first of ``entries`` that is missing or differs in term; 0 if none."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last (index, term) at or below ``index`` whose term is <= ``term``.

        Used on both sides of fast backtracking: everything above the returned index is
        known not to match a log whose entry at ``index`` has ``term`` (§5.3).
        """
        index = min(index, self.last_index)
        while index >= self.first_index:
            found = self.term_at(index)
            assert found is not None
            if found <= term:
                return index, found
            index -= 1
        return self.first_index - 1, self.snapshot_term

    # --- writing ---------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, replacing any suffix from ``entries[0].index``.

        Raises ``CoreInvariantError`` if that would replace a committed entry or leave a gap.
        """
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise CoreInvariantError(
                f"refusing to overwrite committed entry {first} (committed={self.committed})"
            )
        if first > self.last_index + 1:
            raise CoreInvariantError(f"gap: appending {first} after last {self.last_index}")
        if first <= self.last_index:
            self.conflicts += 1
        # packed entries are applied, so committed: all of them lie below ``first``
        del self._entries[first - self.first_index - len(self._packed) :]
        self.stabled = min(self.stabled, first - 1)
        self.written = min(self.written, first - 1)
        self.in_progress = min(self.in_progress, first - 1)
        self._entries.extend(entries)
        if self.on_append is not None:
            self.on_append(entries)

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """The follower side of AppendEntries (§5.3).

        If our log has ``prev_term`` at ``prev_index``, append the entries that are new,
        truncating only from the first *conflicting* entry: entries that already match are
        never removed, so a stale or duplicated message cannot shorten the log. Then advance
        the commit index to ``min(commit, last new index)`` and return that last new index.
        Returns None if the consistency check fails.
        """
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        """Raise the commit index (never lowers it, never beyond the log). True if raised."""
        index = min(index, self.last_index)
        if index <= self.committed:
            return False
        self.committed = index
        return True

    # --- the shell's view ----------------------------------------------------------

    def unstable_entries(self) -> tuple[Entry, ...]:
        """Entries not yet handed to the shell for persisting."""
        return self.slice(self.in_progress + 1, self.last_index + 1)

    def accept_unstable(self) -> None:
        """The shell took ``unstable_entries()``; do not hand them out again."""
        self.in_progress = self.last_index

    def written_to(self, index: int) -> None:
        """The shell wrote entries up to ``index`` (as handed out), perhaps unsynced.

        If part of what was handed out was truncated meanwhile, ``in_progress`` was lowered
        with it, so only the still-valid prefix counts; the replacement entries will be
        handed out again.
        """
        self.written = max(self.written, min(index, self.in_progress))

    def stable_to(self, index: int) -> None:
        """The shell made entries up to ``index`` durable (at most what it wrote)."""
        self.stabled = max(self.stabled, min(index, self.written))

    def next_committed_entries(self) -> tuple[Entry, ...]:
        """Entries that are committed and written here but not yet applied."""
        return self.slice(self.applied + 1, min(self.committed, self.written) + 1)

    def has_next_committed_entries(self) -> bool:
        return min(self.committed, self.written) > self.applied

    # --- compaction (§7) -------------------------------------------------------------

    def compact_to(self, index: int) -> list[object]:
        """Drop the entries up to ``index`` (applied and durable) and return what held
        them: freeing ~100,000 entries at once stops the caller for 10-30 ms, so the shell
        frees them a slice at a time (``Node._raft_loop``).

        No-op (``[]``) for an index at or below the current start. Raises
        ``CoreInvariantError`` beyond what is applied or durable: a snapshot covers only
        applied state.
        """
        if index < self.first_index:
            return []
        if index > self.applied or index > self.stabled:
            raise CoreInvariantError(
                f"compacting to {index} beyond applied {self.applied} / stabled {self.stabled}"
            )
        term = self.term_at(index)
        assert term is not None
        cut = index - self.first_index + 1
        dropped: list[object] = list(self._packed[:cut])
        del self._packed[:cut]
        if cut > len(dropped):
            rest = cut - len(dropped)
            dropped += self._entries[:rest]
            del self._entries[:rest]
        self.first_index = index + 1
        self.snapshot_term = term
        return dropped

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot of ``index``/``term``: committed, applied and
        durable up to it (the shell installs the data before it acknowledges anything)."""
        if index <= self.committed:
            raise CoreInvariantError(f"restoring {index} at or below committed {self.committed}")
        self._packed, self._entries = [], []
        self.first_index = index + 1
        self.snapshot_term = term
        self.committed = self.applied = self.stabled = self.written = self.in_progress = index

    def applied_to(self, index: int) -> None:
        if not self.applied <= index <= self.committed:
            raise CoreInvariantError(
                f"applied_to({index}) outside [{self.applied}, {self.committed}]"
            )
        self.applied = index
        self._pack_to(index)

    def _pack_to(self, index: int) -> None:
        """Pack the entries up to ``index`` (applied)."""
        n = index - self.first_index - len(self._packed) + 1
        if n > 0:
            done = self._entries[:n]
            del self._entries[:n]
            pack = _PACKED_HEAD.pack
            self._packed += [pack(e.term, e.kind) + e.data for e in done]
