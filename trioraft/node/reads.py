"""Reads waiting to be served: each answers from the state machine once it has applied at
least the read's index (see ``Waiters``). No task per read: ``reply`` sends the answer.
Reads that reach the leader before its raft loop next takes them travel as one
``ReadGroup``: one ReadIndex context, one confirmation, one index for all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trioraft.kv.state_machine import KVStateMachine
from trioraft.node.waiters import Read
from wire import client_messages as cm
from wire.errors import TrioraftError


class KeyRead:
    """A get: answers ``GetReply(kv, applied)``."""

    __slots__ = ("key", "reply", "sm")

    def __init__(self, sm: KVStateMachine, key: bytes, reply: Callable[[Any], None]) -> None:
        self.sm, self.key, self.reply = sm, key, reply

    def serve(self, applied: int) -> None:
        self.reply(cm.GetReply(self.sm.get_kv(self.key), applied))

    def fail(self, error: TrioraftError) -> None:
        self.reply(error)


class RangeRead:
    """A scan page: answers ``RangeReply(kvs, applied, more)``."""

    __slots__ = ("end", "limit", "reply", "sm", "start")

    def __init__(
        self,
        sm: KVStateMachine,
        start: bytes,
        end: bytes | None,
        limit: int,
        reply: Callable[[Any], None],
    ) -> None:
        self.sm, self.start, self.end, self.limit, self.reply = sm, start, end, limit, reply

    def serve(self, applied: int) -> None:
        kvs, more = self.sm.range(self.start, self.end, self.limit)
        self.reply(cm.RangeReply(kvs, applied, more))

    def fail(self, error: TrioraftError) -> None:
        self.reply(error)


class ReadGroup:
    """Reads queued for one ReadIndex. The raft loop assigns the index when it takes the
    group, after every member arrived, so the index covers each of them (thesis §6.4)."""

    __slots__ = ("reads",)

    def __init__(self) -> None:
        self.reads: list[Read] = []

    def serve(self, applied: int) -> None:
        for read in self.reads:
            read.serve(applied)

    def fail(self, error: TrioraftError) -> None:
        for read in self.reads:
            read.fail(error)
