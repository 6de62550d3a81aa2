"""Serving: uvicorn with uvloop and httptools, one process or several workers."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.settings import Settings, demo_settings, load_settings

CONFIG_ENV = "SWITCHYARD_CONFIG"


def _uvicorn_options(host: str, port: int, drain_timeout_s: float) -> dict:
    return {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        # How long requests in flight get once a drain (gateway/drain.py) stops accepting connections.
        "timeout_graceful_shutdown": drain_timeout_s,
    }


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    _configure_logging()
    options = _uvicorn_options(host, port, settings.config.server.drain_timeout_s)
    if workers == 1:
        signal.signal(signal.SIGTERM, _nothing_to_drain)
        uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run()
        return
    # Worker processes import the app themselves, so they re-read the same file. uvicorn's supervisor sends each
    # worker SIGTERM, and each drains on its own; the supervisor exits 0 once they have all finished.
    if settings.source is not None:
        os.environ[CONFIG_ENV] = settings.source
    uvicorn.run("gateway.server:app_from_environment", factory=True, workers=workers, **options)


def _nothing_to_drain(signum: int, frame: FrameType | None) -> None:
    """SIGTERM lands here only when there is nothing (left) to drain: before uvicorn has taken the signal over, or
    when uvicorn raises it again, under the handler that was there before it, after shutting down."""
    raise SystemExit(0)


def app_from_environment() -> Starlette:
    _configure_logging()  # a worker is a fresh interpreter: the supervisor's logging setup does not carry over
    path = os.environ.get(CONFIG_ENV)
    return create_app(load_settings(path, os.environ) if path else demo_settings())
