"""The checkers can fail: each bug planted behind ``CoreConfig.planted_bugs`` (test-only)
is caught within a fixed, deterministic budget of seeds.

A failure report must name the invariant, the seed and the command that reproduces it.
"""

from __future__ import annotations

import dataclasses

import pytest

from sim.run import config_for
from sim.sim import SimFailure, run
from trioraft.core import CoreConfig
from trioraft.core.types import PLANTED_BUGS
from wire.errors import ConfigError

BUDGET = 60  # seeds 0 .. BUDGET-1, tried in order
STEPS = 6000
NODE_COUNTS = [3, 5, 7]

# Which checkers may report each bug (the first to see it wins).
EXPECTED = {
    "double_vote": {"election safety", "durable vote"},
    "commit_old_term": {
        "leader commit rule",
        "state machine safety",
        "leader completeness",
        "acknowledged write",
    },
    "skip_up_to_date_check": {
        "leader completeness",
        "state machine safety",
        "log matching",
        "acknowledged write",
    },
    "forget_vote_persist": {"durable vote", "election safety"},
    "count_unsynced_self": {"durable self count"},
}


def first_failure(
    bug: str, budget: int, steps: int, skip: frozenset[str] = frozenset()
) -> tuple[int, SimFailure]:
    for seed in range(budget):
        try:
            run(config_for(seed, NODE_COUNTS, steps, frozenset({bug}), skip))
        except SimFailure as exc:
            return seed, exc
    pytest.fail(f"planted bug {bug!r} not caught in {budget} seeds of {steps} steps")


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_the_simulator_catches_each_planted_bug(bug: str) -> None:
    seed, exc = first_failure(bug, BUDGET, STEPS)
    assert exc.invariant in EXPECTED[bug], str(exc)
    report = str(exc)
    assert f"seed={seed} " in report
    assert f"--seed {seed} " in report and f"--bug {bug}" in report
    assert "last " in report and " events:" in report


def test_every_planted_bug_is_covered_and_names_are_validated() -> None:
    assert set(EXPECTED) == PLANTED_BUGS
    with pytest.raises(ConfigError, match="unknown planted bugs"):
        CoreConfig(node_id=1, voters=(1,), planted_bugs=frozenset({"no_such_bug"}))


# Each bug also does real damage once its direct check is skipped. Found by soaks such as
#
#     .venv/bin/python tests/sim/run.py --seeds 1500 --steps 8000 \
#         --bug forget_vote_persist --skip-check 'durable vote' --keep-going
#
# and pinned to the first failing seed (a change to the simulator may move it: rerun and
# re-pin).
# - forget_vote_persist: a voter crashes before its vote is on disk, restarts, votes again
#   in the same term, and two nodes lead one term: 5 of 1500 seeds (279, 366, 444, 768,
#   948); 948 is the first that runs without lazy commit, so that option does not move it.
# - count_unsynced_self: a leader counts its own unsynced copy toward a commit, crashes
#   before the sync and loses it, and a later leader overwrites a committed entry: 4 of 900
#   seeds on 3, 5 and 7 nodes (108, 435, 699, 747, when found). Since the simulator draws
#   max_read_rounds per seed: 21, 111, 435 and others; 435 is in both lists.
DAMAGE = [
    ("forget_vote_persist", 948, "durable vote", "election safety"),
    ("count_unsynced_self", 435, "durable self count", "leader completeness"),
]


@pytest.mark.parametrize(("bug", "seed", "check", "damage"), DAMAGE)
def test_without_its_direct_check_a_planted_bug_does_damage(
    bug: str, seed: int, check: str, damage: str
) -> None:
    cfg = config_for(seed, NODE_COUNTS, 8000, frozenset({bug}))
    cfg = dataclasses.replace(cfg, skip_checks=frozenset({check}))
    with pytest.raises(SimFailure) as info:
        run(cfg)
    assert info.value.invariant == damage, str(info.value)
    run(dataclasses.replace(cfg, bugs=frozenset()))  # the same run without the bug is fine
