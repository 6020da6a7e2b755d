"""Garbage-collector settings for a process that runs a node; ``trioraft run`` applies them.

CPython's cyclic collector stops the whole process while it scans. A node keeps many
long-lived tracked objects (the log since the last compaction, up to ``snapshot_entries`` of
them, the watch history, the session table) and allocates a few short-lived ones per
request, so with the default thresholds (700, 10, 10) it ran a full collection every few
seconds under write load, pausing the event loop for up to ~55 ms, and the young ones cost
more pauses of up to ~9 ms: these set the tail latency (docs/performance.md).

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
