"""What an operator watches: /metrics in the Prometheus text format, /readyz with the check
that failed and what to do, request ids in JSON log lines, the heartbeat of the worker."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.app import build_app
from bot.logs import configure_logging
from domain.cards import CardState
from domain.clock import FixedClock
from domain.sending import FailureKind, MailboxError, MailMessage, MessageRef
from domain.understanding import RoundOutcome
from handlers.api.deps import Services
from handlers.gmail_push import PUSH_PATH
from handlers.observability import ObservabilityMiddleware
from integrations import metrics
from integrations.gmail.sender import GmailMailbox
from jobs.heartbeat import Heartbeat
from jobs.scheduler import PeriodicJob, PeriodicScheduler
from jobs.understanding import record_round
from storage import models as m
from storage.db import make_engine, make_session_factory
from storage.heartbeats import STALE_AFTER, WorkerHeartbeats
from storage.migrate import upgrade
from storage.uow import UnitOfWork
from tests.support.api import ApiWorld, make_api_world, make_settings
from tests.support.builders import make_org
from tests.support.slack import ServedSlack
from tests.support.slack_app import slack_world


def _samples(text: str) -> dict[str, list[Sample]]:
    """Parse an exposition (raises on a malformed one); samples by family name."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    return found[0] if found else 0.0


@pytest.fixture
def api(committed_engine: Engine, clock: FixedClock) -> ApiWorld:
    return make_api_world(
        committed_engine, make_session_factory(committed_engine), clock, start_background=False
    )


# --- /metrics ------------------------------------------------------------------------------


def test_metrics_parse_and_count_requests_by_route_template_and_status_class(
    api: ApiWorld,
) -> None:
    before = _samples(api.client.get("/metrics").text)["salesbot_http_requests"]
    for _ in range(3):
        assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/api/marketing/campaigns/12345", headers=api.auth()).status_code == 404
    assert api.client.get("/no/such/page/SECRET-PATH").status_code == 404
    answer = api.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = _samples(answer.text)
    after = families["salesbot_http_requests"]

    def delta(**labels: str) -> float:
        name = "salesbot_http_requests_total"
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta(route="/healthz", method="GET", status_class="2xx") == 3
    assert (
        delta(route="/api/marketing/campaigns/{campaign_id}", method="GET", status_class="4xx") == 1
    )
    assert delta(route="unmatched", method="GET", status_class="4xx") == 1
    assert "SECRET-PATH" not in answer.text
    # The campaign id must not become a label value; durations are floats whose digits may
    # contain any sequence, so only the labels are searched.
    label_values = {
        value for family in families.values() for s in family for value in s.labels.values()
    }
    assert not [value for value in label_values if "12345" in value]
    latency = families["salesbot_http_request_duration_seconds"]
    assert any(
        s.name == "salesbot_http_request_duration_seconds_count"
        and s.labels == {"route": "/healthz", "method": "GET", "status_class": "2xx"}
        for s in latency
    )


def test_metrics_read_the_queues_from_the_database_at_each_scrape(
    api: ApiWorld, committed_engine: Engine, clock: FixedClock
) -> None:
    families = _samples(api.client.get("/metrics").text)
    assert _value(families["salesbot_database_up"], "salesbot_database_up") == 1
    assert (
        _value(families["salesbot_outbox_emails"], "salesbot_outbox_emails", status="queued") == 0
    )
    assert (
        _value(
            families["salesbot_worker_heartbeat_age_seconds"],
            "salesbot_worker_heartbeat_age_seconds",
        )
        == -1
    )
    with make_session_factory(committed_engine)() as session:
        session.add(
            m.SlackDeferredCall(
                team_id="T1",
                function="handle_approve",
                body="{}",
                content_type="application/json",
                status="pending",
                created_at=clock.now() - timedelta(seconds=42),
            )
        )
        session.commit()
    WorkerHeartbeats(make_session_factory(committed_engine)).beat(
        "host:1:abc",
        host="host",
        pid=1,
        started_at=clock.now(),
        at=clock.now() - timedelta(seconds=7),
    )
    families = _samples(api.client.get("/metrics").text)
    assert (
        _value(families["salesbot_slack_deferred_waiting"], "salesbot_slack_deferred_waiting") == 1
    )
    assert (
        _value(
            families["salesbot_slack_deferred_oldest_age_seconds"],
            "salesbot_slack_deferred_oldest_age_seconds",
        )
        == 42
    )
    assert (
        _value(
            families["salesbot_worker_heartbeat_age_seconds"],
            "salesbot_worker_heartbeat_age_seconds",
        )
        == 7
    )
    assert _value(families["salesbot_workers"], "salesbot_workers") == 1


