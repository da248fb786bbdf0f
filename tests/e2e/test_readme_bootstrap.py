"""The README's bootstrap, followed literally with real-mode settings, ends with cards in Slack.

The commands are read from README.md itself (its "Bootstrap" section), so the page and this
test cannot drift apart: `salesbot` lines run through the real command line, `curl` lines
become the same requests to the app, and `VAR=$(...)` keeps what a command printed. Slack
is the stand-in, reached by slack_sdk and Bolt over HTTP as in production; the person at
the keyboard answers the prompt of `org link-slack`, or opens the link `org install-link`
printed and approves the install on Slack's page.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from bot.app import build_app, build_runtime
from bot.cli import app as cli
from bot.settings import Settings
from domain.clock import SystemClock
from handlers.api.deps import Services
from sandbox.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TEAM_ID,
    RecordedCall,
    SlackStandIn,
)
from storage.db import make_session_factory
from tests.support.api import TEST_SECRET_KEY, make_settings
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import SIGNING_SECRET, running, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MARIA = "U0MARIA"
LONESTAR_TEAM = "T0LONESTAR"
LAUNCH = "launch Q4 lender win-back"
LOAN_OFFICERS_WHO_MAY_BE_EMAILED = 6  # samples/contacts.csv: 7 LOs, one opted out


def bootstrap_blocks() -> list[list[str]]:
    """The shell blocks of the README's bootstrap section after the settings, one command a
    line (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Bootstrap", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    commands = []
    for block in blocks[1:]:  # the first block is the .env settings
        joined = block.replace("\\\n", " ")
        commands.append(
            [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]
        )
    return commands


@dataclass
class Shell:
    """Runs README lines: salesbot through its command line, curl through the app."""

    settings: Settings
    client: TestClient
    variables: dict[str, str] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)

    def run(self, line: str, *, answer: str | None = None) -> str:
        assign = re.fullmatch(r"(\w+)=\$\((.*)\)", line)
        if assign:
            self.variables[assign.group(1)] = self.run(assign.group(2), answer=answer).strip()
            return ""
        command, _, jq = line.partition(" | jq -r ")
        words = [self._expand(word) for word in shlex.split(command)]
        if words[0] == ".venv/bin/salesbot":
            output = self._salesbot(words[1:], answer)
        elif words[0] == "curl":
            output = self._curl(words[1:], jq.strip())
        else:
            raise AssertionError(f"the README runs {words[0]!r}, which this test cannot follow")
        self.printed.append(output)
        return output

    def _expand(self, word: str) -> str:
        values = {"PUBLIC_BASE_URL": self.settings.PUBLIC_BASE_URL, **self.variables}
        return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], word)

    def _salesbot(self, args: list[str], answer: str | None) -> str:
        if args[0] in ("serve", "web", "worker"):
            return ""  # the app under test already serves
        result = CliRunner().invoke(cli, args, input=answer)
        assert result.exit_code == 0, f"salesbot {' '.join(args)}: {result.output}"
        return result.stdout

    def _curl(self, args: list[str], jq: str) -> str:
        method, headers, data, url = "GET", {}, None, None
        words = iter(args)
        for word in words:
            if word == "-X":
                method = next(words)
            elif word == "-H":
                name, _, value = next(words).partition(": ")
                headers[name] = value
            elif word == "-d":
                data = next(words)
            elif word == "-sS":
                continue
            else:
                url = word
        assert url is not None
        assert url.startswith(self.settings.PUBLIC_BASE_URL)
        response = self.client.request(
            method, url.removeprefix(self.settings.PUBLIC_BASE_URL), content=data, headers=headers
        )
        assert response.status_code in (200, 201), response.text
        if jq:
            return str(response.json()[jq.removeprefix(".")])
        return response.text


