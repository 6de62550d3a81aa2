"""Open-loop load at a constant arrival rate; latency counted from each request's scheduled send time.

wrk (and any closed-loop client) waits for a reply before sending the next request, so a server
that stalls also stops the clock ("coordinated omission") and its slow moments barely show in the
percentiles. Here request i is due at start + i / rate whatever happened before it, and its latency
runs from that due time to the last byte of the reply: a stall delays every request due during it,
and they all count. (wrk2 does this, but it is not packaged for Debian; this client is small enough.)

Timing: asyncio timers (epoll, libuv) round to whole milliseconds, far too coarse for sub-millisecond
added latency, so a thread sleeps to each due time (clock_nanosleep, microseconds) and hands the send
to the event loop; both run at SCHED_FIFO when allowed, because ordinary wake-ups on a shared core
come several ms late at p99. How late sends actually left is reported (`late_p99_ms`), so a client
that cannot keep up shows instead of hiding in the numbers.

Bodies: the ~1 KB prompt of safety_post.lua (the one wrk sends), with the same per-request counter,
so the safety filters scan new text on every request here too.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import aiohttp
import uvloop

from bench_measure import CHAT_PATH, VARYING_SCRIPT, percentile, run_id
from bench_proc import HarnessError, realtime_client

BodyFactory = Callable[[int], bytes]


@dataclass
class OpenLoopResult:
    rate: float      # requested arrivals per second
    achieved: float  # replies per second over the measured window
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    errors: int      # non-200 replies, connection errors, timeouts
    late_p99_ms: float  # how late the client itself sent (p99): its own health, not the server's
    realtime: bool = False  # the client ran at SCHED_FIFO (see bench_proc.realtime_client)
    # The gateway's own measure of its time (x-switchyard-overhead-ms: the request's time minus the
    # upstream's), p50 and p99; None for servers that do not send it.
    own_p50_ms: float | None = None
    own_p99_ms: float | None = None


def _lua_prose(script: Path) -> str:
    """The `prose` string of safety_post.lua (concatenated Lua literals), so both clients send one text."""
    source = script.read_text()
    block = source.split("local prose =", 1)[1].split("\n\n", 1)[0]
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', block)
    if not literals:
        raise HarnessError(f"no prompt text found in {script}")
    return "".join(literals)


def varying_bodies(model: str, script: Path = VARYING_SCRIPT) -> BodyFactory:
    """Body i: the safety_post.lua request (system + ~1 KB user prompt + " Reference <run>-i."), where
    <run> is new for every factory: a later round must not find an earlier round's prompts in the cache."""
    prose = _lua_prose(script)
    head = ('{"model":"' + model + '","messages":[{"role":"system","content":"You are terse."},'
            '{"role":"user","content":"' + prose + " Reference " + run_id() + "-").encode()
    tail = b'."}],"max_tokens":32}'
    return lambda i: head + str(i).encode() + tail


async def _run(url: str, headers: dict[str, str], bodies: BodyFactory, rate: float,
               duration_s: float, warmup_s: float) -> OpenLoopResult:
    loop = asyncio.get_running_loop()
    total = int((warmup_s + duration_s) * rate)
    first_measured = int(warmup_s * rate)
    latencies: list[float] = []
    own: list[float] = []
    late: list[float] = []
    errors = [0]
    pending: set[asyncio.Task[None]] = set()
    stop = threading.Event()
    # limit=0: the pool never queues a due request behind a busy connection (that wait would be
    # the client's, not the server's); keep-alive connections are reused as they free up.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=10))

    async def one(i: int, due: float) -> None:
        sent = time.perf_counter()
        ok, overhead = False, None
        try:
            async with session.post(url, data=bodies(i), headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
                overhead = resp.headers.get("x-switchyard-overhead-ms")
        except (aiohttp.ClientError, TimeoutError):
            pass
        finished = time.perf_counter()
        if i < first_measured:
            return
        late.append(sent - due)
        if ok:
            latencies.append(finished - due)
            if overhead is not None:
                own.append(float(overhead))
        else:
            errors[0] += 1

    def fire(i: int, due: float) -> None:
        task = loop.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def ticker(start: float) -> None:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if stop.is_set():
                return
            loop.call_soon_threadsafe(fire, i, due)

    # The ticker thread needs the GIL right after each sleep; a short switch interval bounds its wait
    # when the loop thread is busy (the default 5 ms would be a whole inter-arrival gap at 200/s).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        start = time.perf_counter() + 0.05
        await loop.run_in_executor(None, ticker, start)
        if pending:
            await asyncio.wait(set(pending), timeout=15)
        window = time.perf_counter() - (start + first_measured / rate)
    finally:
        stop.set()
        sys.setswitchinterval(switch)
        await session.close()
    if not latencies:
        raise HarnessError(f"open-loop run against {url}: no successful reply ({errors[0]} errors)")
    ms = [x * 1000 for x in latencies]
    return OpenLoopResult(rate=rate, achieved=len(latencies) / window, p50_ms=percentile(ms, 50),
                          p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99), max_ms=max(ms),
                          samples=len(ms), errors=errors[0],
                          late_p99_ms=percentile([x * 1000 for x in late], 99),
                          own_p50_ms=percentile(own, 50) if own else None,
                          own_p99_ms=percentile(own, 99) if own else None)


def run(port: int, key: str, bodies: BodyFactory, rate: float, duration_s: float,
        warmup_s: float = 1.0) -> OpenLoopResult:
    """`rate` requests/s for warmup_s + duration_s against 127.0.0.1:port; bounded in time."""
    url = f"http://127.0.0.1:{port}{CHAT_PATH}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    budget = warmup_s + duration_s + 30

    async def bounded() -> OpenLoopResult:
        try:
            return await asyncio.wait_for(_run(url, headers, bodies, rate, duration_s, warmup_s), budget)
        except TimeoutError as exc:
            raise HarnessError(f"open-loop run against :{port} exceeded {budget:.0f} s") from exc

    # The ticker thread is started inside, so it inherits the real-time policy.
    with realtime_client() as realtime, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(bounded())
    result.realtime = realtime
    return result


def merge(results: list[OpenLoopResult]) -> OpenLoopResult:
    """Several rounds against one target: the median of each statistic, so one noisy round does not
    decide; errors and samples summed, the worst max and client lateness kept."""
    return OpenLoopResult(
        rate=results[0].rate, achieved=median(r.achieved for r in results),
        p50_ms=median(r.p50_ms for r in results), p90_ms=median(r.p90_ms for r in results),
        p99_ms=median(r.p99_ms for r in results), max_ms=max(r.max_ms for r in results),
        samples=sum(r.samples for r in results), errors=sum(r.errors for r in results),
        late_p99_ms=max(r.late_p99_ms for r in results), realtime=all(r.realtime for r in results),
        own_p50_ms=_median_or_none([r.own_p50_ms for r in results]),
        own_p99_ms=_median_or_none([r.own_p99_ms for r in results]))


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None
