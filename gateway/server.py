"""Serving: uvicorn with uvloop and httptools, one process or several workers."""

from __future__ import annotations

import logging
import os

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.settings import Settings, demo_settings, load_settings

CONFIG_ENV = "SWITCHYARD_CONFIG"


def _uvicorn_options(host: str, port: int) -> dict:
    return {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
    }


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers == 1:
        uvicorn.Server(uvicorn.Config(create_app(settings), **_uvicorn_options(host, port))).run()
        return
    # Worker processes import the app themselves, so they re-read the same file.
    if settings.source is not None:
        os.environ[CONFIG_ENV] = settings.source
    uvicorn.run("gateway.server:app_from_environment", factory=True, workers=workers, **_uvicorn_options(host, port))


def app_from_environment() -> Starlette:
    path = os.environ.get(CONFIG_ENV)
    return create_app(load_settings(path, os.environ) if path else demo_settings())
