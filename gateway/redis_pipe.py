"""One connection to Redis that pipelines: commands are written the moment they are sent, and each batch's
replies go to its callback as soon as the last of them has arrived.

redis-py's asyncio connection reads through a StreamReader and needs a task awaiting each read, so a reply
reaches whoever waits for it two event-loop hops after its bytes. Here hiredis parses the bytes in
`data_received` and the callback runs there and then. redis-py still opens the connection (URL forms, TLS,
AUTH, SELECT, client name); the pipe takes over its transport once that handshake is done.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection

Replies = list[Any]
Done = Callable[[Replies | Exception], None]  # a batch's replies (an error reply as ReplyError), or why none came


class ReplyError(Exception):
    """An error reply to one command (the script failed, NOSCRIPT…); the connection itself is fine."""


class PipeClosed(ConnectionError):
    """The connection ended, or was given up on, before a batch's replies arrived."""


class _Batch:
    __slots__ = ("count", "replies", "done", "timer")

    def __init__(self, count: int, done: Done, timer: asyncio.TimerHandle) -> None:
        self.count = count
        self.replies: Replies = []
        self.done = done
        self.timer = timer


class RedisPipe(asyncio.Protocol):
    """Batches of commands in flight on one connection, answered in the order they were sent. A batch not
    answered within `timeout_s` closes the pipe: every batch still waiting then gets PipeClosed, and so does
    every later `send`."""

    def __init__(self, timeout_s: float, owner: object = None) -> None:
        self.on_lost: Callable[[RedisPipe], None] = lambda pipe: None  # the connection ended, from either side
        self._transport: asyncio.Transport | None = None
        self._owner = owner  # the stream writer redis-py opened the socket with: collected, it would close it
        self._timeout = timeout_s
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._waiting: deque[_Batch] = deque()
        self._loop = asyncio.get_running_loop()
        self.closed = False

    @classmethod
    async def take_over(cls, connection: AbstractConnection, timeout_s: float) -> RedisPipe:
        """The pipe on `connection`'s socket, once redis-py has connected it (handshake included)."""
        await connection.connect()
        writer = connection._writer  # noqa: SLF001 - the transport under redis-py's stream, taken over here
        assert writer is not None
        connection._writer = connection._reader = None  # noqa: SLF001 - the socket is the pipe's now
        transport = writer.transport
        pipe = cls(timeout_s, writer)
        transport.set_protocol(pipe)
        pipe.connection_made(transport)
        return pipe

    @property
    def waiting(self) -> int:
        """Batches sent and not answered yet."""
        return len(self._waiting)

    def send(self, commands: list[bytes], done: Done) -> None:
        """Writes the commands at once; `done` gets their replies, in order, or the error that lost them."""
        if self.closed or self._transport is None:
            done(PipeClosed("the connection to Redis is closed"))
            return
        timer = self._loop.call_later(self._timeout, self._timed_out)
        self._waiting.append(_Batch(len(commands), done, timer))
        self._transport.write(b"".join(commands))

    def close(self, reason: Exception) -> None:
        """Gives up on the connection: the batches still waiting fail with `reason`."""
        if self.closed:
            return
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
        waiting, self._waiting = self._waiting, deque()
        for batch in waiting:
            batch.timer.cancel()
            batch.done(reason)

    # ----- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:  # the stream is out of step: nothing on it can be trusted
                self.close(PipeClosed(f"Redis protocol error: {error}"))
                return
            if reply is False:
                return
            if not self._waiting:
                self.close(PipeClosed("Redis sent a reply nobody asked for"))
                return
            batch = self._waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.count:
                self._waiting.popleft()
                batch.timer.cancel()
                batch.done(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(PipeClosed(f"the connection to Redis was lost ({type(exc).__name__})" if exc else "Redis closed the connection"))
        self.on_lost(self)

    def _timed_out(self) -> None:
        self.close(TimeoutError(f"Redis did not answer within {self._timeout}s"))
