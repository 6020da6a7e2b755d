"""Streaming a snapshot file from the leader to a follower (docs/snapshots.md).

One ``Sender`` task per follower that needs a snapshot, on the leader; one ``Receiver``
task on every node. Both run off the raft loop; the raft loop only learns the outcome
(``SnapshotReport`` on the leader, ``InstallSnapshot`` on the follower).

The protocol, over the peer sockets (offers and chunks travel like requests, on the
leader's DEALER; replies and acks like responses)::

    leader                                   follower
    SnapshotOffer(index, term, size, sha) -> finds a partial file of the same snapshot
                                          <- SnapshotOfferReply(OK, offset)   (0: fresh)
    SnapshotChunk(offset, crc32, data)    -> checks the CRC and the offset, appends
    ... up to `window` chunks in flight   <- SnapshotAck(OK, offset stored)
                                          <- SnapshotAck(BAD_CHUNK / OUT_OF_ORDER, offset)
                                             (the sender goes back to that offset)
    last chunk                            -> SHA-256 of the whole file vs the offer,
                                             then rename into place and InstallSnapshot
                                          <- SnapshotAck(DONE) / SnapshotAck(FAILED)

A transfer that stalls (no ack for ``ack_timeout``: a cut connection, a restarted peer)
is offered again and resumes from the offset the follower reports: bytes it stored are
never sent twice. After ``MAX_STALLS`` offers without progress, or FAILED/REFUSED, the
sender gives up and reports failure; the core then asks again later.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from storage.snapshot_dir import SnapshotDir, SnapshotRef
from storage.snapshot_file import SHA_BYTES, file_sha256, read_info
from wire.errors import StorageError
from wire.messages import (
    InstallSnapshot,
    Message,
    SnapshotAck,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotOfferReply,
    SnapshotStatus,
)

log = logging.getLogger("trioraft.node.snapshots")

MAX_STALLS = 5  # offers in a row without progress before a transfer is given up
ACK_QUEUE = 256
CHUNK_QUEUE = 64


@dataclass(slots=True)
class TransferStats:
    """Counters of one node's snapshot transfers (for status and tests)."""

    sent: int = 0  # transfers completed as sender
    failed: int = 0  # transfers given up as sender
    received: int = 0  # transfers completed as receiver (verified)
    bytes_sent: int = 0  # chunk bytes sent, resends included
    bytes_received: int = 0  # chunk bytes stored
    resent_chunks: int = 0  # chunks sent again after a nack or a stall
    bad_chunks: int = 0  # chunks that failed their CRC here
    resumed: int = 0  # offers answered with a non-zero offset here
    sha_failures: int = 0  # whole files that failed their SHA-256 here


class TransferHost(Protocol):
    """What the transfer tasks need from the node's snapshot service."""

    node_id: int
    chunk_bytes: int
    window: int
    ack_timeout: float
    sdir: SnapshotDir
    stats: TransferStats
    chunk_filter: Callable[[SnapshotChunk], SnapshotChunk | None] | None

    def send(self, messages: Sequence[Message]) -> None: ...

    def current_term(self) -> int: ...

    def is_leader(self, term: int) -> bool: ...

    async def deliver_install(self, msg: InstallSnapshot) -> None: ...


