"""`salesbot import reviews FILE --org ORG`: reviews from a CSV (docs/reputation.md).

All or nothing: every row is checked first; when one is bad, its errors are printed (row,
column, reason) and nothing is stored (exit 2). Otherwise the reviews are scored, checked
against the escalation rules and stored with their cards in one transaction (exit 0).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from domain.clock import Clock
from domain.deps import Deps
from domain.errors import InvalidInput
from domain.ports import MessageClassifier
from domain.reputation import IngestResult, RowError, parse_review_csv
from domain.reputation_service import Reputation
from integrations.crypto import SecretBox
from integrations.regex_re2 import Re2Engine
from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from storage.db import SessionFactory

#: Row errors printed; the count of the others is said.
SHOWN_ROW_ERRORS = 50


class ReviewFileRefused(InvalidInput):
    """The file, or one of its rows, is refused: nothing was stored."""

    def __init__(self, message: str, errors: list[RowError]) -> None:
        super().__init__(message)
        self.errors = errors


def build_reputation(
    session_factory: SessionFactory,
    clock: Clock,
    *,
    secret_key: str,
    classifiers: tuple[MessageClassifier, MessageClassifier],
) -> Reputation:
    """The reputation use cases for a command-line process (no chat: cards are queued)."""
    model, offline = classifiers
    return Reputation(
        Deps(uow=lambda: UnitOfWork(session_factory), clock=clock),
        model=model,
        offline=offline,
        regex=Re2Engine(),
        cipher=SecretBox(secret_key),
    )


def import_reviews(reputation: Reputation, *, org_id: int, path: Path) -> IngestResult:
    """Check every row of the file, then store them all; raise ReviewFileRefused (nothing
    stored) when the file cannot be read or a row is bad."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            reviews, errors = parse_review_csv(stream)
    except OSError as exc:
        raise ReviewFileRefused(f"{path}: cannot read the file ({exc.strerror})", []) from None
    except UnicodeDecodeError as exc:
        raise ReviewFileRefused(f"{path}: not UTF-8 (byte {exc.start})", []) from None
    except InvalidInput as exc:
        raise ReviewFileRefused(f"{path}: {exc.message}", []) from None
    if errors:
        rows = len({e.row for e in errors})
        raise ReviewFileRefused(
            f"{path}: {rows} row(s) refused; nothing was imported. Fix them and run again.",
            errors,
        )
    return reputation.ingest(org_id, reviews, source="csv")


def describe(result: IngestResult, *, seconds: float) -> str:
    """One line about what an import stored."""
    return (
        f"{len(result.created):,} reviews imported, {len(result.duplicates):,} already there, "
        f"{result.response_cards:,} response cards, {result.escalations:,} escalations "
        f"in {seconds:.1f} s"
    )


def run_import(
    session_factory: SessionFactory,
    clock: Clock,
    *,
    org_id: int,
    path: Path,
    secret_key: str,
    classifiers: tuple[MessageClassifier, MessageClassifier],
) -> tuple[IngestResult, float]:
    """Import a review file; return what was stored and the seconds it took."""
    started = time.perf_counter()
    reputation = build_reputation(
        session_factory, clock, secret_key=secret_key, classifiers=classifiers
    )
    result = import_reviews(reputation, org_id=org_id, path=path)
    return result, time.perf_counter() - started
