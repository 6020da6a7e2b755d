"""Helpers for the storage tests (a unique module name: tests dirs are not packages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from storage import Identity, MemoryStore, Store, open_store
from wire.messages import Entry, EntryKind

REPO = Path(__file__).resolve().parents[2]
ID = Identity(cluster_id=0xC0FFEE, node_id=3)


def entries(first: int, last: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    """Entries ``first..last`` (inclusive) of ``term``; data names index, term and tag."""
    return [
        Entry(term, i, EntryKind.NORMAL, b"%d/%d/%s" % (i, term, tag))
        for i in range(first, last + 1)
    ]


class Stores:
    """Opens and cleanly reopens one store of either kind; closes whatever it opened."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.opened: list[Store] = []

    def open(self, identity: Identity = ID) -> Store:
        store: Store
        if self.kind == "memory":
            store = MemoryStore(identity, str(self.path))
        else:
            store = open_store(str(self.path), identity)
        self.opened.append(store)
        return store

    def reopen(self, store: Store, identity: Identity = ID) -> Store:
        """Close ``store`` cleanly and open its data again for ``identity``."""
        new: Store
        if isinstance(store, MemoryStore):
            new = store.reopen(identity)
        else:
            store.close()
            new = open_store(str(self.path), identity)
        self.opened.append(new)
        return new

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python that can import the repo; always waits for it."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