def test_metrics_say_the_database_is_down_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gone' / 'salesbot.db'}"
    engine = make_engine(url)
    services = Services(
        engine=engine,
        session_factory=make_session_factory(engine),
        clock=FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC)),
    )
    app = build_app(make_settings(url), services=services, start_background=False)
    answer = TestClient(app).get("/metrics")
    assert answer.status_code == 200
    families = _samples(answer.text)
    assert _value(families["salesbot_database_up"], "salesbot_database_up") == 0
    assert "salesbot_outbox_emails" not in families


def test_claude_tokens_are_counted_and_priced_by_model() -> None:
    class Usage:
        input_tokens = 1_000_000
        output_tokens = 200_000
        cache_creation_input_tokens = 0
        cache_read_input_tokens = 500_000

    model = "claude-haiku-4-5-test-pricing"
    metrics.record_llm_usage(model, "classify", Usage())
    families = _samples(metrics.exposition()[0].decode())
    tokens = families["salesbot_llm_tokens"]
    assert (
        _value(tokens, "salesbot_llm_tokens_total", model=model, purpose="classify", kind="input")
        == 1_000_000
    )
    assert (
        _value(tokens, "salesbot_llm_tokens_total", model=model, purpose="classify", kind="output")
        == 200_000
    )
    cost = _value(
        families["salesbot_llm_cost_usd"],
        "salesbot_llm_cost_usd_total",
        model=model,
        purpose="classify",
    )
    # Haiku 4.5: $1 per million input, $5 per million output, $0.10 per million cached reads.
    assert cost == pytest.approx(1.0 + 1.0 + 0.05)


def test_a_model_without_a_price_counts_tokens_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Usage:
        input_tokens = 10
        output_tokens = 5
        cache_creation_input_tokens = None
        cache_read_input_tokens = None

    with caplog.at_level(logging.WARNING, logger="integrations.metrics"):
        metrics.record_llm_usage("mystery-model-1", "draft", Usage())
        metrics.record_llm_usage("mystery-model-1", "draft", Usage())
    assert [r.getMessage() for r in caplog.records] == [
        "no price for a Claude model: its cost is not counted"
    ]
    families = _samples(metrics.exposition()[0].decode())
    assert (
        _value(
            families["salesbot_llm_tokens"],
            "salesbot_llm_tokens_total",
            model="mystery-model-1",
            purpose="draft",
            kind="output",
        )
        == 10
    )


def test_a_periodic_job_records_its_last_success_and_how_late_it_started() -> None:
    scheduler = PeriodicScheduler()
    ran: list[int] = []
    scheduler.add(PeriodicJob("ops-test-job", lambda: ran.append(1) or 0, timedelta(seconds=60)))
    scheduler.start()
    try:
        for _ in range(50):
            if ran:
                break
            time.sleep(0.1)
    finally:
        scheduler.stop()
    assert ran == [1]
    families = _samples(metrics.exposition()[0].decode())
    last = _value(
        families["salesbot_periodic_job_last_success_timestamp_seconds"],
        "salesbot_periodic_job_last_success_timestamp_seconds",
        job="ops-test-job",
    )
    assert last > 0
    lag = families["salesbot_periodic_job_lag_seconds"]
    assert _value(lag, "salesbot_periodic_job_lag_seconds_count", job="ops-test-job") == 1
    assert _value(lag, "salesbot_periodic_job_lag_seconds_sum", job="ops-test-job") < 5


# --- /readyz -------------------------------------------------------------------------------


def test_readyz_is_ready_with_a_fresh_heartbeat(
    api: ApiWorld, committed_engine: Engine, clock: FixedClock
) -> None:
    Heartbeat(WorkerHeartbeats(make_session_factory(committed_engine)), clock, name="w1").run_once()
    answer = api.client.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert body["checks"]["worker"] == {
        "ok": True,
        "detail": "newest heartbeat 0 s ago",
        "workers": 1,
    }


