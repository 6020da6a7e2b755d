"""Raft's safety properties (Figure 3 of the paper, plus what the shell contract adds),
checked incrementally after every simulation step.

- Election safety: at most one leader per term, over the whole run.
- Leader append-only: a leader never overwrites or deletes entries in its term.
- Leader commit rule (§5.4.2): a leader's commit index only moves onto an entry of its own
  term; entries of earlier terms are committed only indirectly (Figure 8).
- Log matching: two logs with an entry of the same index and term hold the same entry there
  and agree on everything before it (checked inductively: every (index, term) fixes the
  entry and the term of its predecessor).
- Leader completeness: a leader holds every entry that was committed before its term.
- State machine safety: every node applies the same entry at an index, in index order.
- Monotonic terms and commit indexes: per node in memory (per incarnation) and on disk.
- Durability: a granted vote or an append acknowledgement leaves only once it is durable,
  and a leader counts its own copy toward a commit only once it is durable.
- Client safety: an acknowledged proposal is the entry committed at its index, and no value
  is applied at two indexes (applied once).
- Linearizable reads: a ReadIndex or lease read issued after a write was acknowledged reads
  at an index that includes that write.
- Lease safety (thesis §6.4.1): while a leader's lease is valid, no node leads a later term.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sim.cluster import SimNode
from trioraft.core import Role
from trioraft.core.log import RaftLog
from wire.messages import (
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Message,
    RequestVoteResponse,
)


class InvariantViolation(AssertionError):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass
class Committed:
    entry: Entry
    observed_term: int  # term of the node that showed it committed (>= its commit term)


@dataclass
class NodeWatch:
    incarnation: int = 0
    term: int = 0
    commit: int = 0  # commit index already recorded from this incarnation
    disk_term: int = 0
    disk_commit: int = 0
    checked_len: int = 0  # log prefix already checked for log matching
    checked_conflicts: int = 0  # the log's replaced suffixes when it was checked
    leader_term: int = 0  # term in which we last saw it lead (0: not leading)
    leader_last: int = 0
    leader_last_entry: Entry | None = None
    leader_conflicts: int = 0  # the log's replaced suffixes when it was last checked
    leader_commit: int = 0
    completeness_cursor: int = 0  # into Checker.committed_order


class Checker:
    def __init__(self, nodes: dict[int, SimNode], skip: frozenset[str] = frozenset()) -> None:
        """``skip`` names invariants not to check (to show what the others catch alone)."""
        self.nodes = nodes
        self.skip = skip
        self.watch = {i: NodeWatch() for i in nodes}
        self.leader_of_term: dict[int, int] = {}
        self.by_key: dict[tuple[int, int], tuple[Entry, int]] = {}  # (index, term) -> (e, prev)
        self.committed: dict[int, Committed] = {}
        self.committed_order: list[int] = []  # indexes, in the order they were recorded
        self.applied: dict[int, Entry] = {}
        self.value_index: dict[bytes, int] = {}  # NORMAL data -> index it was applied at
        self.acked: dict[bytes, int] = {}  # acknowledged value -> index
        self.max_acked = 0  # highest index acknowledged to a client so far
        self.reads: dict[int, int] = {}  # read context -> max_acked when it was issued
        self.leading: dict[int, int] = {}  # node -> term, for nodes that lead right now

    # --- after every step ----------------------------------------------------------------

    def check(self, touched: Iterable[int] | None = None) -> None:
        """Check the nodes a step ``touched`` (default: all); the others did not change."""
        leading = self.leading
        for i in self.nodes if touched is None else touched:
            sn = self.nodes[i]
            w = self.watch[i]
            self._check_disk(i, sn, w)
            leading.pop(i, None)
            if sn.node is None:
                w.leader_term = 0
                continue
            raft = sn.node._raft
            if w.incarnation != sn.incarnation:  # restarted: memory is rebuilt from disk
                w.incarnation = sn.incarnation
                w.term = raft.term
                w.commit = 0
                w.checked_len = 0
                w.leader_term = 0
            if raft.term < w.term:
                self.fail("monotonic terms", f"node {i} term went from {w.term} to {raft.term}")
            w.term = raft.term
            log = raft.log
            self._check_log_matching(i, log.entry, log.last_index, log.conflicts, w)
            self._record_commits(i, raft.log, raft.term, w)
            if raft.role is Role.LEADER:
                me = raft.prs.get(i)
                if me is not None and me.match > len(sn.disk.entries):
                    self.fail(
                        "durable self count",
                        f"leader {i} counts itself at index {me.match} with "
                        f"{len(sn.disk.entries)} entries durable",
                    )
                self._check_leader(i, raft.term, raft.log, w)
                leading[i] = raft.term
            else:
                w.leader_term = 0
        if len(leading) > 1:
            self._check_leases(list(leading))

    def _check_leases(self, leaders: list[int]) -> None:
        newest = max(leaders, key=lambda i: self.nodes[i].raft.term)
        for i in leaders:
            node = self.nodes[i].node
            if i != newest and node is not None and node.lease_valid():
                self.fail(
                    "lease safety",
                    f"node {i} holds a valid lease in term {node.status.term} while node "
                    f"{newest} leads term {self.nodes[newest].raft.term}",
                )

    def _check_disk(self, i: int, sn: SimNode, w: NodeWatch) -> None:
        hs = sn.disk.hard_state
        if hs.term < w.disk_term:
            self.fail("monotonic terms", f"node {i} durable term {w.disk_term} -> {hs.term}")
        if hs.commit < w.disk_commit:
            self.fail("monotonic commit", f"node {i} durable commit {w.disk_commit} -> {hs.commit}")
        w.disk_term, w.disk_commit = hs.term, hs.commit

    def _check_disk_log(self, i: int, entries: list[Entry]) -> None:
        """Log matching over a node's durable log, all of it."""
        self._check_log_matching(i, lambda k: entries[k - 1], len(entries), 0, NodeWatch())

    def _check_log_matching(
        self, i: int, entry: Callable[[int], Entry], last: int, conflicts: int, w: NodeWatch
    ) -> None:
        """The entries 1..``last`` (``entry(k)`` is the one at position k); ``conflicts``
        counts the log's replaced suffixes, which make everything be checked again."""
        n = w.checked_len
        if n > last or conflicts != w.checked_conflicts:
            n = 0  # entries were replaced, perhaps below what we checked: check it all again
        by_key = self.by_key
        prev = entry(n).term if n else 0
        for k in range(n, last):
            e = entry(k + 1)
            if e.index != k + 1:
                self.fail("log matching", f"node {i} has index {e.index} at position {k + 1}")
            key = (e.index, e.term)
            seen = by_key.get(key)
            if seen is None:
                by_key[key] = (e, prev)
            elif seen[0] != e or seen[1] != prev:
                self.fail(
                    "log matching",
                    f"node {i} holds {e} after term {prev}; another log holds {seen[0]} "
                    f"after term {seen[1]}",
                )
            prev = e.term
        w.checked_len = last
        w.checked_conflicts = conflicts

    def _record_commits(self, i: int, log: RaftLog, term: int, w: NodeWatch) -> None:
        if log.committed < w.commit:
            self.fail("monotonic commit", f"node {i} commit {w.commit} -> {log.committed}")
        for index in range(w.commit + 1, log.committed + 1):
            e = log.entry(index)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = Committed(e, term)
                self.committed_order.append(index)
            elif known.entry != e:
                self.fail(
                    "state machine safety",
                    f"node {i} committed {e} at index {index}, but {known.entry} was committed "
                    f"there before",
                )
        w.commit = log.committed

    def _check_leader(self, i: int, term: int, log: RaftLog, w: NodeWatch) -> None:
        other = self.leader_of_term.setdefault(term, i)
        if other != i:
            self.fail("election safety", f"nodes {other} and {i} both lead term {term}")
        if w.leader_term != term:  # newly leading: check completeness from scratch
            w.leader_term = term
            w.leader_last = 0
            w.leader_last_entry = None
            w.completeness_cursor = 0
            w.leader_commit = log.committed
        if log.committed > w.leader_commit:
            term_at = log.term_at(log.committed)
            if term_at != term:
                self.fail(
                    "leader commit rule",
                    f"leader {i} of term {term} committed index {log.committed} of term "
                    f"{term_at} by counting replicas",
                )
            w.leader_commit = log.committed
        # Leader append-only: nothing it held in this term was replaced or removed (an
        # append over its own entries counts as a conflict even if it wrote the same ones).
        if w.leader_last:
            last = w.leader_last
            if (
                log.last_index < last
                or log.conflicts != w.leader_conflicts
                or log.entry(last) != w.leader_last_entry
            ):
                self.fail(
                    "leader append-only",
                    f"leader {i} of term {term} lost or replaced entry {w.leader_last_entry}",
                )
        w.leader_last = log.last_index
        w.leader_last_entry = log.entry(log.last_index) if log.last_index else None
        w.leader_conflicts = log.conflicts
        # Leader completeness: entries committed in earlier terms are in its log.
        order = self.committed_order
        for k in range(w.completeness_cursor, len(order)):
            index = order[k]
            c = self.committed[index]
            if c.observed_term >= term:
                continue  # may have been committed in this term or later: not required
            if index > log.last_index or log.entry(index) != c.entry:
                held = log.entry(index) if index <= log.last_index else None
                self.fail(
                    "leader completeness",
                    f"leader {i} of term {term} holds {held} at {index}, but {c.entry} was "
                    f"committed there (seen in term {c.observed_term})",
                )
        w.completeness_cursor = len(order)

    # --- hooks called by the shell -------------------------------------------------------

    def on_apply(self, i: int, e: Entry) -> None:
        known = self.applied.setdefault(e.index, e)
        if known != e:
            self.fail("state machine safety", f"node {i} applied {e}, another node applied {known}")
        c = self.committed.get(e.index)
        if c is not None and c.entry != e:
            self.fail("state machine safety", f"node {i} applied {e}, but {c.entry} committed")
        if e.kind is EntryKind.NORMAL:
            at = self.value_index.setdefault(e.data, e.index)
            if at != e.index:
                self.fail("applied once", f"value {e.data!r} applied at indexes {at} and {e.index}")

    def on_ack(self, value: bytes, index: int) -> None:
        e = self.applied.get(index)
        if e is None or e.data != value:
            self.fail("acknowledged write", f"{value!r} acked at {index}, but {e} applied there")
        if self.acked.setdefault(value, index) != index:
            self.fail("acknowledged write", f"{value!r} acknowledged twice")
        self.max_acked = max(self.max_acked, index)

    def on_read(self, i: int, kind: str, context: int, index: int) -> None:
        """A read of ``kind`` issued as ``context`` is served by node ``i`` at ``index``."""
        floor = self.reads.pop(context, 0)
        if index < floor:
            self.fail(
                "linearizable read",
                f"node {i} serves {kind} read {context} at index {index}, but index {floor} "
                f"was acknowledged before the read was issued",
            )

    def on_durable_send(self, sn: SimNode, m: Message) -> None:
        """A persisted message leaves: what it promises must be on disk (Figure 2)."""
        hs = sn.disk.hard_state
        if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
            if hs.term < m.term or (hs.term == m.term and hs.vote != m.dst):
                self.fail(
                    "durable vote",
                    f"node {sn.id} grants its term-{m.term} vote to {m.dst}, but its disk "
                    f"holds term={hs.term} vote={hs.vote}",
                )
        elif isinstance(m, AppendEntriesResponse) and m.success:
            if hs.term <= m.term and len(sn.disk.entries) < m.index:
                self.fail(
                    "durable append",
                    f"node {sn.id} acks index {m.index} with {len(sn.disk.entries)} on disk",
                )

    # --- at the end ----------------------------------------------------------------------

    def check_final(self) -> None:
        """Full (non-incremental) checks over the durable state of every node."""
        for i, sn in self.nodes.items():
            self._check_disk_log(i, sn.disk.entries)
            for e in sn.disk.sm:
                if self.applied.get(e.index) != e:
                    self.fail("state machine safety", f"node {i} state machine holds {e}")
            values = {e.data: e.index for e in sn.disk.sm if e.kind is EntryKind.NORMAL}
            for value, index in self.acked.items():
                if values.get(value) != index:
                    self.fail(
                        "acknowledged write",
                        f"node {i} did not apply acknowledged {value!r} at {index}",
                    )

    def fail(self, invariant: str, detail: str) -> None:
        if invariant not in self.skip:
            raise InvariantViolation(invariant, detail)
