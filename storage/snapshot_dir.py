"""Where a node keeps its snapshot files (docs/snapshots.md).

Layout of a snapshot dir ``S`` (by default ``<data dir>/snapshots``)::

    S/snap-<index:016x>-<term:016x>.snap   finished snapshots (sortable names)
    S/.tmp-<random>.snap                   being written; renamed when complete
    S/.checkpoint-<random>/                RocksDB checkpoint a snapshot is built from
    S/incoming/<index>-<term>-<sha>.part   a transfer from the leader, being received

A file appears under its final name only complete and fsynced (write, fsync, rename,
fsync of the dir), so a crash never leaves a half-written ``snap-*`` file.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass

_NAME = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
INCOMING = "incoming"


@dataclass(frozen=True, slots=True, order=True)
class SnapshotRef:
    index: int
    term: int
    path: str


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotDir:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def ensure(self) -> None:
        os.makedirs(os.path.join(self.path, INCOMING), exist_ok=True)

    def name(self, index: int, term: int) -> str:
        return os.path.join(self.path, f"snap-{index:016x}-{term:016x}.snap")

    def snapshots(self) -> list[SnapshotRef]:
        """Finished snapshots, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        refs = []
        for name in names:
            m = _NAME.match(name)
            if m:
                refs.append(
                    SnapshotRef(int(m[1], 16), int(m[2], 16), os.path.join(self.path, name))
                )
        return sorted(refs)

    def latest(self) -> SnapshotRef | None:
        refs = self.snapshots()
        return refs[-1] if refs else None

    def find(self, index: int, term: int) -> SnapshotRef | None:
        path = self.name(index, term)
        return SnapshotRef(index, term, path) if os.path.exists(path) else None

    def temp_path(self) -> str:
        self.ensure()
        return os.path.join(self.path, f".tmp-{uuid.uuid4().hex[:12]}.snap")

    def publish(self, temp: str, index: int, term: int) -> SnapshotRef:
        """Give a complete, fsynced file its final name (atomic), durably."""
        final = self.name(index, term)
        os.replace(temp, final)
        _fsync_dir(self.path)
        return SnapshotRef(index, term, final)

    def prune(self, keep: int) -> list[SnapshotRef]:
        """Delete all but the ``keep`` newest snapshots (and leftovers of crashed writes);
        returns what was deleted. A file being read stays readable until closed."""
        refs = self.snapshots()
        doomed = refs[: max(len(refs) - max(keep, 1), 0)]
        for ref in doomed:
            try:
                os.remove(ref.path)
            except FileNotFoundError:
                pass
        return doomed

    def remove_leftovers(self) -> None:
        """Temp files and checkpoints of builds a crash interrupted."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.path, name)
            if name.startswith(".tmp-"):
                os.remove(path)
            elif name.startswith(".checkpoint-"):
                shutil.rmtree(path, ignore_errors=True)

    # --- incoming transfers ---

    def partial_path(self, index: int, term: int, sha256: bytes) -> str:
        return os.path.join(
            self.path, INCOMING, f"{index:016x}-{term:016x}-{sha256.hex()[:16]}.part"
        )

    def clear_incoming(self, keep: str | None = None) -> None:
        """Delete partial transfers except ``keep``."""
        folder = os.path.join(self.path, INCOMING)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(folder, name)
            if path != keep:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
