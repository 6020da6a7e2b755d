"""The fault suite's CI selection: three short runs with different nemeses, and one run that
must fail (eventual reads are not linearizable) to show the pipeline catches an anomaly.

Each run starts three real ``trioraft run`` processes behind per-pair proxies, drives the
register and set workloads while the nemesis works, heals, checks (see docs/testing.md).
A failure prints the checks and the command that repeats the run; its artifacts stay in
``artifacts/jepsen/``. Longer runs: ``.venv/bin/python tests/jepsen/run.py --help``.
"""

from __future__ import annotations

import pytest

from jepsen import runner
from jepsen.nemesis import NotAvailable, parse_nemeses, schedule

pytestmark = pytest.mark.integration

DURATION = 25.0

CI_RUNS = [
    # seeds picked for varied schedules (tests/jepsen/nemesis.py: ``schedule``):
    # kill -9 of a minority, of every node, of the leader; restart on the heal
    pytest.param(16, "kill", ("register", "set"), id="kill"),
    # SIGSTOP / SIGCONT of the leader and of a minority, then a leader kill
    pytest.param(5, "pause,kill:leader", ("register", "set"), id="pause"),
    # partitions through the proxies (bridge, leader-in) and message loss; watchers follow
    pytest.param(67, "partition,drop", ("register", "set", "watch"), id="partition"),
]


@pytest.mark.parametrize(("seed", "nemesis", "workloads"), CI_RUNS)
async def test_fault_run(seed: int, nemesis: str, workloads: tuple[str, ...]) -> None:
    cfg = runner.RunConfig(seed=seed, duration=DURATION, workloads=workloads, nemesis=nemesis)
    result = await runner.run(cfg)
    print(result.report())
    assert result.valid is True, result.report()
    assert len(result.faults) >= 3, f"the nemesis did too little: {result.faults}"


async def test_the_suite_catches_stale_reads() -> None:
    """Eventual reads from a random node, with a node cut off: the register checker must
    report a non-linearizable history (if it does not, the suite is blind)."""
    cfg = runner.RunConfig(
        seed=7,
        duration=10.0,
        workloads=("register",),
        nemesis="partition:halves",
        read_consistency="eventual",
    )
    result = await runner.run(cfg)
    register = next(c for c in result.checks if c.name == "register")
    assert register.valid is False, result.report()
    assert "NOT linearizable" in register.summary
    others = [c for c in result.checks if c.name != "register"]
    assert all(c.valid is True for c in others), result.report()
    if result.folder.exists():  # kept because the run "failed", as it should: clean up
        import shutil

        shutil.rmtree(result.folder)


def test_schedules_are_reproducible_and_bounded() -> None:
    spec = parse_nemeses("kill,pause,partition,delay,drop")
    a = schedule(5, spec, 120)
    assert a == schedule(5, spec, 120)
    assert a != schedule(6, spec, 120)
    assert all(f.at + f.duration <= 119 for f in a)
    assert {f.kind for f in a} == {"kill", "pause", "partition", "delay", "drop"}
    assert parse_nemeses("kill:leader") == [("kill", "leader")]
    with pytest.raises(ValueError):
        parse_nemeses("flood")


@pytest.mark.parametrize("nemesis", ["membership", "snapshot"])
def test_pending_nemeses(nemesis: str) -> None:
    with pytest.raises(NotAvailable) as exc:
        parse_nemeses(nemesis)
    pytest.skip(f"not available yet: {exc.value}")


def test_reproduce_command_round_trips() -> None:
    from jepsen.run import parse_args

    cfg = runner.RunConfig(seed=9, duration=45, nemesis="partition:bridge", tick_ms=100)
    args = parse_args(cfg.command().split()[2:])
    assert (args.seed, args.duration, args.nemesis, args.tick_ms) == (
        9,
        45,
        "partition:bridge",
        100,
    )
    assert args.workload == "register,set"
