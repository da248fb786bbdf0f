"""A person evaluating Salesbot uses the /sandbox console in a browser, as a rep would.

A real `salesbot serve` runs in sandbox mode (no credentials, its own SQLite file) and Debian's
Chromium drives the console: a command launches a campaign, cards arrive, one is approved and
sent, its email shows in the mailbox with a working unsubscribe link, another is edited
through its modal and sent, and a reply delivered to a sent email comes back as a reply card.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN, api_base_url, start_slack_stand_in

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_EMAIL = "admin@sandbox-appraisals.example"
CAMPAIGN = "Q4 lender win-back"
# samples/contacts.csv: seven loan officers, one of them opted out.
LOAN_OFFICERS_WHO_MAY_BE_EMAILED = 6
SALESBOT = "import sys; from bot.cli import main; sys.argv[0] = 'salesbot'; main()"
# Settings that would take the server out of sandbox mode if the machine had them.
CREDENTIALS = re.compile(r"^(SLACK_|GOOGLE_|ANTHROPIC_|GMAIL_|PUBSUB_)")
WAIT = 60_000  # ms: a launch plans, drafts and posts cards in the background


@dataclass
class Served:
    """A `salesbot serve` in sandbox mode."""

    url: str
    env: dict[str, str]
    cwd: Path
    log: Path

    def salesbot(self, *args: str) -> str:
        """Run the command line against the same database; return what it printed."""
        done = subprocess.run(
            [sys.executable, "-c", SALESBOT, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"salesbot {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def serving(tmp_path: Path, *, ready: str, **settings: str) -> Iterator[Served]:
    """Run `salesbot serve` with its own SQLite file until `ready` answers 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not CREDENTIALS.match(k)}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'salesbot.db'}",
        SALESBOT_SECRET_KEY=secrets.token_urlsafe(32),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        PORT=str(port),
        HOST="127.0.0.1",
        PYTHONPATH=str(ROOT),
        **settings,
    )
    log = tmp_path / "serve.log"
    server = Served(url=f"http://127.0.0.1:{port}", env=env, cwd=tmp_path, log=log)
    if "SLACK_BOT_TOKEN" in settings:
        server.salesbot("db", "upgrade")  # sandbox mode migrates by itself; real mode does not
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SALESBOT, "serve"],
            cwd=tmp_path,  # no .env of the checkout is read
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError(f"salesbot serve exited:\n{server.tail()}")
            try:
                if httpx.get(server.url + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"salesbot serve did not answer in 90 s:\n{server.tail()}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path, ready="/sandbox") as server:
        yield server


def seed_sandbox(server: Served) -> str:
    """Give the sandbox organization contacts, a template, a campaign and the admin's Gmail;
    return the campaign's name. (One place, so it can go once the sandbox comes up seeded.)"""
    for kind in ("clients", "contacts"):
        server.salesbot("import", kind, str(ROOT / "samples" / f"{kind}.csv"), "--org", "sandbox")
    token = server.salesbot(
        "token", "create", "--org", "sandbox", "--name", "console", "--user-email", ADMIN_EMAIL
    ).strip()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as api:
        link = api.get("/api/integrations/gmail/connect")
        assert link.status_code == 200, link.text
        # The rep's browser: the link sets the consent cookie, Google's stand-in consents
        # for the admin, and the callback connects the mailbox.
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            connected = browser.get(link.json()["authorization_url"])
        assert connected.status_code == 200, connected.text
        status = api.get("/api/integrations/gmail/status").json()
        assert status.get("connected") is True, status
        template = api.post(
            "/api/marketing/email-templates",
            json={
                "name": "Win-back 1",
                "category": "campaign",
                "subject": "Turn times are down, {{ first_name }}",
                "body": "Hi {{ first_name }},\n\nWe would love to appraise for you again.\n",
            },
        )
        assert template.status_code == 201, template.text
        campaign = api.post(
            "/api/marketing/campaigns",
            json={
                "name": CAMPAIGN,
                "goal": "reactivation",
                "target_role_codes": ["LO"],
                "email_template_ids": [template.json()["id"]],
            },
        )
        assert campaign.status_code == 201, campaign.text
    return CAMPAIGN


def launch_chromium(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser test needs Debian's Chromium at {CHROMIUM}: apt-get install chromium",
            pytrace=False,
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def test_a_rep_launches_approves_edits_and_sees_a_reply_in_the_console(
    served: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    campaign = seed_sandbox(served)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            page.goto(served.url + "/sandbox")
            expect(page.locator("#title")).to_have_text("salesbot")

            # Launch from the command box: the ack shows, then one card per loan officer.
            page.fill("#command-text", f"/campaign launch {campaign}")
            page.press("#command-text", "Enter")
            expect(page.locator("#status")).to_contain_text("the app answered 200")
            approve = page.locator("#messages .msg button", has_text="Approve & send")
            expect(approve).to_have_count(LOAN_OFFICERS_WHO_MAY_BE_EMAILED, timeout=WAIT)
            cards = page.locator(
                "#messages .msg", has=page.locator("button", has_text="Approve & send")
            )

            # Approve the first card: it turns into "Sent" and the email is in the mailbox.
            first = cards.nth(0)
            first_ts = first.get_attribute("data-ts")
            first.locator("button", has_text="Approve & send").click()
            sent_card = page.locator(f'#messages .msg[data-ts="{first_ts}"]')
            expect(sent_card).to_contain_text("✅ Sent by", timeout=WAIT)
            rows = page.locator("#mailbox .mail-row")
            expect(rows).to_have_count(1, timeout=WAIT)
            rows.nth(0).click()
            message = page.locator("#mailbox .mail-message.sent")
            expect(message).to_contain_text("Turn times are down")
            expect(message).to_contain_text("List-Unsubscribe")
            unsubscribe = message.locator(".unsubscribe a", has_text="unsubscribe").first
            href = unsubscribe.get_attribute("href") or ""
            assert href.startswith(served.url + "/unsubscribe/"), href
            landing = httpx.get(href, timeout=10)
            assert landing.status_code == 200
            assert "unsubscribe" in landing.text.lower()

            # Edit the next card through its modal, then approve it.
            second = cards.nth(0)
            second_ts = second.get_attribute("data-ts")
            second.locator("button", has_text="Edit").click()
            modal = page.locator("#modal-layer .sb-modal")
            expect(modal.locator(".sb-modal-title")).to_have_text("Edit email", timeout=WAIT)
            modal.locator("input[type=text]").first.fill("A faster turn time for you")
            modal.locator("textarea").first.fill("Hello again,\n\nOur turn times are 3 days now.")
            modal.locator("button[type=submit]").click()
            expect(page.locator("#modal-layer")).to_be_hidden(timeout=WAIT)
            edited_card = page.locator(f'#messages .msg[data-ts="{second_ts}"]')
            expect(edited_card).to_contain_text("A faster turn time for you", timeout=WAIT)
            edited_card.locator("button", has_text="Approve & send").click()
            expect(edited_card).to_contain_text("✅ Edited and sent by", timeout=WAIT)
            expect(rows).to_have_count(2, timeout=WAIT)
            expect(page.locator("#mailbox")).to_contain_text("A faster turn time for you")

            # A reply to the first email, delivered with Gmail's push, becomes a reply card.
            page.locator("#in-reply-to").select_option(index=2)  # the oldest sent email
            expect(page.locator("#deliver-subject")).to_have_value(re.compile("^Re: Turn times"))
            page.fill("#deliver-body", "Thanks! Can you call me Tuesday at 2pm about a refi?")
            page.locator("#deliver-form button[type=submit]").click()
            expect(page.locator("#status")).to_contain_text("delivered to", timeout=WAIT)
            reply_card = page.locator("#messages .msg", has_text="Can you call me Tuesday at 2pm")
            expect(reply_card).to_have_count(1, timeout=WAIT)
            # In the mailbox, the reply joined the first email's thread.
            thread = page.locator("#mailbox .mail-row").first
            expect(thread.locator(".mail-count")).to_have_text("2")
            expect(thread).to_contain_text("Can you call me Tuesday at 2pm")
            received = page.locator("#mailbox .mail-message.received")
            expect(received).to_contain_text("In-Reply-To")
            expect(received.locator(".mail-message-subject")).to_have_text(
                re.compile("^Re: Turn times are down")
            )
        except BaseException:
            shot = tmp_path / "sandbox-console-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the console: {shot}\nserver log:\n{served.tail(60)}")
            raise
        finally:
            browser.close()


def test_the_console_is_not_served_outside_sandbox_mode(tmp_path: Path) -> None:
    slack, slack_server = start_slack_stand_in()
    try:
        with serving(
            tmp_path,
            ready="/healthz",
            SLACK_BOT_TOKEN=DEFAULT_BOT_TOKEN,
            SLACK_SIGNING_SECRET="a-real-signing-secret",
            SLACK_API_URL=api_base_url(slack_server),
        ) as server:
            for path in ("/sandbox", "/sandbox/panes", "/sandbox/static/console.js"):
                assert httpx.get(server.url + path, timeout=10).status_code == 404, path
            assert "SANDBOX MODE" not in server.log.read_text()
    finally:
        slack_server.stop()
