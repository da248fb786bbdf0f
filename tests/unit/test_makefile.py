"""The README's two commands work from a fresh clone: make knows how to do each step."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(tmp_path: Path, target: str) -> str:
    for name in ("Makefile", "pyproject.toml", "requirements-dev.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    # Run as from a shell: not as a sub-make of `make test` (whose MAKEFLAGS/MAKELEVEL
    # would make this one print "Entering directory" lines around its steps).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_on_a_fresh_clone_makes_the_env_file_migrates_and_serves(tmp_path: Path) -> None:
    steps = _dry_run(tmp_path, "run")
    assert "SALESBOT_SECRET_KEY=" in steps
    made, migrated = steps.index("> .env"), steps.index("salesbot db upgrade")
    assert made < migrated < steps.index("salesbot serve")
    assert "--require-hashes -r requirements-dev.lock" in steps


def test_make_test_installs_lints_and_runs_the_suite(tmp_path: Path) -> None:
    steps = _dry_run(tmp_path, "test")
    for step in ("--require-hashes", "ruff check", "mypy", "lint-imports", "ensure_chromium"):
        assert step in steps
    assert steps.rstrip().endswith("pytest -n 2 -q")
