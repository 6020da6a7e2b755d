"""``trioraft bench compare`` without servers: the table and plot data built from JSON lines,
the plots (when matplotlib is installed), the matrices, and the shim that runs a peer
script on our matrix."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cli.bench_compare import MATRICES, CompareOptions
from cli.bench_report import build_rows, load_records, markdown_table, plot_series, write_report


def trioraft(op: str, conc: int, ops: float, p50: float, **kw: Any) -> dict[str, Any]:
    rec = {"bench": "trioraft", "op": op, "conc": conc, "procs": 2, "value_size": 64}
    rec.update(ops_per_s=ops, p50_ms=p50, p90_ms=p50 * 2, p99_ms=p50 * 3, p999_ms=p50 * 4)
    rec.update(errors=0, server_cores=1.0, client_cores=0.5, foreign_cores=0.1, **kw)
    return rec


RECORDS: list[dict[str, Any]] = [
    trioraft("put", 1, 300.0, 3.0, procs=1),
    trioraft("put", 64, 4000.0, 16.0, rep=1),
    trioraft("put", 64, 5000.0, 14.0, rep=2),
    trioraft("get/lease", 64, 9000.0, 6.0, driver="c", procs=1),
    {"bench": "trioraft", "op": "put", "conc": 16, "value_size": 64, "failed": "Timeout: x"},
    {
        "bench": "etcd", "op": "put", "conc": 64, "client": "h2load", "procs": 1,
        "value_size": 64, "ops_per_s": 9715.0, "p50_ms": 5.88, "p90_ms": 9.0, "p99_ms": 15.1,
        "errors": 0, "etcd_version": "3.4.23", "server_cores": 1.52, "client_cores": 0.18,
        "foreign_cores": 0.18,
    },
    {
        "bench": "etcd", "op": "sget", "conc": 64, "client": "h2load", "procs": 1,
        "value_size": 64, "ops_per_s": 14444.0, "p50_ms": 3.48, "p90_ms": 6.0, "p99_ms": 14.6,
        "errors": 0, "etcd_version": "3.4.23",
    },
    {"bench": "etcd_final_status", "rep": 1, "status": []},
    {
        "bench": "pysyncobj", "config": "file+nobatch", "journal": "file", "conc": 64,
        "value_size": 64, "ops_per_s": 3587.0, "p50_ms": 17.2, "p90_ms": 30.0, "p99_ms": 38.5,
        "errors": 0, "pysyncobj_version": "0.3.17", "foreign_cores": 0.4,
    },
]  # fmt: skip


def test_rows_merge_repetitions_and_skip_other_lines() -> None:
    rows = build_rows(RECORDS)
    assert len(rows) == 6  # the failed point and etcd's status line are not measurements
    put64 = next(r for r in rows if r.system == "trioraft" and r.conc == 64)
    assert (put64.n, put64.ops_per_s, put64.ops_min, put64.ops_max) == (2, 4500, 4000, 5000)
    assert put64.p50_ms == 15.0
    assert put64.client == "trio client, 2 procs"  # a record from before drivers
    lease = next(r for r in rows if r.system == "trioraft" and r.workload == "get lease")
    assert lease.client == "C driver, 1 proc"
    etcd = next(r for r in rows if r.system == "etcd 3.4.23" and r.workload == "put")
    assert (etcd.client, etcd.durability, etcd.server_cores) == ("h2load, C", "fdatasync", 1.52)
    sync = next(r for r in rows if r.system.startswith("PySyncObj"))
    assert sync.system == "PySyncObj 0.3.17 file+nobatch"
    assert sync.durability == "none (no fsync)"
    assert sync.series == "PySyncObj 0.3.17 file+nobatch (in the leader, no fsync)"


def test_markdown_table_lists_puts_first() -> None:
    lines = markdown_table(build_rows(RECORDS)).splitlines()
    assert lines[0].startswith("| workload | value B | clients | system |")
    assert len(lines) == 2 + 6
    assert all(line.count("|") == 17 for line in lines)
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "put", "put", "put", "put", "get lease", "get serializable",
    ]  # fmt: skip
    assert "| 4,500 [4,000\u20135,000] | 15.00 |" in lines[5]
    assert (
        "| fdatasync | 9,715 | 5.88 | 9.00 | 15.10 |  | 0 | 1.52 | 0.18 | 0.18 | 1 |" in (lines[4])
    )


def test_plot_series_puts_by_clients_and_reads_at_their_concurrency() -> None:
    data = plot_series(build_rows(RECORDS))
    assert data.puts["trioraft (trio client)"] == [(1, 300.0, 3.0, 9.0), (64, 4500.0, 15.0, 45.0)]
    assert data.puts["etcd 3.4.23 (h2load)"] == [(64, 9715.0, 5.88, 15.1)]
    assert data.read_conc == 64
    assert [r[0] for r in data.reads] == ["trioraft lease", "etcd serializable (h2load)"]


def test_report_from_jsonl_writes_the_table_and_plots(tmp_path: Path) -> None:
    jsonl = tmp_path / "results-x.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\nnot json\n")
    records = load_records([jsonl])
    assert len(records) == len(RECORDS)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plots = False
    else:
        plots = True
    text = write_report(records, tmp_path / "out", jsonl.stem)
    table = (tmp_path / "out" / "results-x.md").read_text()
    assert text.startswith(table)
    for name in ("throughput.png", "latency.png"):
        path = tmp_path / "out" / name
        if plots:
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert not path.exists()
            assert "matplotlib is missing" in text


def test_quick_matrix_fits_in_fifteen_minutes() -> None:
    quick = MATRICES["quick"]
    # a point costs its warm-up and duration plus ~5 s (key space, processes, quiet wait)
    assert quick.points() * (quick.duration + quick.warmup + 5) < 15 * 60
    assert {(p.workload, p.consistency) for p in quick.trioraft} >= {
        ("put", "linearizable"), ("get", "linearizable"), ("get", "lease"), ("get", "eventual"),
    }  # fmt: skip
    assert sorted(p.clients for p in quick.trioraft if p.workload == "put") == [1, 16, 64, 256]


def test_points_take_the_connection_shape_of_etcds_load_generator() -> None:
    # h2load runs min(clients, 64) connections, clients/64 streams each beyond 64 clients
    shapes = {(p.clients, p.connections) for p in MATRICES["full"].trioraft}
    assert {(1, 1), (16, 16), (64, 64), (256, 64)} <= shapes


@pytest.mark.parametrize("script", ["etcd_bench", "pysyncobj_bench"])
def test_the_shim_runs_a_peer_script_on_our_matrix(tmp_path: Path, script: str) -> None:
    # a stand-in for the peer script: records the matrix and options it was given
    (tmp_path / f"{script}.py").write_text(
        "import json, sys\n"
        "MATRICES = {'full': []}\n"
        "def main():\n"
        "    assert sys.argv[1:3] == ['--matrix', 'trioraft-compare']\n"
        "    out = sys.argv[sys.argv.index('--out') + 1]\n"
        "    with open(out, 'a') as f:\n"
        "        f.write(json.dumps({'matrix': MATRICES['trioraft-compare'],\n"
        "                            'argv': sys.argv[3:]}) + '\\n')\n"
    )
    smoke = MATRICES["smoke"]
    matrix: list[Any] = smoke.etcd if script == "etcd_bench" else smoke.pysyncobj
    opts = CompareOptions.make(smoke, duration=2, peers_dir=tmp_path)
    run = opts.peer_run()
    assert run.peers_dir == tmp_path
    run = replace(run, python=Path(sys.executable))
    out = tmp_path / "out.jsonl"
    subprocess.run(run.command(script, matrix, out), cwd=tmp_path, check=True)
    got = json.loads(out.read_text())
    assert got["argv"][got["argv"].index("--duration") + 1] == "2"
    if script == "etcd_bench":
        assert [tuple(p) for p in got["matrix"]] == matrix
    else:
        name, journal, batch, runs = got["matrix"][0]
        assert (name, journal, batch, [tuple(r) for r in runs]) == matrix[0]
