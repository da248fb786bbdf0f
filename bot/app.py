"""The composition root: build the ASGI application from settings."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from bot.settings import Settings
from domain.clock import Clock, SystemClock
from handlers.api import health, marketing
from handlers.api.deps import Services
from handlers.api.errors import install_error_handlers
from storage.db import SessionFactory, make_engine, make_session_factory

log = logging.getLogger(__name__)


def build_services(
    settings: Settings, *, session_factory: SessionFactory | None = None, clock: Clock | None = None
) -> Services:
    """Create the engine and session factory (or use the ones given, in tests)."""
    engine = make_engine(settings.DATABASE_URL)
    return Services(
        engine=engine,
        session_factory=session_factory or make_session_factory(engine),
        clock=clock or SystemClock(),
    )


def build_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """Build the FastAPI app with every router; nothing is created at import time."""
    app = FastAPI(
        title="Salesbot",
        version="0.1.0",
        description="Slack/Gmail chat-ops bot for re-engagement campaigns.",
    )
    app.state.settings = settings
    app.state.services = services or build_services(settings)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(marketing.router)
    return app
