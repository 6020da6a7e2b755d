"""The wire layer: message types, the error hierarchy, the CBOR codec, the ZeroMQ adapter.

Modules: ``wire.messages`` (pure Raft message types), ``wire.errors`` (the exception
hierarchy), ``wire.codec`` (frames <-> messages), ``wire.zsock`` (pyzmq sockets under trio).

The codec and adapter names below are re-exported lazily: importing ``wire`` or the pure
``wire.messages`` does not load cbor2, trio or pyzmq, so the consensus core stays free of
I/O libraries. They load on first use of one of their names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import (
        DEFAULT_MAX_MESSAGE,
        HEADER_SIZE,
        PROTOCOL_VERSION,
        SIGNED,
        Decoded,
        decode,
        encode,
        node_routing_id,
        register,
        routing_id_node,
        type_code,
    )
    from .zsock import Frame, PeerUnreachable, TrioSocket, ZmqContext, open_dealer, open_router

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "SIGNED",
    "Decoded",
    "Frame",
    "PeerUnreachable",
    "TrioSocket",
    "ZmqContext",
    "decode",
    "encode",
    "node_routing_id",
    "open_dealer",
    "open_router",
    "register",
    "routing_id_node",
    "type_code",
]

_ZSOCK_NAMES = {
    "Frame",
    "PeerUnreachable",
    "TrioSocket",
    "ZmqContext",
    "open_dealer",
    "open_router",
}
_LAZY: dict[str, str] = {name: "zsock" if name in _ZSOCK_NAMES else "codec" for name in __all__}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
