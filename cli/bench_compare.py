"""``trioraft bench compare``: trioraft, etcd and PySyncObj measured in one sitting.

1. trioraft: a fresh 3-node cluster of ``trioraft run`` processes on free 127.0.0.1 ports
   in a temporary directory (default config: durable, every Ready's entries fsynced before
   acks leave), the matrix's points run by ``cli.bench.run_bench`` with the nodes' pids
   for ``server_cores``; the nodes are stopped by pid (SIGTERM, then SIGKILL).
2. etcd 3.4 and PySyncObj (cli/bench_peers.py): the peer anchors (``$PEERS_DIR``, default
   /work/shared/anchors/peers; set up once with ``bash setup.sh`` there) run unchanged in
   their venv, on a matrix of the matching points given to their own ``main()``.

Every measurement is a JSON line in ``docs/perf/results-<stamp>.jsonl`` (the peers append
theirs to the same file); then ``cli.bench_report`` writes ``results-<stamp>.md`` (the
table) and ``throughput.png`` / ``latency.png``. Before each point the run waits (bounded)
for the machine to be quiet, and every record keeps ``foreign_cores``: the CPU neither the
servers nor the load generator used (other tenants of a shared machine).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from cli.bench import FAST_WORKLOADS, BenchSpec, busy_cores, machine_jiffies, run_bench
from cli.bench_peers import PEERS_DIR, PEERS_VENV, EtcdPoint, PeerRun, SyncObjGroup, run_peer
from cli.bench_report import load_records, write_report
from cli.local import free_ports, node_command
from trioraft.client import open_client

REPO = Path(__file__).resolve().parents[1]
TICK_MS = 100  # NodeConfig's default
QUIET_CORES = 0.3  # "quiet": other load below this many busy cores (as the peers use)
PUT_CLIENTS = (1, 16, 64, 256)
READ_CLIENTS = 64
# etcd's h2load runs at most 64 connections, each with clients/64 requests in flight
# (../shared/anchors/peers/etcd_h2load.py); trioraft's points take the same shape.
MAX_CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class Point:
    """One trioraft measurement."""

    workload: str
    clients: int
    value_size: int = 64
    consistency: str = "linearizable"
    key_space: int = 10000
    scan_keys: int = 100
    watchers: int = 0

    @property
    def connections(self) -> int:
        return min(self.clients, MAX_CONNECTIONS)

    def procs(self, driver: str) -> int:
        """Load processes: one Python process drives ~16 loops before it is the bottleneck;
        the C driver's one process drives them all."""
        c = driver == "c" and self.workload in FAST_WORKLOADS
        return 1 if self.clients < 16 or c else 2


def _puts(size: int, clients: tuple[int, ...] = PUT_CLIENTS) -> list[Point]:
    return [Point("put", c, size) for c in clients]


def _gets(clients: int) -> list[Point]:
    return [Point("get", clients, consistency=c, key_space=1000) for c in _LEVELS]


_LEVELS = ("linearizable", "lease", "eventual")

CORE: list[Point] = [*_puts(64), *_gets(READ_CLIENTS)]
ETCD_CORE: list[EtcdPoint] = [
    *[("put", 64, c, 1, "h2load") for c in PUT_CLIENTS],
    ("get", 64, READ_CLIENTS, 1, "h2load"),
    ("sget", 64, READ_CLIENTS, 1, "h2load"),  # serializable: etcd's eventual read
]
SYNCOBJ_CORE: list[SyncObjGroup] = [
    ("file+nobatch", "file", False, [(64, c) for c in PUT_CLIENTS]),
]


@dataclass(frozen=True, slots=True)
class Matrix:
    name: str
    duration: float
    warmup: float
    quiet_wait: float  # max seconds to wait for a quiet machine before a point
    retry_contended: int  # peers: measure a contended point again this many times
    trioraft: list[Point]
    etcd: list[EtcdPoint]
    pysyncobj: list[SyncObjGroup]

    def points(self) -> int:
        return len(self.trioraft) + len(self.etcd) + sum(len(g[3]) for g in self.pysyncobj)