class Sender:
    """Streams one snapshot file to one follower; ``run`` returns whether it arrived."""

    def __init__(self, host: TransferHost, to: int, term: int, ref: SnapshotRef) -> None:
        self.host = host
        self.to = to
        self.term = term
        self.ref = ref
        self.outcome = SnapshotStatus.OK  # the follower's last word: DONE, FAILED, ...
        self._acks_in, self._acks = trio.open_memory_channel[Any](ACK_QUEUE)

    def on_reply(self, msg: SnapshotOfferReply | SnapshotAck) -> None:
        try:
            self._acks_in.send_nowait(msg)
        except trio.WouldBlock:
            pass  # the stall timer recovers whatever is lost

    async def run(self) -> bool:
        info = await trio.to_thread.run_sync(read_info, self.ref.path)
        fd = os.open(self.ref.path, os.O_RDONLY)
        try:
            return await self._transfer(fd, info.size, info.sha256)
        finally:
            os.close(fd)

    def _still_leading(self) -> bool:
        return self.host.is_leader(self.term)

    async def _transfer(self, fd: int, size: int, sha: bytes) -> bool:
        host, ref = self.host, self.ref
        offer = SnapshotOffer(host.node_id, self.to, self.term, ref.index, ref.term, size, sha)
        stalls = 0
        while stalls < MAX_STALLS and self._still_leading():
            host.send([offer])
            reply = await self._next(SnapshotOfferReply)
            if reply is None:
                stalls += 1
                continue
            if reply.status is SnapshotStatus.DONE:
                self.outcome = reply.status
                return True  # it has the whole file already (our DONE was lost)
            if reply.status is not SnapshotStatus.OK:
                self.outcome = reply.status
                return False
            outcome, progressed = await self._pump(fd, size, reply.offset)
            self.outcome = outcome
            if outcome is SnapshotStatus.DONE:
                return True
            if outcome in (SnapshotStatus.FAILED, SnapshotStatus.REFUSED):
                return False
            stalls = 0 if progressed else stalls + 1
        return False

    async def _next(self, kind: type) -> Any:
        """The next reply of ``kind`` for this snapshot, or None after ``ack_timeout``."""
        with trio.move_on_after(self.host.ack_timeout):
            while True:
                msg: SnapshotOfferReply | SnapshotAck = await self._acks.receive()
                if isinstance(msg, kind) and msg.index == self.ref.index:
                    return msg
        return None

    async def _pump(self, fd: int, size: int, start: int) -> tuple[SnapshotStatus, bool]:
        """Send from ``start`` with a window; returns the final status (OK means stalled)
        and whether the follower stored anything new."""
        host = self.host
        chunk = host.chunk_bytes
        acked = sent = start
        rewound_to = -1  # the last nack we acted on: later nacks of the same offset repeat it
        highest_sent = start
        while True:
            while sent < size and sent - acked < host.window * chunk:
                length = min(chunk, size - sent)
                data = await trio.to_thread.run_sync(os.pread, fd, length, sent)
                if len(data) != length:
                    raise OSError(f"snapshot file {self.ref.path} shrank while being sent")
                msg: SnapshotChunk | None = SnapshotChunk(
                    host.node_id,
                    self.to,
                    self.term,
                    self.ref.index,
                    sent,
                    zlib.crc32(data),
                    data,
                    sent + length == size,
                )
                if sent < highest_sent:
                    host.stats.resent_chunks += 1
                if host.chunk_filter is not None and msg is not None:
                    msg = host.chunk_filter(msg)
                if msg is not None:
                    host.send([msg])
                    host.stats.bytes_sent += length
                sent += length
                highest_sent = max(highest_sent, sent)
            ack = await self._next(SnapshotAck)
            if ack is None or not self._still_leading():
                return SnapshotStatus.OK, acked > start
            if ack.status in (SnapshotStatus.DONE, SnapshotStatus.FAILED, SnapshotStatus.REFUSED):
                return ack.status, True
            if ack.status is SnapshotStatus.OK:
                if ack.offset > acked:
                    acked = ack.offset
                    rewound_to = -1
                sent = max(sent, acked)
            elif ack.offset >= acked:  # BAD_CHUNK / OUT_OF_ORDER; older nacks are stale
                acked = ack.offset
                if ack.offset != rewound_to:  # the rest of the window repeats the nack
                    sent = rewound_to = ack.offset  # go back and resend from there


