"""Faults under steady load: 16 × FAULTS_SCALE concurrent clients, JSON and streams mixed, while things break.

What the single-fault tests already prove is not repeated here: fallback and error statuses one request at a time
(test_routing_e2e.py), Redis killed and restarted under load (test_limits_outage_e2e.py), reloads under load
(test_reload_e2e.py), SIGTERM with streams in flight (test_drain_e2e.py). This suite adds concurrency and the
mix: every upstream fault the fakes inject, under load, with and without a fallback; upstream faults, policy
reloads and a Redis outage all at once; SIGTERM in the middle of a steady load. Each phase's expectation is exact.

`make faults` runs it at FAULTS_SCALE=4; docs/robustness.md lists what each test proves.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable

import httpx
import pytest
import yaml

from fakes import async_wait_until, reply_text
from fakes.faults import STREAM_ONLY_KINDS
from fakes.keys import make_key
from fakes.load import MixedLoad, Outcome

SCALE = int(os.environ.get("FAULTS_SCALE", "1"))
CLIENTS = 16 * SCALE
PER_PHASE = 2 * CLIENTS  # answers each phase waits for
ATTEMPT_TIMEOUT_S = 0.5
# The targets' timeout_s in the fault suites: for a stream, the longest silence between bytes once it has begun.
SILENCE_S = 1.0
# Longest any answer may take: the attempt timeout, the fallback's own reply, and a busy shared machine.
SLOWEST_S = ATTEMPT_TIMEOUT_S + 3.5

KEY, KEY_HASH = make_key("acme")
ADMIN_KEY, ADMIN_HASH = make_key("admin")

# Every fault the fakes inject (tests/fakes/faults.py), plus a refused connection (the upstream stopped).
FAULTS: dict[str, tuple[str, dict]] = {
    "500": ("status", {"status": 500}),
    "502": ("status", {"status": 502}),
    "503": ("status", {"status": 503}),
    "429 with Retry-After": ("status", {"status": 429, "headers": {"Retry-After": "7"}}),
    "hang": ("hang", {}),
    "reply past the attempt timeout": ("delay", {"seconds": 3}),
    "connection reset": ("reset", {}),
    "invalid JSON": ("bad_json", {}),
    "stream cut before its first event": ("stream_reset", {"after_chunks": 0}),
    "stream cut after two events": ("stream_reset", {"after_chunks": 2}),
    "stream ended cleanly before any event": ("stream_truncated", {"after_chunks": 0}),
    "stream ended cleanly after two events, no [DONE]": ("stream_truncated", {"after_chunks": 2}),
    "stream slower than the attempt timeout": ("slow_stream", {"chunk_delay": 3}),
    "stream silent mid-way past the target's timeout": ("stream_stall", {"after_chunks": 2, "seconds": 3}),
    "slow stream within the timeouts": ("slow_stream", {"chunk_delay": 0.05}),
    "connection refused": ("refused", {}),
}


def signature(outcome: Outcome) -> tuple:
    """What a test asserts of an answer: kind, status, error code, who served it, whole or not, any failure."""
    return outcome.kind, outcome.status, outcome.code, outcome.served_by, outcome.whole, outcome.failure


def summary(outcomes: Iterable[Outcome]) -> Counter[tuple]:
    return Counter(signature(outcome) for outcome in outcomes)


def gateway_config(targets: dict, **extra) -> dict:
    return {"targets": targets, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["chat"]}}, **extra}


def openai_target(upstream, **extra) -> dict:
    return {"adapter": "openai", "base_url": upstream.base_url, "model": f"{upstream.name}-model", **extra}


def chat_policy(send: list[str], fallback: list[str] | None = None, **route) -> dict:
    # The breaker would turn every fault into circuit_open after a few failures; these tests want each fault's own
    # answer, so it never opens here (test_routing_e2e.py covers it).
    never = {"consecutive_failures": 10**9, "min_requests": 10**9}
    return {
        "version": 1,
        "circuit_breaker": never,
        "routes": [{"name": "chat", "when": {"model": "chat"}, "send": send, "fallback": fallback or [],
                    "attempt_timeout_s": ATTEMPT_TIMEOUT_S, **route}],
    }


async def under_fault(load: MixedLoad, upstream, name: str) -> list[Outcome]:
    """The outcomes of one phase during which `upstream` suffers fault `name`, set before it and cleared after."""
    kind, params = FAULTS[name]
    if kind == "refused":
        await asyncio.to_thread(upstream.stop)
    else:
        upstream.set_fault(kind, **params)
    outcomes = await load.run_phase(name, PER_PHASE)
    if kind == "refused":
        await asyncio.to_thread(upstream.start)
    else:
        upstream.clear_fault()
    return outcomes


def assert_sane(outcomes: list[Outcome]) -> None:
    """What holds for every answer, whatever broke: no 500 from the gateway, errors OpenAI-shaped, nothing hangs."""
    assert not [o for o in outcomes if o.status == 500], summary(outcomes)
    assert all(o.error_shape for o in outcomes), summary(o for o in outcomes if not o.error_shape)
    slow = [o for o in outcomes if o.seconds > SLOWEST_S]
    assert not slow, f"answers slower than {SLOWEST_S} s: {summary(slow)}"


# ----- 1. every upstream fault, under load --------------------------------------------------------------------


# Stream faults after the first event has gone to the client: no fallback can take over any more. Each ends the
# stream with an error event, of this code.
CUT_AFTER_FIRST_BYTE = {
    "stream cut after two events": "upstream_error",
    "stream ended cleanly after two events, no [DONE]": "upstream_error",
    "stream silent mid-way past the target's timeout": "upstream_timeout",
}


def expected_with_fallback(name: str, count: Counter[str]) -> Counter[tuple]:
    """Zero client errors: the backup answers whatever the primary does, except for what cannot be undone."""
    json_by = "primary" if FAULTS[name][0] in STREAM_ONLY_KINDS else "backup"  # stream faults spare JSON
    stream_by = "primary" if name in CUT_AFTER_FIRST_BYTE or name == "slow stream within the timeouts" else "backup"
    expected = Counter({("json", 200, None, json_by, True, None): count["json"]})
    if name in CUT_AFTER_FIRST_BYTE:
        # After its first byte a stream cannot move to another target: it ends with an error event (README).
        expected[("stream", 200, CUT_AFTER_FIRST_BYTE[name], "primary", False, None)] = count["stream"]
    else:
        expected[("stream", 200, None, stream_by, True, None)] = count["stream"]
    return expected


async def test_every_upstream_fault_under_load_with_a_healthy_fallback(make_openai_upstream, start_gateway):
    primary, backup = make_openai_upstream("primary"), make_openai_upstream("backup")
    gateway = start_gateway(
        gateway_config({"primary": openai_target(primary, timeout_s=SILENCE_S), "backup": openai_target(backup)}),
        policies={"policy.yaml": chat_policy(["primary"], ["backup"])},
    )
    async with MixedLoad(gateway.base_url, KEY, "chat", clients=CLIENTS) as load:
        healthy = await load.run_phase("healthy", PER_PHASE)
        results = {name: await under_fault(load, primary, name) for name in FAULTS}
    kinds = lambda outcomes: Counter(o.kind for o in outcomes)  # noqa: E731
    assert summary(healthy) == Counter({(k, 200, None, "primary", True, None): n for k, n in kinds(healthy).items()})
    for name, outcomes in results.items():
        assert summary(outcomes) == expected_with_fallback(name, kinds(outcomes)), name
        assert all(o.text == reply_text(o.served_by, f"{o.served_by}-model", o.prompt) for o in outcomes if o.ok), name
    assert_sane(load.outcomes)
    assert "Traceback" not in gateway.log_text()


def expected_without_fallback(name: str, count: Counter[str]) -> Counter[tuple]:
    """Each fault's documented answer (README "Errors"), for JSON and for streams."""
    ok = lambda kind: (kind, 200, None, "primary", True, None)  # noqa: E731
    error = {
        "500": (502, "upstream_error"),
        "502": (502, "upstream_error"),
        "503": (503, "service_unavailable"),
        "429 with Retry-After": (429, "rate_limit_exceeded"),
        "hang": (504, "upstream_timeout"),
        "reply past the attempt timeout": (504, "upstream_timeout"),
        "connection reset": (502, "upstream_unavailable"),
        "invalid JSON": (502, "upstream_error"),
        "stream cut before its first event": (502, "upstream_error"),
        "stream ended cleanly before any event": (502, "upstream_error"),
        "stream slower than the attempt timeout": (504, "upstream_timeout"),
        "connection refused": (502, "upstream_unavailable"),
    }
    expected: Counter[tuple] = Counter()
    for kind in ("json", "stream"):
        if name == "slow stream within the timeouts" or (kind == "json" and FAULTS[name][0] in STREAM_ONLY_KINDS):
            expected[ok(kind)] = count[kind]
        elif kind == "stream" and name in CUT_AFTER_FIRST_BYTE:
            expected[("stream", 200, CUT_AFTER_FIRST_BYTE[name], "primary", False, None)] = count[kind]
        else:
            status, code = error[name]
            expected[(kind, status, code, "primary", False, None)] = count[kind]
    return +expected


