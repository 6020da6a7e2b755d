"""wire.zsock: the trio adapter for pyzmq sockets.

Rules: 127.0.0.1 and port 0 (or inproc) only; every I/O test runs under a generous
``trio.fail_after`` that is a safety net against hangs, never a speed assertion.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing
import zmq

from wire.codec import node_routing_id
from wire.errors import WireError
from wire.zsock import PeerUnreachable, TrioSocket, ZmqContext, open_dealer, open_router

SAFETY = 60.0
PEER = node_routing_id(2)


@pytest.fixture
def ctx() -> Iterator[ZmqContext]:
    context: ZmqContext = zmq.Context()
    yield context
    context.destroy(linger=0)


async def _connect(
    ctx: ZmqContext, addr: str = "tcp://127.0.0.1:0", **dealer_options: int
) -> tuple[TrioSocket, TrioSocket]:
    """A ROUTER and a DEALER (routing id PEER) that have exchanged one message."""
    router = open_router(ctx, addr, max_message=1 << 20)
    assert router.endpoint is not None
    dealer = open_dealer(ctx, router.endpoint, routing_id=PEER, immediate=True, **dealer_options)
    with trio.fail_after(SAFETY):
        await dealer.send_multipart([b"hello"])
        assert await router.recv_multipart() == [PEER, b"hello"]
    return router, dealer


@pytest.fixture
async def pair(ctx: ZmqContext) -> AsyncIterator[tuple[TrioSocket, TrioSocket]]:
    router, dealer = await _connect(ctx)
    with router, dealer:
        yield router, dealer


def _option(sock: TrioSocket, option: int) -> int:
    return cast(int, sock.zmq_socket.getsockopt(option))


async def _until_queued(sock: TrioSocket) -> None:
    """Poll (without receiving) until a message is queued on ``sock``."""
    while True:
        if _option(sock, zmq.EVENTS) & zmq.POLLIN:
            return
        await trio.sleep(0.001)


def _seq(n: int) -> bytes:
    return n.to_bytes(8, "big")


# --- binding and connecting -----------------------------------------------------------------


async def test_bind_port_zero_reports_the_real_endpoint(ctx: ZmqContext) -> None:
    with open_router(ctx, "tcp://127.0.0.1:0", max_message=1024) as router:
        assert router.endpoint is not None
        assert router.endpoint.startswith("tcp://127.0.0.1:")
        assert int(router.endpoint.rsplit(":", 1)[1]) > 0
        opts = router.zmq_socket
        assert opts.getsockopt(zmq.LINGER) == 0
        assert opts.getsockopt(zmq.MAXMSGSIZE) == 1024


async def test_bind_conflict_is_a_clear_wire_error(ctx: ZmqContext) -> None:
    with open_router(ctx, "tcp://127.0.0.1:0", max_message=1024) as router:
        assert router.endpoint is not None
        with pytest.raises(
            WireError, match=f"cannot bind {router.endpoint}: Address already in use"
        ):
            open_router(ctx, router.endpoint, max_message=1024)


async def test_bad_addresses_are_wire_errors(ctx: ZmqContext) -> None:
    with pytest.raises(WireError, match="cannot bind nonsense"):
        open_router(ctx, "nonsense", max_message=1024)
    with pytest.raises(WireError, match="cannot connect to nonsense://x"):
        open_dealer(ctx, "nonsense://x", routing_id=None, immediate=True)


async def test_dealer_options(ctx: ZmqContext) -> None:
    with open_dealer(ctx, "tcp://127.0.0.1:1", routing_id=PEER, immediate=True) as dealer:
        sock = dealer.zmq_socket
        assert sock.getsockopt(zmq.IMMEDIATE) == 1
        assert sock.getsockopt(zmq.ROUTING_ID) == PEER
        assert sock.getsockopt(zmq.LINGER) == 0
        assert 10 <= _option(dealer, zmq.RECONNECT_IVL) <= 50


# --- basic operations -----------------------------------------------------------------------


async def test_round_trip_both_ways(pair: tuple[TrioSocket, TrioSocket]) -> None:
    router, dealer = pair
    with trio.fail_after(SAFETY):
        await dealer.send_multipart([b"a", b"", b"c"])
        assert await router.recv_multipart() == [PEER, b"a", b"", b"c"]
        await router.send_multipart([PEER, b"reply"])
        assert await dealer.recv_multipart() == [b"reply"]
        assert dealer.recv_multipart_nowait() is None
        assert dealer.send_multipart_nowait([bytearray(b"x"), memoryview(b"y")])
        assert await router.recv_multipart() == [PEER, b"x", b"y"]


async def test_async_methods_checkpoint_and_nowait_methods_do_not(
    pair: tuple[TrioSocket, TrioSocket],
) -> None:
    router, dealer = pair
    with trio.fail_after(SAFETY):
        with trio.testing.assert_checkpoints():
            await dealer.send_multipart([b"1"])  # fast path: sent at once
        with trio.testing.assert_no_checkpoints():
            assert dealer.send_multipart_nowait([b"2"])
        frames: list[list[bytes]] = []
        while len(frames) < 2:
            frames.extend(await router.recv_batch(10))
        await router.send_multipart([PEER, b"3"])
        await _until_queued(dealer)
        with trio.testing.assert_checkpoints():
            assert await dealer.recv_multipart() == [b"3"]  # fast path: already queued
        with trio.testing.assert_no_checkpoints():
            assert dealer.recv_multipart_nowait() is None


async def test_bad_frames_send_nothing(pair: tuple[TrioSocket, TrioSocket]) -> None:
    router, dealer = pair
    with pytest.raises(TypeError):
        dealer.send_multipart_nowait([b"ok", "text"])  # type: ignore[list-item]
    with pytest.raises(WireError, match="empty"):
        dealer.send_multipart_nowait([])
    with trio.fail_after(SAFETY):
        await dealer.send_multipart([b"next"])
        assert await router.recv_multipart() == [PEER, b"next"]  # no half message before it


async def test_recv_batch(ctx: ZmqContext) -> None:
    router, dealer = await _connect(ctx, "inproc://batch")
    with router, dealer, trio.fail_after(SAFETY):
        with pytest.raises(ValueError, match="max_n"):
            await dealer.recv_batch(0)
        for i in range(50):
            await router.send_multipart([PEER, _seq(i)])
        # inproc: all 50 are queued once the sends return, so batches are full.
        first = await dealer.recv_batch(10)
        assert first == [[_seq(i)] for i in range(10)]
        rest = await dealer.recv_batch(100)
        assert rest == [[_seq(i)] for i in range(10, 50)]
        assert dealer.recv_multipart_nowait() is None


async def test_recv_batch_waits_for_the_first_message(pair: tuple[TrioSocket, TrioSocket]) -> None:
    router, dealer = pair
    got: list[list[bytes]] = []

    async def receive() -> None:
        got.extend(await dealer.recv_batch(5))

    with trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await router.send_multipart([PEER, b"x"])
    assert got == [[b"x"]]


# --- cancellation ---------------------------------------------------------------------------


async def test_cancelled_recv_loses_nothing(pair: tuple[TrioSocket, TrioSocket]) -> None:
    router, dealer = pair
    with trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dealer.recv_multipart)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # cancel it mid-wait
        await router.send_multipart([PEER, b"after"])
        assert await dealer.recv_multipart() == [b"after"]
        # Cancelled before it starts, with a message queued: the message stays queued.
        await router.send_multipart([PEER, b"queued"])
        await _until_queued(dealer)
        with trio.CancelScope() as scope:
            scope.cancel()
            await dealer.recv_multipart()
        assert scope.cancelled_caught
        assert await dealer.recv_multipart() == [b"queued"]


async def test_random_recv_cancellations_lose_nothing(pair: tuple[TrioSocket, TrioSocket]) -> None:
    router, dealer = pair
    n = 2000
    got: list[int] = []
    cancelled = 0
    rng = random.Random(1)

    async def send() -> None:
        for i in range(n):
            await router.send_multipart([PEER, _seq(i)])
            if i % 50 == 0:
                await trio.sleep(0.0005)  # let the receiver run dry and wait

    async def receive() -> None:
        nonlocal cancelled
        while len(got) < n:
            with trio.move_on_after(rng.uniform(0, 0.0005)) as scope:
                if rng.random() < 0.5:
                    got.append(int.from_bytes((await dealer.recv_multipart())[0], "big"))
                else:
                    for frames in await dealer.recv_batch(7):
                        got.append(int.from_bytes(frames[0], "big"))
            cancelled += scope.cancelled_caught

    with trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(receive)
    assert got == list(range(n))
    print(f"{cancelled} receives cancelled")


async def test_cancelled_sends_send_all_or_nothing(ctx: ZmqContext) -> None:
    """A send storm into small queues, with sends cancelled at random.

    Every send that returned arrives whole and in order; no cancelled send arrives.
    """
    router, dealer = await _connect(ctx, sndhwm=4, rcvhwm=4)
    router.zmq_socket.setsockopt(zmq.RCVHWM, 4)
    n = 3000
    sent: list[int] = []
    rng = random.Random(2)
    got: list[int] = []
    done = trio.Event()

    async def send() -> None:
        for i in range(n):
            with trio.move_on_after(rng.uniform(0, 0.0003)):
                await dealer.send_multipart([b"head", _seq(i), b"tail"])
                sent.append(i)
        await dealer.send_multipart([b"end"])

    async def receive() -> None:
        while True:
            for frames in await router.recv_batch(rng.randint(1, 8)):
                if frames[1:] == [b"end"]:
                    done.set()
                    return
                assert frames[0] == PEER and frames[1] == b"head" and frames[3] == b"tail"
                got.append(int.from_bytes(frames[2], "big"))
            if rng.random() < 0.2:
                await trio.sleep(0.0005)  # fall behind so that sends must wait

    with router, dealer, trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(receive)
    assert done.is_set()
    assert got == sent
    print(f"{n - len(sent)} of {n} sends cancelled")


# --- concurrency: no hangs ------------------------------------------------------------------


async def test_no_hang_with_many_tasks_sending_and_receiving_both_ways(ctx: ZmqContext) -> None:
    """Two senders and two receivers on each socket, small queues on both sides."""
    router, dealer = await _connect(ctx, sndhwm=16, rcvhwm=16)
    n = 10_000  # per sender
    from_dealer: list[tuple[int, int]] = []
    from_router: list[tuple[int, int]] = []

    async def dealer_send(tag: int) -> None:
        for i in range(n):
            await dealer.send_multipart([bytes([tag]), _seq(i)])

    async def router_send(tag: int) -> None:
        for i in range(n):
            await router.send_multipart([PEER, bytes([tag]), _seq(i)])

    async def receive(
        sock: TrioSocket, out: list[tuple[int, int]], skip: int, done: trio.Event
    ) -> None:
        while True:
            for frames in await sock.recv_batch(32):
                out.append((frames[skip][0], int.from_bytes(frames[skip + 1], "big")))
            if len(out) == 2 * n:
                done.set()

    with router, dealer, trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            for tag in (1, 2):
                nursery.start_soon(dealer_send, tag)
                nursery.start_soon(router_send, tag)
            done = trio.Event(), trio.Event()
            for _ in range(2):  # two receivers per socket: one waits on the FD, one parks
                nursery.start_soon(receive, router, from_dealer, 1, done[0])
                nursery.start_soon(receive, dealer, from_router, 0, done[1])
            for event in done:
                await event.wait()
            nursery.cancel_scope.cancel()
    for out in (from_dealer, from_router):
        # Several receivers: each message arrives exactly once (order is per receiver).
        assert sorted(out) == [(tag, i) for tag in (1, 2) for i in range(n)]


async def test_router_send_to_unknown_peer_does_not_break_the_caller(
    pair: tuple[TrioSocket, TrioSocket],
) -> None:
    router, dealer = pair
    unknown = node_routing_id(99)
    with pytest.raises(PeerUnreachable):
        router.send_multipart_nowait([unknown, b"x"])
    with trio.fail_after(SAFETY):
        with pytest.raises(PeerUnreachable):
            await router.send_multipart([unknown, b"x"])
        assert isinstance(PeerUnreachable("x"), WireError)
        await router.send_multipart([PEER, b"still works"])
        assert await dealer.recv_multipart() == [b"still works"]


async def test_router_send_to_a_full_peer_waits_without_spinning(
    ctx: ZmqContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full peer while another has room: EVENTS says writable, yet sends get EAGAIN.

    ``send_multipart_nowait`` reports False; ``send_multipart`` waits (FD activity or a short
    timer) instead of spinning on the flag, and everything arrives once the peer reads.
    """
    router, dealer = await _connect(ctx, rcvhwm=2)
    router.zmq_socket.setsockopt(zmq.SNDHWM, 2)
    assert router.endpoint is not None
    other = open_dealer(ctx, router.endpoint, routing_id=node_routing_id(3), immediate=True)
    attempts = 0
    send_now = TrioSocket._send_now

    def counting_send_now(self: TrioSocket, frames: list[bytes]) -> None:
        nonlocal attempts
        attempts += 1
        send_now(self, frames)

    with router, dealer, other, trio.fail_after(SAFETY):
        await other.send_multipart([b"idle peer"])
        assert (await router.recv_multipart())[1:] == [b"idle peer"]
        queued = 0
        while router.send_multipart_nowait([PEER, _seq(queued)]):
            queued += 1
            assert queued < 1_000_000, "ROUTER_MANDATORY should refuse a full peer"
            if queued % 100 == 0:
                await trio.sleep(0.001)  # let ZeroMQ move messages into the peer's queue
        assert _option(router, zmq.EVENTS) & zmq.POLLOUT  # the flag that lies
        total = queued + 200
        got: list[int] = []

        async def receive_later() -> None:
            await trio.sleep(0.2)
            while len(got) < total:
                for frames in await dealer.recv_batch(16):
                    got.append(int.from_bytes(frames[0], "big"))

        monkeypatch.setattr(TrioSocket, "_send_now", counting_send_now)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_later)
            for i in range(queued, total):
                await router.send_multipart([PEER, _seq(i)])
    assert got == list(range(total))
    # Spinning would retry thousands of times while the peer does not read; waiting on
    # the FD and a growing timer retries a few dozen times.
    print(f"{attempts} send attempts for 200 messages")
    assert attempts < 200 + 2000


