"""The Raft state machine: term rules, elections, replication, reads, leadership transfer.

``Raft.step`` applies the rules every role shares (the term checks of §5.1, lease-based
vote refusal of thesis §4.2.3/§9.6, vote requests of §5.2/§5.4.1), then hands the message
to the step function of the current role, which ``_become_*`` rebinds.

This class is internal: ``RawNode`` owns one, turns its queues into ``Ready``s, and tells it
what became durable (``on_advance``). Outgoing messages go to ``msgs`` (may leave at once) or
``msgs_after_persist`` (must wait until the state they depend on is durable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from trioraft.core import membership as conf
from trioraft.core import replication as repl
from trioraft.core.confstate import ConfState, Membership
from trioraft.core.log import RaftLog
from trioraft.core.progress import Inflights, Progress, ProgressState
from trioraft.core.quorum import JointConfig, VoteResult
from trioraft.core.readonly import ReadOnly
from trioraft.core.snapshot import (
    SnapshotTracker,
    handle_install,
)
from trioraft.core.types import CoreConfig, CoreInvariantError, RandomSource, ReadState, Role
from wire.errors import InvalidRequest
from wire.messages import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)


class CampaignKind(IntEnum):
    PRE_VOTE = 0  # thesis §9.6: ask first, without touching term or vote
    ELECTION = 1  # §5.2
    TRANSFER = 2  # thesis §3.10: real election that bypasses the voters' leader lease


class Raft:
    def __init__(
        self,
        config: CoreConfig,
        *,
        hard_state: HardState,
        log: RaftLog,
        rng: RandomSource,
        fresh_start: bool = False,
        membership: Membership | None = None,
        membership_index: int = 0,
    ) -> None:
        self.id = config.node_id
        self.config = config
        # The configuration in force is that of the latest config entry in the log, or
        # ``membership`` (as of ``membership_index``; default: ``config.voters``) if none.
        # ``conf.apply_conf`` derives these three from it after every change:
        self.voters = JointConfig.of(())  # voters of either half (joint consensus)
        self.peers: tuple[int, ...] = ()  # every other member, learners too: replication
        self.voter_peers: tuple[int, ...] = ()  # every other voter: whom we ask for votes
        self.conf_log = conf.ConfLog(
            membership or Membership(ConfState.of(config.voters)), membership_index
        )
        self.conf_log.on_append(log.non_normal_from(membership_index + 1))
        log.on_append = self._on_log_append
        self.rng = rng
        self.log = log
        self.term = hard_state.term
        self.vote = hard_state.vote  # whom we voted for in ``term``; NO_NODE if nobody
        self.lead = NO_NODE
        self.role = Role.FOLLOWER
        self._step_role: Callable[[Message], None] = self._step_follower
        # Leader only: one Progress per voter, including ourselves (match = durable index).
        self.prs: dict[int, Progress] = {}
        # Candidates: voter -> granted. Our own vote enters only once it is durable.
        self.votes: dict[int, bool] = {}
        self.self_vote_durable = False
        self.ticks = 0  # ticks since start; only differences matter
        self.election_elapsed = 0  # leader: ticks since the last check-quorum round
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_ticks
        self.lead_transferee = NO_NODE
        self.transfer_elapsed = 0
        self.timeout_now_sent = False  # leader: sent TimeoutNow in this term (no more lease)
        # With check-quorum, the tick until which we promised a leader not to help elect
        # anybody else (thesis §6.4.1): one election timeout after we last heard from it.
        # Role and term changes do not end the promise; the leader's lease relies on it.
        # A restarted node may have acknowledged a leader just before it crashed and has
        # forgotten when, so it keeps the promise for its first election timeout.
        self.lease_until = 0 if fresh_start else config.election_ticks
        self.readonly = ReadOnly(self.id)
        self.pending_bcast = False  # leader: new entries to broadcast at the next flush
        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []
        self.read_states: list[ReadState] = []
        self.snapshots = SnapshotTracker()  # snapshot outputs for the next Ready (§7)
        # TEST-ONLY planted bugs (CoreConfig.planted_bugs); all False in production.
        bugs = config.planted_bugs
        self._bug_double_vote = "double_vote" in bugs
        self._bug_commit_old_term = "commit_old_term" in bugs
        self._bug_skip_up_to_date = "skip_up_to_date_check" in bugs
        self._bug_forget_vote = "forget_vote_persist" in bugs
        self._become_follower(self.term, NO_NODE)
        conf.apply_conf(self)

    # --- queries -------------------------------------------------------------------------

    @property
    def promotable(self) -> bool:
        return conf.promotable(self)

    def committed_in_term(self) -> bool:
        return self.log.term_at(self.log.committed) == self.term

    def hard_state(self) -> HardState:
        vote = self.vote
        if self._bug_forget_vote and vote != self.id:
            vote = NO_NODE  # PLANTED BUG: a vote for another node is never persisted
        return HardState(term=self.term, vote=vote, commit=self.log.committed)

    def _in_lease(self, pre_vote: bool) -> bool:
        """We heard from a live leader within the minimum election timeout (or are one).

        Then we ignore vote requests: pre-votes always (thesis §9.6), real votes only with
        check-quorum (thesis §4.2.3), which is what makes leader leases sound. With
        check-quorum the promise lasts an election timeout from when we last heard from a
        leader, whatever happened since (``lease_until``), and covers a restart.
        """
        if self.role is Role.LEADER:
            return self.config.check_quorum or pre_vote
        if self.config.check_quorum:
            return self.ticks < self.lease_until
        return (
            pre_vote and self.lead != NO_NODE and self.election_elapsed < self.config.election_ticks
        )

    def lease_valid(self) -> bool:
        """Leader: a quorum accepted us within ``election_ticks - 1`` ticks (thesis §6.4.1).

        Measured from when the acknowledged heartbeat was *sent*, so it never over-estimates.
        Also requires check-quorum (voters only refuse votes then), an entry of our term
        committed (so our commit index is current), no transfer in progress, and no
        TimeoutNow sent in this term (its campaign bypasses the voters' lease).
        """
        if (
            self.role is not Role.LEADER
            or not self.config.check_quorum
            or self.lead_transferee != NO_NODE
            or self.timeout_now_sent
            or not self.committed_in_term()
        ):
            return False
        if self.voters.is_only(self.id):
            return True
        sent = self.readonly.lease_tick(self.voters)
        return sent is not None and self.ticks - sent < self.config.election_ticks - 1

    # --- transitions ---------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NO_NODE
        self.lead = NO_NODE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        e = self.config.election_ticks
        self.randomized_timeout = self.rng.randrange(e, 2 * e)
        self.lead_transferee = NO_NODE
        self.transfer_elapsed = 0
        self.timeout_now_sent = False
        self.votes = {}
        self.self_vote_durable = False
        self.prs = {}
        self.readonly = ReadOnly(self.id)  # pending reads of a lost leadership are dropped
        self.pending_bcast = False

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead
        self._step_role = self._step_follower

    def _become_pre_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise CoreInvariantError("a leader cannot become a pre-candidate")
        self._reset(self.term)  # same term: the vote is kept
        self.role = Role.PRE_CANDIDATE
        self._step_role = self._step_candidate

    def _become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise CoreInvariantError("a leader cannot become a candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step_role = self._step_candidate

    def _become_leader(self) -> None:
        if self.role is not Role.CANDIDATE:
            raise CoreInvariantError(f"only a candidate can become leader, not a {self.role.name}")
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        self._step_role = self._step_leader
        nxt = self.log.last_index + 1
        for v in (*self.peers, self.id):  # learners too: they receive the log
            self.prs[v] = Progress(match=0, next=nxt, inflights=Inflights(self.config.max_inflight))
        me = self.prs[self.id]
        me.match, me.recent_active = self.log.stabled, True
        me.state = ProgressState.REPLICATE
        # A no-op of our term lets us commit (and so learn) everything before it (§5.4.2, §8).
        # It may announce our client address to the members (trioraft.core.confstate).
        self.log.append([Entry(self.term, nxt, EntryKind.NOOP, conf.announcement(self))])
        self.pending_bcast = True

    # --- input: time ---------------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self.election_elapsed += 1
        if self.promotable and self.election_elapsed >= self.randomized_timeout:
            self.campaign()

    def _tick_leader(self) -> None:
        cfg = self.config
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= cfg.election_ticks:
            self.election_elapsed = 0
            if cfg.check_quorum:
                active = [v for v, pr in self.prs.items() if pr.recent_active or v == self.id]
                if not self.voters.has_quorum(active):
                    self._become_follower(self.term, NO_NODE)  # check-quorum (§6.2)
                    return
                for v, pr in self.prs.items():
                    pr.recent_active = v == self.id
        if self.lead_transferee != NO_NODE:
            self.transfer_elapsed += 1
            if self.transfer_elapsed >= cfg.election_ticks:
                self.lead_transferee = NO_NODE  # abort: the target did not take over in time
                self.transfer_elapsed = 0
        self.readonly.prune(self.ticks - cfg.election_ticks)
        if self.heartbeat_elapsed >= cfg.heartbeat_ticks:
            repl.bcast_heartbeat(self)

    # --- input: local requests -----------------------------------------------------------

    def step_down(self) -> None:
        """Leader or (pre-)candidate: become a follower in the same term (the vote is kept),
        with no known leader. Pending reads are dropped, as on any loss of leadership."""
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, NO_NODE)

    def campaign(self, kind: CampaignKind | None = None) -> None:
        """Start an election (with a pre-vote first if configured).

        No-op for a leader, and for a node bound by a lease promise (``lease_until``):
        winning would break the lease of the leader it acknowledged. Only a transfer
        (TimeoutNow, sent by that leader, which then gives up its lease) may override it.
        An election timeout never fires inside the promise, so this only stops campaigns
        requested from outside (``RawNode.campaign``).
        """
        if not self.promotable or self.role is Role.LEADER:
            return
        alone = self.voters.is_only(self.id) and not self.peers  # promised nobody anything
        if kind is not CampaignKind.TRANSFER and not alone:  # (a lone voter among members
            if self._in_lease(pre_vote=False):  # may have backed a leader's lease: §4.3)
                return
        if kind is None:
            kind = CampaignKind.PRE_VOTE if self.config.pre_vote else CampaignKind.ELECTION
        if kind is CampaignKind.PRE_VOTE:
            self._become_pre_candidate()
            vote_term = self.term + 1
        else:
            self._become_candidate()
            vote_term = self.term
        for peer in self.voter_peers:
            self._send(
                RequestVote(
                    src=self.id,
                    dst=peer,
                    term=vote_term,
                    last_index=self.log.last_index,
                    last_term=self.log.last_term,
                    pre_vote=kind is CampaignKind.PRE_VOTE,
                    transfer=kind is CampaignKind.TRANSFER,
                )
            )
        if kind is CampaignKind.PRE_VOTE:
            self.votes[self.id] = True  # a pre-vote changes nothing, so it needs no persist
            self._tally()

    def propose(self, data: bytes) -> tuple[int, int]:
        """Leader: append a NORMAL entry; it is broadcast at the next flush (batching)."""
        if self.role is not Role.LEADER:
            raise CoreInvariantError("propose on a non-leader")
        index = self.log.last_index + 1
        self.log.append([Entry(self.term, index, EntryKind.NORMAL, data)])
        self.pending_bcast = True
        return index, self.term

    def read_index(self, context: int) -> None:
        """Leader: queue a ReadIndex read (thesis §6.4)."""
        if self.role is not Role.LEADER:
            raise CoreInvariantError("read_index on a non-leader")
        if not self.committed_in_term():
            self.readonly.wait_for_commit(context)
        else:
            self._queue_read(context)

    def _queue_read(self, context: int) -> None:
        if self.voters.is_only(self.id):  # we are the quorum: nobody else can be elected
            self.read_states.append(ReadState(context, self.log.committed))
        else:
            self.readonly.add(context, self.log.committed)

    def transfer_leader(self, target: int | None) -> None:
        """Leader: hand leadership to ``target`` (thesis §3.10); None = most caught up."""
        if self.role is not Role.LEADER:
            raise CoreInvariantError("transfer_leader on a non-leader")
        voters = [v for v in self.voter_peers if v in self.voters.incoming]  # stay voters
        if target is None:
            if not voters:
                return
            target = max(voters, key=lambda v: self.prs[v].match)  # ties: lowest id
        if target == self.id:
            return
        if target not in voters:
            raise InvalidRequest(f"transfer target {target} is not a voter")
        if target == self.lead_transferee:
            return
        self.lead_transferee = target
        self.transfer_elapsed = 0
        if self.prs[target].match == self.log.last_index:
            repl.send_timeout_now(self, target)
        else:
            repl.send_append(self, target)

    def flush(self) -> None:
        """Send what was batched since the last Ready: new entries, a ReadIndex round."""
        if self.role is not Role.LEADER:
            return
        conf.after_commit(self)  # leave a committed joint config; step down if removed
        if self.role is not Role.LEADER:
            return
        if self.pending_bcast:
            self.pending_bcast = False
            repl.bcast_append(self, send_if_empty=not self.config.lazy_commit)
        if self._read_round_due():
            repl.bcast_heartbeat(self)

    def has_flush_work(self) -> bool:
        return self.role is Role.LEADER and (
            (self.pending_bcast and bool(self.peers))
            or self._read_round_due()
            or conf.has_work(self)
        )

    def _read_round_due(self) -> bool:
        return self.readonly.needs_round(self.voters, self.config.max_read_rounds)

    def on_advance(self, durable: HardState) -> None:
        """The shell made ``durable`` and ``log.stabled`` durable: count ourselves."""
        if (
            self.role is Role.CANDIDATE
            and not self.self_vote_durable
            and durable.term == self.term
            and durable.vote == self.id
        ):
            self.self_vote_durable = True
            self.votes[self.id] = True
            self._tally()
        if self.role is Role.LEADER and self.prs[self.id].maybe_update(self.log.stabled):
            if repl.maybe_commit(self):
                self.pending_bcast = True

    # --- input: messages -----------------------------------------------------------------

    def step(self, m: Message) -> None:
        # Messages from nodes outside our configuration are processed too (thesis §4.1):
        # our log may lag behind a configuration that added the sender, e.g. a new leader.
        if m.dst != self.id or m.src == self.id or m.src < 1:
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if not m.transfer and self._in_lease(m.pre_vote):
                    return  # a live leader exists: do not let a disruptive node depose it
                if not m.pre_vote:
                    self._become_follower(m.term, NO_NODE)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the term we would campaign in
            else:
                from_leader = isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot))
                leader = m.src if from_leader else NO_NODE
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat)):
                # Figure 2: reply false with our term, and a deposed leader steps down. It
                # may learn our term no other way: with check-quorum or pre-vote we ignore
                # its votes, and without them nobody may campaign where it would hear: e.g.
                # our term was raised by a removed node's votes, and we are no voter in the
                # configuration we hold (the membership simulator, seed 322).
                self._respond_append(m.src, success=False, index=0)
            elif isinstance(m, RequestVote):
                # Figure 2: reply false with our term, so the candidate catches up. Without
                # it a candidate that nobody else talks to (e.g. the only voter beside a
                # removed node that keeps raising our term) could never catch up (§4.2.3).
                self._respond_vote(m, granted=False)
            return
        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _handle_vote_request(self, m: RequestVote) -> None:
        """§5.2 one vote per term, §5.4.1 election restriction; pre-votes change nothing."""
        can_vote = (
            self.vote == m.src
            or (self.vote == NO_NODE and self.lead == NO_NODE)
            or (m.pre_vote and m.term > self.term)
            or self._bug_double_vote  # PLANTED BUG: a second vote in the same term
        )
        up_to_date = self._bug_skip_up_to_date or self.log.is_up_to_date(  # (PLANTED BUG)
            m.last_index, m.last_term
        )
        granted = can_vote and up_to_date
        if granted and not m.pre_vote:
            self.election_elapsed = 0
            self.vote = m.src  # persisted (hard_state) before the response leaves
        self._respond_vote(m, granted=granted)

    def _respond_vote(self, m: RequestVote, *, granted: bool) -> None:
        term = m.term if (granted and m.pre_vote) else self.term
        self._send(
            RequestVoteResponse(
                src=self.id, dst=m.src, term=term, granted=granted, pre_vote=m.pre_vote
            ),
            after_persist=True,
        )

    def _respond_append(
        self, to: int, *, success: bool, index: int, hint_index: int = 0, hint_term: int = 0
    ) -> None:
        self._send(
            AppendEntriesResponse(
                src=self.id,
                dst=to,
                term=self.term,
                success=success,
                index=index,
                hint_index=hint_index,
                hint_term=hint_term,
            ),
            after_persist=True,
        )

    # --- follower ------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries):
            self._heard_from_leader(m.src)
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._heard_from_leader(m.src)
            self._handle_heartbeat(m)
        elif isinstance(m, TimeoutNow):
            self.campaign(CampaignKind.TRANSFER)
        elif isinstance(m, InstallSnapshot):
            self._heard_from_leader(m.src)
            handle_install(self, m)

    def _heard_from_leader(self, lead: int) -> None:
        self.election_elapsed = 0
        self.lead = lead
        self.lease_until = self.ticks + self.config.election_ticks

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        if any(e.index != m.prev_index + 1 + k or e.term > m.term for k, e in enumerate(m.entries)):
            return  # malformed: no correct leader sends this
        if m.prev_index < log.committed:
            self._respond_append(m.src, success=True, index=log.committed)
            return
        last_new = log.maybe_append(m.prev_index, m.prev_term, m.commit, m.entries)
        if last_new is not None:
            self._respond_append(m.src, success=True, index=last_new)
            return
        hint_index, hint_term = log.find_conflict_by_term(m.prev_index, m.prev_term)
        self._respond_append(
            m.src, success=False, index=m.prev_index, hint_index=hint_index, hint_term=hint_term
        )

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        # The leader sends min(match, commit), so this never commits a non-matching entry.
        self.log.commit_to(m.commit)
        self._send(HeartbeatResponse(src=self.id, dst=m.src, term=self.term, context=m.context))

    # --- (pre-)candidate -----------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            self._become_follower(self.term, m.src)  # a leader of our term exists
            self._step_follower(m)
        elif isinstance(m, RequestVoteResponse):
            pre = self.role is Role.PRE_CANDIDATE
            if m.pre_vote != pre:
                return
            if pre and m.granted and m.term != self.term + 1:
                return  # answers an older pre-vote
            self.votes.setdefault(m.src, m.granted)
            self._tally()

    def _tally(self) -> None:
        result = self.voters.vote_result(self.votes)
        if result is VoteResult.LOST:
            self._become_follower(self.term, NO_NODE)
        elif result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self.campaign(CampaignKind.ELECTION)
            elif self.self_vote_durable:
                # Our own vote must be durable before we lead: otherwise a crash could
                # let us vote for someone else in the same term (two leaders).
                self._become_leader()

    # --- leader (the rest is in replication.py) ------------------------------------------

    def _step_leader(self, m: Message) -> None:
        repl.step_leader(self, m)

    def _send(self, m: Message, *, after_persist: bool = False) -> None:
        (self.msgs_after_persist if after_persist else self.msgs).append(m)

    def _on_log_append(self, entries: Sequence[Entry]) -> None:
        """Every append and truncation of the log: a configuration takes effect when its
        entry is appended and is reverted when the entry is truncated (§6)."""
        self.conf_log.compact(self.log.applied)
        if self.conf_log.on_append(entries):
            conf.apply_conf(self)
