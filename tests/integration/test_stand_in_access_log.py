"""A stand-in's requests are logged under its own name at DEBUG, never as the app's traffic."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.logs import configure_logging
from sandbox.server import serve_in_thread


def _app() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/api/chat.postMessage", hello, methods=["POST"])])


@pytest.fixture
def logged() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    yield buffer, root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _served_calls(level: str, logged: tuple[io.StringIO, logging.Logger]) -> list[str]:
    buffer, _ = logged
    stand_in = serve_in_thread(_app(), access_logger="sandbox.test.access")
    app = serve_in_thread(_app())
    try:
        # After the servers start: uvicorn sets its loggers' levels as a server starts.
        configure_logging(level, "text", stream=buffer)
        for server in (stand_in, app):
            assert httpx.post(f"{server.url}/api/chat.postMessage", timeout=5).status_code == 200
    finally:
        stand_in.stop()
        app.stop()
    lines = buffer.getvalue().splitlines()
    return [line for line in lines if "chat.postMessage" in line and ".access" in line]


def test_at_info_only_the_apps_own_requests_are_in_the_access_log(
    logged: tuple[io.StringIO, logging.Logger],
) -> None:
    lines = _served_calls("INFO", logged)

    assert len(lines) == 1, lines
    assert "uvicorn.access" in lines[0]


def test_at_debug_a_stand_ins_requests_show_under_its_own_name(
    logged: tuple[io.StringIO, logging.Logger],
) -> None:
    lines = _served_calls("DEBUG", logged)

    assert len(lines) == 2, lines
    assert sum("sandbox.test.access" in line for line in lines) == 1
    assert sum("uvicorn.access" in line for line in lines) == 1
