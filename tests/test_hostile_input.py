"""Hostile input at the HTTP and JSON level: a clear 4xx or a normal answer, never a 500 or a hang."""

from __future__ import annotations

import itertools
import json
import re
import socket
import time

import httpx
import pytest

from fakes import wait_until
from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from fakes.gateway_process import echo_gateway

    with echo_gateway(tmp_path_factory.mktemp("hostile"), KEY_HASH) as process:
        yield process


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


# ----- malformed values inside otherwise valid JSON ------------------------------------------------------------------

USER_X = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "echo", \xff "messages": []}', None),  # invalid UTF-8 between tokens
        (b'{"model": "echo", "messages": [{"role": "user", "content": "\\ud800"}]}', None),  # a lone surrogate escape
        (b'{"model": "ec\xc3", "messages": [{"role": "user", "content": "x"}]}', None),  # a truncated sequence
    ],
)
def test_invalid_utf8_anywhere_is_a_400(http, body, param):
    response = http.post(CHAT, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json" and response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"seed": "1"}, "seed"),
        ({"n": "2"}, "n"),
        ({"presence_penalty": [0]}, "presence_penalty"),
    ],
)
def test_numbers_sent_as_other_types_are_a_400(http, extra, param):
    response = http.post(CHAT, json={"model": "echo", "messages": USER_X, **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]


def test_numbers_of_the_right_type_are_served(http):
    body = {"model": "echo", "messages": USER_X, "max_tokens": 10, "temperature": 0.5, "top_p": 1, "seed": None}
    assert http.post(CHAT, json=body).status_code == 200


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (["hi"], "messages[0].content[0]"),
        ([{"text": "no type"}], "messages[0].content[0]"),
        ([{"type": 3, "text": "x"}], "messages[0].content[0]"),
        ([{"type": "text"}], "messages[0].content[0].text"),
        ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
        # text hidden in a nested shape would pass the safety filters unscanned
        ([{"type": "text", "text": "ok"}, {"type": "text", "text": ["my ssn is 078-05-1120"]}], "messages[0].content[1].text"),
        ({"type": "text", "text": "x"}, "messages[0].content"),
    ],
)
def test_wrong_content_parts_are_a_400(http, content, param):
    response = http.post(CHAT, json={"model": "echo", "messages": [{"role": "user", "content": content}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("messages", "reply"),
    [
        ([{"role": "user", "content": ""}], "echo: "),
        ([{"role": "user", "content": []}], "echo: "),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}], "echo: q"),
        ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]}], "echo: a"),
    ],
)
def test_empty_null_and_mixed_content_is_valid(http, messages, reply):
    response = http.post(CHAT, json={"model": "echo", "messages": messages})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == reply


# ----- slow clients ------------------------------------------------------------------------------------------------

CLIENT_TIMEOUT_S = 1.0


@pytest.fixture
def impatient_gateway(start_gateway):
    config = {
        "server": {"client_timeout_s": CLIENT_TIMEOUT_S, "keep_alive_s": CLIENT_TIMEOUT_S},
        "targets": {"echo": {"adapter": "echo"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["echo"]}},
    }
    gateway = start_gateway(config)
    yield gateway
    assert "Traceback" not in gateway.log_text()


def trickle(sock: socket.socket, data: bytes, seconds: float, pause: float = 0.1) -> tuple[bytes, float]:
    """Sends `data` a byte per `pause` (the slow client under test) until the server answers or closes.

    Returns what the server sent and how long after the first byte the connection was closed; fails if it stays
    open for `seconds`.
    """
    sock.setblocking(False)
    started = time.monotonic()
    received = b""
    for byte in itertools.cycle(data[i : i + 1] for i in range(len(data))):
        if time.monotonic() - started > seconds:
            raise AssertionError(f"still open after {seconds}s")
        try:
            sock.send(byte)
        except (BrokenPipeError, ConnectionResetError):
            return received + read_to_close(sock), time.monotonic() - started
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            time.sleep(pause)  # the client's own slowness, not synchronisation
            continue
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    raise AssertionError("unreachable")


def assert_request_timeout(reply: bytes) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"


def test_a_client_trickling_its_headers_is_cut_off_while_others_are_served(impatient_gateway):
    with socket.create_connection(("127.0.0.1", impatient_gateway.port), timeout=10) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        with httpx.Client(base_url=impatient_gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}) as other:
            assert other.post(CHAT, json={"model": "echo", "messages": USER_X}).status_code == 200
        reply, closed_after = trickle(slow, b"X-Slow: " + b"a" * 1000, seconds=10 * CLIENT_TIMEOUT_S)
    assert_request_timeout(reply)
    assert closed_after < 5 * CLIENT_TIMEOUT_S
    assert connections_cut(impatient_gateway) == {"request_too_slow": 1}


def test_a_client_trickling_its_body_gets_a_408(impatient_gateway):
    body = json.dumps({"model": "echo", "messages": USER_X}).encode()
    with socket.create_connection(("127.0.0.1", impatient_gateway.port), timeout=10) as slow:
        slow.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        reply, closed_after = trickle(slow, body, seconds=10 * CLIENT_TIMEOUT_S, pause=CLIENT_TIMEOUT_S / 4)
    assert_request_timeout(reply)
    assert closed_after < 5 * CLIENT_TIMEOUT_S
    assert connections_cut(impatient_gateway) == {"request_too_slow": 1}


