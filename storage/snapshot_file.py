"""The snapshot file format, version 1 (docs/snapshots.md has the full description).

A snapshot file is one self-checking stream::

    magic       8 bytes   b"\\x89TRSNAP\\n"
    version     u16 BE    1
    header_len  u32 BE    then a CBOR array: [cluster_id, index, term, [voters...],
                          created_ms, node_id, membership (bytes; may be empty)]
    records     repeated: u32 BE length (> 0), then CBOR [key, value] (two byte strings);
                keys strictly increasing (the state machine's byte order)
    end         u32 BE    0
    footer      CBOR map of counts (text -> int): "records" always, plus what the writer's
                ``classify`` tallied ("keys", "sessions", ...) and "data_bytes"
    footer_len  u32 BE
    sha256      32 bytes  SHA-256 of every byte before it

Everything is written and read in streaming fashion with bounded memory. ``read_info``
without ``verify`` reads only the header and the footer (seeks to the end). Any damage
raises ``SnapshotCorrupt`` (a ``DataCorruption``) naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, Protocol

import cbor2

from storage.base import DataCorruption
from wire.cbor_heads import bstr_head
from wire.messages import SnapshotMeta

MAGIC: Final = b"\x89TRSNAP\n"
VERSION: Final = 1
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
SHA_BYTES: Final = 32
MAX_RECORD: Final = 1 << 30  # a record longer than this is damage, not data
MAX_HEADER: Final = 1 << 20
_FLUSH: Final = 1 << 20  # write in ~1 MiB pieces
_READ: Final = 1 << 20


class SnapshotCorrupt(DataCorruption):
    """A snapshot file fails its checksum or is malformed; the message names the file."""


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    cluster_id: int
    index: int
    term: int
    voters: tuple[int, ...]
    created_ms: int
    node_id: int
    membership: bytes = b""  # encoded configuration at ``index`` (empty: static config)

    @property
    def meta(self) -> SnapshotMeta:
        return SnapshotMeta(self.index, self.term, self.voters, self.membership)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    header: SnapshotHeader
    counts: dict[str, int] = field(default_factory=dict)
    size: int = 0  # bytes, trailer included
    sha256: bytes = b""  # the trailer: SHA-256 of the first size - 32 bytes


class _HashingWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()
        self.size = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self.sha.update(data)
            self.stream.write(data)
            self.size += len(data)


def write_snapshot(
    path: str,
    header: SnapshotHeader,
    items: Iterable[tuple[bytes, bytes]],
    *,
    classify: Callable[[bytes], str | None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SnapshotInfo:
    """Write a snapshot of ``items`` (keys in increasing order) to ``path`` and fsync it.

    Blocking: call from a worker thread. ``classify(key)`` names the count a record adds
    to (None: only "records"); ``progress(bytes)`` is called now and then."""
    counts: dict[str, int] = {"records": 0, "data_bytes": 0}
    head = cbor2.dumps(
        [
            header.cluster_id,
            header.index,
            header.term,
            list(header.voters),
            header.created_ms,
            header.node_id,
            header.membership,
        ]
    )
    with open(path, "wb") as stream:
        out = _HashingWriter(stream)
        out.write(MAGIC + _U16.pack(VERSION) + _U32.pack(len(head)) + head)
        # The per-record loop is the writer's whole cost (a node's state can be millions of
        # records, and the writer shares the node's GIL): locals, no dict updates per record,
        # and each record's CBOR built by hand (``_record``).
        write, pack = out.write, _U32.pack
        records = data_bytes = 0
        previous: bytes | None = None
        for key, value in items:
            if previous is not None and key <= previous:
                raise ValueError(f"snapshot keys out of order: {key!r:.40} after {previous!r:.40}")
            previous = key
            record = _record(key, value)
            write(pack(len(record)) + record)
            records += 1
            data_bytes += len(key) + len(value)
            if classify is not None and (kind := classify(key)) is not None:
                counts[kind] = counts.get(kind, 0) + 1
            if progress is not None and records % 1024 == 0:
                progress(out.size)
        counts["records"], counts["data_bytes"] = records, data_bytes
        footer = cbor2.dumps(counts)
        out.write(_U32.pack(0) + footer + _U32.pack(len(footer)))
        out.flush()
        digest = out.sha.digest()
        stream.write(digest)
        stream.flush()
        os.fsync(stream.fileno())
    return SnapshotInfo(header, counts, out.size + SHA_BYTES, digest)


def _record(key: bytes, value: bytes) -> bytes:
    """``cbor2.dumps([key, value])``, byte for byte, in half the time."""
    return b"".join((b"\x82", bstr_head(len(key)), key, bstr_head(len(value)), value))


def _corrupt(path: str, what: str) -> SnapshotCorrupt:
    return SnapshotCorrupt(f"snapshot file {path} is corrupt: {what}")


def _loads(path: str, data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise _corrupt(path, f"undecodable {what} ({exc})") from exc


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


def _parse_header(path: str, stream: _Readable) -> SnapshotHeader:
    start = stream.read(len(MAGIC) + _U16.size + _U32.size)
    if len(start) < len(MAGIC) or start[: len(MAGIC)] != MAGIC:
        raise _corrupt(path, "not a trioraft snapshot (bad magic)")
    if len(start) < len(MAGIC) + _U16.size + _U32.size:
        raise _corrupt(path, "truncated header")
    (version,) = _U16.unpack_from(start, len(MAGIC))
    if version != VERSION:
        raise SnapshotCorrupt(
            f"snapshot file {path} has format version {version}; this trioraft reads {VERSION}"
        )
    (length,) = _U32.unpack_from(start, len(MAGIC) + _U16.size)
    if length > MAX_HEADER:
        raise _corrupt(path, "header too long")
    raw = stream.read(length)
    if len(raw) != length:
        raise _corrupt(path, "truncated header")
    obj = _loads(path, raw, "header")
    if (
        not isinstance(obj, list)
        or len(obj) != 7
        or not isinstance(obj[3], list)
        or type(obj[6]) is not bytes
        or not all(type(x) is int and x >= 0 for x in [*obj[:3], *obj[3], *obj[4:6]])
    ):
        raise _corrupt(path, "malformed header")
    cluster_id, index, term, voters, created_ms, node_id, membership = obj
    return SnapshotHeader(cluster_id, index, term, tuple(voters), created_ms, node_id, membership)


def _parse_footer(path: str, raw: bytes) -> dict[str, int]:
    obj = _loads(path, raw, "footer")
    if (
        not isinstance(obj, dict)
        or "records" not in obj
        or not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in obj.items())
    ):
        raise _corrupt(path, "malformed footer")
    return dict(obj)


def read_info(path: str, *, verify: bool = False) -> SnapshotInfo:
    """Header, counts, size and trailer of a snapshot file.

    With ``verify`` the whole file is read: the SHA-256 must match the trailer and every
    record must be well formed, in key order, and as many as the footer says. Raises
    ``SnapshotCorrupt`` (or ``OSError`` if the file cannot be read). Blocking."""
    if verify:
        return _verify(path)
    with open(path, "rb") as stream:
        header = _parse_header(path, stream)
        size = os.fstat(stream.fileno()).st_size
        if size < stream.tell() + _U32.size + SHA_BYTES:
            raise _corrupt(path, "truncated (no footer)")
        stream.seek(size - SHA_BYTES - _U32.size)
        tail = stream.read(_U32.size + SHA_BYTES)
        (footer_len,) = _U32.unpack_from(tail)
        if footer_len > MAX_HEADER or footer_len > size - SHA_BYTES - _U32.size:
            raise _corrupt(path, "malformed footer length")
        stream.seek(size - SHA_BYTES - _U32.size - footer_len)
        counts = _parse_footer(path, stream.read(footer_len))
    return SnapshotInfo(header, counts, size, tail[_U32.size :])


class _HashingReader:
    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()
        self.left = limit  # bytes before the trailer

    def read(self, n: int) -> bytes:
        data = self.stream.read(min(n, self.left))
        self.left -= len(data)
        self.sha.update(data)
        return data


def _records(path: str, read: Callable[[int], bytes]) -> Iterator[tuple[bytes, bytes]]:
    """Records until the end marker; structure and key order are checked."""
    previous: bytes | None = None
    while True:
        raw = read(_U32.size)
        if len(raw) != _U32.size:
            raise _corrupt(path, "truncated (records end without the end marker)")
        (length,) = _U32.unpack(raw)
        if length == 0:
            return
        if length > MAX_RECORD:
            raise _corrupt(path, f"record length {length} is implausible")
        data = read(length)
        if len(data) != length:
            raise _corrupt(path, "truncated record")
        obj = _loads(path, data, "record")
        if not isinstance(obj, list) or len(obj) != 2 or not all(type(x) is bytes for x in obj):
            raise _corrupt(path, "malformed record")
        key, value = obj
        if previous is not None and key <= previous:
            raise _corrupt(path, "records out of key order")
        previous = key
        yield key, value


def _verify(path: str) -> SnapshotInfo:
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size < SHA_BYTES:
            raise _corrupt(path, "truncated")
        reader = _HashingReader(stream, size - SHA_BYTES)
        header = _parse_header(path, reader)
        count = 0
        for _ in _records(path, reader.read):
            count += 1
        footer_raw = reader.read(reader.left)
        if len(footer_raw) < _U32.size:
            raise _corrupt(path, "truncated footer")
        (footer_len,) = _U32.unpack_from(footer_raw, len(footer_raw) - _U32.size)
        if footer_len != len(footer_raw) - _U32.size:
            raise _corrupt(path, "malformed footer length")
        trailer = stream.read(SHA_BYTES)
        digest = reader.sha.digest()
        if trailer != digest:
            raise _corrupt(
                path,
                f"checksum mismatch (SHA-256 of the content is {digest.hex()[:16]}..., "
                f"the file says {trailer.hex()[:16]}...)",
            )
        counts = _parse_footer(path, footer_raw[: -_U32.size])
        if counts["records"] != count:
            raise _corrupt(path, f"{count} records, the footer says {counts['records']}")
    return SnapshotInfo(header, counts, size, trailer)


def iter_items(path: str) -> Iterator[tuple[bytes, bytes]]:
    """The records of a snapshot file (verify its checksum first: ``read_info(verify=
    True)`` or ``file_sha256``); structure damage still raises ``SnapshotCorrupt``."""
    with open(path, "rb") as stream:
        _parse_header(path, stream)
        yield from _records(path, stream.read)


def file_sha256(path: str) -> tuple[bytes, bytes]:
    """(SHA-256 of everything before the trailer, the trailer): equal for an intact file.
    Blocking; hashlib releases the GIL on large reads."""
    sha = hashlib.sha256()
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        left = max(size - SHA_BYTES, 0)
        while left:
            data = stream.read(min(_READ, left))
            if not data:
                break
            sha.update(data)
            left -= len(data)
        trailer = stream.read(SHA_BYTES)
    return sha.digest(), trailer
