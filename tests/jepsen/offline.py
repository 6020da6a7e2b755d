"""Offline checks of the stopped nodes' data dirs: the committed logs agree, and every
replica's state, brought to one log index, is the same.

Each data dir is opened with ``storage.open_store``. A replica is its kv column family (the
state machine as of its applied index, which after an install is a snapshot's) plus its own
log; after log compaction or a snapshot install the log starts past index 1, so entries are
always matched by their Raft index, never by their position in a list.

1. **Committed entries agree**: for every index, the entries of the nodes whose stored
   commit index covers it are equal (term, kind, data): Raft's State Machine Safety.
2. **One state**: the target is the highest applied index of any node (every entry up to
   it is committed: a node applied it). Each replica starts from its kv data and applies
   its own log entries above its applied index up to the target, with the product's state
   machine (``KVStateMachine`` on a copy in memory; the data dirs are not written). An
   entry counts only if the node knows it is committed (at or below its stored commit
   index) or it equals a committed entry of another node. The replicas must then hash
   alike (peer addresses in the membership record masked: ``ADDRESS_KEYS``).

A replica that cannot reach the target from its own log (entries missing or not known to
be committed, an install interrupted) is reported, and makes the check ``unknown``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from jepsen.checkers import Check
from jepsen.history import UNKNOWN
from storage import Identity, open_store
from storage.memory import MemoryStore
from trioraft.config import NodeConfig
from trioraft.kv.state_machine import KVStateMachine
from trioraft.node.bootstrap import recover
from wire.messages import Entry, SnapshotMeta

# Keys of the state machine whose value names peer addresses: some node's view of them (a
# CONFIG entry records its proposer's; the suite gives every node a different address for
# each peer, through its proxies, which config.py allows), so they are compared with the
# addresses masked.
ADDRESS_KEYS = (b"mmembership",)
_ADDRESS = re.compile(rb"tcp://[^\"\s,\]]*")


def comparable(key: bytes, value: bytes) -> bytes:
    return _ADDRESS.sub(b"tcp://*", value) if key in ADDRESS_KEYS else value


@dataclass
class Replica:
    node: int
    applied: int
    commit: int
    start: SnapshotMeta | None  # where the log starts (None: at index 1)
    entries: dict[int, Entry]  # by Raft index
    kv: list[tuple[bytes, bytes]]
    installing: SnapshotMeta | None

    @property
    def first_index(self) -> int:
        return (self.start.index if self.start is not None else 0) + 1


def read_replica(path: Path, cluster_id: int, node_id: int) -> Replica:
    store = open_store(str(path), Identity(cluster_id, node_id), create=False)
    try:
        state = store.load_raft_state()
        return Replica(
            node_id,
            store.applied_index(),
            state.hard_state.commit,
            state.snapshot,
            {e.index: e for e in state.entries},
            list(store.scan(b"")),
            store.pending_install(),
        )
    finally:
        store.close()


def replay(replica: Replica, entries: Sequence[Entry], config: NodeConfig) -> dict[bytes, bytes]:
    """The replica's kv data after applying ``entries`` (the ones above its applied index)
    as the node would: its membership base as the node would recover it, then the state
    machine. Works on a copy in memory."""
    mem = MemoryStore(Identity(1, config.node_id))
    mem.apply(replica.kv, replica.applied)
    sm = KVStateMachine(
        mem,
        session_ttl_ms=config.session_ttl_ms,
        max_sessions=config.max_sessions,
        max_range_bytes=min(4 << 20, config.max_message_bytes // 4),
    )
    if entries:
        recover(config, sm.membership, mem, replica.start, None)
        sm.apply(entries)
    return dict(mem.scan(b""))


def _config(node_id: int, peers: Mapping[int, str], settings: Mapping[str, Any]) -> NodeConfig:
    known = {f.name for f in fields(NodeConfig)}
    extra = {k: v for k, v in settings.items() if k in known}
    return NodeConfig(node_id=node_id, peers=dict(peers), **extra)


def offline_state(
    data_dirs: dict[int, Path],
    cluster_id: int,
    peers: Mapping[int, str],
    settings: Mapping[str, Any] | None = None,
    views: Mapping[int, Mapping[int, str]] | None = None,
) -> Check:
    """The check alone (its details go into the run's JSON summary)."""
    return offline_check(data_dirs, cluster_id, peers, settings, views)[0]


def offline_check(
    data_dirs: dict[int, Path],
    cluster_id: int,
    peers: Mapping[int, str],
    settings: Mapping[str, Any] | None = None,
    views: Mapping[int, Mapping[int, str]] | None = None,
) -> tuple[Check, dict[int, dict[bytes, bytes]]]:
    """The check, and each replica's data at the target index (masked as compared).
    ``peers``: the ``--peers`` every node started with, unless ``views`` names another
    map for a node (e.g. one that joined with ``--join`` lists only itself)."""
    replicas = [read_replica(path, cluster_id, n) for n, path in sorted(data_dirs.items())]
    problems: list[str] = []
    # 1. committed entries agree, index by index
    committed: dict[int, tuple[int, Entry]] = {}
    for r in replicas:
        for index in range(r.first_index, r.commit + 1):
            entry = r.entries.get(index)
            if entry is None:
                continue
            first = committed.setdefault(index, (r.node, entry))
            if first[1] != entry and len(problems) < 10:
                problems.append(
                    f"committed entry {index} differs: node {first[0]} has term "
                    f"{first[1].term} {first[1].kind.name}, node {r.node} term {entry.term} "
                    f"{entry.kind.name}"
                )
    # 2. every replica's state at the highest applied index
    target = max(r.applied for r in replicas)
    states: dict[int, tuple[str, int]] = {}
    data: dict[int, dict[bytes, bytes]] = {}
    unreachable: dict[int, str] = {}
    for r in replicas:
        if r.installing is not None:
            unreachable[r.node] = f"snapshot install {r.installing.index} interrupted"
            continue
        tail: list[Entry] = []
        for index in range(r.applied + 1, target + 1):
            entry = r.entries.get(index)
            known = committed.get(index)
            if entry is None or (index > r.commit and (known is None or known[1] != entry)):
                why = "not in its log" if entry is None else "not known to be committed"
                unreachable[r.node] = f"entry {index} {why}"
                break
            tail.append(entry)
        else:
            kv = replay(r, tail, _config(r.node, (views or {}).get(r.node, peers), settings or {}))
            data[r.node] = {k: comparable(k, v) for k, v in kv.items()}
            states[r.node] = (_digest(sorted(data[r.node].items())), len(kv))
    if len({d for d, _ in states.values()}) > 1:
        base, *rest = sorted(states)
        every: set[bytes] = set().union(*(data[n] for n in states))
        differ = sorted(k for k in every if any(data[n].get(k) != data[base].get(k) for n in rest))
        problems.append(f"replicas differ at index {target} on {len(differ)} keys: {differ[:5]}")
    valid: bool | str = not problems
    if valid and unreachable:
        valid = UNKNOWN
    parts = []
    for r in replicas:
        where = f"node {r.node}: applied {r.applied}, commit {r.commit}, log {r.first_index}-"
        where += str(max(r.entries, default=r.first_index - 1))
        if r.node in states:
            digest, count = states[r.node]
            where += f", {count} keys, {digest[:12]}"
        else:
            where += f", cannot reach {target}: {unreachable[r.node]}"
        parts.append(where)
    text = f"offline-state: {valid} (at index {target}: {'; '.join(parts)})"
    if problems:
        text += "".join(f"\n  {p}" for p in problems)
    details = {"target": target, "states": states, "unreachable": unreachable}
    return Check("offline-state", valid, text, details), data


def _digest(pairs: Sequence[tuple[object, object]]) -> str:
    h = hashlib.sha256()
    for k, v in pairs:
        h.update(repr((k, v)).encode())
    return h.hexdigest()
