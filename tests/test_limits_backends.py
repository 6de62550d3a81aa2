"""The limit algorithm, in process memory and in Redis (the real server, the real Lua script), with an injected clock.

Both backends run every test: they must implement the same semantics, edge for edge.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import AsyncIterator, Callable

import pytest

from fakes import async_wait_until
from gateway.config import Limits, StateConfig
from gateway.limit import limit_specs
from gateway.limits_base import Kind, LimitsUnavailable, Plan, Verdict, period_end_ms, period_of
from gateway.limits_memory import MemoryLimits
from gateway.limits_redis import RedisLimits

LEASE_MS = 30_000
T0 = 1_700_000_000_000  # ms: 2023-11-14T22:13:20Z


def ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO UTC time."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


class Clock:
    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


def plan(tenant: str = "acme", scope: str = "t", **limits: float) -> Plan:
    return Plan(limit_specs(Limits(**limits), tenant, scope, f"tenant {tenant!r}", LEASE_MS))


class Harness:
    """One backend on the test's clock; settle() is awaited until it has landed, so tests read in order."""

    def __init__(self, backend: MemoryLimits | RedisLimits, clock: Clock) -> None:
        self.backend = backend
        self.clock = clock

    async def admit(self, plan: Plan, entry: str, tokens: int = 0, at: int | None = None) -> Verdict:
        if at is not None:
            self.clock.now_ms = at
        return await self.backend.admit(plan, entry, tokens)

    async def settle(self, plan: Plan, entry: str, tokens: int = 0, usd: float = 0.0, at: int | None = None) -> None:
        if at is not None:
            self.clock.now_ms = at
        self.backend.settle(plan, entry, tokens, usd)
        if isinstance(self.backend, RedisLimits):
            await self.backend.admit(Plan(()), "probe", 0)  # queued behind the settlement: it has run when this returns


@pytest.fixture(params=["memory", "redis"])
async def make_harness(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., object]]:
    started: list[RedisLimits] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    async def make(clock: Clock | None = None) -> Harness:
        clock = clock or Clock()
        if url is None:
            return Harness(MemoryLimits(clock), clock)
        backend = RedisLimits(StateConfig(redis_url=url), clock)
        await backend.start()
        assert backend.up
        started.append(backend)
        return Harness(backend, clock)

    yield make
    for backend in started:
        await backend.close()


async def test_requests_per_minute_is_exact_at_the_window_edge(make_harness):
    limits = await make_harness()
    rpm = plan(requests_per_minute=3)
    for i, at in enumerate((T0, T0 + 10_000, T0 + 20_000)):
        assert (await limits.admit(rpm, f"r{i}", at=at)).admitted
    refused = await limits.admit(rpm, "late", at=T0 + 59_999)
    assert not refused.admitted and refused.failed == 0
    assert refused.retry_ms == 1, "the first request leaves the window 1 ms later"
    assert (refused.requests_limit, refused.requests_remaining) == (3, 0)
    edge = await limits.admit(rpm, "edge", at=T0 + 60_000)
    assert edge.admitted, "a request 60 s old no longer counts"
    again = await limits.admit(rpm, "again", at=T0 + 60_000)
    assert not again.admitted and again.retry_ms == 10_000


async def test_a_refused_request_counts_against_no_limit(make_harness):
    limits = await make_harness()
    tenant = plan(requests_per_minute=10)
    tenant_and_key = Plan(tenant.limits + plan(scope="k:abc", requests_per_minute=1).limits)
    assert (await limits.admit(tenant_and_key, "a", at=T0)).admitted
    for i in range(5):
        refused = await limits.admit(tenant_and_key, f"x{i}", at=T0 + 1)
        assert not refused.admitted and refused.failed == 1, "the key's limit refuses"
    verdict = await limits.admit(tenant, "b", at=T0 + 2)
    assert verdict.admitted and verdict.requests_remaining == 8, "only the admitted requests count for the tenant"


