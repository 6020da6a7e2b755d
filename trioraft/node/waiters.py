"""Requests waiting on the log: proposals until applied, reads until their index is applied.

The raft-loop task registers waiters; the apply task resolves them. Both run on the trio
thread and neither awaits while it touches this object, so no lock is needed.

A waiter is a plain callable taking the result (or an exception instance): the client server
passes one that encodes and sends the reply without a task per request.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any, Protocol

from wire.errors import NotLeader, ProposalDropped, TrioraftError, Unavailable

Reply = Callable[[Any], None]


class Read(Protocol):
    """A read waiting for the state machine to reach its read index."""

    def serve(self, applied: int) -> None:
        """Answer from the state machine, which has applied up to ``applied``."""

    def fail(self, error: TrioraftError) -> None: ...


class Waiters:
    def __init__(self) -> None:
        self._proposals: dict[int, tuple[int, Reply]] = {}  # index -> (term, reply)
        self._read_ctx: dict[int, Read] = {}  # ReadIndex context -> read, awaiting confirmation
        self._reads: list[tuple[int, int, Read]] = []  # heap of (index, seq, read)
        self._seq = itertools.count()
        self._ctx = itertools.count(1)

    # --- proposals ---
    @property
    def proposals(self) -> int:
        """Proposals waiting to be applied."""
        return len(self._proposals)

    def add_proposal(self, index: int, term: int, reply: Reply) -> None:
        self._proposals[index] = (term, reply)

    def resolve_applied(self, index: int, term: int, result: Any) -> None:
        """Entry ``index`` of ``term`` was applied with ``result``: answer who proposed it.

        ``result`` may be None for entries nobody proposed through us (no-ops): a waiter at
        such an index always had another term, so it gets ``ProposalDropped``.
        """
        waiter = self._proposals.pop(index, None)
        if waiter is None:
            return
        proposed_term, reply = waiter
        if proposed_term == term:
            reply(result)
        else:  # another leader's entry replaced ours at this index
            reply(ProposalDropped("leadership changed before the write committed; not applied"))

    def fail_through(self, index: int, error: TrioraftError) -> None:
        """The log up to ``index`` was replaced by a snapshot: proposals at or below it
        will never be resolved entry by entry here."""
        for i in [i for i in self._proposals if i <= index]:
            self._proposals.pop(i)[1](error)

    # --- reads ---
    def new_read(self, read: Read) -> int:
        ctx = next(self._ctx)
        self._read_ctx[ctx] = read
        return ctx

    def cancel_read(self, ctx: int) -> None:
        self._read_ctx.pop(ctx, None)

    def read_confirmed(self, ctx: int, index: int, applied: int) -> None:
        read = self._read_ctx.pop(ctx, None)
        if read is not None:
            self.add_read(index, read, applied)

    def add_read(self, index: int, read: Read, applied: int) -> None:
        """Serve ``read`` once the state machine has applied ``index`` (now if it has)."""
        if applied >= index:
            read.serve(applied)
        else:
            heapq.heappush(self._reads, (index, next(self._seq), read))

    def serve_reads(self, applied: int) -> None:
        while self._reads and self._reads[0][0] <= applied:
            read = heapq.heappop(self._reads)[2]
            read.serve(applied)

    def fail_unconfirmed_reads(self, leader_id: int) -> None:
        """Leadership was lost: reads not yet confirmed by a quorum never will be here."""
        pending, self._read_ctx = self._read_ctx, {}
        for read in pending.values():
            read.fail(NotLeader("leadership lost before the read was confirmed", leader_id))

    def fail_all(self, error: TrioraftError | None = None) -> None:
        """Shutting down: answer everyone still waiting."""
        error = error or Unavailable("node is shutting down")
        proposals, self._proposals = self._proposals, {}
        for _term, reply in proposals.values():
            reply(error)
        reads = list(self._read_ctx.values()) + [r for _i, _s, r in self._reads]
        self._read_ctx, self._reads = {}, []
        for read in reads:
            read.fail(error)

    def __len__(self) -> int:
        return len(self._proposals) + len(self._read_ctx) + len(self._reads)
