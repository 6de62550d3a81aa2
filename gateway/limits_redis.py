"""Limits shared by every replica, in Redis: one Lua call per admission, pipelined with its neighbours.

Each call is one EVALSHA of gateway/limits.lua (EVAL when Redis answers NOSCRIPT, e.g. after a restart).
All calls go over one connection (gateway/redis_pipe.py), up to `state.redis_max_pipelines` pipelines in
flight at once. Calls made during the same event-loop turn are written together as one pipeline: under
load many admissions share one round trip and one read. An admission made while nothing is pending or in
flight is written at once instead (at low load there is nobody to wait for), so that its round trip runs
while the request is scanned; its reply wakes the request straight from the socket's callback. Settlements
(what ended requests used) are not awaited: they wait up to SETTLE_DELAY_S to ride along with an admission,
and those of the same plan in one pipeline become one call. Commands are pre-encoded per plan, so a call
only encodes its few per-request arguments.

Every round trip, connecting included, is bounded by `state.redis_timeout_s`. A failure marks Redis
down (logged once per outage): calls then fail at once with LimitsUnavailable, without touching the
network, while a background task tries Redis again every `state.redis_retry_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from gateway.config import StateConfig
from gateway.limits_base import Kind, LimitSpec, LimitsUnavailable, Plan, Verdict
from gateway.redis_pipe import PipeClosed, RedisPipe, Replies, ReplyError

log = logging.getLogger("switchyard.limits")

SCRIPT = (Path(__file__).parent / "limits.lua").read_bytes()
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest().encode()
MAX_BATCH = 512  # calls per pipeline; more wait for the next one
SETTLE_DELAY_S = 0.002  # how long a settlement may wait for an admission to share a round trip with


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


_EVALSHA = _bulk(b"EVALSHA") + _bulk(SCRIPT_SHA)
_EVAL = _bulk(b"EVAL") + _bulk(SCRIPT)
_ADMIT, _SETTLE, _CANCEL = _bulk(b"admit"), _bulk(b"settle"), _bulk(b"cancel")
_REDIS_TIME, _NO_USD = _bulk(b"0"), _bulk(b"0")
_SCRIPT_LOAD = _command(b"SCRIPT", b"LOAD", SCRIPT)
_KEEPALIVE = {
    option: value
    for option, value in ((getattr(socket, "TCP_KEEPIDLE", None), 60), (socket.TCP_KEEPINTVL, 15), (socket.TCP_KEEPCNT, 4))
    if option is not None
}
_PING = _command(b"PING")


class _Wire:
    """A call's keys and limits, pre-encoded; each call adds its mode and entries around them."""

    __slots__ = ("arity", "keys", "specs")

    def __init__(self, limits: tuple[LimitSpec, ...]) -> None:
        keys = [key for limit in limits for key in limit.keys]
        specs = [f"{part}".encode() for limit in limits for part in (int(limit.kind), limit.amount, limit.span_ms)]
        self.arity = 3 + len(keys) + 2 + len(specs)  # command, script, key count, keys, mode, entry count, specs
        self.keys = _bulk(b"%d" % len(keys)) + b"".join(_bulk(key.encode()) for key in keys)
        self.specs = b"".join(_bulk(s) for s in specs)


class _Wires:
    """A plan's two calls: admission (every limit), settlement (only the limits that need telling)."""

    __slots__ = ("admit", "settle")

    def __init__(self, plan: Plan) -> None:
        self.admit = _Wire(plan.limits)
        self.settle = _Wire(tuple(limit for limit in plan.limits if limit.kind is not Kind.REQUESTS))


class _Call:
    """One EVALSHA: an admission (one entry, awaited), or the settlements (or cancellations) of one plan's
    ended requests."""

    __slots__ = ("wire", "mode", "entries", "future")

    def __init__(self, wire: _Wire, mode: bytes, entries: list[bytes], future: asyncio.Future[Any] | None) -> None:
        self.wire = wire
        self.mode = mode
        self.entries = entries
        self.future = future

    def encode(self, script: bytes) -> bytes:
        wire, entries = self.wire, self.entries
        count = b"%d" % len(entries)
        return b"".join(
            (b"*%d\r\n" % (wire.arity + 4 * len(entries)), script, wire.keys, self.mode, _bulk(count), *entries, wire.specs)
        )


def _merge_settlements(calls: list[_Call]) -> list[_Call]:
    """One call per plan and mode for the settlements and cancellations in `calls`, ahead of the admissions
    (ended requests free their slots first)."""
    merged: dict[tuple[_Wire, bytes], _Call] = {}
    admissions: list[_Call] = []
    for call in calls:
        if call.future is not None:
            admissions.append(call)
        elif (call.wire, call.mode) in merged:
            merged[call.wire, call.mode].entries.extend(call.entries)
        else:
            merged[call.wire, call.mode] = call
    return [*merged.values(), *admissions]


