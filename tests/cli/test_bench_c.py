"""The C bench driver (cli/bench_c.py, cli/cdriver/trioraft_load.c): its retries against a
scripted fake node, and exact counts and written data against a real 3-node cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli import bench_c, bench_fast
from cli.bench import BenchSpec
from harness.cluster import ProcessCluster, process_cluster
from tests.cli.test_bench_fast import (
    CLUSTER_ID,
    FakeNode,
    bench,
    error,
    leader_applied,
    read_prefix,
)
from wire import client_messages as cm
from wire.errors import Busy, NotLeader, Unavailable


@pytest.fixture(scope="module", autouse=True)
def c_driver() -> None:
    if bench_c.compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang): the C driver cannot be built")
    bench_c.build()  # once, before the timed runs


# --- the hot loop against a fake node ----------------------------------------------------


def run(nodes: list[FakeNode], workload: str = "put", **kw: Any) -> dict[str, Any]:
    """One C worker with one loop against the fake nodes: its final report."""
    spec = BenchSpec(
        **{
            "workload": workload,
            "endpoints": [n.endpoint for n in nodes],
            "clients": 1,
            "connections": 1,
            "ops": 3,
            "duration": 0,
            "warmup": 0,
            "value_size": 8,
            "key_space": 10,
            "consistency": "linearizable",
            "driver": "c",
            **kw,
        }
    )
    reports: list[dict[str, Any]] = []

    def go() -> dict[str, Any]:
        now = time.monotonic()
        return {"start_at": now, "measure_at": now, "until": 0}

    bench_c.run_c_worker(spec, reports.append, go)
    assert reports[0] == {"ready": True}
    final = reports[-1]
    assert final["final"] and sum(final["hist"].values()) == final["ops"]
    return final


def test_busy_and_not_leader_are_retried_with_the_same_session_seq() -> None:
    script = [error(Busy("shed")), error(NotLeader("no", leader_id=1))]
    with FakeNode(lambda req, n: script[n] if n < len(script) else cm.WriteReply(n, False)) as node:
        final = run([node])
    assert final["ops"] == 3 and final["errors"] == {}
    puts = node.requests
    assert len(puts) == 5  # two retries, not successes
    assert [(p.session_id, p.seq) for p in puts] == [(100, 1)] * 3 + [(100, 2), (100, 3)]
    assert puts[0] == cm.PutRequest(puts[0].key, b"v" * 8, 100, 1)  # hand-built, decodes
    assert puts[0].key.startswith(b"bench/") and len(puts[0].key) == 14
    assert {h[2:4] for h in node.headers} == {(bench_fast.PUT, CLUSTER_ID)}  # id: from status


def test_a_put_without_session_whose_reply_is_lost_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_fast, "ATTEMPT_TIMEOUT", 0.2)  # passed on to the program
    with FakeNode(lambda req, n: None if n == 0 else cm.WriteReply(n, False)) as node:
        final = run([node], ops=2, sessions=False)
    assert final["ops"] == 2 and final["errors"] == {"Timeout": 1}
    assert len(node.requests) == 3  # not retried: a new operation instead
    assert {(p.session_id, p.seq) for p in node.requests} == {(0, 0)}


def test_an_operation_gives_up_after_its_deadline_naming_the_last_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_fast, "OP_TIMEOUT", 0.3)
    first: list[float] = []  # when the first put came: Busy for 0.5 s from then

    def answer(req: Any, n: int) -> Any:
        first.append(time.monotonic())
        return error(Busy("shed")) if first[-1] < first[0] + 0.5 else cm.WriteReply(n, False)

    with FakeNode(answer) as node:
        final = run([node], ops=1)
    assert final["ops"] == 1 and final["errors"] == {"Timeout(Busy)": 1}
    assert len(node.requests) > 3


def test_eventual_gets_move_to_the_next_node_and_count_misses() -> None:
    kv = cm.KeyValue(b"k", b"v", 1, 1, 1)
    with (
        FakeNode(lambda req, n: error(Unavailable("down"))) as down,
        FakeNode(lambda req, n: cm.GetReply(None if n == 0 else kv, 5)) as up,
    ):
        final = run([down, up], "get", consistency="eventual")
    assert final["ops"] == 3 and final["errors"] == {}
    assert final["extra"] == {"misses": 1}
    assert len(down.requests) == 1 and len(up.requests) == 3
    assert up.requests[0] == cm.GetRequest(up.requests[0].key, cm.Consistency.EVENTUAL)


# --- a real 3-node cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("bench-c"), size=3) as c:
        yield c


@pytest.mark.integration
@pytest.mark.parametrize(("sessions", "size"), [("--sessions", 33), ("--no-sessions", 47)])
def test_puts_write_every_key_once(cluster: ProcessCluster, sessions: str, size: int) -> None:
    before = leader_applied(cluster)
    summary = bench(
        cluster, "put", "--driver", "c", sessions, "--ops", "300", "--key-space", "20",
        "--value-size", str(size),
    )  # fmt: skip
    assert (summary["workload"], summary["driver"]) == ("put", "c")
    assert summary["ops"] == 300 and summary["procs"] == 2 and summary["errors"] == 0
    assert summary["ops_per_sec"] > 0 and summary["p50_ms"] <= summary["p99_ms"]
    # 300 puts on 20 keys miss one with a chance of 2e-7
    values = read_prefix(cluster, "bench/")
    assert sorted(values) == [f"bench/{i:08d}".encode() for i in range(20)]
    assert {len(v) for v in values.values()} == {size}
    registered = 8 if sessions == "--sessions" else 0  # a session per client loop
    assert leader_applied(cluster) - before >= 300 + registered


@pytest.mark.integration
@pytest.mark.parametrize("level", ["linearizable", "lease", "eventual"])
def test_gets_at_each_level_find_every_key(cluster: ProcessCluster, level: str) -> None:
    summary = bench(
        cluster, "get", "--driver", "c", "--consistency", level, "--ops", "200",
        "--key-space", "30",
    )  # fmt: skip
    assert (summary["workload"], summary["driver"]) == (f"get/{level}", "c")
    assert summary["ops"] == 200 and summary["errors"] == 0
    assert summary["extra"].get("misses", 0) == 0
