"""Value types of the Raft core: roles, configuration, and what a ``Ready`` hands the shell.

Everything here is immutable: ``CoreConfig`` a frozen dataclass, what a ``Ready`` carries
``@value`` classes (``wire.value``: frozen to the type checker, cheap to build), the rest
``IntEnum``; nothing here does work beyond validating ``CoreConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from wire.errors import ConfigError
from wire.messages import NO_NODE, Entry, HardState, Message, SnapshotMeta
from wire.value import value


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1  # running a pre-vote (thesis §9.6); term and vote unchanged
    CANDIDATE = 2
    LEADER = 3


# Test-only: names of deliberate safety bugs ``CoreConfig.planted_bugs`` can switch on, so the
# deterministic simulator (tests/sim) can prove that its checkers catch them. Never set
# these outside tests.
PLANTED_BUGS = frozenset(
    {
        "double_vote",  # grant a second vote in the same term (breaks §5.2)
        "commit_old_term",  # count replicas for entries of earlier terms (Figure 8, §5.4.2)
        "skip_up_to_date_check",  # grant votes without the election restriction (§5.4.1)
        "forget_vote_persist",  # keep a vote for another node only in memory (Figure 2)
        "count_unsynced_self",  # a leader counts its own entries before they are synced
    }
)
# TEST-ONLY, caught by the membership simulator (tests/sim/membership.py), not the static one.
MEMBERSHIP_PLANTED_BUGS = frozenset(
    {
        # change one voter in one step, before committing an entry of the term: the
        # single-server-change bug of the Raft dissertation (errata; thesis §4.1)
        "single_server_change",
    }
)


class RandomSource(Protocol):
    """The one source of randomness of the core: ``random.Random(seed)`` satisfies it."""

    def randrange(self, start: int, stop: int, /) -> int: ...


class CoreInvariantError(RuntimeError):
    """A Raft safety invariant would be broken: a bug, or input no correct peer can send.

    Example: an AppendEntries that conflicts with an entry this node already knows to be
    committed. The core fails loudly instead of corrupting the log.
    """


@dataclass(frozen=True, slots=True)  # built once: keeps the run-time guard
class CoreConfig:
    """Static configuration of one Raft node; validated on construction (``ConfigError``)."""

    node_id: int  # >= 1; 0 is NO_NODE
    voters: tuple[int, ...]  # initial voter set, distinct ids >= 1; includes node_id if it votes
    election_ticks: int = 10  # > heartbeat_ticks; timeout drawn from [e, 2e) at every reset
    heartbeat_ticks: int = 1  # >= 1; a leader broadcasts heartbeats every heartbeat_ticks
    pre_vote: bool = True  # thesis §9.6
    check_quorum: bool = True  # leader steps down without a live quorum; enables leases
    max_append_bytes: int = 1 << 20  # >= 1; cap on sum(len(e.data)) per AppendEntries
    max_inflight: int = 256  # >= 1; unacked AppendEntries per follower in REPLICATE
    max_read_rounds: int = 1  # >= 0; ReadIndex rounds awaiting a quorum at once (0: no limit)
    # False (etcd's way): a leader that commits sends every follower an AppendEntries at
    # once, empty if it has no new entries, to tell it the commit index. True: the commit
    # index rides on the next AppendEntries with entries or the next heartbeat (within
    # heartbeat_ticks), which saves two messages per follower per commit at low load.
    # Only when followers apply changes: never what a client's write or read waits for.
    # NodeConfig.lazy_commit (off by default: followers' eventual reads and watches lag).
    lazy_commit: bool = False
    # This node's addresses; a new leader announces them in its no-op when its membership
    # records another client address ("": never announce). See trioraft.core.confstate.
    peer_addr: str = ""
    client_addr: str = ""
    # TEST-ONLY: deliberate bugs from PLANTED_BUGS, for the simulator's self-test. Leave empty.
    planted_bugs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.node_id < 1:
            raise ConfigError(f"node_id must be >= 1, got {self.node_id}")
        if not self.voters:
            raise ConfigError("voters must name at least one node")
        if any(v < 1 for v in self.voters):
            raise ConfigError(f"voter ids must be >= 1, got {self.voters}")
        if len(set(self.voters)) != len(self.voters):
            raise ConfigError(f"voter ids must be distinct, got {self.voters}")
        if self.heartbeat_ticks < 1:
            raise ConfigError(f"heartbeat_ticks must be >= 1, got {self.heartbeat_ticks}")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"election_ticks ({self.election_ticks}) must be greater than "
                f"heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.max_append_bytes < 1:
            raise ConfigError(f"max_append_bytes must be >= 1, got {self.max_append_bytes}")
        if self.max_inflight < 1:
            raise ConfigError(f"max_inflight must be >= 1, got {self.max_inflight}")
        if self.max_read_rounds < 0:
            raise ConfigError(f"max_read_rounds must be >= 0, got {self.max_read_rounds}")
        unknown = set(self.planted_bugs) - PLANTED_BUGS - MEMBERSHIP_PLANTED_BUGS
        if unknown:
            raise ConfigError(
                f"unknown planted bugs {sorted(unknown)}; known: {sorted(PLANTED_BUGS)}"
            )


@value
class SoftState:
    """Volatile state worth telling the shell about; never persisted."""

    leader_id: int  # NO_NODE (0) when unknown
    role: Role


INITIAL_SOFT_STATE = SoftState(leader_id=NO_NODE, role=Role.FOLLOWER)


@value
class ReadState:
    """A confirmed ReadIndex (thesis §6.4): serve read ``context`` once applied >= index."""

    context: int
    index: int


@value
class SnapshotNeeded:
    """Leader: follower ``to`` needs entries the log no longer has (§7). Stream it a
    snapshot whose index is at least ``index`` (the shell's newest one qualifies), then
    call ``RawNode.report_snapshot(to, ok)``. ``term`` is the leader's term at the time."""

    to: int
    index: int
    term: int


@value
class Status:
    node_id: int
    role: Role
    term: int
    leader_id: int
    commit: int
    applied: int  # last index handed to the shell in Ready.committed_entries and advanced
    last_index: int


@value
class Ready:
    """One batch of work for the shell. Process the fields in this order:

    1. Persist ``hard_state`` and ``entries`` (ideally one write batch; entries no later
       than the hard state). ``entries`` replace every stored entry with
       index >= ``entries[0].index`` (conflict truncation, §5.3).
    2. ``messages`` may be sent at once, in parallel with step 1 (thesis §10.2.1).
    3. ``persisted_messages`` only after step 1 is durable (votes, append responses).
    4. Hand ``committed_entries`` to the state machine, in order.
    5. Serve each of ``read_states`` once applied >= its index.
    6. Call ``RawNode.advance(ready)`` with this very object.

    A Ready whose only durability need is its entries (no ``persisted_messages``, no new
    term or vote, no ``snapshot``: a leader's) may instead be written without a sync and
    advanced with ``advance(ready, synced=False)``; the shell syncs later and reports it
    with ``RawNode.synced`` (etcd's asynchronous storage writes; see ``RawNode``).

    Snapshots (§7): ``snapshot`` is set when the core accepted an ``InstallSnapshot``:
    install that snapshot's data (atomically, with its applied index) after the committed
    entries handed out before it and before step 1; ``persisted_messages`` (the ack of the
    snapshot) wait for it too. ``snapshot_requests`` ask the shell to stream a snapshot to
    a follower, off the raft loop.
    """

    soft_state: SoftState | None  # set when leader or role changed since the last Ready
    hard_state: HardState | None  # set when term/vote/commit changed: persist it
    entries: tuple[Entry, ...]  # consecutive indexes; persist (may overwrite a suffix)
    messages: tuple[Message, ...]  # may leave before the persist completes
    persisted_messages: tuple[Message, ...]  # must wait for the persist
    committed_entries: tuple[Entry, ...]  # committed and durable locally; apply in order
    read_states: tuple[ReadState, ...]
    snapshot: SnapshotMeta | None = None  # install this snapshot first (see above)
    snapshot_requests: tuple[SnapshotNeeded, ...] = ()  # stream snapshots (leader)
