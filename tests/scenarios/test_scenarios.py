"""Scenario files under ``testdata/``, run by ``runner.py``.

To accept a behaviour change, rerun with ``TRIORAFT_REWRITE=1`` and review the diff of the
rewritten files::

    TRIORAFT_REWRITE=1 .venv/bin/python -m pytest tests/scenarios
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.runner import REWRITE_ENV, parse, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    run_file(path)


def test_the_required_scenarios_exist() -> None:
    names = {p.stem for p in FILES}
    assert {
        "split_vote",
        "prevote_checkquorum",
        "figure7",
        "figure8",
        "conflict_truncation",
        "leadership_transfer",
        "probe_flow_control",
    } <= names


SMALL = """\
# Two nodes elect a leader.
add-nodes 2 pre-vote=false
----
ok

campaign 1
----
1 became candidate at term 7

stabilize
----
"""


def test_a_wrong_expectation_fails_with_a_readable_diff(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text(SMALL)
    with pytest.raises(AssertionError) as info:
        run_file(path, rewrite=False)
    message = str(info.value)
    assert "small.txt:6: output of 'campaign 1' differs" in message
    assert f"{REWRITE_ENV}=1" in message
    assert "-1 became candidate at term 7" in message
    assert "+1 became candidate at term 1" in message


def test_rewrite_fills_in_outputs_and_keeps_comments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "small.txt"
    path.write_text(SMALL)
    monkeypatch.setenv(REWRITE_ENV, "1")
    run_file(path)
    text = path.read_text()
    assert text.startswith("# Two nodes elect a leader.\nadd-nodes 2 pre-vote=false\n----\nok\n")
    assert "1 became candidate at term 1\n" in text
    assert "1 became leader at term 1" in text
    monkeypatch.delenv(REWRITE_ENV)
    run_file(path)  # the rewritten file passes as it is
    assert path.read_text() == text


def test_a_command_without_separator_is_a_parse_error() -> None:
    with pytest.raises(ValueError, match="expected '----'"):
        parse("campaign 1\nstabilize\n")


def test_an_unknown_command_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("add-nodes 1\n----\nok\n\nfrobnicate 1\n----\nok\n")
    with pytest.raises(ValueError, match="unknown command 'frobnicate'"):
        run_file(path, rewrite=False)
