"""Commands of the replicated KV state machine, as they are stored in log entries.

An entry's data is a CBOR array whose first item is the op code; the encoding is part of the
on-disk format (the log replays it), so ops only ever get added, never renumbered::

    [1, key, value]                               put
    [2, key]                                      delete
    [3, compares, success, failure]               transaction (and compare-and-swap)
        compare = [key, target, op, value, number]; op = [kind, key, value]
    [4, stamp]                                    register a client session
    [5, session_id, seq, stamp, command]          a put/delete/txn under a session

``stamp`` is the proposing leader's wall clock in milliseconds: session expiry runs on
these stamps ("log time"), so every node decides it identically (see ``sessions``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final

import cbor2

from wire.cbor_heads import ARRAY, bstr_head, head, uint
from wire.client_messages import Compare, CompareOp, CompareTarget, OpKind, TxnOp
from wire.errors import InvalidRequest
from wire.value import value


class Op(IntEnum):
    PUT = 1
    DELETE = 2
    TXN = 3
    REGISTER_SESSION = 4
    SESSION = 5


@value
class Put:
    key: bytes
    value: bytes


@value
class Delete:
    key: bytes


@value
class Txn:
    compares: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]


@value
class RegisterSession:
    pass


@value
class InSession:
    """``command`` under client session ``session_id`` with sequence number ``seq``."""

    session_id: int
    seq: int
    command: Put | Delete | Txn


Write = Put | Delete | Txn
Command = Put | Delete | Txn | RegisterSession | InSession

# Plain ints for the hot paths (an IntEnum's ``.value`` is a property lookup per call).
_PUT, _DELETE, _TXN = int(Op.PUT), int(Op.DELETE), int(Op.TXN)
_REGISTER, _SESSION = int(Op.REGISTER_SESSION), int(Op.SESSION)
_SESSION_PUT_HEAD: Final = head(ARRAY, 5) + uint(_SESSION)  # [SESSION, sid, seq, stamp, [..]]
_PUT_HEAD: Final = head(ARRAY, 3) + uint(_PUT)  # [PUT, key, value]


def _fields(cmd: Write) -> list[Any]:
    if isinstance(cmd, Put):
        return [_PUT, cmd.key, cmd.value]
    if isinstance(cmd, Delete):
        return [_DELETE, cmd.key]
    return [
        _TXN,
        [[c.key, c.target.value, c.op.value, c.value, c.number] for c in cmd.compares],
        [[o.kind.value, o.key, o.value] for o in cmd.success],
        [[o.kind.value, o.key, o.value] for o in cmd.failure],
    ]


def encode_command(cmd: Command, stamp: int = 0) -> bytes:
    """The entry data for ``cmd``; ``stamp`` (ms) is recorded for session commands."""
    if isinstance(cmd, InSession):
        inner = cmd.command
        if type(inner) is Put and (cmd.session_id | cmd.seq | stamp) >> 64 == 0:
            return _encode_session_put(cmd.session_id, cmd.seq, stamp, inner.key, inner.value)
        return cbor2.dumps([_SESSION, cmd.session_id, cmd.seq, stamp, _fields(inner)])
    if isinstance(cmd, RegisterSession):
        return cbor2.dumps([_REGISTER, stamp])
    return cbor2.dumps(_fields(cmd))


def _encode_session_put(sid: int, seq: int, stamp: int, key: bytes, value: bytes) -> bytes:
    """``cbor2.dumps([_SESSION, sid, seq, stamp, [_PUT, key, value]])``, byte for byte, from
    CBOR heads: the leader encodes every write, and this is its common shape."""
    return b"".join(
        (
            _SESSION_PUT_HEAD,
            uint(sid),
            uint(seq),
            uint(stamp),
            _PUT_HEAD,
            bstr_head(len(key)),
            key,
            bstr_head(len(value)),
            value,
        )
    )


def decode_command(data: bytes) -> tuple[Command, int]:
    """Decode an entry's data into the command and its stamp (0 when it has none); a
    malformed command raises ``InvalidRequest``.

    Entries are validated before they are proposed, so a bad one means a foreign or
    newer-format log: the apply task reports it instead of guessing.
    """
    try:
        fields = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several unrelated types
        raise InvalidRequest(f"undecodable command ({exc})") from None
    # Fast path for the common shapes (a put, alone or under a session): exact types only,
    # with the same results as the match below, which handles everything else.
    if type(fields) is list:
        n = len(fields)
        if n == 5:
            session_put = _session_put_fields(fields)
            if session_put is not None:
                sid, seq, stamp, key, value = session_put
                return InSession(sid, seq, Put(key, value)), stamp
        elif n == 3:
            put = _fast_put(fields)
            if put is not None:
                return put, 0
    match fields:
        case [Op.REGISTER_SESSION, int(stamp)] if stamp >= 0:
            return RegisterSession(), stamp
        case [Op.SESSION, int(sid), int(seq), int(stamp), list(inner)] if min(sid, seq, stamp) >= 0:
            return InSession(sid, seq, _write(inner)), stamp
    return _write(fields), 0


def decode_session_put(data: bytes) -> tuple[int, int, int, bytes, bytes] | None:
    """``(session_id, seq, stamp, key, value)`` if ``data`` is a put under a session (the
    common entry), else None: then ``decode_command`` decodes it (or reports it bad).

    Accepts exactly what ``decode_command``'s fast path accepts, and means the same."""
    try:
        fields = cbor2.loads(data)
    except Exception:  # cbor2 raises several unrelated types; decode_command reports it
        return None
    return _session_put_fields(fields)


