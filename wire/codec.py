"""Frames <-> messages: a fixed binary header and a CBOR body of positional arrays.

A message travels as two ZeroMQ frames, ``[header, body]`` (a ROUTER adds and strips the
routing-id frame itself; the codec never sees it)::

    header  struct ">BBHQQ", 20 bytes:
            version u8 | flags u8 (0; reserved) | type code u16 | cluster id u64 | request id u64
    body    CBOR: the message's fields in declaration order, as an array (not a map)

Every message type is a frozen dataclass registered with a type code (``register``); the
Raft messages of :mod:`wire.messages` use codes 1..31 and are registered on import, so other
modules register their own types from 32 up. Field types supported: ``int`` (unsigned 64-bit
unless annotated ``Annotated[int, SIGNED]``), ``bool``, ``bytes``, ``str``, ``float``,
``None``, ``IntEnum`` subclasses, ``X | None`` and other unions (tried in order), ``list[X]``,
``tuple[X, ...]``, ``dict[str | bytes, X]``, nested dataclasses (as
nested arrays) and ``Any`` (native CBOR values only).

Decoding is strict: anything unexpected raises :class:`~wire.errors.WireError` with a
one-line message, and no foreign exception escapes. CBOR tags are rejected, so a body can
only produce native values (never datetimes, sets, bignums or shared references).
"""

from __future__ import annotations

import dataclasses
import enum
import io
import struct
import threading
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

import cbor2

from .errors import WireError
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
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
_U64_MAX: Final = (1 << 64) - 1
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_MAX_CODE: Final = 0xFFFF

# Peer DEALER routing ids: b"N" + node id as u64 big-endian. ZeroMQ reserves ids that start
# with a zero byte for the ids it generates itself, so ours never collide with a client's.
_ROUTING_PREFIX: Final = b"N"
_ROUTING_ID: Final = struct.Struct(">cQ")


class _Signed:
    def __repr__(self) -> str:
        return "SIGNED"


SIGNED: Final = _Signed()
"""Marker for ``Annotated[int, SIGNED]``: a signed 64-bit field (plain ``int`` is unsigned)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded message with the header fields that came with it."""

    msg: object
    request_id: int
    cluster_id: int


class _Invalid(Exception):
    """Internal: a value does not match its field type (becomes a WireError)."""


Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]
Conv = tuple[Encoder | None, Decoder]  # encoder (None: already CBOR-native), decoder


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    cls: type
    code: int
    to_wire: Encoder  # message -> list/tuple of CBOR-native values
    from_wire: Decoder  # CBOR-native value -> message (raises _Invalid)


_BY_CODE: dict[int, _Spec] = {}
_BY_CLASS: dict[type, _Spec] = {}
# Per-dataclass converters, also for nested dataclasses that have no type code.
_OBJ_CODECS: dict[type, tuple[Encoder, Decoder]] = {}


# --- value converters --------------------------------------------------------------------


def _describe(x: object) -> str:
    if type(x) is int:
        return "negative int" if x < 0 else f"int out of range ({x})"
    if type(x) is list:
        return f"array of {len(x)}"
    if type(x) is dict:
        return "map"
    return type(x).__name__


def _fail(expected: str, x: object) -> NoReturn:
    raise _Invalid(f"expected {expected}, got {_describe(x)}")


def _dec_u64(x: Any) -> int:
    if type(x) is int and 0 <= x <= _U64_MAX:
        return x
    _fail("unsigned int", x)


def _dec_i64(x: Any) -> int:
    if type(x) is int and _I64_MIN <= x <= _I64_MAX:
        return x
    _fail("signed 64-bit int", x)


def _exact(tp: type, name: str) -> Decoder:
    def dec(x: Any) -> Any:
        if type(x) is tp:
            return x
        _fail(name, x)

    return dec


def _dec_none(x: Any) -> None:
    if x is not None:
        _fail("null", x)


def _dec_float(x: Any) -> float:
    if type(x) is float:
        return x
    if type(x) is int:  # an int is a valid float field value; CBOR keeps it an int
        return float(x)
    _fail("float", x)


def _dec_native(x: Any) -> Any:
    """``Any`` fields: only plain CBOR values (cbor2 can produce nothing else once tags are
    rejected, except ``undefined`` and simple values, which are refused here)."""
    tx = type(x)
    if tx is int:
        if -(1 << 64) <= x <= _U64_MAX:
            return x
    elif x is None or tx in (bool, float, bytes, str):
        return x
    elif tx is list:
        for item in x:
            _dec_native(item)
        return x
    elif tx is dict:
        for key, value in x.items():
            _dec_native(key)
            _dec_native(value)
        return x
    _fail("a native value", x)


