"""``RocksStore``'s snapshot side: log compaction, point-in-time views, installs.

Mixed into ``RocksStore`` (``storage.rocks``); see ``SnapshotStore`` in ``storage.base`` for
the contract and docs/snapshots.md for the reasoning.

- **Views** are RocksDB checkpoints (hard links to the table files, plus a copy of the
  WAL), opened read-only. ``Rdict.snapshot()`` would be cheaper, but rocksdict 0.3.29's
  iterators on a column family's snapshot ignore the snapshot (they see later writes), so
  they cannot be trusted for a consistent copy. A checkpoint is consistent across column
  families: its applied index and its kv data belong together. ``open_view`` flushes each
  column family first: rocksdict's ``flush`` releases the GIL, its ``create_checkpoint``
  does not, and the memtable flush it would otherwise do stalled the node's event loop for
  40-150 ms per snapshot (docs/performance.md); what the checkpoint still flushes is what
  arrived meanwhile.
- **Installs** replace the ``kv`` family in three steps. ``begin_install`` writes a durable
  marker; ``replace_kv`` deletes the old key range and ingests one SST file built from the
  snapshot (``SstFileWriter``, keys in order; ingestion moves the file in, so a 100 MB
  state is not copied again); ``finish_install`` moves applied index, log start and hard
  state in one batch that also clears the marker, then syncs. A crash anywhere in between
  leaves the marker, and the node redoes the install from the snapshot file before it does
  anything else: the install is atomic as far as anything after a restart can tell.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from rocksdict import (
    AccessType,
    Checkpoint,
    IngestExternalFileOptions,
    Rdict,
    SstFileWriter,
    WriteBatch,
    WriteOptions,
)

from storage.records import (
    META_APPLIED,
    META_HARD_STATE,
    CorruptRecord,
    decode_entry,
    decode_int,
    encode_hard_state,
    encode_int,
    index_key,
)
from storage.rocks_options import raw_options
from storage.snapshot_records import (
    META_INSTALLING,
    META_LOG_START,
    decode_snapshot_meta,
    encode_snapshot_meta,
)
from wire.errors import StorageError
from wire.messages import HardState, SnapshotMeta

if TYPE_CHECKING:
    from storage.rocks_db import Handles

INSTALL_SST = "install.sst"
_LOG_END = b"\xff" * 9  # above every 8-byte log key


class RocksView:
    """A read-only checkpoint of the store: ``StateView``."""

    def __init__(self, path: str, db: Rdict, kv: Rdict, applied: int) -> None:
        self.path = path
        self._db: Rdict | None = db
        self._kv: Rdict | None = kv
        self._applied = applied

    @property
    def applied_index(self) -> int:
        return self._applied

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        kv = self._kv
        if kv is None:
            raise StorageError(f"checkpoint {self.path} is closed")
        it = kv.iter()
        try:
            it.seek_to_first()
            while it.valid():
                yield it.key(), it.value()
                it.next()
            it.status()
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"checkpoint {self.path}: reading failed: {exc}") from exc
        finally:
            del it

    def close(self) -> None:
        kv, db = self._kv, self._db
        self._kv = self._db = None
        del kv
        if db is not None:
            db.close()
            del db
        shutil.rmtree(self.path, ignore_errors=True)


class _Rocks(Protocol):
    """What the mixin uses of ``RocksStore``."""

    _path: str
    _applied: int
    _last_index: int
    _write_opts: WriteOptions

    def _live(self) -> Handles: ...
    def _read_meta(self, h: Handles, key: bytes) -> bytes | None: ...
    def _corrupt(self, what: str, exc: CorruptRecord) -> StorageError: ...
    def _error(self, what: str, exc: BaseException) -> StorageError: ...
    def _failed(self, what: str, exc: BaseException) -> StorageError: ...
    def _check_writable(self) -> None: ...
    def _edge_key(self, view: Rdict, *, last: bool) -> bytes | None: ...
    def _read_snapshot_meta(self, key: bytes, what: str) -> SnapshotMeta | None: ...
    def log_start(self) -> SnapshotMeta | None: ...
    def entry_term(self, index: int) -> int | None: ...
    def sync(self) -> None: ...


class RocksSnapshotMixin:
    """The ``SnapshotStore`` methods of ``RocksStore``."""

    def log_start(self: _Rocks) -> SnapshotMeta | None:
        return self._read_snapshot_meta(META_LOG_START, "the log start")

    def pending_install(self: _Rocks) -> SnapshotMeta | None:
        return self._read_snapshot_meta(META_INSTALLING, "the install marker")

    def _read_snapshot_meta(self: _Rocks, key: bytes, what: str) -> SnapshotMeta | None:
        raw = self._read_meta(self._live(), key)
        if raw is None:
            return None
        try:
            return decode_snapshot_meta(raw)
        except CorruptRecord as exc:
            raise self._corrupt(what, exc) from exc

    def entry_term(self: _Rocks, index: int) -> int | None:
        start = self.log_start()
        if start is not None and index == start.index:
            return start.term
        if index == 0:
            return 0
        h = self._live()
        try:
            raw: bytes | None = h.log.get(index_key(index))
        except Exception as exc:
            raise self._error("reading the log", exc) from exc
        if raw is None:
            return None
        try:
            return decode_entry(index, raw).term
        except CorruptRecord as exc:
            raise self._corrupt(f"log entry {index}", exc) from exc

    def compact_log(
        self: _Rocks, index: int, voters: tuple[int, ...], membership: bytes = b""
    ) -> None:
        start = self.log_start()
        if index <= (start.index if start is not None else 0):
            return
        if index > self._applied:
            raise StorageError(
                f"data dir {self._path}: cannot compact the log to {index}, beyond the "
                f"applied index {self._applied}"
            )
        term = self.entry_term(index)
        if term is None:
            raise StorageError(f"data dir {self._path}: log entry {index} is not stored")
        h = self._live()
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(index_key(0), index_key(index + 1), h.log_cf)
        batch.put(
            META_LOG_START,
            encode_snapshot_meta(SnapshotMeta(index, term, voters, membership)),
            h.meta_cf,
        )
        self._check_writable()
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._failed("compacting the log", exc) from exc
        self._last_index = max(self._last_index, index)

    def open_view(self: _Rocks, scratch_dir: str) -> RocksView:
        h = self._live()
        path = os.path.join(scratch_dir, f".checkpoint-{uuid.uuid4().hex[:12]}")
        try:
            os.makedirs(scratch_dir, exist_ok=True)
            for family in (h.log, h.meta, h.kv):
                family.flush()  # without the GIL (create_checkpoint would flush with it)
            Checkpoint(h.db).create_checkpoint(path)
        except Exception as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise self._error("creating a checkpoint", exc) from exc
        try:
            names = [n for n in Rdict.list_cf(path, raw_options()) if n != "default"]
            db = Rdict(
                path,
                raw_options(),
                column_families={n: raw_options() for n in names},
                access_type=AccessType.read_only(),
            )
        except Exception as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise self._error("opening a checkpoint", exc) from exc
        try:
            raw = db.get_column_family("meta").get(META_APPLIED)
            applied = 0 if raw is None else decode_int(raw)
            kv = db.get_column_family("kv")
        except Exception as exc:
            db.close()
            shutil.rmtree(path, ignore_errors=True)
            raise self._error("reading a checkpoint", exc) from exc
        return RocksView(path, db, kv, applied)

    def begin_install(self: _Rocks, meta: SnapshotMeta) -> None:
        h = self._live()
        batch = WriteBatch(raw_mode=True)
        batch.put(META_INSTALLING, encode_snapshot_meta(meta), h.meta_cf)
        self._check_writable()
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._failed("starting a snapshot install", exc) from exc
        self.sync()

    def replace_kv(self: _Rocks, items: Iterable[tuple[bytes, bytes]]) -> None:
        h = self._live()
        sst = os.path.join(self._path, INSTALL_SST)
        count = 0
        try:
            if os.path.exists(sst):
                os.remove(sst)
            writer = SstFileWriter(options=raw_options())
            writer.open(sst)
            for key, value in items:
                writer[key] = value
                count += 1
            if count:
                writer.finish()
        except StorageError:
            raise
        except Exception as exc:
            raise self._error("writing the snapshot's table file", exc) from exc
        first = self._edge_key(h.kv, last=False)
        try:  # the last key is found backwards: not through in-place updates (kv_options)
            h.kv.flush()
        except Exception as exc:
            raise self._failed("installing a snapshot", exc) from exc
        last = self._edge_key(h.kv, last=True)
        self._check_writable()
        try:
            if first is not None and last is not None:
                batch = WriteBatch(raw_mode=True)
                batch.delete_range(first, last + b"\x00", h.kv_cf)
                h.db.write(batch, self._write_opts)
            if count:
                opts = IngestExternalFileOptions()
                opts.set_move_files(True)
                h.kv.ingest_external_file([sst], opts)
        except Exception as exc:
            raise self._failed("installing a snapshot", exc) from exc
        finally:
            if os.path.exists(sst):
                os.remove(sst)

    def finish_install(
        self: _Rocks, meta: SnapshotMeta, hard_state: HardState | None = None
    ) -> None:
        h = self._live()
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(index_key(0), _LOG_END, h.log_cf)
        batch.put(META_LOG_START, encode_snapshot_meta(meta), h.meta_cf)
        batch.put(META_APPLIED, encode_int(meta.index), h.meta_cf)
        if hard_state is not None:
            batch.put(META_HARD_STATE, encode_hard_state(hard_state), h.meta_cf)
        batch.delete(META_INSTALLING, h.meta_cf)
        self._check_writable()
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._failed("finishing a snapshot install", exc) from exc
        self._applied = meta.index
        self._last_index = meta.index
        self.sync()
