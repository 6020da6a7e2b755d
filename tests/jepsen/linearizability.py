"""A linearizability checker for per-key registers: Wing & Gong's search, Lowe's memoization.

Linearizability is compositional (Herlihy & Wing): a history of independent keys is
linearizable iff each key's sub-history is, so the checker splits by key and searches each
alone, which keeps every search small.

The search (Wing & Gong 1993, as refined by Lowe, "Testing for linearizability", 2017):
keep the key's call and return events in a time-ordered doubly linked list. Walk it from the
head: at a call, try to linearize that op now (apply it to the model; it must be legal),
remove its call and return from the list, push it on a stack and start again from the head;
at a return whose op is not yet linearized, that op had to happen before this point and none
of the remaining orders works, so pop the last choice and try the next op after it. The
history is linearizable when the list is empty. Lowe's memoization: remember every
(set of linearized ops, model state) reached; reaching one again cannot lead anywhere new.

Histories with unknown outcomes (``ok == "unknown"``: the client timed out or crashed): such
an op may take effect at any time after its call, or never. Its return is put at +infinity,
so the search may place it anywhere after its call; placing it last is the same as "never",
because nothing observes the state after the last op. Reads with unknown or failed outcomes
say nothing and are dropped; writes that definitely failed (``ok is False``) are dropped,
so a read of their value cannot be explained and fails the check.

An unknown write whose value no op ever observed is dropped too (when values are unique per
key): if the history is linearizable with it, the same order without it is still legal (no
read saw its value, so none sat between it and the next write), and if it is linearizable
without it, putting it last keeps it so. This bounds the cost of long partitions, during
which many writes time out.

The search is bounded (``max_states`` memoized states, ``max_seconds``): past the bound the
key's outcome is ``"unknown"`` (too expensive), never a hang and never a guess.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jepsen.history import NEMESIS, UNKNOWN, Op

NEVER = 1 << 62  # the return time of an op with an unknown outcome
REGISTER_OPS = ("read", "write", "cas", "delete")

State = Any  # the register's value: str, or None when the key is absent


# --- the model: a register with read, write, compare-and-set and delete ---
def step(state: State, op: Op) -> tuple[bool, State]:
    """Apply ``op`` to ``state``: (is it legal here, the state after it)."""
    if op.op == "read":
        return op.output == state, state
    if op.op == "write":
        return True, op.value
    if op.op == "delete":
        return True, None
    if op.op == "cas":
        if op.unknown:  # it took effect at some point: whatever the state then decided
            return True, (op.value if state == op.expected else state)
        out = op.output or {}
        if out.get("succeeded"):
            return state == op.expected, op.value
        # a cas that reported failure: the value differed, and it reported what it was
        if state == op.expected:
            return False, state
        if "current" in out and out["current"] != state:
            return False, state
        return True, state
    raise ValueError(f"the register model has no op {op.op!r}")


def describe(op: Op, t0: int = 0) -> str:
    """One line for a report: who, what, with what outcome, when (seconds from ``t0``)."""
    match op.op:
        case "read":
            what = f"read -> {op.output!r}"
        case "write":
            what = f"write {op.value!r}"
        case "cas":
            what = f"cas {op.expected!r} -> {op.value!r}"
            if op.output is not None:
                what += f" => {op.output}"
        case _:
            what = f"{op.op} {op.value!r}"
    ok = {True: "ok", False: "fail"}.get(op.ok, str(op.ok))  # type: ignore[call-overload]
    ret = "never" if op.unknown else f"{(op.return_ns - t0) / 1e9:.3f}s"
    return f"client {op.client}: {what} [{ok}; call {(op.call_ns - t0) / 1e9:.3f}s, return {ret}]"


# --- preparing a key's history ---
def prepare(ops: Iterable[Op], *, prune: bool = True) -> list[Op]:
    """The ops the search must place: drop failed ops, unknown reads and (with ``prune``)
    unknown writes nobody observed."""
    kept = []
    for op in ops:
        if op.client == NEMESIS or op.op not in REGISTER_OPS:
            continue
        if op.ok is False or (op.op == "read" and op.ok != True):  # noqa: E712
            continue
        kept.append(op)
    return _drop_unobserved(kept) if prune else kept


def _drop_unobserved(ops: list[Op]) -> list[Op]:
    written = [o.value for o in ops if o.op in ("write", "cas")]
    if len(written) != len(set(map(repr, written))):
        return ops  # values are not unique: the argument for dropping does not hold
    observed: set[str] = set()
    for o in ops:
        if o.op == "read":
            observed.add(repr(o.output))
        elif o.op == "cas":
            observed.add(repr(o.expected))
            out = o.output if isinstance(o.output, dict) else {}
            if not o.unknown and not out.get("succeeded"):
                if "current" not in out:
                    # a failed cas that does not say what it saw constrains the state
                    # without naming it: dropping a write could make it illegal
                    return ops
                observed.add(repr(out["current"]))
    return [
        o
        for o in ops
        if not (o.unknown and o.op in ("write", "cas") and repr(o.value) not in observed)
    ]


# --- the search ---
@dataclass(slots=True, eq=False)
class _Entry:
    bit: int
    op: Op | None  # set on calls only
    time: int
    is_call: bool
    prev: _Entry | None = None
    next: _Entry | None = None
    match: _Entry | None = None  # a call's return


@dataclass(slots=True)
class KeyResult:
    key: str
    valid: bool | str  # True, False or "unknown" (too expensive to decide)
    ops: int
    states: int
    seconds: float
    explanation: str = ""


@dataclass(slots=True)
class LinResult:
    valid: bool | str
    keys: list[KeyResult] = field(default_factory=list)

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys if k.valid is False]

    @property
    def undecided(self) -> list[KeyResult]:
        return [k for k in self.keys if k.valid == UNKNOWN]

    def summary(self) -> str:
        ops = sum(k.ops for k in self.keys)
        states = sum(k.states for k in self.keys)
        text = (
            f"linearizability: {self.valid} ({len(self.keys)} keys, {ops} ops searched, "
            f"{states} states; {len(self.failures)} invalid, {len(self.undecided)} too expensive)"
        )
        for k in self.failures[:3] + self.undecided[:3]:
            text += "\n" + k.explanation
        return text


def _entries(ops: Sequence[Op]) -> _Entry:
    """The time-ordered list of call and return events, behind a head sentinel."""
    events = []
    for bit, op in enumerate(ops):
        call = _Entry(bit, op, op.call_ns, True)
        ret = _Entry(bit, None, NEVER if op.unknown else op.return_ns, False)
        call.match = ret
        events += [call, ret]
    # calls before returns at equal times: such ops count as concurrent (the lenient order)
    events.sort(key=lambda e: (e.time, not e.is_call, e.bit))
    head = _Entry(-1, None, -1, False)
    prev = head
    for e in events:
        prev.next, e.prev = e, prev
        prev = e
    return head


def _lift(call: _Entry) -> None:
    ret = call.match
    assert call.prev is not None and call.next is not None and ret is not None
    assert ret.prev is not None
    call.prev.next = call.next
    call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    ret = call.match
    assert call.prev is not None and call.next is not None and ret is not None
    assert ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    call.next.prev = call


def check_key(
    key: str,
    history: Iterable[Op],
    *,
    init: State = None,
    max_states: int = 2_000_000,
    max_seconds: float = 60.0,
    prune: bool = True,
) -> KeyResult:
    """Is this one key's history linearizable for a register that starts at ``init``?"""
    started = time.monotonic()
    ops = prepare(history, prune=prune)
    head = _entries(ops)
    state: State = init
    linearized = 0
    cache: set[tuple[int, State]] = set()
    stack: list[tuple[_Entry, State]] = []
    best: list[tuple[_Entry, State]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        assert entry is not None
        if entry.is_call:
            assert entry.op is not None
            legal, after = step(state, entry.op)
            if legal:
                marked = linearized | (1 << entry.bit)
                if (marked, after) not in cache:
                    cache.add((marked, after))
                    stack.append((entry, state))
                    if len(stack) > len(best):
                        best = list(stack)
                    state, linearized = after, marked
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:  # an op that must have happened by now was not linearized: backtrack
            if not stack:
                return KeyResult(
                    key,
                    False,
                    len(ops),
                    len(cache),
                    time.monotonic() - started,
                    _explain(key, ops, best, init),
                )
            top, state = stack.pop()
            linearized &= ~(1 << top.bit)
            _unlift(top)
            entry = top.next
        steps += 1
        if len(cache) > max_states or (
            steps % 4096 == 0 and time.monotonic() - started > max_seconds
        ):
            elapsed = time.monotonic() - started
            return KeyResult(
                key,
                UNKNOWN,
                len(ops),
                len(cache),
                elapsed,
                f"key {key}: too expensive to check ({len(ops)} ops; gave up after "
                f"{len(cache)} states, {elapsed:.1f} s)",
            )
    return KeyResult(key, True, len(ops), len(cache), time.monotonic() - started)


def _explain(key: str, ops: list[Op], best: list[tuple[_Entry, State]], init: State) -> str:
    """Where the search got stuck: the longest linearizable prefix and what could not follow."""
    t0 = min((o.call_ns for o in ops), default=0)
    done = {e.bit for e, _s in best}
    state = init
    prefix = []
    for e, _before in best:
        assert e.op is not None
        state = step(state, e.op)[1]
        prefix.append(f"    {describe(e.op, t0)}  => {state!r}")
    pending = [(bit, op) for bit, op in enumerate(ops) if bit not in done]
    lines = [
        f"key {key}: NOT linearizable ({len(ops)} ops; times from the key's first call)",
        f"  longest linearizable prefix: {len(best)} ops, ending with:",
        *prefix[-8:],
        f"  state then: {state!r}",
    ]
    if pending:
        deadline = min(NEVER if op.unknown else op.return_ns for _b, op in pending)
        stuck = [op for _b, op in pending if not op.unknown and op.return_ns == deadline]
        lines.append("  none of these can come next (each is illegal in that state or leads")
        lines.append("  to a dead end), but the first must complete before the others start:")
        for _bit, op in sorted(pending, key=lambda p: p[1].call_ns):
            if op.call_ns > deadline:
                break
            legal = step(state, op)[0]
            mark = "->" if op in stuck else "  "
            lines.append(f"  {mark} {describe(op, t0)}{'' if legal else '  (illegal here)'}")
    return "\n".join(lines)


def check(
    history: Iterable[Op],
    *,
    max_states: int = 2_000_000,
    max_seconds: float = 60.0,
) -> LinResult:
    """Check every key's register history; valid is False if any key is not linearizable,
    "unknown" if none is but some key was too expensive to decide."""
    by_key: dict[str, list[Op]] = {}
    for op in history:
        if op.client != NEMESIS and op.op in REGISTER_OPS and op.key is not None:
            by_key.setdefault(op.key, []).append(op)
    keys = [
        check_key(k, v, max_states=max_states, max_seconds=max_seconds)
        for k, v in sorted(by_key.items())
    ]
    valid: bool | str = True
    if any(k.valid is False for k in keys):
        valid = False
    elif any(k.valid == UNKNOWN for k in keys):
        valid = UNKNOWN
    return LinResult(valid, keys)
