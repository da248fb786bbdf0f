"""Serve an ASGI app on a loopback port in a background thread (tests, demo, sandbox)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


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


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> RunningServer:
    """Start `app` under uvicorn on a loopback port and return once it accepts connections."""
    port = port or free_port(host)
    # log_config=None: uvicorn's loggers keep printing through the process's handler
    # (bot.logs, which redacts capability URLs) instead of getting handlers of their own.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"sandbox server on {host}:{port} did not start")
        time.sleep(0.01)
    return RunningServer(url=f"http://{host}:{port}", port=port, _server=server, _thread=thread)
