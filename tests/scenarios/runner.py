"""Scenario files: Raft interactions written as commands and their expected output.

In the style of etcd-io/raft's ``testdata/`` (datadriven). A file is a sequence of blocks::

    # comments (kept on rewrite)
    command arg arg key=value key=(1,2,3)
    ----
    expected output
    (one or more lines, never empty; "ok" when a command prints nothing)

separated by an empty line. ``run_file`` executes every block against one ``Env`` and
compares outputs; with ``TRIORAFT_REWRITE=1`` in the environment it rewrites the file with
the actual outputs instead, so a behaviour change is reviewed as a diff of the file.

Nodes are ``RawNode``s driven deterministically: node ``i`` draws its election timeouts from
``random.Random(seed * 1000 + i)`` and messages are delivered only when a command says so
(``deliver-msgs``, ``stabilize``), in the order they were sent. The shell of every node
persists a ``Ready`` completely before sending its ``persisted_messages``.

Commands (ids are node ids; ``<ids>`` is a list like ``1 2 3``, default: every node):

- ``add-nodes <n> [voters=(1,2,3)] [election=10] [heartbeat=1] [pre-vote=true]
  [check-quorum=true] [max-inflight=256] [max-bytes=N] [log=(1,1,2)] [term=T] [vote=V]
  [commit=C] [seed=S]`` adds n nodes with the next ids; ``log`` gives the stored terms of
  entries 1.. (data ``''``), ``term``/``vote``/``commit`` the stored hard state.
- ``campaign <id>``, ``propose <id> <data>``, ``read-index <id> <ctx>``,
  ``transfer-leader <from> <to>``, ``tick <ids> [count=N]``.
- ``process-ready [<ids>]``: each node handles one Ready (persist, send, apply, advance).
- ``deliver-msgs [<ids>] [drop=(ids)] [from=(ids)]``: deliver queued messages to the
  nodes (only those sent by ``from``), or drop those addressed to ``drop``. A message
  on a link cut by ``partition``/``cut``/``isolate`` is lost, whether it is sent while
  the link is cut (marked in the Ready) or was queued before (marked on delivery).
- ``stabilize [<ids>]``: process readies and deliver messages until nothing moves.
- ``partition (1,2) (3)``, ``cut <src> <dst>`` (one way), ``isolate <id>``, ``heal``.
- ``hold-msgs [<ids>] [copy=true]`` takes the queued messages to those nodes aside (or a
  copy of them); ``release-msgs`` queues them again behind newer ones (delay, reordering,
  duplicates).
- ``restart <id>``: crash and restart from what was persisted.
- ``status [<ids>]``, ``raft-log [<ids>]``, ``lease [<ids>]``: print node state (with the
  leader's view of each follower), stored logs, and whether a leader's lease holds.
"""

from __future__ import annotations

import difflib
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim import describe

from scenarios.conf_commands import register as register_conf_commands
from trioraft.core import CoreConfig, RawNode, Ready, Role
from trioraft.core.progress import ProgressState
from wire.errors import TrioraftError
from wire.messages import Entry, EntryKind, HardState, Message

REWRITE_ENV = "TRIORAFT_REWRITE"
_TOKEN = re.compile(r"[^\s=()]+=\([^)]*\)|\([^)]*\)|'[^']*'|\S+")


@dataclass
class Block:
    comments: list[str]
    command: str
    expected: list[str]
    line: int  # 1-based line of the command in the file


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        comments: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].startswith("#"):
                comments.append(lines[i])
            elif comments:
                comments.append("")
            i += 1
        if i >= len(lines):
            if comments:  # trailing comments: keep them on rewrite
                blocks.append(Block(comments, "", [], i))
            break
        command, line = lines[i], i + 1
        i += 1
        if i >= len(lines) or lines[i] != "----":
            raise ValueError(f"line {line}: expected '----' after command {command!r}")
        i += 1
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        while comments and comments[-1] == "":
            comments.pop()
        blocks.append(Block(comments, command, expected, line))
    return blocks


def render(blocks: Sequence[Block], outputs: Sequence[list[str]]) -> str:
    parts: list[str] = []
    for block, out in zip(blocks, outputs, strict=True):
        text = "\n".join(block.comments)
        if block.command:
            text += ("\n" if text else "") + f"{block.command}\n----\n" + "\n".join(out)
        parts.append(text)
    return "\n\n".join(parts) + "\n"