async def test_headers_report_the_tightest_limit_of_each_kind(make_harness):
    limits = await make_harness()
    both = Plan(plan(requests_per_minute=100, tokens_per_minute=1000).limits + plan(scope="r:x", requests_per_minute=5).limits)
    verdict = await limits.admit(both, "a", tokens=30, at=T0)
    assert (verdict.requests_limit, verdict.requests_remaining, verdict.requests_reset_ms) == (5, 4, 60_000)
    assert (verdict.tokens_limit, verdict.tokens_remaining) == (1000, 970)
    later = await limits.admit(both, "b", tokens=30, at=T0 + 15_000)
    assert later.requests_reset_ms == 45_000, "reset: when the oldest counted request leaves the window"
    none = await limits.admit(plan(concurrent_requests=5), "c", at=T0)
    assert none.requests_limit == -1 and none.tokens_limit == -1


async def test_tokens_are_weighted_then_corrected_by_the_actual_usage(make_harness):
    limits = await make_harness()
    tpm = plan(tokens_per_minute=100)
    assert (await limits.admit(tpm, "a", tokens=40, at=T0)).admitted
    assert (await limits.admit(tpm, "b", tokens=50, at=T0 + 1_000)).admitted
    refused = await limits.admit(tpm, "c", tokens=20, at=T0 + 2_000)
    assert not refused.admitted and refused.tokens_remaining == 10
    assert refused.retry_ms == 58_000, "the 40 tokens of 'a' leave at T0 + 60 s, enough for 20 more"
    await limits.settle(tpm, "a", tokens=30, at=T0 + 3_000)  # 'a' really used 70 tokens
    refused = await limits.admit(tpm, "d", tokens=1, at=T0 + 4_000)
    assert not refused.admitted and refused.tokens_remaining == 0
    await limits.settle(tpm, "b", tokens=-45, at=T0 + 5_000)  # 'b' used 5 of its estimated 50
    verdict = await limits.admit(tpm, "e", tokens=25, at=T0 + 6_000)
    assert verdict.admitted and verdict.tokens_remaining == 0, "70 + 5 + 25 = 100"
    verdict = await limits.admit(tpm, "f", tokens=70, at=T0 + 60_000)
    assert verdict.admitted and verdict.tokens_remaining == 0, "'a' has left: 5 + 25 + 70"


async def test_usage_reported_after_its_estimate_left_the_window_counts_from_then(make_harness):
    limits = await make_harness()
    tpm = plan(tokens_per_minute=100)
    assert (await limits.admit(tpm, "long", tokens=10, at=T0)).admitted
    await limits.settle(tpm, "long", tokens=80, at=T0 + 90_000)  # a 90-second stream ends
    verdict = await limits.admit(tpm, "next", tokens=21, at=T0 + 90_001)
    assert not verdict.admitted and verdict.retry_ms == 59_999, "the 80 late tokens count from T0 + 90 s"
    assert (await limits.admit(tpm, "next", tokens=21, at=T0 + 150_000)).admitted


async def test_a_request_larger_than_the_token_limit_is_never_admitted(make_harness):
    limits = await make_harness()
    verdict = await limits.admit(plan(tokens_per_minute=100, requests_per_minute=10), "big", tokens=101, at=T0)
    assert not verdict.admitted and verdict.retry_ms == -1 and verdict.failed == 1


async def test_concurrency_slots_are_released_and_expire_with_their_lease(make_harness):
    limits = await make_harness()
    two = plan(concurrent_requests=2)
    assert (await limits.admit(two, "a", at=T0)).admitted
    assert (await limits.admit(two, "b", at=T0 + 1)).admitted
    refused = await limits.admit(two, "c", at=T0 + 2)
    assert not refused.admitted and refused.retry_ms > 0
    await limits.settle(two, "a", at=T0 + 3)
    assert (await limits.admit(two, "c", at=T0 + 4)).admitted
    assert not (await limits.admit(two, "d", at=T0 + 5)).admitted
    # 'b' and 'c' were never released (their gateway died): their leases run out
    assert (await limits.admit(two, "e", at=T0 + 1 + LEASE_MS)).admitted, "'b' expired"
    assert not (await limits.admit(two, "f", at=T0 + 1 + LEASE_MS)).admitted


