"""Reply-stripping accuracy on tests/corpus/replies (`python -m bench reply_stripping`).

Prints, per source corpus (and per kind of talon case), the share of cases whose stripped
text matches the expected output, judged as each `cases.json` `semantics` string says (see
tests/support/corpus.py for how each is read). Two strippers are measured on the same cases:
mail-parser-reply alone (its newest reply body, every language it ships) and our
`strip_reply`, which is built on it, so the figure shows what our layer adds.
"""

from __future__ import annotations

from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES

from integrations.gmail.mime import parse_raw
from integrations.gmail.reply_text import html_to_text, strip_reply
from tests.support.corpus import ReplyCase, reply_cases, score_reply_cases

GROUPS = (
    "email_reply_trimmer",
    "talon",
    "talon/standard_replies",
    "talon/html_replies",
    "talon/misc",
    "talon/text_cases",
    "talon/signature_cases",
    "talon/ml_signature_cases",
    "mail_parser_reply",
    "crisp_email_reply_parser",
    "overall",
)


def read_eml(raw: bytes) -> tuple[str, str | None]:
    """Decode an .eml file the way production does."""
    parsed = parse_raw(raw)
    return parsed.text, parsed.html


def load_cases() -> list[ReplyCase]:
    """Return the corpus reply cases, with .eml inputs decoded by our parser."""
    return reply_cases(read_eml=read_eml, html_to_text=html_to_text)


def ours(text: str, html: str | None) -> str:
    """Strip with Salesbot's `strip_reply`."""
    return strip_reply(text, html=html)


def library_alone(text: str, html: str | None) -> str:
    """Strip with mail-parser-reply alone: the newest reply's body."""
    message = EmailReplyParser(languages=list(MAIL_LANGUAGES)).read(text)
    return message.replies[0].body if message.replies else text


def main() -> None:
    """Print the accuracy of both strippers, per corpus and overall."""
    cases = load_cases()
    for label, strip in (("mail-parser-reply alone", library_alone), ("strip_reply", ours)):
        scores = score_reply_cases(cases, strip)
        print(f"{label}:")
        for group in GROUPS:
            if group in scores:
                print(f"  {scores[group].line(group)}")
    print("(command: .venv/bin/python -m bench reply_stripping)")
