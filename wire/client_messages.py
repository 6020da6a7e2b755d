"""The client protocol: requests a client sends to a node's client ROUTER and the replies.

Every request travels with a request id in the envelope header; the reply carries the same
id. Codes 32 and up (codes below 32 are Raft peer messages). Bodies are positional arrays.

Consistency levels for reads: ``LINEARIZABLE`` (ReadIndex through the leader) and
``EVENTUAL`` (any node, from local state; the reply says which applied index it reflects).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from wire.codec import register


class Consistency(IntEnum):
    LINEARIZABLE = 0
    LEASE = 1
    EVENTUAL = 2


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(frozen=True, slots=True)
class StatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class StatusReply:
    node_id: int
    cluster_id: int
    role: Role
    term: int
    leader_id: int
    commit: int
    applied: int
    last_index: int


@dataclass(frozen=True, slots=True)
class PutRequest:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    key: bytes


@dataclass(frozen=True, slots=True)
class WriteReply:
    """A write committed and applied at ``revision`` (its log index).

    ``existed`` tells whether the key existed before (for delete: whether it deleted it).
    """

    revision: int
    existed: bool


@dataclass(frozen=True, slots=True)
class GetRequest:
    key: bytes
    consistency: Consistency = Consistency.LINEARIZABLE


@dataclass(frozen=True, slots=True)
class GetReply:
    """``value`` is None when the key does not exist; ``revision`` is the applied index read."""

    value: bytes | None
    revision: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A typed error: ``code`` is a ``wire.errors`` class code; ``leader_id`` for NotLeader."""

    code: int
    message: str
    leader_id: int = 0


ClientRequest = StatusRequest | PutRequest | DeleteRequest | GetRequest
ClientReply = StatusReply | WriteReply | GetReply | ErrorReply

for _code, _cls in (
    (32, StatusRequest),
    (33, StatusReply),
    (34, PutRequest),
    (35, DeleteRequest),
    (36, WriteReply),
    (37, GetRequest),
    (38, GetReply),
    (39, ErrorReply),
):
    register(_code, _cls)
