"""Frames <-> messages: a fixed binary header and a CBOR body of positional arrays.

A message travels as one ZeroMQ frame, the header followed by the body (a ROUTER adds and
strips the routing-id frame itself; the codec never sees it)::

    header  struct ">BBHQQ", 20 bytes:
            version u8 | flags u8 (0; reserved) | type code u16 | cluster id u64 | request id u64
    body    CBOR: the message's fields in declaration order, as an array (not a map)

Every message type is a ``@value`` class (``wire.value``) or a frozen dataclass, registered
with a type code (``register``); the Raft messages of :mod:`wire.messages` use codes 1..31 and
are registered on import, so other modules register their own types from 32 up. Field types
supported: ``int`` (unsigned 64-bit unless annotated ``Annotated[int, SIGNED]``), ``bool``,
``bytes``, ``str``, ``float``, ``None``, ``IntEnum`` subclasses, ``X | None`` and other unions
(tried in order), ``list[X]``, ``tuple[X, ...]``, ``dict[str | bytes, X]``, nested dataclasses
(as nested arrays) and ``Any`` (native CBOR values only).

Decoding is strict: anything unexpected raises :class:`~wire.errors.WireError` with a
one-line message, and no foreign exception escapes. CBOR tags are rejected, so a body can
only produce native values (never datetimes, sets, bignums or shared references). The
per-type converters are built in :mod:`wire.convert`.

Receivers also accept the header and the body as two frames, ``[header, body]``: the framing
of builds before one frame was chosen (every ZeroMQ frame costs both ends a call).
"""

from __future__ import annotations

import dataclasses
import io
import struct
import threading
from collections.abc import Sequence
from typing import Any, Final, NoReturn

import cbor2

from .convert import SIGNED, U64_MAX, Decoder, Encoder, Invalid, object_codec
from .errors import WireError
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    PeerProbe,
    RequestVote,
    RequestVoteResponse,
    SnapshotAck,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotOfferReply,
    TimeoutNow,
)
from .value import value

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "RAFT_TYPE_CODES",
    "SIGNED",
    "SNAPSHOT_TYPE_CODES",
    "Decoded",
    "decode",
    "encode",
    "node_routing_id",
    "register",
    "routing_id_node",
    "type_code",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_MESSAGE: Final = 64 << 20
MAX_DEPTH: Final = 32  # CBOR container nesting accepted in a body

_HEADER: Final = struct.Struct(">BBHQQ")
HEADER_SIZE: Final = _HEADER.size
_MAX_CODE: Final = 0xFFFF

# Peer DEALER routing ids: b"N" + node id as u64 big-endian. ZeroMQ reserves ids that start
# with a zero byte for the ids it generates itself, so ours never collide with a client's.
_ROUTING_PREFIX: Final = b"N"
_ROUTING_ID: Final = struct.Struct(">cQ")


@value
class Decoded:
    """A decoded message with the header fields that came with it."""

    msg: object
    request_id: int
    cluster_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    cls: type
    code: int
    to_wire: Encoder  # message -> list/tuple of CBOR-native values
    from_wire: Decoder  # CBOR-native value -> message (raises Invalid)


_BY_CODE: dict[int, _Spec] = {}
_BY_CLASS: dict[type, _Spec] = {}


# --- registry -----------------------------------------------------------------------------


def register(code: int, cls: type) -> None:
    """Give ``cls``, a ``@value`` class or a frozen dataclass, the wire type code ``code``
    (1..65535).

    Converters are built now, from ``typing.get_type_hints(cls)``: an unsupported field type
    raises ``TypeError`` here, not when the first message is sent. A code or class that is
    already registered raises ``ValueError``.
    """
    if type(code) is not int or not 1 <= code <= _MAX_CODE:
        raise ValueError(f"type code must be an int in 1..{_MAX_CODE}, not {code!r}")
    if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
        raise TypeError(f"only dataclasses can be registered, not {cls!r}")
    if code in _BY_CODE:
        raise ValueError(f"type code {code} is already used by {_BY_CODE[code].cls.__name__}")
    if cls in _BY_CLASS:
        raise ValueError(f"{cls.__name__} is already registered with code {_BY_CLASS[cls].code}")
    enc, dec = object_codec(cls)
    spec = _Spec(cls, code, enc, dec)
    _BY_CODE[code] = spec
    _BY_CLASS[cls] = spec


def type_code(cls: type) -> int:
    """The wire type code of a registered message class (``KeyError`` if unregistered)."""
    return _BY_CLASS[cls].code


# --- frames -------------------------------------------------------------------------------


def encode(msg: object, *, cluster_id: int, request_id: int = 0) -> list[bytes]:
    """``[header + body]`` (one frame) for a registered message; raises WireError if it
    cannot be."""
    spec = _BY_CLASS.get(type(msg))
    if spec is None:
        raise WireError(f"cannot encode {type(msg).__name__}: not a registered message type")
    try:
        header = _HEADER.pack(PROTOCOL_VERSION, 0, spec.code, cluster_id, request_id)
    except struct.error:
        raise WireError(
            f"cannot encode {spec.cls.__name__}: cluster id {cluster_id!r} or request id "
            f"{request_id!r} is not an unsigned 64-bit int"
        ) from None
    try:
        body = cbor2.dumps(spec.to_wire(msg))
    except (cbor2.CBORError, TypeError, ValueError, AttributeError, KeyError) as e:
        raise WireError(f"cannot encode {spec.cls.__name__}: {e}") from None
    return [header + body]


