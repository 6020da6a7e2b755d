"""Commands of the replicated KV state machine, as they are stored in log entries.

An entry's data is a CBOR array ``[op, key, value]``; the encoding is part of the on-disk
format (the log replays it), so ops only ever get added, never renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cbor2

from wire.errors import InvalidRequest


class Op(IntEnum):
    PUT = 1
    DELETE = 2


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


Command = Put | Delete


def encode_command(cmd: Command) -> bytes:
    if isinstance(cmd, Put):
        return cbor2.dumps([Op.PUT.value, cmd.key, cmd.value])
    return cbor2.dumps([Op.DELETE.value, cmd.key])


def decode_command(data: bytes) -> Command:
    """Decode an entry's data; a malformed command raises ``InvalidRequest``.

    Entries are validated before they are proposed, so a bad one means a foreign or
    newer-format log: the apply task reports it instead of guessing.
    """
    try:
        fields = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several unrelated types
        raise InvalidRequest(f"undecodable command ({exc})") from None
    match fields:
        case [Op.PUT, bytes(key), bytes(value)]:
            return Put(key, value)
        case [Op.DELETE, bytes(key)]:
            return Delete(key)
    raise InvalidRequest(f"unknown command {fields!r:.80}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits checked before a command is proposed (etcd: 1.5 MiB per request)."""

    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20

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