def test_readyz_fails_without_a_worker_and_says_to_start_one(api: ApiWorld) -> None:
    answer = api.client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert (body["status"], body["failed"]) == ("not_ready", ["worker"])
    assert "salesbot worker" in body["checks"]["worker"]["action"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"]["ok"] is True


def test_readyz_fails_when_the_heartbeat_is_stale_and_ready_again_once_it_beats(
    api: ApiWorld, committed_engine: Engine, clock: FixedClock
) -> None:
    beats = WorkerHeartbeats(make_session_factory(committed_engine))
    old = clock.now() - STALE_AFTER - timedelta(seconds=1)
    beats.beat("w1", host="h", pid=1, started_at=old, at=old)
    answer = api.client.get("/readyz")
    assert answer.status_code == 503
    worker = answer.json()["checks"]["worker"]
    assert worker["detail"] == "the newest worker heartbeat is 61 s old (limit 60 s)"
    assert "restart" in worker["action"]
    beats.beat("w1", host="h", pid=1, started_at=old, at=clock.now())
    assert api.client.get("/readyz").status_code == 200
    beats.forget("w1")
    assert api.client.get("/readyz").status_code == 503


def test_readyz_fails_when_migrations_are_behind_and_says_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade(url, "0018")
    engine = make_engine(url)
    services = Services(
        engine=engine,
        session_factory=make_session_factory(engine),
        clock=FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC)),
    )
    app = build_app(make_settings(url), services=services, start_background=False)
    answer = TestClient(app).get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"]["detail"].startswith("schema at 0018, code expects ")
    assert "salesbot db upgrade" in body["checks"]["migrations"]["action"]
    assert body["checks"]["worker"] == {
        "ok": False,
        "detail": "not checked: an earlier check failed",
    }


def test_readyz_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gone' / 'salesbot.db'}"
    engine = make_engine(url)
    services = Services(
        engine=engine,
        session_factory=make_session_factory(engine),
        clock=FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC)),
    )
    app = build_app(make_settings(url), services=services, start_background=False)
    answer = TestClient(app).get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["failed"] == ["database"]
    assert body["checks"]["database"]["detail"].startswith("unreachable: ")
    assert "DATABASE_URL" in body["checks"]["database"]["action"]


def test_a_stopping_heartbeat_deletes_its_row(committed_engine: Engine, clock: FixedClock) -> None:
    sessions = make_session_factory(committed_engine)
    heartbeat = Heartbeat(WorkerHeartbeats(sessions), clock, name="w2")
    heartbeat.run_once()
    heartbeat.run_once()
    with sessions() as session:
        assert session.scalars(select(m.WorkerHeartbeat.name)).all() == ["w2"]
    heartbeat.forget()
    with sessions() as session:
        assert session.scalars(select(m.WorkerHeartbeat.name)).all() == []


# --- request ids and JSON logs -------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _logging_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(ObservabilityMiddleware)
    log = logging.getLogger("salesbot.test")

    @app.get("/sync")
    def in_a_thread() -> dict[str, str]:
        log.info("in a thread", extra={"card_id": 7, "reason": "Authorization: Bearer abc.def"})
        return {}

    @app.get("/async")
    async def in_the_loop() -> dict[str, str]:
        log.warning(
            "in the loop",
            extra={"token": "xoxb-123-456-SECRET", "body_text": "Dear Dana, ...", "count": 3},
        )
        return {}

    return app


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_log_lines_carry_the_request_id_the_caller_sent(json_log: io.StringIO) -> None:
    client = TestClient(_logging_app())
    answer = client.get("/sync", headers={"X-Request-ID": "req-42.abc"})
    assert answer.headers["x-request-id"] == "req-42.abc"
    [line] = [r for r in _lines(json_log) if r["logger"] == "salesbot.test"]
    assert set(line) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "request_id",
        "card_id",
        "reason",
    }
    assert line["request_id"] == "req-42.abc"
    assert (line["level"], line["message"], line["card_id"]) == ("INFO", "in a thread", 7)
    assert line["reason"] == "Authorization: Bearer [redacted]"


def test_a_request_without_a_sane_id_gets_a_new_one_in_its_answer_and_its_lines(
    json_log: io.StringIO,
) -> None:
    client = TestClient(_logging_app())
    first = client.get("/async", headers={"X-Request-ID": "x" * 300})
    second = client.get("/async", headers={"X-Request-ID": 'bad id"}'})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0] != ids[1]
    lines = [r for r in _lines(json_log) if r["logger"] == "salesbot.test"]
    assert [r["request_id"] for r in lines] == ids
    assert lines[0]["token"] == "[redacted]"
    assert lines[0]["body_text"] == "[redacted: 14 characters]"
    assert lines[0]["count"] == 3
    assert "SECRET" not in json_log.getvalue()
    assert "Dear Dana" not in json_log.getvalue()


def test_a_line_logged_outside_a_request_has_a_null_request_id(json_log: io.StringIO) -> None:
    logging.getLogger("salesbot.test").info("background work", extra={"job_id": 3})
    [line] = _lines(json_log)
    assert line["request_id"] is None
    assert line["job_id"] == 3


# --- the seams that count ------------------------------------------------------------------


def _scrape() -> dict[str, list[Sample]]:
    return _samples(metrics.exposition()[0].decode())


