"""A core test network whose membership can change: nodes join as learners with the
configuration a leader gives them, and every node keeps its initial voters across
restarts (what the runtime reads from its data dir). Builds on ``core.helpers.Network``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from core.helpers import MemStorage, Network

from trioraft.core import CoreConfig, RawNode
from trioraft.core.confchange import ChangeOp, ConfChange
from trioraft.core.confstate import ConfState, Membership
from wire.messages import Message


def learner(node_id: int, *, auto: bool = False) -> ConfChange:
    """``ADD_LEARNER`` with made-up, distinct addresses."""
    return ConfChange(
        ChangeOp.ADD_LEARNER,
        node_id,
        f"tcp://10.0.0.{node_id}:7380",
        f"tcp://10.0.0.{node_id}:7379",
        auto,
    )


def promote(node_id: int) -> ConfChange:
    return ConfChange(ChangeOp.PROMOTE, node_id)


def remove(node_id: int) -> ConfChange:
    return ConfChange(ChangeOp.REMOVE, node_id)


def demote(node_id: int) -> ConfChange:
    return ConfChange(ChangeOp.DEMOTE, node_id)


@dataclass
class JointNet(Network):
    initial: tuple[int, ...] = ()
    bases: dict[int, Membership] = field(default_factory=dict)

    @classmethod
    def build(cls, n: int, **overrides: Any) -> JointNet:
        net = cls(ids=(), overrides=overrides, initial=tuple(range(1, n + 1)))
        for i in net.initial:
            net.add_node(i)
        return net

    def config(self, node_id: int) -> CoreConfig:
        return CoreConfig(node_id=node_id, voters=self.initial, **self.overrides)

    def add_node(self, node_id: int, base: Membership | None = None) -> None:
        """A new node with an empty log; ``base``: the configuration it starts from (a
        joining learner gets the leader's), else the initial voters."""
        self.ids = (*self.ids, node_id)
        if base is not None:
            self.bases[node_id] = base
        self.storage[node_id] = MemStorage()
        self.applied[node_id] = []
        self.reads[node_id] = []
        self.readies[node_id] = []
        self.start(node_id)

    def join(self, leader: int, node_id: int) -> None:
        """Add ``node_id`` as a learner through ``leader`` and start it."""
        self.nodes[leader].propose_conf_change([learner(node_id)])
        self.stabilize()
        _, m = self.nodes[leader].committed_membership()
        self.add_node(node_id, m)
        self.tick_all(2)  # heartbeats: the leader finds the new node and catches it up

    def start(self, node_id: int, *, fresh_start: bool = True) -> None:
        st = self.storage[node_id]
        self.nodes[node_id] = RawNode(
            self.config(node_id),
            hard_state=st.hard_state,
            entries=st.entries,
            applied=st.applied,
            rng=random.Random(self.seed * 1_000 + node_id),
            fresh_start=fresh_start,
            membership=self.bases.get(node_id),
        )

    def dropped(self, m: Message) -> bool:
        return m.dst not in self.nodes or super().dropped(m)  # not started (yet): lost

    def change(self, leader: int, *changes: ConfChange) -> tuple[int, int]:
        return self.nodes[leader].propose_conf_change(list(changes))

    def conf(self, node_id: int) -> ConfState:
        return self.nodes[node_id].membership.conf

    def committed_conf(self, node_id: int) -> ConfState:
        return self.nodes[node_id].committed_membership()[1].conf