def follow_the_readme(
    engine: Engine,
    served: ServedSlack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    mode: str,
) -> tuple[SlackStandIn, str]:
    """Do what the README says in `mode` (one workspace, or OAuth); return the Slack
    stand-in and the workspace the launch comes from."""
    slack = served.stand_in
    slack.reset()
    if mode == "single":
        team = DEFAULT_TEAM_ID
        slack_settings = {"SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN}
    else:
        team = LONESTAR_TEAM
        slack.add_team(team, "Lone Star Appraisals", domain="lonestar")
        slack.set_installer(MARIA, team_id=team)
        slack_settings = {
            "SLACK_CLIENT_ID": DEFAULT_CLIENT_ID,
            "SLACK_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        }
    slack.add_user(MARIA, "maria", "maria@lonestar.com", team_id=team, real_name="Maria Lopez")
    values: dict[str, str] = {
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "SALESBOT_SECRET_KEY": TEST_SECRET_KEY,
        "PUBLIC_BASE_URL": "http://testserver",
        "SLACK_API_URL": served.api_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_POST_INTERVAL_SECONDS": "0",
        **slack_settings,
    }
    for name in ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "GOOGLE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # Relative paths as in the README (samples/...), and no .env but the environment's.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").symlink_to(ROOT / "samples")

    settings = make_settings(
        values["DATABASE_URL"], **{k: v for k, v in values.items() if k != "DATABASE_URL"}
    )
    services = Services(
        engine=engine, session_factory=make_session_factory(engine), clock=SystemClock()
    )
    runtime = build_runtime(settings, services=services)
    app = build_app(settings, runtime=runtime, start_background=False)
    assert runtime.slack_worker is not None
    with TestClient(app, follow_redirects=False) as client, running(runtime.slack_worker):
        shell = Shell(settings, client)
        for block in bootstrap_blocks():
            if any("link-slack" in line for line in block) and mode != "single":
                continue
            if any("install-link" in line for line in block) and mode != "oauth":
                continue
            for line in block:
                if "link-slack" in line:
                    # The person at the keyboard accepts the workspace Slack names.
                    output = shell.run(line, answer="y\n")
                    assert output.endswith(
                        f"organization lonestar is bound to Slack workspace {team}\n"
                    )
                elif "install-link" in line:
                    install_with(client, shell.run(line).strip())
                else:
                    shell.run(line)

        launch = urlencode(
            {
                "command": "/campaign",
                "text": LAUNCH,
                "team_id": team,
                "user_id": MARIA,
                "channel_id": slack.dm_channel_id(MARIA),
                "response_url": slack.response_url(
                    channel=slack.dm_channel_id(MARIA), user=MARIA, team_id=team
                ),
                "trigger_id": slack.issue_trigger_id(user_id=MARIA),
            }
        )
        acked = client.post(
            "/slack/events",
            content=launch.encode(),
            headers=signed_headers(launch, signing_secret=SIGNING_SECRET),
        )
        assert acked.status_code == 200

        def cards() -> int:
            runtime.run_tasks_until_idle()
            return len(card_messages(slack)) == LOAN_OFFICERS_WHO_MAY_BE_EMAILED

        wait_until(cards, timeout=30, what="the launch's cards")
    return slack, team


def install_with(client: TestClient, link: str) -> None:
    """Open the install link, approve on Slack's page, come back: as the workspace admin."""
    parts = urlsplit(link)
    install = client.get(f"{parts.path}?{parts.query}")
    assert install.status_code == 302, install.text
    approved = httpx.get(install.headers["location"])
    back = urlsplit(approved.headers["location"])
    cookie = {"cookie": install.headers["set-cookie"].split(";")[0]}
    done = client.get(f"/slack/oauth_redirect?{back.query}", headers=cookie)
    assert done.status_code == 200, done.text


def card_messages(slack: SlackStandIn) -> list[RecordedCall]:
    """chat.postMessage calls that posted a card (a message with Approve / Edit / Reject)."""

    def blocks(call: RecordedCall) -> list[dict[str, object]]:
        value = call.params.get("blocks") or []
        return list(json.loads(value) if isinstance(value, str) else value)

    return [
        call
        for call in slack.calls("chat.postMessage")
        if any(block.get("block_id") == "card_actions" for block in blocks(call))
    ]


def test_the_readme_names_the_launch_this_test_sends() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"`/campaign {LAUNCH}`" in readme


def test_the_readme_bootstrap_with_one_workspace_ends_with_cards_in_slack(
    committed_engine: Engine,
    served_slack: ServedSlack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    slack, team = follow_the_readme(
        committed_engine, served_slack, monkeypatch, tmp_path, mode="single"
    )
    posted = card_messages(slack)
    assert len(posted) == LOAN_OFFICERS_WHO_MAY_BE_EMAILED
    assert {call.token for call in posted} == {DEFAULT_BOT_TOKEN}
    assert team == DEFAULT_TEAM_ID


def test_the_readme_bootstrap_with_an_oauth_install_ends_with_cards_in_slack(
    committed_engine: Engine,
    served_slack: ServedSlack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    slack, team = follow_the_readme(
        committed_engine, served_slack, monkeypatch, tmp_path, mode="oauth"
    )
    posted = card_messages(slack)
    assert len(posted) == LOAN_OFFICERS_WHO_MAY_BE_EMAILED
    tokens = {call.token for call in posted}
    assert len(tokens) == 1
    assert slack.token(tokens.pop()).team_id == team


def test_an_unbound_workspace_is_told_the_command_that_binds_it_and_that_command_works(
    committed_engine: Engine,
    served_slack: ServedSlack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(MARIA, "maria", "maria@lonestar.com", real_name="Maria Lopez")
    url = committed_engine.url.render_as_string(hide_password=False)
    settings = make_settings(
        url,
        SLACK_API_URL=served_slack.api_url,
        SLACK_BOT_TOKEN=DEFAULT_BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
    )
    monkeypatch.chdir(tmp_path)
    for name in ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SALESBOT_SECRET_KEY", TEST_SECRET_KEY)
    assert CliRunner().invoke(cli, ["org", "create", "--slug", "lonestar"]).exit_code == 0
    services = Services(
        engine=committed_engine,
        session_factory=make_session_factory(committed_engine),
        clock=SystemClock(),
    )
    runtime = build_runtime(settings, services=services)
    app = build_app(settings, runtime=runtime, start_background=False)
    assert runtime.slack_worker is not None

    def campaign_list(client: TestClient) -> str:
        before = len(slack.calls("response_url"))
        body = urlencode(
            {
                "command": "/campaign",
                "text": "list",
                "team_id": DEFAULT_TEAM_ID,
                "user_id": MARIA,
                "channel_id": "C0SANDBOXGEN",
                "response_url": slack.response_url(channel="C0SANDBOXGEN", user=MARIA),
                "trigger_id": slack.issue_trigger_id(user_id=MARIA),
            }
        )
        acked = client.post(
            "/slack/events",
            content=body.encode(),
            headers=signed_headers(body, signing_secret=SIGNING_SECRET),
        )
        assert acked.status_code == 200
        said = wait_until(lambda: slack.calls("response_url")[before:], what="the answer")
        return str(said[0].params["text"])

    with TestClient(app) as client, running(runtime.slack_worker):
        hint = campaign_list(client)
        command = re.search(r"`salesbot (org link-slack [^`]*)`", hint)
        assert command is not None, hint
        assert command.group(1) == "org link-slack --org <slug> --team-id T0SANDBOX"
        args = command.group(1).replace("<slug>", "lonestar").split()
        assert CliRunner().invoke(cli, args).exit_code == 0

        assert campaign_list(client) == (
            "No campaigns yet. Create one with `POST /api/marketing/campaigns`."
        )