@pytest.mark.parametrize("workers", [1, 2])
async def test_every_upstream_fault_under_load_without_a_fallback(workers, openai_upstream, start_gateway):
    # With two worker processes each has its own upstream pools and attempt state: the answers must not change.
    gateway = start_gateway(
        gateway_config({"primary": openai_target(openai_upstream, timeout_s=SILENCE_S)}),
        policies={"policy.yaml": chat_policy(["primary"])},
        args=["--workers", str(workers)],
    )
    async with MixedLoad(gateway.base_url, KEY, "chat", clients=CLIENTS) as load:
        results = {name: await under_fault(load, openai_upstream, name) for name in FAULTS}
    for name, outcomes in results.items():
        assert summary(outcomes) == expected_without_fallback(name, Counter(o.kind for o in outcomes)), name
    assert all(o.retry_after == "7" for o in results["429 with Retry-After"])
    assert all(o.text == reply_text("openai-fake", "openai-fake-model", o.prompt) for o in load.outcomes if o.ok)
    assert_sane(load.outcomes)
    assert "Traceback" not in gateway.log_text()


# ----- 2 and 3. upstream faults, policy reloads and a Redis outage, all at once --------------------------------


def chaos_config(primary, backup, canary, redis_url: str, on_error: str) -> dict:
    config = gateway_config(
        {"primary": openai_target(primary), "backup": openai_target(backup), "canary": openai_target(canary)},
        server={"policy_watch_s": 0},  # reloads come from /admin/reload, when the test says
        admin_keys=[ADMIN_HASH],
        state={"redis_url": redis_url, "on_redis_error": on_error, "redis_timeout_s": 0.2, "redis_retry_s": 0.2},
    )
    config["tenants"]["acme"]["limits"] = {"requests_per_minute": 10**6, "concurrent_requests": 10**4}
    return config