async def test_immediate_dealer_waits_for_a_peer(ctx: ZmqContext, tmp_path: Path) -> None:
    # ipc, not a closed TCP port: a DEALER reconnecting to a free ephemeral port on
    # 127.0.0.1 can connect to itself (TCP simultaneous open) and hold the port.
    endpoint = f"ipc://{tmp_path}/router.sock"
    dealer = open_dealer(ctx, endpoint, routing_id=PEER, immediate=True)
    with dealer, trio.fail_after(SAFETY):
        assert not dealer.send_multipart_nowait([b"dropped"])  # nobody there: EAGAIN
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dealer.send_multipart, [b"waited"])
            await trio.testing.wait_all_tasks_blocked()
            with open_router(ctx, endpoint, max_message=1024) as router:
                assert await router.recv_multipart() == [PEER, b"waited"]


# --- closing --------------------------------------------------------------------------------


async def test_close_wakes_every_waiter(ctx: ZmqContext) -> None:
    router, dealer = await _connect(ctx)
    errors: list[BaseException] = []

    async def wait_recv() -> None:
        try:
            await dealer.recv_multipart()
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    with router, trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            for _ in range(3):  # one waits on the FD, two are parked
                nursery.start_soon(wait_recv)
            await trio.testing.wait_all_tasks_blocked()
            dealer.close()
        assert len(errors) == 3
        dealer.close()  # idempotent
        assert dealer.closed
        with pytest.raises(trio.ClosedResourceError):
            await dealer.recv_multipart()
        with pytest.raises(trio.ClosedResourceError):
            dealer.send_multipart_nowait([b"x"])


