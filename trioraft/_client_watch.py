"""A watch as the application sees it: every event once, in order, across reconnects.

The stream may break: the serving node stops, loses its leader, finds the watcher too
slow, or goes silent (no event nor progress message within three progress periods). The
watch then opens a new stream, on the leader unless an endpoint is pinned, starting at the
revision after the last one it received, and drops any event it has already seen. Events
of one revision always arrive in one message, so resuming between revisions loses nothing.
Only a resume point that no node it tries still retains ends the watch, with ``Compacted``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from trioraft._client_conn import Connection, Stream, error_from
from wire import client_messages as cm
from wire.errors import ERROR_CODES, Compacted, Timeout, TrioraftError, Unavailable

if TYPE_CHECKING:
    from trioraft.client import Client


def _canceled_error(msg: cm.WatchCanceled) -> TrioraftError:
    if msg.code == Compacted.code:
        return Compacted(msg.message, msg.compact_revision)
    return ERROR_CODES.get(msg.code, TrioraftError)(msg.message)


class Watch:
    """An open watch: ``async for event in watch`` yields ``Event``s in revision order.

    ``revision``: every event up to it has been yielded (it also advances with the node's
    progress messages while nothing matches). ``resumes``: streams reopened so far.
    Cancelling an iteration loses nothing: the next one continues where it stopped.
    """

    def __init__(self, client: Client, request: cm.WatchRequest, endpoint: str | None) -> None:
        self._client = client
        self._request = request
        self._pinned = endpoint
        self._conn: Connection | None = None
        self._stream: Stream | None = None
        self._idle = client.attempt_timeout
        self._buffer: deque[cm.Event] = deque()
        self._next = request.start_revision  # first revision not yet received (0: now)
        self._closed = False
        self.revision = 0
        self.resumes = 0

    async def __aenter__(self) -> Watch:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the watch (the node is told; idempotent)."""
        self._closed = True
        self._drop_stream()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> cm.Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._receive()
        event = self._buffer.popleft()
        self.revision = max(self.revision, event.revision)
        return event

    async def _receive(self) -> None:
        if self._stream is None:
            await self._open()
            return
        msg = await self._stream.get(self._idle)
        if isinstance(msg, cm.WatchEvents):
            for event in msg.events:
                if event.revision >= self._next:
                    self._buffer.append(event)
            if msg.events:
                self._next = max(self._next, msg.events[-1].revision + 1)
        elif isinstance(msg, cm.WatchProgress):
            self._next = max(self._next, msg.revision + 1)
            if not self._buffer:
                self.revision = max(self.revision, msg.revision)
        elif isinstance(msg, cm.WatchCanceled):
            if not msg.retryable:
                self.close()
                raise _canceled_error(msg)
            await self._resume()
        elif isinstance(msg, cm.ErrorReply):
            self.close()
            raise error_from(msg)
        elif msg is None:  # silent for too long, or the buffer overflowed
            await self._resume()

    async def _resume(self) -> None:
        self._drop_stream()
        await self._open()
        self.resumes += 1

    def _drop_stream(self) -> None:
        if self._stream is not None and self._conn is not None:
            self._conn.close_stream(self._stream)
        self._stream = self._conn = None

    async def _open(self) -> None:
        client = self._client
        last: TrioraftError | None = None
        backoff = 0.01
        with trio.move_on_after(client.timeout):
            while True:
                last = await self._try_open()
                if last is None:
                    return
                client._forget_leader()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
        raise Timeout(f"could not open the watch within {client.timeout:g} s: {last}")

    async def _try_open(self) -> TrioraftError | None:
        """One attempt: None once open; the error if worth retrying; raises if not."""
        client = self._client
        try:
            endpoint = self._pinned or await client._leader_endpoint()
            conn = client._conn(endpoint)
            request = replace(self._request, start_revision=self._next)
            stream = await conn.open_stream(request, client.attempt_timeout)
            first = await stream.get(client.attempt_timeout)
        except (Unavailable, Timeout) as exc:
            return exc
        if isinstance(first, cm.WatchCreated):
            self._conn, self._stream = conn, stream
            if not self._next:
                self._next = first.revision + 1
            self._idle = 3 * first.progress_ms / 1000 + client.attempt_timeout
            return None
        conn.close_stream(stream)
        if isinstance(first, cm.WatchCanceled):
            error = _canceled_error(first)
            if not first.retryable:
                raise error
            return error
        if isinstance(first, cm.ErrorReply):
            raise error_from(first)
        return Timeout(f"{endpoint} did not answer the watch request")
