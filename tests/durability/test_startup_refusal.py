"""`trioraft run` on a data dir it must not use: it exits 1 at once with one line naming
the dir (and the log index, for damage); on a torn WAL tail it starts and says what it
dropped. Each case starts a real `trioraft run` process and waits for it.
"""

from __future__ import annotations

import signal
import subprocess
import zlib
from pathlib import Path

import cbor2
import pytest
from rocksdict import Rdict

from cli.local import node_command
from harness.cluster import REPO, free_ports
from storage import Identity, open_store
from storage.records import index_key
from storage.rocks_options import raw_options
from storage.wal import wal_files
from tests.storage.storage_helpers import run_child
from trioraft import NodeConfig
from wire.messages import Entry, EntryKind, HardState

pytestmark = pytest.mark.integration


class Layout:
    """A three-node cluster's addresses; the tests start only node 1 (or 2) of it."""

    def __init__(self) -> None:
        ports = free_ports(6)
        self.peers = {i: f"tcp://127.0.0.1:{ports[2 * i - 1]}" for i in (1, 2, 3)}
        self.clients = {i: f"tcp://127.0.0.1:{ports[2 * i - 2]}" for i in (1, 2, 3)}

    def identity(self, node_id: int) -> Identity:
        cfg = NodeConfig(node_id=node_id, peers=self.peers, peer_addr=self.peers[node_id])
        return Identity(cfg.cluster_id, node_id)

    def command(self, node_id: int, data: Path) -> list[str]:
        return node_command(node_id, self.peers, self.clients[node_id], str(data), 50)

    def refuse(self, node_id: int, data: Path) -> str:
        """Run the node; it must exit 1 with exactly one line on stderr, returned."""
        done = subprocess.run(
            self.command(node_id, data), cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]


@pytest.fixture
def layout() -> Layout:
    return Layout()


def make_dir(data: Path, identity: Identity, last: int = 20, commit: int = 10) -> None:
    with open_store(str(data), identity) as store:
        store.append(
            [Entry(1, i, EntryKind.NORMAL, b"") for i in range(1, last + 1)],
            HardState(1, 1, commit),
        )
        store.sync()


def test_data_dir_in_use(layout: Layout, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_store(str(data), layout.identity(1)):
        line = layout.refuse(1, data)
    assert (
        line
        == f"trioraft: data dir {data} is in use by another process (lock {data}/trioraft.lock)"
    )


def test_wrong_node_other_cluster_newer_format(layout: Layout, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dir(data, layout.identity(1))
    assert layout.refuse(2, data) == f"trioraft: data dir {data} belongs to node 1, not node 2"
    other = tmp_path / "other"
    make_dir(other, Identity(0xC0FFEE, 1))
    assert layout.refuse(1, other) == (
        f"trioraft: data dir {other} belongs to cluster 0xc0ffee, "
        f"not {layout.identity(1).cluster_id:#x}"
    )
    db = Rdict(str(data / "db"), raw_options())
    payload = cbor2.dumps(2)
    db.get_column_family("meta")[b"format"] = zlib.crc32(payload).to_bytes(4, "big") + payload
    db.close()
    assert layout.refuse(1, data) == (
        f"trioraft: data dir {data} has format version 2, newer than this trioraft (1)"
    )


def test_corrupt_record_and_inconsistent_hard_state(layout: Layout, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dir(data, layout.identity(1))
    db = Rdict(str(data / "db"), raw_options())
    log = db.get_column_family("log")
    value = bytearray(log[index_key(13)])
    value[-1] ^= 0x01
    log[index_key(13)] = bytes(value)
    del log
    db.close()
    assert layout.refuse(1, data) == (
        f"trioraft: data dir {data}: log entry 13 is corrupt (checksum mismatch)"
    )
    ahead = tmp_path / "ahead"
    make_dir(ahead, layout.identity(1), last=5, commit=9)
    assert layout.refuse(1, ahead) == (
        f"trioraft: data dir {ahead}: hard state commit 9 beyond last index 5"
    )


CHILD = """
import os, signal, sys
from storage import Identity, open_store
from wire.messages import Entry, EntryKind, HardState
s = open_store(sys.argv[1], Identity(int(sys.argv[2]), 1))
for b in range(10):
    s.append([Entry(1, i, EntryKind.NORMAL, b"x" * 60) for i in range(b * 5 + 1, b * 5 + 6)],
             HardState(1, 1, b * 5))
    s.sync()
os.kill(os.getpid(), signal.SIGKILL)
"""


def crashed_dir(layout: Layout, data: Path) -> Path:
    """A data dir whose 50 entries are only in the WAL (its writer was killed)."""
    child = run_child(CHILD, str(data), str(layout.identity(1).cluster_id))
    assert child.returncode == -signal.SIGKILL, child.stderr
    [wal] = wal_files(str(data / "db"))
    return Path(wal)


def test_corrupt_wal_record_refuses_start(layout: Layout, tmp_path: Path) -> None:
    data = tmp_path / "data"
    wal = crashed_dir(layout, data)
    raw = bytearray(wal.read_bytes())
    raw[len(raw) // 2] ^= 0x04
    wal.write_bytes(bytes(raw))
    line = layout.refuse(1, data)
    assert line.startswith(f"trioraft: data dir {data}: corrupt RocksDB data after log entry ")
    assert line.endswith(", refusing to start (Corruption: checksum mismatch)")


def test_torn_wal_tail_is_dropped_and_the_node_starts(layout: Layout, tmp_path: Path) -> None:
    data = tmp_path / "data"
    wal = crashed_dir(layout, data)
    with wal.open("r+b") as f:
        f.truncate(wal.stat().st_size - 20)
    proc = subprocess.Popen(
        layout.command(1, data),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("trioraft node 1 ready"), ready
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"data dir {data}: dropped an incomplete write after log entry 45 (" in stderr
    with open_store(str(data), layout.identity(1)) as store:
        assert store.last_index == 45
