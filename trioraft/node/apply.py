"""Applying committed entries: the apply task, and the raft loop's inline shortcut.

The state machine has one writer at a time. The raft loop hands each committed batch to
``Applier.submit``: with nothing queued before it, the batch is applied at once in the
loop's own turn (a loop turn and a task hop saved); otherwise, or when that write fails,
it goes to the apply task, which retries it until it succeeds (``StorageGuard``). A
received snapshot is installed by the apply task after the batches before it
(``submit_install``; docs/snapshots.md). Once a batch is applied its writes are answered,
the reads it allows are served and the watches are told, replies leaving together.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import trio

from trioraft.kv.state_machine import KVStateMachine
from trioraft.node.membership import MembershipService
from trioraft.node.snapshots import InstallRequest, SnapshotService
from trioraft.node.storage_guard import StorageGuard
from trioraft.node.waiters import Waiters
from trioraft.node.watch import WatchHub
from wire.errors import Unavailable
from wire.messages import Entry, SnapshotMeta

APPLY_QUEUE = 64  # batches and installs the apply task may have waiting


class Applier:
    """Owns the apply queue; ``run`` is the apply task."""

    def __init__(
        self,
        sm: KVStateMachine,
        storage: StorageGuard,
        waiters: Waiters,
        watch: WatchHub,
        members: MembershipService,
        snapshots: SnapshotService | None,
        replies: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self._sm = sm
        self._storage = storage
        self._waiters = waiters
        self._watch = watch
        self._members = members
        self._snapshots = snapshots
        self._replies = replies  # replies sent meanwhile leave together
        self._send, self._recv = trio.open_memory_channel[tuple[Entry, ...] | InstallRequest](
            APPLY_QUEUE
        )
        self._queued = 0  # batches and installs handed to the apply task, not yet done
        self.install_done: trio.Event | None = None
        """Set once the last snapshot handed over is installed (its ack waits for it)."""

    # --- raft loop ---
    async def submit(self, entries: tuple[Entry, ...]) -> None:
        """Apply a committed batch: now if nothing is queued before it (and the write
        succeeds), else through the apply task."""
        if self._queued or not self._apply_inline(entries):
            self._queued += 1
            await self._send.send(entries)

    async def submit_install(self, meta: SnapshotMeta) -> None:
        """Have the apply task install snapshot ``meta`` after the batches before it."""
        self.install_done = trio.Event()
        self._queued += 1
        await self._send.send(InstallRequest(meta, self.install_done))

    def _apply_inline(self, entries: tuple[Entry, ...]) -> bool:
        """Apply a batch on this thread. False if the write fails: the apply task takes
        the batch over and retries it (``StorageGuard``)."""
        done = self._storage.try_now(partial(self._sm.apply, entries))
        if done is None:
            return False
        self._applied(entries, done.unwrap())
        return True

    # --- the apply task: the only task that writes the state machine ---
    async def run(self) -> None:
        async for item in self._recv:
            if isinstance(item, InstallRequest):
                await self._install(item)
            else:
                out = await self._storage.write("apply", partial(self._apply_batch, item))
                self._applied(item, out)
            self._queued -= 1

    async def _apply_batch(self, entries: tuple[Entry, ...]) -> Any:
        return self._sm.apply(entries)  # one attempt, for StorageGuard.write

    def _applied(self, entries: tuple[Entry, ...], out: Any) -> None:
        """A batch is applied: answer its writes and the reads it allows, tell the watches."""
        if self._snapshots is not None:
            self._snapshots.note_applied(entries)
        results = out.results
        with self._replies():
            for entry in entries:
                self._waiters.resolve_applied(entry.index, entry.term, results.get(entry.index))
            self._members.on_applied(entries, out.memberships)
            self._watch.publish(out.events, self._sm.applied)
            self._waiters.serve_reads(self._sm.applied)

    async def _install(self, item: InstallRequest) -> None:
        """Replace the state machine by a received snapshot."""
        assert self._snapshots is not None
        await self._storage.write("apply", partial(self._snapshots.install, item.meta))
        self._sm.reload()
        self._watch.reset(self._sm.applied)
        self._waiters.fail_through(
            item.meta.index,
            Unavailable("a snapshot replaced this node's log; the write may have applied"),
        )
        self._waiters.serve_reads(self._sm.applied)
        item.done.set()
