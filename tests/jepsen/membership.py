"""The ``membership`` nemesis: voters demoted and promoted, leadership handed over, while
the other nemeses kill, pause and partition.

It runs beside the fault schedule (its changes overlap the fault windows on purpose) and
uses only the nodes the run started, so every address stays the one its proxies serve:

- ``demote-follower`` / ``demote-leader``: a voter becomes a learner (a joint change; the
  leader hands over and steps down when it demotes itself). Only while every original
  voter votes, and one node at a time, so a majority of them always votes. A demotion
  whose answer was lost may still land later (a paused leader acts on it when it
  resumes), so until the membership shows that node demoted, or ``LOST_DEMOTION_S`` have
  passed, it counts as one in progress: no other demotion can land on top of it.
- ``promote``: a demoted node becomes a voter again, 2-8 s after its demotion (not a
  variant: it always follows a demotion).
- ``transfer``: leadership to a voter the seed picks (also what a step does while a node
  is demoted and not yet due for promotion).

Every request is one history op (client ``nemesis``, op ``member``) with its outcome:
``ChangeInProgress``, ``NotLeader``, ``InvalidRequest`` and the like are refusals
(``ok`` false), a timeout or lost answer is ``unknown`` (the change may still complete; the
next step reads the committed membership again). A watcher records every committed
membership (op ``membership``). ``restore`` (the heal) promotes every demoted original
voter and waits until the committed membership is the original voter set again, so the
final convergence and state checks compare every node as a voter.

``check`` reports the changes and fails if the original voters were not restored within
the recovery bound, or if a committed membership had fewer than a majority of the original
voters as voters, or a voter outside them.
"""

from __future__ import annotations

import random
from collections import Counter

import trio

from jepsen.checkers import Check
from jepsen.history import NEMESIS, UNKNOWN, History, Op, now_ns
from trioraft.client import Client
from trioraft.errors import (
    Busy,
    ChangeInProgress,
    InvalidRequest,
    NotLeader,
    ProposalDropped,
    TrioraftError,
)
from wire import member_messages as mm

VARIANTS = ("demote-follower", "demote-leader", "transfer")
# how long a demotion whose answer was lost may still land: longer than any fault window
# that can hold a request (a paused leader, nemesis.schedule's windows last 3-7 s)
LOST_DEMOTION_S = 15.0
# errors that prove the request changed nothing
REFUSED = (ChangeInProgress, InvalidRequest, NotLeader, Busy, ProposalDropped)


def _conf(m: mm.ClusterMembership) -> dict[str, object]:
    return {
        "index": m.index,
        "voters": sorted(m.voters),
        "outgoing": sorted(m.voters_outgoing),
        "learners": sorted(m.learners),
        "learners_next": sorted(m.learners_next),
    }


