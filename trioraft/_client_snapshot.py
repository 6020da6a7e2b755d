"""``Client.save_snapshot``: download a fresh snapshot of a running cluster to a file.

The node builds a snapshot of its applied state (``SnapshotSaveRequest``); the client
reads it in pieces, ``window`` requests in flight, checks each piece's CRC32, writes them
in order to ``FILE.part``, then checks the whole file (SHA-256 against what the node
announced, and every record) before renaming it to ``FILE``. A piece that times out or
fails its CRC is asked for again (docs/snapshots.md).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from storage.snapshot_file import SnapshotInfo, read_info
from wire import snapshot_messages as snap_msg
from wire.errors import Timeout, TrioraftError, Unavailable

if TYPE_CHECKING:
    from trioraft.client import Client

PIECE = 1 << 20
WINDOW = 4
PIECE_TRIES = 5


@dataclass(frozen=True, slots=True)
class SavedSnapshot:
    path: str
    endpoint: str  # the node that built it
    index: int
    term: int
    size: int
    sha256: bytes
    info: SnapshotInfo  # header and counts, from the verified file


async def save_snapshot(
    client: Client,
    path: str,
    *,
    endpoint: str | None = None,
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SavedSnapshot:
    """Save a snapshot of the cluster's state to ``path`` (see the module docstring).

    ``endpoint``: the node to ask (default: the leader). ``timeout`` bounds building the
    snapshot and each piece. ``progress(done, total)`` is called as bytes arrive. Raises
    ``TrioraftError`` (``StorageError`` if the downloaded file does not check out). If
    cancelled, ``FILE.part`` may be left behind; ``path`` is written only complete.
    """
    limit = timeout or max(client.timeout, 60.0)
    if endpoint is None:
        _leader, endpoint = await client.wait_leader(timeout=limit)
    conn = client._conn(endpoint)
    reply = await conn.call(snap_msg.SnapshotSaveRequest(), limit)
    assert isinstance(reply, snap_msg.SnapshotSaveReply)
    part = path + ".part"
    done = 0

    async def fetch(offset: int, out: dict[int, bytes]) -> None:
        length = min(PIECE, reply.size - offset)
        last: TrioraftError | None = None
        for _ in range(PIECE_TRIES):
            request = snap_msg.SnapshotReadRequest(reply.index, reply.term, offset, length)
            try:
                piece = await conn.call(request, limit)
            except (Timeout, Unavailable) as exc:
                last = exc
                continue
            assert isinstance(piece, snap_msg.SnapshotReadReply)
            if zlib.crc32(piece.data) == piece.crc32 and len(piece.data) == length:
                out[offset] = piece.data
                return
            last = Unavailable(f"piece at byte {offset} arrived damaged")
        raise Timeout(f"snapshot piece at byte {offset} could not be read: {last}")

    fd = await trio.to_thread.run_sync(
        lambda: os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    )
    try:
        offset = 0
        while offset < reply.size:
            batch: dict[int, bytes] = {}
            async with trio.open_nursery() as nursery:
                for k in range(WINDOW):
                    at = offset + k * PIECE
                    if at < reply.size:
                        nursery.start_soon(fetch, at, batch)
            for at in sorted(batch):
                await trio.to_thread.run_sync(os.pwrite, fd, batch[at], at)
                done += len(batch[at])
            offset += WINDOW * PIECE
            if progress is not None:
                progress(min(done, reply.size), reply.size)
        await trio.to_thread.run_sync(os.fsync, fd)
    finally:
        os.close(fd)
    info = await trio.to_thread.run_sync(lambda: read_info(part, verify=True))
    if info.sha256 != reply.sha256 or info.size != reply.size:
        raise Unavailable(f"the downloaded snapshot does not match what {endpoint} announced")
    await trio.to_thread.run_sync(os.replace, part, path)
    return SavedSnapshot(path, endpoint, reply.index, reply.term, reply.size, reply.sha256, info)