def test_a_slack_command_is_timed_from_arrival_to_ack_as_a_command(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> None:
    name = "salesbot_slack_ack_seconds_count"
    before = _value(_scrape().get("salesbot_slack_ack_seconds", []), name, kind="command")
    with slack_world(committed_engine, served_slack, clock) as world:
        assert world.command("help").status_code == 200
    after = _value(_scrape()["salesbot_slack_ack_seconds"], name, kind="command")
    assert after - before == 1


def test_gmail_pushes_are_counted_by_outcome(api: ApiWorld) -> None:
    name = "salesbot_gmail_pushes_total"
    before = _value(_scrape().get("salesbot_gmail_pushes", []), name, outcome="unavailable")
    # No Pub/Sub settings in this app: the push is refused with 503 (Pub/Sub retries).
    assert api.client.post(PUSH_PATH, content=b"{}").status_code == 503
    after = _value(_scrape()["salesbot_gmail_pushes"], name, outcome="unavailable")
    assert after - before == 1


def test_a_pipeline_round_counts_decisions_actions_bounces_and_opt_outs() -> None:
    outcome = RoundOutcome(claimed=5, processed=4, failed=1)
    outcome.decided_by.update({"detector": 2, "claude": 2})
    outcome.actions.update({"opted_out": 1, "marked_bounced": 1, "soft_bounce_counted": 2})
    before = _scrape()
    record_round(outcome)
    after = _scrape()

    def delta(family: str, name: str, **labels: str) -> float:
        return _value(after[family], name, **labels) - _value(
            before.get(family, []), name, **labels
        )

    inbound = "salesbot_inbound_messages_total"
    assert (
        delta("salesbot_inbound_messages", inbound, stage="understanding", outcome="processed") == 4
    )
    assert delta("salesbot_inbound_messages", inbound, stage="understanding", outcome="failed") == 1
    assert delta("salesbot_classifications", "salesbot_classifications_total", source="claude") == 2
    assert delta("salesbot_bounces", "salesbot_bounces_total", kind="hard") == 1
    assert delta("salesbot_bounces", "salesbot_bounces_total", kind="soft") == 2
    assert delta("salesbot_opt_outs", "salesbot_opt_outs_total", source="email") == 1


class _Gmail:
    """A Gmail client that answers a send with what it was given."""

    def __init__(self, answer: Exception | None) -> None:
        self.answer = answer

    def send(self, raw: object, *, thread_id: str | None) -> MessageRef:
        if self.answer is not None:
            raise self.answer
        return MessageRef(id="m1", thread_id="t1")


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (None, "sent"),
        (MailboxError("429", kind=FailureKind.RATE_LIMITED), "retry"),
        (MailboxError("500", kind=FailureKind.UNCERTAIN), "uncertain"),
        (MailboxError("400", kind=FailureKind.REFUSED), "failed"),
    ],
)
def test_each_gmail_send_call_is_counted_by_outcome(answer: Exception | None, outcome: str) -> None:
    message = MailMessage(
        message_id="<a@salesbot.example>",
        date=datetime(2026, 11, 25, 15, 0, tzinfo=UTC),
        from_email="maria@lonestar.example.com",
        from_name="Maria",
        to_email="dana@pinnacle.example",
        to_name=None,
        subject="Turn times",
        body_text="Hi Dana",
    )
    name = "salesbot_email_sends_total"
    before = _value(_scrape().get("salesbot_email_sends", []), name, outcome=outcome)
    mailbox = GmailMailbox(_Gmail(answer))  # type: ignore[arg-type]
    if answer is None:
        assert mailbox.send(message, thread_id=None) == MessageRef(id="m1", thread_id="t1")
    else:
        with pytest.raises(MailboxError):
            mailbox.send(message, thread_id=None)
    assert _value(_scrape()["salesbot_email_sends"], name, outcome=outcome) - before == 1


def test_card_moves_are_counted_by_the_state_they_reach(
    uow: UnitOfWork, session: Session, clock: FixedClock
) -> None:
    org = make_org(session)
    card = m.Card(org_id=org.id, type="send_email", state="approved", title="Email Dana")
    session.add(card)
    session.commit()
    name = "salesbot_card_transitions_total"
    before = _scrape().get("salesbot_card_transitions", [])
    with uow:
        moved = uow.cards.compare_and_set(
            org.id, card.id, expected=[CardState.APPROVED], to=CardState.WITHDRAWN, now=clock.now()
        )
        again = uow.cards.compare_and_set(
            org.id, card.id, expected=[CardState.APPROVED], to=CardState.WITHDRAWN, now=clock.now()
        )
        uow.commit()
    assert (moved, again) == (True, False)
    after = _scrape()["salesbot_card_transitions"]
    assert _value(after, name, to="withdrawn") - _value(before, name, to="withdrawn") == 1
