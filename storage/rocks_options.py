"""The RocksDB options every open of a data dir's DB uses (``storage.rocks_db`` opens it,
``storage.wal`` probes it read-only, ``storage.rocks_snapshot`` opens checkpoints)."""

from __future__ import annotations

from rocksdict import Options


def raw_options() -> Options:
    """Every open of a data dir's DB uses these (or ``kv_options``), read-only ones too:
    RocksDB loads the ``kv`` family's persisted in-place updates, which refuse to open
    beside concurrent memtable writes (the default)."""
    options = Options(raw_mode=True)
    options.set_allow_concurrent_memtable_write(False)
    return options


def kv_options() -> Options:
    """The ``kv`` family's: a put over a value in the memtable overwrites it in place when
    the new value is no longer (RocksDB's ``inplace_update_support``). A key written again
    and again then takes one memtable slot instead of one per write: its reads and writes
    walk a small skip list that stays in cache (the apply's read of the old value and its
    inserts; docs/performance.md). The price is that an open iterator can see a value
    overwritten in place after it was created, so a scan of ``kv`` must be consumed before
    the next apply (``RocksStore.scan``), and an iterator cannot go backwards through the
    memtable (``replace_kv`` flushes it first). Needs ``allow_concurrent_memtable_write``
    off, which costs nothing here: one thread writes."""
    options = raw_options()
    options.set_inplace_update_support(True)
    return options
