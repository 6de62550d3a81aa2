"""Shared fixtures: fake upstreams, a private Redis, and the real gateway as a process.

Everything here is a real component on a loopback port: tests talk HTTP to the gateway, which talks HTTP to the
fakes. Helpers live in the `fakes` package (importable as `fakes` because pytest puts this directory on sys.path
for this conftest); the most used ones are re-exported here for reference.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import ANTHROPIC_TEST_KEY, AnthropicUpstream, OpenAIUpstream
from fakes.gateway_process import GatewayProcess, write_yaml_file
from fakes.keys import make_key
from fakes.network import free_port
from fakes.redis_server import PrivateRedis, find_redis_server
from gateway.config import StateConfig
from gateway.limits_redis import RedisLimits

__all__ = ["GatewayProcess", "PrivateRedis", "free_port", "make_key"]

StartGateway = Callable[..., GatewayProcess]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Remember each phase's outcome on the test item so fixtures can tell, at teardown, whether the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call"))


# ----- Redis -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A private redis-server for the whole session (never the system one on 6379); tests may stop and start it."""
    try:
        binary = find_redis_server()
    except RuntimeError as missing:
        pytest.fail(str(missing))
    server = PrivateRedis(free_port(), tmp_path_factory.mktemp("redis"), binary)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: PrivateRedis) -> str:
    """URL of the private Redis, running (restarted if an earlier test stopped it) and empty."""
    redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def redis_client(redis_server: PrivateRedis, redis_url: str) -> Iterator[Any]:
    """A redis-py client of the private Redis (running and empty), closed after the test."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
async def shared_limits(redis_url: str) -> AsyncIterator[RedisLimits]:
    """The Redis limits backend on the private Redis (running and empty), started; closed after the test."""
    limits = RedisLimits(StateConfig(redis_url=redis_url))
    await limits.start()
    yield limits
    await limits.close()


# ----- fake upstreams ----------------------------------------------------------------------------------------------


@pytest.fixture
def openai_upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream("openai-fake") as upstream:
        yield upstream


@pytest.fixture
def anthropic_upstream() -> Iterator[AnthropicUpstream]:
    with AnthropicUpstream("anthropic-fake", api_key=ANTHROPIC_TEST_KEY) as upstream:
        yield upstream


@pytest.fixture
def make_openai_upstream() -> Iterator[Callable[..., OpenAIUpstream]]:
    """Factory for more OpenAI fakes in one test, e.g. a primary and a fallback: make_openai_upstream("b")."""
    started: list[OpenAIUpstream] = []

    def make(name: str, **options: Any) -> OpenAIUpstream:
        upstream = OpenAIUpstream(name, **options).start()
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        upstream.stop()


# ----- the gateway -------------------------------------------------------------------------------------------------


@pytest.fixture
def start_gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartGateway]:
    """Factory: start_gateway(config, policies=None, env=None, args=None, wait_ready=True) -> GatewayProcess.

    `config` is a mapping (dumped as YAML) or YAML text; `policies` maps file names, relative to the config's
    directory, to their content. When `config` is a mapping without a `policies` key, the given policy files are
    listed in it. All gateways are stopped at teardown, and their logs printed if the test failed.
    """
    started: list[GatewayProcess] = []
    numbers = itertools.count(1)

    def start(
        config: Mapping[str, Any] | str,
        policies: Mapping[str, Mapping[str, Any] | str] | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        wait_ready: bool = True,
    ) -> GatewayProcess:
        workdir = tmp_path / f"gateway-{next(numbers)}"
        for name, content in (policies or {}).items():
            write_yaml_file(workdir / name, content)
        if not isinstance(config, str) and policies and "policies" not in config:
            config = {**config, "policies": list(policies)}
        config_path = write_yaml_file(workdir / "config.yaml", config)
        gateway = GatewayProcess(workdir, config_path, free_port(), env=env, args=args or ())
        started.append(gateway)
        gateway.start(wait_ready=wait_ready)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
    if _test_failed(request):
        for gateway in started:
            print(f"\n----- gateway log ({gateway.log_path}) -----\n{gateway.log_text()}")