MATRICES: dict[str, Matrix] = {
    "full": Matrix(
        "full",
        duration=30.0,
        warmup=5.0,
        quiet_wait=15.0,
        retry_contended=1,
        trioraft=[
            *CORE,
            *_puts(1024, (1, 16, 64)),
            *_gets(1),
            *_gets(16),
            Point("txn", 64, key_space=1000),
            Point("cas", 64, key_space=1000),
            Point("scan", 16, key_space=1000, scan_keys=100),
            Point("watch", 8, key_space=1000, watchers=16),
        ],
        etcd=[
            *ETCD_CORE,
            *[("put", 1024, c, 1, "h2load") for c in (1, 16, 64)],
            *[("get", 64, c, 1, "h2load") for c in (1, 16)],
            ("sget", 64, 1, 1, "h2load"),
            ("put", 64, 1, 1, "aio"),
            ("put", 64, 16, 2, "aio"),
            ("put", 64, 64, 4, "aio"),
            ("get", 64, 64, 4, "aio"),
        ],
        pysyncobj=[
            ("file+nobatch", "file", False, [(64, c) for c in PUT_CLIENTS] + [(1024, 64)]),
            ("file+batch(default)", "file", True, [(64, c) for c in PUT_CLIENTS]),
        ],
    ),
    "quick": Matrix("quick", 20.0, 3.0, 5.0, 0, CORE, ETCD_CORE, SYNCOBJ_CORE),
    "smoke": Matrix("smoke", 3.0, 1.0, 0.0, 0, CORE, ETCD_CORE, SYNCOBJ_CORE),
}


def default_out_dir() -> Path:
    return REPO / "docs" / "perf"


@dataclass(frozen=True, slots=True)
class CompareOptions:
    matrix: Matrix
    reps: int = 1
    systems: list[str] = field(default_factory=lambda: ["trioraft", "etcd", "pysyncobj"])
    out_dir: Path = field(default_factory=default_out_dir)
    peers_dir: Path = PEERS_DIR
    peers_python: Path = PEERS_VENV / "bin" / "python"
    driver: str = "fast"  # of the trioraft put and get points: fast, c or client

    def peer_run(self) -> PeerRun:
        m = self.matrix
        return PeerRun(
            self.peers_python,
            self.peers_dir,
            self.reps,
            m.duration,
            m.warmup,
            m.quiet_wait,
            m.retry_contended,
        )

    @staticmethod
    def make(
        matrix: Matrix,
        *,
        duration: float | None = None,
        warmup: float | None = None,
        quiet_wait: float | None = None,
        reps: int = 1,
        systems: list[str] | None = None,
        out_dir: Path | None = None,
        peers_dir: Path | None = None,
        driver: str = "fast",
    ) -> CompareOptions:
        matrix = replace(
            matrix,
            duration=matrix.duration if duration is None else duration,
            warmup=matrix.warmup if warmup is None else warmup,
            quiet_wait=matrix.quiet_wait if quiet_wait is None else quiet_wait,
        )
        return CompareOptions(
            matrix,
            reps,
            systems or ["trioraft", "etcd", "pysyncobj"],
            out_dir or default_out_dir(),
            peers_dir or PEERS_DIR,
            driver=driver,
        )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_compare(opts: CompareOptions) -> Path:
    """Run everything; return the JSONL file written. SIGTERM stops it as Ctrl-C does."""
    # Python's default SIGTERM ends the process at once, past the ``finally`` blocks that
    # stop the clusters: ``timeout`` or ``kill`` would leave three nodes running.
    # ``default_int_handler`` raises KeyboardInterrupt instead, wherever the run is.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run_compare(opts)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_compare(opts: CompareOptions) -> Path:
    m = opts.matrix
    stamp = time.strftime("%Y%m%d-%H%M%S")
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    out = opts.out_dir / f"results-{stamp}.jsonl"
    per_point = m.duration + m.warmup + 4 + m.quiet_wait / 2
    log(
        f"bench compare, matrix {m.name}: {m.points()} points x {opts.reps} reps, "
        f"{m.duration:g} s each after {m.warmup:g} s warm-up: roughly "
        f"{m.points() * opts.reps * per_point / 60:.0f} min; results: {out}"
    )
    if "trioraft" in opts.systems:
        log(f"trioraft put and get points: --driver {opts.driver}")
        for rep in range(1, opts.reps + 1):
            run_trioraft(m, rep, out, opts.driver)
    for system, script, matrix in (
        ("etcd", "etcd_bench", m.etcd),
        ("pysyncobj", "pysyncobj_bench", m.pysyncobj),
    ):
        if system in opts.systems and matrix:
            run_peer(opts.peer_run(), script, matrix, out, log)
    if not out.exists():
        out.touch()
    log(write_report(load_records([out]), opts.out_dir, out.stem))
    return out


# --- trioraft ----------------------------------------------------------------------------------