def _trailer(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(-SHA_BYTES, os.SEEK_END)
        return f.read(SHA_BYTES)


@dataclass(slots=True)
class _Incoming:
    leader: int
    term: int
    offer: SnapshotOffer
    path: str
    fd: int
    offset: int


class Receiver:
    """Receives snapshot streams for this node (one at a time; a newer offer wins)."""

    def __init__(self, host: TransferHost) -> None:
        self.host = host
        self._in, self._out = trio.open_memory_channel[Any](CHUNK_QUEUE)
        self._active: _Incoming | None = None

    def on_message(self, msg: SnapshotOffer | SnapshotChunk) -> None:
        try:
            self._in.send_nowait(msg)
        except trio.WouldBlock:
            pass  # the sender's window and stall timer resend it

    async def run(self) -> None:
        try:
            async for msg in self._out:
                try:
                    if isinstance(msg, SnapshotOffer):
                        await self._offer(msg)
                    else:
                        await self._chunk(msg)
                except (OSError, StorageError) as exc:  # a full disk, say: start over later
                    log.error(
                        "node %d: receiving snapshot %d failed: %s",
                        self.host.node_id,
                        msg.index,
                        exc,
                    )
                    self._drop(delete=True)
                    self._reply(msg, SnapshotStatus.FAILED, 0)
        finally:
            self._drop()

    def _reply(
        self, msg: SnapshotOffer | SnapshotChunk, status: SnapshotStatus, offset: int
    ) -> None:
        me = self.host.node_id
        cls = SnapshotOfferReply if isinstance(msg, SnapshotOffer) else SnapshotAck
        self.host.send([cls(me, msg.src, msg.term, msg.index, status, offset)])

    def _drop(self, *, delete: bool = False) -> None:
        t, self._active = self._active, None
        if t is not None:
            os.close(t.fd)
            if delete:
                try:
                    os.remove(t.path)
                except FileNotFoundError:
                    pass

    async def _offer(self, offer: SnapshotOffer) -> None:
        if offer.term < self.host.current_term():
            self._reply(offer, SnapshotStatus.REFUSED, 0)
            return
        sdir = self.host.sdir
        done = sdir.find(offer.index, offer.snap_term)
        if done is not None and await trio.to_thread.run_sync(_trailer, done.path) == offer.sha256:
            # received before (our DONE was lost, or we restarted): hand it to Raft again
            info = await trio.to_thread.run_sync(read_info, done.path)
            await self.host.deliver_install(
                InstallSnapshot(offer.src, self.host.node_id, offer.term, info.header.meta)
            )
            self._reply(offer, SnapshotStatus.DONE, offer.size)
            return
        path = sdir.partial_path(offer.index, offer.snap_term, offer.sha256)
        t = self._active
        if t is not None and t.path == path and t.offer.size == offer.size:
            t.leader, t.term, t.offer = offer.src, offer.term, offer  # resumed by a new sender
        else:
            self._drop()
            sdir.ensure()
            sdir.clear_incoming(keep=path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            have = os.fstat(fd).st_size
            if have > offer.size:
                os.ftruncate(fd, 0)
                have = 0
            t = self._active = _Incoming(offer.src, offer.term, offer, path, fd, have)
        if t.offset:
            self.host.stats.resumed += 1
            log.info(
                "node %d: resuming snapshot %d from node %d at byte %d of %d",
                self.host.node_id,
                offer.index,
                offer.src,
                t.offset,
                offer.size,
            )
        self._reply(offer, SnapshotStatus.OK, t.offset)

    async def _chunk(self, c: SnapshotChunk) -> None:
        t = self._active
        if t is None or c.src != t.leader or c.index != t.offer.index or c.term < t.term:
            self._reply(c, SnapshotStatus.REFUSED, 0)
            return
        if c.offset != t.offset:
            # a duplicate (resent before our ack arrived) or one after a lost chunk
            status = SnapshotStatus.OK if c.offset < t.offset else SnapshotStatus.OUT_OF_ORDER
            self._reply(c, status, t.offset)
            return
        if zlib.crc32(c.data) != c.crc32:
            self.host.stats.bad_chunks += 1
            log.warning(
                "node %d: snapshot chunk at byte %d from node %d failed its CRC32; asking again",
                self.host.node_id,
                c.offset,
                c.src,
            )
            self._reply(c, SnapshotStatus.BAD_CHUNK, t.offset)
            return
        end = t.offset + len(c.data)
        if end > t.offer.size or (c.last and end != t.offer.size):
            self._fail(c, f"chunk ends at byte {end}, the file has {t.offer.size}")
            return
        await trio.to_thread.run_sync(os.pwrite, t.fd, c.data, t.offset)
        t.offset = end
        self.host.stats.bytes_received += len(c.data)
        if end < t.offer.size:
            self._reply(c, SnapshotStatus.OK, end)
            return
        await self._complete(c, t)

    def _fail(self, c: SnapshotChunk, why: str) -> None:
        self.host.stats.sha_failures += 1
        log.error(
            "node %d: snapshot %d from node %d refused: %s; it will be sent again",
            self.host.node_id,
            c.index,
            c.src,
            why,
        )
        self._drop(delete=True)
        self._reply(c, SnapshotStatus.FAILED, 0)

    async def _complete(self, c: SnapshotChunk, t: _Incoming) -> None:
        """The whole file is here: check it, give it its final name, hand it to Raft."""
        await trio.to_thread.run_sync(os.fsync, t.fd)
        digest, trailer = await trio.to_thread.run_sync(file_sha256, t.path)
        if digest != t.offer.sha256 or trailer != t.offer.sha256:
            self._fail(c, "the whole file failed its SHA-256 check")
            return
        try:
            info = await trio.to_thread.run_sync(read_info, t.path)
        except Exception as exc:
            self._fail(c, str(exc))
            return
        offer = t.offer
        if (info.header.index, info.header.term) != (offer.index, offer.snap_term):
            self._fail(c, "its header does not match the offer")
            return
        self._drop()
        ref = await trio.to_thread.run_sync(
            self.host.sdir.publish, t.path, offer.index, offer.snap_term
        )
        self.host.stats.received += 1
        log.info(
            "node %d: received snapshot %d (term %d, %d bytes) from node %d",
            self.host.node_id,
            ref.index,
            ref.term,
            offer.size,
            c.src,
        )
        me = self.host.node_id
        await self.host.deliver_install(
            InstallSnapshot(src=c.src, dst=me, term=c.term, snapshot=info.header.meta)
        )
        self._reply(c, SnapshotStatus.DONE, offer.size)
