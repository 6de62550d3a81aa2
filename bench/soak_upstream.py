"""The soak's upstream: bench/sse_upstream.py's replies, plus counts of what it finished and what was cut short.

A raw asyncio server (the gateway, not the upstream, must be the slow part). Streams send `--chunks` content
events `--interval-ms` apart and drain after each one, so a gateway that hangs up mid-stream shows as an aborted
stream here. `GET /stats` answers the counters as JSON:

    json_done        JSON replies written whole
    stream_started   streams begun
    stream_done      streams written whole, [DONE] included
    stream_aborted   streams whose connection went away before their end
    connections      connections open right now (keep-alive ones included)

    python bench/soak_upstream.py --port 9003 [--chunks 8] [--interval-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter

from sse_upstream import JSON_REPLY, _chunk, _http_chunk, _simple, _usage_chunk, serve

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class SoakUpstream:
    def __init__(self, chunks: int, interval_s: float) -> None:
        self.chunks = chunks
        self.interval_s = interval_s
        self.stats: Counter[str] = Counter()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.stats["connections"] -= 1
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection is over."""
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False
        lines = raw.decode("latin-1").split("\r\n")
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length") or 0))
        if method == "POST" and path == "/v1/chat/completions":
            if json.loads(body or b"{}").get("stream"):
                await self._stream(writer)
            else:
                writer.write(_simple("200 OK", JSON_REPLY, "application/json"))
                await writer.drain()
                self.stats["json_done"] += 1
        elif path == "/stats":
            writer.write(_simple("200 OK", json.dumps(dict(self.stats)).encode(), "application/json"))
        elif path == "/readyz":
            writer.write(_simple("200 OK", b"ok", "text/plain"))
        else:
            writer.write(_simple("404 Not Found", b'{"error":"not found"}', "application/json"))
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        self.stats["stream_started"] += 1
        try:
            writer.write(STREAM_HEAD + _http_chunk(_chunk({"role": "assistant", "content": ""})))
            await writer.drain()
            for index in range(self.chunks):
                await asyncio.sleep(self.interval_s)
                if writer.is_closing():
                    raise ConnectionResetError
                writer.write(_http_chunk(_chunk({"content": f" w{index}"})))
                await writer.drain()
            tail = _chunk({}, finish="stop") + _usage_chunk() + b"data: [DONE]\n\n"
            writer.write(_http_chunk(tail) + b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            self.stats["stream_aborted"] += 1
            raise
        self.stats["stream_done"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=8, help="content events per stream")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="gap between a stream's events")
    args = parser.parse_args()
    serve(args.host, args.port, SoakUpstream(args.chunks, args.interval_ms / 1000).handle)


if __name__ == "__main__":
    main()
