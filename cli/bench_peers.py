"""The peer anchors (etcd 3.4, PySyncObj) run on the matrix of ``trioraft bench compare``.

The anchors (``$PEERS_DIR``, default /work/shared/anchors/peers) are standalone scripts
with their own venv (``$PEERS_VENV``, default ~/.cache/peers-bench-venv; ``bash setup.sh``
there makes it). Each has a dict ``MATRICES`` of named point lists and a ``main()`` that
takes ``--matrix NAME``; a shim run by the venv's Python adds our points under a new name
and calls ``main()``, so the scripts run unchanged: their own clusters (fresh per
repetition, stopped by pid), quiet waits, CPU accounting and JSON lines (``--out``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS_DIR = Path(os.environ.get("PEERS_DIR", "/work/shared/anchors/peers"))
PEERS_VENV = Path(os.environ.get("PEERS_VENV", Path.home() / ".cache/peers-bench-venv"))

# etcd_bench.py points: (op, value size, concurrency, load processes, load generator)
EtcdPoint = tuple[str, int, int, int, str]
# pysyncobj_bench.py config groups: (name, journal, batch, [(value size, concurrency)])
SyncObjGroup = tuple[str, str, bool, list[tuple[int, int]]]

# Runs in the peers' venv: put our matrix into the script's MATRICES and call its main().
_SHIM = """
import json, sys
peers, module, matrix = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, peers)
mod = __import__(module)
if module == "pysyncobj_bench":
    matrix = [(n, j, b, [tuple(r) for r in runs]) for n, j, b, runs in matrix]
else:
    matrix = [tuple(p) for p in matrix]
mod.MATRICES["trioraft-compare"] = matrix
sys.argv = [mod.__file__, "--matrix", "trioraft-compare", *sys.argv[4:]]
mod.main()
"""


@dataclass(frozen=True, slots=True)
class PeerRun:
    """How to run the peer scripts: their Python, their folder, and the run's settings."""

    python: Path
    peers_dir: Path
    reps: int
    duration: float
    warmup: float
    quiet_wait: float
    retry_contended: int  # measure a contended point again this many times

    def command(self, script: str, matrix: list[Any], out: Path) -> list[str]:
        """``script`` (``etcd_bench`` or ``pysyncobj_bench``) on ``matrix``, appending its
        JSON lines to ``out``."""
        return [
            str(self.python),
            "-c",
            _SHIM,
            str(self.peers_dir),
            script,
            json.dumps(matrix),
            "--reps",
            str(self.reps),
            "--duration",
            f"{self.duration:g}",
            "--warmup",
            f"{self.warmup:g}",
            "--quiet-wait",
            f"{self.quiet_wait:g}",
            "--retry-contended",
            str(self.retry_contended),
            "--out",
            str(out),
        ]

    def time_limit(self, script: str, matrix: list[Any]) -> float:
        """Seconds after which the script is stopped: generous for its points."""
        points = len(matrix) if script == "etcd_bench" else sum(len(g[3]) for g in matrix)
        per_point = (self.duration + self.warmup + self.quiet_wait + 30) * (
            1 + self.retry_contended
        )
        return 120 + self.reps * points * per_point


def run_peer(
    run: PeerRun, script: str, matrix: list[Any], out: Path, log: Callable[[str], None]
) -> None:
    """One peer script on our matrix, bounded in time; its JSON lines go to ``out``."""
    if not (run.peers_dir / f"{script}.py").exists() or not run.python.exists():
        log(
            f"{script}: skipped: needs {run.peers_dir}/{script}.py and {run.python} "
            f"(run: bash {run.peers_dir}/setup.sh)"
        )
        return
    limit = run.time_limit(script, matrix)
    log(f"{script}: {run.reps} rep(s) of its matrix (stopped after {limit:.0f} s)")
    proc = subprocess.Popen(
        run.command(script, matrix, out), cwd=run.peers_dir, stdout=subprocess.DEVNULL
    )
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        log(f"{script}: stopping it after {limit:.0f} s")
        code = None
    finally:
        if proc.poll() is None:  # SIGTERM by pid: the script stops its servers on it
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if code:
        log(f"{script}: exited with status {code}")
