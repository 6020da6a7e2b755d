"""``trioraft bench``: a closed-loop load generator, in the spirit of etcd's ``benchmark``.

The parent prepares the key space (``cli.bench_workloads.prepare``), then spawns ``--procs``
worker processes (so the generator is not the bottleneck: each worker is one process
with its own GIL). Each worker runs its share of the ``--clients`` request loops over its
share of ``--connections`` client objects (one ZeroMQ DEALER per node each).

Three drivers: ``fast`` (the default for put and get: ``cli.bench_fast``, synchronous pyzmq
requests built by hand), ``c`` (put and get: ``cli.bench_c``, a C program) and ``client``
(the trio client library: every workload). Workers
and parent speak JSON lines (worker stdout, worker stdin)::

    worker -> {"ready": true}                        connections (and watches) are open
    parent -> {"start_at": t, "measure_at": t, "until": t|0}   all ready: go (monotonic clock)
    worker -> {"progress": n}                        a few times a second
    worker -> {"writes_done": n}                     watch only: its writers have stopped
    worker -> {"final": true, "hist": ..., ...}      the worker's histogram and counts

Warm-up load runs from ``start_at`` until ``measure_at``; only operations started after it count.
With ``--ops`` the workers share that many operations exactly (a failed one is retried and
counted as an error); with ``--duration`` they start none after ``until`` and finish those
in flight. The parent merges the histograms (log buckets, 2% wide) into throughput with
p50/p90/p99/p99.9 latency, errors by kind, the workload's own counters, and CPU use:
the load processes' (``client_cores``), the servers' when their pids are known, the
machine's, and what neither used (``foreign_cores``: other tenants of a shared box).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import trio

from trioraft.client import endpoints_from, open_client
from wire.errors import TrioraftError

BUCKET_BASE = 1.02  # latency histogram resolution: 2%
WORKLOADS = ("put", "get", "scan", "txn", "cas", "watch")
CONSISTENCIES = ("linearizable", "lease", "eventual")
READS = ("get", "scan")  # workloads that take a consistency level
DRIVERS = ("fast", "client", "c")  # fast: cli.bench_fast (sync pyzmq); client: the trio
# client; c: cli.bench_c (a C program)
FAST_WORKLOADS = ("put", "get")  # what the fast and c drivers run; the others use the client
WORKER_MODULES = {"fast": "cli.bench_fast", "c": "cli.bench_c", "client": "cli.bench"}


def bucket_of(seconds: float) -> int:
    return int(math.log(max(seconds * 1e6, 1.0), BUCKET_BASE))


def bucket_ms(bucket: int) -> float:
    """A bucket's midpoint in milliseconds."""
    return float(BUCKET_BASE ** (bucket + 0.5) / 1000)


def percentile(hist: Counter[int], q: float) -> float:
    """The q-th percentile (0..100) of a bucket histogram, in milliseconds."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = max(1, math.ceil(total * q / 100))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_ms(bucket)
    return bucket_ms(max(hist))


@dataclass(frozen=True, slots=True)
class BenchSpec:
    workload: str
    endpoints: list[str]
    clients: int  # concurrent request loops (watch: writers)
    connections: int
    ops: int  # 0: run for `duration` seconds instead (watch: puts)
    duration: float
    warmup: float
    value_size: int
    key_space: int
    consistency: str
    scan_keys: int = 100  # keys per scan page
    watchers: int = 0  # watch: streams on the prefix
    prefix: str = "bench/"
    driver: str = "fast"  # for FAST_WORKLOADS; the other workloads always use "client"
    sessions: bool = True  # writes under client sessions (exactly once), as the client's default
    worker: int = 0
    workers: int = 1

    def share(self, total: int) -> int:
        """This worker's share of a total split over the workers."""
        return total // self.workers + (1 if self.worker < total % self.workers else 0)

    def quota(self) -> int:
        """This worker's share of ``ops``, in proportion to its share of the clients (a
        worker without clients gets none)."""
        before = self.worker * (self.clients // self.workers) + min(
            self.worker, self.clients % self.workers
        )
        after = before + self.share(self.clients)
        return self.ops * after // self.clients - self.ops * before // self.clients

    def key(self, i: int) -> bytes:
        return f"{self.prefix}{i:08d}".encode()

    @property
    def fast(self) -> bool:
        """Whether the workers run the fast driver (``cli.bench_fast``)."""
        return self.driver == "fast" and self.workload in FAST_WORKLOADS

    @property
    def runs_on(self) -> str:
        """The driver the workers run: ``driver`` for FAST_WORKLOADS, else ``client``."""
        return self.driver if self.workload in FAST_WORKLOADS else "client"

    @property
    def label(self) -> str:
        """The workload's name in reports: ``put``, ``get/lease``, ``scan/eventual``, ..."""
        if self.workload in READS:
            return f"{self.workload}/{self.consistency}"
        return self.workload


