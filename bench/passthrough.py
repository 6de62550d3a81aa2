"""The ceiling: the barest Starlette + aiohttp passthrough.

It does the minimum any Python gateway on this stack must do per request: parse
HTTP (httptools), run one Starlette route, forward the body over one pooled
aiohttp session and copy back status, content type and bytes (SSE replies are
relayed chunk by chunk). The gateway is judged as a ratio against this, so keep
it bare: no auth, no logging, no JSON parsing.

    python bench/passthrough.py --port 9001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

CHAT_PATH = "/v1/chat/completions"


def create_app(upstream: str) -> Starlette:
    """Build the app; state lives on app.state, created in the lifespan (one loop, one pool)."""
    target = upstream.rstrip("/") + CHAT_PATH

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # limit=0: no client-side cap, so the pool never queues requests the server already accepted.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        async with aiohttp.ClientSession(connector=connector) as session:
            app.state.session = session
            yield

    async def chat(request: Request) -> Response:
        body = await request.body()
        session: aiohttp.ClientSession = request.app.state.session
        upstream_resp = await session.post(target, data=body, headers={"content-type": "application/json"})
        ctype = upstream_resp.headers.get("content-type", "application/json")
        if ctype.startswith("text/event-stream"):
            # SSE: relay chunks as they arrive (the streaming ceiling for time-to-first-chunk).
            return StreamingResponse(relay(upstream_resp), status_code=upstream_resp.status, media_type=ctype)
        try:
            data = await upstream_resp.read()
        finally:
            upstream_resp.release()
        return Response(content=data, status_code=upstream_resp.status, media_type=ctype)

    async def relay(upstream_resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream_resp.content.iter_any():
                yield chunk
        finally:
            upstream_resp.release()

    async def readyz(request: Request) -> Response:
        # Only so the harness can time start-to-ready the same way as for the gateway.
        return Response(b"ok", media_type="text/plain")

    return Starlette(
        routes=[Route(CHAT_PATH, chat, methods=["POST"]), Route("/readyz", readyz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
