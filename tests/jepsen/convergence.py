"""After healing: a leader that accepts writes, every node at one applied index, one state.

``wait_converged`` (online, bounded): a leader, a probe write that succeeds, then every node's
``status().applied`` equal and at least the probe's revision. ``compare_state`` (online):
eventual reads of every key the workloads wrote, from each node, must agree. The checks of
the stopped nodes' data dirs are in ``jepsen.offline``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import trio

from jepsen.checkers import Check
from trioraft.client import Client
from trioraft.errors import TrioraftError
from wire import client_messages as cm

PROBE_KEY = b"jepsen/probe"


async def wait_converged(admin: Client, bound: float, probe_value: bytes) -> Check:
    start = trio.current_time()
    timings: dict[str, float] = {}
    last: dict[str, object] = {}
    revision = 0
    with trio.move_on_after(bound) as scope:
        while True:
            try:
                await admin.wait_leader(timeout=2)
                break
            except (TrioraftError, trio.TooSlowError):
                pass
        timings["leader_s"] = trio.current_time() - start
        while True:
            try:
                revision = await admin.put(PROBE_KEY, probe_value, timeout=5)
                break
            except TrioraftError:
                await trio.sleep(0.2)
        timings["write_s"] = trio.current_time() - start
        while True:
            statuses = await admin.cluster_status(timeout=1)
            last = {ep: getattr(st, "applied", repr(st)) for ep, st in statuses.items()}
            applied = {st.applied for st in statuses.values() if isinstance(st, cm.StatusReply)}
            if len(applied) == 1 and len(statuses) == len(admin.endpoints):
                if min(applied) >= revision:
                    break
            await trio.sleep(0.1)
        timings["applied_s"] = trio.current_time() - start
    details = {"timings": timings, "applied": last, "probe_revision": revision}
    if scope.cancelled_caught:
        stage = ["leader", "accepted write", "equal applied index"][len(timings)]
        return Check(
            "convergence",
            False,
            f"convergence: False (no {stage} within {bound:g} s of healing; "
            f"applied by endpoint: {last})",
            details,
        )
    return Check(
        "convergence",
        True,
        f"convergence: True (leader after {timings['leader_s']:.1f} s, write accepted after "
        f"{timings['write_s']:.1f} s, every node at applied index "
        f"{min(v for v in last.values() if isinstance(v, int))} after "
        f"{timings['applied_s']:.1f} s)",
        details,
    )


async def compare_state(admin: Client, keys: Sequence[str], bound: float) -> Check:
    """Every node's own (eventual) value of every key, compared across nodes."""
    deadline = trio.current_time() + bound
    views: dict[str, dict[str, str | None]] = {ep: {} for ep in admin.endpoints}
    unread: list[tuple[str, str]] = []

    async def read_node(endpoint: str) -> None:
        todo = iter(keys)

        async def reader() -> None:
            for key in todo:
                while True:
                    try:
                        got = await admin.get(
                            key.encode(), consistency="eventual", endpoint=endpoint, timeout=2
                        )
                        views[endpoint][key] = None if got is None else got.decode(errors="replace")
                        break
                    except TrioraftError:
                        if trio.current_time() > deadline:
                            unread.append((endpoint, key))
                            break
                        await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(reader)

    async with trio.open_nursery() as nursery:
        for endpoint in admin.endpoints:
            nursery.start_soon(read_node, endpoint)
    digests = {ep: _digest(sorted(v.items())) for ep, v in views.items()}
    if unread:
        return Check("state", "unknown", f"state: unknown ({len(unread)} reads failed)")
    if len(set(digests.values())) != 1:
        first, *rest = admin.endpoints
        diff = [
            (k, {ep: views[ep].get(k) for ep in admin.endpoints})
            for k in keys
            if any(views[ep].get(k) != views[first].get(k) for ep in rest)
        ]
        return Check(
            "state",
            False,
            f"state: False (nodes differ on {len(diff)} of {len(keys)} keys: {diff[:5]})",
            {"digests": digests},
        )
    return Check("state", True, f"state: True ({len(keys)} keys equal on every node)")


def _digest(pairs: Sequence[tuple[object, object]]) -> str:
    h = hashlib.sha256()
    for k, v in pairs:
        h.update(repr((k, v)).encode())
    return h.hexdigest()
