"""One fault-injection run, start to verdict.

1. Start ``nodes`` real ``trioraft run`` processes on 127.0.0.1 with every peer link through
   a fault-injecting proxy (``proxy.ProxyNet``, served by this process); with the
   ``snapshot`` nemesis, with small snapshot thresholds (``snapshots.settings``).
2. Run the workloads for ``duration`` seconds while the nemesis follows its schedule (and
   the ``membership`` nemesis changes voters beside it).
3. Heal everything (the original voters too), wait (bounded) for a leader that accepts a
   write and for every node to reach one applied index; do the workloads' final reads;
   compare every node's state.
4. Stop the nodes; check each data dir offline (``offline``: committed logs agree, every
   replica's state at one index); look for tracebacks in the node logs; with the
   ``snapshot`` nemesis, require the snapshot installs it provoked.
5. Check the history (linearizability per key, set, watch) and write everything to
   ``artifacts/jepsen/<time>-<seed>/``: ``history.jsonl``, ``results.json``, node logs and
   data dirs. The folder is deleted when every check passes (unless ``keep``).

Every step is bounded in time, and so is the whole run (``RunConfig.hard_cap``).
The seed fixes the nemesis schedule and the workloads' choices (process timing is not).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from harness.cluster import REPO, ProcessCluster, free_ports
from jepsen import convergence, offline, snapshots
from jepsen.checkers import SKIPPED, Check, check_logs
from jepsen.history import UNKNOWN, History
from jepsen.membership import MembershipNemesis
from jepsen.nemesis import Nemesis, membership_variants, parse_nemeses, schedule
from jepsen.proxy import ProxyNet
from jepsen.watch import WatchWorkload
from jepsen.workloads import ClientSettings, RegisterWorkload, SetWorkload, Workload
from trioraft.client import Client, open_client
from trioraft.config import NodeConfig

ARTIFACTS = REPO / "artifacts" / "jepsen"
WORKLOADS: dict[str, type[Workload]] = {
    "register": RegisterWorkload,
    "set": SetWorkload,
    "watch": WatchWorkload,
}


@dataclass
class RunConfig:
    seed: int
    duration: float = 30.0
    workloads: tuple[str, ...] = ("register", "set")
    nemesis: str = "partition,kill"
    nodes: int = 3
    tick_ms: int = 50
    recovery: float = 30.0  # bound for leader + write + equal applied index after healing
    register_workers: int = 6
    set_workers: int = 3
    read_consistency: str = "linearizable"  # "eventual": a planted anomaly for self-tests
    sessions: bool = True  # False: clients without exactly-once sessions
    snapshot_entries: int = 200  # with the snapshot nemesis: snapshot every N entries
    keep: bool = False
    artifacts: Path = ARTIFACTS
    allowed_tracebacks: tuple[str, ...] = ()

    @property
    def hard_cap(self) -> float:
        """No run outlives this (seconds): workload, restoring the voters, recovery,
        final reads, margins."""
        return 1.2 * self.duration + 4 * self.recovery + 120

    def command(self) -> str:
        """The command that repeats this run (same seed: same schedule and choices)."""
        args = [
            ".venv/bin/python",
            "tests/jepsen/run.py",
            "--seed",
            str(self.seed),
            "--duration",
            f"{self.duration:g}",
            "--workload",
            ",".join(self.workloads),
            "--nemesis",
            self.nemesis or "none",
            "--nodes",
            str(self.nodes),
        ]
        if self.tick_ms != 50:
            args += ["--tick-ms", str(self.tick_ms)]
        if self.read_consistency != "linearizable":
            args += ["--read-consistency", self.read_consistency]
        if not self.sessions:
            args.append("--no-sessions")
        defaults = RunConfig(seed=0)
        for name in ("recovery", "register_workers", "set_workers", "snapshot_entries"):
            if getattr(self, name) != getattr(defaults, name):
                args += ["--" + name.replace("_", "-"), f"{getattr(self, name):g}"]
        return shlex.join(args)


@dataclass
class RunResult:
    config: RunConfig
    valid: bool | str
    checks: list[Check]
    folder: Path
    faults: list[str] = field(default_factory=list)
    ops: int = 0
    seconds: float = 0.0
    error: str | None = None
    proxy_stats: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        lines = [
            f"jepsen run seed={self.config.seed}: valid={self.valid} "
            f"({self.ops} ops, {len(self.faults)} faults, {self.seconds:.0f} s)",
        ]
        if self.error:
            lines.append(f"  run error: {self.error}")
        if self.faults:
            lines.append(f"  faults: {'; '.join(self.faults)}")
        lines += ["  " + c.summary.replace("\n", "\n  ") for c in self.checks]
        if self.valid is not True:
            lines.append(f"  artifacts: {self.folder}")
            lines.append(f"  reproduce: {self.config.command()}")
        return "\n".join(lines)


def _folder(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = cfg.artifacts / f"{stamp}-{cfg.seed}"
    n = 1
    while folder.exists():
        n += 1
        folder = cfg.artifacts / f"{stamp}-{cfg.seed}-{n}"
    folder.mkdir(parents=True)
    return folder


def _proxy_ports(n: int, taken: set[int]) -> list[int]:
    while True:
        ports = free_ports(n)
        if not taken & set(ports):
            return ports


def _describe(exc: BaseException) -> str:
    """The leaf exceptions of a (possibly nested) exception group, one line each."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


