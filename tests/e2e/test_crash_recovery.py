"""A real `salesbot serve` process killed at every step of launch → plan → draft → post and
approve → send → finish, then restarted: every email goes once, nothing is lost or stuck.

The process runs against the Slack and Google stand-ins served by this test, so what
Slack and Gmail received survives the kills. Each round arms one fault point
(`SALESBOT_FAULT_POINTS`), drives work through it and waits for the process to exit with
137, as after `kill -9`; the next round starts a new process that must carry on what
the dead one left (leases of about a second here). A last round also `kill -9`s a process
in the middle of a burst of approvals. A final clean process runs until nothing is left
and stops on SIGTERM. The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from bot.app import build_app
from domain.faults import EXIT_CODE
from jobs.worker import MAX_RECLAIMS
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL_ID, DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.support.accounts import create_org, create_token, ensure_user, link_slack_team
from tests.support.api import make_settings
from tests.support.builders import make_client, make_contact, make_order
from tests.support.forkserver import ForkServer
from tests.support.gmail_app import connect_gmail, google_settings
from tests.support.google import GoogleServer
from tests.support.slack import (
    ServedSlack,
    approve_click_body,
    signed_headers,
)
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REP = "U0CRASH01"
REP_EMAIL = "maria@lonestar.example.com"
LEASE_SECONDS = "3"

LAUNCH_POINTS = [
    "launch.committed",
    "plan.claimed",
    "plan.chunk",
    "task.claimed",
    "draft.committed",
    "post.sent",
    "post.recorded",
]
APPROVE_POINTS = [
    "approve.committed",
    "execute.committed",
    "outbox.stored",
    "gmail.accepted",
    "outbox.recorded",
    "send.finished",
]
# Each point is visited ROUNDS times (a process killed there each time): 1 in `make test`;
# `CRASH_TEST_ROUNDS=3 pytest -s tests/e2e/test_crash_recovery.py` kills 21 launch processes
# and 18 approve processes (plus the kill -9) for the figures in the notes.
ROUNDS = int(os.environ.get("CRASH_TEST_ROUNDS", "1"))
LAUNCH_KILLS = LAUNCH_POINTS * ROUNDS
APPROVE_KILLS = APPROVE_POINTS * ROUNDS
LAUNCHES_PER_ROUND = 3
CONTACTS_PER_CAMPAIGN = 2
APPROVALS_PER_ROUND = 4
BURST_APPROVALS = 6


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer(ROOT)
    yield server
    server.close()


@dataclass
class Deployment:
    """Starts, kills and restarts `salesbot serve` against one database and the stand-ins."""

    forks: ForkServer
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    pid: int | None = None
    starts: int = 0
    kills: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The base URL of the running process."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """The output of the current process."""
        return self.logs / f"serve-{self.starts:02d}.log"

    def start(self, fault_point: str = "") -> None:
        """Start a process with one fault point armed (or none) and wait until it answers."""
        self.starts += 1
        self.pid = self.forks.start(
            ["serve", "--port", str(self.port)],
            env={**self.env, "SALESBOT_FAULT_POINTS": fault_point},
            log=self.log,
        )

        def healthy() -> bool:
            assert self.pid is not None
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                # Died at its fault point while starting: fine, the round goes on.
                return self.forks.poll(self.pid) is not None

        wait_until(healthy, timeout=60, what="salesbot serve answering")

    def wait_killed(self, point: str, *, timeout: float = 30) -> None:
        """Wait for the process to end itself at its fault point (exit 137)."""
        assert self.pid is not None
        code = self.forks.wait(self.pid, timeout=timeout)
        if code is None:
            os.kill(self.pid, signal.SIGKILL)
            self.forks.wait(self.pid, timeout=10)
            raise AssertionError(f"the process never reached fault point {point}")
        assert code == EXIT_CODE, f"exit {code} instead of dying at {point}: {self._tail()}"
        self.kills.append(point)

    def kill_9(self) -> None:
        """`kill -9` the process, wherever it is."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        assert self.forks.wait(self.pid, timeout=10) == -signal.SIGKILL
        self.kills.append("SIGKILL")

    def terminate(self) -> int | None:
        """SIGTERM: the process finishes what it has in hand and exits."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGTERM)
        return self.forks.wait(self.pid, timeout=60)

    def stop(self) -> None:
        """Leave nothing running."""
        if self.pid is not None and self.forks.poll(self.pid) is None:
            os.kill(self.pid, signal.SIGKILL)
            self.forks.wait(self.pid, timeout=10)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def post(self, path: str, **kwargs: Any) -> httpx.Response | None:
        """POST to the process; None when it died before answering."""
        try:
            return httpx.post(f"{self.url}{path}", timeout=30, **kwargs)
        except httpx.HTTPError:
            return None


@dataclass
class Seeded:
    org_id: int
    rep_id: int
    token: str
    campaign_ids: list[list[int]]


def _seed(engine: Engine) -> Seeded:
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    rounds: list[list[int]] = []
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        rep = session.get(m.User, rep_id)
        assert rep is not None
        rep.slack_user_id = REP
        rep.role = "admin"
        _, token = create_token(session, org.id, name="rep", user_id=rep_id)
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        make_order(session, org_row, lender, ordered_at=now - timedelta(days=143))
        template = m.EmailTemplate(
            org_id=org.id,
            name="Win-back 1",
            category="campaign",
            subject="Turn times are down, {{ first_name }}",
            body="Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days.\n",
            variables=[],
        )
        session.add(template)
        session.flush()
        for r in range(len(LAUNCH_KILLS)):
            ids = []
            for c in range(LAUNCHES_PER_ROUND):
                tag = f"crash-{r}-{c}"
                for n in range(CONTACTS_PER_CAMPAIGN):
                    make_contact(
                        session,
                        org_row,
                        lender,
                        email=f"lo{r}x{c}x{n}@pinnacle.example",
                        first_name=f"Dana{r}{c}{n}",
                        tags=[tag],
                    )
                campaign = m.MarketingCampaign(
                    org_id=org.id,
                    name=f"Win-back {tag}",
                    goal="reactivation",
                    status="draft",
                    include_tags=[tag],
                    channels=["email"],
                    email_template_ids=[template.id],
                    cadence_days=[0, 4],
                    review_channel_id=DEFAULT_CHANNEL_ID,
                    stale_client_days=90,
                )
                session.add(campaign)
                session.flush()
                ids.append(campaign.id)
            rounds.append(ids)
        session.commit()
    return Seeded(org_id=org.id, rep_id=rep_id, token=token, campaign_ids=rounds)


def _connect_gmail(
    engine: Engine, settings: dict[str, str], google: GoogleServer, token: str
) -> None:
    """The rep connects their mailbox through the consent flow (an app in this process)."""
    app = build_app(
        make_settings(engine.url.render_as_string(hide_password=False), **settings),
        start_background=False,
    )
    # The link opens in the rep's browser (this client keeps the consent cookie).
    with TestClient(app) as client:
        assert connect_gmail(client, google.google, REP_EMAIL, token=token).status_code == 200
    with make_session_factory(engine)() as session:
        # No spacing between sends: the test sends a few dozen emails in seconds.
        session.execute(
            update(m.GmailAccount).values(min_send_interval_seconds=0, daily_send_cap=1000)
        )
        session.commit()


def _in_review(engine: Engine, exclude: set[int], limit: int) -> list[tuple[int, str]]:
    """`limit` cards waiting for review (none until there are that many)."""
    with make_session_factory(engine)() as session:
        rows = session.execute(
            select(m.Card.id, m.Card.draft_fingerprint)
            .where(m.Card.state == "in_review", m.Card.id.not_in(exclude or {0}))
            .order_by(m.Card.id)
            .limit(limit)
        ).all()
    return [(card_id, fp or "") for card_id, fp in rows] if len(rows) == limit else []


def _click(deployment: Deployment, card_id: int, fingerprint: str) -> bool:
    body = approve_click_body(card_id, fingerprint, user=REP)
    answer = deployment.post(
        "/slack/events",
        content=body.encode(),
        headers=signed_headers(body, signing_secret=SIGNING_SECRET),
    )
    return answer is not None and answer.status_code == 200


def _click_all(deployment: Deployment, cards: list[tuple[int, str]]) -> set[int]:
    """Click Approve on the cards at once, as a rep's burst; return the ones acked."""
    with ThreadPoolExecutor(len(cards)) as pool:
        acked = pool.map(lambda card: _click(deployment, *card), cards)
        return {card_id for (card_id, _), ok in zip(cards, acked, strict=True) if ok}


