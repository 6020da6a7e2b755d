"""Simulated nodes (the shell around each ``RawNode``), their disks, and the clients.

The shell follows the ``Ready`` contract of ``RawNode``: ``messages`` leave at once, the
persist of ``hard_state`` + ``entries`` takes simulated time, and only when it is done are
``persisted_messages`` sent, ``committed_entries`` applied and ``advance`` called. One
``Ready`` is outstanding at a time, so persists happen in order.

A leader's Ready (no ``persisted_messages``, no new term or vote) is written unsynced at
once, as the real node does: ``advance(rd, synced=False)``, and a sync of everything written
so far completes later (``synced``); meanwhile only ``ready(apply_only=True)`` is taken.

A crash loses everything in memory. The ``Disk`` keeps what reached it: the hard state and
log written by completed persists and syncs (a crash during a persist either loses that
write or lets it complete, without the messages or ``advance`` that follow it), a prefix
(perhaps empty) of the unsynced writes after the last sync, and the state machine as of
its last sync (applies are written unsynced, as in the real node, and may be lost: the log
replays them after the restart; a state-machine sync syncs the log writes before it too).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from sim import describe
from trioraft.core import CoreConfig, RawNode, Ready, Role
from trioraft.core.raft import Raft
from wire.errors import NotLeader, ProposalDropped
from wire.messages import Entry, HardState, Message


class Host(Protocol):
    """What a node's shell needs from the simulation."""

    now: int
    rng: random.Random

    def send(self, msg: Message) -> None: ...
    def schedule_persist(self, node: SimNode, delay: int) -> None: ...
    def schedule_sync(self, node: SimNode, delay: int, index: int, term: int) -> None: ...
    def on_apply(self, node: SimNode, entry: Entry) -> None: ...
    def on_durable_send(self, node: SimNode, msg: Message) -> None: ...
    def on_read_state(self, node: SimNode, context: int, index: int) -> None: ...
    def trace(self, text: str, *args: object) -> None: ...


@dataclass
class Disk:
    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    sm: list[Entry] = field(default_factory=list)  # applied entries, in index order
    synced_sm: int = 0  # len(sm) as of the last state-machine sync
    unsynced: list[Ready] = field(default_factory=list)  # written after the last sync

    def write(self, rd: Ready) -> None:
        """Write ``rd`` and sync: every earlier write is durable with it."""
        self.sync()
        self._replay(rd)

    def sync(self) -> None:
        for rd in self.unsynced:
            self._replay(rd)
        self.unsynced.clear()

    def crash(self, keep: int) -> None:
        """Power loss: the first ``keep`` unsynced writes survive, the rest are lost."""
        for rd in self.unsynced[:keep]:
            self._replay(rd)
        self.unsynced.clear()

    def _replay(self, rd: Ready) -> None:
        if rd.entries:
            first = rd.entries[0].index
            if first > len(self.entries) + 1:
                raise AssertionError(f"persist leaves a gap: {first} after {len(self.entries)}")
            del self.entries[first - 1 :]
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state


@dataclass
class Pending:
    """A proposal accepted by a node's core, waiting to be applied there."""

    client: int
    value: bytes
    term: int


