"""Opening the RocksDB of a data dir: its column families, and rocksdict errors as
``StorageError`` naming the dir (``storage.rocks`` builds the ``Store`` on top)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rocksdict import ColumnFamily, Rdict

from storage.base import DataCorruption
from storage.lock import already_open, in_use
from storage.rocks_options import kv_options, raw_options
from storage.wal import TornTail, readable_log_end, recovery_options, torn_tails
from wire.errors import StorageError

DB_NAME = "db"
COLUMN_FAMILIES = ("log", "meta", "kv")


# All column families' memtables together: past it RocksDB flushes one. Each family's own
# limit (64 MiB, two of them) would let the log and kv memtables hold ~250 MB between
# them, and the WAL behind them with it, when nothing else flushes them (log compaction
# does not; docs/snapshots.md).
MEMTABLE_BUDGET = 64 << 20


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def translate(path: str, what: str, exc: BaseException) -> StorageError:
    """Map a rocksdict (or OS) exception to StorageError naming the dir."""
    text = one_line(exc)
    if "lock hold by current process" in text:
        return already_open(path)
    if "While lock file" in text:
        return in_use(path)
    if text.startswith("Corruption"):
        return DataCorruption(f"data dir {path}: {what} found corrupt data: {text}")
    return StorageError(f"data dir {path}: {what} failed: {text}")


@dataclass(slots=True)
class Handles:
    """The open DB and its column families (views for reads, handles for batches).

    ``release`` unsets every field: a stale reference (say, a frame kept alive by a
    traceback) must not keep the views, which keep the RocksDB lock after ``db.close()``.
    """

    db: Rdict
    log: Rdict
    meta: Rdict
    kv: Rdict
    log_cf: ColumnFamily
    meta_cf: ColumnFamily
    kv_cf: ColumnFamily

    def release(self) -> Rdict:
        db = self.db
        del self.db, self.log, self.meta, self.kv, self.log_cf, self.meta_cf, self.kv_cf
        return db


def open_db(path: str, create: bool) -> tuple[Handles, list[TornTail]]:
    """Open the RocksDB of data dir ``path``; also return the torn WAL tails it dropped."""
    db_path = os.path.join(path, DB_NAME)
    exists = os.path.exists(os.path.join(db_path, "CURRENT"))
    if not exists and not create:
        raise StorageError(f"data dir {path} holds no trioraft data (no {db_path})")
    tails = torn_tails(db_path) if exists else []
    try:
        names = set(COLUMN_FAMILIES)
        if exists:  # every existing family must be opened, even ones we do not know
            names.update(Rdict.list_cf(db_path, raw_options()))
        names.discard("default")
        options = recovery_options(raw_options())
        options.set_db_write_buffer_size(MEMTABLE_BUDGET)
        options.create_if_missing(create)
        options.create_missing_column_families(True)
        families = {n: kv_options() if n == "kv" else raw_options() for n in names}
        db = Rdict(db_path, options, column_families=families)
    except Exception as exc:
        error = translate(path, "opening RocksDB", exc)
        if isinstance(error, DataCorruption):
            end = readable_log_end(db_path, "log")
            where = "" if end is None else f" after log entry {end}"
            error = DataCorruption(
                f"data dir {path}: corrupt RocksDB data{where}, refusing to start ({one_line(exc)})"
            )
        raise error from exc
    try:
        handles = Handles(
            db,
            db.get_column_family("log"),
            db.get_column_family("meta"),
            db.get_column_family("kv"),
            db.get_column_family_handle("log"),
            db.get_column_family_handle("meta"),
            db.get_column_family_handle("kv"),
        )
    except Exception as exc:
        db.close()
        raise translate(path, "opening column families", exc) from exc
    return handles, tails