def _launch(deployment: Deployment, token: str, campaign_id: int) -> int | None:
    answer = deployment.post(
        f"/api/campaigns/{campaign_id}/launch",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"launch-{campaign_id}"},
    )
    if answer is None:
        return None
    assert answer.status_code == 201, answer.text
    return int(answer.json()["job"]["id"])


def _launch_all(
    deployment: Deployment, token: str, campaign_ids: list[int], jobs_of: dict[int, set[int]]
) -> list[int]:
    """Launch campaigns; return the ones whose answer never came (the process died)."""
    unanswered = []
    for campaign_id in campaign_ids:
        job_id = _launch(deployment, token, campaign_id)
        if job_id is None:
            unanswered.append(campaign_id)
        else:
            jobs_of.setdefault(campaign_id, set()).add(job_id)
    return unanswered


def _left_over(engine: Engine, clicked: set[int]) -> dict[str, int]:
    """What is not finished yet: the test waits for all of it to be 0."""
    with make_session_factory(engine)() as session:

        def count(query: Any) -> int:
            return int(session.scalar(query) or 0)

        return {
            "cards approved or executing": count(
                select(func.count())
                .select_from(m.Card)
                .where(m.Card.state.in_(["approved", "executing"]))
            ),
            "approved cards not sent": count(
                select(func.count())
                .select_from(m.Card)
                .where(m.Card.id.in_(clicked or {0}), m.Card.state != "done")
            ),
            "tasks pending or running": count(
                select(func.count())
                .select_from(m.JobTask)
                .where(m.JobTask.status.in_(["pending", "running"]))
            ),
            "jobs pending or unplanned": count(
                select(func.count())
                .select_from(m.Job)
                .where((m.Job.status == "pending") | m.Job.planned_at.is_(None))
            ),
            "emails queued or sending": count(
                select(func.count())
                .select_from(m.EmailSend)
                .where(m.EmailSend.status.in_(["queued", "sending"]))
            ),
        }


