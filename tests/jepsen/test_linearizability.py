"""The linearizability checker against known-good and known-bad register histories.

Each bad history is one of the anomalies the fault suite exists to catch (stale read, lost
write, a failed cas that took effect, a read of a value nobody wrote, a new-then-old read
inversion); each must be rejected. The randomized test compares the search (with and
without its pruning of unobserved unknown writes) with a brute-force check over every order.
"""

from __future__ import annotations

import itertools
import random

import pytest

from jepsen.history import UNKNOWN, Op
from jepsen.linearizability import check, check_key, prepare, step

K = "k"


def w(client, call, ret, value, ok=True):
    return Op(client, call, ret, "write", K, value=value, ok=ok)


def r(client, call, ret, value, ok=True):
    return Op(client, call, ret, "read", K, output=value, ok=ok)


def cas(client, call, ret, expected, new, succeeded=True, ok=True, current="absent"):
    out = None
    if ok is True:
        out = {"succeeded": succeeded}
        if current != "absent":
            out["current"] = current
    return Op(client, call, ret, "cas", K, value=new, expected=expected, output=out, ok=ok)


def valid(*ops, **kw):
    return check_key(K, ops, **kw).valid


# --- good histories ---
def test_empty_and_sequential():
    assert valid() is True
    assert valid(r(1, 0, 1, None)) is True
    assert valid(w(1, 0, 1, "a"), r(1, 2, 3, "a"), w(2, 4, 5, "b"), r(3, 6, 7, "b")) is True


def test_concurrent_reads_may_see_either_side_of_a_write():
    ops = [w(1, 0, 1, "a"), w(2, 10, 20, "b"), r(3, 11, 12, "a"), r(4, 13, 14, "b")]
    assert valid(*ops) is True
    # a read that overlaps both writes may see the first
    assert valid(w(1, 0, 10, "a"), w(2, 5, 20, "b"), r(3, 1, 30, "a")) is True


def test_unknown_write_may_take_effect_later():
    ops = [
        w(1, 0, 1, "a"),
        w(2, 2, 3, "b", ok=UNKNOWN),  # timed out
        r(3, 4, 5, "a"),  # not yet
        r(3, 100, 101, "b"),  # now visible, long after its client gave up
    ]
    assert valid(*ops) is True


def test_unknown_write_may_never_take_effect():
    assert valid(w(1, 0, 1, "a"), w(2, 2, 3, "b", ok=UNKNOWN), r(3, 50, 51, "a")) is True


def test_cas_histories():
    assert valid(w(1, 0, 1, "a"), cas(2, 2, 3, "a", "b"), r(3, 4, 5, "b")) is True
    # a cas that failed because the value had moved on, and said what it saw
    ops = [w(1, 0, 1, "a"), w(1, 2, 3, "b"), cas(2, 4, 5, "a", "c", False, current="b")]
    assert valid(*ops, r(3, 6, 7, "b")) is True
    # an unknown cas that later turns out to have succeeded
    assert valid(w(1, 0, 1, "a"), cas(2, 2, 3, "a", "b", ok=UNKNOWN), r(3, 9, 10, "b")) is True
    # cas on an absent key
    assert valid(cas(1, 0, 1, None, "a"), r(2, 2, 3, "a")) is True


def test_failed_ops_are_dropped():
    # a read that failed says nothing; a write that definitely failed never happened
    assert valid(w(1, 0, 1, "a"), r(2, 2, 3, "zzz", ok=False), w(3, 4, 5, "b", ok=False)) is True


def test_delete():
    ops = [w(1, 0, 1, "a"), Op(2, 2, 3, "delete", K), r(3, 4, 5, None)]
    assert valid(*ops) is True
    assert valid(*ops, r(3, 6, 7, "a")) is False


# --- bad histories: each must be rejected ---
def test_stale_read():
    ops = [w(1, 0, 1, "a"), w(2, 2, 3, "b"), r(3, 4, 5, "a")]
    result = check_key(K, ops)
    assert result.valid is False
    assert "NOT linearizable" in result.explanation
    assert "read -> 'a'" in result.explanation


def test_lost_write():
    assert valid(w(1, 0, 1, "a"), r(2, 2, 3, None)) is False
    assert valid(w(1, 0, 1, "a"), w(1, 2, 3, "b"), r(2, 10, 11, "a"), r(2, 12, 13, "a")) is False


