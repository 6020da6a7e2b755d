"""Client workloads: concurrent workers that record every call in the run's history.

- ``register``: per-key read / write / cas with unique values on a few keys at a time; each
  key retires after ``ops_per_key`` ops and a fresh one takes its place (as Jepsen's
  independent keys), so every key's history stays small enough to search. cas is used once
  the client has it (``Client.cas``); until then reads and writes.
- ``set``: unique-element adds (one key per element, value = element), then one final read
  of every element (``Client.scan`` once it exists).
- ``watch``: see ``jepsen.watch``.

Outcomes, from what the client library promises (docs/api.md): a call that returns
happened; ``InvalidRequest`` means it did not; any other error of a write (the client
retried until its deadline and gave up, or the run was cancelled) leaves it unknown; a read
that fails is recorded as failed (it changed nothing). Each worker has its own client.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from jepsen import linearizability
from jepsen.checkers import Check, check_set
from jepsen.history import UNKNOWN, History, Op, now_ns
from trioraft.client import Client, open_client
from trioraft.errors import InvalidRequest, TrioraftError


@dataclass
class ClientSettings:
    endpoints: list[str]
    timeout: float = 3.0  # a whole call, retries included
    attempt_timeout: float = 1.0
    sessions: bool = True  # exactly-once writes, where the client has them

    def open(self) -> Any:
        kw: dict[str, Any] = {} if self.sessions else {"sessions": False}
        return open_client(
            self.endpoints, timeout=self.timeout, attempt_timeout=self.attempt_timeout, **kw
        )


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "backslashreplace")


async def record(
    history: History,
    client_id: int | str,
    op: Op,
    call: Callable[[], Awaitable[Any]],
) -> Op:
    """Run ``call`` and complete ``op`` with its outcome; add it to the history."""
    op.client = client_id
    op.call_ns = now_ns()
    try:
        op.output = await call()
        op.ok = True
    except InvalidRequest as exc:
        op.ok, op.error = False, f"{type(exc).__name__}: {exc}"
    except TrioraftError as exc:
        op.ok = False if op.op in ("read", "read-set") else UNKNOWN
        op.error = f"{type(exc).__name__}: {exc}"
    except trio.Cancelled:
        op.ok = False if op.op in ("read", "read-set") else UNKNOWN
        op.error = "cancelled"
        op.return_ns = now_ns()
        history.add(op)
        raise
    op.return_ns = now_ns()
    return history.add(op)


async def get_until(
    client: Client, key: str, deadline: float, consistency: str = "linearizable"
) -> tuple[bool, str | None]:
    """Read ``key``, retrying errors until ``deadline``: (read at all, value)."""
    while True:
        try:
            return True, _s(await client.get(key.encode(), consistency=consistency))
        except TrioraftError:
            if trio.current_time() > deadline:
                return False, None
            await trio.sleep(0.1)


class Workload:
    name = "workload"

    def __init__(self, seed: int, history: History, clients: ClientSettings, workers: int):
        self.seed = seed
        self.history = history
        self.clients = clients
        self.workers = workers
        self.think = 0.05  # mean pause between one worker's ops (seconds)

    async def run(self, stop_at: float) -> None:
        async with trio.open_nursery() as nursery:
            for w in range(self.workers):
                nursery.start_soon(self._worker_with_client, w, stop_at)

    async def _worker_with_client(self, worker: int, stop_at: float) -> None:
        rng = random.Random(f"{self.name}-{self.seed}-{worker}")
        async with self.clients.open() as client:
            while trio.current_time() < stop_at:
                await self.one_op(client, worker, rng)
                await trio.sleep(rng.expovariate(1 / self.think))

    async def one_op(self, client: Client, worker: int, rng: random.Random) -> None:
        raise NotImplementedError

    async def background(self, duration: float) -> None:
        """Runs from before the workload until ``final`` is done (watchers use it)."""

    async def final(self, deadline: float) -> None:
        """Final reads after healing, until ``deadline`` (trio time)."""

    def keys(self) -> list[str]:
        """Every key this workload wrote (for the convergence check)."""
        return []

    def check(self) -> Check:
        raise NotImplementedError


class RegisterWorkload(Workload):
    name = "register"

    def __init__(
        self,
        *args: Any,
        keys: int = 3,
        ops_per_key: int = 150,
        read_consistency: str = "linearizable",
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        # "eventual" reads any node's local state: not linearizable, which the checker must
        # catch (the suite's own end-to-end test uses it)
        self.read_consistency = read_consistency
        self._key_ids = itertools.count()
        self.active = [self._new_key() for _ in range(keys)]
        self.used: dict[str, int] = {}
        self.ops_per_key = ops_per_key
        self._values = itertools.count()
        self.last_seen: dict[tuple[int, str], str | None] = {}

    def _new_key(self) -> str:
        return f"r/{next(self._key_ids):05d}"

    def _pick_key(self, rng: random.Random) -> str:
        i = rng.randrange(len(self.active))
        key = self.active[i]
        self.used[key] = self.used.get(key, 0) + 1
        if self.used[key] >= self.ops_per_key:
            self.active[i] = self._new_key()
        return key

    async def one_op(self, client: Client, worker: int, rng: random.Random) -> None:
        key = self._pick_key(rng)
        has_cas = hasattr(client, "cas")
        roll = rng.random()
        if roll < 0.45:
            op = await record(
                self.history,
                worker,
                Op(worker, 0, 0, "read", key),
                lambda: self._read(client, key, rng),
            )
            if op.ok is True:
                self.last_seen[worker, key] = op.output
            return
        value = f"{worker}.{next(self._values)}"
        if has_cas and roll < 0.75:
            expected = self.last_seen.get((worker, key))
            await record(
                self.history,
                worker,
                Op(worker, 0, 0, "cas", key, value=value, expected=expected),
                lambda: self._cas(client, key, expected, value),
            )
            return
        op = await record(
            self.history,
            worker,
            Op(worker, 0, 0, "write", key, value=value),
            lambda: client.put(key.encode(), value.encode()),
        )
        if op.ok is True:
            op.output = {"revision": op.output}
            self.last_seen[worker, key] = value

    async def _read(self, client: Client, key: str, rng: random.Random | None = None) -> str | None:
        if self.read_consistency == "eventual" and rng is not None:
            endpoint = rng.choice(client.endpoints)
            return _s(await client.get(key.encode(), consistency="eventual", endpoint=endpoint))
        return _s(await client.get(key.encode(), consistency="linearizable"))

    @staticmethod
    async def _cas(client: Any, key: str, expected: str | None, new: str) -> dict[str, Any]:
        exp = None if expected is None else expected.encode()
        result = await client.cas(key.encode(), exp, new.encode())
        out: dict[str, Any] = {"succeeded": bool(result.succeeded), "revision": result.revision}
        if not result.succeeded:
            out["current"] = _s(result.current)
        return out

    def keys(self) -> list[str]:
        return sorted(self.used)

    async def final(self, deadline: float) -> None:
        async with self.clients.open() as client:
            for key in self.keys():
                while trio.current_time() < deadline:
                    op = await record(
                        self.history,
                        "final",
                        Op("final", 0, 0, "read", key),
                        lambda key=key: self._read(client, key),  # type: ignore[misc]
                    )
                    if op.ok is True:
                        break
                    await trio.sleep(0.2)

    def check(self) -> Check:
        result = linearizability.check(self.history.client_ops(*linearizability.REGISTER_OPS))
        return Check("register", result.valid, result.summary(), {"keys": len(result.keys)})


class SetWorkload(Workload):
    name = "set"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._elements = itertools.count()
        self.attempted: list[str] = []

    @staticmethod
    def key(element: str) -> str:
        return f"s/{element}"

    async def one_op(self, client: Client, worker: int, rng: random.Random) -> None:
        element = f"{next(self._elements):07d}"
        self.attempted.append(element)
        await record(
            self.history,
            worker,
            Op(worker, 0, 0, "add", self.key(element), value=element),
            lambda: client.put(self.key(element).encode(), element.encode()),
        )

    def keys(self) -> list[str]:
        return [self.key(e) for e in self.attempted]

    async def final(self, deadline: float) -> None:
        """Read the whole set once: a scan of ``s/`` (linearizable pages, retried until the
        deadline) when the client has ``scan_iter``, else a linearizable get of every
        attempted element (16 at a time). One ``read-set`` op in the history."""
        if hasattr(Client, "scan_iter"):
            while True:
                op = await record(
                    self.history, "final", Op("final", 0, 0, "read-set", "s/"), self._scan
                )
                if op.ok is True or trio.current_time() > deadline:
                    return
                await trio.sleep(0.2)
        await record(
            self.history,
            "final",
            Op("final", 0, 0, "read-set", "s/"),
            lambda: self._get_each(deadline),
        )

    async def _scan(self) -> dict[str, Any]:
        present: list[str] = []
        corrupt: dict[str, str | None] = {}
        async with self.clients.open() as client:
            async for kv in client.scan_iter(b"s/", page=1000):  # type: ignore[attr-defined]
                element = (_s(kv.key) or "")[2:]
                if _s(kv.value) == element:
                    present.append(element)
                else:
                    corrupt[element] = _s(kv.value)
        return {"present": sorted(present), "unread": [], "corrupt": corrupt, "via": "scan"}

    async def _get_each(self, deadline: float) -> dict[str, Any]:
        todo = iter(list(self.attempted))
        present: list[str] = []
        unread: list[str] = []
        corrupt: dict[str, str | None] = {}

        async def reader(client: Client) -> None:
            for element in todo:
                done, got = await get_until(client, self.key(element), deadline)
                if not done:
                    unread.append(element)
                elif got == element:
                    present.append(element)
                elif got is not None:
                    corrupt[element] = got

        async with self.clients.open() as client, trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(reader, client)
        return {"present": sorted(present), "unread": sorted(unread), "corrupt": corrupt}

    def check(self) -> Check:
        return check_set(self.history.client_ops("add", "read-set"))
