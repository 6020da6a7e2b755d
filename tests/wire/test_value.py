"""``@value`` classes behave as frozen dataclasses do, except for the run-time assignment
guard (the type checker is that guard: mypy --strict rejects assignment to their fields)."""

from __future__ import annotations

import dataclasses

import pytest

from wire import codec
from wire.client_messages import Event, EventType, KeyValue
from wire.messages import Entry, EntryKind
from wire.value import is_value, value


@value
class Point:
    x: int
    y: bytes = b""
    tags: tuple[str, ...] = dataclasses.field(default=())


def test_a_value_compares_and_hashes_by_its_fields() -> None:
    assert Point(1, b"a") == Point(1, b"a")
    assert Point(1, b"a") != Point(2, b"a")
    assert hash(Point(1, b"a", ("t",))) == hash(Point(1, b"a", ("t",)))
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert Point(3).tags == ()


def test_a_value_is_slotted() -> None:
    with pytest.raises(AttributeError):
        Point(1).z = 2  # type: ignore[attr-defined]
    assert not hasattr(Point(1), "__dict__")


def test_the_shared_types_are_values() -> None:
    for cls in (Entry, KeyValue, Event):
        assert is_value(cls)
    kv = KeyValue(b"k", b"v", 1, 2, 3)
    assert Event(EventType.PUT, kv) == Event(EventType.PUT, KeyValue(b"k", b"v", 1, 2, 3))
    entry = Entry(1, 2, EntryKind.NORMAL, b"x")
    assert {entry: 1}[Entry(1, 2, EntryKind.NORMAL, b"x")] == 1


def test_is_value_accepts_frozen_dataclasses_and_refuses_mutable_ones() -> None:
    @dataclasses.dataclass(frozen=True)
    class Frozen:
        x: int

    @dataclasses.dataclass
    class Mutable:
        x: int

    assert is_value(Point) and is_value(Frozen)
    assert not is_value(Mutable) and not is_value(int)


def test_a_value_class_goes_on_the_wire() -> None:
    codec.register(65_300, Point)
    frames = codec.encode(Point(7, b"z", ("a", "b")), cluster_id=1, request_id=9)
    decoded = codec.decode(frames, cluster_id=1)
    assert decoded.msg == Point(7, b"z", ("a", "b")) and decoded.request_id == 9
