"""Writing the log: each Ready's entries and hard state, synced when Raft's safety needs it.

Entries, term and vote must be durable before the messages that depend on them leave. A
change of the commit index alone is written but not synced (as etcd does): a commit index
lost in a crash is learned again from the leader, and applies never run ahead of the
durable log.

Three ways to write a Ready (docs/performance.md):

- **unsynced** (``write_unsynced``), inline: a Ready whose only durability need is its
  entries: nothing in it waits for them (no ``persisted_messages``, no new term or vote), a
  leader's. The entries are written to the store at once, without a sync, and the core is
  advanced with ``synced=False``: the next Ready may follow at once, committed entries are
  applied as soon as they are written (an apply lands in the same write-ahead log after
  them, so a crash cannot keep the apply and lose the entries), and the leader counts its
  own copy toward a commit only when the persist task's next sync (``sync``) is done. So
  the leader's sync neither gates its commits (two followers are a quorum of three) nor
  holds up its next batch: thesis §10.2.1, etcd's asynchronous storage writes;
- **inline**, in the raft loop's own turn (``write_now``), when a sync would hold up nothing
  that could travel meanwhile: a Ready that needs no sync (a commit index), or one that
  sends no requests (a follower's: its responses are already out). No hop to the persist
  task, its sync thread and back, each a loop turn and a thread wake-up. The sync blocks the
  trio thread for the fsync (it releases the GIL), so a disk whose last sync took over
  ``INLINE_SYNC_MAX`` is synced on the thread instead;
- by the **persist task** (``write``) otherwise: the leader's Ready, whose sync runs on the
  task's own thread while its AppendEntries travel (the leader replicates in parallel with
  its own disk write). It also takes over a Ready whose inline write failed, and retries it
  until it succeeds (``StorageGuard``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from storage import DataCorruption, Store
from trioraft.core import Ready
from trioraft.node.events import Persisted, Synced
from trioraft.node.storage_guard import StorageGuard
from trioraft.node.sync_thread import SyncThread
from wire.messages import RESPONSE_TYPES, HardState, Message

INLINE_SYNC_MAX = 0.005  # seconds; a sync slower than this is not run on the trio thread


class Persister:
    def __init__(
        self, node_id: int, store: Store, storage: StorageGuard, durable: HardState
    ) -> None:
        self._store = store
        self._storage = storage
        self._sync_thread = SyncThread(f"trioraft-sync-{node_id}")
        self._synced = (durable.term, durable.vote)  # the durable term and vote
        self._slow_sync = False  # the last sync took over INLINE_SYNC_MAX

    def must_sync(self, rd: Ready, unsynced: tuple[int, int] | None) -> bool:
        """Entries, and a term or vote not yet synced, must be durable before the messages
        that depend on them leave; a commit index alone need not be. ``unsynced`` (the last
        entry written without a sync, ``write_unsynced``): messages that leave after this
        Ready's write (acks of those entries, after a step-down) need a sync too."""
        return (
            bool(rd.entries)
            or self._new_term_or_vote(rd)
            or (unsynced is not None and bool(rd.persisted_messages))
        )

    def synced_all(self, rd: Ready, unsynced: tuple[int, int] | None) -> bool:
        """Once ``rd`` is written (``write_now``, ``write``), is everything written so far
        durable? The ``synced`` of ``RawNode.advance``."""
        return unsynced is None or self.must_sync(rd, unsynced)

    def write_unsynced(self, rd: Ready) -> bool:
        """Write ``rd``'s entries (and commit index) without a sync, if nothing in it waits
        for them; False if it may not, or if the write failed (then ``write_now``)."""
        if (
            not rd.entries
            or rd.persisted_messages
            or rd.snapshot is not None
            or self._new_term_or_vote(rd)
        ):
            return False
        return self._storage.try_now(partial(self._append, rd)) is not None

    async def sync(self, index: int, term: int) -> None:
        """Persist task: sync every write so far, retried until it succeeds; the caller
        then reports ``(index, term)``, the last entry written before it began, durable."""
        await self._retried(self._sync_attempt, (index, term))

    async def _sync_attempt(self) -> None:
        await self._sync_thread.run(self._timed_sync)

    async def _retried(
        self, attempt: Callable[[], Awaitable[None]], unsynced: tuple[int, int] | None
    ) -> None:
        """``attempt`` through ``StorageGuard.write``. If an attempt failed and writes
        were unsynced (``unsynced``: the last entry written without a sync), the store may
        have lost them when it reopened in between: if so, the node stops with
        ``DataCorruption`` (a restart replays the log from what is durable; the followers
        hold what a leader lost)."""
        attempts = 0

        async def counted() -> None:
            nonlocal attempts
            attempts += 1
            await attempt()

        await self._storage.write("persist", counted)
        if attempts > 1 and unsynced is not None:
            index, term = unsynced
            state = self._store.load_raft_state()
            at = index - (state.snapshot.index if state.snapshot is not None else 0)
            if at > len(state.entries) or (at > 0 and state.entries[at - 1].term != term):
                raise DataCorruption(
                    f"data dir {self._store.path}: log entries written up to index {index} "
                    "were lost in the storage failure; restart the node to recover from "
                    "what is durable"
                )

    def write_now(self, rd: Ready, unsynced: tuple[int, int] | None) -> bool:
        """Write (and sync) ``rd`` on this thread if it may go inline; False if it may not,
        or if the write failed: then the persist task must take it (``write``)."""
        if rd.snapshot is not None:
            return False
        must_sync = self.must_sync(rd, unsynced)
        if must_sync and (
            self._slow_sync or not all(type(m) in RESPONSE_TYPES for m in rd.messages)
        ):
            return False
        if self._storage.try_now(partial(self._write_ready_now, rd, must_sync)) is None:
            return False
        self._wrote(rd, must_sync)
        return True

    async def write(self, rd: Ready, unsynced: tuple[int, int] | None) -> None:
        """Persist task: write ``rd``, retried until it succeeds (``StorageGuard``).
        ``unsynced``: the core's last entry written without a sync before ``rd``."""
        if rd.entries or rd.hard_state is not None or (unsynced and rd.persisted_messages):
            must_sync = self.must_sync(rd, unsynced)
            await self._retried(partial(self._write_ready, rd, must_sync), unsynced)
            self._wrote(rd, must_sync)

    async def serve(
        self,
        items: trio.MemoryReceiveChannel[tuple[Ready, tuple[int, int] | None] | Synced],
        send: Callable[[Sequence[Message]], object],
        report: Callable[[Persisted | Synced], Awaitable[None]],
        install_done: Callable[[], trio.Event | None],
    ) -> None:
        """The persist task: write each Ready the raft loop did not write inline (with the
        last entry it wrote unsynced before it), ``send`` its acks, ``report`` it done;
        sync the writes the raft loop left unsynced and ``report`` that too."""
        async for item in items:
            if isinstance(item, Synced):
                await self.sync(item.index, item.term)  # retried (StorageGuard)
                await report(item)
                continue
            rd, unsynced = item
            if rd.snapshot is not None and (done := install_done()) is not None:
                await done.wait()  # the snapshot's data first, then its ack
            await self.write(rd, unsynced)  # retried until it succeeds
            send(rd.persisted_messages)
            await report(Persisted(rd, self.synced_all(rd, unsynced)))

    def close(self) -> None:
        self._sync_thread.close()

    def _new_term_or_vote(self, rd: Ready) -> bool:
        """``rd`` carries a term or vote not yet synced."""
        hs = rd.hard_state
        return hs is not None and (hs.term, hs.vote) != self._synced

    def _append(self, rd: Ready) -> None:
        """Write ``rd``'s entries and hard state, if it has any (no sync)."""
        if rd.entries or rd.hard_state is not None:
            self._store.append(rd.entries, rd.hard_state)

    def _wrote(self, rd: Ready, synced: bool) -> None:
        if synced and rd.hard_state is not None:
            self._synced = (rd.hard_state.term, rd.hard_state.vote)

    async def _write_ready(self, rd: Ready, must_sync: bool) -> None:
        """One attempt; after a failed sync the retry writes the Ready again, then syncs."""
        self._append(rd)
        if must_sync:
            await self._sync_attempt()

    def _write_ready_now(self, rd: Ready, must_sync: bool) -> None:
        """``_write_ready`` on this thread (``write_now``)."""
        self._append(rd)
        if must_sync:
            self._timed_sync()

    def _timed_sync(self) -> None:
        """The store's sync, timed where it runs: the disk's time, not the hand-off's to the
        sync thread and back (which a busy machine stretches)."""
        start = time.monotonic()
        self._store.sync()
        self._slow_sync = time.monotonic() - start > INLINE_SYNC_MAX
