"""The light bench drivers, fast (cli/bench_fast.py) and C (cli/bench_c.py running
cli/cdriver/trioraft_load.c): their retries against a scripted fake node, and exact counts
and written data against a real 3-node cluster. Each test runs once per driver; the C
ones are skipped where no C compiler is found."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import zmq

from cli import bench_c, bench_fast
from cli.bench import BenchSpec
from cli.bench_fast import run_fast_worker
from harness.cluster import ProcessCluster, process_cluster
from trioraft.client import open_client
from wire import client_messages as cm
from wire.codec import decode, encode
from wire.errors import Busy, NotLeader, SessionExpired, Unavailable

REPO = Path(__file__).resolve().parents[2]
CLUSTER_ID = 7

# --- the hot loop against a fake node ----------------------------------------------------


class FakeNode:
    """A ROUTER on a free port that answers status and sessions like a leader, and requests
    with what ``answer(request, n)`` returns (n counts them from 0; None: no reply)."""

    def __init__(self, answer: Callable[[Any, int], Any]) -> None:
        self.answer = answer
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.requests: list[Any] = []  # the requests answered by `answer`, in order
        self.sessions = 0  # registered so far; they get ids 100, 101, ...
        self.headers: list[tuple[int, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(20):
                continue
            routing, *frames = self.sock.recv_multipart()
            got = decode(frames, cluster_id=None)
            msg = got.msg
            if isinstance(msg, cm.StatusRequest):
                reply: Any = cm.StatusReply(1, CLUSTER_ID, cm.Role.LEADER, 1, 1, 0, 0, 0)
            elif isinstance(msg, cm.SessionRequest):
                reply = cm.SessionReply(100 + self.sessions, 3_600_000)
                self.sessions += 1
            else:
                self.headers.append(bench_fast.HEADER.unpack_from(frames[0]))
                self.requests.append(msg)
                reply = self.answer(msg, len(self.requests) - 1)
            if reply is not None:
                frames = encode(reply, cluster_id=CLUSTER_ID, request_id=got.request_id)
                self.sock.send_multipart([routing, *frames])

    def __enter__(self) -> FakeNode:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.ctx.destroy(linger=0)


def error(exc: Exception, leader_id: int = 0) -> cm.ErrorReply:
    return cm.ErrorReply(type(exc).code, str(exc), leader_id)  # type: ignore[attr-defined]


@pytest.fixture(params=["fast", "c"])
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "c":
        if bench_c.compiler() is None:
            pytest.skip("no C compiler (cc, gcc or clang): the C driver cannot be built")
        bench_c.build()  # once (cached by the source's hash), before the timed runs
    return name


def run(driver: str, nodes: list[FakeNode], workload: str = "put", **kw: Any) -> dict[str, Any]:
    """One worker of ``driver`` with one loop against the fake nodes: its final report."""
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
            "driver": driver,
            **kw,
        }
    )
    reports: list[dict[str, Any]] = []

    def go() -> dict[str, Any]:
        now = time.monotonic()
        return {"start_at": now, "measure_at": now, "until": 0}

    worker = bench_c.run_c_worker if driver == "c" else run_fast_worker
    worker(spec, reports.append, go)
    assert reports[0] == {"ready": True}
    final = reports[-1]
    assert final["final"] and sum(final["hist"].values()) == final["ops"]
    return final


def test_busy_and_not_leader_are_retried_with_the_same_session_seq(driver: str) -> None:
    script = [error(Busy("shed")), error(NotLeader("no", leader_id=1))]
    with FakeNode(lambda req, n: script[n] if n < len(script) else cm.WriteReply(n, False)) as node:
        final = run(driver, [node])
    assert final["ops"] == 3 and final["errors"] == {}
    puts = node.requests
    assert len(puts) == 5  # two retries, not successes
    assert [(p.session_id, p.seq) for p in puts] == [(100, 1)] * 3 + [(100, 2), (100, 3)]
    assert puts[0] == cm.PutRequest(puts[0].key, b"v" * 8, 100, 1)  # hand-built, decodes
    assert puts[0].key.startswith(b"bench/") and len(puts[0].key) == 14
    assert {h[2:4] for h in node.headers} == {(bench_fast.PUT, CLUSTER_ID)}  # id: from status


def test_more_sockets_than_zeromqs_default_limit(driver: str) -> None:
    """1,100 connections to each of two nodes: 2,200 sockets, past libzmq's default of
    1,023 per context (the C driver could not open them and said it could not connect)."""
    with (
        FakeNode(lambda req, n: cm.WriteReply(n, False)) as a,
        FakeNode(lambda req, n: cm.WriteReply(n, False)) as b,
    ):
        final = run(driver, [a, b], clients=1100, connections=1100, ops=1100)
    assert final["ops"] == 1100 and final["errors"] == {}


def test_an_expired_session_is_registered_again_and_the_put_resent(driver: str) -> None:
    expired = error(SessionExpired("session 100 is unknown or expired"))
    with FakeNode(lambda req, n: expired if n == 0 else cm.WriteReply(n, False)) as node:
        final = run(driver, [node])
    assert final["ops"] == 3 and final["errors"] == {}
    assert node.sessions == 2  # the one the worker starts with, and its replacement
    assert [(p.session_id, p.seq) for p in node.requests] == [
        (100, 1),
        (101, 1),
        (101, 2),
        (101, 3),
    ]
    assert node.requests[0].key == node.requests[1].key  # the same put, under the new session


def test_a_session_that_expires_in_a_retry_is_an_error(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt got no answer (it may have applied): a new session could apply
    the put twice, so the operation fails instead."""
    monkeypatch.setattr(bench_fast, "ATTEMPT_TIMEOUT", 0.2)  # the C program gets it too
    expired = error(SessionExpired("session 100 is unknown or expired"))
    script: list[Any] = [None, expired]
    with FakeNode(lambda req, n: script[n] if n < 2 else cm.WriteReply(n, False)) as node:
        final = run(driver, [node], ops=2)
    assert final["ops"] == 2 and final["errors"] == {"Timeout": 1}
    assert node.sessions == 1


