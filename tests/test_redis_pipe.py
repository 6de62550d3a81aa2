"""RedisPipe: batches in flight on one connection, replies handed out in order, and every way a connection can go
wrong ending in an error for whoever waits (never a hang). Against a scripted server that answers as told, and the
real Redis for error replies."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.connection import ConnectionPool

from fakes import async_wait_until
from fakes.network import free_port
from fakes.redis_server import PrivateRedis
from gateway.config import Limits, StateConfig
from gateway.limit import limit_specs
from gateway.limits_base import Plan
from gateway.limits_redis import RedisLimits
from gateway.redis_pipe import PipeClosed, RedisPipe, Replies, ReplyError

PING = b"*1\r\n$4\r\nPING\r\n"


class Scripted:
    """A TCP server that reads whatever comes and writes what the test tells it to."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def answer(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def hang_up(self) -> None:
        assert self.writer is not None
        self.writer.close()


class Collected:
    """What a batch's callback was given, awaitable."""

    def __init__(self) -> None:
        self.result: asyncio.Future[Replies | Exception] = asyncio.get_running_loop().create_future()

    def __call__(self, replies: Replies | Exception) -> None:
        assert not self.result.done(), "a batch is answered once"
        self.result.set_result(replies)

    async def get(self) -> Replies | Exception:
        return await asyncio.wait_for(self.result, 5)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, RedisPipe]]:
    server = Scripted()
    port = await server.start()
    _, pipe = await asyncio.get_running_loop().create_connection(lambda: RedisPipe(timeout_s=0.3), "127.0.0.1", port)
    await async_wait_until(lambda: server.writer is not None, timeout=5, message="the server to accept")
    yield server, pipe
    pipe.close(PipeClosed("test over"))
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()


async def test_batches_in_flight_together_get_their_own_replies_in_order(scripted):
    server, pipe = scripted
    first, second = Collected(), Collected()
    pipe.send([PING, PING], first)
    pipe.send([PING], second)
    assert pipe.waiting == 2
    await server.answer(b"+a\r\n:2\r\n$1\r\nc\r\n")  # both batches' replies in one segment
    assert await first.get() == [b"a", 2]
    assert await second.get() == [b"c"]
    assert pipe.waiting == 0


async def test_a_reply_cut_into_pieces_is_put_back_together(scripted):
    server, pipe = scripted
    got = Collected()
    pipe.send([PING], got)
    for piece in (b"*2\r\n$5\r\nhel", b"lo\r\n", b":4", b"2\r\n"):
        await server.answer(piece)
    assert await got.get() == [[b"hello", 42]]


async def test_an_error_reply_is_that_command_s_alone(scripted):
    server, pipe = scripted
    got = Collected()
    pipe.send([PING, PING], got)
    await server.answer(b"-NOSCRIPT No matching script\r\n+OK\r\n")
    error, ok = await got.get()
    assert isinstance(error, ReplyError) and str(error).startswith("NOSCRIPT")
    assert ok == b"OK" and not pipe.closed


async def test_a_silent_server_fails_every_waiting_batch_at_the_timeout_and_the_pipe_stays_closed(scripted):
    server, pipe = scripted
    first, second = Collected(), Collected()
    pipe.send([PING], first)
    pipe.send([PING], second)
    assert isinstance(await first.get(), TimeoutError)
    assert isinstance(await second.get(), TimeoutError)
    assert pipe.closed and pipe.waiting == 0
    later = Collected()
    pipe.send([PING], later)
    assert isinstance(await later.get(), PipeClosed)


async def test_a_server_that_hangs_up_fails_the_waiting_batches(scripted):
    server, pipe = scripted
    got = Collected()
    pipe.send([PING], got)
    await server.hang_up()
    assert isinstance(await got.get(), PipeClosed)
    assert pipe.closed


@pytest.mark.parametrize("garbage", [b"?what\r\n", b"+nobody asked\r\n"])
async def test_a_stream_out_of_step_closes_the_pipe(scripted, garbage: bytes):
    server, pipe = scripted
    if garbage.startswith(b"+"):  # a well-formed reply, but no batch is waiting for one
        await server.answer(garbage)
        await async_wait_until(lambda: pipe.closed, timeout=5, message="the pipe to close")
        return
    got = Collected()
    pipe.send([PING], got)
    await server.answer(garbage)
    assert isinstance(await got.get(), PipeClosed)
    assert pipe.closed


async def test_on_real_redis_after_redis_py_s_handshake(redis_url: str, redis_client: Any):
    connection = ConnectionPool.from_url(redis_url, client_name="pipe-test").make_connection()
    pipe = await RedisPipe.take_over(connection, timeout_s=2)
    try:
        got = Collected()
        pipe.send([b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                   b"*3\r\n$4\r\nEVAL\r\n$14\r\nreturn {1,'x'}\r\n$1\r\n0\r\n", b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n"], got)
        ok, value, table, error = await got.get()
        assert (ok, value, table) == (b"OK", b"v", [1, b"x"])
        assert isinstance(error, ReplyError)
        assert "pipe-test" in [c["name"] for c in redis_client.client_list()], "the handshake (CLIENT SETNAME) ran"
    finally:
        pipe.close(PipeClosed("test over"))


# ----- every kind of connection redis-py opens --------------------------------------------------------------------


@pytest.fixture
def redis_variants(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts a redis-server reached over TLS, a Unix socket, or with a password and a database number; gives its URL."""
    servers: list[PrivateRedis] = []

    def start(kind: str) -> str:
        port = free_port()
        if kind == "tls":
            cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=redis",
                            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True)
            options = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                       "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
            url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        elif kind == "unix":
            socket_path = tmp_path / "redis.sock"
            options, url = ["--port", "0", "--unixsocket", str(socket_path)], f"unix://{socket_path}?db=2"
        else:
            options, url = ["--requirepass", "s3cret-pass"], f"redis://:s3cret-pass@127.0.0.1:{port}/3"
        server = PrivateRedis(port, tmp_path, options=options, url=url)
        servers.append(server)
        server.start()  # until it answers over the very URL under test
        return url

    yield start
    for server in servers:
        server.kill()


@pytest.mark.parametrize("kind", ["tls", "unix", "password and database"])
async def test_the_limits_work_over_every_kind_of_redis_url(redis_variants, kind: str):
    # redis-py opens the connection (TLS, a Unix socket, AUTH, SELECT) before the pipe takes its transport over.
    url = redis_variants(kind)
    shared = RedisLimits(StateConfig(redis_url=url))
    await shared.start()
    try:
        assert shared.up
        rpm = Plan(limit_specs(Limits(requests_per_minute=5), "acme", "t", "tenant 'acme'", 30_000))
        verdicts = [await shared.admit(rpm, f"r{i}", 0) for i in range(6)]
        assert [v.admitted for v in verdicts] == [True] * 5 + [False]
        assert [v.requests_remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
    finally:
        await shared.close()
    with redis.Redis.from_url(url) as client:
        assert client.dbsize() == 1, "the window is in the URL's database"
