"""The workloads of ``trioraft bench``: the key space they prepare and what a worker runs.

Keys are ``<prefix><i:08d>`` with ``i`` uniform in ``[0, key_space)``. Each workload counts
its own outcomes besides latency (the ``extra`` counters of the result):

``put``    put a value (``--value-size``) under a random key.
``get``    get a random key of the prepared key space at ``--consistency``; ``misses``.
``scan``   one page of ``--scan-keys`` keys from a random key of the prepared key space
           (every page is full), at ``--consistency``; ``keys`` read.
``txn``    a transaction per op, like etcd's ``benchmark txn-put`` with a compare: if the
           key's value is the prepared value then put it again, else get it. Every write
           keeps the value, so every txn should succeed; ``succeeded``/``failed``.
``cas``    compare-and-swap increments: each key holds a counter (12 digits, padded to
           ``--value-size``); an op swaps the value the worker last saw for it with that
           plus one. Concurrent clients on one key conflict; ``swapped``/``conflicts``.
           Without warm-up, the counters of the key space sum to ``swapped`` afterwards.
``watch``  ``--watchers`` streams on a fresh prefix while ``--clients`` writers put under
           it; each value carries the put's start time, so each event gives a put-to-event
           latency. Ops are events delivered (``expected_events`` = puts x watchers).
"""

from __future__ import annotations

import math
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from cli.bench import BenchSpec, bucket_of
from trioraft.client import Client, open_client
from wire.client_messages import Compare, TxnOp
from wire.errors import Timeout, TrioraftError

Report = Callable[[dict[str, Any]], None]
Control = Callable[[], Awaitable[dict[str, Any]]]
# one operation: (client, rng, counters, start time) -> None
Op = Callable[[Client, random.Random, Counter[str], float], Awaitable[None]]

COUNTER_DIGITS = 12
PREPARE_CONCURRENCY = 64
SENTINEL_WAIT = 60.0  # seconds the watchers wait for the end marker after the last put


def fill(size: int, head: bytes = b"") -> bytes:
    """``head`` padded with ``v`` to ``size`` bytes (or ``head`` if longer)."""
    return head + b"v" * max(0, size - len(head))


def counter_value(n: int, size: int) -> bytes:
    return fill(size, f"{n:0{COUNTER_DIGITS}d}".encode())


def counter_of(value: bytes) -> int:
    return int(value[:COUNTER_DIGITS])


def watch_sentinel(spec: BenchSpec) -> bytes:
    """The key the parent writes once every put is done: the watchers stop at its event."""
    return f"{spec.prefix}~end".encode()


def error_kind(exc: BaseException) -> str:
    """The name an error is counted under. The client retries ``Busy`` until its deadline
    and then raises ``Timeout``, which keeps the last error."""
    if isinstance(exc, Timeout) and exc.last_error is not None:
        return f"Timeout({type(exc.last_error).__name__})"
    return type(exc).__name__


async def prepare(client: Client, spec: BenchSpec) -> BenchSpec:
    """Wait for a leader; write the key space the workload reads; a fresh prefix for watch."""
    await client.wait_leader(timeout=30)
    if spec.workload == "watch":
        return replace(spec, prefix=f"bench-watch/{os.urandom(4).hex()}/")
    if spec.workload == "put":
        return spec
    if spec.workload == "cas":
        value = counter_value(0, spec.value_size)
    else:
        value = fill(spec.value_size)
    todo = iter(range(spec.key_space))

    async def writer() -> None:
        for i in todo:
            await client.put(spec.key(i), value)

    async with trio.open_nursery() as nursery:
        for _ in range(min(PREPARE_CONCURRENCY, spec.key_space)):
            nursery.start_soon(writer)
    return spec


