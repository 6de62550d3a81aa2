"""Bad input gets a clear OpenAI-shaped 4xx with the gateway's headers, never a 500 or a traceback."""

from __future__ import annotations

import httpx
import pytest

from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    # One gateway for the module: these checks never reach an upstream.
    from fakes.gateway_process import GatewayProcess, write_yaml_file
    from fakes.network import free_port

    workdir = tmp_path_factory.mktemp("bad-input")
    config = {
        "server": {"max_body_bytes": 2048},
        "targets": {"echo": {"adapter": "echo"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["echo"]}},
    }
    gateway = GatewayProcess(workdir, write_yaml_file(workdir / "config.yaml", config), free_port())
    gateway.start()
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client
    gateway.stop()
    assert "Traceback" not in gateway.log_text()


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b"", None, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", None),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model", None),
        (b'{"model": "echo"}', "messages", None),
        (b'{"model": "echo", "messages": []}', "messages", None),
        (b'{"model": "echo", "messages": "hi"}', "messages", None),
        (b'{"model": "echo", "messages": ["hi"]}', "messages[0]", None),
        (b'{"model": "echo", "messages": [{"content": "x"}]}', "messages[0].role", None),
        (b'{"model": "echo", "messages": [{"role": "user", "content": 5}]}', "messages[0].content", None),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream", None),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n", None),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": "2"}', "n", None),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": 1}', "stream_options", None),
    ],
)
def test_malformed_chat_requests_get_400(http, body, param, code):
    error = error_of(http.post(CHAT, content=body), 400)
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert error["type"] == "invalid_request_error"


def test_other_endpoints_check_their_own_fields(http):
    assert error_of(http.post("/v1/completions", json={"model": "echo"}), 400)["param"] == "prompt"
    assert error_of(http.post("/v1/completions", json={"model": "echo", "prompt": {"a": 1}}), 400)["param"] == "prompt"
    assert error_of(http.post("/v1/embeddings", json={"model": "echo", "input": ""}), 400)["param"] == "input"
    assert error_of(http.post("/v1/embeddings", json={"model": "echo", "input": "x", "stream": True}), 400)["param"] == "stream"


def test_too_large_bodies_get_413_declared_or_chunked(http):
    big = b'{"model": "echo", "messages": [{"role": "user", "content": "' + b"x" * 4000 + b'"}]}'
    assert error_of(http.post(CHAT, content=big), 413)["code"] == "request_too_large"

    def chunks():
        yield big[:1000]
        yield big[1000:]

    assert error_of(http.post(CHAT, content=chunks()), 413)["code"] == "request_too_large"


def test_unknown_urls_wrong_methods_and_missing_keys(http):
    assert error_of(http.get("/v1/nothing"), 404)["code"] == "unknown_url"
    assert error_of(http.get(CHAT), 405)["code"] == "method_not_allowed"
    response = httpx.post(str(http.base_url).rstrip("/") + CHAT, json={"model": "echo"})
    assert error_of(response, 401)["code"] == "missing_api_key"
    response = httpx.post(str(http.base_url).rstrip("/") + CHAT, json={"model": "echo"}, headers={"x-api-key": KEY})
    assert error_of(response, 400)["param"] == "messages", "x-api-key works as the key header"


def test_errors_carry_the_gateway_headers_and_a_safe_request_id(http):
    response = http.post(CHAT, content=b"{", headers={"x-request-id": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    assert response.headers["x-switchyard-target"] == "none"
    assert float(response.headers["x-switchyard-overhead-ms"]) >= 0
    response = http.post(CHAT, content=b"{", headers={"x-request-id": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces" and len(response.headers["x-request-id"]) == 24


def test_huge_model_names_are_not_echoed_whole(http):
    error = error_of(http.post(CHAT, json={"model": "m" * 1500, "messages": [{"role": "user", "content": "x"}]}), 403)
    assert error["code"] == "model_not_allowed" and len(error["message"]) < 300


def test_every_response_carries_request_id_target_and_overhead(http):
    for response in (http.get("/healthz"), http.get("/v1/models"), http.get("/nowhere"), http.get("/readyz")):
        assert len(response.headers["x-request-id"]) == 24
        assert response.headers["x-switchyard-target"] == "none"
        assert float(response.headers["x-switchyard-overhead-ms"]) >= 0
