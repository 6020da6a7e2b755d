"""The pure pieces of membership changes: joint quorums (thesis §4.3), configuration
validation and encoding, and the configuration log (§6: latest entry wins, truncation
reverts)."""

from __future__ import annotations

import pytest
from membership.net import demote, learner, promote, remove

from trioraft.core.confchange import ChangeOp, ConfChange, leave_joint, plan
from trioraft.core.confstate import (
    ConfState,
    Member,
    Membership,
    decode_announcement,
    decode_membership,
    encode_announcement,
    encode_membership,
    next_membership,
)
from trioraft.core.membership import ConfLog
from trioraft.core.quorum import JointConfig, VoteResult
from trioraft.core.types import CoreInvariantError
from wire.errors import InvalidRequest
from wire.messages import Entry, EntryKind

JOINT = JointConfig.of((1, 4, 5), (1, 2, 3))


def test_joint_committed_index_is_the_smaller_of_both_majorities() -> None:
    acked = {1: 9, 2: 8, 3: 2, 4: 3, 5: 1}
    # C_new {1,4,5}: 3 (1 and 4); C_old {1,2,3}: 8 (1 and 2)
    assert JOINT.committed_index(acked) == 3
    assert JointConfig.of((1, 2, 3)).committed_index(acked) == 8


@pytest.mark.parametrize(
    ("votes", "result"),
    [
        ({1: True, 2: True, 5: False}, VoteResult.PENDING),  # C_old won, C_new pending
        ({1: True, 2: True, 4: True, 5: True}, VoteResult.WON),
        ({1: True, 2: True, 4: False, 5: False}, VoteResult.LOST),  # C_new lost
        ({1: True, 2: False, 3: False, 4: True}, VoteResult.LOST),  # C_old lost
        ({1: True, 6: True, 7: True}, VoteResult.PENDING),  # non-voters do not count
    ],
)
def test_joint_elections_need_both_majorities(votes: dict[int, bool], result: VoteResult) -> None:
    assert JOINT.vote_result(votes) is result


def test_joint_has_quorum_and_membership() -> None:
    assert JOINT.has_quorum({1, 2, 4}) and not JOINT.has_quorum({1, 2, 3})
    assert 3 in JOINT and 6 not in JOINT and JOINT.ids == {1, 2, 3, 4, 5}
    assert JointConfig.of((1,)).is_only(1) and not JointConfig.of((2,), (1,)).is_only(1)


BASE = Membership(
    ConfState((1, 2, 3), learners=(4,)),
    (
        Member(1, "tcp://h1:1", "tcp://h1:2"),
        Member(2, "tcp://h2:1"),
        Member(3, "tcp://h3:1"),
        Member(4, "tcp://h4:1", "tcp://h4:2", True),
    ),
)


def test_membership_encoding_round_trips_and_rejects_garbage() -> None:
    assert decode_membership(encode_membership(BASE)) == BASE
    for bad in (b"", b"{}", b'{"v":2}', b"[1]", b'{"v":1,"voters":[0],"outgoing":[],'):
        with pytest.raises(ValueError):
            decode_membership(bad)
    broken = encode_membership(Membership(ConfState((1,), learners=(1,))))
    with pytest.raises(ValueError, match="vote and learn"):
        decode_membership(broken)


def test_announcements_fill_in_a_client_address() -> None:
    data = encode_announcement(2, "tcp://h2:1", "tcp://h2:2")
    assert decode_announcement(data) == (2, "tcp://h2:1", "tcp://h2:2")
    assert decode_announcement(b"not json") is None
    after = next_membership(BASE, Entry(1, 5, EntryKind.NOOP, data))
    assert after is not None and after.member(2) == Member(2, "tcp://h2:1", "tcp://h2:2")
    same = encode_announcement(1, "tcp://h1:1", "tcp://h1:2")
    assert next_membership(BASE, Entry(1, 5, EntryKind.NOOP, same)) is None
    stranger = encode_announcement(9, "tcp://h9:1", "tcp://h9:2")
    assert next_membership(BASE, Entry(1, 5, EntryKind.NOOP, stranger)) is None