# Valid policies swap which of primary and backup goes first; every invalid one would send traffic to the canary.
VALID_POLICIES = [chat_policy(["primary"], ["backup"]), chat_policy(["backup"], ["primary"])]
INVALID_POLICIES = [
    "version: 1\nroutes: [\n",  # YAML syntax
    yaml.safe_dump(chat_policy(["canary"], retry={"attempts": 0})),  # schema
    yaml.safe_dump(chat_policy(["canary", "nowhere"])),  # unknown target
]
# The primary's faults during the storm: each one a fallback can hide (test 1 shows which cannot).
STORM = ["503", "connection reset", "hang", "invalid JSON", "stream cut before its first event", "429 with Retry-After"]


class Storm:
    """Reloads (valid and invalid by turns) and primary faults, one step per `step()`, while the load runs."""

    def __init__(self, gateway, load: MixedLoad, primary) -> None:
        self.gateway, self.load, self.primary = gateway, load, primary
        self.admin = httpx.AsyncClient(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        self.steps = 0
        self.version = 1

    async def step(self) -> None:
        kind, params = FAULTS[STORM[self.steps % len(STORM)]]
        self.primary.set_fault(kind, **params)
        self.gateway.write_file("policy.yaml", VALID_POLICIES[self.steps % 2])
        reloaded = await self.admin.post("/admin/reload")
        assert reloaded.status_code == 200, reloaded.text
        self.version = reloaded.json()["version"]
        self.gateway.write_file("policy.yaml", INVALID_POLICIES[self.steps % len(INVALID_POLICIES)])
        rejected = await self.admin.post("/admin/reload")
        assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "invalid_policy", rejected.text
        self.steps += 1
        await self.load.answers(len(self.load.of(self.load.phase)) + CLIENTS)

    async def close(self) -> None:
        self.primary.clear_fault()
        status = (await self.admin.get("/admin/policy")).json()
        assert status["version"] == self.version and status["last_error"], status
        await self.admin.aclose()


def readiness(gateway) -> tuple[int | None, str]:
    status, _, body = gateway.http_get("/readyz")
    return status, body.decode()


@pytest.mark.parametrize("on_error", ["fail_open", "fail_closed"])
async def test_upstream_faults_reloads_and_a_redis_outage_at_once(
    on_error, make_openai_upstream, start_gateway, redis_server, redis_url
):
    primary, backup, canary = (make_openai_upstream(name) for name in ("primary", "backup", "canary"))
    gateway = start_gateway(
        chaos_config(primary, backup, canary, redis_url, on_error), policies={"policy.yaml": VALID_POLICIES[0]}
    )
    async with MixedLoad(gateway.base_url, KEY, "chat", clients=CLIENTS) as load:
        storm = Storm(gateway, load, primary)
        load.phase = "redis up"
        for _ in range(3):
            await storm.step()
        load.phase = "redis going down"
        await load.settle("redis up")  # nothing sent while Redis was up may meet it down
        redis_server.kill()
        await async_wait_until(lambda: '"redis":"down"' in readiness(gateway)[1], timeout=5, message="Redis down")
        load.phase = "redis down"
        for _ in range(3):
            await storm.step()
        load.phase = "redis coming back"
        await load.settle("redis down")
        redis_server.start()  # empty, as after a crash without persistence
        await async_wait_until(lambda: readiness(gateway)[0] == 200 and '"redis":"up"' in readiness(gateway)[1],
                               timeout=5, message="Redis back")
        load.phase = "redis back"
        for _ in range(3):
            await storm.step()
        load.phase = "after"
        await storm.close()
        phases = {phase: await load.settle(phase) for phase in ("redis up", "redis down", "redis back")}
    ok = {("json", 200, None, True, None), ("stream", 200, None, True, None)}
    refused = {("json", 503, "limits_unavailable", False, None), ("stream", 503, "limits_unavailable", False, None)}
    shape = lambda outcomes: {(o.kind, o.status, o.code, o.whole, o.failure) for o in outcomes}  # noqa: E731
    assert shape(phases["redis up"]) == ok
    assert shape(phases["redis down"]) == (ok if on_error == "fail_open" else refused)
    assert shape(phases["redis back"]) == ok
    if on_error == "fail_closed":
        assert all(o.retry_after == "1" for o in phases["redis down"])
    for outcome in load.outcomes:  # the transitions too: served, or (fail_closed) refused for the limits
        assert (outcome.kind, outcome.status, outcome.code, outcome.whole, outcome.failure) in (
            ok if on_error == "fail_open" else ok | refused
        ), outcome
    served = [o for o in load.outcomes if o.ok]
    assert {o.served_by for o in served} == {"primary", "backup"}
    assert all(o.text == reply_text(o.served_by, f"{o.served_by}-model", o.prompt) for o in served)
    assert canary.requests == [], "an invalid policy never took effect"
    client = redis_server.client()
    assert client.zcard("sy:{acme}:t:rpm") > 0, "admissions went back to Redis by themselves"
    client.close()
    assert_sane(load.outcomes)
    log = gateway.log_text()
    assert log.count("is unavailable") == 1 and log.count("is reachable again") == 1, log
    assert "Traceback" not in log and gateway.running


# ----- 4. SIGTERM in the middle of a steady load -----------------------------------------------------------------


async def test_sigterm_under_load_finishes_what_it_accepted_then_refuses_and_exits_0(openai_upstream, start_gateway):
    grace_s = 2.0
    # Streams take about 0.7 s: many are mid-way at the signal, and each client sends again within the grace period.
    openai_upstream.chunk_delay = 0.1
    gateway = start_gateway(
        {**gateway_config({"up": openai_target(openai_upstream)}), "server": {"drain_grace_s": grace_s, "drain_timeout_s": 20}},
        policies={"policy.yaml": chat_policy(["up"])},
    )
    async with MixedLoad(gateway.base_url, KEY, "chat", clients=CLIENTS) as load:
        load.phase = "before"
        await load.answers(PER_PHASE)
        # Some requests mid-way at the signal: the clients keep sending, but an instant between two can find none.
        in_flight = await async_wait_until(lambda: openai_upstream.in_flight, timeout=10, message="requests at the upstream")
        load.phase = "draining"
        signalled = time.monotonic()  # the clock of Outcome.sent_at
        gateway.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(gateway.wait, 30)
    assert exit_code == 0
    before, draining = load.of("before"), load.of("draining")
    assert in_flight > 0 and {signature(o) for o in before} == {
        ("json", 200, None, "up", True, None), ("stream", 200, None, "up", True, None)
    }, summary(before)
    accepted = [o for o in draining if o.failure is None]
    refused = [o for o in draining if o.failure is not None]
    assert accepted and refused
    assert {(o.status, o.whole) for o in accepted} == {(200, True)}, summary(accepted)
    # Refused: no connection, or (a connect the kernel had queued, or a request racing the close of an idle
    # keep-alive connection) one closed before any answer. Never a partial answer, and none reached the upstream.
    assert {o.failure for o in refused} <= {"ConnectError", "ReadError", "RemoteProtocolError"}, summary(refused)
    assert all(o.status is None for o in refused)
    assert len(openai_upstream.requests) == len(before) + len(accepted), "nothing refused was sent upstream"
    assert min(o.sent_at for o in refused) >= signalled + grace_s * 0.9, "refused only once the grace period is over"
    assert all(o.text == reply_text("openai-fake", "openai-fake-model", o.prompt) for o in before + accepted)
    assert openai_upstream.cancelled_streams == 0
    log = gateway.log_text()
    assert "SIGTERM: draining" in log and "drained: exiting" in log and "Traceback" not in log