async def test_context_managers_close(ctx: ZmqContext) -> None:
    async with open_router(ctx, "tcp://127.0.0.1:0", max_message=1024) as router:
        assert not router.closed
    assert router.closed
    with open_dealer(ctx, "tcp://127.0.0.1:1", routing_id=None, immediate=False) as dealer:
        assert not dealer.closed
    assert dealer.closed
    assert "closed" in repr(dealer)


async def test_send_many_sends_what_it_can_and_counts_the_rest(
    pair: tuple[TrioSocket, TrioSocket],
) -> None:
    router, dealer = pair
    unknown = node_routing_id(99)
    with trio.fail_after(SAFETY):
        with trio.testing.assert_no_checkpoints():
            unsent = router.send_many_nowait([[PEER, b"1"], [unknown, b"x"], [PEER, b"2"]])
        assert unsent == 1  # the unknown routing id; the others went, in order
        assert await dealer.recv_multipart() == [b"1"]
        assert await dealer.recv_multipart() == [b"2"]
        assert dealer.send_many_nowait([]) == 0


async def test_send_many_leaves_no_receiver_stranded(
    pair: tuple[TrioSocket, TrioSocket],
) -> None:
    """A task waiting to receive on the socket still wakes for a message that arrives
    around a ``send_many_nowait`` (EVENTS is re-checked once, after the lot)."""
    router, dealer = pair
    got: list[list[bytes]] = []
    with trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:

            async def receive() -> None:
                got.append(await router.recv_multipart())

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await dealer.send_multipart([b"ping"])
            router.send_many_nowait([[PEER, b"a"], [PEER, b"b"]])
        assert got == [[PEER, b"ping"]]
        assert await dealer.recv_batch(2) in ([[b"a"], [b"b"]], [[b"a"]])


async def test_send_many_on_a_closed_socket_raises(ctx: ZmqContext) -> None:
    router, dealer = await _connect(ctx)
    with dealer:
        router.close()
        with pytest.raises(trio.ClosedResourceError):
            router.send_many_nowait([[PEER, b"x"]])
