"""Command line for the fault suite: one run, a series of runs (a soak), or a saved history.

From the repository root::

    .venv/bin/python tests/jepsen/run.py --seed 7 --duration 60 --nemesis partition,kill
    .venv/bin/python tests/jepsen/run.py --seed 1 --duration 1800 --workload register,set \\
        --nemesis kill,pause,partition,delay,drop                          # a 30-minute soak
    .venv/bin/python tests/jepsen/run.py --seed 1 --runs 10 --duration 120  # seeds 1..10
    .venv/bin/python tests/jepsen/run.py --check-history artifacts/jepsen/X/history.jsonl

Nemeses: kill, pause, partition, delay, drop, snapshot, membership (a ``kind:variant``
picks one variant, e.g. ``kill:leader``, ``partition:leader-out``, ``snapshot:kill``,
``membership:transfer``; see tests/jepsen/nemesis.py). Workloads:
register, set, watch. A failing run keeps ``artifacts/jepsen/<time>-<seed>/`` and prints
the command that repeats it. Exit status: 0 if every run passed, 1 if any failed, 2 if
some could not be decided (e.g. a history too expensive to check), 3 for a nemesis that is
not available yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root, then tests/ (for ``jepsen``)
    _ROOT = Path(__file__).resolve().parents[2]
    sys.path[0] = str(_ROOT)
    sys.path.append(str(_ROOT / "tests"))

from jepsen.history import History
from jepsen.nemesis import NotAvailable
from jepsen.runner import ARTIFACTS, RunConfig, main_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=1, help="runs with seeds seed, seed+1, ...")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload per run")
    p.add_argument("--workload", default="register,set", help="register,set,watch")
    p.add_argument(
        "--nemesis",
        default="partition,kill",
        help="kill,pause,partition,delay,drop,snapshot,membership",
    )
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--tick-ms", type=int, default=50)
    p.add_argument("--recovery", type=float, default=30.0, help="bound after healing (s)")
    p.add_argument("--register-workers", type=int, default=6)
    p.add_argument("--set-workers", type=int, default=3)
    p.add_argument(
        "--snapshot-entries",
        type=int,
        default=200,
        help="with the snapshot nemesis: nodes snapshot every N entries (keep N/10 more)",
    )
    p.add_argument(
        "--read-consistency",
        default="linearizable",
        choices=["linearizable", "eventual"],
        help="register reads; eventual ones are stale by design (the checker must object)",
    )
    p.add_argument(
        "--no-sessions",
        action="store_true",
        help="clients without exactly-once sessions (open_client(sessions=False))",
    )
    p.add_argument("--keep", action="store_true", help="keep artifacts of passing runs too")
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS)
    p.add_argument("--check-history", type=Path, help="check a saved history.jsonl and exit")
    return p.parse_args(argv)


def check_saved(path: Path) -> int:
    from jepsen import linearizability
    from jepsen.checkers import check_set

    history = History.read_jsonl(path)
    lin = linearizability.check(history.client_ops(*linearizability.REGISTER_OPS))
    print(lin.summary())
    results = [lin.valid]
    if history.client_ops("add"):
        s = check_set(history.client_ops("add", "read-set"))
        print(s.summary)
        results.append(s.valid)
    return 1 if False in results else (0 if all(r is True for r in results) else 2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_history:
        return check_saved(args.check_history)
    outcomes = []
    for seed in range(args.seed, args.seed + args.runs):
        cfg = RunConfig(
            seed=seed,
            duration=args.duration,
            workloads=tuple(w for w in args.workload.split(",") if w),
            nemesis=args.nemesis,
            nodes=args.nodes,
            tick_ms=args.tick_ms,
            recovery=args.recovery,
            register_workers=args.register_workers,
            set_workers=args.set_workers,
            snapshot_entries=args.snapshot_entries,
            read_consistency=args.read_consistency,
            sessions=not args.no_sessions,
            keep=args.keep,
            artifacts=args.artifacts,
        )
        try:
            outcomes.append(main_run(cfg).valid)
        except NotAvailable as exc:
            print(f"not available yet: {exc}", file=sys.stderr)
            return 3
    if len(outcomes) > 1:
        print(f"{outcomes.count(True)} of {len(outcomes)} runs passed", flush=True)
    if False in outcomes:
        return 1
    return 0 if all(o is True for o in outcomes) else 2


if __name__ == "__main__":
    sys.exit(main())
