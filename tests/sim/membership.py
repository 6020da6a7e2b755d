"""The deterministic simulator with random membership changes (joint consensus, thesis §4.3).

``MembershipSimulation`` runs the same faults, clients and checkers as ``Simulation``, on a
cluster that starts with some of its nodes as voters (the others are spares, outside the
configuration) and changes its membership as it goes:

- a ``member`` fault asks a node that believes it leads (stale leaders too) for a random
  change computed from *its* configuration: add a spare as a learner, promote a learner,
  remove or demote a member, or replace a voter (promote + remove in one joint change);
- right after a node becomes leader, before it has committed anything in its term, it is
  often asked for a change at once: competing changes across leader changes, the recipe
  of the single-server-change pitfall (one voter changed in one step by a leader of a new
  term can form a majority that does not overlap the previous leader's).

Every invariant of ``sim.checkers`` is checked after every step. Liveness after the heal is
required of the members of the final configuration only (removed nodes and spares never
get the log again). A spare added late replicates the whole log (no snapshots here), so
runs use a larger ``liveness_ticks``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sim.checkers import Checker, InvariantViolation
from sim.cluster import SimNode
from sim.sim import SimConfig, Simulation, Stats
from trioraft.core.confchange import ChangeOp, ConfChange
from trioraft.core.types import Role
from wire.errors import TrioraftError
from wire.messages import EntryKind

MEMBER_FAULT = 0.3  # share of fault events that are membership changes
CHANGE_ON_ELECTION = 0.5  # chance a new leader is asked for a change at once


class MembershipChecker(Checker):
    """``Checker``, but at the end only the final members must hold every acknowledged
    write (a removed node keeps the log it had; it must still agree with everyone)."""

    def __init__(
        self,
        nodes: dict[int, SimNode],
        skip: frozenset[str],
        members: Callable[[], set[int]],
    ) -> None:
        super().__init__(nodes, skip)
        self._members = members

    def check_final(self) -> None:
        members = self._members()
        for i, sn in self.nodes.items():
            self._check_disk_log(i, sn.disk.entries)
            for e in sn.disk.sm:
                if self.applied.get(e.index) != e:
                    self.fail("state machine safety", f"node {i} state machine holds {e}")
            if i not in members:
                continue
            values = {e.data: e.index for e in sn.disk.sm if e.kind is EntryKind.NORMAL}
            for value, index in self.acked.items():
                if values.get(value) != index:
                    self.fail(
                        "acknowledged write",
                        f"node {i} did not apply acknowledged {value!r} at {index}",
                    )


@dataclasses.dataclass
class MemberStats:
    proposed: int = 0
    accepted: int = 0
    refused: int = 0


class MembershipSimulation(Simulation):
    def __init__(self, cfg: SimConfig, initial: int | None = None) -> None:
        super().__init__(cfg)
        n = initial or max(1, (cfg.nodes + 1) // 2)
        self.initial = tuple(range(1, n + 1))
        for sn in self.nodes.values():  # spares start outside the configuration
            sn.config = dataclasses.replace(sn.config, voters=self.initial)
            sn.incarnation = 0
            sn.start()
        self.checker = MembershipChecker(self.nodes, cfg.skip_checks, self.final_members)
        self.members = MemberStats()
        self.stats.profile += f" initial_voters={n}"

    # --- membership changes --------------------------------------------------------------

    def fault(self) -> None:
        if self.faults_on and self.rng.random() < MEMBER_FAULT:
            leaders = [i for i, sn in self.nodes.items() if sn.is_leader()]
            if leaders:
                self.change(self.rng.choice(leaders), "FAULT")
                return
        super().fault()

    def note_changes(self, touched: tuple[int, ...]) -> None:
        before = {i: self.seen.get(i) for i in touched}
        super().note_changes(touched)
        for i in touched:
            sn = self.nodes[i]
            now = self.seen.get(i)
            elected = now != before[i] and now is not None and now[0] is Role.LEADER
            if elected and sn.node is not None and self.faults_on:
                if self.rng.random() < CHANGE_ON_ELECTION:
                    self.change(i, "NEW LEADER", self.competing_change(i))

    def competing_change(self, leader: int) -> list[ConfChange]:
        """A change that competes with one another node appended but did not commit: the
        removal of a node holding that configuration (it may be the previous leader)."""
        node = self.nodes[leader].node
        assert node is not None
        conf = node.membership.conf
        rivals = [
            i
            for i, sn in self.nodes.items()
            if i != leader
            and sn.node is not None
            and sn.node.membership_index > sn.node.status.commit
            and sn.node.membership.conf != conf
            and i in conf.voters
        ]
        if rivals and len(conf.voters) > 1:
            return [ConfChange(ChangeOp.REMOVE, self.rng.choice(rivals))]
        return self.random_change(leader)

    def change(self, leader: int, why: str, changes: list[ConfChange] | None = None) -> None:
        sn = self.nodes[leader]
        if sn.node is None:
            return
        changes = changes if changes is not None else self.random_change(leader)
        if not changes:
            return
        self.members.proposed += 1
        text = ", ".join(map(str, changes))
        try:
            index, _ = sn.node.propose_conf_change(changes)
        except TrioraftError as exc:
            self.members.refused += 1
            self.trace("%s change at %d refused (%s): %s", why, leader, type(exc).__name__, text)
            return
        self.members.accepted += 1
        self.trace("%s change at %d, index %d: %s", why, leader, index, text)
        sn.pump(self)

    def random_change(self, leader: int) -> list[ConfChange]:
        node = self.nodes[leader].node
        assert node is not None
        conf = node.membership.conf
        rng = self.rng
        voters, learners = list(conf.voters), list(conf.learners)
        spares = [i for i in self.nodes if i not in conf.ids()]
        options: list[list[ConfChange]] = []
        for s in spares:
            addr = f"tcp://sim-{s}:1"
            options.append([ConfChange(ChangeOp.ADD_LEARNER, s, addr, f"tcp://sim-{s}:2")])
        for learner in learners:
            options.append([ConfChange(ChangeOp.PROMOTE, learner)])
            options.append([ConfChange(ChangeOp.REMOVE, learner)])
            for v in voters:
                options.append(
                    [ConfChange(ChangeOp.PROMOTE, learner), ConfChange(ChangeOp.REMOVE, v)]
                )
        if len(voters) > 1:
            for v in voters:
                options.append([ConfChange(ChangeOp.REMOVE, v)])
                options.append([ConfChange(ChangeOp.DEMOTE, v)])
        return rng.choice(options) if options else []

    # --- liveness: the members of the final configuration --------------------------------

    def final_members(self) -> set[int]:
        best = max(
            (sn for sn in self.nodes.values() if sn.node is not None),
            key=lambda sn: sn.node.status.commit if sn.node else 0,
        )
        assert best.node is not None
        return set(best.node.committed_membership()[1].conf.ids())

    def live(self) -> bool:
        index = self.liveness_index
        members = self.final_members()
        return bool(index) and all(len(self.nodes[i].disk.sm) >= index for i in members)

    def caught_up(self) -> bool:
        index = max(self.checker.acked.values(), default=0)
        return all(len(self.nodes[i].disk.sm) >= index for i in self.final_members())

    def report(self, exc: InvariantViolation) -> str:
        command = self.cfg.command()
        return super().report(exc).replace(command, command + " --membership")


LIVENESS_TICKS = 2000  # see the module docstring


def run(cfg: SimConfig) -> tuple[Stats, MemberStats]:
    sim = MembershipSimulation(cfg)
    stats = sim.run()
    return stats, sim.members


def run_stats(cfg: SimConfig) -> Stats:
    """For ``tests/sim/run.py --membership``."""
    ticks = max(cfg.liveness_ticks, LIVENESS_TICKS)
    return MembershipSimulation(dataclasses.replace(cfg, liveness_ticks=ticks)).run()
