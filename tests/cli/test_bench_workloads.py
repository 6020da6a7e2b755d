"""``trioraft bench`` workloads against a real node: exact counts, not timings.

Every run goes through the command line (``python -m cli bench ... --json``) with two load
processes, so the split of ``--ops`` over processes and the ready/go protocol are covered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from cli.bench_workloads import counter_of, fill
from harness.cluster import ProcessCluster, process_cluster
from trioraft.client import open_client

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("bench"), size=1) as c:
        yield c


def bench(cluster: ProcessCluster, *args: str) -> dict[str, Any]:
    endpoint = cluster.endpoints[0]
    result = subprocess.run(
        [sys.executable, "-m", "cli", "bench", *args, "--endpoints", endpoint, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["errors"] == 0, summary["error_kinds"]
    return summary


def read(cluster: ProcessCluster, keys: list[bytes]) -> list[bytes | None]:
    async def go() -> list[bytes | None]:
        async with open_client(cluster.endpoints) as client:
            return [await client.get(k) for k in keys]

    return trio.run(go)


@pytest.mark.parametrize(
    ("ops", "clients"), [(301, 8), (1, 8), (3, 1)]
)  # the second process gets no operation, then no client
def test_put_makes_exactly_the_ops_asked(cluster: ProcessCluster, ops: int, clients: int) -> None:
    summary = bench(
        cluster, "put", "--ops", str(ops), "--clients", str(clients), "--procs", "2"
    )  # fmt: skip
    assert summary["workload"] == "put"
    assert summary["ops"] == ops
    assert summary["procs"] == 2
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["p999_ms"]


@pytest.mark.parametrize("level", ["linearizable", "lease", "eventual"])
def test_get_at_each_consistency_finds_the_prepared_keys(
    cluster: ProcessCluster, level: str
) -> None:
    summary = bench(
        cluster, "get", "--consistency", level, "--ops", "200", "--key-space", "50",
        "--clients", "8", "--procs", "2",
    )  # fmt: skip
    assert summary["workload"] == f"get/{level}"
    assert summary["ops"] == 200
    assert summary["extra"].get("misses", 0) == 0


def test_scan_reads_full_pages(cluster: ProcessCluster) -> None:
    summary = bench(
        cluster, "scan", "--ops", "60", "--scan-keys", "20", "--key-space", "100",
        "--clients", "4", "--procs", "2",
    )  # fmt: skip
    assert summary["workload"] == "scan/linearizable"
    assert summary["ops"] == 60
    assert summary["extra"]["keys"] == 60 * 20


def test_txn_compares_then_puts(cluster: ProcessCluster) -> None:
    summary = bench(
        cluster, "txn", "--ops", "200", "--key-space", "10", "--value-size", "32",
        "--clients", "8", "--procs", "2", "--warmup", "0.3",
    )  # fmt: skip
    assert summary["ops"] == 200
    assert summary["extra"] == {"succeeded": 200}
    keys = [f"bench/{i:08d}".encode() for i in range(10)]
    assert read(cluster, keys) == [fill(32)] * 10


@pytest.mark.parametrize("limit", [["--ops", "300"], ["--duration", "1"]])
def test_cas_swaps_sum_to_the_counters(cluster: ProcessCluster, limit: list[str]) -> None:
    # 8 clients on 3 counters conflict; each swap adds one to one counter, exactly once
    summary = bench(
        cluster, "cas", *limit, "--key-space", "3", "--clients", "8", "--procs", "2",
    )  # fmt: skip
    extra = summary["extra"]
    assert extra["swapped"] + extra.get("conflicts", 0) == summary["ops"]
    if limit[0] == "--ops":
        assert summary["ops"] == 300
    values = read(cluster, [f"bench/{i:08d}".encode() for i in range(3)])
    assert sum(counter_of(v) for v in values if v is not None) == extra["swapped"]


def test_watch_delivers_every_put_to_every_watcher(cluster: ProcessCluster) -> None:
    summary = bench(
        cluster, "watch", "--ops", "200", "--watchers", "4", "--clients", "4",
        "--procs", "2", "--warmup", "0.3",
    )  # fmt: skip
    extra = summary["extra"]
    assert extra["puts"] == 200
    assert extra["watchers"] == 4
    assert summary["ops"] == extra["expected_events"] == 200 * 4
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