class LocalCluster:
    """``trioraft run`` processes on free 127.0.0.1 ports with their data in ``root``."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        ports = free_ports(2 * size)
        self.clients = {i + 1: f"tcp://127.0.0.1:{ports[2 * i]}" for i in range(size)}
        self.peers = {i + 1: f"tcp://127.0.0.1:{ports[2 * i + 1]}" for i in range(size)}
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def endpoints(self) -> list[str]:
        return [self.clients[i] for i in sorted(self.clients)]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        for node_id in sorted(self.peers):
            data = str(self.root / f"node{node_id}")
            cmd = node_command(node_id, self.peers, self.clients[node_id], data, TICK_MS)
            with (self.root / f"node{node_id}.log").open("ab") as logf:
                self.procs.append(
                    subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
                )

        async def wait_leader() -> None:
            async with open_client(self.endpoints, timeout=30) as client:
                await client.wait_leader(timeout=30)

        trio.run(wait_leader)

    def stop(self) -> None:
        """SIGTERM each node by pid, SIGKILL those still alive after 10 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_quiet(max_wait: float, probe: float = 1.0) -> tuple[float | None, float]:
    """Wait (at most ``max_wait`` s) until the machine's busy cores drop below QUIET_CORES;
    return the last reading and the seconds waited."""
    started = time.monotonic()
    while True:
        before = machine_jiffies()
        time.sleep(probe)
        busy = busy_cores(before, machine_jiffies())
        waited = time.monotonic() - started
        if busy is None or busy < QUIET_CORES or waited >= max_wait:
            return busy, waited


def run_trioraft(m: Matrix, rep: int, out: Path, driver: str = "fast") -> None:
    """One fresh cluster, every trioraft point of the matrix, a JSON line each."""
    root = Path(tempfile.mkdtemp(prefix="trioraft-compare-"))
    cluster = LocalCluster(root)
    failed = False
    try:
        cluster.start()
        log(f"trioraft rep {rep}: 3 nodes up ({', '.join(cluster.endpoints)}), data in {root}")
        for point in m.trioraft:
            rec = measure(cluster, point, m, rep, driver)
            failed = failed or "failed" in rec
            append(out, rec)
            log("  " + summary(rec))
    except BaseException:
        failed = True
        raise
    finally:
        cluster.stop()
        if failed:
            log(f"trioraft: node logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def measure(
    cluster: LocalCluster, point: Point, m: Matrix, rep: int, driver: str = "fast"
) -> dict[str, Any]:
    pre_busy, waited = wait_quiet(m.quiet_wait) if m.quiet_wait > 0 else (None, 0.0)
    spec = BenchSpec(
        workload=point.workload,
        endpoints=cluster.endpoints,
        clients=point.clients,
        connections=point.connections,
        ops=0,
        duration=m.duration,
        warmup=m.warmup,
        value_size=point.value_size,
        key_space=point.key_space,
        consistency=point.consistency,
        scan_keys=point.scan_keys,
        watchers=point.watchers,
        driver=driver,
    )
    procs = point.procs(driver)
    rec: dict[str, Any] = {
        "bench": "trioraft",
        "op": spec.label,
        "conc": point.clients,
        "connections": point.connections,
        "procs": procs,
        "value_size": point.value_size,
        "key_space": point.key_space,
        "duration": m.duration,
        "warmup": m.warmup,
        "rep": rep,
        "nodes": 3,
        "tick_ms": TICK_MS,
        "durability": "fsync before acks (default config)",
        "driver": spec.runs_on,  # the load generator: c, fast or client
        "sessions": spec.sessions,
        "pre_busy_cores": pre_busy,
        "quiet_wait_s": round(waited, 1),
        "commit": _commit(),
    }
    try:
        result = trio.run(run_bench, spec, procs, False, cluster.pids)
    except Exception as exc:  # recorded; the matrix goes on
        rec["failed"] = f"{type(exc).__name__}: {exc}"
        return rec
    rec.update(
        ops=result.ops,
        ops_per_s=result.ops_per_sec,
        p50_ms=result.p50_ms,
        p90_ms=result.p90_ms,
        p99_ms=result.p99_ms,
        p999_ms=result.p999_ms,
        errors=result.errors,
        error_kinds=result.error_kinds,
        extra=result.extra,
        client_cores=result.client_cores,
        server_cores=result.server_cores,
        machine_cores=result.machine_cores,
        foreign_cores=result.foreign_cores,
    )
    return rec


def summary(rec: dict[str, Any]) -> str:
    if "failed" in rec:
        return f"{rec['op']} c={rec['conc']}: FAILED {rec['failed']}"
    return (
        f"{rec['op']:<18} v={rec['value_size']:<4} c={rec['conc']:<3} p={rec['procs']} "
        f"{rec['ops_per_s']:8.0f} ops/s p50 {rec['p50_ms']:.2f}ms p99 {rec['p99_ms']:.2f}ms "
        f"nodes {rec['server_cores']} cores, load {rec['client_cores']} cores, "
        f"other {rec['foreign_cores']}, errors {rec['errors']}"
    )


def append(path: Path, rec: dict[str, Any]) -> None:
    rec.setdefault("ts", time.strftime("%Y-%m-%dT%H:%M:%S"))
    with path.open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def _commit() -> str | None:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return head.stdout.strip() or None
