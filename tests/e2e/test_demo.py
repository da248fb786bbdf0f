"""`salesbot demo --fast` as a newcomer runs it: a process of its own, exit code 0, and a
transcript that says what came of a reply of every kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert "All 13 steps passed" in transcript
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
    assert "/sandbox" in transcript


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
