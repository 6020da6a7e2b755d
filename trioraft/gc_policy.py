"""Garbage-collector settings for a process that runs a node; ``trioraft run`` applies them.

CPython's cyclic collector stops the whole process while it scans. A node's largest
long-lived state, the applied log (up to ``snapshot_entries`` entries) and the watch
history, is kept as ``bytes``, which the collector never tracks (``trioraft.core.log``,
``trioraft.node.watch``): under write load a node then leaves no tracked object alive per
write, and its collections are rare. Before that, a node paused for full collections of
up to ~55 ms every few seconds with the default thresholds (700, 10, 10), and with the
thresholds below for young and middle ones of 5-80 ms; those pauses set the tail latency
(docs/performance.md).

``tune_gc`` does what large Python services do: it freezes what start-up left alive
(modules, classes, the loaded log: never garbage, now never scanned again), and raises the
thresholds so that fewer, larger young collections run and full ones rarely do. Cycles
are still collected; memory stays bounded (the RSS figures in docs/performance.md were
taken with these settings). It changes process-wide state, so the library never calls it
by itself: a program that embeds a node decides, and may call it once its node started.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 20, 20)  # generation 0 allocations; collections of 0, then of 1


def tune_gc() -> None:
    """Collect once, freeze the survivors and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