def _session_put_fields(fields: Any) -> tuple[int, int, int, bytes, bytes] | None:
    """Decoded entry data -> ``(session_id, seq, stamp, key, value)`` if it is a put under a
    session, exact types only; else None."""
    if type(fields) is not list or len(fields) != 5:
        return None
    op, sid, seq, stamp, inner = fields
    if not (
        op == _SESSION
        and type(op) is int
        and type(sid) is int
        and type(seq) is int
        and type(stamp) is int
        and min(sid, seq, stamp) >= 0
    ):
        return None
    put = _fast_put(inner)
    return None if put is None else (sid, seq, stamp, put.key, put.value)


def _fast_put(fields: Any) -> Put | None:
    if (
        type(fields) is list
        and len(fields) == 3
        and fields[0] == _PUT
        and type(fields[0]) is int
        and type(fields[1]) is bytes
        and type(fields[2]) is bytes
    ):
        return Put(fields[1], fields[2])
    return None


def _write(fields: Any) -> Write:
    match fields:
        case [Op.PUT, bytes(key), bytes(value)]:
            return Put(key, value)
        case [Op.DELETE, bytes(key)]:
            return Delete(key)
        case [Op.TXN, list(compares), list(success), list(failure)]:
            try:
                return Txn(
                    tuple(_compare(c) for c in compares),
                    tuple(_txn_op(o) for o in success),
                    tuple(_txn_op(o) for o in failure),
                )
            except (TypeError, ValueError):
                pass
    raise InvalidRequest(f"unknown command {fields!r:.80}")


def _compare(fields: Any) -> Compare:
    match fields:
        case [bytes(key), int(target), int(op), bytes(value), int(number)] if number >= 0:
            return Compare(key, CompareTarget(target), CompareOp(op), value, number)
    raise ValueError("bad compare")


def _txn_op(fields: Any) -> TxnOp:
    match fields:
        case [int(kind), bytes(key), bytes(value)]:
            return TxnOp(OpKind(kind), key, value)
    raise ValueError("bad txn op")


@value
class Limits:
    """Size limits checked before a command is proposed (etcd: 1.5 MiB per request).

    A request over a limit is refused with ``InvalidRequest`` and changes nothing.
    """

    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    max_txn_ops: int = 128

    def check(self, key: bytes, value: bytes = b"") -> None:
        if not key:
            raise InvalidRequest("key must not be empty")
        if len(key) > self.max_key_bytes:
            raise InvalidRequest(
                f"key of {len(key)} bytes exceeds the limit of {self.max_key_bytes} bytes"
            )
        if len(value) > self.max_value_bytes:
            raise InvalidRequest(
                f"value of {len(value)} bytes exceeds the limit of {self.max_value_bytes} bytes"
            )

    def check_txn(self, txn: Txn) -> None:
        n = len(txn.compares) + len(txn.success) + len(txn.failure)
        if n > self.max_txn_ops:
            raise InvalidRequest(
                f"transaction of {n} compares and ops exceeds the limit of {self.max_txn_ops}"
            )
        total = 0
        for c in txn.compares:
            self.check(c.key, c.value)
        for op in (*txn.success, *txn.failure):
            self.check(op.key, op.value)
            total += len(op.value)
        if total > self.max_value_bytes:
            raise InvalidRequest(
                f"transaction values of {total} bytes exceed the limit of "
                f"{self.max_value_bytes} bytes"
            )

    def check_range(self, start: bytes, end: bytes | None) -> None:
        for name, key in (("start", start), ("end", end or b"")):
            if len(key) > self.max_key_bytes:
                raise InvalidRequest(
                    f"range {name} of {len(key)} bytes exceeds the limit of "
                    f"{self.max_key_bytes} bytes"
                )