class SimNode:
    def __init__(self, config: CoreConfig, seed: int) -> None:
        self.id = config.node_id
        self.config = config
        self.seed = seed
        self.disk = Disk()
        self.node: RawNode | None = None
        self.incarnation = 0
        self.outstanding: Ready | None = None
        self.syncing = False  # a sync of unsynced writes is under way
        self.pending: dict[int, Pending] = {}  # index -> proposal, this incarnation only
        self.start()

    @property
    def up(self) -> bool:
        return self.node is not None

    @property
    def raft(self) -> Raft:
        assert self.node is not None
        return self.node._raft

    def start(self) -> None:
        d = self.disk
        self.incarnation += 1
        self.node = RawNode(
            self.config,
            hard_state=d.hard_state,
            entries=list(d.entries),
            applied=len(d.sm),
            rng=random.Random(self.seed * 7919 + self.incarnation),
            fresh_start=self.incarnation == 1,
        )
        self.outstanding = None
        self.syncing = False
        self.pending = {}

    def crash(self, host: Host) -> str:
        """Lose memory; an outstanding persist may or may not have reached the disk."""
        how = "idle"
        d = self.disk
        if self.outstanding is not None:
            if host.rng.random() < 0.5:
                d.write(self.outstanding)
                how = "persist completed, nothing sent"
            else:
                how = "persist lost"
        if d.unsynced:
            keep = host.rng.choice((0, host.rng.randint(0, len(d.unsynced))))
            how += f", {keep} of {len(d.unsynced)} unsynced writes kept"
            d.crash(keep)
        del d.sm[d.synced_sm :]  # unsynced applies are lost; the log replays them
        self.node = None
        self.outstanding = None
        self.syncing = False
        self.pending = {}
        return how

    # --- the shell loop ------------------------------------------------------------------

    def pump(self, host: Host) -> None:
        """Take the next Ready if none is outstanding: send, then start its persist."""
        node = self.node
        if node is None or self.outstanding is not None:
            return
        # As the node: while a sync runs, only what needs no write (the next batch waits).
        apply_only = self.syncing
        if not node.has_ready(apply_only=apply_only):
            return
        rd = node.ready(apply_only=apply_only)
        self.outstanding = rd
        if rd.soft_state is not None:
            host.trace(
                "%d ready: %s lead=%d term=%d",
                self.id,
                rd.soft_state.role.name,
                rd.soft_state.leader_id,
                node.status.term,
            )
        for m in rd.messages:
            host.send(m)
        if rd.hard_state is None and not rd.entries:
            self.finish_persist(host)  # nothing to write: no disk round trip
        elif self.may_write_unsynced(rd):
            self.disk.unsynced.append(rd)
            self.finish_persist(host, synced=False)
        else:
            host.schedule_persist(self, host.rng.randint(1, 6))

    def may_write_unsynced(self, rd: Ready) -> bool:
        """As ``Persister.write_unsynced``: nothing in the Ready waits for the sync."""
        hs, durable = rd.hard_state, self.disk.hard_state
        return (
            bool(rd.entries)
            and not rd.persisted_messages
            and (hs is None or (hs.term, hs.vote) == (durable.term, durable.vote))
        )

    def start_sync(self, host: Host) -> None:
        """Sync the unsynced writes, unless a sync is under way (it starts the next)."""
        node = self.node
        if node is None or self.syncing or (target := node.unsynced()) is None:
            return
        self.syncing = True
        host.schedule_sync(self, host.rng.randint(1, 6), *target)

    def finish_sync(self, host: Host, index: int, term: int) -> None:
        node = self.node
        assert node is not None
        self.disk.sync()
        self.syncing = False
        host.trace("%d synced up to %d (term %d)", self.id, index, term)
        node.synced(index, term)
        self.start_sync(host)
        self.pump(host)

    def finish_persist(self, host: Host, *, synced: bool = True) -> None:
        rd = self.outstanding
        node = self.node
        assert rd is not None and node is not None
        if synced:
            self.disk.write(rd)
        if not synced:
            host.trace(
                "%d wrote unsynced entries %d..%d",
                self.id,
                rd.entries[0].index,
                rd.entries[-1].index,
            )
        elif rd.hard_state is not None or rd.entries:
            hs = describe.hard_state(rd.hard_state) if rd.hard_state else "hard state unchanged"
            ents = f"entries {rd.entries[0].index}..{rd.entries[-1].index}" if rd.entries else ""
            host.trace("%d persisted %s", self.id, ", ".join(x for x in (hs, ents) if x))
        for m in rd.persisted_messages:
            host.on_durable_send(self, m)
            host.send(m)
        d = self.disk
        for e in rd.committed_entries:
            if e.index != len(d.sm) + 1:
                raise AssertionError(f"node {self.id} applies {e.index} after {len(d.sm)}")
            d.sm.append(e)
            host.on_apply(self, e)
        if rd.committed_entries and host.rng.random() < 0.3:
            d.sync()  # one WAL: the log writes before the applies become durable too
            d.synced_sm = len(d.sm)
        for rs in rd.read_states:
            host.on_read_state(self, rs.context, rs.index)
        self.outstanding = None
        node.advance(rd, synced=synced)
        if not synced:
            self.start_sync(host)
        self.pump(host)

    def propose(self, host: Host, client: int, value: bytes) -> tuple[str, int]:
        """Returns ("ok", index), ("not_leader", hint), ("dropped", 0) or ("down", 0)."""
        node = self.node
        if node is None:
            return "down", 0
        try:
            index, term = node.propose(value)
        except NotLeader as exc:
            return "not_leader", exc.leader_id
        except ProposalDropped:
            return "dropped", 0
        self.pending[index] = Pending(client, value, term)
        self.pump(host)
        return "ok", index

    def read_index(self, host: Host, context: int) -> str:
        """Ask for a ReadIndex read: "ok" (a ReadState follows), "not_leader" or "down"."""
        node = self.node
        if node is None:
            return "down"
        try:
            node.read_index(context)
        except NotLeader:
            return "not_leader"
        self.pump(host)
        return "ok"

    def lease_read_index(self) -> int | None:
        """The read index of a lease read (thesis §6.4.1): the commit index, if the lease holds."""
        node = self.node
        if node is None or not node.lease_valid():
            return None
        return node.status.commit

    def is_leader(self) -> bool:
        return self.node is not None and self.node._raft.role is Role.LEADER


@dataclass
class Client:
    """Proposes unique values, one at a time, and reads, at the node it believes leads."""

    id: int
    leader: int
    seq: int = 0
    waiting: bytes | None = None  # proposed, not acknowledged yet
    waiting_since: int = 0
    acked: int = 0
    gave_up: int = 0
