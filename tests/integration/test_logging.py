"""Log lines carry their extras, in text or JSON, and never a capability token or a bound
SQL parameter."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.logs import configure_logging
from domain.clock import FixedClock
from handlers.api.errors import install_error_handlers
from sandbox.server import serve_in_thread
from tests.support.api import make_api_world


@pytest.fixture
def log_output() -> Iterator[Callable[[str], io.StringIO]]:
    """Configure logging as the commands do, into a buffer; restore the test's afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved_uvicorn = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in uvicorn_loggers]

    def configure(log_format: str) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging("INFO", log_format, stream=buffer)
        return buffer

    yield configure
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for logger, handlers, propagate, level in saved_uvicorn:
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


def _failing_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fails")
    def fails() -> None:
        raise RuntimeError("the database went away")

    return app


def _error_id(answer: httpx.Response) -> str:
    message: str = answer.json()["error"]["message"]
    return message.rsplit("error id ", 1)[1].rstrip(")")


def test_the_error_id_shown_to_a_client_is_in_the_log_line(
    log_output: Callable[[str], io.StringIO],
) -> None:
    buffer = log_output("text")
    answer = TestClient(_failing_app(), raise_server_exceptions=False).get("/fails")
    assert answer.status_code == 500
    [first_line] = [ln for ln in buffer.getvalue().splitlines() if "handlers.api.errors" in ln]
    assert first_line.endswith(
        f"ERROR handlers.api.errors: unexpected error error_id={_error_id(answer)}"
    )
    assert "RuntimeError: the database went away" in buffer.getvalue()


def test_a_warning_prints_its_reason_as_key_value(log_output: Callable[[str], io.StringIO]) -> None:
    buffer = log_output("text")
    logging.getLogger("domain.outreach").warning(
        "card message failed", extra={"card_id": 7, "reason": "channel_not_found: no access"}
    )
    expected = 'card message failed card_id=7 reason="channel_not_found: no access"'
    assert buffer.getvalue().rstrip("\n").endswith(f"WARNING domain.outreach: {expected}")


def test_log_format_json_prints_one_object_a_line_with_the_extras_as_keys(
    log_output: Callable[[str], io.StringIO],
) -> None:
    buffer = log_output("json")
    answer = TestClient(_failing_app(), raise_server_exceptions=False).get("/fails")
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    [record] = [r for r in records if r["logger"] == "handlers.api.errors"]
    assert record["level"] == "ERROR"
    assert record["logger"] == "handlers.api.errors"
    assert record["message"] == "unexpected error"
    assert record["error_id"] == _error_id(answer)
    assert "RuntimeError: the database went away" in record["exc_info"]
    assert set(record) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "request_id",
        "error_id",
        "exc_info",
    }


