"""100,000 messages each way between two processes over a ROUTER/DEALER pair.

The parent binds a ROUTER on 127.0.0.1 port 0 and runs ``_wire_peer.py`` as a child with a
DEALER; both send and receive concurrently and check sequence numbers. Only a generous
safety timeout: the rate is printed, never asserted. The child is always killed and reaped.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import trio
import zmq

from wire.codec import decode, encode, routing_id_node
from wire.messages import Heartbeat, HeartbeatResponse, TimeoutNow
from wire.zsock import open_router

COUNT = 100_000
CLUSTER = 7
PARENT, CHILD = 1, 2
SAFETY_TIMEOUT = 200.0
CHILD_SCRIPT = Path(__file__).with_name("_wire_peer.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_100k_messages_each_way_between_processes() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = open_router(ctx, "tcp://127.0.0.1:0", max_message=1 << 20)
    assert router.endpoint is not None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(CHILD_SCRIPT), router.endpoint, str(COUNT)], env=env
    )
    child_rid: bytes | None = None
    connected = trio.Event()
    received = 0
    report: HeartbeatResponse | None = None
    started = 0.0

    async def receive_all() -> None:
        nonlocal child_rid, received, report, started
        while report is None:
            for frames in await router.recv_batch(512):
                if child_rid is None:
                    child_rid = frames[0]
                    assert routing_id_node(child_rid) == CHILD
                    started = time.perf_counter()
                    connected.set()
                assert frames[0] == child_rid
                decoded = decode(frames[1:], cluster_id=CLUSTER)
                msg = decoded.msg
                if isinstance(msg, HeartbeatResponse):
                    report = msg
                    break
                assert isinstance(msg, Heartbeat)
                assert (msg.commit, decoded.request_id) == (received, received)
                received += 1

    async def send_all() -> None:
        await connected.wait()
        assert child_rid is not None
        for seq in range(COUNT):
            msg = Heartbeat(src=PARENT, dst=CHILD, term=1, commit=seq)
            await router.send_multipart(
                [child_rid, *encode(msg, cluster_id=CLUSTER, request_id=seq)]
            )
        end = TimeoutNow(src=PARENT, dst=CHILD, term=1)
        await router.send_multipart([child_rid, *encode(end, cluster_id=CLUSTER)])

    try:
        with trio.fail_after(SAFETY_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive_all)
                nursery.start_soon(send_all)
            elapsed = time.perf_counter() - started
            returncode = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
        router.close()
        ctx.destroy(linger=0)

    assert returncode == 0
    assert received == COUNT
    assert report is not None and report.context == COUNT
    print(
        f"\n100k each way: {2 * COUNT / elapsed:,.0f} messages/s in total "
        f"({COUNT / elapsed:,.0f}/s each direction, {elapsed:.2f} s)"
    )
