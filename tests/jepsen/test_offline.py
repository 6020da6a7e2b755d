"""The offline checks (``jepsen.offline``) on data dirs written here: replicas at different
applied indexes, a log that starts after compaction, and planted disagreements."""

from __future__ import annotations

from pathlib import Path

from jepsen.history import UNKNOWN
from jepsen.offline import offline_state
from storage import Identity, open_store
from trioraft.config import NodeConfig
from trioraft.kv.commands import InSession, Put, RegisterSession, encode_command
from trioraft.kv.state_machine import KVStateMachine
from trioraft.node.bootstrap import recover
from wire.messages import Entry, EntryKind, HardState

PEERS = {n: f"tcp://127.0.0.1:{20000 + n}" for n in (1, 2, 3)}
CID = NodeConfig(node_id=1, peers=PEERS).cluster_id
LAST = 12


def _entries(tamper: int | None = None) -> list[Entry]:
    """A no-op, a session, then puts in it on three keys (``tamper``: that index writes
    another value)."""
    out = [
        Entry(1, 1, EntryKind.NOOP, b""),
        Entry(1, 2, EntryKind.NORMAL, encode_command(RegisterSession(), 1000)),
    ]
    for i in range(3, LAST + 1):
        value = b"X" if i == tamper else b"v%d" % i
        cmd = InSession(2, i - 2, Put(b"k%d" % (i % 3), value))
        out.append(Entry(1, i, EntryKind.NORMAL, encode_command(cmd, 1000 + i)))
    return out


def _node(
    root: Path,
    n: int,
    *,
    applied: int,
    commit: int = LAST,
    compact_to: int = 0,
    tamper: int | None = None,
    extra_key: bool = False,
) -> Path:
    path = root / f"node{n}"
    store = open_store(str(path), Identity(CID, n), create=True)
    try:
        entries = _entries(tamper)
        store.append(entries, HardState(1, 1, commit))
        sm = KVStateMachine(store)
        recover(NodeConfig(node_id=n, peers=PEERS), sm.membership, store, None, None)
        sm.apply(entries[:applied])
        if extra_key:
            store.apply([(b"ustray", b"1")], applied)
        if compact_to:
            store.compact_log(compact_to, (1, 2, 3))
        store.sync()
    finally:
        store.close()
    return path


def test_replicas_at_different_indexes_and_compacted_logs_agree(tmp_path: Path) -> None:
    dirs = {
        1: _node(tmp_path, 1, applied=LAST),
        2: _node(tmp_path, 2, applied=5),
        3: _node(tmp_path, 3, applied=9, compact_to=8),  # its log starts at 9
    }
    check = offline_state(dirs, CID, PEERS)
    assert check.valid is True, check.summary
    assert f"at index {LAST}" in check.summary
    assert "log 9-12" in check.summary
    assert len({d for d, _ in check.details["states"].values()}) == 1


def test_a_committed_entry_that_differs_fails(tmp_path: Path) -> None:
    dirs = {
        1: _node(tmp_path, 1, applied=LAST),
        2: _node(tmp_path, 2, applied=5, tamper=10),
        3: _node(tmp_path, 3, applied=LAST, compact_to=6),
    }
    check = offline_state(dirs, CID, PEERS)
    assert check.valid is False, check.summary
    assert "committed entry 10 differs" in check.summary
    assert "replicas differ" in check.summary


def test_an_uncommitted_entry_that_differs_is_not_replayed(tmp_path: Path) -> None:
    dirs = {
        1: _node(tmp_path, 1, applied=LAST),
        2: _node(tmp_path, 2, applied=5, commit=8, tamper=10),
        3: _node(tmp_path, 3, applied=LAST),
    }
    check = offline_state(dirs, CID, PEERS)
    assert check.valid == UNKNOWN, check.summary
    assert "entry 10 not known to be committed" in check.summary


def test_a_replica_with_other_data_fails(tmp_path: Path) -> None:
    dirs = {
        1: _node(tmp_path, 1, applied=LAST),
        2: _node(tmp_path, 2, applied=7, extra_key=True),
        3: _node(tmp_path, 3, applied=LAST),
    }
    check = offline_state(dirs, CID, PEERS)
    assert check.valid is False, check.summary
    assert "differ at index 12 on 1 keys: [b'ustray']" in check.summary
