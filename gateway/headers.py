"""Gateway headers on every response, including those the pipeline does not write itself.

Pipeline endpoints set their own (route, target, attempts and overhead need the request's
journey), so they pass straight through; everything else — /v1/models, probes, 404s — gets a
request id, `x-switchyard-target: none` and the overhead here.
"""

from __future__ import annotations

from collections.abc import Collection
from time import perf_counter
from typing import Any

from gateway.exchange import request_id_from


class GatewayHeaders:
    def __init__(self, app: Any, pipeline_paths: Collection[str]) -> None:
        self.app = app
        self._pipeline_paths = frozenset(pipeline_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self._pipeline_paths:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = request_id_from(dict(scope["headers"]).get(b"x-request-id"))

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                overhead = f"{(perf_counter() - started) * 1000:.3f}".encode()
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id),
                        (b"x-switchyard-target", b"none"),
                        (b"x-switchyard-overhead-ms", overhead),
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)
