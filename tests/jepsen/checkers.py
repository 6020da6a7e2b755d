"""Checkers other than linearizability: set, watch, node logs, and the result type.

Each returns a ``Check``: ``valid`` is True, False, ``"unknown"`` (could not decide, e.g. the
final read never completed) or ``"skipped"`` (the product lacks what the check needs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepsen.history import UNKNOWN, Op

SKIPPED = "skipped"


@dataclass
class Check:
    name: str
    valid: bool | str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.valid is False


def _sample(items: Iterable[Any], n: int = 10) -> list[Any]:
    return sorted(items)[:n]


# --- set: unique inserts, then one final read ---
def check_set(history: Iterable[Op]) -> Check:
    """Every acknowledged add is in the final read; nothing is there that no add attempted;
    no add that definitely failed is there. Unknown adds may go either way."""
    attempts: dict[str, Any] = {}
    final: Op | None = None
    for op in history:
        if op.op == "add":
            attempts[op.value] = op.ok
        elif op.op == "read-set" and op.ok is True:
            final = op
    if final is None:
        return Check("set", UNKNOWN, f"set: no final read completed ({len(attempts)} adds)")
    present = set(final.output["present"])
    unread = set(final.output.get("unread", ()))
    ok = {e for e, r in attempts.items() if r is True}
    unknown = {e for e, r in attempts.items() if r == UNKNOWN}
    lost = ok - present - unread
    unexpected = present - set(attempts)
    failed_present = {e for e in present if attempts.get(e) is False}
    corrupt = final.output.get("corrupt", {})
    details = {
        "attempted": len(attempts),
        "acknowledged": len(ok),
        "unknown": len(unknown),
        "recovered_unknown": len(unknown & present),
        "present": len(present),
        "unread": len(unread),
        "lost": _sample(lost),
        "lost_count": len(lost),
        "unexpected": _sample(unexpected),
        "failed_but_present": _sample(failed_present),
        "corrupt": dict(list(corrupt.items())[:10]),
    }
    bad = lost or unexpected or failed_present or corrupt
    valid: bool | str = False if bad else (UNKNOWN if unread & ok else True)
    summary = (
        f"set: {valid} ({len(attempts)} adds, {len(ok)} acknowledged, {len(unknown)} unknown "
        f"of which {len(unknown & present)} present; lost {len(lost)}, unexpected "
        f"{len(unexpected)}, failed-but-present {len(failed_present)}, corrupt {len(corrupt)}"
        f"{f', unread {len(unread)}' if unread else ''})"
    )
    if bad:
        summary += f"\n  lost: {details['lost']}\n  unexpected: {details['unexpected']}"
        summary += f"\n  failed but present: {details['failed_but_present']}"
    return Check("set", valid, summary, details)


# --- watch: every watcher sees the same events, in order, no gap, no duplicate ---
@dataclass(frozen=True)
class Event:
    revision: int
    key: str
    value: str | None  # None: a delete


def check_watch(
    streams: Mapping[str, tuple[int, int, Sequence[Event]]],
    acknowledged: Iterable[Event] = (),
    final: tuple[int, Mapping[str, str]] | None = None,
) -> Check:
    """``streams``: watcher -> (first revision it asked for, revision it is known to have
    caught up to, the events it received). ``acknowledged``: puts a client saw succeed, with
    their revisions. ``final``: (revision, the watched keys' values at that revision), read
    after the run; every stream that started at revision 1 and caught up to that revision
    must replay to exactly that state.

    Checks: revisions never go back and no (revision, key) comes twice in a stream; watchers
    agree on every event; no stream misses an event (seen by another watcher or acknowledged
    to a client) between its start and the revision it caught up to.
    """
    problems: list[str] = []
    seen: dict[tuple[int, str], Event] = {}
    for name, (_start, _end, events) in streams.items():
        last = 0
        here: set[tuple[int, str]] = set()
        for ev in events:
            at = (ev.revision, ev.key)
            if at in here:
                problems.append(f"{name}: duplicate event {ev}")
            elif ev.revision < last:
                problems.append(f"{name}: out of order: {ev} after revision {last}")
            here.add(at)
            last = max(last, ev.revision)
            first = seen.setdefault(at, ev)
            if first != ev:
                problems.append(f"{name}: {ev}, but another watcher saw {first}")
    for ev in acknowledged:
        first = seen.setdefault((ev.revision, ev.key), ev)
        if first != ev:
            problems.append(f"acknowledged put {ev}, but a watcher saw {first}")
    for name, (start, end, events) in streams.items():
        got = {(ev.revision, ev.key) for ev in events}
        missing = [at for at in sorted(seen) if start <= at[0] <= end and at not in got]
        if missing:
            problems.append(f"{name}: gap: missing {missing[:5]} ({len(missing)} events)")
    replayed = 0
    if final is not None:
        revision, state_then = final
        for name, (start, end, events) in streams.items():
            if start > 1 or end < revision:
                continue
            replayed += 1
            state: dict[str, str] = {}
            for ev in events:
                if ev.revision > revision:
                    break
                if ev.value is None:
                    state.pop(ev.key, None)
                else:
                    state[ev.key] = ev.value
            if state != dict(state_then):
                diff = sorted(set(state.items()) ^ set(state_then.items()))[:5]
                problems.append(f"{name}: replay differs from the final read: {diff}")
    n_events = sum(len(e) for _s, _e, e in streams.values())
    summary = (
        f"watch: {not problems} ({len(streams)} watchers, {n_events} events, "
        f"{len(seen)} distinct; {replayed} replayed against the final read)"
    )
    if problems:
        summary += "".join(f"\n  {p}" for p in problems[:10])
    return Check("watch", not problems, summary, {"problems": problems[:50]})


# --- node logs ---
TRACEBACK = re.compile(r"^\s*\+?\s*(Exception Group )?Traceback \(most recent call last\):", re.M)


def check_logs(paths: Iterable[Path], allowed: Sequence[str] = ()) -> Check:
    """No node log has a traceback, unless its text matches one of ``allowed`` (regexes)."""
    found = []
    for path in paths:
        text = path.read_text(errors="replace") if path.exists() else ""
        for m in TRACEBACK.finditer(text):
            lines = text[m.start() :].split("\n")
            block = [lines[0]]
            for line in lines[1:200]:
                block.append(line)
                if line and not line[0].isspace():
                    break  # the exception line ends the traceback
            body = "\n".join(block)
            if not any(re.search(a, body) for a in allowed):
                found.append(f"{path.name}:\n" + "\n".join([*block[:2], "  ...", *block[-5:]]))
    summary = f"logs: {not found} ({len(found)} unexpected tracebacks)"
    if found:
        summary += "\n" + "\n".join(found[:3])
    return Check("logs", not found, summary, {"tracebacks": found[:20]})
