"""Seeded random fault runs with the Raft safety properties checked after every step
(Figure 3: election safety, log matching, leader completeness, state machine safety).

A small, in-core version of the deterministic simulator: messages are dropped, duplicated
and reordered, links are cut, nodes crash and restart from what they persisted.
"""

from __future__ import annotations

import random

import pytest

from trioraft.core import Role
from wire.messages import Entry

from .helpers import Network


def _split(rng: random.Random, ids: tuple[int, ...]) -> tuple[list[int], list[int]]:
    shuffled = list(ids)
    rng.shuffle(shuffled)
    k = rng.randrange(1, len(ids))
    return shuffled[:k], shuffled[k:]


class Checker:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.leader_of_term: dict[int, int] = {}
        self.committed: dict[int, Entry] = {}  # index -> the entry applied there
        self.seen = dict.fromkeys(net.ids, 0)  # how much of net.applied[i] was checked
        self.steps = 0

    def check(self, *, full: bool = False) -> None:
        net = self.net
        self.steps += 1
        for i in net.ids:
            st = net.nodes[i].status
            if st.role is Role.LEADER:
                # Election safety: at most one leader per term.
                assert self.leader_of_term.setdefault(st.term, i) == i, (st.term, i)
            # State machine safety: every node applies the same entry at an index.
            for e in net.applied[i][self.seen[i] :]:
                assert self.committed.setdefault(e.index, e) == e, (i, e)
            self.seen[i] = len(net.applied[i])
        if full or self.steps % 20 == 0:
            self.check_logs()

    def check_logs(self) -> None:
        net = self.net
        # Log matching on what is durable: same (index, term) => identical prefixes.
        logs = [net.storage[i].entries for i in net.ids]
        for x, a in enumerate(logs):
            for b in logs[x + 1 :]:
                for k in range(min(len(a), len(b)) - 1, -1, -1):
                    if a[k].term == b[k].term:
                        assert a[: k + 1] == b[: k + 1]
                        break
        # Leader completeness: a leader of a later term holds every committed entry in its
        # (durable) log.
        for i in net.ids:
            st = net.nodes[i].status
            if st.role is Role.LEADER:
                log = net.storage[i].entries
                for index, e in self.committed.items():
                    if index <= len(log) and st.term > e.term:
                        assert log[index - 1] == e, (i, index)


ACTIONS = ("tick", "begin", "finish", "deliver", "propose", "partition", "crash")
WEIGHTS = (12, 15, 15, 50, 5, 0.5, 0.4)


def run(seed: int, steps: int = 3000) -> Checker:
    rng = random.Random(seed)
    net = Network.create(5, seed=seed, election_ticks=10, heartbeat_ticks=2)
    chk = Checker(net)
    proposed = 0
    for _ in range(steps):
        action = rng.choices(ACTIONS, WEIGHTS)[0]
        if action == "tick":
            i = rng.choice(net.ids)
            if i not in net.down:
                net.nodes[i].tick()
        elif action == "begin":
            ready = [i for i in net.ids if i not in net.pending and net.nodes[i].has_ready()]
            if ready:
                net.begin(rng.choice(ready))
        elif action == "finish" and net.pending:
            net.finish(rng.choice(sorted(net.pending)))
        elif action == "deliver" and net.queue:
            k = rng.randrange(len(net.queue))  # reordering
            m = net.queue[k]
            if rng.random() < 0.9:
                net.queue.pop(k)  # else: delivered now and again later (duplicate)
            if rng.random() < 0.05 or net.dropped(m):
                continue
            net.delivered.append(m)
            net.nodes[m.dst].step(m)
        elif action == "propose":
            for i in net.leaders():
                if i not in net.down:
                    net.nodes[i].propose(b"%d" % proposed)
                    proposed += 1
        elif action == "partition":
            net.heal()
            if rng.random() < 0.5:
                net.partition(*_split(rng, net.ids))
        elif action == "crash":
            i = rng.choice(net.ids)
            if i in net.down:
                net.down.discard(i)
                net.restart(i)  # a crash loses all in-memory state and its unsent mail
            elif len(net.down) < 2:
                net.down.add(i)
        chk.check()
    # Liveness once the faults stop: a leader emerges and every live node catches up.
    net.heal()
    for i in list(net.down):
        net.down.discard(i)
        net.restart(i)
    for i in net.ids:
        net.finish(i)
    leader = net.tick_until_leader()
    net.nodes[leader].propose(b"final")
    net.tick_all(5)
    chk.check(full=True)
    for i in net.ids:
        assert net.applied_data(i)[-1:] == [b"final"], i
    return chk


@pytest.mark.parametrize("seed", range(30))
def test_random_faults_keep_raft_safety_properties(seed: int) -> None:
    """§5.2 election safety, §5.3 log matching, §5.4 leader completeness and state machine
    safety under drops, duplicates, reordering, partitions and crash-restarts."""
    chk = run(seed)
    assert chk.committed  # the run made progress, so the checks were not vacuous
