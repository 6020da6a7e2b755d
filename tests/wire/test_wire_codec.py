"""wire.codec: round trips, the header, generic field types and strict rejection."""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import sys
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import cbor2
import pytest

from wire import codec
from wire.codec import (
    DEFAULT_MAX_MESSAGE,
    HEADER_SIZE,
    PROTOCOL_VERSION,
    SIGNED,
    Decoded,
    decode,
    encode,
    node_routing_id,
    register,
    routing_id_node,
)
from wire.errors import WireError
from wire.messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

CLUSTER = 0xC0FFEE
REPO_ROOT = Path(__file__).resolve().parents[2]
U64 = (1 << 64) - 1


def _entries(n: int) -> tuple[Entry, ...]:
    kinds = list(EntryKind)
    return tuple(Entry(3, 10 + i, kinds[i % len(kinds)], bytes([i % 256]) * i) for i in range(n))


RAFT_SAMPLES = [
    RequestVote(1, 2, 5, 10, 4),
    RequestVote(1, 2, 5, 10, 4, pre_vote=True, transfer=True),
    RequestVoteResponse(2, 1, 5, True),
    RequestVoteResponse(2, 1, 6, False, pre_vote=True),
    AppendEntries(1, 2, 5, 9, 4, (), 7),
    AppendEntries(1, 2, 5, 9, 4, _entries(1), 7),
    AppendEntries(1, 2, 5, 9, 4, _entries(300), 7),
    AppendEntries(U64, U64, U64, U64, U64, (Entry(U64, U64, EntryKind.CONFIG, b""),), U64),
    AppendEntriesResponse(2, 1, 5, True, 12),
    AppendEntriesResponse(2, 1, 5, False, 9, hint_index=3, hint_term=2),
    Heartbeat(1, 2, 5, 7),
    Heartbeat(1, 2, 5, 7, context=99),
    HeartbeatResponse(2, 1, 5, context=99),
    TimeoutNow(1, 2, 5),
]


def _fields(msg: object) -> list[Any]:
    return [getattr(msg, f.name) for f in dataclasses.fields(msg)]  # type: ignore[arg-type]


@pytest.mark.parametrize("msg", RAFT_SAMPLES, ids=lambda m: type(m).__name__)
def test_raft_messages_round_trip(msg: object) -> None:
    frames = encode(msg, cluster_id=CLUSTER, request_id=42)
    assert len(frames) == 1 and type(frames[0]) is bytes
    decoded = decode(frames, cluster_id=CLUSTER)
    assert decoded == Decoded(msg, 42, CLUSTER)
    assert type(decoded.msg) is type(msg)


def test_raft_type_codes_are_fixed() -> None:
    # Part of the protocol: changing one breaks mixed-version clusters.
    expected = {
        RequestVote: 1,
        RequestVoteResponse: 2,
        AppendEntries: 3,
        AppendEntriesResponse: 4,
        Heartbeat: 5,
        HeartbeatResponse: 6,
        TimeoutNow: 7,
    }
    assert {cls: codec.type_code(cls) for cls in RAFT_MESSAGE_TYPES} == expected
    assert codec.RAFT_TYPE_CODES == expected
    assert {type(m) for m in RAFT_SAMPLES} == set(RAFT_MESSAGE_TYPES)


