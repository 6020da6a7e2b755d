"""``trioraft local``: a cluster of ``trioraft run`` child processes on 127.0.0.1.

It prints ``TRIORAFT_ENDPOINTS=...`` (ready to export), waits for a leader and prints it,
then runs until SIGINT/SIGTERM or until a node exits, and stops every child it started (by
its pid: SIGTERM, then SIGKILL after a grace period). Node logs go to DIR/nodeN.log.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

from trioraft.client import open_client
from wire.errors import TrioraftError, Unavailable

STOP_GRACE = 5.0


def cluster_layout(nodes: int, base_port: int) -> tuple[dict[int, str], dict[int, str]]:
    """Peer and client addresses for nodes 1..N: clients on P+2i, peers on P+2i+1."""
    peers = {i + 1: f"tcp://127.0.0.1:{base_port + 2 * i + 1}" for i in range(nodes)}
    clients = {i + 1: f"tcp://127.0.0.1:{base_port + 2 * i}" for i in range(nodes)}
    return peers, clients


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral range.

    Outside the ephemeral range on purpose: a DEALER that keeps reconnecting to a stopped
    node's ephemeral port can connect to itself (TCP simultaneous open) and hold the port,
    so the restarted node could not bind it.
    """
    low, _high = _ephemeral_range()
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(max(1024, low - 12000), low)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def node_command(
    node_id: int, peers: dict[int, str], client_addr: str, data_dir: str, tick_ms: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli",
        "run",
        "--id",
        str(node_id),
        "--peer-addr",
        peers[node_id],
        "--client-addr",
        client_addr,
        "--peers",
        ",".join(f"{i}={a}" for i, a in sorted(peers.items())),
        "--data-dir",
        data_dir,
        "--tick-ms",
        str(tick_ms),
    ]


async def run_local(nodes: int, base_port: int, data_dir: str, tick_ms: int) -> None:
    peers, clients = cluster_layout(nodes, base_port)
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, at start-up)
    procs: list[trio.Process] = []
    try:
        async with trio.open_nursery() as nursery:
            for node_id in sorted(peers):
                logf = (root / f"node{node_id}.log").open("ab")
                cmd = node_command(
                    node_id, peers, clients[node_id], str(root / f"node{node_id}"), tick_ms
                )
                proc = await trio.lowlevel.open_process(
                    cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL
                )
                logf.close()
                procs.append(proc)
                nursery.start_soon(_watch_child, proc, node_id, root, nursery.cancel_scope)
            endpoints = ",".join(clients[i] for i in sorted(clients))
            print(f"TRIORAFT_ENDPOINTS={endpoints}", flush=True)
            print(f"data and logs: {root} (node logs: nodeN.log)", flush=True)
            async with open_client(endpoints, timeout=30) as client:
                try:
                    leader_id, endpoint = await client.wait_leader(timeout=30)
                except TrioraftError as exc:
                    raise Unavailable(f"no leader elected: {exc}; see {root}/node*.log") from None
            print(f"leader: node {leader_id} ({endpoint})", flush=True)
            print("cluster running; press Ctrl-C to stop", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print("stopping...", flush=True)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        with trio.CancelScope(shield=True):
            await stop_processes(procs)


async def _watch_child(
    proc: trio.Process, node_id: int, root: Path, scope: trio.CancelScope
) -> None:
    code = await proc.wait()
    print(
        f"node {node_id} exited with status {code}; see {root}/node{node_id}.log",
        file=sys.stderr,
        flush=True,
    )
    scope.cancel()


async def stop_processes(procs: list[trio.Process]) -> None:
    """SIGTERM every live child, then SIGKILL those still alive after a grace period."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_GRACE):
        for proc in procs:
            await proc.wait()
    for proc in procs:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
