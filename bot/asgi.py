"""The web application as uvicorn imports it in each process of `salesbot web`."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from bot.app import build_app
from bot.logs import configure_logging
from bot.settings import load_settings


def web_app() -> FastAPI:
    """Build the endpoints from the environment's settings, without the background work."""
    settings = load_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    app = build_app(settings, start_background=False)
    # The objects built at startup live as long as the process: out of the collector's
    # sight, a full collection no longer walks them (it paused a burst of acks by
    # about 100 ms in bench ack).
    gc.freeze()
    return app