def test_importing_the_message_types_loads_no_io_library() -> None:
    code = (
        "import sys, wire, wire.messages, wire.errors; "
        "print(sorted({'cbor2', 'trio', 'zmq'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"


def test_entries_restore_their_kind_enum_and_tuple() -> None:
    msg = AppendEntries(1, 2, 5, 9, 4, _entries(7), 7)
    got = decode(encode(msg, cluster_id=1), cluster_id=1).msg
    assert isinstance(got, AppendEntries)
    assert type(got.entries) is tuple
    assert [type(e.kind) for e in got.entries] == [EntryKind] * 7
    assert got.entries == msg.entries
    assert hash(got.entries[3]) == hash(msg.entries[3])


def test_header_layout_and_positional_body() -> None:
    msg = Heartbeat(1, 2, 5, 7, context=3)
    (frame,) = encode(msg, cluster_id=CLUSTER, request_id=U64)  # one frame: header, body
    header, body = frame[:HEADER_SIZE], frame[HEADER_SIZE:]
    assert HEADER_SIZE == 20
    version, flags, code, cluster, request = struct.unpack(">BBHQQ", header)
    assert (version, flags, code, cluster, request) == (
        PROTOCOL_VERSION,
        0,
        codec.type_code(Heartbeat),
        CLUSTER,
        U64,
    )
    assert cbor2.loads(body) == [1, 2, 5, 7, 3]  # an array in field order, not a map
    entries_body = cbor2.loads(
        encode(AppendEntries(1, 2, 3, 4, 5, _entries(2), 6), cluster_id=1)[0][HEADER_SIZE:]
    )
    assert entries_body[5] == [[3, 10, 0, b""], [3, 11, 1, b"\x01"]]


def test_cluster_id_none_accepts_any_cluster() -> None:
    frames = encode(TimeoutNow(1, 2, 3), cluster_id=12345, request_id=9)
    assert decode(frames, cluster_id=None) == Decoded(TimeoutNow(1, 2, 3), 9, 12345)


def test_default_max_message() -> None:
    assert DEFAULT_MAX_MESSAGE == 64 << 20


# --- rejection -----------------------------------------------------------------------------


def _header(
    code: int | None = None,
    *,
    version: int = PROTOCOL_VERSION,
    flags: int = 0,
    cluster: int = CLUSTER,
) -> bytes:
    code = codec.type_code(Heartbeat) if code is None else code
    return struct.pack(">BBHQQ", version, flags, code, cluster, 0)


def _hb_body(*fields: Any) -> bytes:
    return cbor2.dumps(list(fields))


GOOD_HB = _hb_body(1, 2, 5, 7, 0)
AE = codec.type_code(AppendEntries)


def _ae_body(entries: Any) -> bytes:
    return cbor2.dumps([1, 2, 5, 9, 4, entries, 7])


REJECTED: list[tuple[str, list[bytes], str]] = [
    ("no frames", [], "expected 1 frame (header and body) or 2, got 0"),
    ("one short frame", [_header()[:-1]], "message of 19 bytes is shorter than the header"),
    ("header alone", [_header()], "malformed CBOR"),
    ("three frames", [b"rid", _header(), GOOD_HB], "expected 1 frame (header and body) or 2"),
    ("truncated header", [_header()[:-1], GOOD_HB], "header of 19 bytes"),
    ("empty header", [b"", GOOD_HB], "header of 0 bytes"),
    ("long header", [_header() + b"\0", GOOD_HB], "header of 21 bytes"),
    ("bad version", [_header(version=2), GOOD_HB], "unsupported protocol version 2"),
    ("version zero", [_header(version=0), GOOD_HB], "unsupported protocol version 0"),
    ("unknown flags", [_header(flags=1), GOOD_HB], "flags"),
    ("unknown type", [_header(999), GOOD_HB], "unknown message type code 999"),
    ("type zero", [_header(0), GOOD_HB], "unknown message type code 0"),
    ("foreign cluster", [_header(cluster=CLUSTER + 1), GOOD_HB], "cluster"),
    ("empty body", [_header(), b""], "malformed CBOR"),
    ("garbage CBOR", [_header(), b"\xff\xfe\x00"], "malformed CBOR"),
    ("truncated CBOR", [_header(), GOOD_HB[:-1]], "malformed CBOR"),
    ("trailing bytes", [_header(), GOOD_HB + b"\x00"], "trailing bytes"),
    ("bad utf-8", [_header(codec.type_code(Heartbeat)), b"\x85\x62\xff\xfe"], "malformed CBOR"),
    ("map body", [_header(), cbor2.dumps({"src": 1})], "array"),
    ("int body", [_header(), cbor2.dumps(5)], "array"),
    ("too few fields", [_header(), _hb_body(1, 2, 5, 7)], "expected 5 fields, got 4"),
    ("too many fields", [_header(), _hb_body(1, 2, 5, 7, 0, 0)], "expected 5 fields, got 6"),
    (
        "bool for int",
        [_header(), _hb_body(1, 2, True, 7, 0)],
        "Heartbeat.term: expected unsigned int, got bool",
    ),
    (
        "negative term",
        [_header(), _hb_body(1, 2, -1, 7, 0)],
        "Heartbeat.term: expected unsigned int, got negative int",
    ),
    ("float for int", [_header(), _hb_body(1, 2, 5.0, 7, 0)], "Heartbeat.term"),
    ("str for int", [_header(), _hb_body("1", 2, 5, 7, 0)], "Heartbeat.src"),
    ("null for int", [_header(), _hb_body(1, None, 5, 7, 0)], "Heartbeat.dst"),
    (
        "int for bool",
        [_header(codec.type_code(RequestVoteResponse)), cbor2.dumps([2, 1, 5, 1, False])],
        "RequestVoteResponse.granted: expected bool, got int",
    ),
    ("entries not an array", [_header(AE), _ae_body(b"")], "AppendEntries.entries"),
    (
        "entry arity",
        [_header(AE), _ae_body([[1, 2, 0]])],
        "AppendEntries.entries: [0]: Entry: expected 4 fields",
    ),
    ("entry not an array", [_header(AE), _ae_body([5])], "AppendEntries.entries: [0]"),
    (
        "str entry data",
        [_header(AE), _ae_body([[1, 2, 0, b""], [1, 3, 0, "x"]])],
        "[1]: Entry.data: expected bytes, got str",
    ),
    (
        "unknown entry kind",
        [_header(AE), _ae_body([[1, 2, 9, b""]])],
        "Entry.kind: 9 is not a EntryKind",
    ),
    ("bool entry kind", [_header(AE), _ae_body([[1, 2, True, b""]])], "Entry.kind"),
    ("negative entry index", [_header(AE), _ae_body([[1, -2, 0, b""]])], "Entry.index"),
    (
        "negative prev_index",
        [_header(AE), cbor2.dumps([1, 2, 5, -9, 4, [], 7])],
        "AppendEntries.prev_index",
    ),
    ("bignum tag", [_header(), _hb_body(1, 2, cbor2.CBORTag(2, b"\x05"), 7, 0)], "tag"),
    ("datetime tag", [_header(), _hb_body(1, 2, cbor2.CBORTag(1, 5), 7, 0)], "tag"),
    ("shared-value tag", [_header(), _hb_body(1, 2, cbor2.CBORTag(28, 5), 7, 0)], "tag"),
    ("self-describe tag", [_header(), cbor2.dumps(cbor2.CBORTag(55799, [1, 2, 5, 7, 0]))], "tag"),
    ("unknown tag", [_header(), _hb_body(1, 2, cbor2.CBORTag(9999, 5), 7, 0)], "tag"),
    ("set tag", [_header(), _hb_body(1, 2, cbor2.CBORTag(258, [5]), 7, 0)], "tag"),
    ("undefined", [_header(), b"\x85\x01\x02\xf7\x07\x00"], "Heartbeat.term"),
    ("simple value", [_header(), b"\x85\x01\x02\xf0\x07\x00"], "Heartbeat.term"),
    ("indefinite array", [_header(), b"\x9f\x01\x02\x05\x07\x00\xff"], "malformed CBOR"),
    ("deep nesting", [_header(), b"\x81" * 100 + b"\x00"], "malformed CBOR"),
    ("huge claimed array", [_header(), b"\x9b" + (1 << 40).to_bytes(8, "big")], "malformed CBOR"),
]


@pytest.mark.parametrize(
    ("frames", "reason"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_rejects(frames: list[bytes], reason: str) -> None:
    # Each case as given, and as one frame when it holds a whole header and a body.
    framings = [frames]
    if len(frames) == 2 and len(frames[0]) == HEADER_SIZE:
        framings.append([frames[0] + frames[1]])
    for framing in framings:
        with pytest.raises(WireError) as info:
            decode(framing, cluster_id=CLUSTER)
        message = str(info.value)
        assert reason in message
        assert "\n" not in message


def test_one_frame_and_two_frames_decode_alike() -> None:
    msg = AppendEntries(1, 2, 5, 9, 4, _entries(3), 7)
    (frame,) = encode(msg, cluster_id=CLUSTER, request_id=8)
    two = [frame[:HEADER_SIZE], frame[HEADER_SIZE:]]  # the framing of earlier builds
    assert decode([frame], cluster_id=CLUSTER) == decode(two, cluster_id=CLUSTER)
    assert decode(two, cluster_id=CLUSTER) == Decoded(msg, 8, CLUSTER)


def test_rejects_oversized_before_decoding() -> None:
    frames = encode(AppendEntries(1, 2, 5, 9, 4, _entries(50), 7), cluster_id=CLUSTER)
    size = len(frames[0])
    assert decode(frames, cluster_id=CLUSTER, max_size=size).msg
    with pytest.raises(WireError, match=f"message of {size} bytes exceeds the limit of {size - 1}"):
        decode(frames, cluster_id=CLUSTER, max_size=size - 1)
    # Garbage bodies are refused on size alone, before any parsing.
    with pytest.raises(WireError, match="exceeds"):
        decode([_header(), b"\xff" * 100], cluster_id=CLUSTER, max_size=64)


def test_decoder_recovers_after_failures() -> None:
    for frames, _ in [c[1:] for c in REJECTED]:
        with pytest.raises(WireError):
            decode(frames, cluster_id=CLUSTER)
        assert decode([_header(), GOOD_HB], cluster_id=CLUSTER).msg == Heartbeat(1, 2, 5, 7, 0)


def test_encode_errors_are_wire_errors() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unregistered:
        x: int

    with pytest.raises(WireError, match="not a registered message type"):
        encode(Unregistered(1), cluster_id=1)
    with pytest.raises(WireError, match="cluster id"):
        encode(TimeoutNow(1, 2, 3), cluster_id=-1)
    with pytest.raises(WireError, match="request id"):
        encode(TimeoutNow(1, 2, 3), cluster_id=1, request_id=1 << 64)
    with pytest.raises(WireError, match="cannot encode Heartbeat"):
        encode(Heartbeat(1, 2, 3, object()), cluster_id=1)  # type: ignore[arg-type]


# --- the registry and generic field types ---------------------------------------------------


class Color(IntEnum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    name: str
    color: Color = Color.RED


@dataclasses.dataclass(frozen=True, slots=True)
class Everything:
    u: int
    s: Annotated[int, SIGNED]
    flag: bool
    blob: bytes
    text: str
    ratio: float
    nothing: None
    color: Color
    maybe: bytes | None
    numbers: list[int]
    words: tuple[str, ...]
    entries: tuple[Entry, ...]
    inner: Inner
    inners: tuple[Inner, ...]
    by_name: dict[str, int]
    by_key: dict[bytes, Inner]
    either: dict[str | bytes, Any]
    choice: int | str
    maybe_inner: Inner | None
    anything: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclasses.dataclass(frozen=True)
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value > 10:
            raise ValueError("value must be at most 10")


register(65001, Everything)
register(65002, Empty)
register(65003, Checked)

EVERYTHING = Everything(
    u=U64,
    s=-(1 << 63),
    flag=False,
    blob=b"\x00\xff",
    text="h\u00e9llo",
    ratio=0.25,
    nothing=None,
    color=Color.GREEN,
    maybe=None,
    numbers=[1, 2, 3],
    words=("a", "b"),
    entries=_entries(3),
    inner=Inner("i", Color.GREEN),
    inners=(Inner("a"), Inner("b", Color.GREEN)),
    by_name={"a": 1},
    by_key={b"k": Inner("v")},
    either={"s": [1, "two", b"3", None, 1.5, {"n": True}], b"b": -5},
    choice="word",
    maybe_inner=Inner("m"),
    anything={"x": [1, 2]},
)


def test_generic_field_types_round_trip() -> None:
    got = decode(encode(EVERYTHING, cluster_id=1, request_id=5), cluster_id=1).msg
    assert got == EVERYTHING
    assert isinstance(got, Everything)
    assert type(got.color) is Color and type(got.inner.color) is Color
    assert type(got.words) is tuple and type(got.numbers) is list
    assert type(got.inners) is tuple and all(type(i) is Inner for i in got.inners)
    assert [type(e.kind) for e in got.entries] == [EntryKind] * 3
    other = dataclasses.replace(EVERYTHING, maybe=b"m", choice=7, maybe_inner=None, ratio=2.0)
    assert decode(encode(other, cluster_id=1), cluster_id=1).msg == other


def _split(frames: list[bytes]) -> list[bytes]:
    """``encode``'s one frame as ``[header, body]`` (which ``decode`` accepts as well)."""
    (frame,) = frames
    return [frame[:HEADER_SIZE], frame[HEADER_SIZE:]]


def test_empty_message_round_trips() -> None:
    frames = encode(Empty(), cluster_id=1)
    assert cbor2.loads(_split(frames)[1]) == []
    assert decode(frames, cluster_id=1).msg == Empty()


def _everything_body(**changes: Any) -> list[bytes]:
    frames = _split(encode(EVERYTHING, cluster_id=1))
    fields = cbor2.loads(frames[1])
    names = [f.name for f in dataclasses.fields(Everything)]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return [frames[0], cbor2.dumps(fields)]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"s": 1 << 63}, "Everything.s: expected signed 64-bit int"),
        ({"u": -1}, "Everything.u"),
        ({"nothing": 0}, "Everything.nothing: expected null"),
        ({"color": 3}, "Everything.color: 3 is not a Color"),
        ({"maybe": "str"}, "Everything.maybe"),
        ({"numbers": [1, "2"]}, "Everything.numbers"),
        ({"words": "ab"}, "Everything.words: expected array"),
        ({"inner": ["i"]}, "Everything.inner: Inner: expected 2 fields"),
        ({"inners": [["a", 1], ["b", 5]]}, "Everything.inners: Inner.color"),
        ({"by_name": {"a": "1"}}, "Everything.by_name"),
        ({"by_name": [1]}, "Everything.by_name: expected map"),
        ({"by_key": {b"k": ["v", 9]}}, "Everything.by_key: Inner.color"),
        ({"choice": 1.5}, "Everything.choice"),
        ({"ratio": "1.0"}, "Everything.ratio: expected float"),
        ({"flag": 0}, "Everything.flag: expected bool"),
        ({"anything": cbor2.CBORTag(1000, 1)}, "tag"),
    ],
)
def test_generic_field_rejection(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(WireError) as info:
        decode(_everything_body(**changes), cluster_id=1)
    assert reason in str(info.value)


def test_post_init_errors_become_wire_errors() -> None:
    assert decode(encode(Checked(3), cluster_id=1), cluster_id=1).msg == Checked(3)
    frames = [_split(encode(Checked(3), cluster_id=1))[0], cbor2.dumps([11])]
    with pytest.raises(WireError, match="value must be at most 10"):
        decode(frames, cluster_id=1)


def test_map_keys_must_be_str_or_bytes_and_unique() -> None:
    dup = _everything_body()
    body = dup[1]
    # by_name with an int key, then with a duplicate key (cbor2 would keep the last one).
    with pytest.raises(WireError):
        decode(_everything_body(by_name={1: 1}), cluster_id=1)
    one = cbor2.dumps({"a": 1})
    assert one in body
    duplicated = body.replace(one, b"\xa2\x61a\x01\x61a\x02", 1)
    with pytest.raises(WireError, match="malformed CBOR"):
        decode([dup[0], duplicated], cluster_id=1)


def test_register_refuses_duplicates_and_unsupported_types() -> None:
    @dataclasses.dataclass(frozen=True)
    class Fresh:
        x: int

    @dataclasses.dataclass
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True)
    class BadField:
        x: set[int]

    @dataclasses.dataclass(frozen=True)
    class BadKey:
        x: dict[int, int]

    @dataclasses.dataclass(frozen=True)
    class FixedTuple:
        x: tuple[int, str]

    with pytest.raises(ValueError, match="already used by Everything"):
        register(65001, Fresh)
    with pytest.raises(ValueError, match="already registered"):
        register(65100, Everything)
    with pytest.raises(ValueError, match="type code"):
        register(0, Fresh)
    with pytest.raises(ValueError, match="type code"):
        register(1 << 16, Fresh)
    with pytest.raises(TypeError, match="frozen"):
        register(65101, Mutable)
    with pytest.raises(TypeError, match="not supported"):
        register(65102, BadField)
    with pytest.raises(TypeError, match="dict keys"):
        register(65103, BadKey)
    with pytest.raises(TypeError, match="not supported"):
        register(65105, FixedTuple)
    with pytest.raises(TypeError, match="dataclasses"):
        register(65104, int)
    with pytest.raises(KeyError):
        codec.type_code(Fresh)  # nothing half-registered


# --- routing ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("node_id", [1, 2, 255, 1 << 40, U64])
def test_routing_ids_round_trip(node_id: int) -> None:
    rid = node_routing_id(node_id)
    assert rid[:1] != b"\0"  # ZeroMQ reserves ids starting with a zero byte
    assert routing_id_node(rid) == node_id


@pytest.mark.parametrize(
    "rid", [b"", b"\x00\x6b\x8b\x45\x67", b"N" + bytes(8), b"X" + bytes(7) + b"\x01", b"N\x01"]
)
def test_routing_ids_that_are_not_nodes(rid: bytes) -> None:
    with pytest.raises(WireError, match="not a node id"):
        routing_id_node(rid)


@pytest.mark.parametrize("node_id", [0, -1, 1 << 64, True])
def test_invalid_node_ids(node_id: int) -> None:
    with pytest.raises(ValueError, match="node ids"):
        node_routing_id(node_id)
