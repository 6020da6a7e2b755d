"""``tune_gc``: the survivors of start-up are frozen and the thresholds raised."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import trioraft
from trioraft.gc_policy import THRESHOLDS


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_survivors_and_raises_thresholds() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    trioraft.tune_gc()
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700  # CPython's default: larger, rarer young collections
    assert gc.get_freeze_count() > 0
    # still collected: a cycle made after the call is freed by a collection
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
