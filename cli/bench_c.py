"""The C driver of ``trioraft bench`` (``--driver c``): put and get (every consistency
level) from a small C program, ``cli/cdriver/trioraft_load.c``, as light on CPU as the
h2load that drives etcd.

This module is the worker process the parent spawns (same JSON lines as
``cli.bench_workloads.run_worker``) and does everything off the hot path: it builds the
program on first use (``build``: ``cc -O2`` against pyzmq's bundled libzmq, cached in
``~/.cache/trioraft`` under a hash of the source, the library and the compiler); finds the
leader, the cluster id and the node ids and registers one client session per loop as the
fast driver does (``cli.bench_fast.FastWorker``); starts the program with all of it on its
command line; forwards its ``ready`` and ``progress``; hands it the go on stdin; and turns
its histogram (``cli.bench.bucket_of``'s buckets) and counts into the ``final`` report.
The program's loops, requests and retries are described at the top of its source.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli import bench_fast
from cli.bench import BenchSpec, read_control, report_line
from cli.bench_fast import FastWorker
from cli.bench_workloads import Report, Tally, final_report
from wire import client_messages as cm

SOURCE = Path(__file__).resolve().with_name("cdriver") / "trioraft_load.c"
CFLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra")


class BuildError(Exception):
    """The C driver cannot be built here; the message (one line) says what is missing."""


def compiler() -> str | None:
    """The C compiler to use: ``$CC``, else cc, gcc or clang on PATH (None: none)."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def bundled_libzmq() -> Path | None:
    """The libzmq shared object that pyzmq's wheel bundles (None: pyzmq has none)."""
    import zmq

    package = Path(zmq.__file__).resolve().parent
    for pattern in ("pyzmq.libs/libzmq*.so*", "zmq/.libs/libzmq*.so*", "zmq/libzmq*.so*"):
        found = sorted(package.parent.glob(pattern))
        if found:
            return found[0]
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trioraft"


def build() -> Path:
    """The C driver's executable, compiled now unless cached; BuildError if it cannot be."""
    cc = compiler()
    if cc is None:
        raise BuildError("--driver c: no C compiler found (cc, gcc or clang on PATH, or $CC)")
    lib = bundled_libzmq()
    if lib is None:
        raise BuildError("--driver c: pyzmq bundles no libzmq shared object here (libzmq*.so*)")
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(f"\0{lib}\0{cc}\0{CFLAGS}".encode())
    exe = cache_dir() / f"trioraft_load-{digest.hexdigest()[:16]}"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(f"{exe.name}.{os.getpid()}.tmp")  # workers may build at once
    cmd = [cc, *CFLAGS, "-o", str(tmp), str(SOURCE), str(lib), f"-Wl,-rpath,{lib.parent}", "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        tmp.unlink(missing_ok=True)
        first = next(iter(done.stderr.strip().splitlines()), f"status {done.returncode}")
        raise BuildError(f"--driver c: {Path(cc).name} could not build {SOURCE.name}: {first}")
    os.replace(tmp, exe)
    return exe


def buildable() -> bool:
    try:
        build()
    except BuildError:
        return False
    return True


def command(spec: BenchSpec, exe: Path) -> list[str]:
    """The program's command line for this worker's share of the load: the leader, the
    cluster id, node ids and sessions are found and registered first (as the fast driver)."""
    fast = FastWorker(spec)
    try:
        loops = spec.share(spec.clients)
        sessions = fast._sessions(loops) if fast.put and spec.sessions else []
        deadline = time.monotonic() + bench_fast.OP_TIMEOUT
        leader = "" if fast.eventual else fast._leader_until(deadline)
    finally:
        fast.close()
    node_ids = {endpoint: node for node, endpoint in fast.by_id.items()}
    n = len(spec.endpoints)
    conns = max(1, min(spec.share(spec.connections), loops))
    args = {
        "-w": spec.workload,
        "-l": int(cm.Consistency[spec.consistency.upper()]),
        "-k": fast.cluster_id,
        "-v": spec.value_size,
        "-n": spec.key_space,
        "-p": spec.prefix,
        "-q": spec.quota() if spec.ops else -1,
        "-L": spec.endpoints.index(leader) if leader else 0,
        "-t": ",".join(str((j * spec.workers + spec.worker) % n) for j in range(conns)),
        "-c": loops,
        "-r": int.from_bytes(os.urandom(7), "big"),
        "-T": f"{bench_fast.ATTEMPT_TIMEOUT},{bench_fast.OP_TIMEOUT}",
    }
    if sessions:
        args["-s"] = ",".join(map(str, sessions))
    cmd = [str(exe), *(str(x) for pair in args.items() for x in pair)]
    for endpoint in spec.endpoints:
        cmd += ["-e", f"{node_ids.get(endpoint, 0)},{endpoint}"]
    return cmd


def run_c_worker(spec: BenchSpec, report: Report, control: Callable[[], dict[str, Any]]) -> None:
    """One worker process's load (see ``cli.bench_workloads.run_worker``), in C."""
    cmd = command(spec, build())
    tally = Tally()
    final: list[str] = []
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"trioraft_load failed before it was ready: {proc.wait()}")
            report({"ready": True})
            go = control()
            tally.go(go)
            cpu0 = time.process_time()
            proc.stdin.write(f"{go['start_at']!r} {go['measure_at']!r} {go['until']!r}\n")
            proc.stdin.flush()
            for line in proc.stdout:
                word, *rest = line.split()
                if word == "progress":
                    report({"progress": int(rest[0])})
                elif word == "hist":
                    tally.hist[int(rest[0])] += int(rest[1])
                elif word == "error":
                    tally.errors[rest[0]] += int(rest[1])
                elif word == "final":
                    final = rest
            status = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
    if status or len(final) != 5:
        raise SystemExit(f"trioraft_load exited with status {status} without a final report")
    tally.done, tally.end, tally.warmup_errors = int(final[0]), float(final[1]), int(final[4])
    extra: dict[str, float] = {"misses": int(final[3])} if int(final[3]) else {}
    cpu = float(final[2]) + time.process_time() - cpu0  # the program's, and this process's
    report(final_report(tally, cpu, extra))


if __name__ == "__main__":
    run_c_worker(BenchSpec(**json.loads(sys.argv[1])), report_line, read_control)
