"""Scenario files under testdata/, run by runner.py; ``TRIORAFT_REWRITE=1`` rewrites them."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.runner import Env, parse, render, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    run_file(path)
