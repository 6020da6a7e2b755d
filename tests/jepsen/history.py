"""Operation histories: what each client called, when, and what came back.

One ``Op`` per completed client operation (Jepsen keeps invoke and completion as two events;
here both times sit in one record). Times are ``time.monotonic_ns()`` of the runner process,
so every client's times are on one clock. ``ok`` is ``True`` (it happened, with ``output``),
``False`` (it definitely did not happen) or ``"unknown"`` (it may take effect at any time
after ``call_ns``, or never). Nemesis actions go into the same file with ``client`` set to
``"nemesis"``; the checkers skip them.

A history is saved as JSONL, one op per line, so a failed run can be checked again with
``run.py --check-history FILE``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"
NEMESIS = "nemesis"

Ok = bool | str  # True, False or UNKNOWN


@dataclass(slots=True)
class Op:
    client: int | str
    call_ns: int
    return_ns: int
    op: str  # read, write, cas, delete, add, read-set, watch, or a nemesis action
    key: str | None = None
    value: Any = None  # write/cas/add: the new value
    expected: Any = None  # cas: the value it expects
    output: Any = None  # read: the value read; cas: {"succeeded": b, "current": v}
    ok: Ok = True
    error: str | None = None

    @property
    def unknown(self) -> bool:
        return self.ok == UNKNOWN


def now_ns() -> int:
    return time.monotonic_ns()


class History:
    """An append-only list of ops, in completion order."""

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self.ops: list[Op] = list(ops)

    def add(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def nemesis(self, action: str, detail: Any = None) -> None:
        t = now_ns()
        self.ops.append(Op(NEMESIS, t, t, action, output=detail))

    def client_ops(self, *names: str) -> list[Op]:
        return [o for o in self.ops if o.client != NEMESIS and (not names or o.op in names)]

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def write_jsonl(self, path: Path) -> None:
        with path.open("w") as f:
            for op in self.ops:
                f.write(json.dumps(asdict(op), default=repr) + "\n")

    @classmethod
    def read_jsonl(cls, path: Path) -> History:
        ops = []
        with path.open() as f:
            for line in f:
                if line.strip():
                    ops.append(Op(**json.loads(line)))
        return cls(ops)