@pytest.mark.parametrize("db_kind", ["postgresql", "sqlite"])
def test_a_worker_killed_at_every_step_sends_each_approved_card_once_and_leaves_nothing_stuck(
    committed_engine: Engine,
    served_slack: ServedSlack,
    google: GoogleServer,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    seeded = _seed(committed_engine)
    url = committed_engine.url.render_as_string(hide_password=False)
    settings = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        **{k: str(v) for k, v in google_settings(google).items()},
    }
    _connect_gmail(committed_engine, settings, google, seeded.token)
    deployment = Deployment(
        forks,
        env={
            **os.environ,
            **settings,
            "DATABASE_URL": url,
            # The key the in-process app above encrypted the mailbox's tokens with.
            "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
            "PUBLIC_BASE_URL": "http://testserver",
            "SLACK_POST_INTERVAL_SECONDS": "0",
            "WORK_LEASE_SECONDS": LEASE_SECONDS,
            "GMAIL_SEND_LEASE_SECONDS": LEASE_SECONDS,
            "WORKER_POLL_SECONDS": "0.2",
            "LOG_LEVEL": "WARNING",
        },
        logs=tmp_path,
    )
    jobs_of: dict[int, set[int]] = {}
    clicked: set[int] = set()
    try:
        # launch → plan → draft → post: one fault point a process, three launches a round.
        # A launch the kill left unanswered is sent again, with its key, after the restart.
        unanswered: list[int] = []
        for point, campaigns in zip(LAUNCH_KILLS, seeded.campaign_ids, strict=True):
            deployment.start(point)
            unanswered += campaigns
            unanswered = _launch_all(deployment, seeded.token, unanswered, jobs_of)
            deployment.wait_killed(point)
        # approve → send → finish: one fault point a process, four approvals a round.
        # Armed `point@4`: the process dies when the fourth card reaches the point, with the
        # other three somewhere after it.
        for point in APPROVE_KILLS:
            deployment.start(f"{point}@{APPROVALS_PER_ROUND}")
            unanswered = _launch_all(deployment, seeded.token, unanswered, jobs_of)
            cards = wait_until(
                lambda done=frozenset(clicked): _in_review(  # type: ignore[misc]
                    committed_engine, set(done), APPROVALS_PER_ROUND
                ),
                timeout=30,
                what="cards to approve",
            )
            for card_id, fingerprint in cards:
                if _click(deployment, card_id, fingerprint):
                    clicked.add(card_id)
            deployment.wait_killed(point)
        # A plain kill -9 in the middle of a burst of approvals.
        deployment.start()
        cards = wait_until(
            lambda: _in_review(committed_engine, clicked, BURST_APPROVALS),
            timeout=30,
            what="cards to approve",
        )
        clicked |= _click_all(deployment, cards)
        time.sleep(0.3)
        deployment.kill_9()
        # A clean process carries on everything, then stops on SIGTERM.
        deployment.start()
        assert _launch_all(deployment, seeded.token, unanswered, jobs_of) == []
        try:
            wait_until(lambda: not any(_left_over(committed_engine, clicked).values()), timeout=60)
        except TimeoutError:
            raise AssertionError(f"left: {_left_over(committed_engine, clicked)}") from None
        # uvicorn re-raises the SIGTERM it handled once its shutdown is complete.
        assert deployment.terminate() == -signal.SIGTERM
        assert "Application shutdown complete" in deployment.log.read_text()
    finally:
        deployment.stop()

    sent = google.google.gmail.sent(REP_EMAIL)
    per_recipient = Counter(parseaddr(str(s.message["To"]))[1] for s in sent)
    with make_session_factory(committed_engine)() as session:
        # Every card approved: the clicks answered 200, and any whose answer the kill cut off.
        to_of = {
            card_id: str(payload["to"])
            for card_id, payload in session.execute(
                select(m.Card.id, m.Card.action_payload).where(
                    m.Card.id.in_(clicked) | m.Card.approved_at.is_not(None)
                )
            )
        }
        states = Counter(session.scalars(select(m.Card.state)))
        posted = session.scalar(
            select(func.count()).select_from(m.Card).where(m.Card.slack_message_ts.is_not(None))
        )
        jobs = Counter(session.scalars(select(m.Job.campaign_id)))
        # A task whose process died under it MAX_RECLAIMS times fails as a poison task,
        # with the reason on the job: with several rounds of kills a draft can meet that.
        poisoned = session.scalar(
            select(func.count())
            .select_from(m.JobTask)
            .where(
                m.JobTask.status == "failed",
                m.JobTask.error_message.like(f"the worker stopped {MAX_RECLAIMS} times%"),
            )
        )
    messages = len(slack.messages(DEFAULT_CHANNEL_ID))
    duplicates = sum(n - 1 for n in per_recipient.values() if n > 1)
    lost = sum(1 for to in to_of.values() if per_recipient[to] == 0)
    stuck = sum(_left_over(committed_engine, clicked).values())
    launches = sum(len(c) for c in seeded.campaign_ids)
    contacts = launches * CONTACTS_PER_CAMPAIGN
    print(
        f"\ncrash test ({committed_engine.dialect.name}): {len(deployment.kills)} kills"
        f" ({len(LAUNCH_KILLS)} at launch points, {len(APPROVE_KILLS)} at approve points,"
        " 1 kill -9),"
        f" {deployment.starts} process starts, {launches} launches, {len(to_of)} approvals:"
        f" {len(sent)} emails, {duplicates} duplicates, {lost} lost, {stuck} stuck;"
        f" {posted} of {contacts} cards posted in {messages} Slack messages,"
        f" {poisoned} drafts failed as poison tasks;"
        f" {time.monotonic() - started:.0f} s"
    )
    assert deployment.kills == [*LAUNCH_KILLS, *APPROVE_KILLS, "SIGKILL"]
    assert (duplicates, lost, stuck) == (0, 0, 0)
    assert len(sent) == len(to_of) == states["done"]
    assert len(to_of) >= len(APPROVE_KILLS) * APPROVALS_PER_ROUND
    assert launches >= 20
    # A launch sent again after the crash (same Idempotency-Key) found its job.
    assert all(len(ids) == 1 for ids in jobs_of.values())
    assert set(jobs.values()) == {1}
    assert len(jobs) == launches
    # Every contact got its card (or, after repeated kills, a failed task with the reason),
    # and every card its Slack message.
    if ROUNDS == 1:
        assert poisoned == 0
    assert sum(states.values()) + poisoned == contacts
    assert posted == sum(states.values())


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_sigterm_lets_the_worker_finish_the_email_it_is_sending_then_exit(
    committed_engine: Engine,
    served_slack: ServedSlack,
    google: GoogleServer,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    served_slack.stand_in.reset()
    url = committed_engine.url.render_as_string(hide_password=False)
    settings = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        **{k: str(v) for k, v in google_settings(google).items()},
    }
    sessions = make_session_factory(committed_engine)
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
        # Approved by a process that died before it executed the card: the sweep sends it.
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
    _connect_gmail(committed_engine, settings, google, token)
    google.google.gmail.delay_sends(3.0)
    log = tmp_path / "worker.log"
    pid = forks.start(
        ["worker", "--nice", "0"],
        env={
            **os.environ,
            **settings,
            "DATABASE_URL": url,
            "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
            "WORK_LEASE_SECONDS": "1",
            "WORKER_POLL_SECONDS": "0.2",
            "LOG_LEVEL": "WARNING",
        },
        log=log,
    )
    try:

        def outbox_status() -> str | None:
            with sessions() as session:
                return session.scalar(
                    select(m.EmailSend.status).where(m.EmailSend.card_id == card_id)
                )

        wait_until(lambda: outbox_status() == "sending", timeout=60, what="the send under way")
        os.kill(pid, signal.SIGTERM)
        code = forks.wait(pid, timeout=60)
    finally:
        if forks.poll(pid) is None:
            os.kill(pid, signal.SIGKILL)
            forks.wait(pid, timeout=10)
    google.google.gmail.delay_sends(0)

    assert code == 0, log.read_text()
    with sessions() as session:
        state = session.scalar(select(m.Card.state).where(m.Card.id == card_id))
    assert (state, outbox_status()) == ("done", "sent")
    assert [parseaddr(str(s.message["To"]))[1] for s in google.google.gmail.sent(REP_EMAIL)] == [
        "dana@pinnacle.example"
    ]