def make_op(spec: BenchSpec) -> Op:
    """The operation a request loop repeats."""
    value = fill(spec.value_size)
    level = spec.consistency

    async def put(client: Client, rng: random.Random, extra: Counter[str], _: float) -> None:
        await client.put(spec.key(rng.randrange(spec.key_space)), value)

    async def get(client: Client, rng: random.Random, extra: Counter[str], _: float) -> None:
        if await client.get(spec.key(rng.randrange(spec.key_space)), consistency=level) is None:
            extra["misses"] += 1

    async def scan(client: Client, rng: random.Random, extra: Counter[str], _: float) -> None:
        first = rng.randrange(max(1, spec.key_space - spec.scan_keys + 1))
        page = await client.scan(
            spec.prefix, start=spec.key(first), limit=spec.scan_keys, consistency=level
        )
        extra["keys"] += len(page.entries)

    async def txn(client: Client, rng: random.Random, extra: Counter[str], _: float) -> None:
        k = spec.key(rng.randrange(spec.key_space))
        result = await client.txn(
            [Compare.value_is(k, "=", value)], [TxnOp.put(k, value)], [TxnOp.get(k)]
        )
        extra["succeeded" if result.succeeded else "failed"] += 1

    seen: dict[int, bytes] = {}  # cas: the value this worker last saw per key

    async def cas(client: Client, rng: random.Random, extra: Counter[str], _: float) -> None:
        i = rng.randrange(spec.key_space)
        expected = seen.get(i, counter_value(0, spec.value_size))
        new = counter_value(counter_of(expected) + 1, spec.value_size)
        result = await client.cas(spec.key(i), expected, new)
        if result.succeeded:
            seen[i] = new
            extra["swapped"] += 1
        else:
            if result.current is not None:
                seen[i] = result.current
            extra["conflicts"] += 1

    async def watch_put(client: Client, rng: random.Random, extra: Counter[str], t: float) -> None:
        stamped = fill(spec.value_size, struct.pack(">d", t))
        await client.put(spec.key(rng.randrange(spec.key_space)), stamped)

    ops: dict[str, Op] = {
        "put": put,
        "get": get,
        "scan": scan,
        "txn": txn,
        "cas": cas,
        "watch": watch_put,
    }
    return ops[spec.workload]


@dataclass(slots=True)
class Tally:
    """What one worker measured: only operations started after ``measure_at`` count."""

    quota: int | None = None  # operations to make (None: until the deadline)
    start_at: float = 0.0  # the go: loops start, warm-up until measure_at
    measure_at: float = math.inf
    until: float = 0.0  # 0: no deadline
    hist: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    extra: Counter[str] = field(default_factory=Counter)
    warmup_errors: int = 0
    done: int = 0
    issued: int = 0
    end: float = 0.0  # when the last measured operation ended
    cpu0: float = 0.0

    def go(self, msg: dict[str, Any]) -> None:
        self.start_at, self.measure_at = msg["start_at"], msg["measure_at"]
        self.until = msg["until"]

    def seconds(self) -> float:
        return max(0.0, self.end - self.measure_at) if self.done else 0.0


async def _loop(op: Op, client: Client, rng: random.Random, tally: Tally) -> None:
    """One closed loop: an operation at a time until the quota or the deadline."""
    warmup: Counter[str] = Counter()  # the workload's counters during warm-up: dropped
    await _sleep_until(tally.start_at)
    while True:
        start = time.monotonic()
        if tally.until and start >= tally.until:
            return
        measuring = start >= tally.measure_at
        if measuring and tally.quota is not None:
            if tally.issued >= tally.quota:
                return
            tally.issued += 1  # reserved: the workers make exactly --ops operations
        t0 = time.perf_counter()
        try:
            await op(client, rng, tally.extra if measuring else warmup, start)
        except Exception as exc:  # counted and reported; a bench keeps going
            if not measuring:
                tally.warmup_errors += 1
                await trio.sleep(0.01)
                continue
            tally.errors[error_kind(exc)] += 1
            if tally.quota is not None:
                tally.issued -= 1  # to be made again
                if sum(tally.errors.values()) > max(1000, tally.quota):
                    return  # give up: the report shows ops < --ops
            await trio.sleep(0.01)  # an error that comes at once must not spin
            continue
        if measuring:
            tally.hist[bucket_of(time.perf_counter() - t0)] += 1
            tally.done += 1
            tally.end = time.monotonic()


