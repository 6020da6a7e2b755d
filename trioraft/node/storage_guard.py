"""What a node does when its disk fails: retry, acknowledge nothing, recover.

The persist task and the apply task run every storage write through ``StorageGuard.write``.
A write or sync that raises ``StorageError`` (disk full, I/O error) is retried, with
backoff, until it succeeds; before each retry the store gets a chance to ``recover()``
(``RocksStore`` reopens its DB). Meanwhile:

- the persist task holds on to its ``Ready``: its ``persisted_messages`` (votes, append
  acks) do not leave and the core is not advanced, so nothing unpersisted is acknowledged
  and the leader counts no entry of its own;
- the node stops taking part (``failing`` is True): the raft loop steps down if it leads,
  stops ticking (so it does not campaign) and peer messages are dropped (Raft resends);
- eventual reads are served from the state machine as long as the store can read.

One error line is logged when the trouble starts and one line when writes succeed again.
``DataCorruption`` is not transient, nor is a store that lost state-machine writes in
the failure: ``write`` raises it and the node stops (a restart replays the log).
See docs/durability.md.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from outcome import Outcome, Value

from storage import DataCorruption, Store
from wire.errors import StorageError

log = logging.getLogger("trioraft.node.node")

T = TypeVar("T")

RETRY_FIRST = 0.05  # seconds before the first retry; doubles up to RETRY_MAX
RETRY_MAX = 2.0


class StorageGuard:
    def __init__(self, node_id: int, store: Store, applied: Callable[[], int]) -> None:
        self._node_id = node_id
        self._store = store
        self._applied = applied  # the state machine's applied index, as the node knows it
        self._failing: dict[str, StorageError] = {}  # task -> its last failure
        self._since = 0.0

    @property
    def failing(self) -> bool:
        """A storage write is failing: the node must not take part in Raft."""
        return bool(self._failing)

    async def write(self, task: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds; returns its result.

        ``attempt`` must be safe to repeat after a failure (appends and applies are: a
        failed write wrote nothing, and rewriting what did get written is idempotent).
        Raises ``DataCorruption`` when retrying cannot help. If cancelled, the write may
        or may not have happened.
        """
        delay = RETRY_FIRST
        while True:
            try:
                if self._failing:
                    self._recover()
                result = await attempt()
            except DataCorruption:
                raise
            except StorageError as exc:
                self._failed(task, exc)
                await trio.sleep(delay)
                delay = min(2 * delay, RETRY_MAX)
                continue
            self._succeeded(task)
            return result

    def try_now(self, attempt: Callable[[], T]) -> Outcome[T] | None:
        """One attempt on this thread, for work the raft loop does inline: its result, or
        None if storage is failing or the attempt fails, for the task to take the work over
        and retry it through ``write``. Raises ``DataCorruption`` as ``write`` does."""
        if self._failing:
            return None
        try:
            return Value(attempt())
        except DataCorruption:
            raise
        except StorageError:
            return None

    def _recover(self) -> None:
        self._store.recover()
        on_disk, known = self._store.applied_index(), self._applied()
        if on_disk < known:
            raise DataCorruption(
                f"data dir {self._store.path}: state-machine writes up to index {known} "
                f"were lost in the storage failure (index {on_disk} on disk); restart the "
                "node to apply them again from the log"
            )

    def _failed(self, task: str, exc: StorageError) -> None:
        if not self._failing:
            self._since = trio.current_time()
            log.error(
                "node %d: storage failed, acknowledging nothing and retrying until writes "
                "succeed again: %s",
                self._node_id,
                exc,
            )
        else:
            log.debug("node %d: %s still failing: %s", self._node_id, task, exc)
        self._failing[task] = exc

    def _succeeded(self, task: str) -> None:
        if self._failing.pop(task, None) is not None and not self._failing:
            log.warning(
                "node %d: storage writes succeed again after %.1f s; back in service",
                self._node_id,
                trio.current_time() - self._since,
            )


def first_storage_error(group: BaseExceptionGroup[StorageError]) -> StorageError:
    """The first ``StorageError`` of a (nested) exception group: the one a node stops with."""
    error = group.exceptions[0]
    return error if isinstance(error, StorageError) else first_storage_error(error)
