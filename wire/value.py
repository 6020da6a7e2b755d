"""``@value``: an immutable record type that is cheap to build.

Messages, log entries, commands, replies and watch events are built several times per write
on every node. ``@dataclass(frozen=True)`` makes each of them pay for its immutability at
run time: its ``__init__`` sets every field through ``object.__setattr__``, ~600 ns for a
five-field record against ~160 ns for a plain slotted dataclass (CPython 3.11 on the 2-core
box; with it the state machine applies an entry ~22% faster, docs/performance.md).

A ``@value`` class is frozen where it matters, for the type checker: ``dataclass_transform``
with ``frozen_default`` makes mypy reject every assignment to a field. At run time it is a
slotted dataclass with the equality and hash a frozen one would have; what it gives up is
the run-time ``FrozenInstanceError``, which no caller relies on. ``is_value`` tells such a
class apart, so the wire codec can keep refusing mutable dataclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Final, TypeVar, dataclass_transform

T = TypeVar("T")

_MARK: Final = "__value_type__"


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def value(cls: type[T]) -> type[T]:
    """The class as a slotted dataclass, hashable, immutable to the type checker."""
    made = dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
    setattr(made, _MARK, True)
    return made


def is_value(cls: type) -> bool:
    """Whether ``cls`` is immutable: made by ``value``, or a frozen dataclass."""
    if not dataclasses.is_dataclass(cls):
        return False
    return _MARK in cls.__dict__ or bool(cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]
