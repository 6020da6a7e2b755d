"""What the raft-loop task receives on its inbox besides peer messages, and ``LeaderInfo``.

The inbox is one bounded memory channel: client requests (``Propose``, ``ReadIndex``), the
persist task's reports (``Persisted``, ``Synced``) and the peers' messages share it, so a
full inbox is back-pressure on all of them (client requests are answered ``Busy``).
"""

from __future__ import annotations

from dataclasses import dataclass

from trioraft.core import Ready
from trioraft.node.clients import Send
from trioraft.node.waiters import Read
from wire.value import value


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    leader_id: int
    term: int


@value
class Propose:
    """Append ``data`` (an encoded command); ``reply`` gets the result once it applies."""

    data: bytes
    reply: Send


@value
class ReadIndex:
    """Confirm leadership with a quorum, then serve ``read`` at that commit index."""

    read: Read


@value
class Persisted:
    """The persist task made ``ready`` durable (and sent the messages that waited for it);
    ``synced``: everything written before it is durable too (``RawNode.advance``)."""

    ready: Ready
    synced: bool


@value
class Synced:
    """To the persist task: sync every write so far; then back to the raft loop: done.
    ``(index, term)``: the last entry written before the sync began (``RawNode.synced``)."""

    index: int
    term: int
