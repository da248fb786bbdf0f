"""What the reply-card benchmarks share: a launched campaign whose emails were sent, the
stand-ins, and Salesbot run as its real processes.

- `fresh_database(name)`: a PostgreSQL database created afresh and migrated.
- `StandIns`: the Slack Web API and Google (Gmail, OAuth, Pub/Sub certs) stand-ins, served
  on loopback from this process; their clocks are this process's `time.time`, so a time
  taken here and a time they record can be subtracted.
- `launch_campaign(...)`: an organization bound to the stand-in's workspace, a rep with a
  Slack id and a connected Gmail mailbox, clients and contacts, and a campaign launched as
  a job by the rep: planned, drafted, every card approved and every email sent by the
  outbox into the Gmail stand-in, exactly as the use cases do it (in this process, without
  Slack, so no card message is posted). Each contact's reply then answers a real sent
  message: its Message-ID, its Gmail thread.
- `Salesbot`: `salesbot serve`, or `salesbot web` + `salesbot worker`, started as
  subprocesses from the command line entry point with the settings a deployment sets,
  pointed at the stand-ins.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import select, update

from bot.app import build_runtime
from bot.settings import Settings
from domain.outreach import Actor
from integrations.crypto import SecretBox
from integrations.gmail.client import GMAIL_SCOPES
from sandbox.google import GoogleStandIn, GoogleUrls, start_google_stand_in
from sandbox.google_oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT, push_body
from sandbox.server import free_port
from sandbox.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_TEAM_ID,
    SlackStandIn,
    api_base_url,
    start_slack_stand_in,
)
from storage import models as m
from storage.gmail import GmailAccountRepo
from storage.migrate import upgrade
from tests.support.accounts import create_org, link_slack_team

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_KEY = "bench-secret-key-for-reply-cards-0123456789-abcdef"
SIGNING_SECRET = "bench-reply-cards-signing-secret"
AUDIENCE = "https://salesbot.example/api/integrations/gmail/push"
PUSH_PATH = "/api/integrations/gmail/push"
REP_EMAIL = "maria@bench-appraisals.example"
REP_SLACK_ID = "U0BENCHMARIA"
CAMPAIGN = "Q4 lender win-back"
LABELLED = ROOT / "integrations/offline_data/labelled_replies.jsonl"


def fresh_database(name: str) -> str:
    """Create the database `name` afresh; return its URL, migrated to head."""
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    return url


def labelled_replies(categories: Mapping[str, set[str] | None]) -> list[dict[str, Any]]:
    """The hand-labelled replies of `categories` ({category: intents, or None for any})."""
    with LABELLED.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    wanted = []
    for row in rows:
        intents = categories.get(row["category"], set())
        if row["category"] in categories and (intents is None or row["intent"] in intents):
            wanted.append(row)
    return wanted


class StandIns:
    """The Slack and Google stand-ins served from this process."""

    def __init__(self) -> None:
        self.slack: SlackStandIn
        self.google: GoogleStandIn
        self.slack, self._slack_server = start_slack_stand_in()
        self.google, self._google_server = start_google_stand_in(GoogleStandIn())
        self.slack.add_user(REP_SLACK_ID, "maria", REP_EMAIL, real_name="Maria Lopez")
        self.google.add_mailbox(REP_EMAIL)
        self.push_token = self.google.signer.sign(AUDIENCE, expires_in=3600)

    @property
    def google_urls(self) -> GoogleUrls:
        """The URLs of the Google stand-in."""
        return GoogleUrls(self._google_server.url)

    @property
    def slack_api_url(self) -> str:
        """SLACK_API_URL for the Slack stand-in."""
        return api_base_url(self._slack_server)

    def push_headers(self) -> dict[str, str]:
        """The headers of a Pub/Sub push (the token is reused, as Pub/Sub does for an hour)."""
        return {"Authorization": f"Bearer {self.push_token}", "Content-Type": "application/json"}

    def push_body(self, history_id: int) -> dict[str, Any]:
        """The body of the Pub/Sub push that announces the rep's mailbox at `history_id`."""
        return push_body(REP_EMAIL, history_id)

    def stop(self) -> None:
        """Stop both servers."""
        self._slack_server.stop()
        self._google_server.stop()


