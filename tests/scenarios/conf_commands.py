"""Scenario commands for membership changes (joint consensus), registered on ``Env``:

- ``conf-change <id> <op> <node> [<op> <node> ...]``: propose a change on node ``id``;
  ``op`` is ``add-learner`` (made-up addresses), ``promote``, ``remove`` or ``demote``.
  Prints the index and the configuration appended, or the error.
- ``conf [<ids>]``: each node's configuration in force (the latest appended) and the
  committed one, with the index of the entry that set each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trioraft.core.confchange import ChangeOp, ConfChange

if TYPE_CHECKING:
    from scenarios.runner import Env

_OPS = {
    "add-learner": ChangeOp.ADD_LEARNER,
    "promote": ChangeOp.PROMOTE,
    "remove": ChangeOp.REMOVE,
    "demote": ChangeOp.DEMOTE,
}


def register(env: Env) -> None:
    def conf_change(args: list[str], kw: dict[str, str]) -> None:
        node = env.nodes[int(args[0])]
        changes = []
        for op, target in zip(args[1::2], args[2::2], strict=True):
            n = int(target)
            addrs = (f"tcp://n{n}:1", f"tcp://n{n}:2") if op == "add-learner" else ("", "")
            changes.append(ConfChange(_OPS[op], n, *addrs))
        res = env.guarded(lambda: node.propose_conf_change(changes))
        if res is not None:
            env.emit(f"proposed at index={res[0]} term={res[1]}: {node.membership.conf}")

    def conf(args: list[str], kw: dict[str, str]) -> None:
        for i in env.targets(args):
            node = env.nodes[i]
            at, committed = node.committed_membership()
            env.emit(
                f"{i}: in force {node.membership.conf} (index {node.membership_index});"
                f" committed {committed.conf} (index {at})"
            )

    env.commands["conf-change"] = conf_change
    env.commands["conf"] = conf