def _reject_tag(*_args: object) -> NoReturn:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed")


# Every tag cbor2 knows (and tag_hook for the rest): no tag may turn into an object.
_NO_TAGS: Final = dict.fromkeys([*range(0, 1024), 55799, 55800, 55801], _reject_tag)


_EMPTY: Final = io.BytesIO(b"")
_local = threading.local()


def _new_decoder() -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(
        _EMPTY,
        tag_hook=_reject_tag,
        semantic_decoders=_NO_TAGS,
        max_depth=MAX_DEPTH,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )


def _loads_body(data: bytes, start: int) -> Any:
    """Exactly one CBOR item in ``data[start:]`` (trailing bytes are an error).

    ``cbor2.loads`` ignores trailing bytes, so a decoder reading a BytesIO tells how much it
    consumed (a BytesIO shares the bytes it is given: no copy); one decoder per thread is
    reused (it is cheaper than building one), and replaced after a failure in case the
    failure left state behind.
    """
    decoder: cbor2.CBORDecoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = _new_decoder()
    fp = io.BytesIO(data)
    fp.seek(start)
    decoder.fp = fp
    try:
        value = decoder.decode()
    except BaseException:
        _local.decoder = None
        raise
    finally:
        decoder.fp = _EMPTY  # do not keep the body alive
    if fp.tell() != len(data):
        raise cbor2.CBORDecodeError(f"{len(data) - fp.tell()} trailing bytes after the body")
    return value


def decode(
    frames: Sequence[bytes], *, cluster_id: int | None, max_size: int = DEFAULT_MAX_MESSAGE
) -> Decoded:
    """Decode ``[header + body]`` (or ``[header, body]``); raises WireError saying what is
    wrong with it.

    ``cluster_id=None`` accepts any cluster (a client that has not learnt it yet).
    """
    if len(frames) == 1:
        data = frames[0]
        start = HEADER_SIZE
        if len(data) < HEADER_SIZE:
            raise WireError(f"message of {len(data)} bytes is shorter than the header")
    elif len(frames) == 2:
        header, data = frames
        start = 0
        if len(header) != HEADER_SIZE:
            raise WireError(f"header of {len(header)} bytes, expected {HEADER_SIZE}")
    else:
        raise WireError(f"expected 1 frame (header and body) or 2, got {len(frames)}")
    size = len(data) - start + HEADER_SIZE
    if size > max_size:
        raise WireError(f"message of {size} bytes exceeds the limit of {max_size}")
    version, flags, code, msg_cluster, request_id = _HEADER.unpack_from(frames[0])
    if version != PROTOCOL_VERSION:
        raise WireError(
            f"unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})"
        )
    if flags:
        raise WireError(f"unknown header flags 0x{flags:02x}")
    if cluster_id is not None and msg_cluster != cluster_id:
        raise WireError(f"message for cluster {msg_cluster}, this is cluster {cluster_id}")
    spec = _BY_CODE.get(code)
    if spec is None:
        raise WireError(f"unknown message type code {code}")
    try:
        value = _loads_body(data, start)
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise WireError(f"malformed CBOR in {spec.cls.__name__} body: {e}") from None
    try:
        msg = spec.from_wire(value)
    except Invalid as e:
        raise WireError(f"invalid {spec.cls.__name__}: {e}") from None
    return Decoded(msg, request_id, msg_cluster)


def node_routing_id(node_id: int) -> bytes:
    """The ZeroMQ routing id a node's peer DEALERs use (``ValueError`` if not a node id)."""
    if type(node_id) is not int or not 1 <= node_id <= U64_MAX:
        raise ValueError(f"node ids are positive 64-bit ints, not {node_id!r}")
    return _ROUTING_ID.pack(_ROUTING_PREFIX, node_id)


def routing_id_node(rid: bytes) -> int:
    """The node id in a peer routing id; WireError if ``rid`` is not one (e.g. a client)."""
    if len(rid) == _ROUTING_ID.size:
        prefix, node_id = _ROUTING_ID.unpack(rid)
        if prefix == _ROUTING_PREFIX and node_id > 0:
            return int(node_id)
    raise WireError(f"routing id {bytes(rid)!r} is not a node id")


# Wire type codes of the Raft messages: part of the protocol, never renumber them.
RAFT_TYPE_CODES: Final[dict[type, int]] = {
    RequestVote: 1,
    RequestVoteResponse: 2,
    AppendEntries: 3,
    AppendEntriesResponse: 4,
    Heartbeat: 5,
    HeartbeatResponse: 6,
    TimeoutNow: 7,
}
for _cls, _code in RAFT_TYPE_CODES.items():
    register(_code, _cls)
del _cls, _code

# Snapshot streaming between peers (docs/snapshots.md). ``InstallSnapshot`` has no code on
# purpose: a node builds it itself from a verified transfer; the wire cannot carry one.
SNAPSHOT_TYPE_CODES: Final[dict[type, int]] = {
    SnapshotOffer: 10,
    SnapshotOfferReply: 11,
    SnapshotChunk: 12,
    SnapshotAck: 13,
}
for _cls, _code in SNAPSHOT_TYPE_CODES.items():
    register(_code, _cls)
del _cls, _code

# Membership (trioraft.node.membership): peer connection checks at bootstrap.
register(16, PeerProbe)
