"""Tenant API keys as the gateway config stores them."""

from __future__ import annotations

import hashlib
import secrets


def make_key(tenant: str) -> tuple[str, str]:
    """A fresh key for `tenant`: (the plaintext a client sends, the "sha256:<hex>" hash the config lists)."""
    plaintext = f"sk-{tenant}-{secrets.token_hex(16)}"
    return plaintext, "sha256:" + hashlib.sha256(plaintext.encode()).hexdigest()
