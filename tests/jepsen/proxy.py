"""A fault-injecting TCP proxy for peer traffic, one per directed pair of nodes.

Node i reaches node j's peer port through ``proxy(i, j)``: node i's ``--peers`` lists the
proxy's port for j, and the proxy forwards to j's real peer port. ZeroMQ requests travel on
i's DEALER to j's ROUTER and j's responses come back on the same TCP connection, so each
proxy has two directions: ``up`` (bytes from i to j on connections i opened) and ``down``
(bytes from j to i on those connections). Everything binds 127.0.0.1.

The proxy parses ZMTP 3 framing (a 64-byte greeting, then frames of a flag byte and a 1- or
8-byte length) so it can act on whole messages and never corrupt a stream:

- **block** a direction: no byte crosses. The proxy stops reading (the sender's kernel
  buffer and then its ZeroMQ queue fill, as behind a firewall that drops packets) and holds
  what it had read. On unblock the held bytes flow on, late: old messages arrive after the
  partition heals, as after a real one. ``sever()`` closes every open connection instead
  (their queued bytes are lost and ZeroMQ reconnects).
- **delay** every message by ``delay`` seconds plus up to ``jitter`` (order kept).
- **drop** each whole ZeroMQ message (never a ZMTP command such as the handshake's
  READY) with probability ``drop``: Raft sees lost messages; the stream stays valid.

``ProxyNet`` holds the n*(n-1) proxies of a cluster and turns partitions into blocks:
``block(a, b)`` stops every byte from node a to node b (``proxy(a,b).up`` and
``proxy(b,a).down``), so a one-way partition is exactly "a's bytes never reach b".
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import trio

GREETING = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04


class ZmtpSplitter:
    """Splits one direction of a ZMTP 3 stream into units: greeting bytes, commands and
    whole messages. Yields ``(bytes, is_message)``; only messages may be dropped."""

    def __init__(self) -> None:
        self._greeting = GREETING
        self._buf = bytearray()
        self._message = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bool]]:
        if self._greeting:
            # forwarded as it comes: peers exchange the greeting in pieces and wait on each
            head, data = data[: self._greeting], data[self._greeting :]
            self._greeting -= len(head)
            if head:
                yield bytes(head), False
        self._buf += data
        while True:
            if len(self._buf) < 2:
                return
            flags = self._buf[0]
            if flags & LONG:
                if len(self._buf) < 9:
                    return
                size, start = struct.unpack_from(">Q", self._buf, 1)[0], 9
            else:
                size, start = self._buf[1], 2
            end = start + size
            if len(self._buf) < end:
                return
            frame = bytes(self._buf[:end])
            del self._buf[:end]
            if flags & COMMAND:
                yield frame, False
            else:
                self._message += frame
                if not flags & MORE:
                    yield bytes(self._message), True
                    self._message.clear()


@dataclass
class Direction:
    """The faults applied to one direction of one proxy."""

    name: str
    blocked: bool = False
    delay: float = 0.0
    jitter: float = 0.0
    drop: float = 0.0
    _open: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self._open.set()

    def block(self) -> None:
        if not self.blocked:
            self.blocked = True
            self._open = trio.Event()

    def unblock(self) -> None:
        self.blocked = False
        self._open.set()

    async def wait_open(self) -> None:
        while self.blocked:
            await self._open.wait()

    def clear(self) -> None:
        self.unblock()
        self.delay = self.jitter = self.drop = 0.0


class PeerProxy:
    """Forwards node ``src``'s connections for node ``dst`` from ``listen_port`` to
    ``target_port``, with the faults of its ``up`` and ``down`` directions."""

    def __init__(
        self, src: int, dst: int, listen_port: int, target_port: int, rng: random.Random
    ) -> None:
        self.src, self.dst = src, dst
        self.listen_port, self.target_port = listen_port, target_port
        self.up = Direction(f"{src}->{dst}")
        self.down = Direction(f"{dst}->{src} (replies)")
        self._rng = rng
        self._conns: set[trio.CancelScope] = set()
        self.stats = {"connections": 0, "messages": 0, "dropped": 0}

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.listen_port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def sever(self) -> None:
        """Close every open connection (what they held is lost; ZeroMQ reconnects)."""
        for scope in list(self._conns):
            scope.cancel()

    async def _handle(self, downstream: trio.SocketStream) -> None:
        self.stats["connections"] += 1
        with trio.CancelScope() as scope:
            self._conns.add(scope)
            try:
                async with downstream:
                    try:
                        upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                    except OSError:
                        return  # the node is down: close, ZeroMQ retries
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, downstream, upstream, self.up, scope)
                        nursery.start_soon(self._pump, upstream, downstream, self.down, scope)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # a node went away or the connection was severed
            finally:
                self._conns.discard(scope)

    async def _pump(
        self,
        src: trio.SocketStream,
        dst: trio.SocketStream,
        direction: Direction,
        conn: trio.CancelScope,
    ) -> None:
        splitter = ZmtpSplitter()
        send, receive = trio.open_memory_channel[tuple[float, bytes]](1024)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver, dst, direction, receive)
                async with send:
                    last_due = 0.0
                    while True:
                        await direction.wait_open()  # blocked: stop reading, hold the sender
                        data = await src.receive_some(1 << 16)
                        if not data:
                            break
                        for unit, is_message in splitter.feed(data):
                            if is_message:
                                self.stats["messages"] += 1
                                if direction.drop and self._rng.random() < direction.drop:
                                    self.stats["dropped"] += 1
                                    continue
                            due = trio.current_time()
                            if direction.delay or direction.jitter:
                                due += direction.delay + self._rng.random() * direction.jitter
                            last_due = max(last_due, due)
                            await send.send((last_due, unit))
        finally:
            conn.cancel()  # one side closed: the connection is over

    @staticmethod
    async def _deliver(
        dst: trio.SocketStream,
        direction: Direction,
        receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
    ) -> None:
        async with receive:
            async for due, unit in receive:
                await trio.sleep_until(due)
                await direction.wait_open()
                chunk = [unit]
                while len(chunk) < 256:  # send what is already due in one write
                    try:
                        due, unit = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if due > trio.current_time():
                        await dst.send_all(b"".join(chunk))
                        chunk = []
                        await trio.sleep_until(due)
                        await direction.wait_open()
                    chunk.append(unit)
                await dst.send_all(b"".join(chunk))


class ProxyNet:
    """The proxies between every pair of a cluster's nodes, and the faults over them."""

    def __init__(
        self, real_ports: dict[int, int], proxy_ports: dict[tuple[int, int], int], seed: int
    ) -> None:
        rng = random.Random(seed)
        self.nodes = sorted(real_ports)
        self.proxies = {
            (i, j): PeerProxy(i, j, port, real_ports[j], random.Random(rng.random()))
            for (i, j), port in proxy_ports.items()
        }

    def peer_views(self, real_addrs: dict[int, str]) -> dict[int, dict[int, str]]:
        """Each node's ``--peers`` map: itself at its real address, the others via proxies."""
        return {
            i: {
                j: real_addrs[j] if i == j else f"tcp://127.0.0.1:{self.proxies[i, j].listen_port}"
                for j in self.nodes
            }
            for i in self.nodes
        }

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for proxy in self.proxies.values():
                await nursery.start(proxy.serve)
            task_status.started()

    def _directions(self, a: int, b: int) -> Iterable[Direction]:
        """Every direction that carries bytes from node a to node b."""
        yield self.proxies[a, b].up
        yield self.proxies[b, a].down

    def block(self, a: int, b: int) -> None:
        """No byte from node a reaches node b (b's bytes still reach a)."""
        for d in self._directions(a, b):
            d.block()

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between nodes of different groups, both ways."""
        side = {n: g for g, members in enumerate(groups) for n in members}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and side.get(a, -1 - a) != side.get(b, -1 - b):
                    self.block(a, b)

    def set_delay(self, delay: float, jitter: float = 0.0) -> None:
        for proxy in self.proxies.values():
            for d in (proxy.up, proxy.down):
                d.delay, d.jitter = delay, jitter

    def set_drop(self, probability: float) -> None:
        for proxy in self.proxies.values():
            for d in (proxy.up, proxy.down):
                d.drop = probability

    def heal(self, *, sever: bool = False) -> None:
        """Undo every fault; with ``sever``, also close the connections (held bytes lost)."""
        for proxy in self.proxies.values():
            if sever:
                proxy.sever()
            proxy.up.clear()
            proxy.down.clear()

    def blocked_links(self) -> list[tuple[int, int]]:
        return sorted(
            (a, b)
            for a in self.nodes
            for b in self.nodes
            if a != b and self.proxies[a, b].up.blocked
        )

    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for proxy in self.proxies.values():
            for k, v in proxy.stats.items():
                total[k] = total.get(k, 0) + v
        return total
