"""``trioraft bench put|get|scan|txn|cas|watch|compare|report`` (see cli/bench.py,
cli/bench_workloads.py, cli/bench_fast.py, cli/bench_compare.py and docs/performance.md)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

CONSISTENCIES = ("linearizable", "lease", "eventual")
bench_app = typer.Typer(
    help="Load generators, and a same-run comparison with etcd and PySyncObj. put and get "
    "run on the fast driver (synchronous ZeroMQ, light on CPU) unless --driver c (a C "
    "program, lighter still) or --driver client; the other workloads run on the trio client "
    "library.",
    no_args_is_help=True,
)

EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        envvar="TRIORAFT_ENDPOINTS",
        help="Client endpoints, comma-separated (default: $TRIORAFT_ENDPOINTS).",
    ),
]
ClientsOpt = Annotated[int, typer.Option(help="Concurrent requests in flight.", min=1)]
ConnectionsOpt = Annotated[
    int | None, typer.Option(help="Client connections (default: one per client).", min=1)
]
ProcsOpt = Annotated[int, typer.Option(help="Load processes.", min=1)]
OpsOpt = Annotated[int, typer.Option(help="Total operations (ignored with --duration).", min=1)]
DurationOpt = Annotated[float, typer.Option(help="Seconds to measure instead of --ops.")]
WarmupOpt = Annotated[float, typer.Option(help="Seconds of load before measuring.")]
ValueSizeOpt = Annotated[int, typer.Option(help="Value size in bytes.", min=0)]
KeySpaceOpt = Annotated[int, typer.Option(help="Distinct keys, chosen uniformly.", min=1)]
ConsistencyOpt = Annotated[str, typer.Option(help="linearizable, lease or eventual.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary.")]
DriverOpt = Annotated[
    str | None,
    typer.Option(
        help="Load driver: fast (put and get only; the default for them: synchronous ZeroMQ "
        "requests built by hand), c (put and get only: a C program, compiled on first use) "
        "or client (the trio client library; the default otherwise)."
    ),
]
SessionsOpt = Annotated[
    bool,
    typer.Option(
        "--sessions/--no-sessions",
        help="Writes under client sessions, applied exactly once across retries (the "
        "client's default); without, a write whose reply was lost is an error.",
    ),
]


def _bench(workload: str, endpoints: str | None, as_json: bool, procs: int, **kw: Any) -> None:
    from cli.bench import DRIVERS, FAST_WORKLOADS, make_spec, run_bench
    from cli.main import _run, fail

    if kw.get("consistency", "linearizable") not in CONSISTENCIES:
        fail(f"--consistency: expected linearizable, lease or eventual, got {kw['consistency']}", 2)
    driver = kw.pop("driver") or ("fast" if workload in FAST_WORKLOADS else "client")
    if driver not in DRIVERS:
        fail(f"--driver: expected fast, client or c, got {driver}", 2)
    if driver != "client" and workload not in FAST_WORKLOADS:
        fail(f"--driver {driver}: only put and get; bench {workload} runs on --driver client", 2)
    if driver == "c":
        _build_c_driver()
    kw["driver"] = driver
    kw.setdefault("consistency", "linearizable")
    kw["connections"] = kw["connections"] or kw["clients"]
    if (note := session_note(workload, kw["clients"], kw.get("sessions", False))) is not None:
        typer.echo(f"trioraft bench: {note}", err=True)
    if kw["duration"]:
        kw["ops"] = 0
    spec = make_spec(workload, endpoints, **kw)
    progress = sys.stderr.isatty() and not as_json
    result = _run(lambda: _unwrap(run_bench(spec, procs, progress=progress)))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
    else:
        typer.echo(result.line())


def session_note(workload: str, clients: int, sessions: bool) -> str | None:
    """A warning when puts under sessions would need more sessions than a node keeps by
    default (``max_sessions``): they evict one another, and each evicted client registers
    again, so the run measures registrations as much as puts. None when they fit."""
    from trioraft.config import DEFAULT_MAX_SESSIONS

    if workload != "put" or not sessions or clients <= DEFAULT_MAX_SESSIONS:
        return None
    return (
        f"{clients:,} clients register {clients:,} sessions, more than a node keeps by "
        f"default (max_sessions {DEFAULT_MAX_SESSIONS:,}): unless the nodes keep more, "
        "they evict one another and register again (--no-sessions writes without them)"
    )


def _build_c_driver() -> None:
    """Compile the C driver now (unless cached), or fail in one line saying what is missing."""
    from cli.bench_c import BuildError, build
    from cli.main import fail

    try:
        build()
    except BuildError as exc:
        fail(str(exc))


async def _unwrap(coro: Any) -> Any:
    """The result of ``coro``; a trioraft error inside an exception group, raised alone."""
    from wire.errors import TrioraftError

    try:
        return await coro
    except BaseExceptionGroup as group:
        match, _rest = group.split(TrioraftError)
        error: BaseException | None = match
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        if error is None:
            raise
        raise error from group


@bench_app.command("put")
def bench_put(
    endpoints: EndpointsOpt = None,
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 10000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 10000,
    sessions: SessionsOpt = True,
    driver: DriverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop puts of random keys; prints ops/s and p50/p90/p99/p99.9 latency."""
    _bench("put", endpoints, as_json, procs, sessions=sessions, **_common(locals()))


