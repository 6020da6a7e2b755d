"""Counting calls, for tests that hold an operation to a bounded amount of work without
timing it: ``calls(fn)`` counts Python function calls, ``calls(fn, "c_call")`` calls into
C (``dict.get``, ``bytes.startswith``, ...) made while ``fn`` runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType


def calls(fn: Callable[[], object], event: str = "call") -> int:
    count = 0

    def profile(frame: FrameType, what: str, arg: object) -> None:
        nonlocal count
        if what == event:
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count