@dataclass
class Storage:
    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    applied: int = 0


def _ids(text: str) -> list[int]:
    return [int(x) for x in text.strip("()").replace(",", " ").split()]


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text == "true"


class Env:
    """The nodes, their storage, and the messages in flight between them."""

    def __init__(self) -> None:
        self.nodes: dict[int, RawNode] = {}
        self.configs: dict[int, CoreConfig] = {}
        self.seeds: dict[int, int] = {}
        self.storage: dict[int, Storage] = {}
        self.queue: list[Message] = []
        self.held: list[Message] = []  # taken out of the queue by hold-msgs (delayed)
        self.cuts: set[tuple[int, int]] = set()
        self.out: list[str] = []
        self.indent = ""
        self.seen: dict[int, tuple[Role, int]] = {}
        self.commands: dict[str, Callable[[list[str], dict[str, str]], None]] = {
            "add-nodes": self.add_nodes,
            "campaign": self.campaign,
            "propose": self.propose,
            "read-index": self.read_index,
            "transfer-leader": self.transfer_leader,
            "tick": self.tick,
            "process-ready": self.process_ready,
            "deliver-msgs": self.deliver_msgs,
            "stabilize": self.stabilize,
            "partition": self.partition,
            "cut": self.cut,
            "isolate": self.isolate,
            "heal": self.heal,
            "hold-msgs": self.hold_msgs,
            "release-msgs": self.release_msgs,
            "restart": self.restart,
            "status": self.status,
            "raft-log": self.raft_log,
            "lease": self.lease,
        }
        register_conf_commands(self)  # conf-change, conf (scenarios/conf_commands.py)

    # --- plumbing ------------------------------------------------------------------------

    def run(self, command: str) -> list[str]:
        tokens = _TOKEN.findall(command)
        name, args, kwargs = tokens[0], [], {}
        for tok in tokens[1:]:
            if "=" in tok and not tok.startswith("("):
                key, value = tok.split("=", 1)
                kwargs[key] = value
            else:
                args.append(tok)
        if name not in self.commands:
            raise ValueError(f"unknown command {name!r}")
        self.out = []
        self.indent = ""
        self.commands[name](args, kwargs)
        return self.out or ["ok"]

    def emit(self, line: str) -> None:
        self.out.append(self.indent + line)

    def note_changes(self) -> None:
        """Print role and term changes since the last call (like etcd's INFO lines)."""
        for i, node in self.nodes.items():
            st = node.status
            now = (st.role, st.term)
            if self.seen.get(i) != now:
                self.seen[i] = now
                self.emit(f"{i} became {st.role.name.lower()} at term {st.term}")

    def targets(self, args: list[str]) -> list[int]:
        ids = [i for a in args for i in _ids(a)] if args and args != ["all"] else []
        return ids or sorted(self.nodes)

    def guarded(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except TrioraftError as exc:
            self.emit(f"error: {type(exc).__name__}: {exc}")
            return None

    # --- setup ---------------------------------------------------------------------------

    def add_nodes(self, args: list[str], kw: dict[str, str]) -> None:
        n = int(args[0])
        first = max(self.nodes, default=0) + 1
        new = list(range(first, first + n))
        voters = tuple(_ids(kw["voters"])) if "voters" in kw else tuple(range(1, new[-1] + 1))
        options: dict[str, Any] = {}
        for key, name, conv in (
            ("election", "election_ticks", int),
            ("heartbeat", "heartbeat_ticks", int),
            ("pre-vote", "pre_vote", _bool),
            ("check-quorum", "check_quorum", _bool),
            ("max-inflight", "max_inflight", int),
            ("lazy-commit", "lazy_commit", _bool),
            ("max-bytes", "max_append_bytes", int),
        ):
            if key in kw:
                options[name] = conv(kw[key])
        terms = _ids(kw["log"]) if "log" in kw else []
        entries = [Entry(t, k + 1, EntryKind.NORMAL, b"") for k, t in enumerate(terms)]
        hs = HardState(
            term=int(kw.get("term", max(terms, default=0))),
            vote=int(kw.get("vote", 0)),
            commit=int(kw.get("commit", 0)),
        )
        for i in new:
            self.configs[i] = CoreConfig(node_id=i, voters=voters, **options)
            self.seeds[i] = int(kw.get("seed", 0)) * 1000 + i
            self.storage[i] = Storage(hs, list(entries), 0)
            self.start(i, fresh=True)
            self.seen[i] = (Role.FOLLOWER, hs.term)  # a fresh node is a follower: not news

    def start(self, i: int, *, fresh: bool = False) -> None:
        st = self.storage[i]
        self.nodes[i] = RawNode(
            self.configs[i],
            hard_state=st.hard_state,
            entries=st.entries,
            applied=st.applied,
            rng=random.Random(self.seeds[i]),
            fresh_start=fresh,
        )

    def restart(self, args: list[str], kw: dict[str, str]) -> None:
        for i in self.targets(args):
            self.start(i)
            st = self.storage[i]
            self.emit(
                f"{i} restarted: {describe.hard_state(st.hard_state)} "
                f"last={len(st.entries)} applied={st.applied}"
            )
            self.seen.pop(i, None)
        self.note_changes()

    # --- requests ------------------------------------------------------------------------

    def campaign(self, args: list[str], kw: dict[str, str]) -> None:
        self.nodes[int(args[0])].campaign()
        self.note_changes()

    def propose(self, args: list[str], kw: dict[str, str]) -> None:
        data = args[1].strip("'").encode()
        res = self.guarded(lambda: self.nodes[int(args[0])].propose(data))
        if res is not None:
            self.emit(f"proposed at index={res[0]} term={res[1]}")

    def read_index(self, args: list[str], kw: dict[str, str]) -> None:
        self.guarded(lambda: self.nodes[int(args[0])].read_index(int(args[1])))

    def transfer_leader(self, args: list[str], kw: dict[str, str]) -> None:
        self.guarded(lambda: self.nodes[int(args[0])].transfer_leader(int(args[1])))
        self.note_changes()

    def tick(self, args: list[str], kw: dict[str, str]) -> None:
        for _ in range(int(kw.get("count", "1"))):
            for i in self.targets(args):
                self.nodes[i].tick()
                self.note_changes()

    # --- the shell -----------------------------------------------------------------------

    def handle_ready(self, i: int) -> bool:
        node = self.nodes[i]
        if not node.has_ready():
            return False
        rd: Ready = node.ready()
        self.indent = ""
        self.emit(f"> {i} handling Ready")
        self.indent = "  "
        for line in describe.ready(rd, self.cut_note):
            self.emit(line)
        st = self.storage[i]
        if rd.entries:
            del st.entries[rd.entries[0].index - 1 :]
            st.entries.extend(rd.entries)
        if rd.hard_state is not None:
            st.hard_state = rd.hard_state
        self.send(rd.messages)
        self.send(rd.persisted_messages)  # after the persist above
        if rd.committed_entries:
            st.applied = rd.committed_entries[-1].index
        node.advance(rd)
        self.note_changes()
        self.indent = ""
        return True

    def cut_note(self, m: Message) -> str:
        return " (dropped: link cut)" if (m.src, m.dst) in self.cuts else ""

    def send(self, msgs: Sequence[Message]) -> None:
        """Queue messages; those on a cut link are lost at once (shown in the Ready)."""
        self.queue.extend(m for m in msgs if (m.src, m.dst) not in self.cuts)

    def process_ready(self, args: list[str], kw: dict[str, str]) -> None:
        for i in self.targets(args):
            self.handle_ready(i)

    def deliver(self, ids: list[int], drop: set[int], src: set[int] | None = None) -> bool:
        def picked(m: Message) -> bool:
            return (m.dst in ids or m.dst in drop) and (src is None or m.src in src)

        batch = [m for m in self.queue if picked(m)]
        if not batch:
            return False
        self.queue = [m for m in self.queue if not picked(m)]
        for dst in sorted({m.dst for m in batch}):
            self.indent = ""
            verb = "dropping" if dst in drop else "receiving"
            self.emit(f"> {dst} {verb} messages")
            self.indent = "  "
            for m in (m for m in batch if m.dst == dst):
                if dst in drop:
                    self.emit(describe.message(m))
                elif (m.src, m.dst) in self.cuts:
                    self.emit(f"{describe.message(m)} (dropped: link cut)")
                else:
                    self.emit(describe.message(m))
                    self.nodes[dst].step(m)
                    self.note_changes()
        self.indent = ""
        return True

    def deliver_msgs(self, args: list[str], kw: dict[str, str]) -> None:
        drop = set(_ids(kw["drop"])) if "drop" in kw else set()
        ids = [] if drop and not args else self.targets(args)
        src = set(_ids(kw["from"])) if "from" in kw else None
        self.deliver(ids, drop, src)

    def stabilize(self, args: list[str], kw: dict[str, str]) -> None:
        ids = self.targets(args)
        for _ in range(1000):
            worked = [self.handle_ready(i) for i in ids]
            if not self.deliver(ids, set()) and not any(worked):
                return
        raise AssertionError("stabilize did not converge in 1000 rounds")

    # --- the network ---------------------------------------------------------------------

    def partition(self, args: list[str], kw: dict[str, str]) -> None:
        groups = [_ids(a) for a in args]
        for g, a in enumerate(groups):
            for b in groups[g + 1 :]:
                for x in a:
                    for y in b:
                        self.cuts |= {(x, y), (y, x)}
        self.emit(f"cut {len(self.cuts)} links")

    def cut(self, args: list[str], kw: dict[str, str]) -> None:
        self.cuts.add((int(args[0]), int(args[1])))
        self.emit(f"cut {len(self.cuts)} links")

    def isolate(self, args: list[str], kw: dict[str, str]) -> None:
        i = int(args[0])
        self.partition([str(i), "(" + ",".join(str(j) for j in self.nodes if j != i) + ")"], {})

    def heal(self, args: list[str], kw: dict[str, str]) -> None:
        self.cuts.clear()

    def hold_msgs(self, args: list[str], kw: dict[str, str]) -> None:
        ids = self.targets(args)
        copy = _bool(kw.get("copy", "false"))
        for m in self.queue:
            if m.dst in ids:
                self.held.append(m)
                self.emit(f"holding {'a copy of ' if copy else ''}{describe.message(m)}")
        if not copy:
            self.queue = [m for m in self.queue if m.dst not in ids]

    def release_msgs(self, args: list[str], kw: dict[str, str]) -> None:
        for m in self.held:
            self.emit(f"releasing {describe.message(m)}")
        self.queue.extend(self.held)
        self.held = []

    # --- queries -------------------------------------------------------------------------

    def status(self, args: list[str], kw: dict[str, str]) -> None:
        for i in self.targets(args):
            st = self.nodes[i].status
            raft = self.nodes[i]._raft
            self.emit(
                f"{i}: {st.role.name} term={st.term} lead={st.leader_id} commit={st.commit}"
                f" applied={st.applied} last={raft.log.last_term}/{st.last_index}"
            )
            for v, pr in sorted(raft.prs.items()):
                if v == i:
                    continue
                line = f"  {v}: {pr.state.name} match={pr.match} next={pr.next}"
                if pr.state is ProgressState.REPLICATE:
                    line += f" inflight={pr.inflights.count}/{pr.inflights.capacity}"
                if pr.is_paused():
                    line += " paused"
                self.emit(line)

    def lease(self, args: list[str], kw: dict[str, str]) -> None:
        for i in self.targets(args):
            valid = self.nodes[i].lease_valid()
            self.emit(f"{i}: {'lease valid' if valid else 'no lease'}")

    def raft_log(self, args: list[str], kw: dict[str, str]) -> None:
        for i in self.targets(args):
            st = self.storage[i]
            terms = " ".join(str(e.term) for e in st.entries) or "(empty)"
            self.emit(f"{i}: {terms} (commit={st.hard_state.commit})")


def run_file(path: Path, *, rewrite: bool | None = None) -> None:
    """Run every block of ``path``; assert outputs match (or rewrite them)."""
    if rewrite is None:
        rewrite = os.environ.get(REWRITE_ENV, "") not in ("", "0")
    blocks = parse(path.read_text())
    env = Env()
    outputs: list[list[str]] = []
    for block in blocks:
        if not block.command:
            outputs.append([])
            continue
        actual = env.run(block.command)
        outputs.append(actual)
        if not rewrite and actual != block.expected:
            diff = "\n".join(
                difflib.unified_diff(block.expected, actual, "expected", "actual", lineterm="")
            )
            raise AssertionError(
                f"{path.name}:{block.line}: output of {block.command!r} differs "
                f"(rerun with {REWRITE_ENV}=1 to accept):\n{diff}"
            )
    if rewrite:
        path.write_text(render(blocks, outputs))