@dataclass(frozen=True, slots=True)
class BenchResult:
    workload: str
    clients: int
    connections: int
    procs: int
    ops: int  # watch: events delivered
    errors: int
    seconds: float
    ops_per_sec: float
    p50_ms: float  # watch: put-to-event latency
    p90_ms: float
    p99_ms: float
    p999_ms: float
    value_size: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    # the workload's own counters: cas swapped/conflicts, txn succeeded/failed, get misses,
    # scan keys, watch puts/watchers/expected_events/put_ops_per_sec/put_p50_ms/put_p99_ms
    extra: dict[str, float] = field(default_factory=dict)
    client_cores: float | None = None  # CPU of the load processes over the measurement
    server_cores: float | None = None  # CPU of the server pids given, if any
    machine_cores: float | None = None  # busy cores of the whole machine
    foreign_cores: float | None = None  # machine - servers - load: other tenants
    driver: str = "client"  # the load processes' driver: fast, c or client

    def line(self) -> str:
        text = (
            f"{self.workload}: {self.ops:,} ops ({self.errors} errors), {self.clients} clients, "
            f"{self.connections} connections, {self.procs} procs in {self.seconds:.2f} s: "
            f"{self.ops_per_sec:,.0f} ops/s; latency ms p50 {self.p50_ms:.2f} "
            f"p90 {self.p90_ms:.2f} p99 {self.p99_ms:.2f} p99.9 {self.p999_ms:.2f}"
        )
        if self.error_kinds:
            text += "; errors: " + ", ".join(f"{k} {n}" for k, n in self.error_kinds.items())
        if self.extra:
            text += "; " + ", ".join(f"{k} {_num(v)}" for k, v in self.extra.items())
        return text


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.2f}"


def make_spec(workload: str, endpoints: str | None, **kw: Any) -> BenchSpec:
    return BenchSpec(workload=workload, endpoints=endpoints_from(endpoints), **kw)


# --- CPU accounting from /proc (Linux; None elsewhere) -----------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine."""
    try:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def busy_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


@dataclass(slots=True)
class _CpuSample:
    at: float
    parent: float
    servers: list[float | None]
    machine: tuple[int, int] | None

    @staticmethod
    def take(server_pids: Sequence[int]) -> _CpuSample:
        return _CpuSample(
            time.monotonic(),
            time.process_time(),
            [proc_cpu_seconds(p) for p in server_pids],
            machine_jiffies(),
        )


# --- the parent ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Merged:
    hist: Counter[int] = field(default_factory=Counter)
    put_hist: Counter[int] = field(default_factory=Counter)
    ops: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    extra: dict[str, float] = field(default_factory=dict)
    finals: int = 0

    def add(self, msg: dict[str, Any]) -> None:
        self.finals += 1
        self.hist.update({int(b): n for b, n in msg["hist"].items()})
        self.put_hist.update({int(b): n for b, n in msg.get("put_hist", {}).items()})
        self.ops += msg["ops"]
        self.seconds = max(self.seconds, msg["seconds"])
        self.cpu += msg.get("cpu", 0.0)
        self.errors.update(msg.get("errors", {}))
        for k, v in msg.get("extra", {}).items():
            # counters add up; durations (``*_seconds``) overlap, so take the longest
            old = self.extra.get(k, 0.0)
            self.extra[k] = max(old, v) if k.endswith("_seconds") else old + v


async def run_bench(
    spec: BenchSpec, procs: int, progress: bool, server_pids: Sequence[int] = ()
) -> BenchResult:
    """Prepare, run the workers, show progress, and merge their reports. ``server_pids``:
    processes whose CPU use over the measurement is reported as ``server_cores``."""
    from cli.bench_workloads import prepare, watch_sentinel

    merged = _Merged()
    counts = [0] * procs
    writes_done: dict[int, int] = {}
    async with open_client(spec.endpoints, timeout=30) as client:
        spec = await prepare(client, spec)
        send, receive = trio.open_memory_channel[tuple[int, dict[str, Any]]](math.inf)
        async with trio.open_nursery() as nursery:
            workers: list[trio.Process] = []
            for w in range(procs):
                workers.append(await _spawn(nursery, spec, w, procs, send.clone()))
            send.close()
            for _ in range(procs):  # the barrier: every worker has its connections open
                w, msg = await receive.receive()
                if not msg.get("ready"):
                    raise TrioraftError(f"bench worker {w} failed before it was ready")
            start_at = time.monotonic() + 0.05  # every worker starts at once
            measure_at = start_at + max(spec.warmup, 0.0)
            until = measure_at + spec.duration if not spec.ops else 0.0
            go = {"start_at": start_at, "measure_at": measure_at, "until": until}
            line = (json.dumps(go) + "\n").encode()
            for proc in workers:
                assert proc.stdin is not None
                await proc.stdin.send_all(line)
            if progress:
                nursery.start_soon(_show_progress, counts, spec, measure_at)
            await trio.sleep(max(0.0, measure_at - time.monotonic()))
            first = _CpuSample.take(server_pids)
            last = first
            async for w, msg in receive:
                if "progress" in msg:
                    counts[w] = msg["progress"]
                elif "writes_done" in msg:
                    writes_done[w] = msg["writes_done"]
                    if len(writes_done) == procs:  # every put is in: tell the watchers
                        await client.put(watch_sentinel(spec), b"end")
                elif msg.get("final"):
                    last = _CpuSample.take(server_pids)  # the last one ends the window
                    merged.add(msg)
                elif "exit" in msg and msg["exit"] is not None:
                    raise TrioraftError(f"bench worker {w} exited with status {msg['exit']}")
            nursery.cancel_scope.cancel()
    if progress:
        print(file=sys.stderr)
    return _result(spec, procs, merged, first, last)


