"""Child process of test_wire_interprocess.py: a DEALER that streams both ways.

Usage: python _wire_peer.py ENDPOINT COUNT

Connects to the parent's ROUTER, then concurrently sends COUNT Heartbeats (``commit`` = sequence
number) and receives COUNT Heartbeats followed by a TimeoutNow end marker, checking that
the sequence numbers arrive complete and in order. Finally sends a HeartbeatResponse whose
``context`` is the number received, and exits 0; any problem exits non-zero with a message on
stderr. A safety timeout makes sure an orphaned child never hangs forever.
"""

from __future__ import annotations

import sys

import trio
import zmq

from wire.codec import decode, encode, node_routing_id
from wire.messages import Heartbeat, HeartbeatResponse, TimeoutNow
from wire.zsock import open_dealer

CLUSTER = 7
PARENT, CHILD = 1, 2
SAFETY_TIMEOUT = 240.0


async def main(endpoint: str, count: int) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = open_dealer(ctx, endpoint, routing_id=node_routing_id(CHILD), immediate=True)
    received = 0

    async def send_all() -> None:
        for seq in range(count):
            msg = Heartbeat(src=CHILD, dst=PARENT, term=1, commit=seq)
            await sock.send_multipart(encode(msg, cluster_id=CLUSTER, request_id=seq))

    async def receive_all() -> None:
        nonlocal received
        while True:
            for frames in await sock.recv_batch(512):
                decoded = decode(frames, cluster_id=CLUSTER)
                msg = decoded.msg
                if isinstance(msg, TimeoutNow):
                    return
                if not isinstance(msg, Heartbeat) or msg.commit != received:
                    raise SystemExit(f"child: expected heartbeat {received}, got {msg!r}")
                if decoded.request_id != received:
                    raise SystemExit(f"child: request id {decoded.request_id} != {received}")
                received += 1

    try:
        with trio.fail_after(SAFETY_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                nursery.start_soon(receive_all)
            if received != count:
                raise SystemExit(f"child: received {received} of {count}")
            report = HeartbeatResponse(src=CHILD, dst=PARENT, term=1, context=received)
            await sock.send_multipart(encode(report, cluster_id=CLUSTER))
    finally:
        sock.close(linger=2000)  # let the report leave before the process ends
        ctx.term()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
