"""The detectors measured on tests/corpus: the figures of issue 11, counted, with the misses.

Sources of truth: the corpus manifests (`bounces/manifest.json`: kind, and per recipient the
DSN status class from sisimai's test table; `autoreplies/manifest.json`: auto-reply or
not, never a bounce), and our own labels in `detector_labels.json` beside this module for
what the manifests do not say (which addresses failed, the return date an out-of-office
states). Ordinary replies come from `replies/`: the `.eml` files as they are, and every
other reply text of those test suites wrapped in a plain message from a client, so the
detectors see a person's words exactly as a reply would bring them.

`score_detectors(detect)` runs a detector function over all of it; the bench prints the
result and the tests assert its floors. Counts only: the timing is the bench's business.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from domain.detection import BounceSeverity, Detection, MessageKind
from tests.support.corpus import corpus_dir, load_manifest

LABELS_FILE = Path(__file__).with_name("detector_labels.json")

Detect = Callable[[bytes], Detection]

_AUTOMATIC_ANSWERS = frozenset({MessageKind.AUTO_REPLY, MessageKind.OUT_OF_OFFICE})


@dataclass(frozen=True)
class CorpusMail:
    """One message of the corpus and what is expected of it."""

    name: str  # path under tests/corpus (a folder/case name for wrapped reply texts)
    raw: bytes
    expected: dict[str, Any] = field(default_factory=dict)


def detector_labels() -> dict[str, Any]:
    """Return our own labels (failed recipients, return dates) for the corpus."""
    data: dict[str, Any] = json.loads(LABELS_FILE.read_text(encoding="utf-8"))
    return data


def _manifest_mails(folder: str) -> list[CorpusMail]:
    root = corpus_dir()
    return [
        CorpusMail(entry["file"], (root / entry["file"]).read_bytes(), entry["expected"])
        for entry in load_manifest(folder)
    ]


def bounce_mails() -> list[CorpusMail]:
    """Return every message of bounces/manifest.json (bounces, delays, complaints, success)."""
    return _manifest_mails("bounces")


def autoreply_mails() -> list[CorpusMail]:
    """Return every message of autoreplies/manifest.json (auto-replies and negatives)."""
    return _manifest_mails("autoreplies")


def wrap_reply(text: str, *, html: bool = False) -> bytes:
    """Return a reply text as a client's plain message to one of our reps."""
    message = EmailMessage(policy=SMTP)
    message["From"] = "Dana Whitfield <dana@pinnaclelending.example>"
    message["To"] = "Sam Rep <sam@appraisalfirm.example>"
    message["Subject"] = "Re: Appraisal turn times for Q4"
    message["Date"] = "Tue, 04 Jun 2024 10:15:00 -0500"
    message["Message-ID"] = "<reply-1@pinnaclelending.example>"
    message["In-Reply-To"] = "<outreach-1@appraisalfirm.example>"
    message.set_content(text, subtype="html" if html else "plain", cte="8bit")
    return message.as_bytes()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def reply_mails() -> list[CorpusMail]:
    """Return the ordinary replies of replies/: none of them is a bounce or an auto-reply."""
    root = corpus_dir() / "replies"
    mails = [
        CorpusMail(str(p.relative_to(corpus_dir())), p.read_bytes())
        for p in sorted(root.rglob("*.eml"))
    ]

    def wrapped(paths: Iterator[Path], *, html: bool = False) -> list[CorpusMail]:
        return [
            CorpusMail(str(p.relative_to(corpus_dir())), wrap_reply(_read(p), html=html))
            for p in sorted(paths)
            if p.is_file()
        ]

    mails += wrapped((root / "email_reply_trimmer" / "emails").iterdir())
    mails += wrapped((root / "crisp_email_reply_parser" / "fixtures").iterdir())
    mails += wrapped((root / "mail_parser_reply" / "emails").iterdir())
    mails += wrapped((root / "talon" / "signature").glob("*_body"))
    mails += wrapped((root / "talon" / "html_replies").iterdir(), html=True)
    mails += wrapped((root / "talon" / "html_misc").iterdir(), html=True)
    talon = json.loads((root / "talon" / "cases.json").read_text(encoding="utf-8"))
    for index, case in enumerate(talon["text_cases"]):
        mails.append(
            CorpusMail(
                f"replies/talon/text_cases/{index:02d}-{case['test']}", wrap_reply(case["input"])
            )
        )
    return mails


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class DetectorScores:
    """The figures of issue 11 on the corpus, as counts, with the names of the misses."""

    bounces: int = 0  # bounce and delayed-delivery reports
    bounces_detected: int = 0
    bounces_recipient_right: int = 0
    severities: int = 0  # recipients whose hard/soft class the corpus states
    severities_right: int = 0
    complaints: int = 0
    complaints_recognised: int = 0
    arf_complaints: int = 0
    arf_recognised: int = 0
    autoreplies: int = 0
    autoreplies_recognised: int = 0
    read_receipts: int = 0
    read_receipts_recognised: int = 0
    negatives: int = 0  # ordinary replies and auto-replies: never bounces
    false_bounces: list[str] = field(default_factory=list)
    bounces_taken_for_autoreplies: list[str] = field(default_factory=list)
    success_or_delay_taken_for_hard: list[str] = field(default_factory=list)
    replies: int = 0
    replies_taken_for_automatic: list[str] = field(default_factory=list)
    replies_taken_for_unsubscribe: list[str] = field(default_factory=list)
    ooo_dates: int = 0  # auto-replies with a labelled return date (or a labelled "none")
    ooo_dates_right: int = 0
    # Which rule found the failed recipients of the detected bounces ("dsn", "flufl.bounce"...).
    found_by: Counter[str] = field(default_factory=Counter)
    missed: dict[str, list[str]] = field(default_factory=dict)
    messages: int = 0
    seconds: float = 0.0

    def miss(self, figure: str, name: str) -> None:
        """Record a message a figure did not count."""
        self.missed.setdefault(figure, []).append(name)


