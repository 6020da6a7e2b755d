"""A 100 MB state reaches a follower by snapshot while the cluster keeps serving writes,
without an election (``TRIORAFT_SNAPSHOT_MB`` sets another size; ~10 s on 2 cores).

Real ``trioraft run`` processes. A follower is stopped, the state is written, the leader
snapshots and compacts its log, and the follower comes back: it can only catch up by
snapshot. A writer keeps writing throughout. The test checks outcomes, not timings (no
election: every node's term is unchanged, the leader too; writes completed during the
transfer; the follower has the data) and prints the figures::

    .venv/bin/python -m pytest -s tests/snapshots/test_snapshot_big.py
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from cli.local import node_command
from harness.cluster import REPO, ProcessCluster
from trioraft import open_client
from wire import snapshot_messages as snap_msg

pytestmark = pytest.mark.integration

MB = int(os.environ.get("TRIORAFT_SNAPSHOT_MB", "100"))
VALUE = 100 << 10  # 100 KiB values


class ConfiguredCluster(ProcessCluster):
    """A ``ProcessCluster`` whose nodes also read a TOML config file."""

    config: Path | None = None

    def start(self, node_id: int) -> None:
        cmd = node_command(
            node_id, self.peers, self.clients[node_id], str(self.data_dir(node_id)), self.tick_ms
        )
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        with self.log_path(node_id).open("ab") as logf:
            self.procs[node_id] = subprocess.Popen(
                cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, cwd=REPO
            )


async def scenario(c: ConfiguredCluster) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with open_client(c.endpoints, timeout=60) as client:
        leader, leader_ep = await client.wait_leader(timeout=60)
        follower = next(i for i in sorted(c.peers) if i != leader)
        c.kill(follower, 15)  # SIGTERM: a clean stop
        keys = MB * (1 << 20) // VALUE
        rng = random.Random(1)
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for w in range(8):

                async def load(w: int = w) -> None:
                    for i in range(w, keys, 8):
                        await client.put(f"big/{i:06d}", rng.randbytes(VALUE))

                nursery.start_soon(load)
        figures["load_s"] = time.monotonic() - started
        # an admin snapshot on the leader: it also compacts the log (catch-up tail 0)
        built = await client._conn(leader_ep).call(snap_msg.SnapshotSaveRequest(), 120)
        figures["snapshot_mb"] = built.size / (1 << 20)
        terms = {i: (await client.status(c.clients[i])).term for i in c.peers if i != follower}

        writes = {"done": 0, "during": 0}
        transferring = {"on": False}

        async def writer() -> None:
            n = 0
            while True:
                await client.put(f"live/{n % 100}", f"{n}")
                n += 1
                writes["done"] += 1
                if transferring["on"]:
                    writes["during"] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.2)
            transferring["on"] = True
            t0 = time.monotonic()
            c.start(follower)
            target = built.index
            while True:
                try:
                    st = await client.status(c.clients[follower], timeout=1)
                    if st.applied >= target:
                        break
                except Exception:
                    pass
                await trio.sleep(0.05)
            figures["catch_up_s"] = time.monotonic() - t0
            transferring["on"] = False
            nursery.cancel_scope.cancel()
        figures["writes_during"] = writes["during"]
        # no election: the leader and every term are unchanged
        assert (await client.discover_leader())[0] == leader
        for i, term in terms.items():
            assert (await client.status(c.clients[i])).term == term
        st = await client.status(c.clients[follower])
        assert st.term == terms[leader] and st.leader_id == leader
        assert writes["during"] > 0
        # the follower has the data
        probe = await client.get("big/000003", consistency="linearizable")
        for i in (0, 3, keys // 2, keys - 1):
            mine = await client.get(
                f"big/{i:06d}", consistency="eventual", endpoint=c.clients[follower]
            )
            theirs = await client.get(f"big/{i:06d}")
            assert mine == theirs and mine is not None
        assert probe is not None
    return figures


def test_big_state_transfers_while_the_cluster_keeps_serving(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        "snapshot_catchup_entries = 0\n"
        "snapshot_entries = 1000000\n"
        f"snapshot_bytes = {4 * MB << 20}\n"
        "snapshot_chunk_bytes = 1048576\n"
    )
    c = ConfiguredCluster(tmp_path, 3, tick_ms=50)
    c.config = config
    try:
        c.start_all()
        figures = trio.run(scenario, c)
        leader_logs = "".join(c.log_path(i).read_text() for i in c.peers)
        sent = re.findall(r"node (\d+) has snapshot (\d+) \(([\d.]+) s\)", leader_logs)
        installed = re.findall(r"installed snapshot \d+ \(term \d+\) in ([\d.]+) s", leader_logs)
        assert sent and installed
        print(
            f"\n{MB} MB state: load {figures['load_s']:.1f} s, snapshot "
            f"{figures['snapshot_mb']:.1f} MB, transfer {sent[-1][2]} s, install "
            f"{installed[-1]} s, follower caught up in {figures['catch_up_s']:.1f} s, "
            f"{figures['writes_during']:.0f} writes served meanwhile, no election",
            file=sys.stderr,
        )
    except BaseException:
        print(c.logs(), file=sys.stderr)
        raise
    finally:
        c.stop_all()
