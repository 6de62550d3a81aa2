"""A private redis-server process per test session, on its own port, never the machine's shared Redis."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .polling import wait_until


def find_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; `make redis-server` (apt-get install redis-server) adds it")
    return binary


class PrivateRedis:
    """A redis-server without persistence on 127.0.0.1:`port`.

    stop()/kill() and start() again reuse the same port, so tests can take Redis away from a running gateway and
    give it back (an empty one, as after a real crash without persistence). `options` are added to its command
    line (TLS, a Unix socket, a password…); `url` is then how to reach it, and what ping() and client() use.
    """

    def __init__(
        self, port: int, workdir: Path, binary: str | None = None, options: Sequence[str] = (), url: str | None = None
    ) -> None:
        self.port = port
        self.workdir = workdir
        self.binary = binary or find_redis_server()
        self.options = list(options)
        self.url = url or f"redis://127.0.0.1:{port}/0"
        self.log_path = workdir / f"redis-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Starts the server and returns once it answers PING."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *self.options,
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def answers_or_died() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start:\n{self.log_text()}")
            return self.ping()

        wait_until(
            answers_or_died, timeout=timeout, interval=0.05, message=f"redis-server on port {self.port} answering PING"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), killing it if it does not exit within `timeout`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def kill(self) -> None:
        """Abrupt crash (SIGKILL)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def ping(self) -> bool:
        # No retries: redis-py's default retry-with-backoff turns one refused connection into seconds of waiting.
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """A synchronous client for test assertions (strings decoded); close it when done."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def flush(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
