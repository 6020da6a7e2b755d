"""Real ``trioraft run`` processes on 127.0.0.1 free ports, for integration tests.

Every process started here is stopped by its pid when the cluster closes (SIGTERM, then
SIGKILL), whatever the test did; logs go to ``<tmp>/nodeN.log`` and are printed on failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cli.local import free_ports, node_command

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ProcessCluster:
    root: Path
    size: int
    tick_ms: int = 50
    peers: dict[int, str] = field(default_factory=dict)
    clients: dict[int, str] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Optional: node id -> the --peers map that node starts with (default: ``peers`` for
    # every node). Lets peer traffic go through per-pair proxies (tests/jepsen/proxy.py);
    # each view must list the node itself at its real ``peers`` address.
    peer_views: dict[int, dict[int, str]] = field(default_factory=dict)
    # Optional NodeConfig settings for every node (written once to ``<root>/node.toml`` and
    # passed as ``--config``), e.g. ``{"snapshot_entries": 200}``.
    settings: dict[str, int | str | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        for i in range(self.size):
            self.clients[i + 1] = f"tcp://127.0.0.1:{ports[2 * i]}"
            self.peers[i + 1] = f"tcp://127.0.0.1:{ports[2 * i + 1]}"

    @property
    def endpoints(self) -> list[str]:
        return [self.clients[i] for i in sorted(self.clients)]

    def log_path(self, node_id: int) -> Path:
        return self.root / f"node{node_id}.log"

    def data_dir(self, node_id: int) -> Path:
        return self.root / f"node{node_id}"

    def alive(self, node_id: int) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def _command(self, node_id: int, peers: dict[int, str]) -> list[str]:
        cmd = node_command(
            node_id, peers, self.clients[node_id], str(self.data_dir(node_id)), self.tick_ms
        )
        if self.settings:
            path = self.root / "node.toml"
            if not path.exists():
                path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in self.settings.items()))
            cmd += ["--config", str(path)]
        return cmd

    def start(self, node_id: int) -> None:
        assert node_id not in self.procs or self.procs[node_id].poll() is not None
        cmd = self._command(node_id, self.peer_views.get(node_id, self.peers))
        with self.log_path(node_id).open("ab") as logf:
            self.procs[node_id] = subprocess.Popen(
                cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, cwd=REPO
            )

    def start_joining(self, node_id: int, join: list[str], *, learner: bool = False) -> None:
        """Start ``node_id`` as a new member that joins the running cluster through the
        client endpoints ``join`` (``trioraft run --join``; a restart finds its data)."""
        assert node_id not in self.procs or self.procs[node_id].poll() is not None
        cmd = [*self._command(node_id, {node_id: self.peers[node_id]}), "--join", ",".join(join)]
        cmd.remove("--peers")
        cmd.remove(f"{node_id}={self.peers[node_id]}")
        if learner:
            cmd.append("--learner")
        with self.log_path(node_id).open("ab") as logf:
            self.procs[node_id] = subprocess.Popen(
                cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, cwd=REPO
            )

    def start_all(self) -> None:
        for node_id in sorted(self.peers):
            self.start(node_id)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[node_id]
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused (SIGSTOP) node must see SIGTERM
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        parts = []
        for node_id in sorted(self.peers):
            path = self.log_path(node_id)
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"----- node {node_id} -----\n{text[-6000:]}")
        return "\n".join(parts)


def _toml(value: int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else f'"{value}"'


@contextmanager
def process_cluster(
    root: Path,
    size: int = 3,
    tick_ms: int = 50,
    settings: dict[str, int | str | bool] | None = None,
) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(root, size, tick_ms, settings=dict(settings or {}))
    try:
        cluster.start_all()
        yield cluster
    except BaseException:
        cluster.stop_all()
        print(cluster.logs(), file=sys.stderr)
        raise
    else:
        cluster.stop_all()