async def run(cfg: RunConfig) -> RunResult:
    """One run; never raises for what it finds (see ``RunResult.valid``)."""
    started = time.monotonic()
    faults_spec = parse_nemeses(cfg.nemesis)  # NotAvailable / ValueError: before any process
    for name in cfg.workloads:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    plan = schedule(cfg.seed, faults_spec, cfg.duration)
    folder = _folder(cfg)
    history = History()
    cluster = ProcessCluster(folder, cfg.nodes, cfg.tick_ms)
    snapshot_faults: snapshots.SnapshotFaults | None = None
    if any(kind == "snapshot" for kind, _ in faults_spec):
        cluster.settings = snapshots.settings(cfg.snapshot_entries)
        snapshot_faults = snapshots.SnapshotFaults(cluster)
    member_variants = membership_variants(faults_spec)
    members: MembershipNemesis | None = None
    real = {n: _port(a) for n, a in cluster.peers.items()}
    taken = {_port(a) for a in [*cluster.peers.values(), *cluster.clients.values()]}
    pairs = [(i, j) for i in real for j in real if i != j]
    net = ProxyNet(real, dict(zip(pairs, _proxy_ports(len(pairs), taken), strict=True)), cfg.seed)
    cluster.peer_views = net.peer_views(cluster.peers)
    settings = ClientSettings(cluster.endpoints, sessions=cfg.sessions)
    workloads: list[Workload] = []
    for name in cfg.workloads:
        if name == "register":
            workloads.append(
                RegisterWorkload(
                    cfg.seed,
                    history,
                    settings,
                    cfg.register_workers,
                    read_consistency=cfg.read_consistency,
                )
            )
        else:
            workloads.append(WORKLOADS[name](cfg.seed, history, settings, cfg.set_workers))
    checks: list[Check] = []
    nemesis: Nemesis | None = None
    error: str | None = None
    try:
        with trio.fail_after(cfg.hard_cap):
            async with trio.open_nursery() as nursery:
                await nursery.start(net.serve)
                cluster.start_all()
                async with open_client(cluster.endpoints, timeout=10) as admin:
                    try:
                        await admin.wait_leader(timeout=30)
                    except trio.TooSlowError:
                        raise RuntimeError("no leader within 30 s of starting") from None
                    nemesis = Nemesis(cluster, net, admin, history, cfg.seed, snapshot_faults)
                    if member_variants is not None:
                        member_admin = await nursery.start(_admin_client, cluster.endpoints)
                        members = MembershipNemesis(
                            member_admin,
                            history,
                            cfg.seed,
                            sorted(cluster.peers),
                            member_variants,
                            applied=nemesis.applied,
                        )
                        nursery.start_soon(members.watch)
                    for w in workloads:
                        nursery.start_soon(w.background, cfg.duration)
                    t0 = trio.current_time()
                    async with trio.open_nursery() as phase:
                        for w in workloads:
                            phase.start_soon(w.run, t0 + cfg.duration)
                        phase.start_soon(nemesis.run, plan, t0, t0 + cfg.duration)
                        if members is not None:
                            phase.start_soon(members.run, t0 + cfg.duration)
                    nemesis.heal()
                    if members is not None:
                        await members.restore(cfg.recovery)
                    history.nemesis("healed")
                    checks.append(
                        await convergence.wait_converged(
                            admin, cfg.recovery, f"seed-{cfg.seed}".encode()
                        )
                    )
                    deadline = trio.current_time() + cfg.recovery
                    for w in workloads:
                        await w.final(deadline)
                    # every register key, and up to 2,000 others (the offline hash sees all)
                    keys = [
                        k for w in workloads for k in w.keys()[: 2000 if w.name == "set" else None]
                    ]
                    keys.append(convergence.PROBE_KEY.decode())
                    checks.append(await convergence.compare_state(admin, keys, cfg.recovery))
                nursery.cancel_scope.cancel()
    except Exception as exc:  # the run itself broke: keep everything and say so
        error = _describe(exc)
    finally:
        if nemesis is not None:
            nemesis.check_alive()
        cluster.stop_all()
    if nemesis is not None and nemesis.unexpected_exits:
        exits = nemesis.unexpected_exits
        checks.append(Check("crashes", False, f"crashes: nodes exited on their own: {exits}"))
    if members is not None:
        checks.append(members.check())
    try:
        cid = NodeConfig(node_id=1, peers=cluster.peers).cluster_id
        dirs = {n: cluster.data_dir(n) for n in cluster.peers}
        checks.append(offline.offline_state(dirs, cid, cluster.peers, cluster.settings))
    except Exception as exc:
        checks.append(Check("offline-state", False, f"offline-state: could not open: {exc}"))
    checks.append(check_logs(cluster.log_path(n) for n in cluster.peers))
    if snapshot_faults is not None:
        checks.append(snapshot_faults.check())
    for w in workloads:
        checks.append(w.check())
    valid: bool | str = True
    if error or any(c.valid is False for c in checks):
        valid = False
    elif any(c.valid not in (True, SKIPPED) for c in checks):
        valid = UNKNOWN
    result = RunResult(
        cfg,
        valid,
        checks,
        folder,
        nemesis.applied if nemesis else [],
        len(history.client_ops()),
        time.monotonic() - started,
        error,
    )
    result.proxy_stats = net.stats()
    _save(result, history)
    if valid is True and not cfg.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


