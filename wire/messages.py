"""Pure message types shared by the Raft core, the codec and storage.

Standard library only: ``trioraft.core`` imports this module, and a test enforces that the
core imports nothing impure. Every message is a ``@value`` class (``wire.value``: a slotted
dataclass, frozen to the type checker, cheap to build); node ids are positive integers and
``0`` means "nobody" wherever an id may be absent.

Every Raft message carries ``src``, ``dst`` and ``term`` (the sender's current term).
"""

from __future__ import annotations

from enum import IntEnum

from wire.value import value

NO_NODE = 0


class EntryKind(IntEnum):
    NORMAL = 0  # application command (opaque bytes)
    NOOP = 1  # appended by a new leader so it can commit entries of older terms (§5.4.2, §8)
    CONFIG = 2  # membership change (reserved for joint consensus)


@value
class Entry:
    term: int
    index: int
    kind: EntryKind
    data: bytes


@value
class HardState:
    """What Raft must persist before it answers: current term, vote in it, commit index."""

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0


@value
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


@value
class RequestVoteResponse:
    src: int
    dst: int
    term: int
    granted: bool
    pre_vote: bool = False


@value
class AppendEntries:
    """Log replication (§5.3): entries follow ``prev_index``/``prev_term``."""

    src: int
    dst: int
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@value
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


@value
class Heartbeat:
    """Leader liveness and commit propagation; ``context`` tags a ReadIndex round."""

    src: int
    dst: int
    term: int
    commit: int
    context: int = 0


@value
class HeartbeatResponse:
    src: int
    dst: int
    term: int
    context: int = 0


@value
class TimeoutNow:
    """Leadership transfer (thesis §3.10): the receiver campaigns at once."""

    src: int
    dst: int
    term: int


@value
class PeerProbe:
    """A connection check between peer transports, never seen by the core: a node that
    bootstraps a cluster sends one to each initial member to learn which are reachable
    before its first election (trioraft.node.membership). Receivers drop it."""

    src: int
    dst: int
    term: int = 0


@value
class SnapshotMeta:
    """What a snapshot covers (§7): the state machine after every entry up to ``index``,
    whose term is ``term``, and the configuration at that point: its ``voters`` and, when
    known, the whole ``membership`` (``trioraft.core.confstate.encode_membership``; empty:
    the configuration is the static one the nodes were started with).

    Also the start of a compacted log: entries up to ``index`` are gone from it."""

    index: int = 0
    term: int = 0
    voters: tuple[int, ...] = ()
    membership: bytes = b""


@value
class InstallSnapshot:
    """A leader's snapshot reached this follower whole and verified (§7, InstallSnapshot).

    The shell streams the file outside the core (docs/snapshots.md) and, once its SHA-256
    checks out, steps this into its own core on behalf of the leader ``src`` (whose term
    is ``term``). Only metadata: the data never passes through the core."""

    src: int
    dst: int
    term: int
    snapshot: SnapshotMeta


class SnapshotStatus(IntEnum):
    """A snapshot receiver's answer to an offer or a chunk (docs/snapshots.md)."""

    OK = 0  # accepted/stored: continue from ``offset``
    BAD_CHUNK = 1  # the chunk failed its CRC32: resend from ``offset``
    OUT_OF_ORDER = 2  # not the offset expected: resend from ``offset``
    DONE = 3  # the whole file arrived and matched its SHA-256; handed to Raft
    FAILED = 4  # the file failed its SHA-256 (or could not be stored): start over
    REFUSED = 5  # stale term or unknown transfer: stop


@value
class SnapshotOffer:
    """Leader -> follower: a transfer of snapshot (``index``, ``snap_term``) of ``size``
    bytes whose SHA-256 is ``sha256`` is about to start (or resume)."""

    src: int
    dst: int
    term: int
    index: int
    snap_term: int
    size: int
    sha256: bytes


@value
class SnapshotOfferReply:
    """Follower -> leader: go on from byte ``offset`` (0, or where a cut transfer of the
    same file stopped), or stop (``REFUSED``)."""

    src: int
    dst: int
    term: int
    index: int
    status: SnapshotStatus
    offset: int


@value
class SnapshotChunk:
    """Leader -> follower: bytes ``[offset, offset + len(data))`` of the snapshot file;
    ``crc32`` is ``zlib.crc32(data)``; ``last`` marks the chunk that ends the file."""

    src: int
    dst: int
    term: int
    index: int
    offset: int
    crc32: int
    data: bytes
    last: bool


@value
class SnapshotAck:
    """Follower -> leader, for every chunk: ``offset`` is how many bytes the follower has
    stored in order, so the next byte it wants (see ``SnapshotStatus``)."""

    src: int
    dst: int
    term: int
    index: int
    status: SnapshotStatus
    offset: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | TimeoutNow
    | InstallSnapshot
    | SnapshotOffer
    | SnapshotOfferReply
    | SnapshotChunk
    | SnapshotAck
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
RESPONSE_TYPES: tuple[type, ...] = (
    RequestVoteResponse,
    AppendEntriesResponse,
    HeartbeatResponse,
    SnapshotOfferReply,
    SnapshotAck,
)

# Snapshot streaming (docs/snapshots.md): handled by the nodes' snapshot tasks, never by the
# core. Offers and chunks travel like requests, replies and acks like responses.
SNAPSHOT_TRANSFER_TYPES: tuple[type, ...] = (
    SnapshotOffer,
    SnapshotOfferReply,
    SnapshotChunk,
    SnapshotAck,
)
