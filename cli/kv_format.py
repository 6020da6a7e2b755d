"""Parsing and printing for the client commands (get, put, delete, cas, txn, scan, watch).

Keys and values are bytes: readable output and JSON show them as UTF-8, with undecodable
bytes as ``\\xNN`` escapes; scan continuation tokens are printed in hex.

Transaction syntax (close to etcdctl's)::

    --if 'value(KEY) = VALUE'      also !=, <, > (bytewise)
    --if 'version(KEY) > 0'        version, mod, create: compared with a number
    --if 'exists(KEY)'  --if 'missing(KEY)'
    --then 'put KEY VALUE'  --then 'delete KEY'  --else 'get KEY'
"""

from __future__ import annotations

import re
from typing import Any

from trioraft import Compare, Event, EventType, KeyValue, OpKind, TxnOp, TxnResult

_COMPARE = re.compile(r"^\s*(value|version|mod|create)\((.*?)\)\s*(==|=|!=|<|>)\s*(.*?)\s*$")
_PRESENCE = re.compile(r"^\s*(exists|missing)\((.*)\)\s*$")


def text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="backslashreplace")


def parse_compare(spec: str) -> Compare:
    """``value(k) = v``, ``version(k) > 0``, ``mod(k) < 9``, ``exists(k)``, ... (ValueError)."""
    m = _PRESENCE.match(spec)
    if m:
        return Compare.exists(m[2]) if m[1] == "exists" else Compare.missing(m[2])
    m = _COMPARE.match(spec)
    if not m:
        raise ValueError(
            f"--if {spec!r}: expected value(KEY) = VALUE, version|mod|create(KEY) <op> N, "
            "exists(KEY) or missing(KEY)"
        )
    target, key, op, operand = m.groups()
    if target == "value":
        return Compare.value_is(key, op, operand)
    if not operand.isdigit():
        raise ValueError(f"--if {spec!r}: {target} compares with a number, not {operand!r}")
    build = {
        "version": Compare.version,
        "mod": Compare.mod_revision,
        "create": Compare.create_revision,
    }[target]
    return build(key, op, int(operand))


def parse_op(spec: str, option: str) -> TxnOp:
    """``put KEY VALUE``, ``delete KEY`` (or ``del``), ``get KEY`` (ValueError)."""
    parts = spec.strip().split(maxsplit=2)
    if len(parts) == 3 and parts[0] == "put":
        return TxnOp.put(parts[1], parts[2])
    if len(parts) == 2 and parts[0] in ("delete", "del"):
        return TxnOp.delete(parts[1])
    if len(parts) == 2 and parts[0] == "get":
        return TxnOp.get(parts[1])
    raise ValueError(f"{option} {spec!r}: expected 'put KEY VALUE', 'delete KEY' or 'get KEY'")


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": text(kv.key),
        "value": text(kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
    }


def txn_json(result: TxnResult, ops: list[TxnOp]) -> dict[str, Any]:
    rows = []
    for op, res in zip(ops, result.results, strict=True):
        row: dict[str, Any] = {"op": op.kind.name.lower(), "key": text(op.key)}
        if op.kind == OpKind.GET:
            row["value"] = text(res.kv.value) if res.kv else None
        else:
            row["existed"] = res.existed
        rows.append(row)
    return {"succeeded": result.succeeded, "revision": result.revision, "results": rows}


def txn_lines(result: TxnResult, ops: list[TxnOp]) -> list[str]:
    lines = [f"{'SUCCEEDED' if result.succeeded else 'FAILED'} revision {result.revision}"]
    for op, res in zip(ops, result.results, strict=True):
        key = text(op.key)
        if op.kind == OpKind.GET:
            lines.append(f"get {key}: {text(res.kv.value) if res.kv else '(missing)'}")
        elif op.kind == OpKind.PUT:
            lines.append(f"put {key}: {'replaced' if res.existed else 'created'}")
        else:
            lines.append(f"delete {key}: {1 if res.existed else 0}")
    return lines


def event_json(event: Event) -> dict[str, Any]:
    row: dict[str, Any] = {"type": event.type.name, "revision": event.revision}
    row.update(kv_json(event.kv))
    if event.type == EventType.DELETE:
        row["value"] = None
    if event.prev_kv is not None:
        row["prev_value"] = text(event.prev_kv.value)
    return row


def event_line(event: Event) -> str:
    key = text(event.kv.key)
    prev = "" if event.prev_kv is None else f" (was {text(event.prev_kv.value)})"
    if event.type == EventType.DELETE:
        return f"DELETE {key} revision {event.revision}{prev}"
    return f"PUT {key} {text(event.kv.value)} revision {event.revision}{prev}"
