"""Pure message types shared by the Raft core, the codec and storage.

Standard library only: ``trioraft.core`` imports this module, and a test enforces that the
core imports nothing impure. Every message is a frozen, slotted dataclass; node ids are
positive integers and ``0`` means "nobody" wherever an id may be absent.

Every Raft message carries ``src``, ``dst`` and ``term`` (the sender's current term).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

NO_NODE = 0


class EntryKind(IntEnum):
    NORMAL = 0  # application command (opaque bytes)
    NOOP = 1  # appended by a new leader so it can commit entries of older terms (§5.4.2, §8)
    CONFIG = 2  # membership change (reserved for joint consensus)


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """What Raft must persist before it answers: current term, vote in it, commit index."""

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A (pre-)vote request (§5.2; pre-vote: thesis §9.6).

    A pre-vote carries the term the candidate *would* campaign in and changes no state on
    the receiver. ``transfer`` marks a campaign started by TimeoutNow (thesis §3.10), which
    must not be refused because the receiver heard from a leader recently.
    """

    src: int
    dst: int
    term: int
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    src: int
    dst: int
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Log replication (§5.3): entries follow ``prev_index``/``prev_term``."""

    src: int
    dst: int
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """Answer to AppendEntries.

    On success ``index`` is the last index now known to match the leader's log. On
    rejection ``index`` is the rejected ``prev_index`` and ``hint_index``/``hint_term``
    let the leader skip back past a whole conflicting term at once (§5.3, fast backtracking).
    """

    src: int
    dst: int
    term: int
    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness and commit propagation; ``context`` tags a ReadIndex round."""

    src: int
    dst: int
    term: int
    commit: int
    context: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    src: int
    dst: int
    term: int
    context: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer (thesis §3.10): the receiver campaigns at once."""

    src: int
    dst: int
    term: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | TimeoutNow
)

RAFT_MESSAGE_TYPES: tuple[type, ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    TimeoutNow,
)

# Requests travel on the sender's DEALER; responses travel back through the receiver's ROUTER.
RESPONSE_TYPES: tuple[type, ...] = (RequestVoteResponse, AppendEntriesResponse, HeartbeatResponse)
