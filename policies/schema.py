"""The policy file format, typed. See README "Policy reference"."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config import Name, Strict

EndpointName = Literal["chat", "completion", "embedding"]


class WeightedTarget(Strict):
    target: Name
    weight: float = Field(1.0, gt=0, description="Relative share of traffic among the route's send targets.")


class When(Strict):
    """All given conditions must hold; an empty `when` matches every request."""

    model: Name | list[Name] | None = Field(None, description="Model alias(es) the client asked for.")
    tenant: Name | list[Name] | None = None
    endpoint: EndpointName | list[EndpointName] | None = None
    stream: bool | None = None


class Route(Strict):
    name: Name
    when: When = When()
    send: list[Name | WeightedTarget] = Field(min_length=1, description="Targets, picked by weight.")
    fallback: list[Name] = Field(default_factory=list, description="Tried in order when the chosen target fails.")


class PolicyFile(Strict):
    version: Literal[1]
    routes: list[Route] = Field(default_factory=list, description="First match wins.")
