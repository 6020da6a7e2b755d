"""The fault-injecting proxy: ZMTP splitting, pass, block (held, then delivered), drop,
delay, one-way blocks, sever. Real ZeroMQ sockets on 127.0.0.1, a few seconds in all."""

from __future__ import annotations

import random
import struct

import trio
import zmq

from harness.cluster import free_ports
from jepsen.proxy import GREETING, PeerProxy, ProxyNet, ZmtpSplitter
from wire.zsock import open_dealer, open_router


def test_splitter_units_survive_any_chunking():
    greeting = bytes(range(GREETING))
    ready = bytes([0x04, 5]) + b"READY"
    msg = bytes([0x01, 1]) + b"a" + bytes([0x02]) + struct.pack(">Q", 300) + b"b" * 300
    single = bytes([0x00, 2]) + b"hi"
    stream = greeting + ready + msg + single
    for size in (1, 3, 7, 64, 1000):
        splitter = ZmtpSplitter()
        units = []
        for i in range(0, len(stream), size):
            units += list(splitter.feed(stream[i : i + size]))
        assert b"".join(u for u, _ in units) == stream
        assert [u for u, is_msg in units if is_msg] == [msg, single]
        assert (ready, False) in units


async def _pair(listen: int, target: int, ctx):
    router = open_router(ctx, f"tcp://127.0.0.1:{target}")
    dealer = open_dealer(ctx, f"tcp://127.0.0.1:{listen}", routing_id=b"n1", immediate=True)
    return router, dealer


async def _recv_all(sock, n: int, within: float) -> list[list[bytes]]:
    got: list[list[bytes]] = []
    with trio.move_on_after(within):
        while len(got) < n:
            got += await sock.recv_batch(64)
    return got


async def test_proxy_pass_block_drop_delay():
    listen, target = free_ports(2)
    proxy = PeerProxy(1, 2, listen, target, random.Random(1))
    ctx = zmq.Context()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            router, dealer = await _pair(listen, target, ctx)
            with router, dealer:
                # pass, both ways
                await dealer.send_multipart([b"hello"])
                [[rid, body]] = await _recv_all(router, 1, 5)
                assert (rid, body) == (b"n1", b"hello")
                await router.send_multipart([rid, b"back"])
                assert await _recv_all(dealer, 1, 5) == [[b"back"]]

                # block up: held, then delivered in order after unblock
                proxy.up.block()
                for i in range(5):
                    await dealer.send_multipart([b"held%d" % i])
                assert await _recv_all(router, 1, 0.3) == []
                proxy.up.unblock()
                got = await _recv_all(router, 5, 5)
                assert [m[1] for m in got] == [b"held%d" % i for i in range(5)]

                # drop everything up: lost for good, the stream stays valid
                proxy.up.drop = 1.0
                for i in range(5):
                    await dealer.send_multipart([b"lost%d" % i])
                assert await _recv_all(router, 1, 0.3) == []
                proxy.up.drop = 0.0
                await dealer.send_multipart([b"after"])
                assert [m[1] for m in await _recv_all(router, 1, 5)] == [b"after"]
                assert proxy.stats["dropped"] == 5

                # delay down (the replies)
                proxy.down.delay = 0.2
                start = trio.current_time()
                await router.send_multipart([b"n1", b"slow"])
                assert await _recv_all(dealer, 1, 5) == [[b"slow"]]
                assert trio.current_time() - start >= 0.2
                proxy.down.delay = 0.0

                # sever: the connection closes, ZeroMQ reconnects, traffic flows again
                proxy.sever()
                await trio.sleep(0.1)
                await dealer.send_multipart([b"again"])
                assert [m[1] for m in await _recv_all(router, 1, 5)] == [b"again"]
                assert proxy.stats["connections"] >= 2
            nursery.cancel_scope.cancel()
    finally:
        ctx.destroy(linger=0)


async def test_proxynet_one_way_block():
    """block(1, 2): node 1's requests to 2 and its replies to 2's requests are stopped;
    node 2's requests still reach node 1."""
    ports = free_ports(4)
    net = ProxyNet({1: ports[0], 2: ports[1]}, {(1, 2): ports[2], (2, 1): ports[3]}, seed=7)
    views = net.peer_views({1: f"tcp://127.0.0.1:{ports[0]}", 2: f"tcp://127.0.0.1:{ports[1]}"})
    assert views[1][2] == f"tcp://127.0.0.1:{ports[2]}"
    assert views[1][1] == f"tcp://127.0.0.1:{ports[0]}"
    ctx = zmq.Context()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(net.serve)
            r1 = open_router(ctx, f"tcp://127.0.0.1:{ports[0]}")
            r2 = open_router(ctx, f"tcp://127.0.0.1:{ports[1]}")
            d12 = open_dealer(ctx, views[1][2], routing_id=b"1", immediate=True)
            d21 = open_dealer(ctx, views[2][1], routing_id=b"2", immediate=True)
            with r1, r2, d12, d21:
                await d12.send_multipart([b"warm"])
                await d21.send_multipart([b"warm"])
                assert len(await _recv_all(r2, 1, 5)) == 1
                assert len(await _recv_all(r1, 1, 5)) == 1
                net.block(1, 2)
                assert net.blocked_links() == [(1, 2)]
                await d12.send_multipart([b"req 1->2"])
                assert await _recv_all(r2, 1, 0.3) == []  # 1's request does not reach 2
                await d21.send_multipart([b"req 2->1"])
                assert [m[1] for m in await _recv_all(r1, 1, 5)] == [b"req 2->1"]
                await r1.send_multipart([b"2", b"reply 1->2"])
                assert await _recv_all(d21, 1, 0.3) == []  # nor does 1's reply
                net.heal(sever=True)
                await trio.sleep(0.2)
                await d12.send_multipart([b"healed"])
                got = await _recv_all(r2, 1, 5)
                assert got and got[-1][1] == b"healed"
            nursery.cancel_scope.cancel()
    finally:
        ctx.destroy(linger=0)
