"""A dedicated thread for the persist task's syncs.

The sync (``Store.sync``, RocksDB's ``flush_wal(True)``) blocks for an fsync, so it runs off
the trio thread (it releases the GIL; see docs/durability.md). ``trio.to_thread.run_sync``
would do, but it costs more per call than the sync's own Python work: a capacity limiter, a
copied context, a thread-cache job and two thread renames. A follower syncs once per
AppendEntries, so the persist task keeps one thread of its own and hands it each sync
through a queue; the thread reports back with ``TrioToken.run_sync_soon``.

A waiting caller cannot be cancelled (like ``to_thread.run_sync``): the sync completes, and
the caller sees the cancellation at its next checkpoint.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

T = TypeVar("T")

_Job = tuple[Callable[[], object], trio.lowlevel.Task, trio.lowlevel.TrioToken]


class SyncThread:
    """Runs blocking calls one at a time on a thread of its own, started on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the thread; its result, or its exception raised here."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        task = trio.lowlevel.current_task()
        self._jobs.put((fn, task, trio.lowlevel.current_trio_token()))
        result: T = await trio.lowlevel.wait_task_rescheduled(
            lambda _raise_cancel: trio.lowlevel.Abort.FAILED
        )
        return result

    def close(self) -> None:
        """Let the thread end once the calls queued so far are done."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, task, token = job
            result = outcome.capture(fn)
            try:
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
            except trio.RunFinishedError:  # the trio run is gone: nobody waits any more
                return
