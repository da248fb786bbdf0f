"""Real processes as deployed: the metrics of `salesbot web --processes 2` add up across its
processes, the worker serves its own and its heartbeat makes `/readyz` ready, and SIGTERM
in the middle of a slow Gmail send leaves the email sent once and no card `executing`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select, update

from bot.app import build_app
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from storage.db import make_session_factory
from tests.support.accounts import create_org, create_token, ensure_user
from tests.support.api import make_settings
from tests.support.builders import make_contact
from tests.support.forkserver import ForkServer
from tests.support.gmail_app import connect_gmail, google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REP_EMAIL = "maria@lonestar.example.com"
SECRET_KEY = "test-secret-key-for-the-web-and-worker-processes-0123456789"


def _metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_web_processes_add_up_their_metrics_and_the_worker_makes_the_deployment_ready(
    committed_engine: Engine, served_slack: ServedSlack, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": committed_engine.url.render_as_string(hide_password=False),
        "SALESBOT_SECRET_KEY": SECRET_KEY,
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "LOG_LEVEL": "WARNING",
        # The web command makes its metrics directory here: the test can see it go.
        "TMPDIR": str(tmp_path),
    }
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    salesbot = [sys.executable, "-c", "from bot.cli import main; main()"]
    web = subprocess.Popen(
        [*salesbot, "web", "--port", str(port), "--processes", "2"], env=env, cwd=ROOT
    )
    worker = subprocess.Popen(
        [*salesbot, "worker", "--nice", "0", "--metrics-port", str(metrics_port)],
        env=env,
        cwd=ROOT,
    )
    try:
        wait_until(
            lambda: (r := _get(f"{base}/readyz")) is not None and r.status_code == 200,
            timeout=90,
            what="the deployment ready (web answering, the worker's heartbeat fresh)",
        )
        [metrics_dir] = list(tmp_path.glob("salesbot-metrics-*"))
        # A new connection each: the two processes share the listening socket.
        for _ in range(20):
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        counts = []
        for _ in range(6):
            text = httpx.get(f"{base}/metrics", timeout=5).text
            counts.append(
                _metric(
                    text,
                    "salesbot_http_requests_total",
                    route="/healthz",
                    method="GET",
                    status_class="2xx",
                )
            )
        # Whichever process answers the scrape, it adds up both processes' counts.
        assert counts == [20.0] * 6
        pids = {name.rsplit("_", 1)[1] for name in os.listdir(metrics_dir) if "_" in name}
        assert len(pids) == 2, sorted(os.listdir(metrics_dir))
        assert _metric(text, "salesbot_workers") == 1
        worker_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        beat = _metric(
            worker_text,
            "salesbot_periodic_job_last_success_timestamp_seconds",
            job="worker-heartbeat",
        )
        assert beat is not None
        assert abs(beat - time.time()) < 60
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        # The stopped worker deleted its heartbeat: no background work runs any more.
        answer = httpx.get(f"{base}/readyz", timeout=5)
        assert answer.status_code == 503
        assert answer.json()["failed"] == ["worker"]
    finally:
        for process in (web, worker):
            if process.poll() is None:
                process.terminate()
        for process in (web, worker):
            process.wait(timeout=60)
    assert not metrics_dir.exists()


# --- SIGTERM in the middle of a send -------------------------------------------------------


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer(ROOT)
    yield server
    server.close()


def _approved_card(engine: Engine, settings: dict[str, str], google: GoogleServer) -> int:
    """A card approved by a process that died before sending it (the sweep sends it), and
    the rep's mailbox connected."""
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        _, token = create_token(session, org.id, name="rep", user_id=rep_id)
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        dana = make_contact(session, org_row, email="dana@pinnacle.example", first_name="Dana")
        job = m.Job(
            org_id=org.id,
            owner_id=rep_id,
            name="Win-back",
            status="running",
            planned_at=datetime.now(UTC) - timedelta(minutes=2),
        )
        session.add(job)
        session.flush()
        card = m.Card(
            org_id=org.id,
            job_id=job.id,
            contact_id=dana.id,
            type="send_email",
            state="approved",
            title="Email Dana",
            action_payload={"to": dana.email, "subject": "Turn times", "body": "Hi Dana"},
            approved_by=rep_id,
            approved_at=datetime.now(UTC) - timedelta(minutes=1),
            updated_at=datetime.now(UTC) - timedelta(minutes=1),
        )
        session.add(card)
        session.commit()
        card_id = card.id
    url = engine.url.render_as_string(hide_password=False)
    app = build_app(make_settings(url, **settings), start_background=False)
    with TestClient(app) as client:
        assert connect_gmail(client, google.google, REP_EMAIL, token=token).status_code == 200
    with sessions() as session:
        session.execute(update(m.GmailAccount).values(min_send_interval_seconds=0))
        session.commit()
    return card_id