def test_failed_cas_that_took_effect():
    # the cas answered "did not succeed" (or failed outright), yet its value shows up
    ops = [w(1, 0, 1, "a"), cas(2, 2, 3, "a", "b", succeeded=False, current="a"), r(3, 4, 5, "b")]
    assert valid(*ops) is False
    ops = [w(1, 0, 1, "a"), cas(2, 2, 3, "a", "b", succeeded=False), r(3, 4, 5, "a")]
    assert valid(*ops) is False  # it reports failure although the value was the expected one
    ops = [w(1, 0, 1, "a"), cas(2, 2, 3, "a", "b", ok=False), r(3, 4, 5, "b")]
    assert valid(*ops) is False


def test_cas_that_succeeded_against_the_wrong_value():
    assert valid(w(1, 0, 1, "a"), cas(2, 2, 3, "x", "b")) is False


def test_read_of_a_never_written_value():
    assert valid(w(1, 0, 1, "a"), r(2, 0, 5, "ghost")) is False


def test_new_then_old_inversion():
    # two sequential reads during one slow write: once the new value is seen, the old is gone
    ops = [w(1, 0, 1, "a"), w(2, 2, 100, "b"), r(3, 3, 4, "b"), r(4, 5, 6, "a")]
    assert valid(*ops) is False


def test_duplicate_write_is_not_linearizable():
    # one put applied twice (a retry after a lost reply) with another write in between
    ops = [w(1, 0, 50, "v"), r(2, 1, 2, "v"), w(3, 3, 4, "w"), r(2, 5, 6, "w"), r(2, 7, 8, "v")]
    assert valid(*ops) is False


def test_keys_are_checked_separately():
    a = [Op(1, 0, 1, "write", "a", value="1"), Op(2, 2, 3, "read", "a", output="1")]
    b = [Op(1, 0, 1, "write", "b", value="2"), Op(2, 2, 3, "read", "b", output="1")]
    result = check(a + b)
    assert result.valid is False
    assert [k.key for k in result.failures] == ["b"]
    assert "1 invalid" in result.summary()


def test_too_expensive_is_reported_not_guessed():
    # many concurrent writes, all observed, each read pinned: a big search space
    ops = [w(i, 0, 1000, f"v{i}") for i in range(14)]
    ops += [r(100 + i, 0, 1000, f"v{i}") for i in range(14)]
    ops.append(r(999, 1001, 1002, "nope"))
    result = check_key(K, ops, max_states=500)
    assert result.valid == UNKNOWN
    assert "too expensive" in result.explanation


def test_pruning_drops_only_unobserved_unknown_writes():
    ops = [w(1, 0, 1, "a", ok=UNKNOWN), w(2, 0, 1, "b", ok=UNKNOWN), r(3, 5, 6, "a")]
    assert [o.value for o in prepare(ops) if o.op == "write"] == ["a"]
    assert len(prepare(ops, prune=False)) == 3


# --- randomized: the search agrees with brute force ---
def brute_force(ops: list[Op]) -> bool:
    ops = prepare(ops, prune=False)
    for order in itertools.permutations(ops):
        # real-time order: if a returned before b was called, a comes first
        pos = {id(o): i for i, o in enumerate(order)}
        if any(
            not a.unknown and a.return_ns < b.call_ns and pos[id(a)] > pos[id(b)]
            for a in ops
            for b in ops
        ):
            continue
        state = None
        for o in order:
            legal, state = step(state, o)
            if not legal:
                break
        else:
            return True
    return False


def random_history(rng: random.Random, n: int) -> list[Op]:
    """A register run with random overlaps, then perhaps corrupted."""
    ops = []
    state = None
    values = iter(f"v{i}" for i in range(100))
    t = 0
    for client in range(n):
        call = rng.randrange(0, 20)
        ret = call + rng.randrange(1, 15)
        kind = rng.choice(["read", "write", "write", "cas"])
        ok = rng.choice([True, True, True, UNKNOWN, False])
        if kind == "read":
            seen = rng.choice([state, f"v{rng.randrange(4)}", None])
            ops.append(r(client, call, ret, seen, ok=True if ok == UNKNOWN else ok))
            state = seen if rng.random() < 0.5 else state
        elif kind == "write":
            state = next(values)
            ops.append(w(client, call, ret, state, ok=ok))
        else:
            new = next(values)
            expected = rng.choice([state, None, "v0"])
            succeeded = rng.random() < 0.6
            ops.append(cas(client, call, ret, expected, new, succeeded, ok, current=state))
            state = new if succeeded else state
        t = max(t, ret)
    return ops


@pytest.mark.parametrize("seed", range(300))
def test_search_agrees_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    ops = random_history(rng, rng.randrange(1, 7))
    expected = brute_force(ops)
    assert check_key(K, ops, prune=False).valid is expected
    assert check_key(K, ops).valid is expected, "pruning changed the verdict"