async def test_daily_budget_admits_while_below_and_resets_at_utc_midnight(make_harness):
    limits = await make_harness()
    budget = plan(usd_per_day=1.0)
    evening = ms("2024-03-09T23:00:00")
    assert (await limits.admit(budget, "a", at=evening)).admitted
    await limits.settle(budget, "a", usd=0.6)
    assert (await limits.admit(budget, "b", at=evening + 1)).admitted, "0.60 spent: still below 1.00"
    await limits.settle(budget, "b", usd=0.5)
    refused = await limits.admit(budget, "c", at=ms("2024-03-09T23:59:59.999"))
    assert not refused.admitted and refused.retry_ms == 1
    assert (await limits.admit(budget, "d", at=ms("2024-03-10T00:00:00"))).admitted


@pytest.mark.parametrize(
    ("spent_at", "next_period"),
    [("2024-02-29T12:00:00", "2024-03-01"), ("2023-12-31T23:59:58", "2024-01-01"), ("2100-02-28T00:00:00", "2100-03-01")],
)
async def test_monthly_budget_resets_on_the_first_of_the_month(make_harness, spent_at, next_period):
    limits = await make_harness()
    budget = plan(usd_per_month=10)
    assert (await limits.admit(budget, "a", at=ms(spent_at))).admitted
    await limits.settle(budget, "a", usd=10.0)
    refused = await limits.admit(budget, "b", at=ms(spent_at) + 1000)
    assert not refused.admitted and refused.retry_ms == ms(next_period + "T00:00:00") - ms(spent_at) - 1000
    assert (await limits.admit(budget, "c", at=ms(next_period + "T00:00:00"))).admitted


STEPS_MS = (0, 0, 1, 1, 250, 500, 1_000, 3_000, 7_000, 20_000)


async def test_memory_and_redis_agree_on_random_traffic(redis_url):
    # Every kind of limit refuses some of these requests (checked when the test was written).
    clock = Clock(ms("2024-01-30T23:58:00"))
    memory = MemoryLimits(clock)
    shared = RedisLimits(StateConfig(redis_url=redis_url), clock)
    await shared.start()
    plans = [
        plan(requests_per_minute=7, tokens_per_minute=300, concurrent_requests=4),
        Plan(plan(usd_per_day=6, usd_per_month=15).limits + plan(scope="k:1", requests_per_minute=3, tokens_per_minute=120).limits),
        plan(tenant="other", tokens_per_minute=50, usd_per_day=1),
    ]
    rng = random.Random(7)
    admitted: list[tuple[Plan, str]] = []
    try:
        for i in range(1500):
            days_later = rng.random() < 0.03  # crosses UTC days and months
            clock.now_ms += 86_400_000 * rng.randint(1, 12) if days_later else rng.choice(STEPS_MS)
            if admitted and rng.random() < 0.4:
                which, entry = admitted.pop(rng.randrange(len(admitted)))
                delta, usd = rng.randint(-20, 60), rng.choice((0.0, 0.25, 1.5))
                memory.settle(which, entry, delta, usd)
                shared.settle(which, entry, delta, usd)
                continue
            which = rng.choice(plans)
            tokens = rng.randint(1, 55)
            expected = memory.admit_now(which, f"e{i}", tokens)
            assert await shared.admit(which, f"e{i}", tokens) == expected, f"step {i}"
            if expected.admitted:
                admitted.append((which, f"e{i}"))
    finally:
        await shared.close()


async def test_the_last_slot_goes_to_exactly_one_of_many_concurrent_requests(redis_url):
    # Two backends on their own connections play two replicas; Redis's own clock decides.
    replicas = [RedisLimits(StateConfig(redis_url=redis_url)) for _ in range(2)]
    for replica in replicas:
        await replica.start()
    rpm = plan(requests_per_minute=25)
    try:
        for i in range(24):
            assert (await replicas[i % 2].admit(rpm, f"warm{i}", 0)).admitted
        verdicts = await asyncio.gather(*(replicas[i % 2].admit(rpm, f"race{i}", 0) for i in range(60)))
    finally:
        for replica in replicas:
            await replica.close()
    assert sum(v.admitted for v in verdicts) == 1


