"""The client protocol: requests a client sends to a node's client ROUTER and the replies.

Every request travels with a request id in the envelope header; the reply carries the same
id. Codes 32 and up (codes below 32 are Raft peer messages). Bodies are positional arrays;
nested types (``KeyValue``, ``Compare``, ``TxnOp``, ``OpResult``, ``Event``) travel as
nested arrays. A watch is a *stream*: every message of it carries the request id of its
``WatchRequest``.

Revisions are log indexes: a write's revision is the index of the entry that applied it;
a read's revision is the applied index it reflects.

Consistency levels for reads: ``LINEARIZABLE`` (ReadIndex through the leader), ``LEASE``
(the leader alone while its lease holds, else ReadIndex), ``EVENTUAL`` (any node, from local
state; the reply says which applied index it reflects) and ``DEFAULT`` (the node's
configured ``default_consistency``).

Writes may carry a client session (``session_id``, ``seq``; 0 = none): the state machine
answers a repeated ``(session_id, seq)`` from the result it kept instead of applying it again
(Raft thesis §6.3).
"""

from __future__ import annotations

from enum import IntEnum

from wire.codec import register
from wire.value import value


class Consistency(IntEnum):
    LINEARIZABLE = 0
    LEASE = 1
    EVENTUAL = 2
    DEFAULT = 3  # the serving node's default_consistency


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class CompareTarget(IntEnum):
    """What a transaction compare looks at (etcd's targets)."""

    VALUE = 0
    VERSION = 1  # writes since the key was created; 0 = the key does not exist
    CREATE_REVISION = 2
    MOD_REVISION = 3


class CompareOp(IntEnum):
    EQUAL = 0
    NOT_EQUAL = 1
    LESS = 2
    GREATER = 3


_OPS = {
    "=": CompareOp.EQUAL,
    "==": CompareOp.EQUAL,
    "!=": CompareOp.NOT_EQUAL,
    "<": CompareOp.LESS,
    ">": CompareOp.GREATER,
}


def _op(op: str | CompareOp) -> CompareOp:
    if isinstance(op, CompareOp):
        return op
    try:
        return _OPS[op]
    except KeyError:
        raise ValueError(f"unknown compare operator {op!r}: use =, !=, < or >") from None


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class OpKind(IntEnum):
    PUT = 0
    DELETE = 1
    GET = 2


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


@value
class KeyValue:
    """A key with its value and metadata: ``create_revision`` (when the key was created),
    ``mod_revision`` (its last write) and ``version`` (writes since creation, from 1)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@value
class Compare:
    """One condition of a transaction; build it with the static methods.

    A ``VALUE`` compare on a missing key is false whatever the operator (as in etcd); a
    ``VERSION``, ``CREATE_REVISION`` or ``MOD_REVISION`` compare sees 0 for a missing key.
    """

    key: bytes
    target: CompareTarget
    op: CompareOp
    value: bytes = b""
    number: int = 0

    @staticmethod
    def value_is(key: bytes | str, op: str | CompareOp, value: bytes | str) -> Compare:
        """The key's value compared (bytewise) with ``value``."""
        return Compare(_bytes(key), CompareTarget.VALUE, _op(op), _bytes(value))

    @staticmethod
    def exists(key: bytes | str) -> Compare:
        return Compare(_bytes(key), CompareTarget.VERSION, CompareOp.GREATER, number=0)

    @staticmethod
    def missing(key: bytes | str) -> Compare:
        return Compare(_bytes(key), CompareTarget.VERSION, CompareOp.EQUAL, number=0)

    @staticmethod
    def version(key: bytes | str, op: str | CompareOp, version: int) -> Compare:
        return Compare(_bytes(key), CompareTarget.VERSION, _op(op), number=version)

    @staticmethod
    def mod_revision(key: bytes | str, op: str | CompareOp, revision: int) -> Compare:
        return Compare(_bytes(key), CompareTarget.MOD_REVISION, _op(op), number=revision)

    @staticmethod
    def create_revision(key: bytes | str, op: str | CompareOp, revision: int) -> Compare:
        return Compare(_bytes(key), CompareTarget.CREATE_REVISION, _op(op), number=revision)


@value
class TxnOp:
    """One operation of a transaction branch: ``TxnOp.put(k, v)``, ``.delete(k)``, ``.get(k)``."""

    kind: OpKind
    key: bytes
    value: bytes = b""

    @staticmethod
    def put(key: bytes | str, value: bytes | str) -> TxnOp:
        return TxnOp(OpKind.PUT, _bytes(key), _bytes(value))

    @staticmethod
    def delete(key: bytes | str) -> TxnOp:
        return TxnOp(OpKind.DELETE, _bytes(key))

    @staticmethod
    def get(key: bytes | str) -> TxnOp:
        return TxnOp(OpKind.GET, _bytes(key))