# --- inbound: parsed → understood --------------------------------------------------------

INBOUND_AUDIENCE = "https://salesbot.example.com/api/integrations/gmail/push"
INBOUND_POINTS = ["understanding.claimed", "understanding.recorded"]


def _seed_inbound(engine: Engine, replies: int) -> tuple[Seeded, list[str]]:
    """An org with a running campaign: `replies` contacts, each sent one email (stored)."""
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    with sessions() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        _, token = create_token(session, org.id, name="rep", user_id=rep_id)
        org_row = session.get(m.Organization, org.id)
        assert org_row is not None
        lender = make_client(session, org_row, name="Pinnacle Lending", domain="pinnacle.example")
        campaign = m.MarketingCampaign(
            org_id=org.id, name="Win-back", goal="reactivation", status="active"
        )
        session.add(campaign)
        session.flush()
        job = m.Job(
            org_id=org.id,
            owner_id=rep_id,
            campaign_id=campaign.id,
            name="Win-back",
            status="running",
            planned_at=now,
        )
        session.add(job)
        session.flush()
        message_ids = []
        for n in range(replies):
            contact = make_contact(
                session, org_row, lender, email=f"lo{n}@pinnacle.example", first_name=f"Lo{n}"
            )
            enrollment = m.Enrollment(
                org_id=org.id, job_id=job.id, contact_id=contact.id, status="active"
            )
            session.add(enrollment)
            session.flush()
            message_id = f"<win-back-{n}@lonestar.example.com>"
            session.add(
                m.EmailSend(
                    org_id=org.id,
                    job_id=job.id,
                    campaign_id=campaign.id,
                    enrollment_id=enrollment.id,
                    contact_id=contact.id,
                    message_id=message_id,
                    gmail_thread_id=f"thread-{n}",
                    to_email=contact.email,
                    subject="Turn times are down",
                    status="sent",
                    sent_at=now - timedelta(days=2),
                )
            )
            message_ids.append(message_id)
        session.commit()
    return Seeded(org_id=org.id, rep_id=rep_id, token=token, campaign_ids=[]), message_ids


