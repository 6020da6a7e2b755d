"""Lazy commit with a bound (``NodeConfig.lazy_commit_ms``).

With ``lazy_commit`` the leader sends no AppendEntries just to carry a new commit index:
followers learn it from the next one with entries (under load, within a round) or from the
next heartbeat. When no write follows, that is a heartbeat later, and followers apply, answer
eventual reads and feed their watches that much later. The raft loop bounds the wait: once a
commit has gone unsent to some follower for ``lazy_commit_ms``, the leader sends it on its
own (``RawNode.send_commit``), as eager commit would have at once. Under load the next append
nearly always comes first, which is where lazy commit saves its messages; at one client the
client's next write does (docs/performance.md).
"""

from __future__ import annotations

import math

from trioraft.core import RawNode


class CommitBound:
    """The raft loop's timer for lazy commit; ``delay_ms`` 0 turns it off."""

    __slots__ = ("_delay", "deadline")

    def __init__(self, delay_ms: int) -> None:
        self._delay = delay_ms / 1000
        self.deadline = math.inf
        """When the raft loop must look again (trio time); inf while nothing waits."""

    def check(self, core: RawNode, now: float) -> None:
        """After a raft-loop turn: start the wait when a commit is unsent, and send the
        commit when the wait is over (a commit sent meanwhile ends it)."""
        if not self._delay:
            return
        if not core.commit_unsent():
            self.deadline = math.inf
        elif now >= self.deadline:
            core.send_commit()
            self.deadline = math.inf
        elif self.deadline == math.inf:
            self.deadline = now + self._delay
