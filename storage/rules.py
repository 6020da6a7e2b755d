"""Checks both stores share, so they fail the same way with the same messages."""

from __future__ import annotations

from collections.abc import Sequence

from storage.base import FORMAT_VERSION, Identity
from storage.records import MAX_INDEX
from wire.errors import ConfigError, StorageError
from wire.messages import Entry


def check_wanted_identity(identity: Identity) -> None:
    """Reject an identity this code could not have written (a caller's mistake)."""
    if identity.node_id <= 0:
        raise ConfigError(f"node id must be a positive integer, not {identity.node_id}")
    if identity.cluster_id < 0:
        raise ConfigError(f"cluster id must be >= 0, not {identity.cluster_id}")
    if identity.format_version != FORMAT_VERSION:
        raise ConfigError(
            f"this trioraft writes storage format {FORMAT_VERSION}, not {identity.format_version}"
        )


def check_format(path: str, stored_version: int) -> None:
    if stored_version > FORMAT_VERSION:
        raise StorageError(
            f"data dir {path} has format version {stored_version}, "
            f"newer than this trioraft ({FORMAT_VERSION})"
        )
    if stored_version < FORMAT_VERSION:
        raise StorageError(
            f"data dir {path} has format version {stored_version}, "
            f"older than this trioraft ({FORMAT_VERSION}) and not upgradable"
        )


def check_identity(path: str, stored: Identity, wanted: Identity) -> None:
    """Raise StorageError, naming the dir, if a data dir belongs to someone else."""
    check_format(path, stored.format_version)
    if stored.cluster_id != wanted.cluster_id:
        raise StorageError(
            f"data dir {path} belongs to cluster {stored.cluster_id:#x}, not {wanted.cluster_id:#x}"
        )
    if stored.node_id != wanted.node_id:
        raise StorageError(
            f"data dir {path} belongs to node {stored.node_id}, not node {wanted.node_id}"
        )


def check_append(entries: Sequence[Entry], last_index: int) -> None:
    """Entries must be consecutive and must not leave a gap after the stored log.

    An empty log accepts any first index (room for a log that starts after a snapshot).
    These are programming errors in the caller, so they raise ValueError.
    """
    first = entries[0].index
    if first < 1 or entries[-1].index > MAX_INDEX:
        raise ValueError(f"log indexes must be in 1..{MAX_INDEX}")
    if last_index and first > last_index + 1:
        raise ValueError(f"append at index {first} leaves a gap after last index {last_index}")
    expected = first
    for entry in entries:
        if entry.index != expected:
            raise ValueError(f"entries are not consecutive: {entry.index} follows {expected - 1}")
        expected += 1