@bench_app.command("get")
def bench_get(
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = "linearizable",
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 10000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 1000,
    driver: DriverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop gets at a consistency level (the key space is written first)."""
    _bench("get", endpoints, as_json, procs, consistency=consistency, **_common(locals()))


@bench_app.command("scan")
def bench_scan(
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = "linearizable",
    scan_keys: Annotated[int, typer.Option(help="Keys per page.", min=1)] = 100,
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 2000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 1000,
    driver: DriverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop prefix scans of --scan-keys keys (the key space is written first).

    Each op reads one full page from a random key of the key space."""
    kw = _common(locals())
    _bench("scan", endpoints, as_json, procs, consistency=consistency, scan_keys=scan_keys, **kw)


@bench_app.command("txn")
def bench_txn(
    endpoints: EndpointsOpt = None,
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 10000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 1000,
    driver: DriverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop compare-then-put transactions (etcd's txn-put with a compare).

    Each op: if a random key's value is the one written first, put it again, else get it;
    counts succeeded and failed."""
    _bench("txn", endpoints, as_json, procs, **_common(locals()))


@bench_app.command("cas")
def bench_cas(
    endpoints: EndpointsOpt = None,
    clients: ClientsOpt = 16,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: OpsOpt = 10000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: ValueSizeOpt = 64,
    key_space: KeySpaceOpt = 1000,
    driver: DriverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Closed-loop compare-and-swap increments of counter keys.

    A small --key-space makes clients conflict; counts swapped and conflicts."""
    _bench("cas", endpoints, as_json, procs, **_common(locals()))


@bench_app.command("watch")
def bench_watch(
    endpoints: EndpointsOpt = None,
    watchers: Annotated[int, typer.Option(help="Watch streams on the prefix.", min=1)] = 8,
    clients: Annotated[int, typer.Option(help="Concurrent writers.", min=1)] = 8,
    connections: ConnectionsOpt = None,
    procs: ProcsOpt = 1,
    ops: Annotated[int, typer.Option(help="Total puts (ignored with --duration).", min=1)] = 5000,
    duration: DurationOpt = 0.0,
    warmup: WarmupOpt = 0.0,
    value_size: Annotated[int, typer.Option(help="Value size in bytes (>= 8).", min=8)] = 64,
    key_space: KeySpaceOpt = 1000,
    driver: DriverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Watch fan-out: events delivered per second and put-to-event latency.

    --watchers streams watch a fresh prefix while --clients writers put under it."""
    _bench("watch", endpoints, as_json, procs, watchers=watchers, **_common(locals()))


def _common(args: dict[str, Any]) -> dict[str, Any]:
    names = ("clients", "connections", "ops", "duration", "warmup", "value_size", "key_space")
    return {"driver": args["driver"], **{name: args[name] for name in names}}


@bench_app.command("compare")
def bench_compare(
    matrix: Annotated[
        str, typer.Option(help="full (45-60 min), quick (20 s a point, ~10 min) or smoke (2 min).")
    ] = "full",
    duration: Annotated[
        float | None, typer.Option(help="Seconds per point (default: the matrix's).")
    ] = None,
    warmup: Annotated[float | None, typer.Option(help="Warm-up seconds per point.")] = None,
    reps: Annotated[int, typer.Option(help="Repetitions (a fresh cluster each).", min=1)] = 1,
    systems: Annotated[
        str, typer.Option(help="Comma-separated: trioraft, etcd, pysyncobj.")
    ] = "trioraft,etcd,pysyncobj",
    out_dir: Annotated[
        Path | None, typer.Option(help="Where results and plots go (default: docs/perf).")
    ] = None,
    peers_dir: Annotated[
        Path | None,
        typer.Option(help="The peer anchors (default: $PEERS_DIR or /work/shared/anchors/peers)."),
    ] = None,
    quiet_wait: Annotated[
        float | None, typer.Option(help="Max seconds to wait for a quiet machine per point.")
    ] = None,
    driver: Annotated[
        str | None,
        typer.Option(
            help="Load driver of trioraft's put and get points: c, fast or client (default: c "
            "if it can be built here, else fast)."
        ),
    ] = None,
) -> None:
    """trioraft, etcd and PySyncObj in one sitting: JSONL, a table, plots (docs/perf).

    Starts a 3-node trioraft cluster (durable, default config) on free 127.0.0.1 ports,
    runs the matrix, stops it; runs the etcd and PySyncObj anchors at the matching points;
    writes docs/perf/results-<stamp>.jsonl and .md, throughput.png and latency.png."""
    from cli.bench_compare import MATRICES, CompareOptions, run_compare
    from cli.main import fail

    if matrix not in MATRICES:
        fail(f"--matrix: expected one of {', '.join(MATRICES)}, got {matrix!r}", 2)
    chosen = [s.strip() for s in systems.split(",") if s.strip()]
    unknown = set(chosen) - {"trioraft", "etcd", "pysyncobj"}
    if unknown:
        fail(f"--systems: unknown {', '.join(sorted(unknown))}", 2)
    if "etcd" in chosen and any(v is not None and v != int(v) for v in (duration, warmup)):
        fail("--duration and --warmup: whole seconds with etcd (its h2load takes no others)", 2)
    if driver is None:
        from cli.bench_c import buildable

        driver = "c" if buildable() else "fast"
    elif driver not in ("c", "fast", "client"):
        fail(f"--driver: expected c, fast or client, got {driver}", 2)
    elif driver == "c":
        _build_c_driver()
    options = CompareOptions.make(
        MATRICES[matrix],
        duration=duration,
        warmup=warmup,
        reps=reps,
        systems=chosen,
        out_dir=out_dir,
        peers_dir=peers_dir,
        quiet_wait=quiet_wait,
        driver=driver,
    )
    run_compare(options)


@bench_app.command("report")
def bench_report(
    results: Annotated[list[Path], typer.Argument(help="results-*.jsonl files.")],
    out_dir: Annotated[
        Path | None, typer.Option(help="Where the table and plots go (default: docs/perf).")
    ] = None,
) -> None:
    """Render the markdown table and the plots again from JSONL results."""
    from cli.bench_compare import default_out_dir
    from cli.bench_report import load_records, write_report

    records = load_records(results)
    stem = results[0].stem if len(results) == 1 else time.strftime("merged-%Y%m%d-%H%M%S")
    typer.echo(write_report(records, out_dir or default_out_dir(), stem))