def _result(
    spec: BenchSpec, procs: int, merged: _Merged, first: _CpuSample, last: _CpuSample
) -> BenchResult:
    seconds = merged.seconds or float("nan")
    window = last.at - first.at
    client_cores = (merged.cpu + last.parent - first.parent) / seconds
    machine = busy_cores(first.machine, last.machine)
    server_cores: float | None = None
    if first.servers and window > 0:
        deltas = [(b - a) for a, b in zip(first.servers, last.servers, strict=True) if a and b]
        server_cores = sum(deltas) / window
    foreign = None
    if machine is not None and server_cores is not None:
        foreign = machine - server_cores - client_cores
    extra = dict(merged.extra)
    if spec.workload == "watch":
        puts = extra.get("puts", 0.0)
        extra["expected_events"] = puts * spec.watchers
        put_seconds = extra.pop("put_seconds", 0.0)
        if put_seconds:
            extra["put_ops_per_sec"] = round(puts / put_seconds, 1)
        if merged.put_hist:
            extra["put_p50_ms"] = round(percentile(merged.put_hist, 50), 3)
            extra["put_p99_ms"] = round(percentile(merged.put_hist, 99), 3)
    return BenchResult(
        workload=spec.label,
        clients=spec.clients,
        connections=spec.connections,
        procs=procs,
        ops=merged.ops,
        errors=sum(merged.errors.values()),
        seconds=seconds,
        ops_per_sec=merged.ops / seconds,
        p50_ms=percentile(merged.hist, 50),
        p90_ms=percentile(merged.hist, 90),
        p99_ms=percentile(merged.hist, 99),
        p999_ms=percentile(merged.hist, 99.9),
        value_size=spec.value_size,
        error_kinds=dict(merged.errors),
        extra=extra,
        client_cores=_round(client_cores),
        server_cores=_round(server_cores),
        machine_cores=_round(machine),
        foreign_cores=_round(foreign),
        driver=spec.runs_on,
    )


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 3)


async def _spawn(
    nursery: trio.Nursery,
    spec: BenchSpec,
    worker: int,
    procs: int,
    send: trio.MemorySendChannel[tuple[int, dict[str, Any]]],
) -> trio.Process:
    wspec = json.dumps(asdict(replace(spec, worker=worker, workers=procs)))
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", WORKER_MODULES[spec.runs_on], wspec],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )
    nursery.start_soon(_read_worker, proc, worker, send)
    return proc


async def _read_worker(
    proc: trio.Process, worker: int, send: trio.MemorySendChannel[tuple[int, dict[str, Any]]]
) -> None:
    """Forward a worker's JSON lines; at its end, {"exit": status} if it failed."""
    async with send:
        try:
            assert proc.stdout is not None
            buf = b""
            async for chunk in proc.stdout:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    await send.send((worker, json.loads(line)))
            code = await proc.wait()
            await send.send((worker, {"exit": code or None}))
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()


async def _show_progress(counts: list[int], spec: BenchSpec, measure_at: float) -> None:
    width = 30
    target = spec.ops * (spec.watchers if spec.workload == "watch" else 1)
    while True:
        await trio.sleep(0.25)
        done = sum(counts)
        elapsed = time.monotonic() - measure_at
        if target:
            frac = min(1.0, done / target)
        else:
            frac = min(1.0, max(0.0, elapsed) / max(spec.duration, 1e-9))
        bar = "#" * int(frac * width)
        phase = "warm-up" if elapsed < 0 else "ops"
        print(
            f"\r[{bar:<{width}}] {done:>10,} {phase:<7} {elapsed:6.1f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )


# --- a worker process ------------------------------------------------------------------------


def report_line(msg: dict[str, Any]) -> None:
    """A worker's message to the parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def read_control() -> dict[str, Any]:
    """The parent's next message to a worker (its stdin); exit if the parent went away."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(1)
    msg: dict[str, Any] = json.loads(line)
    return msg


def _worker_main(raw: str) -> None:
    from cli.bench_workloads import run_worker

    async def control() -> dict[str, Any]:
        return await trio.to_thread.run_sync(read_control, abandon_on_cancel=True)

    trio.run(run_worker, BenchSpec(**json.loads(raw)), report_line, control)


if __name__ == "__main__":
    _worker_main(sys.argv[1])