@value
class OpResult:
    """The result of one ``TxnOp``: for put and delete, whether the key existed before; for
    get, the key (``kv``, None if absent)."""

    kind: OpKind
    existed: bool
    kv: KeyValue | None = None


@value
class Event:
    """A watch event. PUT: ``kv`` is the new key-value. DELETE: ``kv`` has the key, an empty
    value and the delete's revision as ``mod_revision``. ``prev_kv`` when asked for."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


# --- requests and replies -----------------------------------------------------------------


@value
class StatusRequest:
    pass


@value
class StatusReply:
    node_id: int
    cluster_id: int
    role: Role
    term: int
    leader_id: int
    commit: int
    applied: int
    last_index: int


@value
class PutRequest:
    key: bytes
    value: bytes
    session_id: int = 0
    seq: int = 0


@value
class DeleteRequest:
    key: bytes
    session_id: int = 0
    seq: int = 0


@value
class WriteReply:
    """A write committed and applied at ``revision`` (its log index).

    ``existed`` tells whether the key existed before (for delete: whether it deleted it).
    """

    revision: int
    existed: bool


@value
class GetRequest:
    key: bytes
    consistency: Consistency = Consistency.DEFAULT


@value
class GetReply:
    """``kv`` is None when the key does not exist; ``revision`` is the applied index read."""

    kv: KeyValue | None
    revision: int


@value
class ErrorReply:
    """A typed error: ``code`` is a ``wire.errors`` class code; ``leader_id`` for NotLeader."""

    code: int
    message: str
    leader_id: int = 0


@value
class TxnRequest:
    """If every compare holds, apply ``success``, else ``failure``: one log entry."""

    compares: list[Compare]
    success: list[TxnOp]
    failure: list[TxnOp]
    session_id: int = 0
    seq: int = 0


@value
class TxnReply:
    """``revision``: the log index of the transaction (whichever branch ran)."""

    succeeded: bool
    revision: int
    results: list[OpResult]


@value
class RangeRequest:
    """Keys in ``[start, end)`` (``end`` None: no upper bound), at most ``limit`` of them
    (0: the node's ``max_scan_keys``)."""

    start: bytes
    end: bytes | None
    limit: int = 0
    consistency: Consistency = Consistency.DEFAULT


@value
class RangeReply:
    """``more``: keys after the last one returned remain in the range."""

    kvs: list[KeyValue]
    revision: int
    more: bool


@value
class WatchRequest:
    """Stream events for ``key`` (or every key under it with ``prefix``) from
    ``start_revision`` (0: from the node's next applied revision)."""

    key: bytes
    prefix: bool = False
    start_revision: int = 0
    prev_kv: bool = False


@value
class WatchCreated:
    """First message of a watch stream: ``revision`` is the node's applied index; the node
    sends a progress message at least every ``progress_ms`` while the watch is idle."""

    revision: int
    progress_ms: int


@value
class WatchEvents:
    """Events in revision order; all events of one revision are in one message."""

    events: list[Event]


@value
class WatchProgress:
    """Every event with a revision <= ``revision`` has been sent on this stream."""

    revision: int


@value
class WatchCanceled:
    """Last message of a watch stream: an error ``code`` (``wire.errors``) and why.
    ``compact_revision``: for ``Compacted``, the oldest revision still available.
    ``retryable``: the watch may be resumed (here later, or on another node)."""

    code: int
    message: str
    compact_revision: int = 0
    retryable: bool = False


@value
class WatchCancelRequest:
    """Stop the watch opened by request ``watch_id`` on this connection (no reply)."""

    watch_id: int


@value
class SessionRequest:
    """Register a client session (one log entry); the reply names it."""


@value
class SessionReply:
    """``session_id`` is the registering entry's index; the session expires after ``ttl_ms``
    of log time without a write."""

    session_id: int
    ttl_ms: int


ClientRequest = (
    StatusRequest
    | PutRequest
    | DeleteRequest
    | GetRequest
    | TxnRequest
    | RangeRequest
    | WatchRequest
    | WatchCancelRequest
    | SessionRequest
)
ClientReply = (
    StatusReply
    | WriteReply
    | GetReply
    | ErrorReply
    | TxnReply
    | RangeReply
    | WatchCreated
    | WatchEvents
    | WatchProgress
    | WatchCanceled
    | SessionReply
)

for _code, _cls in (
    (32, StatusRequest),
    (33, StatusReply),
    (34, PutRequest),
    (35, DeleteRequest),
    (36, WriteReply),
    (37, GetRequest),
    (38, GetReply),
    (39, ErrorReply),
    (40, TxnRequest),
    (41, TxnReply),
    (42, RangeRequest),
    (43, RangeReply),
    (44, WatchRequest),
    (45, WatchCreated),
    (46, WatchEvents),
    (47, WatchProgress),
    (48, WatchCanceled),
    (49, WatchCancelRequest),
    (50, SessionRequest),
    (51, SessionReply),
):
    register(_code, _cls)