class MembershipNemesis:
    """Membership changes on a schedule drawn from the seed; see the module docstring."""

    def __init__(
        self,
        admin: Client,
        history: History,
        seed: int,
        voters: list[int],
        variants: tuple[str, ...] = VARIANTS,
        *,
        pause: tuple[float, float] = (1.0, 3.0),
        hold: tuple[float, float] = (2.0, 8.0),
        applied: list[str] | None = None,
    ) -> None:
        self.admin = admin
        self.history = history
        self.rng = random.Random(f"membership-{seed}")
        self.voters = sorted(voters)
        self.majority = len(voters) // 2 + 1
        self.variants = variants or VARIANTS
        self.pause = pause
        self.hold = hold
        self.promote_after: dict[int, float] = {}  # demoted node -> earliest promotion
        self.lost_demotions: dict[int, float] = {}  # node -> when its demotion's answer was lost
        # changes that completed, for the run's report (the fault list of the run: shared)
        self.applied: list[str] = [] if applied is None else applied
        self.outcomes: Counter[str] = Counter()  # "<action> <ok|refused|unknown>"
        self.seen: list[mm.ClusterMembership] = []  # committed memberships, in order
        self.restored: float | None = None  # seconds the restore took (None: it did not)
        self.last: str = ""

    async def run(self, stop_at: float) -> None:
        """Change the membership until ``stop_at`` (trio time)."""
        while True:
            await trio.sleep(self.rng.uniform(*self.pause))
            if trio.current_time() >= stop_at:
                return
            await self.step()

    async def watch(self) -> None:
        """Record every committed membership (runs until cancelled; a watch that fails is
        opened again, and yields only memberships newer than the last one seen)."""
        while True:
            try:
                async for m in self.admin.watch_membership():
                    if self.seen and m.index <= self.seen[-1].index:
                        continue
                    self.seen.append(m)
                    self.history.nemesis("membership", _conf(m))
            except TrioraftError as exc:
                self.history.nemesis("membership-watch", f"{type(exc).__name__}: {exc}")
            await trio.sleep(0.5)

    async def step(self) -> None:
        meta = await self._metadata()
        if meta is None or meta.membership.joint:
            return  # no answer, or a change is half done: look again later
        m, leader = meta.membership, meta.leader_id
        demoted = [n for n in self.voters if n not in m.voters]
        now = trio.current_time()
        for n, since in list(self.lost_demotions.items()):
            if n in demoted or now - since >= LOST_DEMOTION_S:
                del self.lost_demotions[n]  # it landed (the usual course now), or never will
        due = [n for n in demoted if now >= self.promote_after.get(n, 0.0)]
        if due:
            await self.change("promote", mm.MemberChange.promote(due[0]))
            return
        action = self.rng.choice(self.variants)
        if action == "transfer" or demoted or self.lost_demotions:
            # one demotion at a time (a lost one may still land): transfer meanwhile
            targets = [n for n in m.voters if n != leader]
            if targets:
                await self.transfer(self.rng.choice(targets))
            return
        followers = [n for n in m.voters if n != leader]
        if action == "demote-leader" and leader in m.voters:
            target = leader
        elif followers:
            target = self.rng.choice(followers)
        else:
            return
        if len(set(m.voters) & set(self.voters)) - 1 < self.majority:
            return  # (the guard of the docstring: a majority of the original voters votes)
        self.promote_after[target] = now + self.rng.uniform(*self.hold)
        name = "demote-leader" if target == leader else "demote"
        await self.change(name, mm.MemberChange.demote(target))

    async def change(self, action: str, change: mm.MemberChange) -> bool:
        desc = f"{action} {change.node_id}"
        op = Op(NEMESIS, now_ns(), 0, "member", value=desc)
        try:
            got = await self.admin.update_cluster_conf([change], timeout=5)
        except TrioraftError as exc:
            if action.startswith("demote") and not isinstance(exc, REFUSED):
                self.lost_demotions[change.node_id] = trio.current_time()  # may still land
            return self._failed(op, desc, exc)
        op.ok, op.output, op.return_ns = True, _conf(got), now_ns()
        self.history.add(op)
        self.applied.append(f"membership:{action} node={change.node_id}")
        self.outcomes[f"{action} ok"] += 1
        return True

    async def transfer(self, target: int) -> bool:
        desc = f"transfer to {target}"
        op = Op(NEMESIS, now_ns(), 0, "member", value=desc)
        try:
            got = await self.admin.transfer_leader(target, timeout=5)
        except TrioraftError as exc:
            return self._failed(op, desc, exc)
        op.ok, op.output, op.return_ns = True, {"leader": got.leader_id, "term": got.term}, now_ns()
        self.history.add(op)
        self.applied.append(f"membership:transfer to={target} leader={got.leader_id}")
        self.outcomes["transfer ok"] += 1
        return True

    def _failed(self, op: Op, desc: str, exc: TrioraftError) -> bool:
        op.return_ns = now_ns()
        op.ok = False if isinstance(exc, REFUSED) else UNKNOWN
        op.error = f"{type(exc).__name__}: {exc}"
        self.history.add(op)
        self.outcomes[f"{desc.split()[0]} {'refused' if op.ok is False else 'unknown'}"] += 1
        return False

    async def _metadata(self) -> mm.ClusterMetadata | None:
        """The leader's view: its committed membership (None: no answer in 2 s)."""
        try:
            meta = await self.admin.cluster_metadata(timeout=2)
        except TrioraftError as exc:
            self.last = f"metadata: {type(exc).__name__}: {exc}"
            return None
        self.last = f"committed membership {_conf(meta.membership)} (leader {meta.leader_id})"
        return meta

    async def restore(self, bound: float) -> None:
        """The heal: every original voter votes again and nothing else is a member (waits
        at most ``bound`` seconds; ``check`` reports a failure to)."""
        start = trio.current_time()
        with trio.move_on_after(bound):
            while True:
                meta = await self._metadata()
                m = meta.membership if meta is not None else None
                if m is not None and not m.joint:
                    if sorted(m.voters) == self.voters and not m.learners:
                        self.restored = trio.current_time() - start
                        self.history.nemesis("member-restored", _conf(m))
                        return
                    demoted = [n for n in self.voters if n not in m.voters]
                    if demoted and await self.change(
                        "promote", mm.MemberChange.promote(demoted[0])
                    ):
                        continue
                await trio.sleep(0.2)

    def check(self) -> Check:
        problems = []
        for m in self.seen:
            voters = set(m.voters) | set(m.voters_outgoing)
            kept = set(m.voters) & set(self.voters)
            if not voters <= set(self.voters) or len(kept) < self.majority:
                problems.append(f"committed membership {_conf(m)}")
        if self.restored is None:
            problems.append(f"original voters {self.voters} not restored ({self.last})")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        text = (
            f"membership: {not problems} ({counts or 'no change attempted'}; "
            f"{len(self.seen)} committed memberships seen"
        )
        if self.restored is not None:
            text += f"; voters {self.voters} restored after {self.restored:.1f} s"
        text += ")"
        if problems:
            text += "".join(f"\n  {p}" for p in problems[:10])
        details = {"outcomes": dict(self.outcomes), "problems": problems[:50]}
        return Check("membership", not problems, text, details)
