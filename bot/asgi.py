"""The web application as uvicorn imports it in each process of `salesbot web`."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from bot.app import build_app
from bot.settings import load_settings


def web_app() -> FastAPI:
    """Build the endpoints from the environment's settings, without the background work."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return build_app(settings, start_background=False)
