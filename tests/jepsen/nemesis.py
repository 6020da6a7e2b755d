"""Nemeses: the faults a run injects, on a schedule drawn from the run's seed.

A schedule alternates calm and fault windows; each fault window applies one fault and heals
it at its end (the seed fixes the kinds, variants, timings and random picks; which node leads
when a fault starts is up to the cluster). Faults:

| nemesis | variants | what it does |
|---|---|---|
| ``kill`` | leader, follower, minority, all | SIGKILL, restart (same data dir) at the heal |
| ``pause`` | leader, follower, minority | SIGSTOP, SIGCONT at the heal |
| ``partition`` | isolate-leader, halves, bridge, leader-out, leader-in | proxy blocks (below) |
| ``delay`` | all | every peer message delayed 20-200 ms plus as much jitter |
| ``drop`` | all | every peer message dropped with probability 0.05-0.3 |
| ``snapshot`` | partition, kill | a follower cut off until the others compacted past it |
| ``membership`` | demote-follower, demote-leader, transfer | beside the windows (below) |

Partitions go through ``proxy.ProxyNet`` (bytes held while cut, late delivery at the heal;
one heal in two also severs the connections, dropping what was held). ``halves``: a random
minority against the majority. ``bridge``: the nodes split in two sides that cannot talk,
plus one node that talks to both. ``leader-out``: no byte from the leader reaches any other
node (it still hears them: their requests arrive, its replies do not). ``leader-in``: no
byte from another node reaches the leader (its heartbeats and appends still go out, no
answer comes back). "Leader" is the node with the highest term that says it leads when the
fault starts; with no leader, a node picked by the seed.

``snapshot`` windows (``jepsen.snapshots``) last until every other node has compacted its
log past the follower's (at least their drawn length, at most ``snapshots.CAP`` s more);
the next window starts a calm period after. The runner starts the nodes with small
snapshot thresholds for them. ``membership`` (``jepsen.membership``) takes no window: it
runs beside the schedule from start to end (voters demoted and promoted back, leadership
transferred, during the other faults), and its heal restores the original voters.
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass, field
from typing import Any

import trio

from jepsen import membership, snapshots
from jepsen.history import History
from jepsen.proxy import ProxyNet
from trioraft.client import Client
from wire import client_messages as cm

VARIANTS: dict[str, tuple[str, ...]] = {
    "kill": ("leader", "follower", "minority", "all"),
    "pause": ("leader", "follower", "minority"),
    "partition": ("isolate-leader", "halves", "bridge", "leader-out", "leader-in"),
    "delay": ("all",),
    "drop": ("all",),
    "snapshot": snapshots.VARIANTS,
    "membership": membership.VARIANTS,
}
# Nemeses the product cannot be tested with yet: name -> why (``parse_nemeses`` raises
# ``NotAvailable``; ``run.py`` exits with status 3).
PENDING: dict[str, str] = {}
CALM = (2.0, 4.0)  # seconds between fault windows


class NotAvailable(Exception):
    """A nemesis the product cannot be tested with yet."""


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the workload starts
    duration: float
    kind: str
    variant: str
    pick: int  # the seed's choice among candidate nodes
    params: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        extra = "".join(f" {k}={v:g}" for k, v in self.params.items())
        return f"{self.kind}:{self.variant}{extra}"


def parse_nemeses(text: str) -> list[tuple[str, str | None]]:
    """``"partition,kill:leader"`` -> [("partition", None), ("kill", "leader")]."""
    out: list[tuple[str, str | None]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, _, variant = item.partition(":")
        if kind == "none":
            continue
        if kind in PENDING:
            raise NotAvailable(f"nemesis {kind!r}: {PENDING[kind]}")
        if kind not in VARIANTS:
            raise ValueError(f"unknown nemesis {kind!r}; known: {', '.join(VARIANTS)}")
        if variant and variant not in VARIANTS[kind]:
            raise ValueError(f"nemesis {kind}: unknown variant {variant!r}: {VARIANTS[kind]}")
        out.append((kind, variant or None))
    return out


def schedule(
    seed: int,
    nemeses: list[tuple[str, str | None]],
    duration: float,
    *,
    calm: tuple[float, float] = CALM,
    fault: tuple[float, float] = (3.0, 7.0),
) -> list[Fault]:
    """Fault windows for a run of ``duration`` seconds, from the seed alone (``membership``
    takes none: see ``membership_variants``)."""
    rng = random.Random(f"nemesis-{seed}")
    nemeses = [(k, v) for k, v in nemeses if k != "membership"]
    faults: list[Fault] = []
    t = rng.uniform(*calm)
    while nemeses:
        length = rng.uniform(*fault)
        if t + length > duration - 1.0:
            break
        kind, variant = rng.choice(nemeses)
        variant = variant or rng.choice(VARIANTS[kind])
        params: dict[str, float] = {}
        if kind == "delay":
            params = {"delay_ms": rng.randrange(20, 200)}
            params["jitter_ms"] = params["delay_ms"]
        elif kind == "drop":
            params = {"p": round(rng.uniform(0.05, 0.3), 2)}
        faults.append(
            Fault(round(t, 3), round(length, 3), kind, variant, rng.randrange(1 << 30), params)
        )
        t += length + rng.uniform(*calm)
    return faults


def membership_variants(nemeses: list[tuple[str, str | None]]) -> tuple[str, ...] | None:
    """The variants the ``membership`` nemesis may use (None: it is not selected)."""
    picked = [v for k, v in nemeses if k == "membership"]
    if not picked:
        return None
    return membership.VARIANTS if None in picked else tuple(dict.fromkeys(v for v in picked if v))


class Nemesis:
    """Applies a schedule to a ``ProcessCluster`` and its ``ProxyNet``; heals everything at
    each window's end and, whatever happens, in ``heal_all``."""

    def __init__(
        self,
        cluster: Any,
        net: ProxyNet,
        admin: Client,
        history: History,
        seed: int,
        snapshot_faults: snapshots.SnapshotFaults | None = None,
    ):
        self.cluster = cluster
        self.net = net
        self.admin = admin
        self.history = history
        self.rng = random.Random(f"heal-{seed}")
        self.killed: set[int] = set()
        self.paused: set[int] = set()
        self.applied: list[str] = []
        self.unexpected_exits: dict[int, int] = {}
        self.snapshots = snapshot_faults

    @property
    def nodes(self) -> list[int]:
        return sorted(self.cluster.peers)

    async def run(self, faults: list[Fault], t0: float, end: float) -> None:
        """Apply ``faults`` (times from ``t0``); none starts unless it can end by ``end``
        (a ``snapshot`` window that ran long delays the next ones by a calm period)."""
        overran = t0
        try:
            for f in faults:
                await trio.sleep_until(max(t0 + f.at, overran + CALM[0]))
                if trio.current_time() + f.duration > end - 0.5:
                    break
                if f.kind == "snapshot":
                    desc = await self.snapshot_window(f, end)
                    overran = trio.current_time()
                else:
                    desc = await self.apply(f)
                    self.applied.append(desc)
                    self.history.nemesis("start", desc)
                    await trio.sleep(f.duration)
                    self.heal()
                self.history.nemesis("stop", desc)
        finally:
            self.heal()

    async def snapshot_window(self, f: Fault, end: float) -> str:
        assert self.snapshots is not None, "the runner sets up snapshot runs"
        rng = random.Random(f.pick)
        leader = await self.leader()
        others = [n for n in self.nodes if n != leader]
        node = rng.choice(others if leader is not None else self.nodes)
        window = await self.snapshots.start(self, f.variant, node)
        desc = f"{f.describe()} node={node} last_index={window.last_index}"
        self.applied.append(desc)
        self.history.nemesis("start", desc)
        until = min(trio.current_time() + f.duration + snapshots.CAP, end - 0.5)
        await self.snapshots.wait(window, f.duration, until)
        self.snapshots.healing(window)
        self.heal()
        return window.describe()

    async def leader(self) -> int | None:
        best: cm.StatusReply | None = None
        for st in (await self.admin.cluster_status(timeout=1.0)).values():
            if isinstance(st, cm.StatusReply) and st.role == cm.Role.LEADER:
                if best is None or st.term > best.term:
                    best = st
        return best.node_id if best else None

    async def apply(self, f: Fault) -> str:
        rng = random.Random(f.pick)
        nodes = self.nodes
        leader = await self.leader() if "leader" in f.variant or f.variant == "follower" else None
        if leader is None:
            leader = rng.choice(nodes)
        others = [n for n in nodes if n != leader]
        shuffled = rng.sample(nodes, len(nodes))
        minority = shuffled[: (len(nodes) - 1) // 2]
        targets: list[int] = {
            "leader": [leader],
            "follower": [rng.choice(others)] if others else [],
            "minority": minority,
            "all": nodes,
        }.get(f.variant, [])
        if f.kind == "kill":
            self.check_alive()
            for n in targets:
                self.cluster.kill(n, signal.SIGKILL)
                self.killed.add(n)
            return f"{f.describe()} nodes={targets}"
        if f.kind == "pause":
            for n in targets:
                self.cluster.kill(n, signal.SIGSTOP)
                self.paused.add(n)
            return f"{f.describe()} nodes={targets}"
        if f.kind == "partition":
            match f.variant:
                case "isolate-leader":
                    groups = [[leader], others]
                    self.net.partition(groups)
                case "halves":
                    half = len(nodes) // 2
                    groups = [sorted(shuffled[:half]), sorted(shuffled[half:])]
                    self.net.partition(groups)
                case "bridge":
                    half = (len(nodes) - 1) // 2
                    left, bridge, right = shuffled[:half], shuffled[half], shuffled[half + 1 :]
                    for a in left:
                        for b in right:
                            self.net.block(a, b)
                            self.net.block(b, a)
                    return f"{f.describe()} {sorted(left)}-{bridge}-{sorted(right)}"
                case "leader-out":
                    for n in others:
                        self.net.block(leader, n)
                    return f"{f.describe()} leader={leader}"
                case "leader-in":
                    for n in others:
                        self.net.block(n, leader)
                    return f"{f.describe()} leader={leader}"
            return f"{f.describe()} groups={groups}"
        if f.kind == "delay":
            self.net.set_delay(f.params["delay_ms"] / 1000, f.params["jitter_ms"] / 1000)
            return f.describe()
        if f.kind == "drop":
            self.net.set_drop(f.params["p"])
            return f.describe()
        raise ValueError(f"unknown fault {f}")

    def check_alive(self) -> None:
        """Record nodes that exited although no nemesis killed them (a crash)."""
        for n, proc in self.cluster.procs.items():
            code = proc.poll()
            if code is not None and n not in self.killed and n not in self.unexpected_exits:
                self.unexpected_exits[n] = code
                self.history.nemesis("crash", f"node {n} exited with status {code}")

    def heal(self) -> None:
        """Restart killed nodes, resume paused ones, reconnect the network."""
        self.check_alive()
        for n in sorted(self.paused):
            self.cluster.kill(n, signal.SIGCONT)
        self.paused.clear()
        for n in sorted(self.killed | set(self.unexpected_exits)):
            if self.cluster.procs[n].poll() is not None:
                self.cluster.start(n)  # a crashed node too: the run goes on, the crash stays
        self.killed.clear()
        self.net.heal(sever=self.rng.random() < 0.5)