async def _client_holder(spec: BenchSpec, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with open_client(spec.endpoints, timeout=30, sessions=spec.sessions) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def _sleep_until(monotonic: float) -> None:
    await trio.sleep(max(0.0, monotonic - time.monotonic()))


async def _mark_cpu(tally: Tally) -> None:
    await _sleep_until(tally.measure_at)
    tally.cpu0 = time.process_time()


async def _progress(report: Report, tally: Tally) -> None:
    while True:
        await trio.sleep(0.2)
        report({"progress": tally.done})


def loop_rng(spec: BenchSpec, i: int) -> random.Random:
    return random.Random(hash((os.getpid(), spec.worker, i)))


async def _run_loops(spec: BenchSpec, conns: list[Client], tally: Tally, n: int) -> None:
    op = make_op(spec)
    async with trio.open_nursery() as loops:
        loops.start_soon(_mark_cpu, tally)
        for i in range(n):
            loops.start_soon(_loop, op, conns[i % len(conns)], loop_rng(spec, i), tally)


async def run_worker(spec: BenchSpec, report: Report, control: Control) -> None:
    """One worker process's load: open connections, report ready, wait for the go, run
    closed loops, and report a histogram with counts (see ``cli.bench``)."""
    if spec.workload == "watch":
        await _run_watch_worker(spec, report, control)
        return
    loops = spec.share(spec.clients)
    tally = Tally(quota=spec.quota() if spec.ops else None)
    async with trio.open_nursery() as outer:
        conns = []
        for _ in range(max(1, min(spec.share(spec.connections), loops))):
            conns.append(await outer.start(_client_holder, spec))
        report({"ready": True})
        tally.go(await control())
        outer.start_soon(_progress, report, tally)
        await _run_loops(spec, conns, tally, loops)
        cpu = time.process_time() - tally.cpu0
        outer.cancel_scope.cancel()
    report(final_report(tally, cpu, dict(tally.extra)))


def final_report(tally: Tally, cpu: float, extra: dict[str, float], **more: Any) -> dict[str, Any]:
    if tally.warmup_errors:
        extra["warmup_errors"] = tally.warmup_errors
    return {
        "final": True,
        "hist": dict(tally.hist),
        "ops": tally.done,
        "errors": dict(tally.errors),
        "seconds": tally.seconds(),
        "cpu": cpu,
        "extra": extra,
        **more,
    }


@dataclass(slots=True)
class _Watchers:
    events: Tally = field(default_factory=Tally)
    errors: Counter[str] = field(default_factory=Counter)
    resumes: int = 0


async def _watcher(
    client: Client,
    spec: BenchSpec,
    state: _Watchers,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """One stream on the prefix: a put-to-event latency per event, until the end marker."""
    end = watch_sentinel(spec)
    events = state.events
    started = False
    try:
        async with client.watch(spec.prefix, prefix=True) as stream:
            task_status.started()
            started = True
            try:
                async for event in stream:
                    now = time.monotonic()
                    if event.kv.key == end:
                        return
                    (stamp,) = struct.unpack_from(">d", event.kv.value)
                    if stamp >= events.measure_at:
                        events.hist[bucket_of(now - stamp)] += 1
                        events.done += 1
                        events.end = max(events.end, now)
            finally:
                state.resumes += stream.resumes
    except TrioraftError as exc:
        state.errors[f"watch:{error_kind(exc)}"] += 1
        if not started:
            task_status.started()


async def _run_watch_worker(spec: BenchSpec, report: Report, control: Control) -> None:
    writers, watchers = spec.share(spec.clients), spec.share(spec.watchers)
    puts = Tally(quota=spec.quota() if spec.ops else None)
    state = _Watchers()
    async with trio.open_nursery() as outer:
        conns = []
        for _ in range(max(1, min(spec.share(spec.connections), max(writers, watchers)))):
            conns.append(await outer.start(_client_holder, spec))
        async with trio.open_nursery() as watching:
            for i in range(watchers):
                await watching.start(_watcher, conns[i % len(conns)], spec, state)
            report({"ready": True})
            go = await control()
            puts.go(go)
            state.events.go(go)
            progress = trio.CancelScope()

            async def show_events() -> None:
                with progress:
                    await _progress(report, state.events)

            outer.start_soon(show_events)
            await _run_loops(spec, conns, puts, writers)
            report({"writes_done": puts.done})
            watching.cancel_scope.deadline = trio.current_time() + SENTINEL_WAIT
        cpu = time.process_time() - puts.cpu0
        progress.cancel()
        outer.cancel_scope.cancel()
    puts.errors.update(state.errors)
    extra: dict[str, float] = {
        "puts": puts.done,
        "put_seconds": puts.seconds(),
        "watchers": watchers,
        "resumes": state.resumes,
        **puts.extra,
    }
    final = final_report(puts, cpu, extra, put_hist=dict(puts.hist))
    events = state.events
    final.update(hist=dict(events.hist), ops=events.done, seconds=events.seconds())
    report(final)
