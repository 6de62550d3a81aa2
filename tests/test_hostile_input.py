"""Hostile input at the HTTP and JSON level: a clear 4xx or a normal answer, never a 500 or a hang."""

from __future__ import annotations

import socket

import httpx
import pytest

from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from fakes.gateway_process import GatewayProcess, write_yaml_file
    from fakes.network import free_port

    workdir = tmp_path_factory.mktemp("hostile")
    config = {"targets": {"echo": {"adapter": "echo"}}, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["echo"]}}}
    process = GatewayProcess(workdir, write_yaml_file(workdir / "config.yaml", config), free_port())
    process.start()
    yield process
    process.stop()
    log = process.log_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=20) as client:
        yield client


def raw_exchange(gateway, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_deeply_nested_json_is_a_400(http):
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = http.post(CHAT, content=body)
    assert response.status_code in (400, 413)
    assert response.json()["error"]["code"] in ("invalid_json", "request_too_large")


def test_ten_thousand_messages_are_served(http):
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(10_000)]
    response = http.post(CHAT, json={"model": "echo", "messages": messages})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: m9998"


def test_duplicate_keys_take_the_last_value(http):
    body = b'{"model": "nope", "model": "echo", "messages": [{"role": "user", "content": "dup"}]}'
    response = http.post(CHAT, content=body)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "echo: dup"


def test_huge_header_is_refused_without_a_500(gateway):
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nX-Big: " + b"a" * 1_000_000 + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    try:
        reply = raw_exchange(gateway, request)
    except (ConnectionResetError, BrokenPipeError):
        reply = b""  # the server may close the connection before reading it all; that is a refusal too
    assert not reply.startswith(b"HTTP/1.1 500")


def test_conflicting_length_headers_are_rejected(gateway):
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "x"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    )
    reply = raw_exchange(gateway, request)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:80]
    assert reply.count(b"HTTP/1.1 ") == 1, "nothing smuggled behind the first request"


def test_non_latin_and_control_bytes_in_the_key_are_a_401(gateway):
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\x01key\r\n\r\n"
    reply = raw_exchange(gateway, request)
    assert reply.startswith((b"HTTP/1.1 401", b"HTTP/1.1 400")), reply[:80]


def test_a_client_cannot_redirect_a_litellm_target_or_its_credentials(make_openai_upstream, anthropic_upstream, start_gateway):
    evil = make_openai_upstream("evil")
    config = {
        "targets": {"claude": {"adapter": "litellm", "model": "anthropic/claude-sonnet-4-5", "api_key": "test-anthropic-key"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["claude"]}},
    }
    # The target has no base_url of its own: the body's api_base/base_url would be litellm's only hint.
    gateway = start_gateway(config, env={"ANTHROPIC_API_BASE": anthropic_upstream.base_url, "ANTHROPIC_BASE_URL": anthropic_upstream.base_url})
    body = {
        "model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
        "api_base": evil.origin, "base_url": evil.origin, "api_key": "x", "extra_headers": {"x-evil": "1"},
        "custom_llm_provider": "openai", "mock_response": "pwned",
    }
    response = httpx.post(gateway.openai_base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert evil.requests == []
    assert "pwned" not in response.text
    sent = anthropic_upstream.requests
    assert len(sent) == 1 and sent[0].header("x-api-key") == "test-anthropic-key" and sent[0].header("x-evil") is None