def _dec_enum(cls: type[enum.IntEnum]) -> Decoder:
    members: dict[int, enum.IntEnum] = {int(m): m for m in cls}
    name = cls.__name__

    def dec(x: Any) -> Any:
        if type(x) is int:
            member = members.get(x)
            if member is not None:
                return member
            raise _Invalid(f"{x} is not a {name}")
        _fail(name, x)

    return dec


def _seq(item_enc: Encoder | None, item_dec: Decoder, as_tuple: bool) -> Conv:
    def dec(x: Any) -> Any:
        if type(x) is not list:
            _fail("array", x)
        items = [item_dec(i) for i in x]
        return tuple(items) if as_tuple else items

    if item_enc is None:
        return None, dec
    enc = item_enc
    return (lambda v: [enc(i) for i in v]), dec


def _mapping(key_dec: Decoder, val: Conv) -> Conv:
    val_enc, val_dec = val

    def dec(x: Any) -> Any:
        if type(x) is not dict:
            _fail("map", x)
        return {key_dec(k): val_dec(v) for k, v in x.items()}

    if val_enc is None:
        return None, dec
    enc = val_enc
    return (lambda m: {k: enc(v) for k, v in m.items()}), dec


def _union(options: list[tuple[type | None, Encoder | None, Decoder]]) -> Conv:
    decs = [d for _, _, d in options]
    nullable = any(t is None for t, _, _ in options)

    def dec(x: Any) -> Any:
        if x is None and nullable:
            return None
        errors = []
        for d in decs:
            try:
                return d(x)
            except _Invalid as e:
                errors.append(str(e))
        raise _Invalid(" or ".join(errors))

    if all(e is None for _, e, _ in options):
        return None, dec
    by_type = {t: e for t, e, _ in options if t is not None and e is not None}
    return (lambda v: by_type[type(v)](v) if type(v) in by_type else v), dec