def test_the_access_log_holds_no_capability_token(
    log_output: Callable[[str], io.StringIO],
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    api = make_api_world(engine, session_factory, clock, start_background=False)
    server = serve_in_thread(api.client.app)
    try:
        buffer = log_output("text")
        with httpx.Client(base_url=server.url) as client:
            client.get("/unsubscribe/eyJvIjoxLCJjIjoyfQ.SECRET-UNSUBSCRIBE")
            client.get("/api/integrations/gmail/connect", params={"u": "SECRET-CONNECT"})
            client.get(
                "/api/integrations/gmail/callback",
                params={"code": "SECRET-CODE", "state": "SECRET-STATE", "scope": "gmail"},
            )
            client.get("/slack/oauth_redirect?code=SECRET-SLACK&state=SECRET-SLACK-STATE")
            # `salesbot org install-link`: whoever holds it binds a workspace to the org
            client.get("/slack/install", params={"link": "SECRET-INSTALL-LINK"})
    finally:
        server.stop()
    logged = buffer.getvalue()
    access = [line for line in logged.splitlines() if "uvicorn.access" in line]
    assert len(access) == 5
    assert "SECRET" not in logged
    assert '"GET /unsubscribe/[redacted] HTTP/1.1" 400' in access[0]
    assert '"GET /api/integrations/gmail/connect?u=[redacted] HTTP/1.1"' in access[1]
    assert (
        "/api/integrations/gmail/callback?code=[redacted]&state=[redacted]&scope=gmail"
        in (access[2])
    )
    assert '"GET /slack/install?link=[redacted] HTTP/1.1"' in access[4]


def test_a_database_error_never_shows_its_bound_parameters(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(SQLAlchemyError) as raised:
        conn.execute(
            text("SELECT * FROM no_such_table WHERE body = :body"),
            {"body": "Hi {{ first_name }}, a private template body"},
        )
    assert "private template body" not in str(raised.value)
    assert "SQL parameters hidden" in str(raised.value)


def test_checking_the_schema_prints_no_alembic_chatter() -> None:
    """`salesbot serve` and each web process's first /healthz read the migration heads; that
    printed seven "setup plugin alembic.autogenerate.…" lines at INFO. Alembic sets its
    plugins up once a process, so a fresh interpreter checks it."""
    script = (
        "from bot.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "from storage.migrate import current_heads\n"
        "assert current_heads()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_a_slack_app_with_a_bot_token_starts_without_a_warning(
    engine: Engine,
    log_output: Callable[[str], io.StringIO],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bolt reads SLACK_BOT_TOKEN from the environment beside the client it is given, and
    warned "`token` will be unused" twice in every process."""
    from bot.app import build_runtime
    from tests.support.api import make_settings

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-deployer")
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        SLACK_BOT_TOKEN="xoxb-1-2-deployer",
        SLACK_SIGNING_SECRET="a-signing-secret",
        SLACK_API_URL="http://127.0.0.1:9/api/",
    )
    buffer = log_output("text")
    runtime = build_runtime(settings)
    assert runtime.bolt is not None
    assert buffer.getvalue() == ""


def test_log_format_json_cuts_long_extras_and_stamps_utc_iso_times(
    log_output: Callable[[str], io.StringIO],
) -> None:
    """The text format cut an extra at 500 characters but JSON printed it whole (a 10 MB
    reason, a whole template); and its time was local, with a comma and no zone."""
    buffer = log_output("json")
    logging.getLogger("jobs.worker").warning(
        "card message failed", extra={"card_id": 7, "reason": "x" * 600}
    )
    [record] = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert record["card_id"] == 7
    assert record["reason"] == "x" * 500 + "…"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"]), record[
        "timestamp"
    ]


def test_a_debug_run_never_logs_the_email_sent_to_claude() -> None:
    """At DEBUG the Anthropic SDK logs "Request options" with the whole prompt, and httpx
    and httpcore log the traffic: the email's body reached the log. `configure_logging`
    keeps those clients at INFO whatever LOG_LEVEL says."""
    from integrations.claude import build_anthropic_client
    from integrations.claude_classifier import ClaudeClassifier
    from sandbox.anthropic_api import start_anthropic_stand_in
    from tests.integration.test_claude_classifier import (
        API_KEY,
        MODEL,
        POSITIVE_ANSWER,
        make_request,
    )

    secret = "Our private fee schedule is 4Kq8-CONFIDENTIAL"
    names = ("", "anthropic", "httpx", "httpcore", "googleapiclient", "urllib3")
    saved = [(logging.getLogger(n), list(logging.getLogger(n).handlers)) for n in names]
    levels = [(logger, logger.level) for logger, _ in saved]
    stand_in, server = start_anthropic_stand_in(api_keys=[API_KEY])
    try:
        buffer = io.StringIO()
        configure_logging("DEBUG", "text", stream=buffer)
        stand_in.when("4Kq8-CONFIDENTIAL", POSITIVE_ANSWER)
        client = build_anthropic_client(API_KEY, server.url, timeout=30.0, max_retries=0)
        ClaudeClassifier(client, model=MODEL, concurrency=1).classify(make_request(secret))
        logging.getLogger("domain.inbound").debug("a debug line of our own")
    finally:
        server.stop()
        for logger, handlers in saved:
            logger.handlers[:] = handlers
        for logger, level in levels:
            logger.setLevel(level)
    [request] = stand_in.requests
    assert secret in request.user_text
    logged = buffer.getvalue()
    assert "a debug line of our own" in logged
    assert "4Kq8-CONFIDENTIAL" not in logged
    assert "Request options" not in logged


def test_the_schedulers_routine_runs_are_not_logged_but_its_warnings_are() -> None:
    names = ("", "apscheduler", "anthropic", "httpx", "httpcore", "googleapiclient", "urllib3")
    saved = [(logging.getLogger(n), list(logging.getLogger(n).handlers)) for n in names]
    levels = [(logger, logger.level) for logger, _ in saved]
    buffer = io.StringIO()
    try:
        configure_logging("INFO", "text", stream=buffer)
        scheduler_log = logging.getLogger("apscheduler.executors.default")
        scheduler_log.info('Running job "cadence-tick"')
        scheduler_log.warning('Run time of job "cadence-tick" was missed by 0:00:05')
    finally:
        for logger, handlers in saved:
            logger.handlers[:] = handlers
        for logger, level in levels:
            logger.setLevel(level)
    lines = [line for line in buffer.getvalue().splitlines() if "cadence-tick" in line]
    assert len(lines) == 1
    assert "was missed" in lines[0]
