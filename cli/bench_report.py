"""The results of ``trioraft bench compare`` as a markdown table and two plots.

Input: JSON lines from ``trioraft bench compare`` (``bench: trioraft``) and from the peer
anchors' ``etcd_bench.py`` and ``pysyncobj_bench.py`` (``bench: etcd`` / ``pysyncobj``);
other lines (etcd's final status, ``check perf``) are skipped. Measurements of one point
(repetitions, contended retries) are merged: medians, with the range of throughput.

The pure parts (``build_rows``, ``markdown_table``, ``plot_series``) need nothing beyond
the standard library; ``render_plots`` needs matplotlib (``pip install -e '.[perf]'``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUT_VALUE_SIZE = 64  # the plots show puts of this size


@dataclass(frozen=True, slots=True)
class Row:
    """One point of one system: the medians of its measurements."""

    system: str  # "trioraft", "etcd 3.4.23", "PySyncObj 0.3.17 file+nobatch"
    client: str  # the load generator
    workload: str  # "put", "get linearizable", "get lease", "get eventual", ...
    value_size: int
    conc: int
    durability: str
    n: int
    ops_per_s: float
    ops_min: float
    ops_max: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    errors: int
    server_cores: float | None
    client_cores: float | None
    foreign_cores: float | None

    @property
    def series(self) -> str:
        """The name of this row's line in the plots (the load generator without its count of
        processes, which the table shows)."""
        unsafe = ", no fsync" if self.durability.startswith("none") else ""
        return f"{self.system} ({self.client.split(',')[0]}{unsafe})"


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every JSON object of the files, in order (lines that are not JSON are skipped)."""
    records = []
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records


# the load generator of a trioraft record (``driver``; records before drivers: the client)
_DRIVERS = {"client": "trio client", "fast": "pyzmq fast driver", "c": "C driver"}