def _converter(tp: Any, owner: type) -> Conv:
    """(encoder or None for "already CBOR-native", decoder) for one field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        if args[0] is int and any(m is SIGNED for m in args[1:]):
            return None, _dec_i64
        return _converter(args[0], owner)
    if tp is int:
        return None, _dec_u64
    if tp is bool:
        return None, _dec_bool
    if tp is bytes:
        return None, _dec_bytes
    if tp is str:
        return None, _dec_str
    if tp is float:
        return None, _dec_float
    if tp is type(None) or tp is None:
        return None, _dec_none
    if tp is Any:
        return None, _dec_native
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return None, _dec_enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object_codec(tp)
    if origin is typing.Union or origin is types.UnionType:
        options: list[tuple[type | None, Encoder | None, Decoder]] = []
        for arg in args:
            enc, dec = _converter(arg, owner)
            key = typing.get_origin(arg) or arg
            options.append((None if arg is type(None) else key, enc, dec))
        return _union(options)
    if origin is list and len(args) == 1:
        return _seq(*_converter(args[0], owner), as_tuple=False)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] is Entry:
            return _enc_entries, _dec_entries
        return _seq(*_converter(args[0], owner), as_tuple=True)
    if origin is dict and len(args) == 2:
        key_tp = args[0]
        if key_tp is str:
            key_dec = _exact(str, "str key")
        elif key_tp is bytes:
            key_dec = _exact(bytes, "bytes key")
        elif set(typing.get_args(key_tp)) == {str, bytes}:
            key_dec = _union(
                [(str, None, _exact(str, "str")), (bytes, None, _exact(bytes, "bytes"))]
            )[1]
        else:
            raise TypeError(f"{owner.__name__}: dict keys must be str or bytes, not {key_tp!r}")
        return _mapping(key_dec, _converter(args[1], owner))
    raise TypeError(f"{owner.__name__}: field type {tp!r} is not supported on the wire")


def _object_codec(cls: type) -> tuple[Encoder, Decoder]:
    """Converters for a dataclass as a positional array of its fields (cached per class)."""
    cached = _OBJ_CODECS.get(cls)
    if cached is not None:
        return cached
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} must be a frozen dataclass to go on the wire")
    # A self-referencing type would recurse forever here: resolve through the cache lazily.
    _OBJ_CODECS[cls] = (lambda v: _OBJ_CODECS[cls][0](v)), (lambda x: _OBJ_CODECS[cls][1](x))
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        names = [f.name for f in fields]
        convs = [_converter(hints[f.name], cls) for f in fields]
    except Exception:
        del _OBJ_CODECS[cls]
        raise
    codec = _build_object_codec(cls, names, convs)
    _OBJ_CODECS[cls] = codec
    return codec


def _build_object_codec(cls: type, names: list[str], convs: list[Conv]) -> tuple[Encoder, Decoder]:
    """A generated fast decoder and encoder (like ``dataclasses`` builds ``__init__``).

    The fast decoder checks simple fields inline and defers anything else, including every
    failure, to ``slow``, which walks the fields one by one to say exactly what is wrong.
    Only field indexes and the class's own field names go into the generated source.
    """
    n = len(names)
    cls_name = cls.__name__
    decs = [d for _, d in convs]
    labels = [f"{cls_name}.{name}" for name in names]

    def slow(x: Any) -> Any:
        if type(x) is not list:
            _fail(f"{cls_name} as an array", x)
        if len(x) != n:
            raise _Invalid(f"{cls_name}: expected {n} fields, got {len(x)}")
        args = []
        for d, value, label in zip(decs, x, labels, strict=True):
            try:
                args.append(d(value))
            except _Invalid as e:
                raise _Invalid(f"{label}: {e}") from None
        try:
            return cls(*args)
        except (TypeError, ValueError) as e:  # a __post_init__ check of the class
            raise _Invalid(f"{cls_name}: {e}") from None

    namespace: dict[str, Any] = {"cls": cls, "slow": slow, "U64": _U64_MAX}
    checks, args = [], []
    for i, d in enumerate(decs):
        inline = _INLINE_CHECKS.get(d)
        if inline is not None:
            checks.append(inline.format(a=f"a{i}"))
            args.append(f"a{i}")
        else:
            namespace[f"d{i}"] = d
            args.append(f"d{i}(a{i})")
    unpack = f"        {''.join(f'a{i}, ' for i in range(n))}= x\n" if n else ""
    source = (
        "def dec(x):\n"
        f"    if type(x) is list and len(x) == {n}:\n"
        f"{unpack}"
        f"        if {' and '.join(checks) or 'True'}:\n"
        "            try:\n"
        f"                return cls({', '.join(args)})\n"
        "            except Exception:\n"
        "                pass\n"
        "    return slow(x)\n"
    )
    values = [
        f"v.{name}" if e is None else f"e{i}(v.{name})"
        for i, (name, (e, _)) in enumerate(zip(names, convs, strict=True))
    ]
    namespace.update({f"e{i}": e for i, (e, _) in enumerate(convs) if e is not None})
    source += f"def enc(v):\n    return ({''.join(f'{v}, ' for v in values)})\n"
    exec(source, namespace)  # source built from field indexes and names only
    return namespace["enc"], namespace["dec"]


_dec_bool: Final = _exact(bool, "bool")
_dec_bytes: Final = _exact(bytes, "bytes")
_dec_str: Final = _exact(str, "str")
# Decoders the generated fast path inlines as a condition on the value ``a``.
_INLINE_CHECKS: Final[dict[Decoder, str]] = {
    _dec_u64: "type({a}) is int and 0 <= {a} <= U64",
    _dec_bool: "type({a}) is bool",
    _dec_bytes: "type({a}) is bytes",
    _dec_str: "type({a}) is str",
}


# --- hand-specialised Entry handling (AppendEntries is the hot path) ----------------------

_KINDS: Final[dict[int, EntryKind]] = {int(k): k for k in EntryKind}


def _entry_factory() -> Callable[[int, int, EntryKind, bytes], Entry]:
    """Build Entry through its slots: 40% cheaper than the frozen ``__init__``.

    Entry has no ``__post_init__`` to skip; if it ever gets one, fall back to the class.
    """
    if hasattr(Entry, "__post_init__") or "__slots__" not in Entry.__dict__:
        return Entry
    new = object.__new__
    slots = vars(Entry)  # the member descriptors of the slots
    set_term = slots["term"].__set__
    set_index = slots["index"].__set__
    set_kind = slots["kind"].__set__
    set_data = slots["data"].__set__

    def make(term: int, index: int, kind: EntryKind, data: bytes) -> Entry:
        e = new(Entry)
        set_term(e, term)
        set_index(e, index)
        set_kind(e, kind)
        set_data(e, data)
        return e

    return make


_new_entry: Final = _entry_factory()


def _enc_entries(entries: tuple[Entry, ...]) -> list[tuple[int, int, int, bytes]]:
    return [(e.term, e.index, e.kind, e.data) for e in entries]


def _dec_entries(x: Any) -> tuple[Entry, ...]:
    if type(x) is not list:
        _fail("array of entries", x)
    out = []
    for i, e in enumerate(x):
        if type(e) is list and len(e) == 4:
            term, index, kind, data = e
            if (
                type(term) is int
                and type(index) is int
                and 0 <= term <= _U64_MAX
                and 0 <= index <= _U64_MAX
                and type(kind) is int
                and type(data) is bytes
                and kind in _KINDS
            ):
                out.append(_new_entry(term, index, _KINDS[kind], data))
                continue
        try:  # the generic decoder names exactly what is wrong
            out.append(_ENTRY_DECODER(e))
        except _Invalid as err:
            raise _Invalid(f"[{i}]: {err}") from None
    return tuple(out)


# --- registry -----------------------------------------------------------------------------


def register(code: int, cls: type) -> None:
    """Give the frozen dataclass ``cls`` the wire type code ``code`` (1..65535).

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
    enc, dec = _object_codec(cls)
    spec = _Spec(cls, code, enc, dec)
    _BY_CODE[code] = spec
    _BY_CLASS[cls] = spec


