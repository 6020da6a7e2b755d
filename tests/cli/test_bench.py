"""The load generator: histogram arithmetic, and a short real run against one node."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cli.bench import bucket_ms, bucket_of, percentile
from harness.cluster import process_cluster

REPO = Path(__file__).resolve().parents[2]


def test_buckets_are_two_percent_wide() -> None:
    for seconds in (0.0001, 0.001, 0.0123, 0.5, 3.0):
        mid = bucket_ms(bucket_of(seconds))
        assert abs(mid - seconds * 1000) / (seconds * 1000) < 0.03


def test_percentiles_of_a_histogram() -> None:
    hist: Counter[int] = Counter()
    for ms in range(1, 101):  # 1..100 ms, one each
        hist[bucket_of(ms / 1000)] += 1
    assert percentile(hist, 50) == pytest.approx(50, rel=0.03)
    assert percentile(hist, 99) == pytest.approx(99, rel=0.03)
    assert percentile(hist, 100) == pytest.approx(100, rel=0.03)
    assert percentile(Counter(), 50) != percentile(Counter(), 50)  # nan when empty


@pytest.mark.integration
def test_bench_put_and_get_report_json(tmp_path: Path) -> None:
    with process_cluster(tmp_path, size=1) as cluster:
        for args in (["put", "--ops", "300"], ["get", "--ops", "300", "--key-space", "20"]):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "bench",
                    *args,
                    "--clients",
                    "8",
                    "--procs",
                    "2",
                    "--endpoints",
                    cluster.endpoints[0],
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=REPO,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            summary = json.loads(result.stdout)
            assert summary["ops"] >= 300
            assert summary["errors"] == 0
            assert summary["procs"] == 2
            assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["p999_ms"]
