"""The start-up check of the configured Claude models, through the SDK's Models API calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.app import build_app
from domain.clock import FixedClock
from handlers.api.deps import Services
from integrations.claude import build_anthropic_client
from integrations.claude_models import ModelCheck, ModelStatus, check_model, check_models
from sandbox.anthropic_api import AnthropicStandIn, ModelEntry, start_anthropic_stand_in
from sandbox.server import RunningServer
from tests.support.api import make_settings

API_KEY = "sk-ant-api03-models-test-9Hd2"
MODELS = (
    ModelEntry("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ModelEntry("claude-haiku-4-5", "Claude Haiku 4.5"),
    ModelEntry(
        "claude-3-7-sonnet-20250219",
        "Claude Sonnet 3.7",
        lifecycle="deprecated",
        retires_at="2026-02-19T00:00:00Z",
    ),
    ModelEntry("claude-2.1", "Claude 2.1", lifecycle="retired"),
)


@pytest.fixture(scope="module")
def anthropic_api() -> Iterator[tuple[AnthropicStandIn, RunningServer]]:
    stand_in, server = start_anthropic_stand_in(api_keys=[API_KEY], models=MODELS)
    yield stand_in, server
    server.stop()


@pytest.fixture
def api_url(anthropic_api: tuple[AnthropicStandIn, RunningServer]) -> str:
    return anthropic_api[1].url


def check(api_url: str, model: str, *, key: str = API_KEY) -> ModelCheck:
    return check_model(build_anthropic_client(key, api_url), setting="ANTHROPIC_MODEL", model=model)


def test_a_known_model_is_known(api_url: str) -> None:
    assert check(api_url, "claude-sonnet-4-6") == ModelCheck(
        "ANTHROPIC_MODEL",
        "claude-sonnet-4-6",
        ModelStatus.KNOWN,
        "ANTHROPIC_MODEL=claude-sonnet-4-6 is known (Claude Sonnet 4.6)",
    )


def test_an_unknown_model_is_named_with_the_setting_to_fix(api_url: str) -> None:
    result = check(api_url, "claude-sonet-4-6")

    assert result.status is ModelStatus.UNKNOWN
    assert result.message == (
        "ANTHROPIC_MODEL=claude-sonet-4-6 is not a model the Anthropic API knows (HTTP 404): "
        "check the id; calls with it will fail"
    )
    assert not result.ok


def test_a_deprecated_model_says_when_it_retires(api_url: str) -> None:
    result = check(api_url, "claude-3-7-sonnet-20250219")

    assert result.status is ModelStatus.DEPRECATED
    assert result.message == (
        "ANTHROPIC_MODEL=claude-3-7-sonnet-20250219 is deprecated and will be retired on "
        "2026-02-19; move to a current model"
    )


def test_a_retired_model_is_retired(api_url: str) -> None:
    assert check(api_url, "claude-2.1").status is ModelStatus.RETIRED


def test_an_unreachable_api_is_not_checked_and_not_an_error() -> None:
    started = time.monotonic()
    result = check("http://127.0.0.1:9", "claude-sonnet-4-6")

    assert result == ModelCheck(
        "ANTHROPIC_MODEL",
        "claude-sonnet-4-6",
        ModelStatus.NOT_CHECKED,
        "could not check ANTHROPIC_MODEL=claude-sonnet-4-6: Anthropic unreachable",
    )
    assert result.ok
    assert time.monotonic() - started < 6


def test_a_rejected_key_is_not_checked(api_url: str) -> None:
    result = check(api_url, "claude-sonnet-4-6", key="sk-ant-wrong")

    assert result.status is ModelStatus.NOT_CHECKED
    assert "HTTP 401" in result.message


def test_each_model_is_asked_once_and_an_unknown_one_is_logged_as_a_warning(
    api_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="integrations.claude_models")
    client = build_anthropic_client(API_KEY, api_url)

    checks = check_models(
        client,
        [
            ("ANTHROPIC_MODEL", "claude-haiku-4-5"),
            ("ANTHROPIC_FAST_MODEL", "claude-haiku-4-5"),
            ("ANTHROPIC_FAST_MODEL", "claude-haiku-9"),
        ],
    )

    assert [(c.setting, c.status) for c in checks] == [
        ("ANTHROPIC_MODEL", ModelStatus.KNOWN),
        ("ANTHROPIC_FAST_MODEL", ModelStatus.KNOWN),
        ("ANTHROPIC_FAST_MODEL", ModelStatus.UNKNOWN),
    ]
    assert checks[1].message == "ANTHROPIC_FAST_MODEL=claude-haiku-4-5 is known (Claude Haiku 4.5)"
    assert [(r.levelname, r.__dict__["model"]) for r in caplog.records] == [
        ("INFO", "claude-haiku-4-5"),
        ("INFO", "claude-haiku-4-5"),
        ("WARNING", "claude-haiku-9"),
    ]


def _healthz_after_the_model_check(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    **anthropic: str,
) -> tuple[int, dict[str, Any]]:
    """/healthz once the start-up check of the models has answered (or 10 s went by)."""
    settings = make_settings(engine.url.render_as_string(hide_password=False), **anthropic)
    services = Services(engine=engine, session_factory=session_factory, clock=clock)
    app = build_app(settings, services=services, start_background=False)

    with TestClient(app) as client:
        answer = client.get("/healthz")
        deadline = time.monotonic() + 10
        while (
            anthropic.get("ANTHROPIC_API_KEY")
            and "claude_models" not in answer.json()
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
            answer = client.get("/healthz")
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


def test_healthz_names_the_classifier_and_is_ok_when_both_models_are_known(
    api_url: str,
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    status, body = _healthz_after_the_model_check(
        engine,
        session_factory,
        clock,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=api_url,
        ANTHROPIC_MODEL="claude-sonnet-4-6",
        ANTHROPIC_FAST_MODEL="claude-haiku-4-5",
    )

    assert (status, body["status"]) == (200, "ok")
    assert body["classifier"] == "claude:claude-haiku-4-5"
    assert [m["status"] for m in body["claude_models"]] == ["known", "known"]
    assert "degraded_because" not in body


def test_healthz_without_an_anthropic_key_names_the_offline_classifier(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    status, body = _healthz_after_the_model_check(engine, session_factory, clock)

    assert (status, body["status"]) == (200, "ok")
    assert body["classifier"].startswith("offline:")
    assert "claude_models" not in body


def test_healthz_is_degraded_by_a_retired_model(
    api_url: str,
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    status, body = _healthz_after_the_model_check(
        engine,
        session_factory,
        clock,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=api_url,
        ANTHROPIC_MODEL="claude-2.1",
        ANTHROPIC_FAST_MODEL="claude-haiku-4-5",
    )

    assert (status, body["status"]) == (200, "degraded")
    [retired] = [m for m in body["claude_models"] if m["status"] == "retired"]
    assert body["degraded_because"] == [retired["message"]]


def test_healthz_shows_the_start_up_check_of_both_models(
    api_url: str,
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    """An unknown model: the service runs (HTTP 200) but its Claude calls fail, so degraded."""
    status, body = _healthz_after_the_model_check(
        engine,
        session_factory,
        clock,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=api_url,
        ANTHROPIC_MODEL="claude-sonnet-4-6",
        ANTHROPIC_FAST_MODEL="claude-haiku-4-6",
    )

    assert (status, body["status"]) == (200, "degraded")
    assert body["classifier"] == "claude:claude-haiku-4-6"
    assert body["degraded_because"] == [
        "ANTHROPIC_FAST_MODEL=claude-haiku-4-6 is not a model the Anthropic API "
        "knows (HTTP 404): check the id; calls with it will fail"
    ]
    assert body["claude_models"] == [
        {
            "setting": "ANTHROPIC_MODEL",
            "model": "claude-sonnet-4-6",
            "status": "known",
            "message": "ANTHROPIC_MODEL=claude-sonnet-4-6 is known (Claude Sonnet 4.6)",
        },
        {
            "setting": "ANTHROPIC_FAST_MODEL",
            "model": "claude-haiku-4-6",
            "status": "unknown",
            "message": "ANTHROPIC_FAST_MODEL=claude-haiku-4-6 is not a model the Anthropic API "
            "knows (HTTP 404): check the id; calls with it will fail",
        },
    ]
