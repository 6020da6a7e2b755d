"""A value that tasks can watch: the current value first, then every change.

Used for ``leader_change_notifier()``. A subscriber that is slower than the changes sees the
latest value, not every intermediate one (a notifier reports state, not a log of events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class WatchedValue(Generic[T]):
    def __init__(self, value: T) -> None:
        self._value = value
        self._changed = trio.Event()
        self._closed = False

    @property
    def value(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        """Set the value and wake every subscriber if it changed (never blocks)."""
        if value == self._value:
            return
        self._value = value
        self._changed.set()
        self._changed = trio.Event()

    def close(self) -> None:
        """End every subscription after it has seen the last value."""
        self._closed = True
        self._changed.set()

    async def subscribe(self) -> AsyncIterator[T]:
        """Yield the current value, then each new one; ends when the value is closed."""
        last: object = object()
        while True:
            changed = self._changed
            if self._value != last:
                last = self._value
                yield self._value
            if self._closed:
                return
            await changed.wait()
