"""What observability is switched on, resolved once from the config file and the environment.

This is the one place the OTEL_* and PROMETHEUS_MULTIPROC_DIR variables are read; everything else is handed
the resulting settings. A field set in the config wins, an unset one falls back to its standard variable.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass

from gateway.config import ObservabilityConfig

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_SAMPLE_RATIO = 0.01
SERVICE_NAME = "switchyard"


@dataclass(frozen=True, slots=True)
class Sampling:
    """A head sampler: `ratio` of new traces; `parent_based` follows the sampled flag of a client's traceparent."""

    ratio: float
    parent_based: bool = True


@dataclass(frozen=True, slots=True)
class TracingSettings:
    endpoint: str  # the OTLP/HTTP traces URL
    sampling: Sampling
    service_name: str


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    metrics: bool = True
    multiprocess_dir: str | None = None  # set when several worker processes share metric files
    access_log: bool = False
    tracing: TracingSettings | None = None  # None: tracing off, and no cost on the request path


def observability_settings(config: ObservabilityConfig, env: Mapping[str, str]) -> ObservabilitySettings:
    return ObservabilitySettings(
        metrics=config.metrics,
        multiprocess_dir=env.get(MULTIPROC_ENV) or None,
        access_log=config.access_log,
        tracing=_tracing(config, env),
    )


def _tracing(config: ObservabilityConfig, env: Mapping[str, str]) -> TracingSettings | None:
    tracing = config.tracing
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    enabled = tracing.enabled
    if enabled is None:
        exporter_off = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
        enabled = bool(traces_endpoint or base_endpoint) and not exporter_off
    if not enabled:
        return None
    if traces_endpoint:
        endpoint = traces_endpoint
    else:
        endpoint = (base_endpoint or "http://localhost:4318").rstrip("/") + "/v1/traces"
    if tracing.sample_ratio is not None:
        sampling = Sampling(tracing.sample_ratio)
    else:
        sampling = _sampling_from_env(env)
    service_name = tracing.service_name or env.get("OTEL_SERVICE_NAME", "").strip() or SERVICE_NAME
    return TracingSettings(endpoint, sampling, service_name)


def _sampling_from_env(env: Mapping[str, str]) -> Sampling:
    """OTEL_TRACES_SAMPLER as the OpenTelemetry spec names them; anything else means the default."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = min(1.0, max(0.0, float(argument))) if argument else 1.0
    except ValueError:
        ratio = 1.0
    fixed = {
        "always_on": Sampling(1.0, parent_based=False),
        "always_off": Sampling(0.0, parent_based=False),
        "traceidratio": Sampling(ratio, parent_based=False),
        "parentbased_always_on": Sampling(1.0),
        "parentbased_always_off": Sampling(0.0),
        "parentbased_traceidratio": Sampling(ratio),
    }
    return fixed.get(name, Sampling(DEFAULT_SAMPLE_RATIO))


@contextlib.contextmanager
def worker_metrics_dir(workers: int, env: MutableMapping[str, str]) -> Iterator[None]:
    """For `--workers N`: a fresh directory where the workers' metric files meet, removed at exit.

    prometheus_client picks its storage when it is imported, so this must run before worker processes start
    (they inherit the variable); an existing value is replaced, as stale files from an earlier run would add
    their counts to this one's.
    """
    if workers <= 1:
        yield
        return
    path = tempfile.mkdtemp(prefix="switchyard-metrics-")
    previous = env.get(MULTIPROC_ENV)
    env[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        if previous is None:
            env.pop(MULTIPROC_ENV, None)
        else:
            env[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
