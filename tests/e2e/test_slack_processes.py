"""Deployed as the README says: `salesbot web` acks in its processes, `salesbot worker` acts.

Real processes, real signed requests over HTTP, the Slack stand-in on loopback: the
click is stored by a web process before its ack and run by the worker process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bot.cli import app as cli
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID
from storage.db import make_session_factory
from tests.support.accounts import create_org, link_slack_team
from tests.support.slack import (
    ServedSlack,
    approve_click_body,
    signed_headers,
)
from tests.support.slack_app import REP, SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _env(database_url: str, slack_api: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SALESBOT_SECRET_KEY": "test-secret-key-for-the-web-and-worker-processes-0123456789",
        "SLACK_API_URL": slack_api,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "LOG_LEVEL": "WARNING",
    }


def test_a_click_acked_by_a_web_process_is_acted_on_by_the_worker_process(
    committed_engine: Engine, served_slack: ServedSlack
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", "maria@lonestar.example.com", real_name="Maria Lopez")
    with make_session_factory(committed_engine)() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        session.commit()
    env = _env(committed_engine.url.render_as_string(hide_password=False), served_slack.api_url)
    port = free_port()
    salesbot = [sys.executable, "-c", "from bot.cli import main; main()"]
    web = subprocess.Popen(
        [*salesbot, "web", "--port", str(port), "--processes", "2"], env=env, cwd=ROOT
    )
    worker = subprocess.Popen([*salesbot, "worker"], env=env, cwd=ROOT)
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, what="salesbot web answering")
        body = approve_click_body(987654, None, user=REP)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/slack/events",
            content=body.encode(),
            headers=signed_headers(body, signing_secret=SIGNING_SECRET),
            timeout=10,
        )
        assert answer.status_code == 200
        told = wait_until(
            lambda: [c.params.get("text") for c in slack.calls("chat.postEphemeral")],
            timeout=30,
            what="the worker's answer to the click",
        )
        assert told == ["⚠️ card 987654 not found"]
        unsigned = httpx.post(f"http://127.0.0.1:{port}/slack/events", content=body, timeout=10)
        assert unsigned.status_code == 401
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            process.wait(timeout=30)
    assert worker.returncode == 0


@pytest.mark.parametrize("command", ["web", "worker"])
def test_web_and_worker_refuse_to_run_without_credentials(command: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [command],
        env={
            "DATABASE_URL": f"sqlite:///{tmp_path / 'salesbot.db'}",
            "SALESBOT_SECRET_KEY": "test-secret-key-for-the-web-and-worker-processes-0123456789",
            "SLACK_BOT_TOKEN": "",
            "SLACK_SIGNING_SECRET": "",
            "SLACK_CLIENT_ID": "",
            "GOOGLE_CLIENT_ID": "",
            "ANTHROPIC_API_KEY": "",
        },
    )
    assert result.exit_code == 2
    assert "salesbot serve" in result.output


def test_a_worker_sent_sigterm_says_it_is_stopping_and_when_it_stopped(
    committed_engine: Engine, served_slack: ServedSlack
) -> None:
    """A deployer who stops the worker learns that it finishes the work in hand, and when it
    is done (before, it exited without a word)."""
    env = _env(committed_engine.url.render_as_string(hide_password=False), served_slack.api_url)
    salesbot = [sys.executable, "-c", "from bot.cli import main; main()"]
    worker = subprocess.Popen(
        [*salesbot, "worker"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert first == "salesbot worker running; stop it with Ctrl-C or SIGTERM\n"
        worker.send_signal(signal.SIGTERM)
        rest = worker.stderr.read()
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert rest.splitlines() == [
        "salesbot worker stopping: finishing the work in hand, taking no more",
        "salesbot worker stopped",
    ]


@pytest.mark.parametrize(
    ("command", "slack", "missing"),
    [
        ("web", {"SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN}, "SLACK_SIGNING_SECRET"),
        ("worker", {"SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN}, "SLACK_SIGNING_SECRET"),
        ("serve", {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}, "SLACK_SIGNING_SECRET"),
        ("web", {"SLACK_CLIENT_ID": "1.2", "SLACK_SIGNING_SECRET": "s"}, "SLACK_CLIENT_SECRET"),
    ],
)
def test_a_slack_setting_left_out_stops_the_server_with_one_line(
    command: str, slack: dict[str, str], missing: str, committed_engine: Engine
) -> None:
    """Without the signing secret (or the OAuth client secret) the server started with no
    Slack endpoint at all, and said nothing: Slack's requests met a 404."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SLACK_", "GOOGLE_", "ANTHROPIC_"))
    }
    env.update(
        DATABASE_URL=committed_engine.url.render_as_string(hide_password=False),
        SALESBOT_SECRET_KEY="test-secret-key-for-the-web-and-worker-processes-0123456789",
        **slack,
    )
    salesbot = [sys.executable, "-c", "from bot.cli import main; main()"]
    done = subprocess.run(
        [*salesbot, command, *(["--port", str(free_port())] if command != "worker" else [])],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: setting {missing} is missing: ")
