"""``SyncThread``: the persist task's own thread for syncs."""

from __future__ import annotations

import threading

import pytest
import trio

from trioraft.node.sync_thread import SyncThread


async def test_runs_calls_on_its_own_thread_and_returns_results() -> None:
    st = SyncThread("test-sync")
    try:
        names = [await st.run(lambda: threading.current_thread().name) for _ in range(3)]
        assert names == ["test-sync"] * 3
        assert await st.run(lambda: 42) == 42
    finally:
        st.close()


async def test_an_exception_is_raised_in_the_caller() -> None:
    st = SyncThread("test-sync")

    def fail() -> None:
        raise OSError("disk on fire")

    try:
        with pytest.raises(OSError, match="disk on fire"):
            await st.run(fail)
        assert await st.run(lambda: "still serving") == "still serving"
    finally:
        st.close()


async def test_a_cancelled_caller_waits_for_the_call_to_finish() -> None:
    st = SyncThread("test-sync")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)
        finished.set()

    caller = trio.CancelScope()
    returned = trio.Event()

    async def call() -> None:
        with caller:
            await st.run(slow)
        returned.set()

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await trio.to_thread.run_sync(started.wait)
                caller.cancel()
                await trio.sleep(0.05)
                assert not returned.is_set()  # still waiting for the call
                release.set()
                await returned.wait()
            assert finished.is_set()
    finally:
        st.close()


async def test_a_caller_already_cancelled_runs_nothing() -> None:
    st = SyncThread("test-sync")
    ran: list[int] = []
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await st.run(lambda: ran.append(1))
        assert ran == []
    finally:
        st.close()
