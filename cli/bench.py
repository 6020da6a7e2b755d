"""``trioraft bench``: a closed-loop load generator, in the spirit of etcd's ``benchmark``.

The parent spawns ``--procs`` worker processes (so the generator is not the bottleneck:
each worker is one trio process with its own GIL). Each worker runs its share of the
``--clients`` concurrent request loops over its share of ``--connections`` client objects
(one ZeroMQ DEALER per node each), reports progress a few times a second and, at the end,
a latency histogram (log buckets, 2% wide). The parent shows a live progress bar on a
terminal and prints throughput with p50/p90/p99/p99.9 latency, or a JSON summary.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import trio

from trioraft.client import endpoints_from, open_client

BUCKET_BASE = 1.02  # latency histogram resolution: 2%
WORKLOADS = ("put", "get")


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
    clients: int
    connections: int
    ops: int  # 0: run for `duration` seconds instead
    duration: float
    warmup: float
    value_size: int
    key_space: int
    consistency: str
    worker: int = 0
    workers: int = 1

    def share(self, total: int) -> int:
        """This worker's share of a total split over the workers."""
        return total // self.workers + (1 if self.worker < total % self.workers else 0)


@dataclass(frozen=True, slots=True)
class BenchResult:
    workload: str
    clients: int
    connections: int
    procs: int
    ops: int
    errors: int
    seconds: float
    ops_per_sec: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float

    def line(self) -> str:
        return (
            f"{self.workload}: {self.ops:,} ops ({self.errors} errors), {self.clients} clients, "
            f"{self.connections} connections, {self.procs} procs in {self.seconds:.2f} s: "
            f"{self.ops_per_sec:,.0f} ops/s; latency ms p50 {self.p50_ms:.2f} "
            f"p90 {self.p90_ms:.2f} p99 {self.p99_ms:.2f} p99.9 {self.p999_ms:.2f}"
        )


def key(i: int) -> bytes:
    return f"bench/{i:08d}".encode()


async def run_worker(spec: BenchSpec, report: Any) -> None:
    """One worker process's load: closed loops, a histogram, progress via ``report``."""
    value = (b"v" * spec.value_size)[: spec.value_size]
    clients = spec.share(spec.clients)
    connections = max(1, min(spec.share(spec.connections), clients))
    quota = spec.share(spec.ops) if spec.ops else 0
    hist: Counter[int] = Counter()
    done = errors = 0
    measuring = spec.warmup <= 0
    start = time.perf_counter()
    seq = spec.worker
    if not clients:
        report({"final": True, "hist": {}, "ops": 0, "errors": 0, "seconds": 0.0})
        return

    async def loop(client: Any) -> None:
        nonlocal done, errors, seq
        while True:
            if quota and measuring and done >= quota:
                return
            seq += spec.workers
            k = key(seq % spec.key_space)
            t0 = time.perf_counter()
            try:
                if spec.workload == "put":
                    await client.put(k, value)
                else:
                    await client.get(k, consistency=spec.consistency)
            except Exception:  # counted and reported; a bench keeps going
                errors += 1
                continue
            if measuring:
                hist[bucket_of(time.perf_counter() - t0)] += 1
                done += 1

    async with trio.open_nursery() as outer:
        conns = []
        for _ in range(connections):
            conns.append(await outer.start(_client_holder, spec.endpoints))
        async with trio.open_nursery() as nursery:
            for i in range(clients):
                nursery.start_soon(loop, conns[i % connections])
            if spec.warmup > 0:
                await trio.sleep(spec.warmup)
                measuring = True
            start = time.perf_counter()
            deadline = start + spec.duration if not quota else math.inf
            while True:
                await trio.sleep(0.2)
                report({"progress": done})
                finished = done >= quota if quota else time.perf_counter() >= deadline
                if finished:
                    nursery.cancel_scope.cancel()
                    break
        seconds = time.perf_counter() - start
        outer.cancel_scope.cancel()
    report({"final": True, "hist": dict(hist), "ops": done, "errors": errors, "seconds": seconds})


async def _client_holder(endpoints: list[str], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with open_client(endpoints, timeout=30) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def prepare(spec: BenchSpec) -> None:
    """Wait for a leader; for reads, write every key of the key space once."""
    async with open_client(spec.endpoints, timeout=30) as client:
        await client.wait_leader(timeout=30)
        if spec.workload != "get":
            return
        value = (b"v" * spec.value_size)[: spec.value_size]
        todo = iter(range(spec.key_space))

        async def writer() -> None:
            for i in todo:
                await client.put(key(i), value)

        async with trio.open_nursery() as nursery:
            for _ in range(min(64, spec.key_space)):
                nursery.start_soon(writer)


async def run_bench(spec: BenchSpec, procs: int, progress: bool) -> BenchResult:
    """Run the workers, show progress, and merge their histograms."""
    await prepare(spec)
    total_hist: Counter[int] = Counter()
    finals: list[dict[str, Any]] = []
    counts = [0] * procs
    target = spec.ops or 0
    started = time.perf_counter()

    async def one(worker: int) -> None:
        wspec = json.dumps(
            asdict(BenchSpec(**{**asdict(spec), "worker": worker, "workers": procs}))
        )
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cli.bench", wspec], stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            buf = b""
            async for chunk in proc.stdout:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if msg.get("final"):
                        finals.append(msg)
                        total_hist.update({int(b): n for b, n in msg["hist"].items()})
                    else:
                        counts[worker] = msg["progress"]
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()

    async with trio.open_nursery() as outer:
        if progress:
            outer.start_soon(_show_progress, counts, target, spec.duration, started)
        async with trio.open_nursery() as workers:
            for w in range(procs):
                workers.start_soon(one, w)
        outer.cancel_scope.cancel()  # the progress bar runs until the workers are done
    if progress:
        print(file=sys.stderr)
    ops = sum(f["ops"] for f in finals)
    seconds = max((f["seconds"] for f in finals), default=0.0) or float("nan")
    return BenchResult(
        workload=spec.workload if spec.workload == "put" else f"get/{spec.consistency}",
        clients=spec.clients,
        connections=spec.connections,
        procs=procs,
        ops=ops,
        errors=sum(f["errors"] for f in finals),
        seconds=seconds,
        ops_per_sec=ops / seconds,
        p50_ms=percentile(total_hist, 50),
        p90_ms=percentile(total_hist, 90),
        p99_ms=percentile(total_hist, 99),
        p999_ms=percentile(total_hist, 99.9),
    )


async def _show_progress(counts: list[int], target: int, duration: float, started: float) -> None:
    width = 30
    while True:
        await trio.sleep(0.25)
        done = sum(counts)
        elapsed = time.perf_counter() - started
        frac = min(1.0, done / target) if target else min(1.0, elapsed / max(duration, 1e-9))
        bar = "#" * int(frac * width)
        print(
            f"\r[{bar:<{width}}] {done:>10,} ops {elapsed:6.1f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )


def make_spec(workload: str, endpoints: str | None, **kw: Any) -> BenchSpec:
    return BenchSpec(workload=workload, endpoints=endpoints_from(endpoints), **kw)


def _worker_main(raw: str) -> None:
    spec = BenchSpec(**json.loads(raw))

    def report(msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    trio.run(run_worker, spec, report)


if __name__ == "__main__":
    _worker_main(sys.argv[1])
