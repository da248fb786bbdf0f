"""A person evaluating Salesbot uses the /sandbox console in a browser, as a rep would.

A real `salesbot serve` runs in sandbox mode (no credentials, its own SQLite file, the seeded
firm) and Debian's Chromium drives the console: the banner's first suggestion launches the
seeded campaign, its cards arrive in #sales-review, one is approved and sent, its email shows
in the mailbox with a working unsubscribe link, another is edited through its modal and
sent, a reply written in the inbound form comes back as a reply card, a sample "unsubscribe"
reply opts its contact out (as `/engagement` shows), the week's digest posts its chart, and
moving the clock brings a follow-up step due, which is approved and sent in the first
email's thread.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.seed import CADENCE_DAYS, CAMPAIGN_NAME, REVIEW_CHANNEL_NAME, business_moment
from sandbox.seed_marketing import MARKETING_CHANNEL_NAME, REPUTATION_CHANNEL_NAME
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
# The clock control's steps, in hours, largest first (sandbox/console/app.py CLOCK_STEPS).
CLOCK_STEPS = (168, 96, 24, 1)
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


def launch_chromium(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser test needs Debian's Chromium at {CHROMIUM}: apt-get install chromium",
            pytrace=False,
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def test_a_rep_launches_approves_edits_and_sees_replies_and_a_follow_up_in_the_console(
    served: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            page.goto(served.url + "/sandbox")
            expect(page.locator("#title")).to_have_text(f"#{REVIEW_CHANNEL_NAME}")

            # The first suggestion puts the launch of the seeded campaign in the command box.
            launch = f'/campaign launch "{CAMPAIGN_NAME}"'
            page.locator(".try-next [data-suggest]", has_text=launch).click()
            expect(page.locator("#command-text")).to_have_value(launch)
            page.press("#command-text", "Enter")
            expect(page.locator("#status")).to_contain_text("the app answered 200")
            cards = page.locator(
                "#messages .msg", has=page.locator("button", has_text="Approve & send")
            )
            expect(cards.nth(2)).to_be_visible(timeout=WAIT)
            expect(cards.first).to_contain_text(f"Step 1 of {len(CADENCE_DAYS)}")

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
            expect(message).to_contain_text("our turn times are down")
            expect(message).to_contain_text("List-Unsubscribe")
            unsubscribe = message.locator(".unsubscribe a", has_text="unsubscribe").first
            href = unsubscribe.get_attribute("href") or ""
            assert href.startswith(served.url + "/unsubscribe/"), href
            landing = httpx.get(href, timeout=10)
            assert landing.status_code == 200
            assert "unsubscribe" in landing.text.lower()
            rows.nth(0).click()  # closes the thread again

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

            # A third one goes out untouched: its contact will get the follow-up.
            third = cards.nth(0)
            third_ts = third.get_attribute("data-ts")
            third.locator("button", has_text="Approve & send").click()
            expect(page.locator(f'#messages .msg[data-ts="{third_ts}"]')).to_contain_text(
                "✅ Sent by", timeout=WAIT
            )
            expect(rows).to_have_count(3, timeout=WAIT)
            sent_at = _sandbox_now(page.locator("#clock").inner_text())

            # A reply written in the form, to the first email (the oldest: the last choice),
            # is pushed as Gmail would and comes back as a reply card in the rep's DM.
            choices = page.locator("#in-reply-to option")
            expect(choices).to_have_count(4)
            page.locator("#in-reply-to").select_option(index=3)
            expect(page.locator("#deliver-subject")).to_have_value(re.compile("^Re: .*turn times"))
            page.fill("#deliver-body", "Thanks! Can you call me Tuesday at 2pm about a refi?")
            page.locator("#deliver-form button[type=submit]").click()
            expect(page.locator("#status")).to_contain_text("Gmail's push answered 2", timeout=WAIT)
            dm = page.locator(
                f'#channels [data-channel-id="{page.locator("body").get_attribute("data-dm")}"]'
            )
            expect(dm.locator(".badge")).to_be_visible(timeout=WAIT)  # a new message there
            dm.click()
            expect(page.locator("#title")).to_have_text("salesbot")
            reply_card = page.locator("#messages .msg", has_text="Can you call me Tuesday at 2pm")
            expect(reply_card).to_have_count(1, timeout=WAIT)
            # In the mailbox, the reply joined the first email's thread.
            thread = page.locator("#mailbox .mail-row").first
            expect(thread.locator(".mail-count")).to_have_text("2")
            expect(thread).to_contain_text("Can you call me Tuesday at 2pm")

            # A sample reply: the second email's contact asks to be removed. No card comes
            # for an opt-out; /engagement shows the contact opted out.
            page.locator("#in-reply-to").select_option(index=2)
            page.locator("#sample").select_option("unsubscribe")
            expect(page.locator("#sample-note")).to_contain_text("opted out at once")
            expect(page.locator("#compose-fields")).to_be_hidden()
            page.locator("#deliver-button").click()
            expect(page.locator("#status")).to_contain_text(
                "delivered “Unsubscribe request” from", timeout=WAIT
            )
            delivery = page.locator("#deliveries .delivery").first
            expect(delivery).to_contain_text("Salesbot answered 204")
            delivery.locator("[data-suggest]").click()
            expect(page.locator("#command-text")).to_have_value(re.compile("^/engagement .+@"))
            opted_out = page.locator("#messages .msg.ephemeral", has_text="Opted out")
            deadline = time.monotonic() + WAIT / 1000
            while True:  # the opt-out lands once the pipeline has read the reply
                page.press("#command-text", "Enter")
                try:
                    expect(opted_out).to_have_count(1, timeout=3000)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    delivery.locator("[data-suggest]").click()
            expect(opted_out).to_contain_text("1 opt-out")

            # The week's digest in #sales-review, with its chart.
            page.locator("#channels [data-channel-id]", has_text=REVIEW_CHANNEL_NAME).click()
            expect(page.locator("#title")).to_have_text(f"#{REVIEW_CHANNEL_NAME}")
            page.fill("#command-text", "/digest now --weekly")
            page.press("#command-text", "Enter")
            digest = page.locator("#messages .msg", has_text="Engagement digest, last 7 days")
            expect(digest).to_have_count(1, timeout=WAIT)
            chart = digest.locator("img.sb-image-img")
            expect(chart).to_be_visible()
            assert chart.evaluate("image => image.complete && image.naturalWidth > 0")

            # Move the clock to a business morning after the cadence's gap: the third
            # contact's step 2 comes due (the two others answered), and is sent in its thread.
            target = business_moment(sent_at + timedelta(days=CADENCE_DAYS[1])) + timedelta(hours=1)
            started = time.monotonic()
            _advance(page, hours=math.ceil((target - sent_at) / timedelta(hours=1)))
            follow_up = page.locator("#messages .msg", has_text=f"Step 2 of {len(CADENCE_DAYS)}")
            for _ in range(3):  # a holiday in the way: the next business morning
                try:
                    expect(follow_up).to_have_count(1, timeout=10_000)
                    break
                except AssertionError:
                    _advance(page, hours=24)
            expect(follow_up).to_have_count(1)
            clock_seconds = time.monotonic() - started
            follow_up.locator("button", has_text="Approve & send").click()
            expect(follow_up).to_contain_text("✅ Sent by", timeout=WAIT)
            expect(rows).to_have_count(3)
            expect(page.locator("#mailbox .mail-count")).to_have_text(["2", "2", "2"])
            print(f"clock moved and step 2 posted in {clock_seconds:.1f} s")
        except BaseException:
            shot = tmp_path / "sandbox-console-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the console: {shot}\nserver log:\n{served.tail(60)}")
            raise
        finally:
            browser.close()


def test_a_newcomer_finds_the_content_calendar_and_the_review_cards(
    served: Served, tmp_path: Path
) -> None:
    """Issue 16's seeded firm: this week's content from /content list and the newsletter's
    preview card in #marketing, the 2-star Zillow review's drafted response in #reputation
    (approved here), the lawsuit escalated in the admin's DM, and the trends API agreeing."""
    from playwright.sync_api import expect, sync_playwright

    found = re.search(r"API token : (\S+)", served.log.read_text())
    assert found is not None, served.tail()
    api = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {found.group(1)}"}, timeout=10
    )
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            page.goto(served.url + "/sandbox")
            expect(page.locator("#title")).to_have_text(f"#{REVIEW_CHANNEL_NAME}")
            expect(page.locator(".try-next")).to_contain_text("/api/reputation/trends")

            # The Try-next suggestion opens #marketing with /content list in the box.
            page.locator(".try-next [data-suggest]", has_text="/content list").click()
            expect(page.locator("#title")).to_have_text(f"#{MARKETING_CHANNEL_NAME}")
            expect(page.locator("#command-text")).to_have_value("/content list")
            page.press("#command-text", "Enter")
            listed = page.locator("#messages .msg.ephemeral", has_text="This week's content")
            expect(listed).to_have_count(1, timeout=WAIT)
            schedule = api.get("/api/marketing/content-schedule").json()
            for entry in schedule:  # this week's posts (none on a Friday afternoon's week)
                expect(listed).to_contain_text(entry["title"])
            posts = api.get(
                "/api/marketing/content-schedule",
                params={"from": datetime.now(UTC).date().isoformat(), "to": _in_days(10)},
            ).json()
            assert sorted(p["channel"] for p in posts) == [
                "blog",
                "facebook",
                "instagram",
                "linkedin",
            ]

            # The newsletter's issue waits for review there, its preview card not approved.
            preview = page.locator("#messages .msg", has_text="Lender Update")
            expect(preview).to_have_count(1, timeout=WAIT)
            expect(preview.locator("button", has_text="Approve & schedule")).to_be_visible()
            expect(preview).to_contain_text("Turn times are down to 5 days")

            # The drafted response to the 2-star Zillow review waits in #reputation.
            page.locator("#channels [data-channel-id]", has_text=REPUTATION_CHANNEL_NAME).click()
            expect(page.locator("#title")).to_have_text(f"#{REPUTATION_CHANNEL_NAME}")
            responses = page.locator(
                "#messages .msg", has=page.locator("button", has_text="Approve response")
            )
            expect(responses).to_have_count(3, timeout=WAIT)
            zillow = responses.filter(has_text="Zillow review")
            expect(zillow).to_contain_text("★★☆☆☆")
            expect(zillow).to_contain_text("Hi Rebecca T.")
            zillow_ts = zillow.get_attribute("data-ts")
            zillow.locator("button", has_text="Approve response").click()
            expect(page.locator(f'#messages .msg[data-ts="{zillow_ts}"]')).to_contain_text(
                "✅ Response approved by", timeout=WAIT
            )

            # The review that mentions a lawsuit is escalated to the account manager's DM.
            dm = page.locator(
                f'#channels [data-channel-id="{page.locator("body").get_attribute("data-dm")}"]'
            )
            dm.click()
            expect(page.locator("#title")).to_have_text("salesbot")
            escalated = page.locator("#messages .msg", has_text="grounds for a lawsuit")
            expect(escalated).to_have_count(1, timeout=WAIT)
            expect(escalated).to_contain_text("Escalated to the account manager")
            expect(escalated.locator("button", has_text="Mark handled")).to_be_visible()

            # The trends API says what the cards did.
            totals = api.get("/api/reputation/trends").json()["totals"]
            assert (totals["reviews"], totals["escalated"]) == (6, 2)
            assert (totals["needing_response"], totals["responded"]) == (3, 1)
        except BaseException:
            shot = tmp_path / "sandbox-console-issue16-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the console: {shot}\nserver log:\n{served.tail(60)}")
            raise
        finally:
            browser.close()
            api.close()


def _in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def _sandbox_now(clock_text: str) -> datetime:
    """The sandbox's time as the console's header shows it."""
    found = re.search(r"\w{3} \d{2} \w{3} \d{4} \d{2}:\d{2} UTC", clock_text)
    assert found is not None, clock_text
    return datetime.strptime(found.group(0), "%a %d %b %Y %H:%M UTC").replace(tzinfo=UTC)


def _advance(page: Any, *, hours: int) -> None:
    """Move the sandbox clock `hours` forward with the clock control's buttons."""
    from playwright.sync_api import expect

    for step in CLOCK_STEPS:
        while hours >= step:
            before = page.locator("#clock").inner_text()
            page.locator(f'[data-clock="{step}"]').click()
            expect(page.locator("#clock")).not_to_have_text(before)
            hours -= step


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
