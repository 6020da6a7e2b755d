"""The deterministic simulator: a discrete-event loop over simulated nodes, network, disks
and clients, with every safety checker run after every step.

One ``random.Random(seed)`` decides everything (the core's per-node randomness is seeded
from it too), events are ordered by ``(time, sequence number)``, and nothing reads a clock,
so one seed reproduces one run exactly. A run has two phases:

1. ``steps`` events under faults: drops, duplicates, delays/reordering, symmetric,
   asymmetric and bridge partitions, crashes (also in the middle of a persist: the write
   is lost, or done without what follows it; and with a leader's unsynced writes: a
   prefix of them survives, perhaps none) and restarts from what was durable, crashes
   of new leaders, leadership transfers and forced campaigns. Meanwhile clients propose
   unique values (acknowledged when the leader applies them) and issue ReadIndex and
   lease reads. Each seed also draws a profile: pre-vote and check-quorum on or off, flow
   control window, message size cap, fault rate.
2. Liveness: the network heals, every node restarts, faults stop; within
   ``liveness_ticks`` ticks a value proposed after the heal must be acknowledged and every
   node must have applied it; then clients stop and every node must catch up with every
   acknowledged write.

A failure raises ``SimFailure`` whose message names the broken invariant, the seed, the
command line that reproduces the run, and the last events (``TRACE_EVENTS``).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass

from sim import describe
from sim.checkers import Checker, InvariantViolation
from sim.cluster import Client, SimNode
from sim.network import CALM, Network
from trioraft.core import CoreConfig, Role
from wire.errors import InvalidRequest, NotLeader, ProposalDropped
from wire.messages import Entry, Message

TRACE_EVENTS = 200
TICK, DELIVER, PERSIST, CLIENT, FAULT, RESTART, CRASH, SYNC = range(8)
FAULTS = (
    ("partition", 4),
    ("heal", 3),
    ("quality", 2),
    ("crash", 2),
    ("crash_leader", 1),
    ("restart", 2),
    ("transfer", 1),
    ("campaign", 1),
)


@dataclass(frozen=True)
class SimConfig:
    seed: int
    nodes: int = 5
    steps: int = 3000
    bugs: frozenset[str] = frozenset()
    skip_checks: frozenset[str] = frozenset()  # invariants to leave unchecked (experiments)
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    tick_interval: int = 10  # simulated time units per tick
    clients: int = 3
    liveness_ticks: int = 400  # bound on ticks after the heal to elect and make progress

    def command(self) -> str:
        bugs = "".join(f" --bug {b}" for b in sorted(self.bugs))
        bugs += "".join(f" --skip-check '{c}'" for c in sorted(self.skip_checks))
        return (
            f".venv/bin/python tests/sim/run.py --seed {self.seed} --nodes {self.nodes} "
            f"--steps {self.steps}{bugs}"
        )


@dataclass
class Stats:
    seed: int
    nodes: int
    steps: int = 0
    time: int = 0
    max_term: int = 0
    commit: int = 0
    acked: int = 0
    crashes: int = 0
    partitions: int = 0
    delivered: int = 0
    dropped: int = 0
    liveness_ticks: int = 0  # ticks from the heal until a new write was applied everywhere
    profile: str = ""


class SimFailure(AssertionError):
    def __init__(self, report: str, invariant: str) -> None:
        super().__init__(report)
        self.invariant = invariant


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = rng = random.Random(cfg.seed)
        self.now = 0
        self._seq = 0
        self._events: list[tuple[int, int, int, object, int]] = []
        ids = list(range(1, cfg.nodes + 1))
        self.pre_vote = rng.random() < 0.8
        self.check_quorum = rng.random() < 0.8
        self.max_inflight = rng.choice((1, 2, 8, 256))
        self.max_bytes = rng.choice((8, 64, 1 << 20))
        self.fault_gap = rng.choice((60, 150, 400))
        # Some runs crash many new leaders soon after their election (Figure 8's recipe).
        self.leader_kill = rng.choice((0.0, 0.0, 0.2, 0.5))
        # Half the seeds run with lazy commit (the node's default). Drawn from a generator of
        # its own so that the main stream, and so every earlier seed's draws, stay as they were.
        self.lazy_commit = random.Random(cfg.seed * 7919 + 1).random() < 0.5
        # ReadIndex rounds awaiting a quorum at once: the node's default (1), none, or two.
        self.max_read_rounds = random.Random(cfg.seed * 7919 + 2).choice((1, 0, 2))
        self.all_ids = tuple(ids)
        self.nodes = {
            i: SimNode(
                CoreConfig(
                    node_id=i,
                    voters=tuple(ids),
                    election_ticks=cfg.election_ticks,
                    heartbeat_ticks=cfg.heartbeat_ticks,
                    pre_vote=self.pre_vote,
                    check_quorum=self.check_quorum,
                    max_inflight=self.max_inflight,
                    max_append_bytes=self.max_bytes,
                    lazy_commit=self.lazy_commit,
                    max_read_rounds=self.max_read_rounds,
                    planted_bugs=cfg.bugs,
                ),
                seed=cfg.seed * 100 + i,
            )
            for i in ids
        }
        self.net = Network(rng, ids)
        self.checker = Checker(self.nodes, cfg.skip_checks)
        self.clients = [Client(c, rng.choice(ids)) for c in range(1, cfg.clients + 1)]
        self.trace_buf: deque[tuple[int, str, tuple[object, ...]]] = deque(maxlen=TRACE_EVENTS)
        self.seen: dict[int, tuple[Role, int]] = {}
        self.faults_on = True
        self.clients_on = True
        self._read_seq = 0
        self.liveness_start: int | None = None
        self.liveness_index = 0  # index of a value proposed and acked after the heal
        self.stats = Stats(cfg.seed, cfg.nodes)
        self.stats.profile = (
            f"pre_vote={self.pre_vote} check_quorum={self.check_quorum} "
            f"max_inflight={self.max_inflight} max_bytes={self.max_bytes} "
            f"fault_gap={self.fault_gap} leader_kill={self.leader_kill} "
            f"lazy_commit={self.lazy_commit} max_read_rounds={self.max_read_rounds}"
        )
        for i in ids:
            self._push(rng.randint(1, cfg.tick_interval), TICK, i)
        for c in self.clients:
            self._push(rng.randint(1, 50), CLIENT, c.id)
        self._push(rng.randint(1, self.fault_gap), FAULT, 0)

    # --- the Host interface used by the nodes --------------------------------------------

    def send(self, msg: Message) -> None:
        delays = self.net.delays()
        if not delays:
            self.stats.dropped += 1
            self.trace("drop %s", msg)
        for d in delays:
            self._push(self.now + d, DELIVER, msg)

    def schedule_persist(self, node: SimNode, delay: int) -> None:
        self._push(self.now + delay, PERSIST, node.id, node.incarnation)

    def schedule_sync(self, node: SimNode, delay: int, index: int, term: int) -> None:
        self._push(self.now + delay, SYNC, (node.id, index, term), node.incarnation)

    def on_apply(self, node: SimNode, entry: Entry) -> None:
        self.checker.on_apply(node.id, entry)
        p = node.pending.pop(entry.index, None)
        if p is None:
            return
        client = self.clients[p.client - 1]
        if entry.term == p.term:
            if entry.data != p.value:
                self.checker.fail(
                    "acknowledged write", f"{p.value!r} accepted at {entry.index}, applied {entry}"
                )
            self.checker.on_ack(p.value, entry.index)
            self.stats.acked += 1
            self.trace("%d acks %r at %d", node.id, p.value, entry.index)
            if self.liveness_start is not None and not self.liveness_index:
                if int(p.value.split(b"@")[1]) >= self.liveness_start:
                    self.liveness_index = entry.index
        if client.waiting == p.value:
            client.waiting = None
            client.acked += entry.term == p.term

    def on_durable_send(self, node: SimNode, msg: Message) -> None:
        self.checker.on_durable_send(node, msg)

    def on_read_state(self, node: SimNode, context: int, index: int) -> None:
        self.trace("%d confirms read %d at index %d", node.id, context, index)
        self.checker.on_read(node.id, "ReadIndex", context, index)

    def trace(self, text: str, *args: object) -> None:
        self.trace_buf.append((self.now, text, args))

    # --- the event loop ------------------------------------------------------------------

    def _push(self, time: int, kind: int, a: object, b: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, self._seq, kind, a, b))

    def run(self) -> Stats:
        cfg = self.cfg
        try:
            for _ in range(cfg.steps):
                self.step()
            self.start_liveness()
            deadline = self.now + cfg.liveness_ticks * cfg.tick_interval
            while not self.live():
                if self.now > deadline:
                    self.checker.fail(
                        "liveness",
                        f"no progress within {cfg.liveness_ticks} ticks after the heal "
                        f"(acked index after heal: {self.liveness_index or 'none'})",
                    )
                self.step()
            self.stats.liveness_ticks = (self.now - (self.liveness_start or 0)) // cfg.tick_interval
            # Drain: clients stop; every node must catch up with every acknowledged write.
            self.clients_on = False
            deadline = self.now + cfg.liveness_ticks * cfg.tick_interval
            while not self.caught_up():
                if self.now > deadline:
                    self.checker.fail(
                        "liveness",
                        f"nodes did not catch up within {cfg.liveness_ticks} ticks once "
                        f"clients stopped: applied {self.applied_counts()}",
                    )
                self.step()
            self.checker.check_final()
        except InvariantViolation as exc:
            raise SimFailure(self.report(exc), exc.invariant) from None
        st = self.stats
        st.time = self.now
        st.max_term = max(sn.disk.hard_state.term for sn in self.nodes.values())
        st.commit = max(len(sn.disk.sm) for sn in self.nodes.values())
        return st

    def step(self) -> None:
        time, _, kind, a, b = heapq.heappop(self._events)
        self.now = time
        self.stats.steps += 1
        # The nodes this event can change; the checkers look at those (faults: all).
        touched: tuple[int, ...] = self.all_ids
        if kind in (TICK, PERSIST, RESTART, CRASH):
            assert isinstance(a, int)
            touched = (a,)
        elif kind == DELIVER:
            touched = (a.dst,)  # type: ignore[attr-defined]
        elif kind == SYNC:
            touched = (a[0],)  # type: ignore[index]
        elif kind == CLIENT:
            assert isinstance(a, int)
            touched = (self.clients[a - 1].leader,)
        if kind == TICK:
            assert isinstance(a, int)
            sn = self.nodes[a]
            if sn.node is not None:
                sn.node.tick()
                sn.pump(self)
            self._push(time + self.cfg.tick_interval, TICK, a)
        elif kind == DELIVER:
            self.deliver(a)  # type: ignore[arg-type]
        elif kind == PERSIST:
            assert isinstance(a, int)
            sn = self.nodes[a]
            if sn.up and sn.incarnation == b and sn.outstanding is not None:
                sn.finish_persist(self)
        elif kind == SYNC:
            node_id, index, term = a  # type: ignore[misc]
            sn = self.nodes[node_id]
            if sn.up and sn.incarnation == b and sn.syncing:
                sn.finish_sync(self, index, term)
        elif kind == CLIENT:
            self.client_step(self.clients[a - 1])  # type: ignore[index]
        elif kind == FAULT:
            if self.faults_on:
                self.fault()
                gap = self.fault_gap
                self._push(time + self.rng.randint(gap // 2, gap * 3 // 2), FAULT, 0)
        elif kind == RESTART:
            assert isinstance(a, int)
            self.restart(a)
        elif kind == CRASH:
            assert isinstance(a, int)
            sn = self.nodes[a]
            if self.faults_on and sn.up and sn.incarnation == b:
                self.crash(a)
        self.note_changes(touched)
        self.checker.check(touched)

    def deliver(self, m: Message) -> None:
        sn = self.nodes[m.dst]
        if sn.node is None:
            self.trace("lost (%d down) %s", m.dst, m)
            return
        if not self.net.allows(m.src, m.dst):
            self.stats.dropped += 1
            self.trace("cut %s", m)
            return
        self.stats.delivered += 1
        self.trace("deliver %s", m)
        sn.node.step(m)
        sn.pump(self)

    def note_changes(self, touched: tuple[int, ...]) -> None:
        for i in touched:
            sn = self.nodes[i]
            if sn.node is None:
                continue
            raft = sn.node._raft
            now = (raft.role, raft.term)
            if self.seen.get(i) != now:
                self.seen[i] = now
                self.trace("%d became %s at term %d", i, raft.role.name.lower(), raft.term)
                if raft.role is Role.LEADER and self.faults_on and self.leader_kill:
                    if self.rng.random() < self.leader_kill:
                        self._push(self.now + self.rng.randint(1, 60), CRASH, i, sn.incarnation)

    # --- clients -------------------------------------------------------------------------

    def client_step(self, c: Client) -> None:
        if not self.clients_on:
            return
        rng = self.rng
        timeout = 4 * self.cfg.election_ticks * self.cfg.tick_interval
        if c.waiting is not None and self.now - c.waiting_since > timeout:
            self.trace("client %d gives up on %r", c.id, c.waiting)
            c.waiting = None
            c.gave_up += 1
        op = rng.random()
        if op < 0.3:
            self.client_read(c, lease=op < 0.15)
        elif c.waiting is None:
            # Values are unique: client id, sequence number, and the time of the proposal.
            c.seq += 1
            value = b"c%d-%d@%d" % (c.id, c.seq, self.now)
            outcome, arg = self.nodes[c.leader].propose(self, c.id, value)
            if outcome == "ok":
                c.waiting, c.waiting_since = value, self.now
                self.trace("client %d proposes %r to %d at %d", c.id, value, c.leader, arg)
            elif outcome == "not_leader" and arg:
                c.leader = arg
            elif outcome != "dropped":
                c.leader = rng.choice(list(self.nodes))
        self._push(self.now + rng.randint(5, 40), CLIENT, c.id)

    def client_read(self, c: Client, *, lease: bool) -> None:
        """A read (ReadIndex, or a lease read) to the node the client believes leads."""
        self._read_seq += 1
        ctx = self._read_seq
        self.checker.reads[ctx] = self.checker.max_acked
        sn = self.nodes[c.leader]
        if lease:
            index = sn.lease_read_index()
            if index is not None:
                self.trace("%d serves lease read %d at index %d", sn.id, ctx, index)
                self.checker.on_read(sn.id, "lease", ctx, index)
            else:
                del self.checker.reads[ctx]
            return
        if sn.read_index(self, ctx) == "ok":
            self.trace("client %d asks %d for read %d", c.id, sn.id, ctx)
        else:
            del self.checker.reads[ctx]

    # --- faults --------------------------------------------------------------------------

    def fault(self) -> None:
        rng = self.rng
        names, weights = zip(*FAULTS, strict=True)
        kind = rng.choices(names, weights)[0]
        up = [i for i, sn in self.nodes.items() if sn.up]
        leaders = [i for i in up if self.nodes[i].is_leader()]
        if kind == "partition":
            self.net.random_partition()
            self.stats.partitions += 1
            self.trace("FAULT partition: %s", self.net.shape)
        elif kind == "heal":
            self.net.heal()
            self.trace("FAULT heal")
        elif kind == "quality":
            self.net.random_quality()
            self.trace("FAULT links: %s", self.net.quality.describe())
        elif kind in ("crash", "crash_leader"):
            pool = leaders if kind == "crash_leader" and leaders else up
            if pool and len(up) > len(self.nodes) // 2:
                self.crash(rng.choice(pool))
        elif kind == "restart":
            down = [i for i, sn in self.nodes.items() if not sn.up]
            if down:
                self.restart(rng.choice(down))
        elif kind == "transfer" and leaders:
            src = rng.choice(leaders)
            dst = rng.choice(list(self.nodes))
            self.trace("FAULT transfer-leader %d -> %d", src, dst)
            node = self.nodes[src].node
            assert node is not None
            try:
                node.transfer_leader(dst)
            except (NotLeader, InvalidRequest, ProposalDropped):
                pass
            self.nodes[src].pump(self)
        elif kind == "campaign" and up:
            i = rng.choice(up)
            self.trace("FAULT campaign %d", i)
            node = self.nodes[i].node
            assert node is not None
            node.campaign()
            self.nodes[i].pump(self)

    def crash(self, i: int) -> None:
        how = self.nodes[i].crash(self)
        self.stats.crashes += 1
        self.seen.pop(i, None)
        self.trace("FAULT crash %d (%s)", i, how)
        delay = self.rng.choice((self.rng.randint(1, 30), self.rng.randint(50, 600)))
        self._push(self.now + delay, RESTART, i)

    def restart(self, i: int) -> None:
        sn = self.nodes[i]
        if sn.up:
            return
        sn.start()
        d = sn.disk
        self.trace(
            "restart %d: %s last=%d applied=%d",
            i,
            describe.hard_state(d.hard_state),
            len(d.entries),
            len(d.sm),
        )
        sn.pump(self)

    # --- liveness ------------------------------------------------------------------------

    def start_liveness(self) -> None:
        self.faults_on = False
        self.net.heal()
        self.net.quality = CALM
        self.liveness_start = self.now
        self.trace("LIVENESS: healed, faults stopped, restarting every node")
        for i in self.nodes:
            self.restart(i)

    def live(self) -> bool:
        """A value proposed after the heal is acked, and every node applied it."""
        index = self.liveness_index
        return bool(index) and all(len(sn.disk.sm) >= index for sn in self.nodes.values())

    def caught_up(self) -> bool:
        """Every node applied every acknowledged write."""
        index = max(self.checker.acked.values(), default=0)
        return all(len(sn.disk.sm) >= index for sn in self.nodes.values())

    def applied_counts(self) -> dict[int, int]:
        return {i: len(sn.disk.sm) for i, sn in self.nodes.items()}

    # --- reporting -----------------------------------------------------------------------

    def report(self, exc: InvariantViolation) -> str:
        cfg = self.cfg
        lines = [
            f"SIMULATION FAILED: {exc}",
            f"seed={cfg.seed} nodes={cfg.nodes} steps={cfg.steps} "
            f"bugs={sorted(cfg.bugs) or 'none'}; failed at step {self.stats.steps}, "
            f"time {self.now}",
            f"profile: {self.stats.profile}",
            f"reproduce: {cfg.command()}",
            f"last {len(self.trace_buf)} events:",
        ]
        for time, text, args in self.trace_buf:
            shown = tuple(describe.message(a) if _is_message(a) else a for a in args)
            lines.append(f"  t={time:<6} " + (text % shown))
        lines.append("node states:")
        for i, sn in self.nodes.items():
            d = sn.disk
            if sn.node is None:
                lines.append(f"  {i}: DOWN disk {describe.hard_state(d.hard_state)}")
                continue
            r = sn.node._raft
            terms = " ".join(
                str(e.term) for e in r.log.slice(r.log.last_index - 29, r.log.last_index + 1)
            )
            lines.append(
                f"  {i}: {r.role.name} term={r.term} vote={r.vote} lead={r.lead} "
                f"commit={r.log.committed} log(last 30 terms)=[{terms}]"
            )
        lines.append(f"reproduce: {cfg.command()}")
        return "\n".join(lines)


def _is_message(x: object) -> bool:
    return hasattr(x, "src") and hasattr(x, "dst") and hasattr(x, "term")


def run(cfg: SimConfig) -> Stats:
    return Simulation(cfg).run()
