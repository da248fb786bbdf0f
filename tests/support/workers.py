"""Real `salesbot worker` processes for the crash tests, forked from the fork server, each
with one fault point armed (`SALESBOT_FAULT_POINTS`) and the time read from a file only the
test moves (`SALESBOT_CLOCK_FILE`)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Self

from sqlalchemy import Engine

from domain.faults import EXIT_CODE
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from tests.support.api import make_settings
from tests.support.forkserver import ForkServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET


def worker_env(
    engine: Engine,
    slack: ServedSlack,
    logs: Path,
    *,
    lease_seconds: int,
    **more: str,
) -> dict[str, str]:
    """The environment of a worker on `engine` posting to the Slack stand-in: leases of
    `lease_seconds`, a poll every 0.2 s, the clock in `logs/now.txt`; `more` adds settings."""
    url = engine.url.render_as_string(hide_password=False)
    return {
        **os.environ,
        "SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DATABASE_URL": url,
        "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
        "WORK_LEASE_SECONDS": str(lease_seconds),
        "WORKER_POLL_SECONDS": "0.2",
        "SALESBOT_CLOCK_FILE": str(logs / "now.txt"),
        "LOG_LEVEL": "WARNING",
        **more,
    }


class Workers:
    """Starts `salesbot worker` processes and waits for them to die at their fault point;
    as a context manager, kills those still running when it ends."""

    def __init__(self, forks: ForkServer, env: dict[str, str], logs: Path) -> None:
        self._forks = forks
        self._env = env
        self._logs = logs
        self.pids: list[int] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()

    def start(self, fault_point: str = "") -> int:
        log = self._logs / f"worker-{len(self.pids):02d}.log"
        pid = self._forks.start(
            ["worker", "--nice", "0"],
            env={**self._env, "SALESBOT_FAULT_POINTS": fault_point},
            log=log,
        )
        self.pids.append(pid)
        return pid

    def wait_killed(self, pid: int, point: str) -> None:
        code = self._forks.wait(pid, timeout=60)
        log = self._logs / f"worker-{self.pids.index(pid):02d}.log"
        assert code == EXIT_CODE, (
            f"exit {code} instead of dying at {point}: {log.read_text()[-2000:]}"
        )

    def running(self, pid: int) -> bool:
        return self._forks.poll(pid) is None

    def stop_all(self) -> None:
        for pid in self.pids:
            if self._forks.poll(pid) is None:
                os.kill(pid, signal.SIGKILL)
                self._forks.wait(pid, timeout=10)