def _states(engine: Engine, card_id: int) -> tuple[str | None, str | None]:
    with make_session_factory(engine)() as session:
        card = session.scalar(select(m.Card.state).where(m.Card.id == card_id))
        send = session.scalar(select(m.EmailSend.status).where(m.EmailSend.card_id == card_id))
    return card, send


def _sent_to(google: GoogleServer) -> list[str]:
    return [parseaddr(str(s.message["To"]))[1] for s in google.google.gmail.sent(REP_EMAIL)]


def _process_env(engine: Engine, settings: dict[str, str], **extra: str) -> dict[str, str]:
    url = engine.url.render_as_string(hide_password=False)
    return {
        **os.environ,
        **settings,
        "DATABASE_URL": url,
        "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
        "WORK_LEASE_SECONDS": "1",
        "GMAIL_SEND_LEASE_SECONDS": "2",
        "WORKER_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def _settings(served_slack: ServedSlack, google: GoogleServer) -> dict[str, str]:
    return {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        **{k: str(v) for k, v in google_settings(google).items()},
    }


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_a_worker_past_its_shutdown_deadline_exits_and_the_next_sends_nothing_twice(
    committed_engine: Engine,
    served_slack: ServedSlack,
    google: GoogleServer,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    """Gmail takes 4 s; the worker has 1 s to stop: it exits 1 with the send cut off (the
    card `executing`, the email `sending`). Gmail did send it; the next worker finds it by
    its Message-ID instead of sending it again, and the card ends `done`."""
    served_slack.stand_in.reset()
    settings = _settings(served_slack, google)
    card_id = _approved_card(committed_engine, settings, google)
    google.google.gmail.delay_sends(4.0)
    env = _process_env(committed_engine, settings, SHUTDOWN_GRACE_SECONDS="1")
    first = forks.start(["worker", "--nice", "0"], env=env, log=tmp_path / "first.log")
    second: int | None = None
    try:
        wait_until(
            lambda: _states(committed_engine, card_id)[1] == "sending",
            timeout=60,
            what="the send under way",
        )
        stopped_at = time.monotonic()
        os.kill(first, signal.SIGTERM)
        code = forks.wait(first, timeout=30)
        took = time.monotonic() - stopped_at
        assert code == 1, (tmp_path / "first.log").read_text()
        assert took < 3.5
        assert _states(committed_engine, card_id) == ("executing", "sending")
        assert "SHUTDOWN_GRACE_SECONDS" in (tmp_path / "first.log").read_text()
        # The cut-off call reached Gmail, which sent the email after its delay.
        wait_until(lambda: _sent_to(google), timeout=30, what="Gmail to finish the send")
        google.google.gmail.delay_sends(0)
        second = forks.start(["worker", "--nice", "0"], env=env, log=tmp_path / "second.log")
        wait_until(
            lambda: _states(committed_engine, card_id) == ("done", "sent"),
            timeout=60,
            what="the next worker to find the email and finish the card",
        )
        os.kill(second, signal.SIGTERM)
        assert forks.wait(second, timeout=60) == 0, (tmp_path / "second.log").read_text()
    finally:
        google.google.gmail.delay_sends(0)
        for pid in (first, second):
            if pid is not None and forks.poll(pid) is None:
                os.kill(pid, signal.SIGKILL)
                forks.wait(pid, timeout=10)
    assert _sent_to(google) == ["dana@pinnacle.example"]
    with make_session_factory(committed_engine)() as session:
        executing = session.scalars(select(m.Card.id).where(m.Card.state == "executing")).all()
    assert executing == []


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_sigterm_to_serve_in_the_middle_of_a_send_finishes_it_before_the_process_exits(
    committed_engine: Engine,
    served_slack: ServedSlack,
    google: GoogleServer,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    served_slack.stand_in.reset()
    settings = _settings(served_slack, google)
    card_id = _approved_card(committed_engine, settings, google)
    google.google.gmail.delay_sends(3.0)
    port = free_port()
    env = _process_env(committed_engine, settings)
    log = tmp_path / "serve.log"
    pid = forks.start(["serve", "--port", str(port)], env=env, log=log)
    try:
        wait_until(
            lambda: _states(committed_engine, card_id)[1] == "sending",
            timeout=60,
            what="the send under way",
        )
        os.kill(pid, signal.SIGTERM)
        code = forks.wait(pid, timeout=60)
    finally:
        google.google.gmail.delay_sends(0)
        if forks.poll(pid) is None:
            os.kill(pid, signal.SIGKILL)
            forks.wait(pid, timeout=10)
    # uvicorn re-raises the SIGTERM it handled once its shutdown is complete.
    assert code == -signal.SIGTERM, log.read_text()
    assert _states(committed_engine, card_id) == ("done", "sent")
    assert _sent_to(google) == ["dana@pinnacle.example"]
    with make_session_factory(committed_engine)() as session:
        heartbeats = session.scalars(select(m.WorkerHeartbeat.name)).all()
    # The stopped process said so: no heartbeat of it is left for /readyz to trust.
    assert heartbeats == []
