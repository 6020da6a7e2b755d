"""One process per data dir: an ``flock`` on ``<dir>/trioraft.lock``, plus a registry of the
dirs open in this process (``flock`` alone would report the process's own second open as
"another process")."""

from __future__ import annotations

import fcntl
import os
import threading

from wire.errors import StorageError

LOCK_NAME = "trioraft.lock"

# Data dirs (real paths) open in this process.
_open_dirs: set[str] = set()
_open_dirs_lock = threading.Lock()


def in_use(path: str) -> StorageError:
    return StorageError(f"data dir {path} is in use by another process (lock {path}/{LOCK_NAME})")


def already_open(path: str) -> StorageError:
    return StorageError(f"data dir {path} is already open in this process")


def lock(path: str, real: str) -> int:
    """Register ``real`` as open here and take the flock; returns the lock fd."""
    with _open_dirs_lock:
        if real in _open_dirs:
            raise already_open(path)
        _open_dirs.add(real)
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        _forget(real)
        raise StorageError(f"data dir {path}: cannot open {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        _forget(real)
        if isinstance(exc, BlockingIOError):
            raise in_use(path) from exc
        raise StorageError(f"data dir {path}: cannot lock {lock_path}: {exc.strerror}") from exc
    return fd


def unlock(fd: int, real: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
        _forget(real)


def _forget(real: str) -> None:
    with _open_dirs_lock:
        _open_dirs.discard(real)