async def test_the_last_slot_in_memory_goes_to_exactly_one():
    limits = MemoryLimits()
    slots = plan(concurrent_requests=3)
    verdicts = await asyncio.gather(*(limits.admit(slots, f"r{i}", 0) for i in range(50)))
    assert sum(v.admitted for v in verdicts) == 3


async def test_redis_outage_fails_fast_and_redis_is_used_again_once_back(redis_server, redis_url):
    state = StateConfig(redis_url=redis_url, redis_timeout_s=0.2, redis_retry_s=0.1)
    shared = RedisLimits(state)
    await shared.start()
    rpm = plan(requests_per_minute=100)
    try:
        assert (await shared.admit(rpm, "before", 0)).admitted
        redis_server.kill()
        began = time.monotonic()
        for i in range(20):  # the first call finds Redis gone; the others do not even try
            with pytest.raises(LimitsUnavailable):
                await shared.admit(rpm, f"down{i}", 0)
        assert time.monotonic() - began < 1.0, "an outage must not make each call wait for a timeout"
        assert not shared.up
        redis_server.start()
        await async_wait_until(lambda: shared.up, timeout=5, message="reconnected")
        verdict = await shared.admit(rpm, "after", 0)
        assert verdict.admitted and verdict.requests_remaining == 99, "a restarted Redis starts empty"
    finally:
        await shared.close()


async def test_a_redis_that_stops_answering_is_given_up_on_at_the_timeout(redis_url, redis_client):
    # Connected but silent (overloaded, or a network that drops packets): nothing ever fails on the socket, so only the
    # timeout can end the wait. Every call waiting then fails together, and Redis is tried again once it answers.
    shared = RedisLimits(StateConfig(redis_url=redis_url, redis_timeout_s=0.2, redis_retry_s=0.1))
    await shared.start()
    rpm = plan(requests_per_minute=100)
    redis_client.client_pause(3_000, all=False)
    try:
        waiting = await asyncio.gather(*(shared.admit(rpm, f"r{i}", 0) for i in range(5)), return_exceptions=True)
        assert all(isinstance(outcome, LimitsUnavailable) for outcome in waiting)
        assert not shared.up and shared.outages == 1
    finally:
        redis_client.client_unpause()
    try:
        await async_wait_until(lambda: shared.up, timeout=5, message="reconnected")
        assert (await shared.admit(rpm, "after", 0)).admitted
    finally:
        await shared.close()


async def test_calls_waiting_for_room_fail_with_the_calls_in_flight(redis_url, redis_client):
    # One pipeline in flight at most: the second call waits to be sent. When the first finds Redis silent, the
    # waiting one must fail with it rather than wait for a call that never comes.
    state = StateConfig(redis_url=redis_url, redis_timeout_s=0.2, redis_retry_s=0.1, redis_max_pipelines=1)
    shared = RedisLimits(state)
    await shared.start()
    rpm = plan(requests_per_minute=100)
    redis_client.client_pause(3_000, all=False)
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(shared.admit(rpm, "first", 0), shared.admit(rpm, "second", 0), return_exceptions=True), 5
        )
        assert all(isinstance(outcome, LimitsUnavailable) for outcome in outcomes), outcomes
    finally:
        redis_client.client_unpause()
        await shared.close()


