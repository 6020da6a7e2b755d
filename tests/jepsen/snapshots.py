"""The ``snapshot`` nemesis: a follower kept away until it needs a snapshot.

Runs with this nemesis start every node with small snapshot thresholds (``settings``), so
each node compacts its log every ``snapshot_entries`` applied entries, to
``snapshot_catchup_entries`` entries before its applied index. A fault window then:

1. picks a follower F and cuts it off: ``partition`` (proxy blocks both ways) or ``kill``;
   notes F's last log index L (``status().last_index``; before the kill, for ``kill``);
2. keeps it away until every other node has compacted its log past L + ``MARGIN`` (from the
   nodes' logs: ``log compacted to index I`` and ``installed snapshot I`` start the log at
   I), and at least the window's drawn length; never past ``cap``;
3. heals (the usual heal: unblock, restart); the node that leads then lacks the entries F
   needs, so it must send a snapshot.

``MARGIN`` covers appends F may still get after L was read (bytes a proxy held at the cut
are delivered at the heal; a kill follows the status request). ``check`` (after the run)
requires, for every window whose condition was met, ``node F: installed snapshot I`` with
I > L in F's log after that window's heal; it is ``unknown`` when no window met its
condition (the run did not exercise a snapshot install, which must not pass unnoticed).
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from jepsen.checkers import Check
from jepsen.history import UNKNOWN
from trioraft.errors import TrioraftError

VARIANTS = ("partition", "kill")
MARGIN = 100  # entries
CAP = 20.0  # seconds a window may last past its drawn length at most


def settings(entries: int) -> dict[str, int | str | bool]:
    """Node settings for runs with this nemesis: a snapshot every ``entries`` entries."""
    return {"snapshot_entries": entries, "snapshot_catchup_entries": max(entries // 10, 1)}


_COMPACTED = re.compile(r"node (\d+): log compacted to index (\d+)\b")
_INSTALLED = re.compile(r"node (\d+): installed snapshot (\d+) ")


class LogTail:
    """Reads what a growing log file gained since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines]


@dataclass
class Window:
    node: int
    variant: str
    last_index: int  # F's last log index when it was cut off
    met: bool = False  # every other node compacted past last_index + MARGIN
    waited: float = 0.0
    heal_offset: int | None = None  # F's log size at the heal
    compacted: dict[int, int] = field(default_factory=dict)  # node -> its log start then

    def describe(self) -> str:
        state = "compacted past it" if self.met else "NOT compacted past it"
        return (
            f"snapshot:{self.variant} node={self.node} last_index={self.last_index} "
            f"({state} after {self.waited:.1f} s: log starts {self.compacted})"
        )


class SnapshotFaults:
    """The nemesis's ``snapshot`` windows (``Nemesis`` calls ``start``, ``wait``,
    ``healing``); ``check`` after the nodes stopped."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.tails = {n: LogTail(cluster.log_path(n)) for n in cluster.peers}
        self.log_start: dict[int, int] = dict.fromkeys(cluster.peers, 0)
        self.windows: list[Window] = []

    def _scan(self) -> None:
        for n, tail in self.tails.items():
            for line in tail.new_lines():
                if m := _COMPACTED.search(line):
                    start = int(m.group(2))
                elif m := _INSTALLED.search(line):
                    start = int(m.group(2))
                else:
                    continue
                if int(m.group(1)) == n:
                    self.log_start[n] = max(self.log_start[n], start)

    async def start(self, nemesis: Any, variant: str, node: int) -> Window:
        """Cut ``node`` off; returns its window."""
        others = [n for n in nemesis.nodes if n != node]
        if variant == "partition":
            nemesis.net.partition([[node], others])
            await trio.sleep(0.2)  # what was in flight arrives (or waits in a proxy)
        last = await self._last_index(nemesis.admin, node)
        if variant == "kill":
            nemesis.check_alive()
            nemesis.cluster.kill(node, signal.SIGKILL)
            nemesis.killed.add(node)
        window = Window(node, variant, last)
        self.windows.append(window)
        return window

    async def _last_index(self, admin: Any, node: int) -> int:
        endpoint = self.cluster.clients[node]
        for _ in range(5):
            try:
                return int((await admin.status(endpoint, timeout=1)).last_index)
            except TrioraftError:
                await trio.sleep(0.1)
        return 1 << 62  # unknown: the window cannot meet its condition

    async def wait(self, window: Window, least: float, until: float) -> None:
        """Until the others compacted past the node and ``least`` seconds passed, or
        ``until`` (trio time)."""
        start = trio.current_time()
        goal = window.last_index + MARGIN
        others = [n for n in self.tails if n != window.node]
        done = until
        while trio.current_time() < done:
            self._scan()
            if not window.met and all(self.log_start[n] > goal for n in others):
                window.met = True
                window.compacted = {n: self.log_start[n] for n in others}
                # the log says a compaction was asked for: give it a moment to land
                done = min(until, max(start + least, trio.current_time() + 0.5))
            await trio.sleep(0.2)
        window.waited = trio.current_time() - start
        if not window.met:
            window.compacted = {n: self.log_start[n] for n in others}

    def healing(self, window: Window) -> None:
        """Called just before the heal: installs from now on count for this window."""
        path = self.cluster.log_path(window.node)
        window.heal_offset = path.stat().st_size if path.exists() else 0

    def check(self) -> Check:
        if not self.windows:
            return Check("snapshot", UNKNOWN, "snapshot: unknown (no snapshot window ran)")
        problems: list[str] = []
        installs = 0
        met = [w for w in self.windows if w.met]
        for w in met:
            path = self.cluster.log_path(w.node)
            with path.open("rb") as f:
                f.seek(w.heal_offset or 0)
                text = f.read().decode(errors="replace")
            got = [
                int(m.group(2))
                for m in _INSTALLED.finditer(text)
                if int(m.group(1)) == w.node and int(m.group(2)) > w.last_index
            ]
            installs += bool(got)
            if not got:
                problems.append(
                    f"node {w.node} caught up without installing a snapshot after {w.describe()}"
                )
        valid: bool | str = not problems
        if not met:
            valid = UNKNOWN
        text = (
            f"snapshot: {valid} ({len(self.windows)} windows, {len(met)} kept a follower away "
            f"until the others compacted past it, {installs} followed by a snapshot install "
            "on that follower"
        )
        text += ")" if met else "; no window exercised a snapshot install)"
        if problems:
            text += "".join(f"\n  {p}" for p in problems[:5])
        details = {"windows": [w.describe() for w in self.windows], "problems": problems}
        return Check("snapshot", valid, text, details)