def type_code(cls: type) -> int:
    """The wire type code of a registered message class (``KeyError`` if unregistered)."""
    return _BY_CLASS[cls].code


# --- frames -------------------------------------------------------------------------------


def encode(msg: object, *, cluster_id: int, request_id: int = 0) -> list[bytes]:
    """``[header, body]`` for a registered message; raises WireError if it cannot be."""
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
    return [header, body]


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


def _loads_body(body: bytes) -> Any:
    """Exactly one CBOR item (trailing bytes are an error).

    ``cbor2.loads`` ignores trailing bytes, so a decoder reading a BytesIO tells how much it
    consumed; one decoder per thread is reused (it is cheaper than building one), and
    replaced after a failure in case the failure left state behind.
    """
    decoder: cbor2.CBORDecoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = _new_decoder()
    fp = io.BytesIO(body)
    decoder.fp = fp
    try:
        value = decoder.decode()
    except BaseException:
        _local.decoder = None
        raise
    finally:
        decoder.fp = _EMPTY  # do not keep the body alive
    if fp.tell() != len(body):
        raise cbor2.CBORDecodeError(f"{len(body) - fp.tell()} trailing bytes after the body")
    return value


def decode(
    frames: Sequence[bytes], *, cluster_id: int | None, max_size: int = DEFAULT_MAX_MESSAGE
) -> Decoded:
    """Decode ``[header, body]``; raises WireError saying what is wrong with it.

    ``cluster_id=None`` accepts any cluster (a client that has not learnt it yet).
    """
    if len(frames) != 2:
        raise WireError(f"expected 2 frames (header, body), got {len(frames)}")
    header, body = frames
    size = len(header) + len(body)
    if size > max_size:
        raise WireError(f"message of {size} bytes exceeds the limit of {max_size}")
    if len(header) != HEADER_SIZE:
        raise WireError(f"header of {len(header)} bytes, expected {HEADER_SIZE}")
    version, flags, code, msg_cluster, request_id = _HEADER.unpack(header)
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
        value = _loads_body(body)
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise WireError(f"malformed CBOR in {spec.cls.__name__} body: {e}") from None
    try:
        msg = spec.from_wire(value)
    except _Invalid as e:
        raise WireError(f"invalid {spec.cls.__name__}: {e}") from None
    return Decoded(msg, request_id, msg_cluster)


def node_routing_id(node_id: int) -> bytes:
    """The ZeroMQ routing id a node's peer DEALERs use (``ValueError`` if not a node id)."""
    if type(node_id) is not int or not 1 <= node_id <= _U64_MAX:
        raise ValueError(f"node ids are positive 64-bit ints, not {node_id!r}")
    return _ROUTING_ID.pack(_ROUTING_PREFIX, node_id)


def routing_id_node(rid: bytes) -> int:
    """The node id in a peer routing id; WireError if ``rid`` is not one (e.g. a client)."""
    if len(rid) == _ROUTING_ID.size:
        prefix, node_id = _ROUTING_ID.unpack(rid)
        if prefix == _ROUTING_PREFIX and node_id > 0:
            return int(node_id)
    raise WireError(f"routing id {bytes(rid)!r} is not a node id")


_ENTRY_DECODER: Final = _object_codec(Entry)[1]

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