def recipients_right(detected: set[str], groups: list[list[str]]) -> bool:
    """Whether every labelled recipient was found and nothing else was."""
    accepted = {a for group in groups for a in group}
    return bool(groups) and detected <= accepted and all(detected & set(g) for g in groups)


def _severity_truth(mail: CorpusMail, groups: list[list[str]]) -> list[str]:
    """Return the "permanent"/"transient" class of each failed recipient, where known."""
    expected = mail.expected
    if expected.get("recipients"):
        return [
            r["status_class"]
            for r in expected["recipients"]
            if r.get("status_class") in ("permanent", "transient")
        ]
    code = expected.get("error_status") or expected.get("status")
    if expected["kind"] == "delayed":
        return ["transient"] * max(len(groups), 1)
    if isinstance(code, str) and code[:1] in "45":
        return ["permanent" if code[0] == "5" else "transient"] * max(len(groups), 1)
    return []


def _severity_class(severity: BounceSeverity) -> str:
    return "permanent" if severity is BounceSeverity.HARD else "transient"


def _score_bounce(
    scores: DetectorScores, mail: CorpusMail, found: Detection, groups: list[list[str]]
) -> None:
    kind = mail.expected["kind"]
    is_hard = found.bounce is not None and found.bounce.is_hard
    if kind in ("delivery_success", "delayed") and is_hard:
        scores.success_or_delay_taken_for_hard.append(mail.name)
    if kind == "complaint":
        scores.complaints += 1
        is_arf = b"feedback-report" in mail.raw
        scores.arf_complaints += is_arf
        if found.kind is MessageKind.COMPLAINT:
            scores.complaints_recognised += 1
            scores.arf_recognised += is_arf
        else:
            scores.miss("complaints", mail.name)
        return
    if kind not in ("bounce", "delayed"):
        return
    scores.bounces += 1
    if found.kind in _AUTOMATIC_ANSWERS:
        scores.bounces_taken_for_autoreplies.append(mail.name)
    truth = _severity_truth(mail, groups)
    scores.severities += len(truth)
    if found.kind is not MessageKind.BOUNCE or found.bounce is None:
        scores.miss("bounces", mail.name)
        return
    scores.bounces_detected += 1
    scores.found_by.update(r.found_by for r in found.bounce.recipients)
    if recipients_right(set(found.bounce.addresses), groups):
        scores.bounces_recipient_right += 1
    else:
        scores.miss("bounce recipients", mail.name)
    detected = Counter(_severity_class(r.severity) for r in found.bounce.recipients)
    expected = Counter(truth)
    right = sum(min(n, detected[c]) for c, n in expected.items())
    scores.severities_right += right
    if right < len(truth):
        scores.miss("hard/soft", mail.name)


def _score_autoreply(
    scores: DetectorScores, mail: CorpusMail, found: Detection, dates: dict[str, str | None]
) -> None:
    expected = mail.expected
    scores.negatives += 1
    if found.kind is MessageKind.BOUNCE:
        scores.false_bounces.append(mail.name)
    if expected.get("is_autoreply") is True:
        scores.autoreplies += 1
        if found.kind in _AUTOMATIC_ANSWERS:
            scores.autoreplies_recognised += 1
        else:
            scores.miss("auto-replies", mail.name)
    if expected.get("kind") == "read_receipt_mdn":
        scores.read_receipts += 1
        if found.kind is MessageKind.READ_RECEIPT:
            scores.read_receipts_recognised += 1
        else:
            scores.miss("read receipts", mail.name)
    if mail.name in dates:
        scores.ooo_dates += 1
        wanted = dates[mail.name]
        got = found.auto_reply.return_date if found.auto_reply else None
        if got == (date.fromisoformat(wanted) if wanted else None):
            scores.ooo_dates_right += 1
        else:
            scores.miss("return dates", f"{mail.name} (got {got}, want {wanted})")


def score_detectors(detect: Detect) -> DetectorScores:
    """Run `detect` over the corpus and count every figure of issue 11."""
    labels = detector_labels()
    groups_by_file: dict[str, list[list[str]]] = labels["bounce_recipients"]
    dates: dict[str, str | None] = labels["ooo_return_dates"]
    scores = DetectorScores()
    bounces, autoreplies, replies = bounce_mails(), autoreply_mails(), reply_mails()
    started = time.perf_counter()
    results = [(mail, detect(mail.raw)) for mail in (*bounces, *autoreplies, *replies)]
    scores.seconds = time.perf_counter() - started
    scores.messages = len(results)
    for mail, found in results[: len(bounces)]:
        _score_bounce(scores, mail, found, groups_by_file.get(mail.name, []))
    for mail, found in results[len(bounces) : len(bounces) + len(autoreplies)]:
        _score_autoreply(scores, mail, found, dates)
    for mail, found in results[len(bounces) + len(autoreplies) :]:
        scores.negatives += 1
        scores.replies += 1
        if found.kind is MessageKind.BOUNCE:
            scores.false_bounces.append(mail.name)
        if found.kind is not MessageKind.ORDINARY:
            scores.replies_taken_for_automatic.append(f"{mail.name} ({found.kind})")
        if found.unsubscribe is not None:
            scores.replies_taken_for_unsubscribe.append(
                f"{mail.name}: {found.unsubscribe.phrase!r}"
            )
    return scores
