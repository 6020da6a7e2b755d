"""Property tests of wire.codec (skipped when hypothesis is not installed)."""

from __future__ import annotations

import struct

import cbor2
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from wire import codec  # noqa: E402
from wire.codec import HEADER_SIZE, PROTOCOL_VERSION, decode, encode  # noqa: E402
from wire.errors import WireError  # noqa: E402
from wire.messages import (  # noqa: E402
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

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
small = st.integers(min_value=0, max_value=1000)
ints = st.one_of(small, u64)
entries = st.lists(
    st.builds(Entry, ints, ints, st.sampled_from(EntryKind), st.binary(max_size=64)), max_size=20
).map(tuple)

raft_messages = st.one_of(
    st.builds(RequestVote, ints, ints, ints, ints, ints, st.booleans(), st.booleans()),
    st.builds(RequestVoteResponse, ints, ints, ints, st.booleans(), st.booleans()),
    st.builds(AppendEntries, ints, ints, ints, ints, ints, entries, ints),
    st.builds(AppendEntriesResponse, ints, ints, ints, st.booleans(), ints, ints, ints),
    st.builds(Heartbeat, ints, ints, ints, ints, ints),
    st.builds(HeartbeatResponse, ints, ints, ints, ints),
    st.builds(TimeoutNow, ints, ints, ints),
)


@given(msg=raft_messages, cluster=u64, request=u64)
def test_round_trip(msg: object, cluster: int, request: int) -> None:
    decoded = decode(encode(msg, cluster_id=cluster, request_id=request), cluster_id=cluster)
    assert (decoded.msg, decoded.request_id, decoded.cluster_id) == (msg, request, cluster)


codes = st.sampled_from([codec.type_code(cls) for cls in RAFT_MESSAGE_TYPES])


def _header(code: int) -> bytes:
    return struct.pack(">BBHQQ", PROTOCOL_VERSION, 0, code, 1, 0)


def _decode_or_wire_error(frames: list[bytes]) -> None:
    try:
        decoded = decode(frames, cluster_id=1)
    except WireError:
        return
    assert type(decoded.msg) in RAFT_MESSAGE_TYPES


@settings(max_examples=300)
@given(code=codes, body=st.binary(max_size=200))
def test_random_bodies_decode_or_raise_wire_error(code: int, body: bytes) -> None:
    _decode_or_wire_error([_header(code), body])


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats()
    | st.binary(max_size=8)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(code=codes, value=st.lists(cbor_values, max_size=8))
def test_random_arrays_decode_or_raise_wire_error(code: int, value: list[object]) -> None:
    _decode_or_wire_error([_header(code), cbor2.dumps(value)])


@settings(max_examples=300)
@given(msg=raft_messages, data=st.data())
def test_corrupted_messages_decode_or_raise_wire_error(msg: object, data: st.DataObject) -> None:
    (whole,) = encode(msg, cluster_id=1)
    header, body = whole[:HEADER_SIZE], whole[HEADER_SIZE:]
    frame = bytearray(data.draw(st.sampled_from([header, body])))
    if frame:
        for _ in range(data.draw(st.integers(1, 4))):
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    frames = [bytes(frame[:cut]), body] if data.draw(st.booleans()) else [header, bytes(frame)]
    if data.draw(st.booleans()):
        frames = [frames[0] + frames[1]]  # one frame, as encode sends them
    _decode_or_wire_error(frames)
