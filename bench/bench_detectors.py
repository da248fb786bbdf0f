"""Deterministic detectors on tests/corpus (`python -m bench detectors`).

Prints the figures issue 11 sets for bounces, complaints, auto-replies and return dates,
the false positives on ordinary replies, the speed of the detector pass (parsing included,
as the pipeline would run it on a message it has not parsed yet), and the name of every
message a figure missed. What counts as right is in tests/support/detector_corpus.py.
"""

from __future__ import annotations

import email
import time
from email import policy

from flufl.bounce import all_failures

from domain.detection import Detection, DetectionContext
from integrations.gmail.mime import parse_raw
from integrations.mail_signals import detect_message
from integrations.mail_signals._view import MAX_TEXT_CHARS
from integrations.mail_signals.return_date import warm_up
from tests.support.detector_corpus import (
    CorpusMail,
    DetectorScores,
    autoreply_mails,
    bounce_mails,
    detector_labels,
    recipients_right,
    reply_mails,
    score_detectors,
)

CONTEXT = DetectionContext(
    rep_addresses=frozenset({"sam@appraisalfirm.example"}),
    unsubscribe_mailboxes=frozenset({"sam@appraisalfirm.example"}),
)


def detect(raw: bytes) -> Detection:
    """Run the detector pass as the pipeline would, from raw bytes."""
    return detect_message(raw, context=CONTEXT)


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else "0/0"


def report(scores: DetectorScores) -> None:
    """Print the figures and the misses."""
    print(f"bounces detected: {_share(scores.bounces_detected, scores.bounces)}")
    print(
        "bounces detected with the failed recipients right: "
        f"{_share(scores.bounces_recipient_right, scores.bounces)}  (target >= 98%)"
    )
    found_by = ", ".join(f"{rule} {n}" for rule, n in scores.found_by.most_common())
    print(f"failed recipients found by: {found_by}")
    print(
        f"hard/soft right (per recipient): {_share(scores.severities_right, scores.severities)}"
        "  (target >= 95%)"
    )
    print(
        f"complaints recognised: {_share(scores.complaints_recognised, scores.complaints)}; "
        f"ARF: {_share(scores.arf_recognised, scores.arf_complaints)}  (target: every ARF)"
    )
    print(
        f"auto-replies recognised: {_share(scores.autoreplies_recognised, scores.autoreplies)}"
        "  (target 100%)"
    )
    print(
        f"read receipts recognised: {_share(scores.read_receipts_recognised, scores.read_receipts)}"
    )
    print(
        f"ordinary replies or auto-replies taken for bounces: {len(scores.false_bounces)} "
        f"of {scores.negatives}  (target 0)"
    )
    print(
        f"bounces taken for auto-replies: {len(scores.bounces_taken_for_autoreplies)}  (target 0)"
    )
    print(
        "delivery reports or delays taken for hard bounces: "
        f"{len(scores.success_or_delay_taken_for_hard)}  (target 0)"
    )
    print(f"out-of-office return dates right: {_share(scores.ooo_dates_right, scores.ooo_dates)}")
    print(
        "ordinary replies taken for automatic mail: "
        f"{len(scores.replies_taken_for_automatic)} of {scores.replies}"
    )
    print(
        "ordinary replies taken for unsubscribe requests: "
        f"{len(scores.replies_taken_for_unsubscribe)} of {scores.replies}"
    )
    lists = {
        **scores.missed,
        "false bounces": scores.false_bounces,
        "bounces taken for auto-replies": scores.bounces_taken_for_autoreplies,
        "success/delay taken for hard": scores.success_or_delay_taken_for_hard,
        "replies taken for automatic": scores.replies_taken_for_automatic,
        "replies taken for unsubscribe": scores.replies_taken_for_unsubscribe,
    }
    for figure, names in lists.items():
        for name in names:
            print(f"  missed ({figure}): {name}")


def speed(label: str, mails: list[CorpusMail], *, rounds: int = 3) -> None:
    """Print messages/s of the detector pass alone and with the parse before it."""
    parsed = [(m.raw, parse_raw(m.raw, max_body_chars=MAX_TEXT_CHARS)) for m in mails]
    started = time.perf_counter()
    for _ in range(rounds):
        for raw, message in parsed:
            detect_message(raw, context=CONTEXT, parsed=message)
    alone = rounds * len(parsed) / (time.perf_counter() - started)
    started = time.perf_counter()
    for mail in mails:
        detect(mail.raw)
    with_parse = len(mails) / (time.perf_counter() - started)
    print(
        f"speed on {label} ({len(mails)}): {alone:.0f} messages/s detectors alone, "
        f"{with_parse:.0f} messages/s with the parse (one core)"
    )


def library_alone() -> None:
    """Print how many bounces flufl.bounce alone gets right, to show what our rules add."""
    labels = detector_labels()["bounce_recipients"]
    mails = [m for m in bounce_mails() if m.name in labels]
    right = 0
    for mail in mails:
        try:
            temporary, permanent = all_failures(
                email.message_from_bytes(mail.raw, policy=policy.compat32)
            )
        except Exception:  # a detector of the library raised: nothing found
            temporary, permanent = frozenset(), frozenset()
        found = {a.decode("ascii", "replace").lower() for a in temporary | permanent}
        right += recipients_right(found, labels[mail.name])
    print(f"flufl.bounce alone, failed recipients right: {_share(right, len(mails))}")


def main() -> None:
    """Measure the detectors on the corpus and print the figures."""
    warm_up()  # dateparser's language data, loaded once per process
    report(score_detectors(detect))
    library_alone()
    speed("ordinary replies", reply_mails())
    speed("bounces and complaints", bounce_mails())
    speed("auto-replies", autoreply_mails())
    print("(command: .venv/bin/python -m bench detectors)")