class RedisLimits:
    def __init__(self, state: StateConfig, clock: Callable[[], float] | None = None) -> None:
        """`clock` None: the script reads Redis TIME, one clock for all replicas (tests pass their own)."""
        assert state.redis_url is not None
        # redis-py opens the connection (URL forms, TLS, AUTH, SELECT, client name); RedisPipe carries the calls.
        self._pool = ConnectionPool.from_url(
            state.redis_url,
            socket_timeout=None,  # every round trip is bounded by the pipe's own timer instead
            socket_connect_timeout=state.redis_timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would hide an outage behind seconds of waiting
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            client_name="switchyard",
            # Probes keep an idle TCP connection open through NATs and firewalls, and find one that died silently.
            **({} if state.redis_url.startswith("unix:") else {"socket_keepalive": True, "socket_keepalive_options": _KEEPALIVE}),
        )
        kwargs = self._pool.connection_kwargs
        self.where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self._timeout = state.redis_timeout_s
        self._retry_s = state.redis_retry_s
        self._max_in_flight = state.redis_max_pipelines
        self._clock = clock
        self._pipe: RedisPipe | None = None  # None while Redis is down, or while a lost connection is replaced
        self._pending: list[_Call] = []
        self._kick_scheduled = False
        self._kick_timer: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self.up = False
        self.outages = 0  # how many times Redis went away
        self.on_change: Callable[[bool], None] = lambda up: None

    # ----- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        failure = await self._connect()
        if failure is not None:
            self._went_down(failure)

    async def close(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        self._kick()
        pipe, self._pipe = self._pipe, None
        if pipe is None:
            return
        if pipe.waiting:  # let queued settlements land, within the usual bound: replies come in order
            with contextlib.suppress(Exception):
                await _ask(pipe, [_PING])
        pipe.close(PipeClosed("the limits are closing"))

    async def _connect(self) -> str | None:
        """One connection, checked with PING, the script loaded: Redis is usable again. Else why not."""
        connection = self._pool.make_connection()
        pipe = None
        try:
            async with asyncio.timeout(self._timeout):
                pipe = await RedisPipe.take_over(connection, self._timeout)
                for reply in await _ask(pipe, [_PING, _SCRIPT_LOAD]):
                    if isinstance(reply, ReplyError):
                        raise reply
        except Exception as error:
            if pipe is not None:
                pipe.close(PipeClosed("not usable"))
            await connection.disconnect(nowait=True)
            return _reason(error)
        pipe.on_lost = self._lost
        self._pipe = pipe
        if not self.up:
            self.up = True
            self.on_change(True)
            if self.outages:
                log.warning("Redis at %s is reachable again: limits are shared across replicas again", self.where)
        return None

    async def _reconnect(self) -> None:
        while await self._connect() is not None:
            await asyncio.sleep(self._retry_s)

    def _lost(self, pipe: RedisPipe) -> None:
        """The connection ended on its own (Redis closes idle clients after its `timeout`, a proxy drops them): a
        new one is opened at once, and calls wait for it; only if that fails is Redis down."""
        if pipe is not self._pipe:
            return  # one given up on here already (Redis down, or the limits closing)
        self._pipe = None
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        failure = await self._connect()
        if failure is not None:
            self._reconnecting = None  # this task ends here: _went_down starts the retries
            self._went_down(failure)
            return
        log.info("the connection to Redis at %s was closed by the other side; a new one is open", self.where)
        self._kick()

    def _went_down(self, reason: str) -> None:
        if self.up or self.outages == 0:
            self.outages += 1
            log.warning(
                "Redis at %s is unavailable (%s); retrying every %.1fs, limits follow state.on_redis_error meanwhile",
                self.where,
                reason[:300],
                self._retry_s,
            )
        if self.up:
            self.on_change(False)
        self.up = False
        # Calls in flight fail now; the connection is not used again (a restarted Redis has closed it, and a call
        # that went through on it meanwhile would make the first call after the recovery fail).
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close(PipeClosed(f"Redis at {self.where} is unavailable"))
        self._kick()  # the calls still waiting to be sent fail too
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._retry_later())

    async def _retry_later(self) -> None:
        await asyncio.sleep(self._retry_s)
        await self._reconnect()

    # ----- calls -----------------------------------------------------------------------------------------

    def _entry(self, entry: str, tokens: int, usd: bytes) -> bytes:
        now = _REDIS_TIME if self._clock is None else _bulk(b"%d" % int(self._clock() * 1000))
        return b"%s$%d\r\n%s\r\n%s%s" % (now, len(entry), entry.encode(), _bulk(b"%d" % tokens), usd)

    @staticmethod
    def _wires(plan: Plan) -> _Wires:
        wires = plan.wire
        if not isinstance(wires, _Wires):
            wires = plan.wire = _Wires(plan)
        return wires

    async def admit(self, plan: Plan, entry: str, tokens: int) -> Verdict:
        return verdict(await self.start_admission(plan, entry, tokens))

    def start_admission(self, plan: Plan, entry: str, tokens: int) -> asyncio.Future[Any]:
        """Sends the admission; the future's result is its reply (see `verdict`), or LimitsUnavailable.
        Cancelling the future before the reply undoes the admission once the reply is in."""
        if not self.up:
            raise LimitsUnavailable(self.where)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Call(self._wires(plan).admit, _ADMIT, [self._entry(entry, tokens, _NO_USD)], future))
        return future

    def withdraw(self, plan: Plan, entry: str, reply: asyncio.Future[Any]) -> None:
        """Undoes an admission made by `start_admission` whose request will not be sent: at once if its reply is
        in and admitted it, else when the reply arrives (the cancelled future tells `_answered`)."""
        if not reply.cancel() and reply.exception() is None and _admitted(reply.result()):
            self.cancel(plan, entry)

    def cancel(self, plan: Plan, entry: str) -> None:
        """Undoes an admission whose request was never sent: it no longer counts against any limit. Queued
        like a settlement; call it only once the admission's reply is in (else it could overtake it)."""
        if self.up:
            self._submit(_Call(self._wires(plan).admit, _CANCEL, [self._entry(entry, 0, _NO_USD)], None))

    def settle(self, plan: Plan, entry: str, token_delta: int, usd: float) -> None:
        """Queued, not awaited: the response is already on its way. Lost if Redis is down (leases expire)."""
        if self.up:
            usd_bulk = _bulk(repr(usd).encode())
            self._submit(_Call(self._wires(plan).settle, _SETTLE, [self._entry(entry, token_delta, usd_bulk)], None))

    def _submit(self, call: _Call) -> None:
        idle = not self._pending and (self._pipe is None or not self._pipe.waiting)
        self._pending.append(call)
        if call.future is not None:
            if idle:
                self._kick()
            else:
                self._kick_soon()
        elif self._kick_timer is None and not self._kick_scheduled:
            # Nobody waits for a settlement: it rides along with the next admission, or goes on its own soon.
            self._kick_timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._kick)

    def _kick_soon(self) -> None:
        if not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        """Sends what is pending, as pipelines, while fewer than the most allowed are in flight; the rest waits."""
        self._kick_scheduled = False
        if self._kick_timer is not None:
            self._kick_timer.cancel()
            self._kick_timer = None
        pipe = self._pipe
        if pipe is None:
            if not self.up:  # (while a lost connection is being replaced, calls wait for the new one)
                pending, self._pending = self._pending, []
                _fail(pending, LimitsUnavailable(self.where))
            return
        while self._pending and pipe.waiting < self._max_in_flight:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._send(pipe, _merge_settlements(batch), _EVALSHA)

    def _send(self, pipe: RedisPipe, batch: list[_Call], script: bytes) -> None:
        pipe.send([call.encode(script) for call in batch], lambda replies: self._answered(pipe, batch, replies))

    def _answered(self, pipe: RedisPipe, batch: list[_Call], replies: Replies | Exception) -> None:
        """A pipeline's replies are in (or lost): hand them out, then send what waited for room."""
        if isinstance(replies, Exception):
            if pipe is self._pipe:
                self._went_down(_reason(replies))
            _fail(batch, LimitsUnavailable(self.where))
            return
        unknown = [call for call, reply in zip(batch, replies) if _no_script(reply)]
        if unknown:  # Redis restarted and lost its script cache: EVAL caches it again
            self._send(pipe, unknown, _EVAL)
        for call, reply in zip(batch, replies):
            if isinstance(reply, ReplyError):
                if _no_script(reply):
                    continue
                # The script itself failed (a bug, or Redis out of memory).
                if pipe is self._pipe:
                    self._went_down(f"script error: {reply}")
                reply = LimitsUnavailable(self.where)
            future = call.future
            if future is None:
                continue
            if future.cancelled():  # nobody waits for this admission any more: undo it if it was admitted
                if isinstance(reply, list) and _admitted(reply):
                    self._submit(_Call(call.wire, _CANCEL, call.entries, None))
            else:
                _resolve(future, reply)
        if any(call.future is not None for call in self._pending):
            self._kick_soon()
        elif self._pending and self._kick_timer is None:
            self._kick_timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._kick)


async def _ask(pipe: RedisPipe, commands: list[bytes]) -> Replies:
    """The replies to `commands`, awaited (start-up and shutdown; calls use callbacks)."""
    answer: asyncio.Future[Replies] = asyncio.get_running_loop().create_future()

    pipe.send(commands, lambda replies: _resolve(answer, replies))
    return await answer


def _no_script(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")


def verdict(reply: list[int]) -> Verdict:
    """An admission's reply (limits.lua) as a Verdict."""
    return Verdict(_admitted(reply), reply[1] - 1, *reply[2:])


def _admitted(reply: list[int]) -> bool:
    return reply[0] == 1


def _reason(error: Exception) -> str:
    return type(error).__name__ + (f": {error}" if str(error) else "")


def _fail(calls: list[_Call], error: Exception) -> None:
    for call in calls:
        if call.future is not None:
            _resolve(call.future, error)


def _resolve(future: asyncio.Future[Any], outcome: Any) -> None:
    """Gives a waiting future its reply, or the error in its place (an exception is never a reply)."""
    if not future.done():
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
