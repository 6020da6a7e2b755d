"""Writing the log: each Ready's entries and hard state, synced when Raft's safety needs it.

Entries, term and vote must be durable before the messages that depend on them leave. A
change of the commit index alone is written but not synced (as etcd does): a commit index
lost in a crash is learned again from the leader, and applies never run ahead of the
durable log.

Two ways to write a Ready (docs/performance.md):

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
from functools import partial

from storage import Store
from trioraft.core import Ready
from trioraft.node.storage_guard import StorageGuard
from trioraft.node.sync_thread import SyncThread
from wire.messages import RESPONSE_TYPES, HardState

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

    def must_sync(self, rd: Ready) -> bool:
        """Entries, and a term or vote not yet synced, must be durable before the messages
        that depend on them leave; a commit index alone need not be."""
        hs = rd.hard_state
        return bool(rd.entries) or (hs is not None and (hs.term, hs.vote) != self._synced)

    def write_now(self, rd: Ready) -> bool:
        """Write (and sync) ``rd`` on this thread if it may go inline; False if it may not,
        or if the write failed: then the persist task must take it (``write``)."""
        if rd.snapshot is not None:
            return False
        must_sync = self.must_sync(rd)
        if must_sync and (
            self._slow_sync or not all(type(m) in RESPONSE_TYPES for m in rd.messages)
        ):
            return False
        if self._storage.try_now(partial(self._write_ready_now, rd, must_sync)) is None:
            return False
        self._wrote(rd, must_sync)
        return True

    async def write(self, rd: Ready) -> None:
        """Persist task: write ``rd``, retried until it succeeds (``StorageGuard``)."""
        if rd.entries or rd.hard_state is not None:
            must_sync = self.must_sync(rd)
            await self._storage.write("persist", partial(self._write_ready, rd, must_sync))
            self._wrote(rd, must_sync)

    def close(self) -> None:
        self._sync_thread.close()

    def _wrote(self, rd: Ready, synced: bool) -> None:
        if synced and rd.hard_state is not None:
            self._synced = (rd.hard_state.term, rd.hard_state.vote)

    async def _write_ready(self, rd: Ready, must_sync: bool) -> None:
        """One attempt; after a failed sync the retry writes the Ready again, then syncs."""
        self._store.append(rd.entries, rd.hard_state)
        if must_sync:
            await self._sync_thread.run(self._timed_sync)

    def _write_ready_now(self, rd: Ready, must_sync: bool) -> None:
        """``_write_ready`` on this thread (``write_now``)."""
        self._store.append(rd.entries, rd.hard_state)
        if must_sync:
            self._timed_sync()

    def _timed_sync(self) -> None:
        """The store's sync, timed where it runs: the disk's time, not the hand-off's to the
        sync thread and back (which a busy machine stretches)."""
        start = time.monotonic()
        self._store.sync()
        self._slow_sync = time.monotonic() - start > INLINE_SYNC_MAX
