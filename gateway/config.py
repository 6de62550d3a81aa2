"""The gateway's config file: typed, validated at load, errors that name file, line and field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, ValidationError, model_validator

from gateway.yamlsource import SourceError, YamlDocument, load_yaml

# Names end up in headers and metric labels, so they are kept to a safe alphabet.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")]
KeyHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]
RedisUrl = Annotated[str, StringConstraints(pattern=r"^(redis|rediss|unix)://\S+$")]
# What can go on the wire: header names are RFC 9110 tokens, values Latin-1 text without control characters.
HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\t\x20-\x7e\x80-\xff]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    policy_watch_s: float = Field(1.0, ge=0, le=3600, description="How often policy files are checked for changes; 0: never.")
    # Slow clients: without these a client trickling its request, or not reading its answer, holds a connection
    # (and a slot of the server's, or an upstream stream) for as long as it likes.
    client_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A client gets this long to send a request's headers, and this long again for its body; "
        "past either, 408 and the connection is closed. A client that takes nothing of its answer for this long "
        "(the gateway's buffer for it full) is cut off, and the upstream stream it held ends.",
    )
    keep_alive_s: float = Field(5.0, gt=0, le=3600, description="An idle keep-alive connection is closed after this long.")
    # 0 by default: only behind a load balancer that learns of a stop late (a Kubernetes Service) does a
    # stopping process have to keep taking new requests; the Helm chart sets 5.
    drain_grace_s: float = Field(
        0.0,
        ge=0,
        le=600,
        description="After SIGTERM, /readyz fails at once but new requests are still served this long, "
        "while load balancers stop sending traffic here.",
    )
    drain_timeout_s: float = Field(
        30.0,
        gt=0,
        le=86400,
        description="After the grace period, requests in flight (streams included) get this long to finish; "
        "then they are cut and the process exits.",
    )


class StateConfig(Strict):
    redis_url: RedisUrl | None = Field(
        None, repr=False, description="Limits and spend shared by every replica. No redis_url: they live in process memory."
    )
    on_redis_error: Literal["fail_open", "fail_closed"] = Field(
        "fail_open",
        description="While Redis is unreachable: fail_open serves with per-process limits, fail_closed answers 503.",
    )
    redis_timeout_s: float = Field(0.25, gt=0, le=10, description="Longest wait for Redis on a request, connecting included.")
    redis_retry_s: float = Field(1.0, gt=0, le=300, description="While Redis is unreachable, how often it is tried again.")
    redis_max_pipelines: int = Field(
        16, ge=1, le=1024, description="Per process, in flight at once on its one connection; calls beyond wait for one to return."
    )
    concurrency_lease_s: float = Field(
        600.0, gt=0, le=86400, description="A concurrency slot whose gateway died frees itself after this long."
    )


class Limits(Strict):
    """Limits on the requests of one scope (a tenant, a key, a tenant on a route). Unset: unlimited."""

    requests_per_minute: int | None = Field(None, ge=1, description="Requests in any rolling 60 seconds.")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Prompt and completion tokens in any rolling 60 seconds (prompt estimated, then corrected)."
    )
    concurrent_requests: int | None = Field(None, ge=1, description="Requests in flight at once; a stream until it ends.")
    usd_per_day: float | None = Field(None, gt=0, description="Spend per UTC day: admitted while below it.")
    usd_per_month: float | None = Field(None, gt=0, description="Spend per UTC calendar month: admitted while below it.")


class KeyConfig(Strict):
    hash: KeyHash = Field(description="sha256:<hex> of the key.")
    name: Name | None = Field(None, description="Shown in rate-limit errors; without it they say 'this API key'.")
    limits: Limits = Field(default_factory=Limits, description="Limits of this key alone, on top of the tenant's.")


# A plain hash or an object; told apart up front so an error speaks of the form that was written.
_KEY_TAGS = ("key-hash", "key-object")
KeyEntry = Annotated[
    Annotated[KeyHash, Tag(_KEY_TAGS[0])] | Annotated[KeyConfig, Tag(_KEY_TAGS[1])],
    Discriminator(lambda value: _KEY_TAGS[0] if isinstance(value, str) else _KEY_TAGS[1]),
]


class Price(Strict):
    input_per_mtok: float = Field(ge=0, description="USD per million input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")


class TargetConfig(Strict):
    adapter: Literal["openai", "litellm", "echo"]
    model: str | None = Field(None, description="The model name the upstream knows.")
    base_url: HttpUrl | None = Field(None, description="Required for adapter openai; optional api_base for litellm.")
    api_key: str | None = Field(None, repr=False)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, description="Extra headers sent upstream.")
    price: Price | None = None
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Whole-request timeout; for streams, the idle timeout.")
    connect_timeout_s: float = Field(5.0, gt=0, le=600)
    max_connections: int = Field(256, ge=1, le=100_000, description="Pooled connections to this upstream.")
    # What policy can require of a target (see README "Choosing open or closed per request").
    # Unset fields are filled from what is knowable: litellm's bundled model map, the SPDX list.
    kind: Literal["closed_api", "self_hosted"] | None = Field(None, description="Default: litellm targets closed_api, others self_hosted.")
    openness: Literal["closed", "open_weight", "open_source"] | None = Field(
        None, description="Default: open_source for an OSI-approved SPDX license, open_weight for another license, closed for closed_api."
    )
    license: str | None = Field(None, description="An SPDX id (Apache-2.0) or a named model license (llama3.1).")
    residency: Name | None = Field(None, description="Where the data is processed: eu, us, on_prem…")
    data_retention: Literal["none", "days", "may_train"] | None = Field(None, description="Default: none for self_hosted.")
    context_window: int | None = Field(None, ge=1, description="Input tokens the model accepts. Default: litellm's model map.")
    capabilities: list[Literal["tools", "vision", "json_mode", "embeddings"]] | None = Field(
        None, description="Default: litellm's model map; unknown means not filtered."
    )

    @model_validator(mode="after")
    def _adapter_needs(self) -> TargetConfig:
        if self.adapter == "openai":
            if not self.base_url:
                raise ValueError("base_url is required for adapter openai")
            if not self.model:
                raise ValueError("model is required for adapter openai")
        if self.adapter == "litellm" and not self.model:
            raise ValueError("model is required for adapter litellm (e.g. anthropic/claude-sonnet-4-5)")
        return self


class Requirements(Strict):
    """Target metadata a request's targets must have; each field lists the accepted values."""

    kind: list[Literal["closed_api", "self_hosted"]] | None = None
    openness: list[Literal["closed", "open_weight", "open_source"]] | None = None
    license: list[str] | None = None
    residency: list[Name] | None = None
    data_retention: list[Literal["none", "days", "may_train"]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in data.items()}
        return data


