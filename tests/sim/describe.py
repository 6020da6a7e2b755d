"""One-line, human-readable renderings of entries, messages and readies.

Shared by the scenario runner (tests/scenarios) and the simulator's failure traces, so a
reviewer reads the same notation everywhere:

- an entry is ``term/index KIND data``, e.g. ``2/4 NORMAL 'x'`` (the etcd-io/raft order);
- a message is ``src->dst Type term=T ...``, e.g.
  ``1->2 AppendEntries term=2 prev=1/3 commit=3 entries=[2/4 NORMAL 'x']``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from trioraft.core import Ready
from trioraft.core.confstate import decode_membership
from wire.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)


def data_repr(data: bytes) -> str:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return repr(data)
    return repr(text) if text.isprintable() else repr(data)


def entry(e: Entry) -> str:
    if e.kind is EntryKind.NOOP and not e.data:
        return f"{e.term}/{e.index} NOOP"
    if e.kind is EntryKind.CONFIG:
        try:
            conf = str(decode_membership(e.data).conf)
        except ValueError:
            conf = data_repr(e.data)
        return f"{e.term}/{e.index} CONFIG {conf}"
    return f"{e.term}/{e.index} {e.kind.name} {data_repr(e.data)}"


def entries(es: Iterable[Entry]) -> str:
    return "[" + ", ".join(entry(e) for e in es) + "]"


def hard_state(hs: HardState) -> str:
    return f"term={hs.term} vote={hs.vote} commit={hs.commit}"


def message(m: Message) -> str:
    head = f"{m.src}->{m.dst}"
    if isinstance(m, AppendEntries):
        text = f"{head} AppendEntries term={m.term} prev={m.prev_term}/{m.prev_index}"
        text += f" commit={m.commit}"
        if m.entries:
            text += f" entries={entries(m.entries)}"
        return text
    if isinstance(m, AppendEntriesResponse):
        if m.success:
            return f"{head} AppendEntriesResponse term={m.term} ok index={m.index}"
        return (
            f"{head} AppendEntriesResponse term={m.term} rejected index={m.index}"
            f" hint={m.hint_term}/{m.hint_index}"
        )
    if isinstance(m, RequestVote):
        kind = "PreVote" if m.pre_vote else "RequestVote"
        text = f"{head} {kind} term={m.term} last={m.last_term}/{m.last_index}"
        return text + (" transfer" if m.transfer else "")
    if isinstance(m, RequestVoteResponse):
        kind = "PreVoteResponse" if m.pre_vote else "RequestVoteResponse"
        return f"{head} {kind} term={m.term} {'granted' if m.granted else 'rejected'}"
    if isinstance(m, Heartbeat):
        return f"{head} Heartbeat term={m.term} commit={m.commit} ctx={m.context}"
    if isinstance(m, HeartbeatResponse):
        return f"{head} HeartbeatResponse term={m.term} ctx={m.context}"
    if isinstance(m, TimeoutNow):
        return f"{head} TimeoutNow term={m.term}"
    return repr(m)  # pragma: no cover - every Raft message type is handled above


def ready(rd: Ready, note: Callable[[Message], str] | None = None) -> list[str]:
    """The non-empty fields of a Ready in the shell's processing order; items indented.

    ``note(m)`` may append a remark to each message line (e.g. that its link is cut).
    """

    def msg(m: Message) -> str:
        return message(m) + (note(m) if note else "")

    lines: list[str] = []
    if rd.soft_state is not None:
        lines.append(f"State: {rd.soft_state.role.name} lead={rd.soft_state.leader_id}")
    if rd.hard_state is not None:
        lines.append(f"HardState {hard_state(rd.hard_state)}")
    if rd.entries:
        lines.append("Entries:")
        lines.extend("  " + entry(e) for e in rd.entries)
    if rd.messages:
        lines.append("Messages:")
        lines.extend("  " + msg(m) for m in rd.messages)
    if rd.persisted_messages:
        lines.append("Messages after persist:")
        lines.extend("  " + msg(m) for m in rd.persisted_messages)
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines.extend("  " + entry(e) for e in rd.committed_entries)
    if rd.read_states:
        lines.append("ReadStates:")
        lines.extend(f"  ctx={r.context} index={r.index}" for r in rd.read_states)
    return lines
