"""Gateway headers on the responses the pipeline does not write itself.

Pipeline requests never come through here (app.Dispatch sends them straight to the pipeline, which sets
route, target, attempts and overhead from the request's journey); everything else — /v1/models, probes,
404s, a GET on a pipeline path — gets a request id, `x-switchyard-target: none` and the overhead here.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from gateway.exchange import request_id_from


class GatewayHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
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
