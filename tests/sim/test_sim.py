"""The deterministic simulator in CI: 500 seeds (3, 5 and 7 nodes), determinism, and the
command line. Soak with ``.venv/bin/python tests/sim/run.py --seeds 10000``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.run import config_for
from sim.sim import SimConfig, Simulation, run

CI_SEEDS = 500
CI_STEPS = 10_000
BLOCKS = 10  # one pytest case per block of CI_SEEDS // BLOCKS seeds
NODE_COUNTS = [3, 5, 7]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("block", range(BLOCKS))
def test_simulation_seeds_keep_every_invariant(block: int) -> None:
    """Safety after every step and liveness after the heal, for every seed of the block.

    A failure's message names the broken invariant, the seed, the command that reproduces
    the run and the last events before the failure.
    """
    per_block = CI_SEEDS // BLOCKS
    for seed in range(block * per_block, (block + 1) * per_block):
        stats = run(config_for(seed, NODE_COUNTS, CI_STEPS))
        assert stats.steps >= CI_STEPS


def test_runs_are_not_vacuous() -> None:
    """The fault phase elects leaders, commits and acknowledges writes, crashes nodes and
    partitions the network, so the checkers have something to check."""
    totals = {"acked": 0, "crashes": 0, "partitions": 0, "dropped": 0}
    for seed in range(6):
        st = run(config_for(seed, NODE_COUNTS, 3000))
        assert st.max_term >= 1 and st.commit > 0
        for key in totals:
            totals[key] += getattr(st, key)
    assert all(v > 0 for v in totals.values()), totals


def test_one_seed_reproduces_one_run_exactly() -> None:
    def fingerprint(seed: int) -> tuple[object, ...]:
        sim = Simulation(SimConfig(seed=seed, nodes=5, steps=2000))
        stats = sim.run()
        disks = tuple(
            (sn.disk.hard_state, tuple(sn.disk.entries), len(sn.disk.sm))
            for sn in sim.nodes.values()
        )
        return (repr(stats), tuple(sim.trace_buf), disks)

    assert fingerprint(11) == fingerprint(11)
    assert fingerprint(11) != fingerprint(12)


def test_the_command_line_reproduces_a_seed_from_the_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "tests/sim/run.py", "--seed", "4", "--nodes", "3", "--steps", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("seed 4 ok")


def test_the_soak_command_reports_seeds_per_second() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.sim", "--seeds", "3", "--steps", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ran 3 seeds" in out.stdout and "seeds/s" in out.stdout and "0 failing" in out.stdout
