"""The node's snapshot task: policy, building, compaction, installs, transfers, tooling.

``SnapshotService`` owns the snapshot dir (``storage.snapshot_dir``) and runs off the raft
loop (docs/snapshots.md):

- **Policy: compaction.** Every ``snapshot_entries`` applied entries, at a phase of the
  node's own so that the nodes of a cluster do not compact at once (``entries_due_after``),
  or past ``snapshot_bytes`` of entries since the last compaction, the applies so far are
  synced and the raft loop compacts core and store to the applied index less
  ``snapshot_catchup_entries`` (``CompactLog``): entries a slow follower may still need
  stay a while. No file is written: the store's applied state is the snapshot (as etcd's
  backend is), and a file is built from it only when one is needed.
- **Building** a file, when a follower needs one (``on_needed``) or an admin asks
  (``save``, from ``trioraft snapshot save``), never stops the node: ``store.open_view``
  (a RocksDB checkpoint) and the file writing run in a worker thread; the view is a
  consistent point in time, so applies go on meanwhile. The file is published under its
  final name only complete and fsynced; the log is then compacted as above, and the oldest
  files beyond ``snapshot_keep`` go.
- **Installing** (apply task, for a ``Ready.snapshot``): ``begin_install`` (durable marker),
  ``replace_kv`` from the file, ``finish_install`` (one batch), all in a worker thread; a
  crash in between is redone at the next start (``redo_pending_install``).
- **Transfers**: a ``Sender`` task per follower the core asked for (``on_needed``), one
  ``Receiver`` task (``trioraft.node.snapshot_transfer``). Outcomes reach the raft loop as
  ``SnapshotReport`` and ``InstallSnapshot`` events.

One lock serializes building and installing: a view taken during an install would mix
two states.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from storage.base import DataCorruption, SnapshotStore, Store
from storage.snapshot_dir import SnapshotDir, SnapshotRef
from storage.snapshot_file import (
    SnapshotCorrupt,
    SnapshotHeader,
    file_sha256,
    iter_items,
    read_info,
)
from storage.snapshot_file import write_snapshot as write_file
from trioraft.config import NodeConfig
from trioraft.core import RawNode, Status
from trioraft.core.types import Role, SnapshotNeeded
from trioraft.kv.layout import SESSION, USER
from trioraft.node.snapshot_transfer import Receiver, Sender, TransferStats
from wire import snapshot_messages as snap_msg
from wire.errors import InvalidRequest, StorageError, Unavailable
from wire.messages import (
    Entry,
    InstallSnapshot,
    Message,
    SnapshotAck,
    SnapshotChunk,
    SnapshotMeta,
    SnapshotOffer,
    SnapshotOfferReply,
    SnapshotStatus,
)

log = logging.getLogger(__name__)

MAX_READ = 4 << 20  # largest piece a client may read at once


@dataclass(frozen=True, slots=True)
class CompactLog:
    """Raft-loop event: compact core and store up to ``index`` (applied and synced)."""

    index: int


@dataclass(frozen=True, slots=True)
class InstallRequest:
    """Raft loop -> apply task: install snapshot ``meta`` (after the batches before it),
    then set ``done`` (the persist task waits for it before the Ready's ack leaves)."""

    meta: SnapshotMeta
    done: trio.Event


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """Raft-loop event: the transfer to ``peer`` ended (``RawNode.report_snapshot``)."""

    peer: int
    ok: bool


def snapshot_dir_for(config: NodeConfig, store: Store) -> SnapshotDir | None:
    """``snapshot_dir``, else ``<data dir>/snapshots``; None (no snapshots) for a store
    without snapshot support or without a directory (an in-memory store)."""
    if not isinstance(store, SnapshotStore):
        return None
    if config.snapshot_dir:
        return SnapshotDir(config.snapshot_dir)
    if os.path.isdir(store.path):
        return SnapshotDir(os.path.join(store.path, "snapshots"))
    return None


def classify(key: bytes) -> str | None:
    """Counts in a snapshot's footer, by the state machine's layout (trioraft.kv.layout)."""
    if key.startswith(USER):
        return "keys"
    if key.startswith(SESSION):
        return "sessions"
    return None


def install_file(store: SnapshotStore, path: str, meta: SnapshotMeta) -> None:
    """The three install steps (blocking). Safe to repeat after a crash at any point."""
    store.begin_install(meta)
    store.replace_kv(iter_items(path))
    store.finish_install(meta)


def redo_pending_install(store: SnapshotStore, sdir: SnapshotDir) -> None:
    """At start: finish an install a crash interrupted, from its (verified) file."""
    meta = store.pending_install()
    if meta is None:
        return
    ref = sdir.find(meta.index, meta.term)
    if ref is None:
        raise DataCorruption(
            f"data dir {store.path}: the install of snapshot {meta.index} (term {meta.term}) "
            f"was interrupted and its file {sdir.name(meta.index, meta.term)} is missing"
        )
    read_info(ref.path, verify=True)
    log.warning(
        "data dir %s: finishing the interrupted install of snapshot %d", store.path, meta.index
    )
    install_file(store, ref.path, meta)


def entries_due_after(index: int, every: int, node_id: int) -> int:
    """The applied index at which the next compaction is due after one at ``index``.

    Every ``every`` entries, but at a phase of the node's own: indexes ``= phase (mod
    every)``, with the phases of nodes 1, 2, 3, ... spread ``every / 8`` apart (3/8, 6/8, 1/8
    of the period...). Nodes apply the same indexes at about the same time, so without it
    every node compacts at once (and, when each compaction built a file, the cluster
    stalled as one: docs/snapshots.md); apart, the other nodes still make a quorum while
    one compacts. The next one comes at least ``every / 2`` entries later (one, at the
    least).
    """
    phase = (node_id * 3 * every // 8) % every
    due = index + max(every // 2, 1)
    return due + (phase - due) % every


class SnapshotService:
    def __init__(
        self,
        config: NodeConfig,
        store: SnapshotStore,
        sdir: SnapshotDir,
        *,
        status: Callable[[], Status],
        config_at: Callable[[int], tuple[tuple[int, ...], bytes]],
        applied: Callable[[], int],
        events: trio.MemorySendChannel[Any],
        send: Callable[[Sequence[Message]], None],
        log_start: int,
    ) -> None:
        self.node_id = config.node_id
        self.cluster_id = config.cluster_id
        self.config = config
        self.store = store
        self.sdir = sdir
        self.chunk_bytes = config.snapshot_chunk_bytes
        self.window = config.snapshot_window
        self.ack_timeout = max(1.0, 4 * config.election_timeout_ms / 1000)
        self.stats = TransferStats()
        # TEST-ONLY fault hook: every chunk a sender is about to send passes through it;
        # return a changed chunk (corrupted in flight) or None (lost).
        self.chunk_filter: Callable[[SnapshotChunk], SnapshotChunk | None] | None = None
        self.installing = False
        self.built = 0  # snapshots built here
        self.installed = 0  # snapshots installed here
        self.compactions = 0  # log compactions by the policy
        self._status = status
        self._config_at = config_at
        self._applied = applied
        self._events = events
        self._send = send
        self._lock = trio.Lock()  # building vs installing
        self._building = 0  # builds under way, compaction and pruning included
        self._wake = trio.Event()
        self._senders: dict[int, Sender] = {}  # transfers streaming now, by follower
        self._sending: set[int] = set()  # followers with a transfer task (maybe building)
        self._receiver = Receiver(self)
        self._nursery: trio.Nursery | None = None
        latest = sdir.latest()
        self._next_due = self._bytes_since = 0
        self._snapshot_at(max(log_start, latest.index if latest else 0))

    # --- TransferHost ---
    def send(self, messages: Sequence[Message]) -> None:
        self._send(messages)

    def current_term(self) -> int:
        return self._status().term

    def is_leader(self, term: int) -> bool:
        st = self._status()
        return st.role is Role.LEADER and st.term == term

    async def deliver_install(self, msg: InstallSnapshot) -> None:
        await self._events.send(msg)

    # --- the task ---
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(self._prepare_dir)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._receiver.run)
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._due():
                    try:
                        await self.compact_applied()
                    except (OSError, StorageError) as exc:
                        if isinstance(exc, DataCorruption):
                            raise
                        log.error("node %d: snapshot failed: %s", self.node_id, exc)
                        await trio.sleep(1.0)  # then try again at the next applied batch

    def _prepare_dir(self) -> None:
        self.sdir.ensure()
        self.sdir.remove_leftovers()

    @property
    def busy(self) -> bool:
        """A compaction or a snapshot is under way (a build, the compaction and pruning
        after it, an install), or a compaction is due."""
        return bool(self._building) or self._lock.locked() or self._due()

    def _snapshot_at(self, index: int) -> None:
        """The state up to ``index`` is durable here (compacted behind, or in a snapshot
        file): the policy counts from it."""
        self._next_due = entries_due_after(index, self.config.snapshot_entries, self.node_id)
        self._bytes_since = 0

    def _due(self) -> bool:
        return self._applied() >= self._next_due or self._bytes_since >= self.config.snapshot_bytes

    def note_applied(self, entries: Sequence[Entry]) -> None:
        """The apply task applied ``entries``: count them toward the policy."""
        self._bytes_since += sum(len(e.data) for e in entries)
        if self._due():
            self._wake.set()

    # --- building and compaction ---
    async def compact_applied(self) -> None:
        """The policy's step: compact the log up to what is applied (less the catch-up
        tail), with no snapshot file: the applied state in the store is the snapshot, and
        a file is built from it only when one is needed (docs/snapshots.md). Applies up to
        the index must be durable before the log that replays them goes."""
        self._building += 1
        try:
            async with self._lock:  # not during an install
                index = self._applied()
            await self._compact_to(index)
            self.compactions += 1
        finally:
            self._building -= 1

    async def build(self) -> SnapshotRef:
        """Snapshot the applied state now (or return the newest if it is already that
        state), then compact and prune. Raises ``StorageError``."""
        self._building += 1
        try:
            return await self._build()
        finally:
            self._building -= 1

    async def _build(self) -> SnapshotRef:
        async with self._lock:
            started = time.monotonic()
            view = await trio.to_thread.run_sync(self.store.open_view, self.sdir.path)
            try:
                index = view.applied_index
                latest = self.sdir.latest()
                if latest is not None and latest.index >= index:
                    ref, new = latest, False
                else:
                    term = self.store.entry_term(index)
                    if term is None:
                        raise StorageError(
                            f"data dir {self.store.path}: no term for applied index {index}"
                        )
                    voters, membership = self._config_at(index)
                    header = SnapshotHeader(
                        self.cluster_id,
                        index,
                        term,
                        voters,
                        int(time.time() * 1000),
                        self.node_id,
                        membership,
                    )
                    ref = await trio.to_thread.run_sync(self._write, header, view)
                    new = True
            finally:
                await trio.to_thread.run_sync(view.close)
        if new:
            self.built += 1
            size = (await trio.to_thread.run_sync(os.stat, ref.path)).st_size
            log.info(
                "node %d: snapshot at index %d (term %d): %d bytes in %.2f s",
                self.node_id,
                ref.index,
                ref.term,
                size,
                time.monotonic() - started,
            )
        await self._compact(ref)
        return ref

    def _write(self, header: SnapshotHeader, view: Any) -> SnapshotRef:
        temp = self.sdir.temp_path()
        try:
            write_file(temp, header, view.items(), classify=classify)
        except BaseException:
            try:
                os.remove(temp)
            except FileNotFoundError:
                pass
            raise
        return self.sdir.publish(temp, header.index, header.term)

    async def _compact(self, ref: SnapshotRef) -> None:
        await self._compact_to(ref.index)
        await trio.to_thread.run_sync(self.sdir.prune, self.config.snapshot_keep)

    async def _compact_to(self, index: int) -> None:
        """Sync the applies up to ``index`` (the log that replays them is about to go),
        then have the raft loop compact to ``index - snapshot_catchup_entries``. Not under
        the lock: the raft loop may be waiting on an install (a full apply channel) while
        the events channel is full."""
        self._snapshot_at(index)
        await trio.to_thread.run_sync(self.store.sync)
        target = index - self.config.snapshot_catchup_entries
        if target > 0:
            await self._events.send(CompactLog(target))

    def compact(self, core: RawNode, index: int) -> list[object]:
        """Raft loop (it owns ``core``): the synced applied state covers ``index``; drop
        the log up to it, store first (a failure leaves a longer log, nothing worse). Returns the
        entries dropped from memory, for the caller to free a slice at a time."""
        # No further than either applied index. The state machine can be a batch ahead
        # of the core's (the core counts a batch applied when its Ready is advanced, which
        # on a leader waits for the Ready's own write), and behind it while batches wait
        # for the apply task. And no further than the log is durable: a leader applies
        # entries it has written but not yet synced (Persister.write_unsynced).
        index = min(index, core.status.applied, self._applied(), core.durable_index)
        if self.installing or index <= core.log_start[0]:
            return []  # (an install replaces the whole log anyway)
        voters, membership = self._config_at(index)
        try:
            self.store.compact_log(index, voters, membership)
        except StorageError as exc:
            log.warning("node %d: log compaction to %d failed: %s", self.node_id, index, exc)
            return []
        log.info("node %d: log compacted to index %d", self.node_id, index)
        return core.compact(index)

    # --- installing (apply task) ---
    async def install(self, meta: SnapshotMeta) -> None:
        """Install the received snapshot ``meta`` (its file is in the snapshot dir)."""
        ref = self.sdir.find(meta.index, meta.term)
        if ref is None:
            raise DataCorruption(
                f"snapshot {meta.index} (term {meta.term}) to install is missing from "
                f"{self.sdir.path}"
            )
        async with self._lock:
            self.installing = True
            try:
                started = time.monotonic()
                await trio.to_thread.run_sync(install_file, self.store, ref.path, meta)
            except OSError as exc:  # reading the file, writing the table file: retried
                raise StorageError(f"installing snapshot {meta.index} failed: {exc}") from exc
            finally:
                self.installing = False
        self.installed += 1
        self._snapshot_at(meta.index)
        log.info(
            "node %d: installed snapshot %d (term %d) in %.2f s",
            self.node_id,
            meta.index,
            meta.term,
            time.monotonic() - started,
        )

    # --- transfers ---
    def on_needed(self, req: SnapshotNeeded) -> bool:
        """Raft loop: start streaming to ``req.to`` unless a transfer is running; False if
        no transfer can start (the caller reports failure)."""
        if req.to in self._sending:
            return True
        if self._nursery is None:
            return False
        self._sending.add(req.to)
        self._nursery.start_soon(self._send_to, req)
        return True

    async def _send_to(self, req: SnapshotNeeded) -> None:
        ok = False
        try:
            ref = self.sdir.latest()
            if ref is None or ref.index < req.index:
                ref = await self.build()
            sender = Sender(self, req.to, req.term, ref)
            self._senders[req.to] = sender
            started = time.monotonic()
            log.info(
                "node %d: sending snapshot %d (term %d) to node %d",
                self.node_id,
                ref.index,
                ref.term,
                req.to,
            )
            ok = await sender.run()
            if ok:
                self.stats.sent += 1
                log.info(
                    "node %d: node %d has snapshot %d (%.2f s)",
                    self.node_id,
                    req.to,
                    ref.index,
                    time.monotonic() - started,
                )
            else:
                self.stats.failed += 1
                log.warning("node %d: snapshot transfer to node %d failed", self.node_id, req.to)
                if sender.outcome is SnapshotStatus.FAILED:
                    await self._check_own_file(ref)
        except (OSError, StorageError) as exc:
            self.stats.failed += 1
            log.error("node %d: snapshot transfer to node %d failed: %s", self.node_id, req.to, exc)
        finally:
            self._senders.pop(req.to, None)
            self._sending.discard(req.to)
            with trio.CancelScope(shield=True):
                await self._events.send(SnapshotReport(req.to, ok))

    async def _check_own_file(self, ref: SnapshotRef) -> None:
        """The follower found our file damaged: if it is, delete it so that the next
        transfer sends a fresh snapshot instead of the same damage again."""
        digest, trailer = await trio.to_thread.run_sync(file_sha256, ref.path)
        if digest != trailer:
            log.error(
                "node %d: snapshot file %s is corrupt (checksum mismatch); deleted, a new "
                "snapshot will be built",
                self.node_id,
                ref.path,
            )
            await trio.to_thread.run_sync(os.remove, ref.path)

    def on_message(self, msg: Message) -> None:
        """Peer transport: a snapshot transfer message for this node."""
        if isinstance(msg, SnapshotOffer | SnapshotChunk):
            self._receiver.on_message(msg)
        elif isinstance(msg, SnapshotOfferReply | SnapshotAck):
            sender = self._senders.get(msg.src)
            if sender is not None:
                sender.on_reply(msg)

    # --- the client tooling (trioraft snapshot save) ---
    async def save(self) -> tuple[SnapshotRef, int, bytes]:
        """A snapshot of the applied state now: (ref, size, sha256)."""
        ref = await self.build()
        info = await trio.to_thread.run_sync(read_info, ref.path)
        return ref, info.size, info.sha256

    def start_save(self, reply: Callable[[Any], None]) -> None:
        """Build a snapshot in the background and answer ``SnapshotSaveReply`` (or the
        error) through ``reply``; never blocks."""
        if self._nursery is None:
            raise Unavailable(f"node {self.node_id} is not serving yet")
        self._nursery.start_soon(self._save_and_reply, reply)

    async def _save_and_reply(self, reply: Callable[[Any], None]) -> None:
        try:
            ref, size, sha = await self.save()
        except StorageError as exc:
            reply(exc)
            return
        except OSError as exc:
            reply(StorageError(f"snapshot failed: {exc}"))
            return
        reply(snap_msg.SnapshotSaveReply(ref.index, ref.term, size, sha))

    def read(self, index: int, term: int, offset: int, length: int) -> snap_msg.SnapshotReadReply:
        """Bytes of a kept snapshot with their CRC32 (small: the trio thread may read)."""
        if length > MAX_READ or length < 0 or offset < 0:
            raise InvalidRequest(f"snapshot reads are at most {MAX_READ} bytes")
        ref = self.sdir.find(index, term)
        if ref is None:
            raise Unavailable(f"snapshot {index} (term {term}) is no longer kept; save again")
        try:
            with open(ref.path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as exc:
            raise Unavailable(f"snapshot {index} cannot be read: {exc}") from exc
        return snap_msg.SnapshotReadReply(offset, data, zlib.crc32(data))


__all__ = [
    "CompactLog",
    "SnapshotCorrupt",
    "SnapshotReport",
    "SnapshotService",
    "classify",
    "install_file",
    "redo_pending_install",
]