def test_plan_simple_for_learners_joint_for_voters() -> None:
    simple = plan(BASE, [learner(5)])
    assert simple.conf == ConfState((1, 2, 3), learners=(4, 5))
    assert simple.member(5) == Member(5, "tcp://10.0.0.5:7380", "tcp://10.0.0.5:7379")
    joint = plan(BASE, [promote(4), remove(1)])
    assert joint.conf == ConfState((2, 3, 4), voters_outgoing=(1, 2, 3))
    assert joint.member(1) is not None  # kept while it votes in C_old
    final = leave_joint(joint)
    assert final.conf == ConfState((2, 3, 4)) and final.member(1) is None
    demoted = plan(BASE, [demote(3)])
    assert demoted.conf == ConfState((1, 2), (1, 2, 3), (4,), (3,))
    assert leave_joint(demoted).conf == ConfState((1, 2), learners=(3, 4))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([promote(9)], "unknown node 9"),
        ([remove(9)], "unknown node 9"),
        ([promote(1)], "already a voter"),
        ([learner(4)], r"already a member \(learner\)"),
        ([demote(4)], "not a voter"),
        ([remove(1), remove(2), remove(3)], "last voter"),
        ([learner(5), remove(5)], "twice"),
        ([], "empty"),
        ([ConfChange(ChangeOp.ADD_LEARNER, 5, "tcp://h1:2", "tcp://h5:2")], "duplicate"),
        ([ConfChange(ChangeOp.ADD_LEARNER, 5, "udp://h5:1")], "peer address"),
        ([ConfChange(ChangeOp.ADD_LEARNER, 5, "tcp://h5:1", "tcp://h5:1")], "differ"),
    ],
)
def test_plan_refuses_invalid_changes(changes: list[ConfChange], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        plan(BASE, changes)


def test_plan_refuses_a_joint_configuration() -> None:
    with pytest.raises(InvalidRequest, match="joint"):
        plan(plan(BASE, [promote(4)]), [learner(5)])


def conf_entry(index: int, m: Membership, term: int = 1) -> Entry:
    return Entry(term, index, EntryKind.CONFIG, encode_membership(m))


def test_conf_log_follows_appends_and_truncations() -> None:
    log = ConfLog(BASE, 3)
    second = plan(BASE, [learner(5)])
    third = plan(second, [learner(6)])
    plain = Entry(1, 4, EntryKind.NORMAL, b"x")
    assert not log.on_append([plain])
    assert log.on_append([conf_entry(5, second), conf_entry(6, third)])
    assert (log.current_index, log.current) == (6, third)
    assert log.at(5) == (5, second) and log.at(4) == (3, BASE)
    assert log.on_append([Entry(2, 6, EntryKind.NORMAL, b"y")])  # 6 truncated: reverted
    assert (log.current_index, log.current) == (5, second)
    assert log.on_append([Entry(2, 4, EntryKind.NORMAL, b"z")])
    assert (log.current_index, log.current) == (3, BASE)  # the base is never truncated
    log.on_append([conf_entry(5, second)])
    log.compact(5)
    assert log.at(4) == (5, second)  # older ones are forgotten


def test_conf_log_fails_loudly_on_a_malformed_config_entry() -> None:
    with pytest.raises(CoreInvariantError, match="log entry 4"):
        ConfLog(BASE).on_append([Entry(1, 4, EntryKind.CONFIG, b"garbage")])


def test_plan_records_the_proposers_view_of_addresses_it_has_none_for() -> None:
    """A new cluster's base configuration names no addresses (each node has its own view
    of them); the first entry records the proposer's, so that joining nodes learn them."""
    bare = Membership(ConfState((1, 2, 3)))
    known = {1: "tcp://h1:1", 2: "tcp://h2:1", 3: "tcp://h3:1", 9: "tcp://h9:1"}
    after = plan(bare, [learner(4)], known)
    assert [m.node_id for m in after.members] == [1, 2, 3, 4]  # not 9: not a member
    assert after.member(2) == Member(2, "tcp://h2:1")
    assert plan(BASE, [learner(5)], {2: "tcp://elsewhere:1"}).member(2) == BASE.member(2)