def describe(rec: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(system, client, workload, durability) of a measurement, or None for other lines."""
    if "ops_per_s" not in rec or rec.get("failed"):
        return None
    bench = rec.get("bench")
    if bench == "trioraft":
        workload = str(rec["op"]).replace("/", " ")
        procs = rec.get("procs", 1)
        driver = _DRIVERS.get(rec.get("driver", "client"), "trio client")
        client = f"{driver}, {procs} proc{'s' if procs != 1 else ''}"
        return "trioraft", client, workload, "fsync"
    if bench == "etcd":
        op = {"put": "put", "get": "get linearizable", "sget": "get serializable"}[rec["op"]]
        if rec.get("client") == "h2load":
            client = "h2load, C"
        else:
            client = f"etcd3 {rec.get('client', '')}, {rec.get('procs', 1)} procs".replace(
                "aio", "grpc.aio"
            )
        return f"etcd {rec.get('etcd_version', '')}".strip(), client, op, "fdatasync"
    if bench == "pysyncobj":
        system = f"PySyncObj {rec.get('pysyncobj_version', '')} {rec.get('config', '')}"
        durability = "none (no fsync)" if rec.get("journal") == "file" else "in memory"
        return " ".join(system.split()), "in the leader", "put", durability
    return None


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else None


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def build_rows(records: Iterable[dict[str, Any]]) -> list[Row]:
    """One row per (system, client, workload, value size, concurrency), in first-seen order."""
    groups: dict[tuple[str, str, str, str, int, int], list[dict[str, Any]]] = {}
    for rec in records:
        what = describe(rec)
        if what is None:
            continue
        system, client, workload, durability = what
        key = (system, client, workload, durability, int(rec["value_size"]), int(rec["conc"]))
        groups.setdefault(key, []).append(rec)
    rows = []
    for (system, client, workload, durability, size, conc), recs in groups.items():
        ops = [float(r["ops_per_s"]) for r in recs]

        def med(field: str, recs: list[dict[str, Any]] = recs) -> float | None:
            return _median([r.get(field) for r in recs])

        rows.append(
            Row(
                system=system,
                client=client,
                workload=workload,
                value_size=size,
                conc=conc,
                durability=durability,
                n=len(recs),
                ops_per_s=statistics.median(ops),
                ops_min=min(ops),
                ops_max=max(ops),
                p50_ms=_nan(med("p50_ms")),
                p90_ms=_nan(med("p90_ms")),
                p99_ms=_nan(med("p99_ms")),
                p999_ms=_nan(med("p999_ms")),
                errors=sum(int(r.get("errors") or 0) for r in recs),
                server_cores=med("server_cores"),
                client_cores=med("client_cores"),
                foreign_cores=med("foreign_cores"),
            )
        )
    return rows


def _ms(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.2f}"


def _cores(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown_table(rows: Sequence[Row]) -> str:
    """The table for docs/performance.md: one line per row, ordered by workload first."""
    order = sorted(
        rows, key=lambda r: (r.workload != "put", r.workload, r.value_size, r.conc, r.system)
    )
    head = (
        "| workload | value B | clients | system | load generator | durable | ops/s "
        "| p50 ms | p90 ms | p99 ms | p99.9 ms | errors | server cores | load cores "
        "| other cores | n |"
    )
    lines = [head, "|" + "---|" * 16]
    for r in order:
        ops = f"{r.ops_per_s:,.0f}"
        if r.n > 1:
            ops += f" [{r.ops_min:,.0f}\u2013{r.ops_max:,.0f}]"  # en dash
        lines.append(
            f"| {r.workload} | {r.value_size} | {r.conc} | {r.system} | {r.client} "
            f"| {r.durability} | {ops} | {_ms(r.p50_ms)} | {_ms(r.p90_ms)} | {_ms(r.p99_ms)} "
            f"| {_ms(r.p999_ms)} | {r.errors} | {_cores(r.server_cores)} "
            f"| {_cores(r.client_cores)} | {_cores(r.foreign_cores)} | {r.n} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class PlotSeries:
    """Puts: a line per system over the client counts. Reads: a bar per (system, level)."""

    puts: dict[str, list[tuple[int, float, float, float]]]  # series -> (conc, ops, p50, p99)
    reads: list[tuple[str, float, float, float]]  # (label, ops, p50, p99)
    read_conc: int | None


def plot_series(rows: Sequence[Row]) -> PlotSeries:
    """What the plots show: 64-byte puts by concurrency; gets at the most common concurrency."""
    puts: dict[str, list[tuple[int, float, float, float]]] = {}
    for r in rows:
        if r.workload == "put" and r.value_size == PUT_VALUE_SIZE:
            puts.setdefault(r.series, []).append((r.conc, r.ops_per_s, r.p50_ms, r.p99_ms))
    for points in puts.values():
        points.sort()
    gets = [r for r in rows if r.workload.startswith("get")]
    read_conc = None
    reads = []
    if gets:
        concs = [r.conc for r in gets]
        read_conc = max(set(concs), key=lambda c: (concs.count(c), c))
        for r in gets:
            if r.conc == read_conc:
                label = f"{r.system.split()[0]} {r.workload.removeprefix('get ')}"
                if r.system.startswith("etcd"):
                    label += f" ({r.client.split(',')[0]})"
                reads.append((label, r.ops_per_s, r.p50_ms, r.p99_ms))
    return PlotSeries(puts, reads, read_conc)


def render_plots(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """throughput.png and latency.png in ``out_dir`` (needs matplotlib)."""
    # an optional extra: without it, mypy finds no module (hence the ignores)
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    data = plot_series(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in ("throughput", "latency"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=[3, 2])
        for series, points in data.puts.items():
            xs = [p[0] for p in points]
            if kind == "throughput":
                left.plot(xs, [p[1] for p in points], marker="o", label=series)
            else:
                (line,) = left.plot(xs, [p[2] for p in points], marker="o", label=f"{series} p50")
                left.plot(
                    xs,
                    [p[3] for p in points],
                    marker="x",
                    linestyle="--",
                    color=line.get_color(),
                    label=f"{series} p99",
                )
        left.set_xscale("log", base=2)
        ticks = sorted({p[0] for points in data.puts.values() for p in points})
        left.set_xticks(ticks, [str(t) for t in ticks])
        left.minorticks_off()
        left.set_xlabel("clients (requests in flight)")
        if kind == "throughput":
            left.set_ylabel("ops/s")
            left.set_title(f"put {PUT_VALUE_SIZE} B: throughput")
        else:
            left.set_yscale("log")
            left.set_ylabel("latency ms (log)")
            left.set_title(f"put {PUT_VALUE_SIZE} B: latency p50 (solid), p99 (dashed)")
        left.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=7)
        labels = [r[0] for r in data.reads]
        ys = range(len(labels))
        if kind == "throughput":
            right.barh(list(ys), [r[1] for r in data.reads])
            right.set_xlabel("ops/s")
        else:
            right.barh([y - 0.2 for y in ys], [r[2] for r in data.reads], height=0.4, label="p50")
            right.barh([y + 0.2 for y in ys], [r[3] for r in data.reads], height=0.4, label="p99")
            right.set_xlabel("latency ms")
            right.legend(fontsize=7)
        right.set_yticks(list(ys), labels, fontsize=7)
        right.set_title(f"get {PUT_VALUE_SIZE} B at {data.read_conc} clients")
        right.grid(True, axis="x", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(records: Sequence[dict[str, Any]], out_dir: Path, stem: str) -> str:
    """Write ``<stem>.md`` (the table) and the plots into ``out_dir``; return the table with
    a line per file written."""
    rows = build_rows(records)
    table = markdown_table(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    md.write_text(table)
    notes = [f"table: {md}"]
    try:
        notes += [f"plot: {p}" for p in render_plots(rows, out_dir)]
    except ImportError:
        notes.append("plots skipped: matplotlib is missing (pip install -e '.[perf]')")
    return table + "\n" + "\n".join(notes)