async def test_a_connection_redis_closes_while_idle_is_replaced_without_an_outage(shared_limits, redis_client, caplog):
    # Redis's `timeout` setting (and proxies, and managed Redis services) close idle clients. That is no outage:
    # a new connection is opened at once, and the next call goes through on it.
    shared, client = shared_limits, redis_client
    rpm = plan(requests_per_minute=100)
    changes: list[bool] = []
    shared.on_change = changes.append
    assert (await shared.admit(rpm, "before", 0)).admitted
    (first,) = [c["id"] for c in client.client_list() if c["name"] == "switchyard"]
    client.config_set("timeout", 1)  # seconds idle before Redis closes a client
    try:
        await async_wait_until(
            lambda: [c["id"] for c in client.client_list() if c["name"] == "switchyard"] not in ([], [first]),
            timeout=10, message="Redis to close the idle connection and the limits to open another",
        )
    finally:
        client.config_set("timeout", 0)
    verdict = await shared.admit(rpm, "after", 0)
    assert verdict.admitted and verdict.requests_remaining == 98
    assert shared.outages == 0 and changes == [] and shared.up
    assert "unavailable" not in caplog.text


async def test_an_outage_fails_the_calls_in_flight_and_drops_their_connection(shared_limits, redis_client):
    # When one call finds Redis gone, the connection is given up: the calls still waiting on it fail at once instead
    # of each waiting out its timeout, and it is never used again (a restarted Redis has closed it: a call sent on it
    # after the recovery would fail and declare a second outage).
    shared, client = shared_limits, redis_client
    rpm = plan(requests_per_minute=100)
    client.client_pause(10_000, all=False)  # Redis holds writes (scripts included) until unpaused
    try:
        in_flight = shared.start_admission(rpm, "in flight", 0)  # written at once: nothing else is pending
        shared._went_down("another call failed")
        assert in_flight.done(), "a call waiting on the dropped connection fails at once"
        with pytest.raises(LimitsUnavailable):
            in_flight.result()
    finally:
        client.client_unpause()
    await async_wait_until(lambda: shared.up, timeout=5, message="reconnected")
    assert (await shared.admit(rpm, "after", 0)).admitted
    names = [c["name"] for c in client.client_list()]
    assert names.count("switchyard") == 1, "the dropped connection is closed, only the new one is open"
    assert shared.outages == 1


async def test_settlements_of_one_plan_share_one_call(shared_limits, redis_client):
    shared, client = shared_limits, redis_client
    busy = plan(tokens_per_minute=1000, concurrent_requests=20)
    assert all(v.admitted for v in await asyncio.gather(*(shared.admit(busy, f"r{i}", 10) for i in range(10))))
    client.config_resetstat()
    for i in range(10):
        shared.settle(busy, f"r{i}", 5, 0.0)  # each used 15 tokens, not 10, and is over
    verdict = await shared.admit(busy, "next", 10)
    assert verdict.tokens_remaining == 1000 - 10 * 15 - 10
    assert client.zcard("sy:{acme}:t:conc") == 1, "all ten slots were released"
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] == 2, "ten settlements in one call, then the admission"


async def test_a_lost_script_cache_falls_back_to_eval(shared_limits, redis_client):
    shared, client = shared_limits, redis_client
    rpm = plan(requests_per_minute=5)
    assert (await shared.admit(rpm, "a", 0)).admitted
    client.script_flush()
    client.config_resetstat()
    verdicts = await asyncio.gather(*(shared.admit(rpm, f"b{i}", 0) for i in range(3)))
    # The first goes out at once, the other two together; their EVALs may land in either order.
    assert sorted(v.requests_remaining for v in verdicts) == [1, 2, 3]
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["failed_calls"] + stats["cmdstat_evalsha"].get("rejected_calls", 0) >= 1
    assert stats["cmdstat_eval"]["calls"] >= 1
    assert (await shared.admit(rpm, "c", 0)).requests_remaining == 0
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] >= 4, "EVAL cached it again"


def test_budget_periods_follow_the_utc_calendar():
    assert period_of(Kind.USD_DAY, ms("1970-01-02T00:00:00")) == 1
    march = period_of(Kind.USD_MONTH, ms("2024-03-15T10:00:00"))
    assert march == 2024 * 12 + 2
    assert period_end_ms(Kind.USD_MONTH, march) == ms("2024-04-01T00:00:00")
    assert period_end_ms(Kind.USD_MONTH, period_of(Kind.USD_MONTH, ms("2024-12-31T23:59:59"))) == ms("2025-01-01T00:00:00")
