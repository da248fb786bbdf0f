"""`salesbot demo --fast` as a newcomer runs it: a process of its own, exit code 0, and a
transcript that says what came of a reply of every kind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sandbox.sample_replies import SAMPLES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_every_step_and_reports_each_kind_of_reply_handled(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "GOOGLE_", "ANTHROPIC_", "DATABASE_", "SALESBOT_"))
    }

    finished = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "demo", "--fast"],
        cwd=tmp_path,  # no .env of the project's: the demo needs none
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )

    transcript = finished.stdout
    assert finished.returncode == 0, transcript + finished.stderr
    assert "✗" not in transcript
    assert "All 15 steps passed" in transcript
    # The seeded reputation and content calendar (sandbox/seed_marketing.py), through the
    # same buttons a rep clicks.
    assert "2★ Zillow review: the response recorded, the review marked responded" in transcript
    assert "→ ✅ Posted on LinkedIn, marked done" in transcript
    for sample in SAMPLES:
        assert sample.label in transcript, sample.key
    for handled in (
        "contact opted out",
        "address marked bounced",
        "cadence paused until",
        "flagged: tried to instruct the model",
        "added (tagged referral)",
    ):
        assert handled in transcript
    # Without --keep the console stops with the demo: no address of it is printed.
    assert "/sandbox" not in transcript
    assert "The demo's data was in a temporary database, removed as the demo ends" in transcript
    assert "`salesbot serve` shows the console of a fresh sandbox" in transcript


def test_the_demo_refuses_a_database_it_cannot_reach_and_says_which(tmp_path: Path) -> None:
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bot.cli import main; main()",
            "demo",
            "--fast",
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 1
    assert "demo failed: cannot prepare the database" in finished.stdout


def test_with_keep_the_demos_console_stays_up_at_the_address_printed(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "GOOGLE_", "ANTHROPIC_", "DATABASE_", "SALESBOT_"))
    }
    demo = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "demo", "--fast", "--keep"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "COLUMNS": "250"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    transcript: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            transcript.append(line)
            if line.startswith("The sandbox stays up"):
                break
        found = re.search(r"console (http://127\.0\.0\.1:\d+/sandbox)", "".join(transcript))
        assert found, "".join(transcript)
        page = httpx.get(found.group(1), timeout=10)
        panes = httpx.get(found.group(1) + "/panes", timeout=10)

        assert page.status_code == 200, page.text
        assert "Deliver an email" in page.text
        assert panes.status_code == 200
        assert panes.json()["title"] == "#sales-review"
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    assert code == 0