class Pushes:
    """Delivers replies into the rep's mailbox and sends each one's push, timing the push."""

    def __init__(self, stand_ins: StandIns, app_url: str) -> None:
        self._stand_ins = stand_ins
        self._client = httpx.Client(base_url=app_url, timeout=30)
        self.pushed_at: dict[str, float] = {}  # Gmail message id -> push sent (time.time)
        self.refused: list[str] = []

    def deliver_and_push(self, raw: bytes, pool: ThreadPoolExecutor | None = None) -> str:
        """Deliver one reply and push (from `pool` when given); return its Gmail id."""
        gmail = self._stand_ins.google.gmail
        gmail_id = gmail.deliver(REP_EMAIL, raw)
        history_id = gmail.history_id(REP_EMAIL)
        if pool is None:
            self._push(gmail_id, history_id)
        else:
            pool.submit(self._push, gmail_id, history_id)
        return gmail_id

    def _push(self, gmail_id: str, history_id: int) -> None:
        self.pushed_at[gmail_id] = time.time()
        answer = self._client.post(
            PUSH_PATH,
            json=self._stand_ins.push_body(history_id),
            headers=self._stand_ins.push_headers(),
        )
        if answer.status_code != 204:
            self.refused.append(f"{answer.status_code} {answer.text[:200]}")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def salesbot_env(database_url: str, stand_ins: StandIns, **extra: str) -> dict[str, str]:
    """The environment of a Salesbot process with real-mode settings pointed at the stand-ins."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "GOOGLE_", "ANTHROPIC_", "PUBSUB_", "GMAIL_"))
    }
    return {
        **keep,
        "DATABASE_URL": database_url,
        "SALESBOT_SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": "https://salesbot.example",
        "LOG_LEVEL": "WARNING",
        "SLACK_API_URL": stand_ins.slack_api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "GOOGLE_CLIENT_ID": SANDBOX_CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        **stand_ins.google_urls.as_env(),
        "PUBSUB_AUDIENCE": AUDIENCE,
        "PUBSUB_SERVICE_ACCOUNT": DEFAULT_PUSH_SERVICE_ACCOUNT,
        **extra,
    }


def _settings(env: Mapping[str, str]) -> Settings:
    names = set(Settings.model_fields)
    return Settings(_env_file=None, **{k: v for k, v in env.items() if k in names})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Send:
    """One campaign email as Gmail holds it."""

    contact_id: int
    to_email: str
    first_name: str
    subject: str
    body: str
    message_id: str
    thread_id: str


@dataclass
class Campaign:
    """The launched campaign: its org, rep, job and the emails sent."""

    org_id: int
    rep_id: int
    job_id: int
    account_id: int
    sends: list[Send] = field(default_factory=list)


def launch_campaign(database_url: str, stand_ins: StandIns, contacts: int) -> Campaign:
    """Seed the org and launch the campaign to `contacts` contacts; send every email."""
    env = salesbot_env(database_url, stand_ins)
    env.pop("SLACK_BOT_TOKEN")  # no chat while seeding: no card message is posted
    env.pop("SLACK_SIGNING_SECRET")
    runtime = build_runtime(_settings(env))
    sessions = runtime.services.session_factory
    grant = stand_ins.google.oauth.issue_grant(REP_EMAIL, scopes=GMAIL_SCOPES)
    assert grant.refresh_token is not None
    now = runtime.services.clock.now()
    with sessions() as session:
        org = create_org(session, slug="bench-replies", name="Bench Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        rep = m.User(
            org_id=org.id,
            email=REP_EMAIL,
            name="Maria Lopez",
            slack_user_id=REP_SLACK_ID,
            role="admin",
        )
        session.add(rep)
        session.flush()
        account = GmailAccountRepo(session, SecretBox(SECRET_KEY)).save_connection(
            org.id,
            user_id=rep.id,
            email=REP_EMAIL,
            scopes=GMAIL_SCOPES,
            refresh_token=grant.refresh_token,
            access_token=grant.access_token,
            access_token_expires_at=now + timedelta(seconds=grant.expires_in),
            daily_send_cap=10_000,
            min_send_interval_seconds=0,
            now=now,
        )
        clients = [
            m.Client(
                org_id=org.id,
                name=f"Lender {n}",
                domain=f"lender{n}.example",
                tags=[],
                last_ordered_at=now - timedelta(days=60 + n),
            )
            for n in range(max(1, contacts // 5))
        ]
        session.add_all(clients)
        session.flush()
        first_names = ["Dana", "Ray", "Priya", "Tom", "Keisha", "Luis", "Ann", "Wei", "Sam"]
        session.add_all(
            m.Contact(
                org_id=org.id,
                client_id=clients[n % len(clients)].id,
                email=f"lo{n}@lender{n % len(clients)}.example",
                first_name=first_names[n % len(first_names)],
                last_name=f"Whitfield{n}",
                role_code="LO",
                state="TX",
                tags=["win-back"],
                lead_score=60,
            )
            for n in range(contacts)
        )
        template = m.EmailTemplate(
            org_id=org.id,
            name="Win-back step 1",
            category="campaign",
            subject="Turn times in {{ state }} are down, {{ first_name }}",
            body="Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days since "
            "{{ company_name }} last ordered. Our turn times are down to 5 days.\n\n"
            "{{ rep_name }}",
            variables=[],
        )
        session.add(template)
        session.flush()
        session.add(
            m.MarketingCampaign(
                org_id=org.id,
                name=CAMPAIGN,
                goal="reactivation",
                include_tags=["win-back"],
                channels=["email"],
                email_template_ids=[template.id],
                cadence_days=[0, 4, 10, 21],
            )
        )
        session.commit()
        org_id, rep_id, account_id = org.id, rep.id, account.id
    outreach = runtime.outreach
    launched = outreach.jobs.launch_campaign(org_id, CAMPAIGN, owner_id=rep_id)
    outreach.jobs.plan_job(org_id, launched.job.id)
    runtime.run_tasks_until_idle()
    actor = Actor(org_id=org_id, user_id=rep_id, role="admin", slack_user_id=REP_SLACK_ID)
    with sessions() as session:
        cards = session.execute(
            select(m.Card.id, m.Card.draft_fingerprint).where(m.Card.job_id == launched.job.id)
        ).all()
    # One at a time, as one rep clicks: each approval sends its email there and then (the
    # mailbox sends one email at a time; a click that finds it busy is queued for later).
    for card_id, fingerprint in cards:
        outreach.review.approve_card(actor, card_id, fingerprint=fingerprint)
    assert runtime.gmail is not None
    runtime.gmail.outbox.run_until_idle()
    campaign = Campaign(org_id, rep_id, launched.job.id, account_id)
    with sessions() as session:
        rows = session.execute(
            select(m.EmailSend, m.Contact.first_name)
            .join(m.Contact, m.Contact.id == m.EmailSend.contact_id)
            .where(m.EmailSend.job_id == launched.job.id, m.EmailSend.status == "sent")
            .order_by(m.EmailSend.id)
        ).all()
        campaign.sends = [
            Send(
                contact_id=int(send.contact_id or 0),
                to_email=send.to_email,
                first_name=first_name or "",
                subject=send.subject,
                body=send.body_text or "",
                message_id=send.message_id,
                thread_id=str(send.gmail_thread_id),
            )
            for send, first_name in rows
        ]
        # The sync starts after our own sent copies: a push lists the replies only (the
        # copies are our rep's mail and make no card; a pointer before them would make the
        # first sync fetch them all).
        session.execute(
            update(m.GmailAccount)
            .where(m.GmailAccount.id == account_id)
            .values(
                history_id=stand_ins.google.gmail.history_id(REP_EMAIL),
                last_synced_at=runtime.services.clock.now(),
            )
        )
        session.commit()
    runtime.services.engine.dispose()
    if len(campaign.sends) != contacts:
        raise RuntimeError(f"{len(campaign.sends)} of {contacts} campaign emails were sent")
    return campaign


class Salesbot:
    """Salesbot as deployed: `salesbot serve`, or `salesbot web` and `salesbot worker`."""

    def __init__(self, mode: str, env: Mapping[str, str], *, web_processes: int = 2) -> None:
        if mode not in ("serve", "web+worker"):
            raise ValueError(f"mode {mode!r}: serve or web+worker")
        self.mode = mode
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Their logs (uvicorn's access lines included) go to a file, not between the figures.
        self.log_path = Path(tempfile.mkdtemp(prefix="salesbot-bench-")) / "salesbot.log"
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-c", "from bot.cli import main; main()"]
        self._processes: list[subprocess.Popen[bytes]] = []
        if mode == "serve":
            self._start([*command, "serve", "--port", str(self.port)], env)
        else:
            self._start(
                [*command, "web", "--port", str(self.port), "--processes", str(web_processes)], env
            )
            self._start([*command, "worker"], env)
        self._wait_healthy()

    def _start(self, args: list[str], env: Mapping[str, str]) -> None:
        self._processes.append(
            subprocess.Popen(args, env=dict(env), cwd=ROOT, stdout=self._log, stderr=self._log)
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    self.stop()
                    raise RuntimeError(
                        f"salesbot {self.mode} exited with {process.returncode}; its log: "
                        f"{self.log_path}"
                    )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"salesbot {self.mode} did not answer /healthz within 90 s; its log: {self.log_path}"
        )

    @property
    def pids(self) -> list[int]:
        """The process ids of the started processes (uvicorn's own workers not included)."""
        return [p.pid for p in self._processes]

    def stop(self) -> None:
        """Stop the processes (SIGTERM, then SIGKILL after 30 s)."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._log.close()


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their descendants
    (uvicorn's worker processes), read from /proc (Linux); 0.0 where /proc is absent."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        pid = int(entry.parent.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = set(pids), True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(children)
        tree |= children
    return sum(used.get(pid, 0.0) for pid in tree)


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of `values` (pct in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
