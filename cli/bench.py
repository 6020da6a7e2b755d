"""``trioraft bench put``: a closed-loop write load against a cluster, with latency figures."""

from __future__ import annotations

import os
import time

import trio

from trioraft.client import open_client


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil
    return sorted_values[int(rank) - 1]


async def bench_put(
    endpoints: str | None, clients: int, ops: int, value_size: int, key_space: int
) -> str:
    value = os.urandom(value_size // 2 + 1).hex()[:value_size].encode()
    latencies: list[float] = []
    next_op = 0

    async with open_client(endpoints, timeout=30) as client:
        await client.wait_leader(timeout=30)

        async def worker() -> None:
            nonlocal next_op
            while next_op < ops:
                i = next_op
                next_op += 1
                t0 = time.perf_counter()
                await client.put(f"bench/{i % key_space:08d}".encode(), value)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - start

    latencies.sort()
    ms = [percentile(latencies, q) * 1000 for q in (50, 90, 99, 99.9)]
    return (
        f"put: {len(latencies)} ops, {clients} clients, {value_size} B values in {elapsed:.2f} s: "
        f"{len(latencies) / elapsed:,.0f} ops/s; latency ms p50 {ms[0]:.2f} p90 {ms[1]:.2f} "
        f"p99 {ms[2]:.2f} p99.9 {ms[3]:.2f}"
    )
