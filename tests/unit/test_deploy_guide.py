"""The deploy guide names every setting a deployer can meet."""

from __future__ import annotations

from pathlib import Path

from bot.settings import Settings

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_the_deploy_guide_names_every_setting() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    missing = sorted(name for name in Settings.model_fields if f"`{name}" not in guide)
    assert not missing, f"docs/deploy.md does not name these settings: {missing}"
