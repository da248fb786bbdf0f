"""The lint check that only the transaction owners commit (tools/check_commits.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

CHECKER = Path(__file__).resolve().parents[2] / "tools" / "check_commits.py"


def _allowed_owners() -> list[str]:
    """The checker's own allowlist, so the tests follow it as branches shorten it."""
    spec = importlib.util.spec_from_file_location("check_commits", CHECKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.ALLOWED)


def _repository(root: Path, files: dict[str, str]) -> Path:
    """A repository whose allowed owners each commit once, plus `files`."""
    for relative in _allowed_owners():
        files.setdefault(relative, "def save(session):\n    session.commit()\n")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(root)], capture_output=True, text=True, check=False
    )


def test_a_stray_session_commit_is_reported_with_its_path_and_line(tmp_path: Path) -> None:
    stray = "def approve(session):\n    session.add(1)\n    session.commit()\n"
    result = _run(_repository(tmp_path, {"handlers/api/cards.py": stray}))
    assert result.returncode == 1
    assert result.stderr.startswith("handlers/api/cards.py:3: .commit() outside")


def test_a_unit_of_work_commit_is_allowed_anywhere(tmp_path: Path) -> None:
    use_case = (
        "def approve(uow, self):\n"
        "    with uow:\n"
        "        uow.commit()\n"
        "    self._uow.commit()\n"
        "    self.uow.commit()\n"
    )
    result = _run(_repository(tmp_path, {"domain/cards.py": use_case, "jobs/work.py": use_case}))
    assert (result.returncode, result.stderr) == (0, "")


def test_an_allowed_owner_may_commit(tmp_path: Path) -> None:
    many = "def push(session):\n    session.commit()\n    session.commit()\n"
    result = _run(_repository(tmp_path, {"storage/inbound.py": many}))
    assert (result.returncode, result.stderr) == (0, "")


def test_an_allowed_module_that_stopped_committing_must_leave_the_list(tmp_path: Path) -> None:
    quiet = "def run(uow):\n    uow.commit()\n"
    result = _run(_repository(tmp_path, {"storage/uow.py": quiet}))
    assert result.returncode == 1
    assert result.stderr.startswith("storage/uow.py: allowed to commit but no longer does")


def test_only_the_application_packages_are_checked(tmp_path: Path) -> None:
    script = "def seed(session):\n    session.commit()\n"
    result = _run(_repository(tmp_path, {"bench/seed.py": script, "tests/seed.py": script}))
    assert (result.returncode, result.stderr) == (0, "")


def test_the_repository_itself_passes() -> None:
    result = _run(CHECKER.parents[1])
    assert (result.returncode, result.stderr) == (0, "")
