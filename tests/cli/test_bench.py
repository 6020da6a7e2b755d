"""The load generator: histogram arithmetic, the session warning, and a short real run
against one node."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.bench import bucket_ms, bucket_of, percentile
from cli.bench_cli import session_note
from cli.main import app
from harness.cluster import process_cluster
from trioraft.config import NodeConfig

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


def test_more_session_clients_than_a_node_keeps_are_warned_about() -> None:
    keep = NodeConfig().max_sessions  # what a node keeps unless configured
    note = session_note("put", keep + 1, sessions=True)
    assert note is not None
    assert f"max_sessions {keep:,}" in note and "--no-sessions" in note
    assert session_note("put", keep, sessions=True) is None  # they all fit
    assert session_note("put", keep + 1, sessions=False) is None  # no sessions
    assert session_note("get", keep + 1, sessions=True) is None  # reads register none


def test_the_bench_command_prints_the_session_warning_before_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cli.bench

    def no_run(*_args: object, **_kwargs: object) -> None:
        raise SystemExit(7)  # stop before any connection is made

    monkeypatch.setattr(cli.bench, "run_bench", no_run)
    result = CliRunner().invoke(
        app,
        ["bench", "put", "--clients", "10001", "--endpoints", "tcp://127.0.0.1:9", "--json"],
    )
    assert result.exit_code == 7
    assert "10,001 clients register 10,001 sessions" in result.stderr
    result = CliRunner().invoke(
        app, ["bench", "put", "--clients", "10001", "--no-sessions", "--endpoints", "x"]
    )
    assert result.exit_code == 7
    assert "sessions" not in result.stderr
