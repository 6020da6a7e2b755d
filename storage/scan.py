"""Prefix scans over a RocksDB column family for ``RocksStore.scan``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from rocksdict import RdictIter, ReadOptions

from wire.errors import StorageError


class ScanOwner(Protocol):
    """What a scan needs from its store: errors that name the data dir."""

    def _closed_error(self) -> StorageError: ...

    def _error(self, what: str, exc: BaseException) -> StorageError: ...


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class Scan(Iterator[tuple[bytes, bytes]]):
    """A forward scan over one prefix of ``kv``, on the consistent view taken at creation.

    Holds a RocksDB iterator, which keeps the DB (and its lock) alive: the store releases
    every unfinished scan on close, after which the scan raises StorageError.
    """

    __slots__ = ("__weakref__", "_closed", "_it", "_prefix", "_read_opts", "_store")

    def __init__(
        self, store: ScanOwner, it: RdictIter, read_opts: ReadOptions, prefix: bytes
    ) -> None:
        self._store = store
        self._it: RdictIter | None = it
        self._read_opts = read_opts  # keep alive as long as the iterator (it holds the bound)
        self._prefix = prefix
        self._closed = False

    def __next__(self) -> tuple[bytes, bytes]:
        it = self._it
        if it is None:
            if self._closed:
                raise self._store._closed_error()
            raise StopIteration
        try:
            if it.valid():
                key: bytes = it.key()
                if key.startswith(self._prefix):
                    value: bytes = it.value()
                    it.next()
                    return key, value
            else:
                it.status()  # raises if the iterator stopped on an error, not at the end
        except Exception as exc:
            self.release()
            del it  # a kept traceback must not keep the iterator (and the DB lock)
            raise self._store._error("scan", exc) from exc
        self.release()
        raise StopIteration

    def release(self, *, closed: bool = False) -> None:
        self._it = None
        self._closed = closed
