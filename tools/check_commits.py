"""Fail when code outside the transaction owners calls `.commit()`.

The unit of work (`storage/uow.py`) owns the transaction: a use case opens one, works
through its repositories and calls `uow.commit()` once. Any other `<expr>.commit()` in the
application packages is a second owner and is reported as `path:line`, unless its module
is in ALLOWED below (each entry says why it may commit) or the call is made on a unit of
work (a name or attribute ending in `uow`, e.g. `uow.commit()`, `self._uow.commit()`).

An allowed module that no longer commits is reported too, so the list only shrinks.

Usage: python tools/check_commits.py [ROOT]   (ROOT: the repository, by default this one)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGES = ("domain", "storage", "integrations", "handlers", "bot", "jobs", "sandbox")

ALLOWED: Mapping[str, str] = {
    "storage/uow.py": "the unit of work: the one owner of the transaction",
    "storage/migrations/env.py": "Alembic's migration run commits the migrated schema",
    "storage/inbound.py": "durable push/sync queue: a push is stored before it is answered",
    "storage/slack_calls.py": "durable queue of Slack calls to replay, stored before the ack",
    "storage/events.py": "event-key de-dupe store: an event id is claimed before it is handled",
    "storage/heartbeats.py": "a process's liveness beat: its own short transaction, no use case",
}


def _is_unit_of_work(receiver: ast.expr) -> bool:
    """`uow`, `self.uow`, `self._uow`: a unit of work, whose commit is the one allowed."""
    if isinstance(receiver, ast.Name):
        return receiver.id.endswith("uow")
    if isinstance(receiver, ast.Attribute):
        return receiver.attr.endswith("uow")
    return False


def commit_lines(source: str, filename: str) -> Iterator[int]:
    """Yield the line of every `.commit()` call in `source` not made on a unit of work."""
    for node in ast.walk(ast.parse(source, filename=filename)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "commit"
            and not _is_unit_of_work(node.func.value)
        ):
            yield node.lineno


def check(root: Path, allowed: Mapping[str, str] = ALLOWED) -> list[str]:
    """Return one message per stray commit and per allowed module that no longer commits."""
    problems: list[str] = []
    committing: set[str] = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            lines = sorted(commit_lines(path.read_text(encoding="utf-8"), relative))
            if not lines:
                continue
            committing.add(relative)
            if relative in allowed:
                continue
            problems.extend(
                f"{relative}:{line}: .commit() outside the transaction owners "
                "(commit through the unit of work: `uow.commit()` in a use case)"
                for line in lines
            )
    problems.extend(
        f"{module}: allowed to commit but no longer does; remove it from ALLOWED in "
        "tools/check_commits.py"
        for module in sorted(set(allowed) - committing)
    )
    return problems


def main(argv: list[str]) -> int:
    """Check the repository named by argv (this one by default); 1 when anything is reported."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        sys.stderr.write(problem + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