@pytest.mark.parametrize("db_kind", ["postgresql", "sqlite"])
def test_a_worker_killed_between_claim_and_record_loses_no_reply_and_acts_on_each_once(
    committed_engine: Engine,
    served_slack: ServedSlack,
    google: GoogleServer,
    forks: ForkServer,
    tmp_path: Path,
) -> None:
    """Replies (one of them asking to be removed) are pushed; a process dies after claiming
    them, the next after recording them, a last one runs clean: every reply is processed
    once, every opt-out and enrollment stop happens once."""
    from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
    from tests.support.google import make_email

    served_slack.stand_in.reset()
    seeded, message_ids = _seed_inbound(committed_engine, replies=6)
    url = committed_engine.url.render_as_string(hide_password=False)
    settings = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "PUBSUB_AUDIENCE": INBOUND_AUDIENCE,
        "PUBSUB_SERVICE_ACCOUNT": DEFAULT_PUSH_SERVICE_ACCOUNT,
        **{k: str(v) for k, v in google_settings(google).items()},
    }
    _connect_gmail(committed_engine, settings, google, seeded.token)
    bodies = ["Yes, send me your turn times and fee schedule."] * len(message_ids)
    bodies[0] = "Please remove me from your mailing list."
    for n, (message_id, body) in enumerate(zip(message_ids, bodies, strict=True)):
        google.google.gmail.deliver(
            REP_EMAIL,
            make_email(
                sender=f"lo{n}@pinnacle.example",
                to=REP_EMAIL,
                subject="Re: Turn times are down",
                body=body,
                in_reply_to=message_id,
            ),
        )
    deployment = Deployment(
        forks,
        env={
            **os.environ,
            **settings,
            "DATABASE_URL": url,
            "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
            "WORK_LEASE_SECONDS": LEASE_SECONDS,
            "WORKER_POLL_SECONDS": "0.2",
            "LOG_LEVEL": "WARNING",
        },
        logs=tmp_path,
    )
    sessions = make_session_factory(committed_engine)

    def statuses() -> Counter[str]:
        with sessions() as session:
            return Counter(
                session.scalars(
                    select(m.InboundEmail.status).where(
                        m.InboundEmail.from_email.like("lo%@pinnacle.example")
                    )
                )
            )

    try:
        for point in INBOUND_POINTS:
            deployment.start(point)
            headers, body = google.google.push_request(REP_EMAIL, audience=INBOUND_AUDIENCE)
            deployment.post("/api/integrations/gmail/push", json=body, headers=headers)
            deployment.wait_killed(point, timeout=60)
        deployment.start()
        wait_until(
            lambda: statuses() == Counter({"processed": len(message_ids)}),
            timeout=60,
            what="every reply processed",
        )
        assert deployment.terminate() == -signal.SIGTERM
    finally:
        deployment.stop()

    with sessions() as session:
        rows = session.scalars(
            select(m.InboundEmail)
            .where(m.InboundEmail.from_email.like("lo%@pinnacle.example"))
            .order_by(m.InboundEmail.from_email)
        ).all()
        opt_outs = session.scalar(
            select(func.count())
            .select_from(m.ContactEngagementEvent)
            .where(m.ContactEngagementEvent.event == "opted_out")
        )
        enrollments = session.execute(select(m.Enrollment.status, m.Enrollment.stop_email_id)).all()
        replied = session.scalars(
            select(m.EmailSend.reply_email_id).where(m.EmailSend.replied_at.is_not(None))
        ).all()
        conversations = session.scalars(select(m.EmailConversation.reply_count)).all()
    assert deployment.kills == INBOUND_POINTS
    assert len(rows) == len(message_ids)
    # One action per reply, never two: the first process died before recording anything,
    # the second recorded once and died after; the third found nothing left to do.
    assert sorted(len(r.actions) for r in rows) == [1] * len(message_ids)
    assert sorted(r.actions[0]["action"] for r in rows) == sorted(
        ["opted_out"] + ["enrollments_stopped"] * (len(message_ids) - 1)
    )
    assert {r.pipeline_attempts for r in rows} == {2}
    assert opt_outs == 1
    assert {status for status, _ in enrollments} == {"stopped"}
    assert {email_id for _, email_id in enrollments} == {r.id for r in rows}
    # Replies in words mark their send replied, the request to be removed included.
    assert sorted(replied) == sorted(r.id for r in rows)
    assert conversations == [1] * len(message_ids)
