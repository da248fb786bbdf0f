"""Start `salesbot` processes quickly: fork them from an interpreter that imported it once.

Importing Salesbot (FastAPI, Bolt, the Google client, SQLAlchemy) costs seconds of CPU,
and 3 to 40 s were measured per process on the shared test machine; a test that kills
and restarts a process a dozen times would spend its time importing. This server imports
once, starts no thread and opens no connection, then forks a child per request: each
child is a separate process running `bot.cli.main` with its own environment and
arguments, killed for real (by a fault point's `os._exit`, or by a signal from the test).

Protocol, one JSON line each way on stdin/stdout:
`{"start": [args], "env": {...}, "log": path}` → `{"pid": n}`;
`{"poll": pid}` → `{"exit": code | null}` (a signal is its negative number, as Popen says);
`{"wait": pid, "timeout": s}` → `{"exit": code | null}`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def _start(args: list[str], env: dict[str, str], log: str) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The child: its own output file, no stdin, the requested environment, then salesbot.
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["salesbot", *args]
        from bot.cli import main

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the child's log
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_ended: dict[int, int] = {}  # children already reaped, with their exit codes


def _poll(pid: int, *, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        if pid in _ended:
            return _ended[pid]
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _ended[pid] = _exit_code(status)
            return _ended[pid]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def serve() -> None:
    """Answer requests from stdin until it closes."""
    import importlib

    # The expensive imports, done once before any fork.
    for module in ("bot.app", "bot.cli", "bot.asgi", "uvicorn.main", "psycopg", "sqlite3"):
        importlib.import_module(module)

    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if "start" in request:
            answer: dict[str, object] = {
                "pid": _start(request["start"], request["env"], request["log"])
            }
        elif "poll" in request:
            answer = {"exit": _poll(int(request["poll"]), timeout=0)}
        else:
            answer = {"exit": _poll(int(request["wait"]), timeout=float(request["timeout"]))}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class ForkServer:
    """The test's end: start the server, then start, poll and wait for its children."""

    def __init__(self, cwd: Path) -> None:
        self._server = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd,
            text=True,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self._server.stdout is not None
        line = self._server.stdout.readline()
        if not line:
            raise RuntimeError("the fork server ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._server.stdin is not None
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        return self._read()

    def start(self, args: list[str], *, env: dict[str, str], log: Path) -> int:
        """Fork `salesbot <args>` with `env`, its output in `log`; return its pid."""
        return int(self._ask({"start": args, "env": env, "log": str(log)})["pid"])

    def poll(self, pid: int) -> int | None:
        """The exit code of a child that ended, None while it runs."""
        code = self._ask({"poll": pid})["exit"]
        return None if code is None else int(code)

    def wait(self, pid: int, *, timeout: float) -> int | None:
        """Wait for a child to end; its exit code, or None after `timeout` seconds."""
        code = self._ask({"wait": pid, "timeout": timeout})["exit"]
        return None if code is None else int(code)

    def close(self) -> None:
        """End the server (its children must have ended)."""
        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(timeout=10)


if __name__ == "__main__":
    serve()