async def _admin_client(
    endpoints: list[str], *, task_status: trio.TaskStatus[Client] = trio.TASK_STATUS_IGNORED
) -> None:
    """A client of its own for the membership nemesis, open until cancelled."""
    async with open_client(endpoints, timeout=5, attempt_timeout=1) as client:
        task_status.started(client)
        await trio.sleep_forever()


def _save(result: RunResult, history: History) -> None:
    history.write_jsonl(result.folder / "history.jsonl")
    summary: dict[str, Any] = {
        "valid": result.valid,
        "error": result.error,
        "command": result.config.command(),
        "config": {k: str(v) for k, v in asdict(result.config).items()},
        "faults": result.faults,
        "proxy_stats": result.proxy_stats,
        "ops": result.ops,
        "seconds": round(result.seconds, 1),
        "checks": [
            {"name": c.name, "valid": c.valid, "summary": c.summary, "details": c.details}
            for c in result.checks
        ],
    }
    (result.folder / "results.json").write_text(json.dumps(summary, indent=2, default=repr))
    (result.folder / "report.txt").write_text(result.report() + "\n")


def main_run(cfg: RunConfig) -> RunResult:
    result = trio.run(run, cfg)
    print(result.report(), file=sys.stdout if result.valid is True else sys.stderr, flush=True)
    return result
