"""The soak's client and its probes: a bounded-concurrency mix of chat requests, and what /proc says of a process.

Requests are numbered; the number picks the kind from a fixed pattern (`KINDS`), so any run of 20 consecutive
requests holds 10 JSON requests, 7 streams read to their end and 3 streams abandoned after their first event.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

KINDS = ("json",) * 10 + ("stream",) * 7 + ("abandon",) * 3
MODEL = "chat"
EXAMPLES_KEPT = 5  # distinct error descriptions shown in the report


def request_bodies() -> dict[str, bytes]:
    messages = [{"role": "user", "content": "How long is a soak test? Answer briefly."}]
    json_body = orjson.dumps({"model": MODEL, "messages": messages, "max_tokens": 32})
    stream_body = orjson.dumps({"model": MODEL, "messages": messages, "max_tokens": 32, "stream": True})
    return {"json": json_body, "stream": stream_body, "abandon": stream_body}


@dataclass
class Tally:
    """What the client sent and got, by kind."""

    sent: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return sum(self.ok.values()) + sum(self.errors.values())

    def error(self, description: str) -> None:
        self.errors[description] += 1

    def examples(self) -> list[str]:
        return [f"{count} × {what}" for what, count in self.errors.most_common(EXAMPLES_KEPT)]


class Client:
    """Sends requests [start, stop) with `concurrency` in flight, recording every outcome in `tally`."""

    def __init__(self, port: int, key: str, concurrency: int, timeout_s: float = 30.0) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.concurrency = concurrency
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.bodies = request_bodies()
        self.tally = Tally()

    async def run(self, start: int, stop: int) -> None:
        numbers = iter(range(start, stop))  # shared: each worker takes the next number when it is free
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=self.timeout) as session:

            async def worker() -> None:
                for number in numbers:
                    await self._one(session, KINDS[number % len(KINDS)])

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, session: aiohttp.ClientSession, kind: str) -> None:
        self.tally.sent[kind] += 1
        try:
            async with session.post(self.url, data=self.bodies[kind], headers=self.headers) as response:
                if response.status != 200:
                    body = await response.read()
                    self.tally.error(f"{kind}: HTTP {response.status} {body[:160]!r}")
                    return
                problem = await _check_reply(kind, response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = f"{type(exc).__name__} {exc}"[:200]
        if problem:
            self.tally.error(f"{kind}: {problem}")
        else:
            self.tally.ok[kind] += 1


async def _check_reply(kind: str, response: aiohttp.ClientResponse) -> str | None:
    """What is wrong with a 200 reply of this kind, or None."""
    if kind == "json":
        payload = orjson.loads(await response.read())
        return None if payload["choices"][0]["message"]["content"] else "reply without content"
    if kind == "stream":
        body = await response.read()
        if b'"error"' in body:
            return "stream ended with an error event"
        return None if body.endswith(b"data: [DONE]\n\n") else "stream without [DONE]"
    received = b""
    while b"\n\n" not in received:
        chunk = await response.content.readany()
        if not chunk:
            return "stream ended before its first event"
        received += chunk
    response.close()  # hang up mid-stream: the gateway must cancel the upstream request
    return None


async def watch(client: Client, total: int, probe: Callable[[], dict[str, float]], peaks: dict[str, float],
                every_s: float, sample_s: float = 0.5) -> None:
    """Keeps the highest value of each of `probe()`'s readings in `peaks` (sampled every `sample_s`, in a thread:
    the probe blocks) and prints the pace every `every_s`; runs until cancelled."""
    loop = asyncio.get_running_loop()
    last_print, last_done = loop.time(), client.tally.done
    while True:
        await asyncio.sleep(sample_s)
        readings = await loop.run_in_executor(None, probe)
        for name, value in readings.items():
            peaks[name] = max(peaks.get(name, value), value)
        if loop.time() - last_print >= every_s:
            done = client.tally.done
            pace = (done - last_done) / (loop.time() - last_print)
            shown = "  ".join(f"{name} {value:g}" for name, value in readings.items())
            print(f"[soak] {done:>7}/{total} answered  {pace:6.0f} req/s  errors {sum(client.tally.errors.values())}"
                  f"  {shown}", flush=True)
            last_print, last_done = loop.time(), done


def established_connections(pid: int, remote_port: int) -> int:
    """ESTABLISHED TCP connections of process `pid` to `remote_port` on any address.

    /proc/PID/net/tcp lists every socket of the network namespace; the process's own are those whose inode
    one of its file descriptors points at.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == remote_port and inode in inodes:
                count += 1
    return count
