"""Security review, part two: a client can never choose where the gateway sends a request or what headers go with
it, and conflicting length headers (request smuggling) are refused. The fake upstreams record exactly what they
received: URL, Host, credentials and every header name.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
UPSTREAM_KEY = "sk-configured-upstream-5b1e"
CHAT = "/v1/chat/completions"
# What aiohttp itself sends with the openai adapter's fixed headers; nothing of the client's may join them.
OPENAI_ADAPTER_HEADERS = {"host", "content-type", "content-length", "authorization", "accept", "accept-encoding"}

HOSTILE_HEADERS = {
    "Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443", "Forwarded": "host=evil.example;proto=https",
    "X-Real-IP": "203.0.113.9", "X-Original-URL": "/admin", "X-Rewrite-URL": "/admin",
    "api-key": KEY, "x-api-key": KEY, "anthropic-version": "2099-01-01", "anthropic-beta": "evil-beta",
    "OpenAI-Organization": "org-evil", "OpenAI-Project": "proj-evil", "Cookie": "session=evil",
    "X-Evil": "1", "X-Upstream-Url": "http://evil.example/v1", "Proxy-Authorization": "Basic ZXZpbDpldmls",
}
HOSTILE_BODY = {
    "api_base": "http://evil.example/v1", "base_url": "http://evil.example/v1", "api_key": "sk-evil",
    "extra_headers": {"x-evil": "1", "Authorization": "Bearer sk-evil"}, "headers": {"x-evil": "1"},
    "url": "http://evil.example/v1", "custom_llm_provider": "openai", "mock_response": "pwned",
}
HOSTILE_MODELS = [
    "http://evil.example/v1", "//evil.example/v1", "up/../../admin/reload", "../up", "up/../up", "up?x=1", "up#x",
    "up%2F..%2Fadmin", "up\r\nX-Evil: 1", "openai/up", "up@evil.example",
]


def not_found(model: str) -> dict:
    return {"error": {"message": f"The model {model[:200]!r} does not exist or you do not have access to it.",
                      "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


@pytest.fixture
def gateway(openai_upstream, make_openai_upstream, start_gateway):
    evil = make_openai_upstream("evil")
    config = {
        "targets": {"up": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "upstream-model",
                           "api_key": UPSTREAM_KEY}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
    }
    gateway = start_gateway(config)
    gateway.evil = evil
    return gateway


def assert_sent_as_configured(upstream, count: int) -> None:
    sent = upstream.requests
    assert len(sent) == count
    for record in sent:
        assert record.path == "/v1/chat/completions" and record.query == {}
        assert record.header("host") == f"127.0.0.1:{upstream.port}"
        assert record.header("authorization") == f"Bearer {UPSTREAM_KEY}", "the target's key, never the client's"
        assert set(record.headers) == OPENAI_ADAPTER_HEADERS, set(record.headers) - OPENAI_ADAPTER_HEADERS
        assert record.body["model"] == "upstream-model"
        assert KEY.encode() not in record.raw


def test_client_headers_and_body_fields_never_steer_the_openai_adapter(gateway, openai_upstream):
    body = {"model": "up", "messages": [{"role": "user", "content": "hi"}], **HOSTILE_BODY}
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        json_reply = http.post(CHAT, json=body, headers={"Authorization": f"Bearer {KEY}", **HOSTILE_HEADERS})
        stream_reply = http.post(CHAT, json={**body, "stream": True}, headers={"Authorization": f"Bearer {KEY}", **HOSTILE_HEADERS})
    assert json_reply.status_code == 200 and stream_reply.status_code == 200
    assert "upstream-model" in json_reply.text and "pwned" not in json_reply.text
    assert_sent_as_configured(openai_upstream, 2)
    assert gateway.evil.requests == []


def test_model_names_holding_urls_or_paths_reach_no_upstream(gateway, openai_upstream):
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        for model in HOSTILE_MODELS:
            response = http.post(CHAT, json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 404 and response.json() == not_found(model), (model, response.text)
        # The path is the gateway's own: nothing after the endpoint reaches the upstream.
        for path in (CHAT + "/../../admin/reload", CHAT + "?url=http://evil.example", "/v1/chat/completions%2F..%2Fx"):
            response = http.post(path, json={"model": "up", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code in (200, 404), (path, response.text)
    assert_sent_as_configured(openai_upstream, len(openai_upstream.requests))
    assert gateway.evil.requests == []


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("header", [
    b"X-Evil: a\rInjected: 1", b"X-Evil: a\nInjected: 1", b"X-Evil: a\r\n Injected: 1", b"X-Evil: a\x00Injected: 1",
])
def test_headers_with_cr_lf_or_nul_are_refused(gateway, openai_upstream, header):
    body = b'{"model": "up", "messages": [{"role": "user", "content": "hi"}]}'
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + KEY.encode()
               + b"\r\n" + header + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\n\r\n" + body)
    reply = raw_exchange(gateway.port, request)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert openai_upstream.requests == []


# ----- request smuggling ---------------------------------------------------------------------------------------------

BODY = b'{"model": "up", "messages": [{"role": "user", "content": "x"}]}'
SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n\r\n"


def head(extra: bytes) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\n" + extra + b"\r\n")


def chunked(body: bytes) -> bytes:
    return hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("request_bytes", [
    # Two Content-Length headers that disagree, in both orders, and as one comma-separated list.
    head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(BODY), len(BODY) + len(SMUGGLED))) + BODY + SMUGGLED,
    head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(BODY) + len(SMUGGLED), len(BODY))) + BODY + SMUGGLED,
    head(b"Content-Length: %d, %d\r\n" % (len(BODY), len(BODY) + len(SMUGGLED))) + BODY + SMUGGLED,
    # Content-Length and Transfer-Encoding together (CL.TE and TE.CL), and Transfer-Encodings a front proxy
    # might read differently.
    head(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(BODY)) + chunked(BODY) + SMUGGLED,
    head(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n") + chunked(BODY) + SMUGGLED,
    head(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n") + chunked(BODY) + SMUGGLED,
    head(b"Transfer-Encoding: chunked, identity\r\n") + chunked(BODY) + SMUGGLED,
    head(b"Transfer-Encoding : chunked\r\n") + chunked(BODY) + SMUGGLED,
], ids=["cl-cl", "cl-cl-reversed", "cl-list", "cl-te", "te-cl", "te-te", "te-list", "te-space"])
def test_conflicting_length_headers_are_refused_and_nothing_is_smuggled(gateway, openai_upstream, request_bytes):
    reply = raw_exchange(gateway.port, request_bytes)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:120]
    assert reply.count(b"HTTP/1.1 ") == 1, "nothing smuggled behind the first request"
    assert openai_upstream.requests == []


def test_client_headers_never_reach_an_anthropic_target_through_litellm(anthropic_upstream, make_openai_upstream, start_gateway):
    evil = make_openai_upstream("evil")
    config = {
        "targets": {"claude": {"adapter": "litellm", "model": "anthropic/claude-sonnet-4-5",
                               "base_url": anthropic_upstream.base_url, "api_key": "test-anthropic-key"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
    }
    gateway = start_gateway(config)
    body = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **HOSTILE_BODY}
    with httpx.Client(base_url=gateway.base_url, timeout=60) as http:
        for stream in (False, True):
            response = http.post(CHAT, json={**body, "stream": stream}, headers={"Authorization": f"Bearer {KEY}", **HOSTILE_HEADERS})
            assert response.status_code == 200 and "pwned" not in response.text, response.text
        for model in ("anthropic/claude-sonnet-4-5", "http://evil.example/v1", "claude/../x"):
            response = http.post(CHAT, json={**body, "model": model}, headers={"Authorization": f"Bearer {KEY}"})
            assert response.status_code == 404 and response.json() == not_found(model)
    sent = anthropic_upstream.requests
    assert len(sent) == 2 and evil.requests == []
    for record in sent:
        assert record.path == "/v1/messages" and record.query == {}
        assert record.header("host") == f"127.0.0.1:{anthropic_upstream.port}"
        assert record.header("x-api-key") == "test-anthropic-key" and record.header("authorization") is None
        assert record.header("anthropic-version") != HOSTILE_HEADERS["anthropic-version"]
        assert record.body["model"] == "claude-sonnet-4-5"
        leaked = set(record.headers) & ({h.lower() for h in HOSTILE_HEADERS} - {"host", "x-api-key", "anthropic-version"})
        assert leaked == set() and KEY.encode() not in record.raw
