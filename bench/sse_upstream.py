"""Tiny OpenAI-style SSE upstream for time-to-first-chunk measurements.

A raw asyncio server (no framework) so its own latency is as small and as steady
as possible: the response headers and the first chunk leave in one write as soon
as the request is read, then a few more chunks follow `--interval-ms` apart, then
an optional usage chunk and `[DONE]`. Non-stream requests get a plain JSON reply.

    python bench/sse_upstream.py --port 9002
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable

MODEL = "bench-model"
CHUNK_ID = "chatcmpl-bench-sse"
WORDS = ("Hello", " from", " the", " bench", " upstream", ".")


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    payload = {
        "id": CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _usage_chunk() -> bytes:
    payload = {
        "id": CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)},
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _http_chunk(data: bytes) -> bytes:
    """Frame bytes as one HTTP/1.1 chunk (chunked transfer encoding)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


JSON_REPLY = json.dumps(
    {
        "id": "chatcmpl-bench-json",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)},
    },
    separators=(",", ":"),
).encode()


def _simple(status: str, body: bytes, ctype: str) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _stream(writer: asyncio.StreamWriter, interval_s: float, include_usage: bool) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    head += b"transfer-encoding: chunked\r\n\r\n"
    # Headers and the first chunk in one write: first body bytes leave with no delay.
    writer.write(head + _http_chunk(_chunk({"role": "assistant", "content": ""})))
    await writer.drain()
    for word in WORDS:
        await asyncio.sleep(interval_s)
        writer.write(_http_chunk(_chunk({"content": word})))
    tail = _chunk({}, finish="stop")
    if include_usage:
        tail += _usage_chunk()
    writer.write(_http_chunk(tail + b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval_s: float) -> None:
    try:
        while True:  # keep-alive: serve requests until the client closes
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = raw.decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if method == "POST" and path.startswith("/v1/chat/completions"):
                try:
                    req = json.loads(body or b"{}")
                except ValueError:
                    req = {}
                if req.get("stream"):
                    usage = bool((req.get("stream_options") or {}).get("include_usage"))
                    await _stream(writer, interval_s, usage)
                else:
                    writer.write(_simple("200 OK", JSON_REPLY, "application/json"))
            elif path in ("/readyz", "/healthz"):
                writer.write(_simple("200 OK", b"ok", "text/plain"))
            else:
                writer.write(_simple("404 Not Found", b'{"error":"not found"}', "application/json"))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def _serve(host: str, port: int, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handle, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def serve(host: str, port: int, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
    """Serve `handle` until Ctrl-C, on uvloop when installed."""
    try:
        import uvloop  # the same loop the gateway uses; steadier timings than asyncio's default

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(_serve(host, port, handle))
    except KeyboardInterrupt:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval-ms", type=float, default=1.0, help="gap between later chunks")
    args = parser.parse_args()
    interval_s = args.interval_ms / 1000
    serve(args.host, args.port, lambda reader, writer: _handle(reader, writer, interval_s))


if __name__ == "__main__":
    main()
