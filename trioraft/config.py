"""Typed, validated node configuration: TOML file, then command-line flags on top.

Every invalid setting raises ``ConfigError`` with a one-line message naming the setting.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from wire.errors import ConfigError

DEFAULT_CLIENT_PORT = 7379
DEFAULT_PEER_PORT = 7380
DEFAULT_SESSION_TTL_MS = 3_600_000  # also the state machine's own defaults
DEFAULT_MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's settings. Times are in milliseconds; Raft timeouts are counted in ticks."""

    node_id: int = 1
    peer_addr: str = f"tcp://127.0.0.1:{DEFAULT_PEER_PORT}"
    client_addr: str = f"tcp://127.0.0.1:{DEFAULT_CLIENT_PORT}"
    # Every initial voter's peer address by node id, this node included.
    peers: Mapping[int, str] = field(default_factory=dict)
    data_dir: str = "./trioraft-data"
    cluster_token: str = "trioraft"
    tick_ms: int = 100
    election_ticks: int = 10  # election timeout: 10-20 ticks (etcd: 1 s at 100 ms ticks)
    heartbeat_ticks: int = 1
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    max_message_bytes: int = 64 << 20
    max_append_bytes: int = 1 << 20
    max_inflight: int = 256
    max_read_rounds: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # True: followers learn a commit index from the next append, not from an empty append
    # sent at once; if none carries it within lazy_commit_ms, an empty one does (0: the next
    # heartbeat). False: etcd's way, an empty append at once (two more messages per commit)
    lazy_commit: bool = True
    lazy_commit_ms: int = 2
    # --- client API (docs/operations.md) ---
    default_consistency: str = "linearizable"  # reads that name no level: or lease, eventual
    lease_reads: bool = True  # serve lease reads from the leader alone while its lease holds
    # lease = election timeout - this margin; None: 2 ticks + 20% of the election timeout
    lease_drift_ms: int | None = None
    max_txn_ops: int = 128  # compares + ops of one transaction
    max_scan_keys: int = 1000  # keys per scan page
    session_ttl_ms: int = DEFAULT_SESSION_TTL_MS  # of log time without a write
    max_sessions: int = DEFAULT_MAX_SESSIONS
    watch_enabled: bool = True
    watch_history: int = 10_000  # events kept for watches that start in the past
    watch_buffer: int = 1024  # events buffered per watcher before it is cancelled
    watch_progress_ms: int = 1000  # progress message to an idle watcher at least this often
    max_watchers: int = 10_000
    # --- snapshots and log compaction (docs/snapshots.md) ---
    snapshot_entries: int = 100_000  # compact the log once this many were applied since...
    snapshot_bytes: int = 64 << 20  # ...or this many bytes of entries, whichever comes first
    snapshot_keep: int = 2  # snapshot files kept (the newest)
    snapshot_catchup_entries: int = 1000  # entries kept below a compaction for slow followers
    snapshot_chunk_bytes: int = 512 << 10  # bytes per chunk of a snapshot transfer
    snapshot_window: int = 4  # chunks in flight (unacknowledged) per transfer
    snapshot_dir: str | None = None  # default: <data_dir>/snapshots
    # --- membership (docs/membership.md) ---
    join: str = ""  # client endpoints of a running cluster to join as a learner ("": bootstrap)
    join_as_voter: bool = True  # join: promoted to voter automatically once caught up
    promote_lag: int = 100  # leader: promote an auto-promote learner this close to its log
    bootstrap_timeout_ms: int = 30_000  # new cluster: wait this long at most for the members

    def __post_init__(self) -> None:
        peers = dict(self.peers) or {self.node_id: self.peer_addr}
        object.__setattr__(self, "peers", peers)
        if self.node_id < 1:
            raise ConfigError(f"node_id must be a positive integer, got {self.node_id}")
        if self.node_id not in peers:
            raise ConfigError(f"peers does not list this node (id {self.node_id})")
        for node_id, addr in peers.items():
            if node_id < 1:
                raise ConfigError(f"peers: node id must be positive, got {node_id}")
            _check_addr(f"peers[{node_id}]", addr)
        if len(set(peers.values())) != len(peers):
            raise ConfigError("peers: two nodes share one address")
        _check_addr("peer_addr", self.peer_addr)
        _check_addr("client_addr", self.client_addr)
        if self.peer_addr == self.client_addr:
            raise ConfigError("peer_addr and client_addr must differ")
        positive = (
            "tick_ms",
            "election_ticks",
            "heartbeat_ticks",
            "max_key_bytes",
            "max_value_bytes",
            "max_message_bytes",
            "max_append_bytes",
            "max_inflight",
            "max_txn_ops",
            "max_scan_keys",
            "session_ttl_ms",
            "max_sessions",
            "watch_buffer",
            "watch_progress_ms",
            "max_watchers",
            "snapshot_entries",
            "snapshot_bytes",
            "snapshot_keep",
            "snapshot_chunk_bytes",
            "snapshot_window",
            "bootstrap_timeout_ms",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"election_ticks ({self.election_ticks}) must exceed "
                f"heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.max_value_bytes + self.max_key_bytes + 1024 > self.max_message_bytes:
            raise ConfigError("max_message_bytes must exceed max_key_bytes + max_value_bytes")
        for name in (
            "max_read_rounds",
            "lazy_commit_ms",
            "promote_lag",
            "snapshot_catchup_entries",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.join and set(peers) != {self.node_id}:
            raise ConfigError(
                "join: a joining node learns its peers from the cluster; do not pass --peers"
            )
        if self.snapshot_chunk_bytes + 4096 > self.max_message_bytes:
            raise ConfigError("max_message_bytes must exceed snapshot_chunk_bytes + 4096")
        if self.watch_history < 0:
            raise ConfigError(f"watch_history must be >= 0, got {self.watch_history}")
        if self.default_consistency not in ("linearizable", "lease", "eventual"):
            raise ConfigError(
                "default_consistency: expected linearizable, lease or eventual, "
                f"got {self.default_consistency!r}"
            )
        self._check_lease()

    @property
    def election_timeout_ms(self) -> int:
        """The shortest election timeout: ``election_ticks`` ticks."""
        return self.election_ticks * self.tick_ms

    @property
    def lease_drift(self) -> int:
        """The lease's clock-drift margin in ms (``lease_drift_ms`` or its default)."""
        if self.lease_drift_ms is not None:
            return self.lease_drift_ms
        return 2 * self.tick_ms + self.election_timeout_ms // 5

    @property
    def lease_ms(self) -> int:
        """How long a leader serves lease reads after a quorum acknowledged a heartbeat
        (0 when lease reads are off): the election timeout minus the drift margin."""
        if not self.lease_reads:
            return 0
        return max(0, self.election_timeout_ms - self.lease_drift)

    def _check_lease(self) -> None:
        """Lease reads are safe only with a margin for tick granularity and clock drift:
        at least 2 ticks + 5% of the election timeout, and less than the timeout itself.
        (The default margin always meets the first; where it leaves no lease, at an
        election timeout of 2 ticks, lease reads fall back to ReadIndex.)"""
        if not self.lease_reads or self.lease_drift_ms is None:
            return
        election = self.election_timeout_ms
        least = 2 * self.tick_ms + election // 20
        if self.lease_drift < least:
            raise ConfigError(
                f"lease_drift_ms: {self.lease_drift} ms is too small for lease reads; at "
                f"least {least} ms (2 ticks + 5% of the {election} ms election timeout) is "
                "needed: raise it or set lease_reads = false"
            )
        if self.lease_drift >= election:
            raise ConfigError(
                f"lease_drift_ms: {self.lease_drift} ms leaves no lease within the {election} "
                "ms election timeout: lower it, raise election_ticks or set lease_reads = false"
            )

    @property
    def cluster_id(self) -> int:
        """A 64-bit id derived from the token and the initial members' ids.

        Addresses are left out on purpose (etcd mixes in its URLs): a node may reach a peer
        through an address of its own (NAT, a proxy, a fault-injecting test proxy), so two
        members can list different addresses for the same peer. Give each cluster its own
        ``cluster_token`` to keep clusters with the same member ids apart.

        A node that joins a running cluster (``join``) cannot derive it: it gets it from
        the cluster and keeps it in its data dir (``Node.cluster_id``).
        """
        members = ",".join(str(i) for i in sorted(self.peers))
        digest = hashlib.blake2b(f"{self.cluster_token}|{members}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big")

    def with_overrides(self, **overrides: Any) -> NodeConfig:
        """A copy with the given (non-None) settings replaced, validated again."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _check_addr(name: str, addr: str) -> None:
    if not isinstance(addr, str) or not addr.startswith("tcp://") or ":" not in addr[6:]:
        raise ConfigError(f"{name}: expected tcp://HOST:PORT, got {addr!r}")
    port = addr.rsplit(":", 1)[1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}: bad port in {addr!r}")


def parse_peers(text: str) -> dict[int, str]:
    """Parse ``1=tcp://host:port,2=tcp://host:port``."""
    peers: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, addr = item.partition("=")
        if not sep or not node.strip().isdigit():
            raise ConfigError(f"--peers: expected ID=tcp://HOST:PORT, got {item!r}")
        node_id = int(node)
        if node_id in peers:
            raise ConfigError(f"--peers: node {node_id} listed twice")
        peers[node_id] = addr.strip()
    return peers


def load_config(path: str | None = None, **overrides: Any) -> NodeConfig:
    """Read a TOML file (if given), then apply overrides (flags); validate the result."""
    settings: dict[str, Any] = {}
    if path is not None:
        try:
            with Path(path).open("rb") as stream:
                raw = tomllib.load(stream)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        known = {f.name for f in fields(NodeConfig)}
        for key, value in raw.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            settings[name] = value
        if isinstance(settings.get("peers"), Mapping):
            try:
                settings["peers"] = {int(k): v for k, v in settings["peers"].items()}
            except ValueError:
                raise ConfigError(f"config file {path}: peers keys must be node ids") from None
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for f in fields(NodeConfig):
        value = settings.get(f.name)
        if value is not None and f.type in ("int", "bool") and type(value).__name__ != f.type:
            raise ConfigError(f"{f.name}: expected {f.type}, got {value!r}")
    try:
        return NodeConfig(**settings)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
