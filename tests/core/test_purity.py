"""trioraft.core must stay pure: stdlib (an explicit list) and the pure wire types only.

ARCHITECTURE.md principle 1: the consensus core does no I/O, reads no clock and owns no
randomness, so it can be tested and simulated deterministically.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE_DIR = Path(__file__).resolve().parents[2] / "trioraft" / "core"
CORE_PACKAGE = "trioraft.core"

ALLOWED_STDLIB = frozenset(
    {
        "__future__",
        "bisect",
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "functools",
        "itertools",
        "json",  # configuration entries (trioraft.core.confstate): pure, no I/O
        "struct",  # applied entries packed as bytes (trioraft.core.log): pure, no I/O
        "typing",
    }
)
ALLOWED_PROJECT = frozenset({"wire.messages", "wire.errors", "wire.value"})


def _allowed(module: str) -> bool:
    return (
        module in ALLOWED_STDLIB
        or module in ALLOWED_PROJECT
        or module == CORE_PACKAGE
        or module.startswith(CORE_PACKAGE + ".")
    )


def bad_imports(source: str, package: str = CORE_PACKAGE) -> list[str]:
    """Every module ``source`` imports that the core may not import."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad.extend(alias.name for alias in node.names if not _allowed(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                # ``from wire import messages`` imports the module wire.messages.
                if not (_allowed(module) or _allowed(f"{module}.{alias.name}")):
                    bad.append(f"{module}.{alias.name}" if module else alias.name)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            bad.append("__import__()")
    return bad


def core_modules() -> list[Path]:
    return sorted(CORE_DIR.rglob("*.py"))


def test_core_has_the_expected_modules() -> None:
    names = {p.name for p in core_modules()}
    assert {"raft.py", "rawnode.py", "log.py", "progress.py", "quorum.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_imports_only_allowed_modules(path: Path) -> None:
    assert bad_imports(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "offender"),
    [
        ("import trio", "trio"),
        ("import time", "time"),
        ("import random", "random"),
        ("from time import monotonic", "time.monotonic"),
        ("import os.path", "os.path"),
        ("from wire import codec", "wire.codec"),
        ("from wire.zsock import Socket", "wire.zsock.Socket"),
        ("from ..node import Node", "trioraft.node.Node"),
        ("import threading as t", "threading"),
        ("zmq = __import__('zmq')", "__import__()"),
    ],
)
def test_checker_rejects_planted_impure_source(source: str, offender: str) -> None:
    assert bad_imports(source) == [offender]


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from collections.abc import Sequence",
        "from wire import messages, errors",
        "from wire.messages import Entry",
        "from trioraft.core.log import RaftLog",
        "from .quorum import MajorityConfig",
    ],
)
def test_checker_accepts_allowed_source(source: str) -> None:
    assert bad_imports(source) == []
