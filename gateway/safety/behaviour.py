"""Per-key behaviour: traffic against the key's own baseline, strikes for violations, optional bans.

Each key keeps, per minute, its request and token counts and an exponentially weighted baseline of
past minutes. A minute well above the baseline is flagged. Violations found by the detectors add
strikes that expire after a TTL; with `ban_after` set, that many live strikes suspend the key for
`ban_s`. State lives in Redis when `state.redis_url` is set (one script call per request, shared by
every replica), in process memory otherwise; a Redis failure falls back to memory for that call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import StateConfig
from gateway.safety.schema import Behaviour

log = logging.getLogger("switchyard.safety")

ALPHA = 0.3  # weight of the latest finished minute in the baseline
WARM_MINUTES = 3  # minutes of history before a baseline is trusted

_OBSERVE = """
local h, now, tokens, alpha = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', h, 'm', 'c', 't', 'bc', 'bt', 'n')
local m, c, t = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
local bc, bt, n = tonumber(v[4]) or 0, tonumber(v[5]) or 0, tonumber(v[6]) or 0
if m ~= now then
  if m then
    local idle = math.min(now - m - 1, 60)
    bc = alpha * c + (1 - alpha) * bc
    bt = alpha * t + (1 - alpha) * bt
    if idle > 0 then bc = bc * (1 - alpha) ^ idle; bt = bt * (1 - alpha) ^ idle end
    n = n + 1
  end
  c, t = 0, 0
end
c, t = c + 1, t + tokens
redis.call('HSET', h, 'm', now, 'c', c, 't', t, 'bc', tostring(bc), 'bt', tostring(bt), 'n', n)
redis.call('EXPIRE', h, 7200)
return {c, t, tostring(bc), tostring(bt), n, redis.call('PTTL', KEYS[2])}
"""

_STRIKE = """
local z, now, ttl, ban_after, ban_ms = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', z, '-inf', now - ttl)
redis.call('ZADD', z, now, ARGV[5])
redis.call('PEXPIRE', z, ttl)
local count = redis.call('ZCARD', z)
if ban_after > 0 and count >= ban_after then
  redis.call('SET', KEYS[2], '1', 'PX', ban_ms)
  redis.call('DEL', z)
  return {count, 1}
end
return {count, 0}
"""


@dataclass(slots=True)
class Minute:
    requests: int
    tokens: int
    baseline_requests: float
    baseline_tokens: float
    history: int  # finished minutes behind the baseline
    banned_ms: int  # > 0: the key is suspended for this much longer


@dataclass(slots=True)
class _KeyState:
    minute: int = -1
    requests: int = 0
    tokens: int = 0
    baseline_requests: float = 0.0
    baseline_tokens: float = 0.0
    history: int = 0
    strikes: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0


class BehaviourBook:
    """Per-process handle on behaviour state: memory, or Redis when configured. Built once at start."""

    def __init__(self, state: StateConfig, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._redis = None
        self._timeout = state.redis_timeout_s
        self._failing = False
        if state.redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(
                state.redis_url, socket_timeout=state.redis_timeout_s, socket_connect_timeout=state.redis_timeout_s
            )
            self._observe = self._redis.register_script(_OBSERVE)
            self._strike = self._redis.register_script(_STRIKE)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def observe(self, key: str, tokens: int) -> Minute:
        now = self._clock()
        if self._redis is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    c, t, bc, bt, n, ban = await self._observe(
                        keys=[f"switchyard:safety:{key}", f"switchyard:safety:{key}:ban"], args=[int(now // 60), tokens, ALPHA]
                    )
                self._recovered()
                return Minute(int(c), int(t), float(bc), float(bt), int(n), max(int(ban), 0))
            except Exception as exc:  # noqa: BLE001 - any Redis trouble: this call uses memory
                self._failed(exc)
        return self._observe_memory(key, tokens, now)

    async def strike(self, key: str, spec: Behaviour) -> bool:
        """Counts a violation; True when it suspends the key."""
        now = self._clock()
        if self._redis is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    _, banned = await self._strike(
                        keys=[f"switchyard:safety:{key}:strikes", f"switchyard:safety:{key}:ban"],
                        args=[int(now * 1000), int(spec.strike_ttl_s * 1000), spec.ban_after or 0, int(spec.ban_s * 1000), f"{now:.6f}:{os.urandom(4).hex()}"],
                    )
                self._recovered()
                return bool(banned)
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
        return self._strike_memory(key, spec, now)

    def _observe_memory(self, key: str, tokens: int, now: float) -> Minute:
        state = self._keys.setdefault(key, _KeyState())
        minute = int(now // 60)
        if minute != state.minute:
            if state.minute >= 0:
                decay = (1 - ALPHA) ** min(minute - state.minute - 1, 60)
                state.baseline_requests = (ALPHA * state.requests + (1 - ALPHA) * state.baseline_requests) * decay
                state.baseline_tokens = (ALPHA * state.tokens + (1 - ALPHA) * state.baseline_tokens) * decay
                state.history += 1
            state.minute, state.requests, state.tokens = minute, 0, 0
        state.requests += 1
        state.tokens += tokens
        banned_ms = max(0, int((state.banned_until - now) * 1000))
        return Minute(state.requests, state.tokens, state.baseline_requests, state.baseline_tokens, state.history, banned_ms)

    def _strike_memory(self, key: str, spec: Behaviour, now: float) -> bool:
        state = self._keys.setdefault(key, _KeyState())
        strikes = state.strikes
        while strikes and strikes[0] <= now - spec.strike_ttl_s:
            strikes.popleft()
        strikes.append(now)
        if spec.ban_after is not None and len(strikes) >= spec.ban_after:
            state.banned_until = now + spec.ban_s
            strikes.clear()
            return True
        return False

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("safety behaviour state: Redis unavailable (%s); using process memory", type(exc).__name__)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            log.info("safety behaviour state: Redis is back")
        self._failing = False


def unusual(minute: Minute, spec: Behaviour) -> bool:
    """A minute well above the key's own baseline (once there is one)."""
    if minute.history < WARM_MINUTES:
        return False
    requests = minute.requests >= spec.min_requests_per_minute and minute.requests > spec.rate_factor * minute.baseline_requests
    tokens = minute.tokens >= spec.min_requests_per_minute * 100 and minute.tokens > spec.rate_factor * minute.baseline_tokens
    return requests or tokens
