"""The ASGI application: the pipeline's endpoints, and Starlette routing for everything else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.base import Endpoint
from gateway.auth import OperatorKeys
from gateway.config import ConfigError
from gateway.drain import Drain, DrainAwareMiddleware
from gateway.errors import GatewayError
from gateway.headers import GatewayHeaders
from gateway.openapi import openapi_route
from gateway.pipeline import Pipeline
from gateway.reload import PolicyReloader
from gateway.runtime import Runtime
from gateway.settings import Settings
from observability.recorder import Recorder
from observability.settings import observability_settings

log = logging.getLogger("switchyard")

# In the lifespan state, which uvicorn hands each connection's protocol: how the server's deadlines
# (gateway/server.py) count the connections they cut off.
CONNECTION_CUT = "switchyard.connection_cut"


class _PipelineEndpoint:
    """A raw ASGI endpoint: the pipeline reads and writes the wire itself, for speed."""

    def __init__(self, pipeline: Pipeline, endpoint: Endpoint) -> None:
        self._pipeline = pipeline
        self._endpoint = endpoint

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._pipeline.handle(scope, receive, send, self._endpoint)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers=headers, media_type="application/json")


def _error(error: GatewayError) -> Response:
    headers = {k.decode(): v.decode() for k, v in error.headers}
    return Response(error.body(), error.status, headers=headers, media_type="application/json")


def create_app(settings: Settings) -> Dispatch:
    runtime = Runtime(settings)
    recorder = Recorder(observability_settings(settings.config.observability, os.environ), runtime)
    pipeline = Pipeline(runtime, recorder)
    server = settings.config.server
    reloader = PolicyReloader(runtime, os.environ, server.policy_watch_s)
    drain = Drain(runtime, server.drain_grace_s, server.drain_timeout_s)

    async def metrics(request: Request) -> Response:
        if (refusal := _refused(runtime.metrics_access, request)) is not None:
            return refusal
        body, content_type = recorder.exposition()
        return Response(body, headers={"content-type": content_type})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        limits = runtime.limiter.health()
        if runtime.ready():
            return _json({"status": "degraded" if limits.get("redis") == "down" else "ready", **limits})
        reason = "draining" if runtime.draining else "starting" if runtime.limiter.ready() else "redis unreachable"
        return _json({"status": "not ready", "reason": reason, **limits}, 503)

    async def models(request: Request) -> Response:
        try:
            tenant = runtime.authenticator.authenticate(_raw_headers(request))
        except GatewayError as error:
            return _error(error)
        return _json({"object": "list", "data": [runtime.model_card(name, tenant) for name in runtime.models_for(tenant)]})

    async def admin_policy(request: Request) -> Response:
        if (refusal := _refused(runtime.admin, request)) is not None:
            return refusal
        status = runtime.policy
        return _json(
            {
                "version": status.version,
                "sha256": status.digest,
                "loaded_at": status.loaded_at,
                "files": list(runtime.settings.policies.files),
                "routes": [route.name for route in runtime.router.routes],
                "last_error": status.last_error,
            }
        )

    async def admin_reload(request: Request) -> Response:
        if (refusal := _refused(runtime.admin, request)) is not None:
            return refusal
        try:
            changed = await reloader.reload()
        except ConfigError as exc:
            message = "Policy rejected; the previous version keeps serving:\n" + str(exc)
            return _error(GatewayError(400, message, code="invalid_policy"))
        status = runtime.policy
        return _json({"reloaded": changed, "version": status.version, "sha256": status.digest})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return _error(GatewayError(405, f"Method {request.method} is not allowed here.", code="method_not_allowed"))
        if exc.status_code == 404:
            return _error(GatewayError(404, f"No such endpoint: {request.url.path[:200]}", code="unknown_url"))
        return _error(GatewayError(exc.status_code, str(exc.detail), code="http_error"))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s: %s", request.url.path[:200], type(exc).__name__)
        return _error(GatewayError(500, "The gateway hit an internal error.", code="internal_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await runtime.start()
        await recorder.start()
        loop = asyncio.get_running_loop()
        watcher = None
        if runtime.settings.config.policies and runtime.settings.config.server.policy_watch_s > 0:
            watcher = loop.create_task(reloader.watch())
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, reloader.reload_soon)
        drain.install()
        try:
            yield {CONNECTION_CUT: recorder.connection_cut}
        finally:
            drain.uninstall()
            if watcher is not None:
                watcher.cancel()
            await runtime.close()
            await recorder.close()

    routes = [
        Route("/v1/chat/completions", _PipelineEndpoint(pipeline, Endpoint.CHAT), methods=["POST"]),
        Route("/v1/completions", _PipelineEndpoint(pipeline, Endpoint.COMPLETION), methods=["POST"]),
        Route("/v1/embeddings", _PipelineEndpoint(pipeline, Endpoint.EMBEDDING), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        openapi_route(),
        Route("/admin/policy", admin_policy, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
    ]
    if recorder.metrics is not None:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    pipeline_apps = {route.path: route.app for route in routes if isinstance(route.app, _PipelineEndpoint)}
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(DrainAwareMiddleware, drain=drain),
            Middleware(GatewayHeaders),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.runtime = runtime
    return Dispatch(app, pipeline_apps, drain)


class Dispatch:
    """POSTs to the pipeline's endpoints go straight to it (counted by the drain); everything else goes through
    Starlette: its router, middleware and error pages. Starlette's layers cost ≈ 4 % of a pipeline request's CPU,
    and the pipeline needs none of them: it answers its own errors in OpenAI's shape."""

    def __init__(self, starlette: Starlette, pipeline_apps: dict[str, Any], drain: Drain) -> None:
        self.starlette = starlette
        self._direct = {path: DrainAwareMiddleware(endpoint, drain) for path, endpoint in pipeline_apps.items()}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._direct.get(scope["path"])
            if endpoint is not None:
                try:
                    await endpoint(scope, receive, send)
                except Exception as exc:  # a bug: answered as Starlette's error handler would, if nothing was sent yet
                    log.error("unhandled error on %s: %s", scope["path"][:200], type(exc).__name__)
                    with contextlib.suppress(Exception):  # (the response had begun: uvicorn closes the connection)
                        await _error(GatewayError(500, "The gateway hit an internal error.", code="internal_error"))(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def _raw_headers(request: Request) -> dict[bytes, bytes]:
    return dict(request.scope["headers"])


def _refused(keys: OperatorKeys | None, request: Request) -> Response | None:
    """The 401 for a request to an operator endpoint without one of its keys; None when it may go on (or the
    endpoint needs no key)."""
    if keys is None:
        return None
    try:
        keys.check(_raw_headers(request))
    except GatewayError as error:
        return _error(error)
    return None
