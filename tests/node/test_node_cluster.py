"""Runtime tests: real Node objects in one trio process, real ZeroMQ on 127.0.0.1 free ports,
in-memory storage. Timeouts are safety nets, never assertions about speed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import zmq

from harness.cluster import free_ports
from storage import Identity, MemoryStore
from trioraft import InvalidRequest, LeaderInfo, NodeBuilder, NodeConfig, open_client
from trioraft.node import Node
from wire.codec import encode
from wire.messages import Heartbeat


def configs(n: int, tick_ms: int = 20) -> list[NodeConfig]:
    ports = free_ports(2 * n)
    peers = {i + 1: f"tcp://127.0.0.1:{ports[2 * i + 1]}" for i in range(n)}
    return [
        NodeConfig(
            node_id=i,
            peers=peers,
            peer_addr=peers[i],
            client_addr=f"tcp://127.0.0.1:{ports[2 * (i - 1)]}",
            tick_ms=tick_ms,
        )
        for i in sorted(peers)
    ]


@asynccontextmanager
async def running(cfgs: list[NodeConfig]) -> AsyncIterator[list[Node]]:
    async with trio.open_nursery() as nursery:
        nodes = []
        for i, cfg in enumerate(cfgs):
            store = MemoryStore(Identity(cfg.cluster_id, cfg.node_id))
            node = NodeBuilder(cfg).with_store(store).with_seed(i).start()
            await nursery.start(node.run)
            nodes.append(node)
        yield nodes
        nursery.cancel_scope.cancel()


async def test_single_node_put_get_delete() -> None:
    cfgs = configs(1)
    with trio.fail_after(30):
        async with running(cfgs), open_client([cfgs[0].client_addr]) as client:
            rev = await client.put(b"k", b"v1")
            assert await client.get(b"k") == b"v1"
            rev2 = await client.put("k", "v2")
            assert rev2 > rev
            assert await client.get("k") == b"v2"
            assert await client.delete("k") is True
            assert await client.delete("k") is False
            assert await client.get("k") is None


async def test_three_nodes_elect_replicate_and_notify() -> None:
    cfgs = configs(3)
    with trio.fail_after(60):
        async with running(cfgs) as nodes, open_client([c.client_addr for c in cfgs]) as client:
            # current value first: None before any election has finished on this node
            first = await nodes[0].leader_change_notifier().__anext__()
            assert first is None or isinstance(first, LeaderInfo)
            leader_id, _ = await client.wait_leader()
            for i in range(50):
                await client.put(f"key{i}", f"val{i}")
            assert await client.get("key49") == b"val49"
            # every node applies everything, and every notifier agrees on the leader
            for node in nodes:
                async for info in node.leader_change_notifier():
                    if info is not None and info.leader_id == leader_id:
                        break
            top = max([(await client.status(c.client_addr)).commit for c in cfgs])
            for cfg in cfgs:
                while (await client.status(cfg.client_addr)).applied < top:
                    await trio.sleep(0.01)
                got = await client.get("key17", consistency="eventual", endpoint=cfg.client_addr)
                assert got == b"val17"


async def test_follower_redirects_client_to_leader() -> None:
    cfgs = configs(3)
    with trio.fail_after(60):
        async with running(cfgs):
            async with open_client([c.client_addr for c in cfgs]) as client:
                leader_id, _ = await client.wait_leader()
            follower = next(c for c in cfgs if c.node_id != leader_id)
            # a client that knows only one follower still gets its write done: the follower
            # answers NotLeader with a hint, and discovery finds the leader's endpoint
            async with open_client([follower.client_addr, *(c.client_addr for c in cfgs)]) as c2:
                await c2.put("redirected", "yes")
                assert await c2.get("redirected") == b"yes"


async def test_oversized_value_is_refused_and_changes_nothing() -> None:
    cfgs = [configs(1)[0].with_overrides(max_value_bytes=100)]
    with trio.fail_after(30):
        async with running(cfgs), open_client([cfgs[0].client_addr]) as client:
            await client.put("k", "small")
            with pytest.raises(InvalidRequest, match="exceeds the limit of 100 bytes"):
                await client.put("k", b"x" * 101)
            assert await client.get("k") == b"small"


async def test_malformed_frames_are_dropped_and_node_keeps_serving() -> None:
    cfgs = configs(1)
    cfg = cfgs[0]
    with trio.fail_after(30):
        async with running(cfgs) as nodes, open_client([cfg.client_addr]) as client:
            await client.put("before", "1")
            ctx = zmq.Context()
            try:
                for addr in (cfg.client_addr, cfg.peer_addr):
                    s = ctx.socket(zmq.DEALER)
                    s.setsockopt(zmq.LINGER, 5000)  # deliver before close
                    s.connect(addr)
                    s.send_multipart([b"garbage"])
                    s.send_multipart([b"\x01" * 20, b"\xff\xff"])
                    # a well-formed message from a foreign cluster
                    s.send_multipart(encode(Heartbeat(1, 1, 5, 0), cluster_id=12345))
                    s.close()
            finally:
                await trio.to_thread.run_sync(ctx.term)
            await client.put("after", "2")
            assert await client.get("before") == b"1"
            assert await client.get("after") == b"2"
            node = nodes[0]
            while node.dropped_frames() < 6:
                await trio.sleep(0.01)
            assert node.leader is not None and node.leader.leader_id == cfg.node_id
