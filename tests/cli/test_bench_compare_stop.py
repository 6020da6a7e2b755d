"""``trioraft bench compare`` ended by SIGTERM (``timeout``, ``kill``) stops the cluster it
started on its way out, as Ctrl-C does."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from harness.cluster import REPO


def pids_using(path: str) -> list[int]:
    """Processes whose command line names ``path`` (the compare's nodes name their data)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if path.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_sigterm_stops_the_comparison_and_the_cluster_it_started(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cli", "bench", "compare", "--matrix", "smoke"]
    cmd += ["--systems", "trioraft", "--driver", "fast", "--duration", "60", "--warmup", "0"]
    cmd += ["--quiet-wait", "0", "--out-dir", str(tmp_path)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(120, proc.kill)  # a hung run closes its stderr, ending the read
    watchdog.start()
    data = ""
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"3 nodes up .*, data in (\S+)", line)
            if found:
                data = found.group(1)
                break
        assert data, "the comparison never reported its cluster"
        assert len(pids_using(data)) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        assert pids_using(data) == []  # every node stopped before the comparison ended
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if data:
            for pid in pids_using(data):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(data, ignore_errors=True)  # kept by the run for its node logs
