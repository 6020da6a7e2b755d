"""``RawNode``: the whole Raft core behind a synchronous, deterministic, I/O-free API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trioraft.core import membership as conf
from trioraft.core import replication as repl
from trioraft.core.confchange import ConfChange
from trioraft.core.confstate import Membership
from trioraft.core.log import RaftLog
from trioraft.core.raft import Raft
from trioraft.core.snapshot import compact, report_snapshot
from trioraft.core.types import (
    INITIAL_SOFT_STATE,
    CoreConfig,
    RandomSource,
    Ready,
    Role,
    SoftState,
    Status,
)
from wire.errors import NotLeader, ProposalDropped, StorageError
from wire.messages import NO_NODE, Entry, HardState, Message, SnapshotMeta


class RawNode:
    """One Raft node: time, messages and requests in; ``Ready`` batches out.

    The shell's loop (sync mode, as in etcd-io/raft)::

        while True:
            ...node.tick() / node.step(msg) / node.propose(data) / node.read_index(ctx)...
            if node.has_ready():
                rd = node.ready()
                # persist rd.hard_state + rd.entries   | send rd.messages (concurrently)
                # once durable: send rd.persisted_messages
                # hand rd.committed_entries to the apply task; serve rd.read_states
                node.advance(rd)

    Ordering contract:

    - At most one ``Ready`` is outstanding: ``ready()`` raises ``RuntimeError`` if called
      again before ``advance()``, and ``has_ready()`` is False meanwhile.
    - Between ``ready()`` and ``advance()`` the shell MAY keep calling ``tick``, ``step``,
      ``propose``, ``read_index``, ``campaign`` and ``transfer_leader``; whatever they
      produce goes into the next ``Ready``.
    - ``advance(rd)`` means: ``rd.hard_state`` and ``rd.entries`` are durable and
      ``rd.committed_entries`` were handed to the state machine. Only then does the leader
      count its own entries toward a commit quorum and a candidate count its own vote.
    - ``advance(rd, synced=False)`` (a leader's Ready; see ``Ready``) means: ``rd.entries``
      were *written*, in order before any later write, but not synced. The next Ready may
      be taken at once and applies committed entries up to what is written: an apply
      written after the entries cannot outlive them in a crash. The leader counts its own
      entries only once ``synced(index, term)`` says the sync is done, so a commit always
      rests on a quorum of durable copies (thesis §10.2.1: the leader may commit before
      its own write is durable, if enough followers have theirs).
    - Same inputs and the same ``rng`` state give the same outputs: nothing else is read.
    """

    def __init__(
        self,
        config: CoreConfig,
        *,
        hard_state: HardState,
        entries: Sequence[Entry],
        applied: int,
        rng: RandomSource,
        fresh_start: bool = False,
        snapshot: SnapshotMeta | None = None,
        membership: Membership | None = None,
        membership_index: int = 0,
    ) -> None:
        """Restart from stable storage: ``entries`` is the whole stored log from index 1,
        or, after compaction (§7), from ``snapshot.index + 1``: ``snapshot`` is where the
        stored log starts (its last compacted index and that entry's term).

        ``applied`` is the state machine's applied index; committed entries above it are
        delivered again in ``committed_entries``. Raises ``StorageError`` if the stored
        state is inconsistent.

        With check-quorum, a restarted node ignores vote and pre-vote requests during its
        first ``election_ticks`` ticks: before the crash it may have acknowledged a leader
        whose lease (``lease_valid``) counts on it not voting for anyone else that soon,
        and nothing durable says when. Pass ``fresh_start=True`` only for a node that has
        never run before (a new data directory): it cannot have acknowledged anybody.

        ``membership`` is the configuration as of log index ``membership_index`` (at most
        ``applied``; default: ``config.voters`` as of index 0); configuration entries of
        ``entries`` above that index override it (``trioraft.core.membership``).
        """
        start = snapshot.index if snapshot is not None else 0
        if entries and entries[0].index != start + 1:
            raise StorageError(
                f"stored log must start at index {start + 1}, not {entries[0].index}"
            )
        last = start + len(entries)
        if hard_state.commit > last:
            raise StorageError(f"hard state commit {hard_state.commit} beyond last index {last}")
        if not start <= applied <= last:
            raise StorageError(f"applied index {applied} outside the stored log [{start}, {last}]")
        # Applied entries were committed when applied, even if that commit was not persisted.
        commit = max(hard_state.commit, applied)
        try:
            log = RaftLog(
                entries,
                first_index=start + 1,
                snapshot_term=snapshot.term if snapshot is not None else 0,
                committed=commit,
                applied=applied,
            )
        except ValueError as exc:
            raise StorageError(f"stored log is inconsistent: {exc}") from exc
        if membership_index > applied:
            raise StorageError(f"membership index {membership_index} beyond applied {applied}")
        self._raft = Raft(
            config,
            hard_state=hard_state,
            log=log,
            rng=rng,
            fresh_start=fresh_start,
            membership=membership,
            membership_index=membership_index,
        )
        self._prev_soft = INITIAL_SOFT_STATE
        self._prev_hard = HardState(hard_state.term, hard_state.vote, commit)
        self._durable_hard = self._prev_hard
        self._outstanding: Ready | None = None
        # TEST-ONLY planted bug (CoreConfig.planted_bugs): unsynced entries count as durable
        self._bug_count_unsynced = "count_unsynced_self" in config.planted_bugs

    # --- inputs --------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time: drives election timeouts and heartbeats."""
        self._raft.tick()

    def step(self, msg: Message) -> None:
        """Feed a message from a peer. Messages not for us, from non-members or stale are
        dropped; never raises on such input."""
        self._raft.step(msg)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a NORMAL entry; returns its ``(index, term)``.

        Raises ``NotLeader`` (with the known leader) on a non-leader and ``ProposalDropped``
        while a leadership transfer is in progress. The entry is committed once some
        ``committed_entries`` carries that index with that term; if another term's entry
        appears there, the proposal was lost.
        """
        raft = self._raft
        if raft.role is not Role.LEADER:
            raise NotLeader(f"node {raft.id} is not the leader", leader_id=raft.lead)
        if raft.lead_transferee != NO_NODE:
            raise ProposalDropped(f"leadership transfer to node {raft.lead_transferee}")
        return raft.propose(data)

    def propose_conf_change(
        self, changes: Sequence[ConfChange], known: Mapping[int, str] | None = None
    ) -> tuple[int, int]:
        """Append the configuration that ``changes`` lead to; returns its ``(index, term)``.

        Joint consensus (Raft paper §6, thesis §4.3): if the voters change, the entry is
        the joint configuration C_old,new, and the leader appends C_new by itself once
        C_old,new is committed; a change of learners only is one simple entry. Either
        takes effect as soon as it is appended. The change is complete when a committed,
        non-joint configuration at or after that index shows in ``committed_membership``.

        Raises ``NotLeader``; ``ProposalDropped`` during a leadership transfer;
        ``ChangeInProgress`` while another change is not complete (one at a time);
        ``Busy`` until this leader has committed an entry of its term; ``InvalidRequest``
        for a change that does not fit the configuration (unknown node, duplicate
        address, removing the last voter, ...). ``known``: peer addresses of members the
        configuration has none for (this node's ``--peers``), recorded in the entry.
        """
        return conf.propose_change(self._raft, changes, known)

    def read_index(self, context: int) -> None:
        """Ask for a linearizable read point (ReadIndex, thesis §6.4).

        A later ``Ready.read_states`` holds ``ReadState(context, index)``. Reads issued
        before one ``ready()`` share one heartbeat round. A leader that has not committed
        an entry of its term yet holds the read until it has. Raises ``NotLeader`` on a
        non-leader. Reads pending when leadership is lost are dropped silently: fail them
        when ``soft_state`` shows the change.
        """
        raft = self._raft
        if raft.role is not Role.LEADER:
            raise NotLeader(f"node {raft.id} is not the leader", leader_id=raft.lead)
        raft.read_index(context)

    def commit_unsent(self) -> bool:
        """Leader: does a follower hold entries it has not been sent the commit of? With
        ``lazy_commit`` the next AppendEntries or heartbeat tells it; a shell that bounds
        that wait calls ``send_commit`` when this stays true too long."""
        raft = self._raft
        return raft.role is Role.LEADER and repl.commit_unsent(raft)

    def send_commit(self) -> None:
        """Leader: tell each follower that holds entries it has not been sent the commit of
        (an AppendEntries, empty unless entries are due); a no-op on other roles."""
        if self._raft.role is Role.LEADER:
            repl.send_commit(self._raft)

    def campaign(self) -> None:
        """Start an election now (a pre-vote first when ``pre_vote`` is on).

        No-op on a leader or a node that is not a voter. Also a no-op, with check-quorum,
        while this node is bound by a lease promise: it heard from a leader (or restarted)
        less than ``election_ticks`` ago, and winning would break that leader's lease
        (thesis §6.4.1). To move leadership at once, use ``transfer_leader`` on the leader.
        """
        self._raft.campaign()

    def transfer_leader(self, target: int | None = None) -> None:
        """Hand leadership to ``target`` (thesis §3.10); None picks the most caught-up voter.

        The leader first brings the target's log up to date, then sends it TimeoutNow.
        Proposals raise ``ProposalDropped`` until the transfer ends; it is abandoned after
        ``election_ticks`` ticks. No-op for target == self or a single-voter cluster.
        Raises ``NotLeader`` on a non-leader and ``InvalidRequest`` for a non-voter target.
        """
        raft = self._raft
        if raft.role is not Role.LEADER:
            raise NotLeader(f"node {raft.id} is not the leader", leader_id=raft.lead)
        raft.transfer_leader(target)

    def step_down(self) -> None:
        """Stop leading or campaigning now: follower in the same term, no known leader.

        For a shell whose storage fails (it can acknowledge nothing): the change shows in
        ``status`` at once and as ``soft_state`` in the next ``Ready``. A follower ticked
        on campaigns again after an election timeout. No-op on a follower.
        """
        self._raft.step_down()

    # --- snapshots (§7; see trioraft.core.snapshot) -------------------------------------

    def compact(self, index: int) -> list[object]:
        """Drop log entries up to ``index`` from memory: the shell holds a snapshot covering
        them (and compacted its stored log, or will). ``index`` must be applied and
        durable (``CoreInvariantError`` otherwise); at or below the log start it is a no-op.
        Returns the dropped entries, for the shell to free at its own pace.
        """
        return compact(self._raft, index)

    def report_snapshot(self, peer: int, ok: bool) -> None:
        """Leader: the transfer asked for by ``SnapshotNeeded(peer)`` ended (``ok``: the
        follower has the whole file). The follower is probed again either way."""
        report_snapshot(self._raft, peer, ok)

    @property
    def log_start(self) -> tuple[int, int]:
        """(index, term) of the last compacted entry; (0, 0) before any compaction."""
        log = self._raft.log
        return log.first_index - 1, log.snapshot_term

    # --- outputs -------------------------------------------------------------------------

    def _soft_state(self) -> SoftState:
        return SoftState(leader_id=self._raft.lead, role=self._raft.role)

    def has_ready(self, *, apply_only: bool = False) -> bool:
        """Is there work for a ``ready()``? ``apply_only``: for a ``ready(apply_only=True)``."""
        if self._outstanding is not None:
            return False
        raft = self._raft
        if apply_only:
            return bool(raft.msgs or raft.read_states or raft.log.has_next_committed_entries())
        log = raft.log
        return bool(
            raft.msgs
            or raft.msgs_after_persist
            or raft.read_states
            or raft.snapshots.pending()
            or raft.has_flush_work()
            or log.in_progress < log.last_index
            or log.has_next_committed_entries()
            or self._soft_state() != self._prev_soft
            or raft.hard_state() != self._prev_hard
        )

    def ready(self, *, apply_only: bool = False) -> Ready:
        """Take the pending work; call ``advance`` with the result before the next ``ready``.

        ``apply_only``: take only what needs no write: committed entries to apply, read
        states and the messages that may leave at once; new entries, state to persist and
        batched broadcasts wait for a full Ready. For a shell that holds its next batch of
        entries until its last sync is done (a leader that batches behind its own sync)
        while it applies what the followers committed meanwhile.
        """
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance()")
        raft = self._raft
        if apply_only:
            rd = Ready(
                soft_state=None,
                hard_state=None,
                entries=(),
                messages=tuple(raft.msgs),
                persisted_messages=(),
                committed_entries=raft.log.next_committed_entries(),
                read_states=tuple(raft.read_states),
            )
            raft.msgs = []
            raft.read_states = []
            self._outstanding = rd
            return rd
        raft.flush()
        soft = self._soft_state()
        hard = raft.hard_state()
        snapshot, snapshot_requests = raft.snapshots.take()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=raft.log.unstable_entries(),
            messages=tuple(raft.msgs),
            persisted_messages=tuple(raft.msgs_after_persist),
            committed_entries=raft.log.next_committed_entries(),
            read_states=tuple(raft.read_states),
            snapshot=snapshot,
            snapshot_requests=snapshot_requests,
        )
        self._prev_soft, self._prev_hard = soft, hard
        raft.log.accept_unstable()
        raft.msgs = []
        raft.msgs_after_persist = []
        raft.read_states = []
        self._outstanding = rd
        return rd

    def advance(self, ready: Ready, *, synced: bool = True) -> None:
        """``ready`` (the last one returned) is persisted and its entries handed to apply.

        ``synced=False``: its entries are written but not yet durable (see the class
        docstring); allowed only for a Ready with no ``persisted_messages``, no snapshot
        and no term or vote to make durable (``RuntimeError`` otherwise).
        """
        if ready is not self._outstanding:
            raise RuntimeError("advance() needs the Ready returned by the last ready()")
        hs, durable = ready.hard_state, self._durable_hard
        if not synced and (
            ready.persisted_messages
            or ready.snapshot is not None
            or (hs is not None and (hs.term, hs.vote) != (durable.term, durable.vote))
        ):
            raise RuntimeError("advance(synced=False) of a Ready whose messages need the sync")
        self._outstanding = None
        log = self._raft.log
        if ready.entries:
            log.written_to(ready.entries[-1].index)
        if synced or self._bug_count_unsynced:
            log.stable_to(log.written)  # the sync covers every write before it too
            if hs is not None:
                self._durable_hard = hs
        if ready.committed_entries and ready.committed_entries[-1].index > log.applied:
            log.applied_to(ready.committed_entries[-1].index)  # (a restore may have passed it)
        self._raft.on_advance(self._durable_hard)

    def synced(self, index: int, term: int) -> None:
        """A sync that began after the entry ``(index, term)`` was written is done: the
        entries up to it are durable. Ignored if the log no longer holds that entry (it was
        replaced meanwhile: the replacement is covered by a sync of its own). May be called
        while a Ready is outstanding."""
        log = self._raft.log
        if index <= log.written and log.term_at(index) == term:
            log.stable_to(index)
            self._raft.on_advance(self._durable_hard)

    def unsynced(self) -> tuple[int, int] | None:
        """``(index, term)`` of the last entry written but not known durable; None if none."""
        log = self._raft.log
        if log.written <= log.stabled:
            return None
        term = log.term_at(log.written)
        assert term is not None
        return log.written, term

    @property
    def durable_index(self) -> int:
        """The last log index known durable here (compaction stops there)."""
        return self._raft.log.stabled

    # --- queries -------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        raft = self._raft
        return Status(
            node_id=raft.id,
            role=raft.role,
            term=raft.term,
            leader_id=raft.lead,
            commit=raft.log.committed,
            applied=raft.log.applied,
            last_index=raft.log.last_index,
        )

    @property
    def role(self) -> Role:
        """This node's role now (cheaper than ``status`` on a per-request path)."""
        return self._raft.role

    @property
    def leader_id(self) -> int:
        """The leader this node knows of (0: none)."""
        return self._raft.lead

    @property
    def commit(self) -> int:
        """The commit index."""
        return self._raft.log.committed

    @property
    def membership(self) -> Membership:
        """The configuration in force: that of the latest configuration entry in the log
        (committed or not), with the members' addresses."""
        return self._raft.conf_log.current

    @property
    def membership_index(self) -> int:
        """Log index of the entry that set ``membership`` (the base index if none)."""
        return self._raft.conf_log.current_index

    def committed_membership(self, index: int | None = None) -> tuple[int, Membership]:
        """The latest configuration at or below ``index`` (default: the commit index; at
        least the applied index), with the index of the entry that set it."""
        raft = self._raft
        return raft.conf_log.at(raft.log.committed if index is None else index)

    def progress(self) -> dict[int, int]:
        """Leader: each member's replicated index (its ``match``), this node included
        (what it has made durable); empty on other nodes."""
        return {node: pr.match for node, pr in self._raft.prs.items()}

    def lease_valid(self) -> bool:
        """Leader only (False otherwise): a quorum acknowledged a heartbeat sent less than
        ``election_ticks - 1`` ticks ago, check-quorum is on, an entry of this term is
        committed, and no transfer is in progress. Basis for lease reads (thesis §6.4.1).
        """
        return self._raft.lease_valid()
