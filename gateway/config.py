"""The gateway's config file: typed, validated at load, errors that name file, line and field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from gateway.yamlsource import SourceError, YamlDocument, load_yaml

# Names end up in headers and metric labels, so they are kept to a safe alphabet.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")]
KeyHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    policy_watch_s: float = Field(1.0, ge=0, le=3600, description="How often policy files are checked for changes; 0: never.")


class StateConfig(Strict):
    redis_url: str | None = Field(None, description="No redis_url: state lives in process memory.")
    on_redis_error: Literal["fail_open", "fail_closed"] = "fail_open"


class Price(Strict):
    input_per_mtok: float = Field(ge=0, description="USD per million input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")


class TargetConfig(Strict):
    adapter: Literal["openai", "litellm", "echo"]
    model: str | None = Field(None, description="The model name the upstream knows.")
    base_url: HttpUrl | None = Field(None, description="Required for adapter openai; optional api_base for litellm.")
    api_key: str | None = Field(None, repr=False)
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream.")
    price: Price | None = None
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Whole-request timeout; for streams, the idle timeout.")
    connect_timeout_s: float = Field(5.0, gt=0, le=600)
    max_connections: int = Field(256, ge=1, le=100_000, description="Pooled connections to this upstream.")

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


class TenantConfig(Strict):
    keys: list[KeyHash] = Field(min_length=1, description="sha256:<hex> of each API key; see `switchyard keys new`.")
    models: list[Name | Literal["*"]] = Field(description="Aliases or target names this tenant may ask for; '*' for all.")


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    targets: dict[Name, TargetConfig] = Field(default_factory=dict)
    tenants: dict[Name, TenantConfig] = Field(default_factory=dict)
    admin_keys: list[KeyHash] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list, description="Policy files, relative to this config file.")

    @model_validator(mode="after")
    def _keys_unique(self) -> GatewayConfig:
        owner: dict[str, str] = {}
        for tenant, spec in self.tenants.items():
            for key in spec.keys:
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
    return isinstance(part, str) and (part.startswith(("literal[", "function-")) or part in {"str", "constrained-str"})


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