class TenantConfig(Strict):
    keys: list[KeyEntry] = Field(
        min_length=1, description="sha256:<hex> of each API key (see `switchyard keys new`), or {hash, name, limits}."
    )
    models: list[Name | Literal["*"]] = Field(description="Aliases or target names this tenant may ask for; '*' for all.")
    require: Requirements | None = Field(None, description="Every request of this tenant goes only to targets meeting these.")
    limits: Limits = Field(default_factory=Limits, description="Limits on all of this tenant's requests together.")

    def key_configs(self) -> list[KeyConfig]:
        return [key if isinstance(key, KeyConfig) else KeyConfig(hash=key) for key in self.keys]


class TracingConfig(Strict):
    """OpenTelemetry traces over OTLP/HTTP. A field left unset falls back to its standard OTEL_* variable."""

    enabled: bool | None = Field(
        None,
        description="Export traces. Unset: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT "
        "is set, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.",
    )
    sample_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of requests traced; a client's sampled traceparent is always followed. "
        "Unset: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else 0.01.",
    )
    service_name: str | None = Field(None, description="service.name of the spans. Unset: OTEL_SERVICE_NAME, else switchyard.")


class ObservabilityConfig(Strict):
    metrics: bool = Field(True, description="Serve Prometheus metrics at GET /metrics.")
    metrics_keys: list[KeyHash] = Field(
        default_factory=list,
        description="Keys a scraper presents for GET /metrics (sha256:<hex>, like admin keys); empty: /metrics needs no key.",
    )
    access_log: bool = Field(False, description="One JSON line per request on stdout: ids, names, numbers; no keys, no prompt text.")
    tracing: TracingConfig = TracingConfig()


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    targets: dict[Name, TargetConfig] = Field(default_factory=dict)
    tenants: dict[Name, TenantConfig] = Field(default_factory=dict)
    admin_keys: list[KeyHash] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list, description="Policy files, relative to this config file.")
    observability: ObservabilityConfig = ObservabilityConfig()

    @model_validator(mode="after")
    def _keys_unique(self) -> GatewayConfig:
        owner: dict[str, str] = {}
        for tenant, spec in self.tenants.items():
            for key in (k.hash for k in spec.key_configs()):
                if key in owner and owner[key] != tenant:
                    raise ValueError(f"key hash is listed for both tenants {owner[key]!r} and {tenant!r}")
                owner[key] = tenant
        return self


class ConfigError(Exception):
    """One or more located problems in a config or policy file."""

    def __init__(self, problems: list[SourceError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def validate(model: type[BaseModel], doc: YamlDocument) -> Any:
    """Validate a YAML document against a model, turning pydantic's errors into located ones."""
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.error((), "the file must contain a mapping at the top level")])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            path = tuple(p for p in err["loc"] if not _is_union_tag(p))
            message = err["msg"].removeprefix("Value error, ")
            problems.append(doc.error(path, message))
        raise ConfigError(problems) from None


def _is_union_tag(part: Any) -> bool:
    # pydantic adds pseudo-steps such as 'str' or 'literal['*']' for union members.
    return isinstance(part, str) and (part.startswith(("literal[", "function-")) or part in {"str", "constrained-str", *_KEY_TAGS})


def load_config(path: str | Path, env: Mapping[str, str]) -> GatewayConfig:
    try:
        doc = load_yaml(path, env)
    except SourceError as exc:
        raise ConfigError([exc]) from None
    return validate(GatewayConfig, doc)


def config_schema() -> dict[str, Any]:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Switchyard gateway config"
    return schema
