"""A tiny in-process network of RawNodes for behaviour tests (no trio, no clock).

``Network`` plays the shell for every node: it persists each ``Ready`` into a ``MemStorage``
(the only state that survives ``restart``), queues ``messages`` and ``persisted_messages``,
records applied entries and read states, then calls ``advance``. Messages are delivered in
FIFO order by ``deliver``; ``cut``/``isolate``/``drop`` make links lossy. Everything is
deterministic given the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from trioraft.core import CoreConfig, RawNode, ReadState, Ready, Role
from wire.messages import Entry, EntryKind, HardState, Message

MessageFilter = Callable[[Message], bool]


def ents(*terms: int, start: int = 1) -> list[Entry]:
    """Entries with the given terms at consecutive indexes from ``start`` (NORMAL, data=b"")."""
    return [Entry(t, start + i, EntryKind.NORMAL, b"") for i, t in enumerate(terms)]


@dataclass
class MemStorage:
    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    applied: int = 0

    def persist(self, rd: Ready) -> None:
        if rd.entries:
            first = rd.entries[0].index
            assert first <= len(self.entries) + 1, "gap in persisted log"
            del self.entries[first - 1 :]
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state


@dataclass
class Network:
    ids: tuple[int, ...]
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    nodes: dict[int, RawNode] = field(default_factory=dict)
    storage: dict[int, MemStorage] = field(default_factory=dict)
    applied: dict[int, list[Entry]] = field(default_factory=dict)
    reads: dict[int, list[ReadState]] = field(default_factory=dict)
    readies: dict[int, list[Ready]] = field(default_factory=dict)
    queue: list[Message] = field(default_factory=list)
    delivered: list[Message] = field(default_factory=list)  # trace, for determinism checks
    down: set[int] = field(default_factory=set)
    cuts: set[tuple[int, int]] = field(default_factory=set)  # (src, dst) links that drop
    drop_filter: MessageFilter | None = None
    pending: dict[int, Ready] = field(default_factory=dict)  # taken, not yet persisted

    @classmethod
    def create(
        cls,
        n: int | Iterable[int],
        *,
        seed: int = 0,
        logs: dict[int, list[Entry]] | None = None,
        hard_states: dict[int, HardState] | None = None,
        **overrides: Any,
    ) -> Network:
        ids = tuple(range(1, n + 1)) if isinstance(n, int) else tuple(n)
        net = cls(ids=ids, seed=seed, overrides=overrides)
        for i in ids:
            st = MemStorage()
            if logs and i in logs:
                st.entries = list(logs[i])
            if hard_states and i in hard_states:
                st.hard_state = hard_states[i]
            net.storage[i] = st
            net.applied[i] = []
            net.reads[i] = []
            net.readies[i] = []
            net.start(i)
        return net

    def config(self, node_id: int) -> CoreConfig:
        return CoreConfig(node_id=node_id, voters=self.ids, **self.overrides)

    def start(self, node_id: int, *, fresh_start: bool = True) -> None:
        st = self.storage[node_id]
        self.nodes[node_id] = RawNode(
            self.config(node_id),
            hard_state=st.hard_state,
            entries=st.entries,
            applied=st.applied,
            rng=random.Random(self.seed * 1_000 + node_id),
            fresh_start=fresh_start,
        )

    def restart(self, node_id: int) -> None:
        """Crash and restart: only what reached MemStorage survives; queued mail is lost."""
        self.queue = [m for m in self.queue if node_id not in (m.src, m.dst)]
        self.pending.pop(node_id, None)
        self.start(node_id, fresh_start=False)

    # --- the shell ----------------------------------------------------------------------

    def process(self, node_id: int) -> bool:
        """Handle one Ready of ``node_id`` as a shell would; False if it had none."""
        return self.begin(node_id) and self.finish(node_id)

    def begin(self, node_id: int) -> bool:
        """Take a Ready and send its ``messages`` (persist still pending)."""
        node = self.nodes[node_id]
        if node_id in self.down or node_id in self.pending or not node.has_ready():
            return False
        rd = node.ready()
        self.readies[node_id].append(rd)
        self.pending[node_id] = rd
        self.queue.extend(rd.messages)
        return True

    def finish(self, node_id: int) -> bool:
        """Complete the persist of the pending Ready, then send/apply/advance."""
        rd = self.pending.pop(node_id, None)
        if rd is None or node_id in self.down:
            return False
        st = self.storage[node_id]
        st.persist(rd)
        self.queue.extend(rd.persisted_messages)  # only after the persist above
        self.applied[node_id].extend(rd.committed_entries)
        if rd.committed_entries:
            st.applied = rd.committed_entries[-1].index
        self.reads[node_id].extend(rd.read_states)
        self.nodes[node_id].advance(rd)
        return True

    def process_all(self) -> bool:
        return any([self.process(i) for i in self.ids])

    def dropped(self, m: Message) -> bool:
        return (
            m.src in self.down
            or m.dst in self.down
            or (m.src, m.dst) in self.cuts
            or (self.drop_filter is not None and self.drop_filter(m))
        )

    def deliver(self, keep: MessageFilter | None = None) -> int:
        """Deliver queued messages (those matching ``keep`` if given); returns how many."""
        batch, self.queue = self.queue, []
        count = 0
        for m in batch:
            if keep is not None and not keep(m):
                self.queue.append(m)
                continue
            if self.dropped(m):
                continue
            self.delivered.append(m)
            self.nodes[m.dst].step(m)
            count += 1
        return count

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            worked = self.process_all()
            if not self.queue and not worked:
                return
            self.deliver()
        raise AssertionError("network did not stabilize")

    def tick(self, node_id: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[node_id].tick()

    def tick_all(self, n: int = 1, *, stabilize: bool = True) -> None:
        """Tick every up node once per round, stabilizing after each round."""
        for _ in range(n):
            for i in self.ids:
                if i not in self.down:
                    self.nodes[i].tick()
            if stabilize:
                self.stabilize()

    # --- faults -------------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self.cuts |= {(a, b), (b, a)}

    def isolate(self, node_id: int) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self.cut(x, y)

    def heal(self) -> None:
        self.cuts.clear()
        self.drop_filter = None

    # --- queries ------------------------------------------------------------------------

    def role(self, node_id: int) -> Role:
        return self.nodes[node_id].status.role

    def leaders(self) -> list[int]:
        return [i for i in self.ids if self.nodes[i].status.role is Role.LEADER]

    def leader(self) -> int:
        leaders = self.leaders()
        assert len(leaders) == 1, f"expected one leader, got {leaders}"
        return leaders[0]

    def elect(self, node_id: int) -> None:
        self.nodes[node_id].campaign()
        self.stabilize()
        assert self.nodes[node_id].status.role is Role.LEADER, self.nodes[node_id].status

    def tick_until_leader(self, *, exclude: Iterable[int] = (), max_rounds: int = 200) -> int:
        """Tick every up node until a leader not in ``exclude`` exists; return it."""
        excluded = set(exclude)
        for _ in range(max_rounds):
            self.tick_all()
            found = [i for i in self.leaders() if i not in excluded and i not in self.down]
            if found:
                assert len(found) == 1, found
                return found[0]
        raise AssertionError("no leader elected")

    def terms(self, node_id: int) -> list[int]:
        return [e.term for e in self.storage[node_id].entries]

    def applied_data(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.kind is EntryKind.NORMAL]

    def sent(self, kind: type, *, src: int | None = None, dst: int | None = None) -> list[Any]:
        """Delivered messages of type ``kind`` (optionally from ``src`` / to ``dst``)."""
        return [
            m
            for m in self.delivered
            if isinstance(m, kind)
            and (src is None or m.src == src)
            and (dst is None or m.dst == dst)
        ]


def make_node(
    node_id: int = 1,
    voters: tuple[int, ...] = (1, 2, 3),
    *,
    hard_state: HardState | None = None,
    entries: Iterable[Entry] = (),
    applied: int = 0,
    seed: int = 0,
    **overrides: Any,
) -> RawNode:
    """A lone RawNode (a fresh start), for tests that craft its input messages by hand."""
    return RawNode(
        CoreConfig(node_id=node_id, voters=voters, **overrides),
        hard_state=hard_state or HardState(),
        entries=list(entries),
        applied=applied,
        rng=random.Random(seed),
        fresh_start=True,
    )


def drain(node: RawNode) -> Ready:
    """Take one Ready and advance it at once (an instantly durable shell)."""
    rd = node.ready()
    node.advance(rd)
    return rd