def test_a_put_without_session_whose_reply_is_lost_is_an_error(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_fast, "ATTEMPT_TIMEOUT", 0.2)  # the C program gets it too
    with FakeNode(lambda req, n: None if n == 0 else cm.WriteReply(n, False)) as node:
        final = run(driver, [node], ops=2, sessions=False)
    assert final["ops"] == 2 and final["errors"] == {"Timeout": 1}
    assert len(node.requests) == 3  # not retried: a new operation instead
    assert {(p.session_id, p.seq) for p in node.requests} == {(0, 0)}


def test_an_operation_gives_up_after_its_deadline_naming_the_last_error(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_fast, "OP_TIMEOUT", 0.3)
    first: list[float] = []  # when the first put came: Busy for 0.5 s from then

    def answer(req: Any, n: int) -> Any:
        first.append(time.monotonic())
        return error(Busy("shed")) if first[-1] < first[0] + 0.5 else cm.WriteReply(n, False)

    with FakeNode(answer) as node:
        final = run(driver, [node], ops=1)
    assert final["ops"] == 1 and final["errors"] == {"Timeout(Busy)": 1}
    assert len(node.requests) > 3


def test_eventual_gets_move_to_the_next_node_and_count_misses(driver: str) -> None:
    kv = cm.KeyValue(b"k", b"v", 1, 1, 1)
    with (
        FakeNode(lambda req, n: error(Unavailable("down"))) as down,
        FakeNode(lambda req, n: cm.GetReply(None if n == 0 else kv, 5)) as up,
    ):
        final = run(driver, [down, up], "get", consistency="eventual")
    assert final["ops"] == 3 and final["errors"] == {}
    assert final["extra"] == {"misses": 1}
    assert len(down.requests) == 1 and len(up.requests) == 3
    assert up.requests[0] == cm.GetRequest(up.requests[0].key, cm.Consistency.EVENTUAL)


def test_fast_driver_refuses_other_workloads_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "scan", "--driver", "fast",
         "--endpoints", "tcp://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--driver fast" in result.stderr


# --- a real 3-node cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("bench-drivers"), size=3) as c:
        yield c


def bench(cluster: ProcessCluster, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "bench", *args, "--clients", "8", "--procs", "2",
         "--endpoints", ",".join(cluster.endpoints), "--json"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["errors"] == 0, summary["error_kinds"]
    return summary


def leader_applied(cluster: ProcessCluster) -> int:
    async def go() -> int:
        async with open_client(cluster.endpoints, timeout=30) as client:
            _, endpoint = await client.wait_leader()
            return (await client.status(endpoint)).applied

    return trio.run(go)


def read_prefix(cluster: ProcessCluster, prefix: str) -> dict[bytes, bytes]:
    async def go() -> dict[bytes, bytes]:
        async with open_client(cluster.endpoints, timeout=30) as client:
            return {kv.key: kv.value async for kv in client.scan_iter(prefix)}

    return trio.run(go)


@pytest.mark.integration
@pytest.mark.parametrize(("sessions", "size"), [("--sessions", 33), ("--no-sessions", 47)])
def test_puts_write_every_key_once(
    cluster: ProcessCluster, driver: str, sessions: str, size: int
) -> None:
    put_every_key_once(cluster, driver, sessions, size)


@pytest.mark.integration
def test_puts_through_the_client_library_write_every_key_once(cluster: ProcessCluster) -> None:
    put_every_key_once(cluster, "client", "--no-sessions", 21)


def put_every_key_once(cluster: ProcessCluster, driver: str, sessions: str, size: int) -> None:
    before = leader_applied(cluster)
    summary = bench(
        cluster, "put", "--driver", driver, sessions, "--ops", "300", "--key-space", "20",
        "--value-size", str(size),
    )  # fmt: skip
    assert (summary["workload"], summary["driver"]) == ("put", driver)
    assert summary["ops"] == 300 and summary["procs"] == 2
    assert summary["ops_per_sec"] > 0 and summary["p50_ms"] <= summary["p99_ms"]
    # 300 puts on 20 keys miss one with a chance of 2e-7
    values = read_prefix(cluster, "bench/")
    assert sorted(values) == [f"bench/{i:08d}".encode() for i in range(20)]
    assert {len(v) for v in values.values()} == {size}
    registered = 8 if sessions == "--sessions" else 0  # a session per client loop
    assert leader_applied(cluster) - before >= 300 + registered


@pytest.mark.integration
@pytest.mark.parametrize("level", ["linearizable", "lease", "eventual"])
def test_gets_at_each_level_find_every_key(
    cluster: ProcessCluster, driver: str, level: str
) -> None:
    summary = bench(
        cluster, "get", "--driver", driver, "--consistency", level, "--ops", "200",
        "--key-space", "30",
    )  # fmt: skip
    assert (summary["workload"], summary["driver"]) == (f"get/{level}", driver)
    assert summary["ops"] == 200
    assert summary["extra"].get("misses", 0) == 0
