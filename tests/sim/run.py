"""Command line for the simulator: reproduce one seed, or soak many.

From the repository root::

    .venv/bin/python tests/sim/run.py --seed 1234 --nodes 5 --steps 3000   # one run
    .venv/bin/python tests/sim/run.py --seeds 10000 --nodes 3,5,7          # a soak
    .venv/bin/python tests/sim/run.py --seeds 200 --bug double_vote        # planted bug
    .venv/bin/python tests/sim/run.py --seeds 1000 --membership            # sim/membership.py

With several node counts, seed ``s`` runs with ``counts[s % len(counts)]`` nodes (the same
mix as CI). A failure prints the seed, the reproducing command and a trace of the last
events; the exit status is the number of failing seeds (capped at 100).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root, then tests/ (for ``sim``)
    _ROOT = Path(__file__).resolve().parents[2]
    sys.path[0] = str(_ROOT)  # instead of tests/sim, whose sim.py would shadow the package
    sys.path.append(str(_ROOT / "tests"))

from sim.membership import run_stats as run_membership
from sim.sim import SimConfig, SimFailure, run

DEFAULT_STEPS = 10_000  # as in CI (tests/sim/test_sim.py)


def config_for(
    seed: int,
    counts: list[int],
    steps: int,
    bugs: frozenset[str] = frozenset(),
    skip: frozenset[str] = frozenset(),
) -> SimConfig:
    return SimConfig(
        seed=seed, nodes=counts[seed % len(counts)], steps=steps, bugs=bugs, skip_checks=skip
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, help="run this one seed, verbosely")
    p.add_argument("--seeds", type=int, default=100, help="number of seeds to soak")
    p.add_argument("--start", type=int, default=0, help="first seed of the soak")
    p.add_argument("--nodes", default="3,5,7", help="node counts, e.g. 5 or 3,5,7")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="fault-phase events")
    p.add_argument("--bug", action="append", default=[], help="plant a bug (test-only)")
    p.add_argument("--skip-check", action="append", default=[], help="leave an invariant out")
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first failure")
    p.add_argument("--membership", action="store_true", help="random membership changes")
    args = p.parse_args(argv)
    runner = run_membership if args.membership else run
    counts = [int(x) for x in args.nodes.split(",")]
    bugs = frozenset(args.bug)
    skip = frozenset(args.skip_check)

    if args.seed is not None:
        cfg = config_for(args.seed, counts[:1], args.steps, bugs, skip)
        t0 = time.perf_counter()
        try:
            st = runner(cfg)
        except SimFailure as exc:
            print(exc)
            return 1
        print(f"seed {st.seed} ok in {time.perf_counter() - t0:.2f}s: {st}")
        return 0

    failures = 0
    liveness: list[int] = []
    t0 = time.perf_counter()
    seeds = range(args.start, args.start + args.seeds)
    for n, seed in enumerate(seeds, 1):
        cfg = config_for(seed, counts, args.steps, bugs, skip)
        try:
            liveness.append(runner(cfg).liveness_ticks)
        except SimFailure as exc:
            failures += 1
            print(exc, flush=True)
            print(f"FAILING SEED {seed}: {exc.invariant}", flush=True)
            if not args.keep_going:
                break
        if n % 100 == 0:
            el = time.perf_counter() - t0
            print(f"{n} seeds, {failures} failing, {n / el:.1f} seeds/s", flush=True)
    el = time.perf_counter() - t0
    done = n if args.seeds else 0
    print(
        f"ran {done} seeds ({args.nodes} nodes, {args.steps} steps) in {el:.1f}s: "
        f"{done / el if el else 0:.2f} seeds/s, {el / max(done, 1) * 1000:.0f} ms/seed, "
        f"{failures} failing"
    )
    if liveness:
        print(
            f"ticks from heal to a new write applied everywhere: "
            f"mean {sum(liveness) / len(liveness):.1f}, max {max(liveness)}"
        )
    return min(failures, 100)


if __name__ == "__main__":
    sys.exit(main())
