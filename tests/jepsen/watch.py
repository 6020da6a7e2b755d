"""The watch workload: writers put (and now and then delete) keys under ``w/`` while
watchers follow the prefix, through the faults and past the heal.

Watcher 0 starts at revision 1 (a replay of everything); watcher i > 0 starts later, at the
revision a read returned then. A watch that gives up (``Client.watch`` resumes broken
streams by itself; it raises only when it cannot) is reopened by the watcher at the
revision after the last it had; if the node compacted that history away (``Compacted``),
a new stream (``watcher-i#2``, checked as a watcher of its own) starts at the oldest
revision the node kept (node watch history is an in-memory ring, so a restart compacts it).
After healing, ``final`` reads the prefix (a linearizable
scan: the state at revision R) and waits until every watcher has caught up to R.

``checkers.check_watch`` then checks: same events for every watcher, in revision order, no
gap, no duplicate; every acknowledged put is an event; the replay of watcher 0 equals the
final read. Needs ``Client.watch`` and ``Client.scan_iter``; without them the check is
skipped.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import trio

from jepsen.checkers import SKIPPED, Check, Event, check_watch
from jepsen.history import Op
from jepsen.workloads import Workload, _s, record
from trioraft.client import Client
from trioraft.errors import Compacted, TrioraftError

PREFIX = "w/"


class WatchWorkload(Workload):
    name = "watch"

    def __init__(self, *args: Any, watchers: int = 3, keys: int = 4, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.n_watchers = watchers
        self.n_keys = keys
        self._values = itertools.count()
        self.streams: dict[str, list[Event]] = {}
        self.starts: dict[str, int] = {}
        self.caught_up: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.final_read: tuple[int, dict[str, str]] | None = None
        self._live: dict[str, Any] = {}  # stream -> its open Watch
        self._ended: set[str] = set()  # streams cut short by Compacted
        self.error_kinds: Counter[str] = Counter()
        self._stop = trio.Event()

    @staticmethod
    def available() -> bool:
        return hasattr(Client, "watch") and hasattr(Client, "scan_iter")

    # --- writers (during the workload phase) ---
    async def run(self, stop_at: float) -> None:
        if self.available():
            await super().run(stop_at)

    async def one_op(self, client: Client, worker: int, rng: random.Random) -> None:
        key = f"{PREFIX}{rng.randrange(self.n_keys)}"
        if rng.random() < 0.1:
            await record(
                self.history, worker, Op(worker, 0, 0, "wdelete", key), lambda: client.delete(key)
            )
            return
        value = f"{worker}.{next(self._values)}"
        await record(
            self.history,
            worker,
            Op(worker, 0, 0, "wput", key, value=value),
            lambda: client.put(key, value),
        )

    # --- watchers (from before the workload until the final read) ---
    async def background(self, duration: float) -> None:
        if not self.available():
            return
        async with trio.open_nursery() as nursery:
            for i in range(self.n_watchers):
                nursery.start_soon(self._watcher, f"watcher-{i}", i * duration / self.n_watchers)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _watcher(self, watcher: str, delay: float) -> None:
        async with self.clients.open() as client:
            await trio.sleep(delay)
            start = 1
            while delay and start == 1:
                try:
                    start = (await client.get_with_revision(f"{PREFIX}0")).revision + 1
                except TrioraftError:
                    await trio.sleep(0.2)
            segment = 0
            while True:  # one stream per segment; a new one only after Compacted
                segment += 1
                name = watcher if segment == 1 else f"{watcher}#{segment}"
                start = await self._follow(client, name, start)

    async def _follow(self, client: Client, name: str, start: int) -> int:
        """Follow the prefix from ``start`` for as long as the history is there; returns
        where to start a new stream if the node compacted what this one needed."""
        self.streams[name] = events = []
        self.errors[name] = 0
        self.starts[name], self.caught_up[name] = start, start - 1
        following = start
        while True:
            try:
                async with client.watch(PREFIX, prefix=True, start_revision=following) as w:
                    self._live[name] = w
                    async for ev in w:
                        value = None if int(ev.type) == 1 else _s(ev.kv.value)  # 1: DELETE
                        events.append(Event(ev.revision, _s(ev.kv.key) or "", value))
                        following = ev.revision + 1
                    self.caught_up[name] = self.progress(name)
            except Compacted as exc:  # the stream cannot go on without a gap: a new one
                self.caught_up[name] = self.progress(name)
                self._live.pop(name, None)
                self.errors[name] += 1
                self._ended.add(name)
                return max(following, getattr(exc, "compact_revision", 0))  # oldest kept
            except TrioraftError as exc:
                self.error_kinds[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                self.caught_up[name] = self.progress(name)
                following = max(following, self.caught_up[name] + 1)
                self._live.pop(name, None)
                self.errors[name] += 1
                await trio.sleep(0.2)

    def progress(self, name: str) -> int:
        """Every event up to this revision has reached the watcher (events or progress)."""
        live = self._live.get(name)
        return max(self.caught_up[name], live.revision if live is not None else 0)

    # --- after healing ---
    async def final(self, deadline: float) -> None:
        if not self.available():
            return

        async def scan() -> dict[str, Any]:
            async with self.clients.open() as client:
                result = await client.scan(PREFIX, limit=10_000)
                state = {_s(kv.key) or "": _s(kv.value) or "" for kv in result.entries}
                return {"revision": result.revision, "state": state}

        op = await record(self.history, "final", Op("final", 0, 0, "read-prefix", PREFIX), scan)
        if op.ok is True:
            self.final_read = (op.output["revision"], op.output["state"])
            # a watcher's revision only moves with events or progress messages: wait for both
            with trio.move_on_at(deadline):
                live = [n for n in self.caught_up if n not in self._ended]
                while min(map(self.progress, live), default=0) < self.final_read[0]:
                    await trio.sleep(0.1)
        for name in self.caught_up:
            self.caught_up[name] = self.progress(name)
        self._stop.set()

    def check(self) -> Check:
        if not self.available():
            return Check("watch", SKIPPED, "watch: skipped (Client.watch is not built yet)")
        acknowledged = [
            Event(op.output, op.key or "", op.value)
            for op in self.history.client_ops("wput")
            if op.ok is True
        ]
        streams = {
            name: (self.starts[name], end, self.streams[name])
            for name, end in self.caught_up.items()
        }
        result = check_watch(streams, acknowledged, self.final_read)
        if self.final_read is None:
            result.summary += " (no final read)"
        if any(self.errors.values()):
            result.summary += f" (watches reopened: {self.errors}; {dict(self.error_kinds)})"
        return result
