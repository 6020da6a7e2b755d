"""The one exception hierarchy of trioraft.

It lives at the bottom layer (``wire``) because every package raises from it and errors
cross the wire: each error a server can return to a client has a stable numeric ``code``
(see ``ERROR_CODES``) so the client library can rebuild the same type on its side.

``trioraft.errors`` re-exports everything here; users import from ``trioraft``.
"""

from __future__ import annotations


class TrioraftError(Exception):
    """Base class of every error trioraft raises on purpose."""

    code = 1


class NotLeader(TrioraftError):
    """This node does not lead; ``leader_id`` (0 when unknown) is the best known leader."""

    code = 2

    def __init__(self, message: str = "not the leader", leader_id: int = 0) -> None:
        super().__init__(message)
        self.leader_id = leader_id


class Unavailable(TrioraftError):
    """The cluster (or this node) cannot serve the request now; retrying later may work."""

    code = 3


class Timeout(TrioraftError):
    """The deadline passed before an answer came. A timed-out write may still commit.
    ``last_error``: when the client retried, the error of its last attempt (e.g. ``Busy``)."""

    code = 4
    last_error: TrioraftError | None = None


class Compacted(TrioraftError):
    """The requested revision or log index was compacted away; ``compact_revision`` (when
    known, else 0) is the oldest one still available."""

    code = 5

    def __init__(self, message: str = "compacted", compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class ConfigError(TrioraftError):
    """Invalid configuration: the message says which setting and why."""

    code = 6


class StorageError(TrioraftError):
    """The data dir cannot be opened, read or written: the message names the dir."""

    code = 7


class WireError(TrioraftError):
    """A frame or message could not be decoded or is not for us."""

    code = 8


class ProposalDropped(TrioraftError):
    """The proposal was not committed (leadership changed before it was); it did not apply."""

    code = 9


class InvalidRequest(TrioraftError):
    """The request is malformed or exceeds a limit (key or value too large, ...)."""

    code = 10


class Busy(TrioraftError):
    """The node is overloaded and shed this request; back off and retry."""

    code = 11


class SessionExpired(TrioraftError):
    """The client session of a write is unknown or expired (Raft thesis §6.3): the write
    was not applied by this attempt. The client library registers a new session and retries
    when no earlier attempt can have applied; otherwise it reports ``Timeout``."""

    code = 12


class ChangeInProgress(TrioraftError):
    """A membership change was refused because another one is still in progress (only one
    change at a time, Raft thesis §4.1). Not retried by the client library: the caller
    decides whether its change still makes sense once the other one has completed."""

    code = 13


ERROR_CODES: dict[int, type[TrioraftError]] = {
    cls.code: cls
    for cls in (
        TrioraftError,
        NotLeader,
        Unavailable,
        Timeout,
        Compacted,
        ConfigError,
        StorageError,
        WireError,
        ProposalDropped,
        InvalidRequest,
        Busy,
        SessionExpired,
        ChangeInProgress,
    )
}
