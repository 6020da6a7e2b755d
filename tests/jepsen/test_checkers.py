"""The set, watch and log checkers against known-good and known-bad inputs."""

from __future__ import annotations

from pathlib import Path

from jepsen.checkers import Event, check_logs, check_set, check_watch
from jepsen.history import UNKNOWN, History, Op


def add(e: str, ok=True) -> Op:
    return Op(1, 0, 1, "add", f"s/{e}", value=e, ok=ok)


def final(*present: str, unread=(), corrupt=None) -> Op:
    out = {"present": list(present), "unread": list(unread), "corrupt": corrupt or {}}
    return Op("final", 5, 6, "read-set", "s/", output=out)


def test_set_good():
    ops = [add("a"), add("b"), add("c", UNKNOWN), add("d", UNKNOWN), add("e", False)]
    result = check_set([*ops, final("a", "b", "c")])
    assert result.valid is True, result.summary
    assert result.details["recovered_unknown"] == 1


def test_set_lost_unexpected_and_failed_but_present():
    assert check_set([add("a"), add("b"), final("a")]).details["lost"] == ["b"]
    assert check_set([add("a"), add("b"), final("a")]).valid is False
    result = check_set([add("a"), final("a", "ghost")])
    assert result.valid is False and result.details["unexpected"] == ["ghost"]
    result = check_set([add("a"), add("x", False), final("a", "x")])
    assert result.valid is False and result.details["failed_but_present"] == ["x"]
    assert check_set([add("a"), final(corrupt={"a": "zz"})]).valid is False


def test_set_undecided():
    assert check_set([add("a")]).valid == UNKNOWN  # no final read
    assert check_set([add("a"), final(unread=["a"])]).valid == UNKNOWN


E = Event


def test_watch_good():
    events = [E(3, "w/1", "a"), E(5, "w/2", "b"), E(6, "w/1", None)]
    streams = {"w0": (1, 6, events), "w1": (4, 6, events[1:]), "w2": (7, 9, [])}
    result = check_watch(streams, [E(3, "w/1", "a")], (6, {"w/2": "b"}))
    assert result.valid is True, result.summary
    assert "1 replayed" in result.summary


def test_watch_gap_duplicate_order_disagreement():
    a, b, c = E(3, "w/1", "a"), E(5, "w/2", "b"), E(6, "w/1", "c")
    assert "gap" in check_watch({"w0": (1, 6, [a, b, c]), "w1": (1, 6, [a, c])}).summary
    assert "duplicate" in check_watch({"w0": (1, 6, [a, b, b, c])}).summary
    assert "out of order" in check_watch({"w0": (1, 6, [a, c, b])}).summary
    other = E(5, "w/2", "x")
    assert check_watch({"w0": (1, 6, [a, b, c]), "w1": (1, 6, [a, other, c])}).valid is False
    # an acknowledged put nobody saw is a gap for every watcher that covers it
    assert check_watch({"w0": (1, 6, [a, c])}, [b]).valid is False
    # but not for a watcher that started after it
    assert check_watch({"w0": (6, 6, [c])}, [b]).valid is True


def test_watch_replay_must_match_the_final_read():
    a, b = E(3, "w/1", "a"), E(5, "w/1", None)
    assert check_watch({"w0": (1, 5, [a, b])}, final=(5, {})).valid is True
    result = check_watch({"w0": (1, 5, [a, b])}, final=(5, {"w/1": "a"}))
    assert result.valid is False and "replay differs" in result.summary


def test_logs(tmp_path: Path):
    clean = tmp_path / "node1.log"
    clean.write_text("INFO started\nINFO leader\n")
    bad = tmp_path / "node2.log"
    bad.write_text(
        'INFO started\nTraceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "    boom()\nValueError: boom\nINFO after\n"
    )
    assert check_logs([clean]).valid is True
    result = check_logs([clean, bad])
    assert result.valid is False and "ValueError: boom" in result.summary
    assert check_logs([bad], allowed=[r"ValueError: boom"]).valid is True


def test_history_round_trip(tmp_path: Path):
    h = History([Op(1, 1, 2, "write", "k", value="v"), Op(2, 3, 4, "read", "k", output=None)])
    h.nemesis("start", "kill:leader nodes=[1]")
    h.write_jsonl(tmp_path / "h.jsonl")
    back = History.read_jsonl(tmp_path / "h.jsonl")
    assert back.ops == h.ops
    assert [o.op for o in back.client_ops()] == ["write", "read"]
