"""``trioraft snapshot save | inspect | restore`` against real ``trioraft run`` processes:
save from a running cluster, inspect, refuse damaged files, seed a new cluster that then
serves the same data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from harness.cluster import ProcessCluster, process_cluster
from trioraft import open_client

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def cli(*args: str, endpoints: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "TRIORAFT_ENDPOINTS": endpoints},
        check=False,
    )


async def load(endpoints: list[str], n: int) -> None:
    async with open_client(endpoints, timeout=30) as client:
        await client.wait_leader()
        async with trio.open_nursery() as nursery:
            for w in range(8):

                async def writer(w: int = w) -> None:
                    for i in range(w, n, 8):
                        await client.put(f"user/{i:05d}", f"value-{i}")

                nursery.start_soon(writer)
        await client.delete("user/00007")


async def read_back(endpoints: list[str], n: int) -> dict[str, bytes | None]:
    async with open_client(endpoints, timeout=30) as client:
        await client.wait_leader()
        got = {f"user/{i:05d}": await client.get(f"user/{i:05d}") for i in range(0, n, 37)}
        got["user/00007"] = await client.get("user/00007")
        await client.put("after-restore", "yes")
        got["after-restore"] = await client.get("after-restore")
        return got


def test_save_inspect_restore_serves_the_same_data(tmp_path: Path) -> None:
    n = 500
    snap = tmp_path / "backup.snap"
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    with process_cluster(tmp_path / "old", size=3) as old:
        eps = ",".join(old.endpoints)
        trio.run(load, old.endpoints, n)
        saved = cli("snapshot", "save", str(snap), "--no-progress", endpoints=eps)
        assert saved.returncode == 0, saved.stderr
        assert saved.stdout.startswith("saved snapshot index ")
        assert not (tmp_path / "backup.snap.part").exists()

    shown = cli("snapshot", "inspect", str(snap), "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["keys"] == n - 1 and info["checksum"] == "ok"
    assert info["voters"] == [1, 2, 3] and info["index"] >= n
    assert info["sessions"] >= 1  # the client's exactly-once sessions are in it
    text = cli("snapshot", "inspect", str(snap))
    assert "sha256" in text.stdout and re.search(r"^checksum +ok$", text.stdout, re.M)

    new = ProcessCluster(tmp_path / "new", 3)
    peers = ",".join(f"{i}={a}" for i, a in sorted(new.peers.items()))
    for node_id in sorted(new.peers):
        restored = cli(
            "snapshot",
            "restore",
            str(snap),
            "--data-dir",
            str(new.data_dir(node_id)),
            "--id",
            str(node_id),
            "--peers",
            peers,
        )
        assert restored.returncode == 0, restored.stderr
        assert f"for node {node_id}" in restored.stdout
    again = cli(
        "snapshot",
        "restore",
        str(snap),
        "--data-dir",
        str(new.data_dir(1)),
        "--id",
        "1",
        "--peers",
        peers,
    )
    assert again.returncode == 1 and "already holds data" in again.stderr
    try:
        new.start_all()
        got = trio.run(read_back, new.endpoints, n)
    except BaseException:
        print(new.logs(), file=sys.stderr)
        raise
    finally:
        new.stop_all()
    for key, value in got.items():
        if key == "user/00007":
            assert value is None
        elif key == "after-restore":
            assert value == b"yes"
        else:
            assert value == f"value-{int(key[5:])}".encode()


def test_damaged_snapshot_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    from storage.snapshot_file import SnapshotHeader, write_snapshot

    path = tmp_path / "s.snap"
    header = SnapshotHeader(1, 10, 2, (1, 2, 3), 0, 1)
    write_snapshot(str(path), header, [(b"k%05d" % i, b"v" * 100) for i in range(300)])
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    shown = cli("snapshot", "inspect", str(path))
    assert shown.returncode == 1
    assert f"trioraft: snapshot file {path} is corrupt" in shown.stderr
    restored = cli("snapshot", "restore", str(path), "--data-dir", str(tmp_path / "d"), "--id", "1")
    assert restored.returncode == 1 and "nothing was restored" in restored.stderr
    assert not (tmp_path / "d" / "db").exists()
    missing = cli("snapshot", "inspect", str(tmp_path / "nope.snap"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