def test_a_body_still_trickling_after_an_early_answer_is_cut_off(impatient_gateway):
    with socket.create_connection(("127.0.0.1", impatient_gateway.port), timeout=10) as slow:
        slow.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Length: 99999999\r\n\r\n"
        )
        reply, closed_after = trickle(slow, b"x", seconds=10 * CLIENT_TIMEOUT_S, pause=CLIENT_TIMEOUT_S / 4)
    assert reply.startswith(b"HTTP/1.1 413") and b'"request_too_large"' in reply, reply[:200]
    assert closed_after < 5 * CLIENT_TIMEOUT_S


def test_silent_and_idle_connections_are_closed(impatient_gateway):
    with socket.create_connection(("127.0.0.1", impatient_gateway.port), timeout=10 * CLIENT_TIMEOUT_S) as silent:
        assert silent.recv(1024) == b"", "a connection that never sends a byte is closed without an answer"
    with socket.create_connection(("127.0.0.1", impatient_gateway.port), timeout=10 * CLIENT_TIMEOUT_S) as idle:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := idle.recv(65536):  # returns b"" once the kept-alive connection is closed for idleness
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and reply.count(b"HTTP/1.1 ") == 1
    # The silent connection is counted; the idle one was served and closed as kept-alive connections are.
    assert connections_cut(impatient_gateway) == {"no_request": 1}


def test_many_slow_clients_do_not_starve_the_others(impatient_gateway):
    slow = [socket.create_connection(("127.0.0.1", impatient_gateway.port), timeout=10) for _ in range(50)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        with httpx.Client(base_url=impatient_gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}) as other:
            for _ in range(5):
                assert other.post(CHAT, json={"model": "echo", "messages": USER_X}).status_code == 200
        for sock in slow:
            assert_request_timeout(read_to_close(sock))
    finally:
        for sock in slow:
            sock.close()


@pytest.fixture
def long_stream_gateway(make_openai_upstream, start_gateway):
    """An impatient gateway before an upstream that streams a prompt of 200,000 words back, an event per word
    (~30 MB of SSE): far more than the socket buffers hold, so a client that does not read holds the relay up."""
    upstream = make_openai_upstream("long-streams")
    config = {
        "server": {"client_timeout_s": CLIENT_TIMEOUT_S},
        "targets": {"m": {"adapter": "openai", "base_url": upstream.base_url, "model": "upstream-model"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["m"]}},
    }
    gateway = start_gateway(config)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "word " * 200_000}]})
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the stall starts early
    client.connect(("127.0.0.1", gateway.port))
    client.sendall(request)
    wait_until(lambda: upstream.in_flight == 1, timeout=10, message="the stream to begin")
    yield gateway, upstream, client
    client.close()
    assert "Traceback" not in gateway.log_text()


def test_a_client_that_stops_reading_is_cut_off_and_its_upstream_stream_released(long_stream_gateway):
    # Otherwise it would hold its upstream stream, and that stream's pooled upstream connection, for as long as it
    # likes: the relay waits for the client's socket to drain.
    gateway, upstream, _ = long_stream_gateway
    wait_until(lambda: upstream.in_flight == 0, timeout=10 * CLIENT_TIMEOUT_S, message="the upstream stream to end")
    assert upstream.cancelled_streams == 1
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as other:
        assert other.post(CHAT, json={"model": "m", "messages": USER_X}).status_code == 200
    assert connections_cut(gateway) == {"not_reading": 1}


def test_a_client_reading_slowly_is_not_cut_off(long_stream_gateway):
    # 4 KB every CLIENT_TIMEOUT_S / 5: the gateway's buffer stays full (a paused writer) for longer than the
    # timeout, but the client takes something in every period, so it is served for as long as it keeps reading.
    _, upstream, client = long_stream_gateway
    started, received = time.monotonic(), 0
    while time.monotonic() - started < 3 * CLIENT_TIMEOUT_S:
        chunk = client.recv(4096)
        assert chunk, f"cut off after {time.monotonic() - started:.1f}s and {received} bytes"
        received += len(chunk)
        time.sleep(CLIENT_TIMEOUT_S / 5)  # the client's own slowness, not synchronisation
    assert upstream.in_flight == 1, "the stream still runs"
    assert connections_cut(long_stream_gateway[0]) == {}
    client.close()
    wait_until(lambda: upstream.in_flight == 0, timeout=10 * CLIENT_TIMEOUT_S, message="the upstream stream to end")


def connections_cut(gateway) -> dict[str, float]:
    """switchyard_connections_cut_total by reason, as the gateway's /metrics shows it."""
    text = httpx.get(gateway.base_url + "/metrics", timeout=10).text
    found = re.findall(r'^switchyard_connections_cut_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as a close)."""
    sock.settimeout(10 * CLIENT_TIMEOUT_S)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out
