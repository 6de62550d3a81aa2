"""Authenticate: which tenant is calling, from the API key it sent. Keys exist here only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.config import TenantConfig
from gateway.errors import GatewayError

KEY_PREFIX = "sk-sy-"


@dataclass(frozen=True, slots=True)
class Tenant:
    """The tenant as seen through one of its keys."""

    name: str
    models: frozenset[str]
    all_models: bool
    key_id: str = ""  # the start of the key's hash: names the key in limit state, never the key itself

    def may_use(self, model: str) -> bool:
        return self.all_models or model in self.models


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def key_id(key_hash: str) -> str:
    return key_hash.removeprefix("sha256:")[:16]


def new_key() -> tuple[str, str]:
    """A fresh random key and the hash that goes in config."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


def presented_key(headers: Mapping[bytes, bytes]) -> str | None:
    """The key as the SDKs send it: `Authorization: Bearer`, or `api-key` / `x-api-key`."""
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip().decode("latin-1")
    for name in (b"api-key", b"x-api-key"):
        value = headers.get(name)
        if value:
            return value.strip().decode("latin-1")
    return None


class KeyRing:
    """Maps presented keys to owners by comparing SHA-256 digests.

    The digest of an unknown key is a uniformly random lookup, so a dict lookup leaks no timing
    signal about how close a guess was.
    """

    def __init__(self, owners: Iterable[tuple[str, object]]) -> None:
        self._owners = {key_hash.removeprefix("sha256:"): owner for key_hash, owner in owners}

    def owner(self, key: str) -> object | None:
        return self._owners.get(hashlib.sha256(key.encode("latin-1")).hexdigest())


class Authenticator:
    def __init__(self, tenants: Mapping[str, TenantConfig]) -> None:
        self._keys = KeyRing(
            (key.hash, Tenant(name, frozenset(m for m in spec.models if m != "*"), "*" in spec.models, key_id(key.hash)))
            for name, spec in tenants.items()
            for key in spec.key_configs()
        )

    def authenticate(self, headers: Mapping[bytes, bytes]) -> Tenant:
        key = presented_key(headers)
        if key is None:
            raise GatewayError(
                401,
                "Missing API key: send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
                error_type="invalid_request_error",
            )
        tenant = self._keys.owner(key)
        if tenant is None:
            raise GatewayError(401, "Invalid API key.", code="invalid_api_key")
        return tenant  # type: ignore[return-value]


class OperatorKeys:
    """The keys of an operator's endpoint (admin, metrics): no tenant key opens it, and none of them is a tenant key."""

    def __init__(self, key_hashes: Iterable[str], refusal: str) -> None:
        self._keys = KeyRing((key_hash, True) for key_hash in key_hashes)
        self._refusal = refusal

    def check(self, headers: Mapping[bytes, bytes]) -> None:
        key = presented_key(headers)
        if key is None or self._keys.owner(key) is None:
            raise GatewayError(401, self._refusal, code="invalid_api_key")
