"""Serve an ASGI app on a loopback port in a background thread (tests, demo, sandbox).

uvicorn logs every request under `uvicorn.access`, whichever server answered it. A stand-in
served with `access_logger="sandbox.slack.access"` logs its requests under that name instead,
and at DEBUG only: the Slack stand-in's `POST /api/chat.postMessage` is neither mistaken for
the app's traffic nor repeated at every message the app posts.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import uvicorn

UVICORN_ACCESS: Final = "uvicorn.access"
# The servers that log their requests under a logger of their own, by their thread's id
# (uvicorn logs a request in the thread of the event loop that answered it).
_OWN_ACCESS_LOGGERS: dict[int, logging.Logger] = {}


class StandInAccess(logging.Filter):
    """On uvicorn's access logger: hand a stand-in's request line to the stand-in's own
    logger, at DEBUG, and keep it out of uvicorn's."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = _OWN_ACCESS_LOGGERS.get(record.thread or 0)
        if own is None:
            return True
        if own.isEnabledFor(logging.DEBUG):
            if isinstance(record.args, tuple):
                own.debug(record.msg, *record.args)
            else:
                own.debug(record.getMessage())
        return False


@dataclass
class RunningServer:
    """A server running in a thread; `url` ends without a slash."""

    url: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        _OWN_ACCESS_LOGGERS.pop(self._thread.ident or 0, None)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    access_logger: str | None = None,
) -> RunningServer:
    """Start `app` under uvicorn on a loopback port and return once it accepts connections.
    With `access_logger`, its requests are logged under that name at DEBUG, not under
    `uvicorn.access` (a stand-in's traffic is not the app's)."""
    port = port or free_port(host)
    # log_config=None: uvicorn's loggers keep printing through the process's handler
    # (bot.logs, which redacts capability URLs) instead of getting handlers of their own.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox-{port}", daemon=True)
    thread.start()
    if access_logger is not None:
        _OWN_ACCESS_LOGGERS[thread.ident or 0] = logging.getLogger(access_logger)
        uvicorn_access = logging.getLogger(UVICORN_ACCESS)
        if not any(isinstance(f, StandInAccess) for f in uvicorn_access.filters):
            uvicorn_access.addFilter(StandInAccess())
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"sandbox server on {host}:{port} did not start")
        time.sleep(0.01)
    return RunningServer(url=f"http://{host}:{port}", port=port, _server=server, _thread=thread)
