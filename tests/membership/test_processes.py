"""Membership changes on real ``trioraft run`` processes (ZeroMQ, RocksDB) under a steady
write load: grow 1 -> 3 -> 5 by ``--join``, restart a joined node, shrink 5 -> 3 removing
the leader; and the ``member``/``leader``/``status`` commands. Every acknowledged write must
survive. No timing assertions: every wait is for a state, bounded by a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from harness.cluster import REPO, ProcessCluster
from trioraft import TrioraftError, open_client
from trioraft.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def voters_are(client: Client, voters: list[int]) -> None:
    while True:
        try:
            meta = await client.cluster_metadata(timeout=2)
            if meta.membership.voters == voters and not meta.membership.joint:
                return
        except TrioraftError:
            pass
        await trio.sleep(0.05)


async def writer(client: Client, name: str, acked: dict[str, str], stop: trio.Event) -> None:
    n = 0
    while not stop.is_set():
        key, value = f"{name}/{n}", f"v{n}"
        try:
            await client.put(key, value, timeout=10)
        except TrioraftError:
            continue  # not acknowledged: it may or may not be there, both are fine
        acked[key] = value
        n += 1


async def test_grow_one_to_five_and_shrink_to_three_under_load_loses_no_write(
    tmp_path: Path,
) -> None:
    c = ProcessCluster(tmp_path, 5)
    c.peer_views[1] = {1: c.peers[1]}  # node 1 alone bootstraps the cluster
    try:
        c.start(1)
        with trio.fail_after(150):
            async with open_client(c.endpoints, timeout=20) as client:
                await client.wait_leader()
                acked: dict[str, str] = {}
                stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    for w in range(3):
                        nursery.start_soon(writer, client, f"w{w}", acked, stop)
                    for node in (2, 3):
                        c.start_joining(node, [c.clients[1]])
                        await voters_are(client, list(range(1, node + 1)))
                    for node in (4, 5):
                        c.start_joining(node, [c.clients[2], c.clients[3]])
                    await voters_are(client, [1, 2, 3, 4, 5])
                    # a joined node restarts on its data dir: no new join, same membership
                    c.kill(3, signal.SIGTERM)
                    c.start_joining(3, [c.clients[1]])
                    leader, _ = await client.discover_leader()
                    gone = [leader, next(i for i in (1, 2, 3, 4, 5) if i != leader)]
                    from wire.member_messages import MemberChange

                    after = await client.update_cluster_conf([MemberChange.remove(i) for i in gone])
                    assert sorted(after.voters) == sorted(set(range(1, 6)) - set(gone))
                    await client.wait_leader()
                    while len(acked) < 50:  # writes go on in the smaller cluster
                        await trio.sleep(0.05)
                    stop.set()
                for key, value in acked.items():
                    assert await client.get(key) == value.encode(), key
                meta = await client.cluster_metadata()
                assert set(meta.membership.voters) == set(range(1, 6)) - set(gone)
    except BaseException:
        print(c.logs(), file=sys.stderr)
        raise
    finally:
        c.stop_all()


def cli(endpoints: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "TRIORAFT_ENDPOINTS": endpoints},
        check=False,
    )


async def test_member_leader_and_status_commands(tmp_path: Path) -> None:
    c = ProcessCluster(tmp_path, 4)
    eps = ",".join(c.clients[i] for i in (1, 2, 3))
    try:
        for node in (1, 2, 3):
            c.peer_views[node] = {i: c.peers[i] for i in (1, 2, 3)}
            c.start(node)
        with trio.fail_after(120):
            async with open_client(eps) as client:
                await client.wait_leader()
            added = cli(
                eps, "member", "add", "4", "--peer-addr", c.peers[4], "--client-addr", c.clients[4]
            )
            assert added.returncode == 0, added.stderr
            assert "learners 4" in added.stdout
            c.start_joining(4, [c.clients[1]], learner=True)  # already a member: accepted
            again = cli(eps, "member", "add", "4", "--peer-addr", c.peers[4])
            assert again.returncode == 1 and "already a member" in again.stderr
            promoted = cli(eps, "member", "promote", "4")
            assert promoted.returncode == 0 and "voters 1 2 3 4" in promoted.stdout, promoted.stderr
            listed = json.loads(cli(eps, "member", "list", "--json").stdout)
            roles = {m["id"]: m["role"] for m in listed["members"]}
            assert roles == {1: "voter", 2: "voter", 3: "voter", 4: "voter"}
            moved = cli(eps, "leader", "transfer", "--to", "4")
            assert moved.returncode == 0 and "node 4 leads" in moved.stdout, moved.stderr
            table = cli(eps, "status")
            assert table.returncode == 0, table.stderr
            lines = table.stdout.splitlines()
            assert lines[0].split() == [
                "ID",
                "ADDRESS",
                "MEMBER",
                "ROLE",
                "TERM",
                "COMMIT",
                "APPLIED",
                "LAG",
            ]
            rows = {line.split()[0]: line.split() for line in lines[1:]}
            assert set(rows) == {"1", "2", "3", "4"} and rows["4"][3] == "leader"
            removed = cli(eps, "member", "remove", "4")
            assert removed.returncode == 0 and "voters 1 2 3;" in removed.stdout, removed.stderr
            last = cli(eps, "member", "remove", "9")
            assert last.returncode == 1 and "unknown node 9" in last.stderr
    except BaseException:
        print(c.logs(), file=sys.stderr)
        raise
    finally:
        c.stop_all()
