"""The third-party acceptance corpus (`tests/corpus/`) and its reply-stripping cases.

The corpus is data copied from other projects' tests, with its sources in
`tests/corpus/SOURCES.md` and their licences in `tests/corpus/LICENSES/`. Each
`replies/*/cases.json` says in its `semantics` string how the source project's tests call
their library and compare; `reply_cases()` turns each case into one question our
`strip_reply(text, html=...)` can answer, judged as that source judges it.

Where the judgement differs from the source's own, it is because our function returns one
stripped string: outputs and expected values are compared after `.strip()` and with line
endings normalised, and checks on other parts of a library's result (fragment lists,
signature fields, quote headers) are not ours to answer and are left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO_ROOT / "tests" / "corpus"


class CorpusMissing(RuntimeError):
    """The corpus is not in the checkout."""


def corpus_dir() -> Path:
    """Return the corpus folder, or raise CorpusMissing with what to do."""
    if not (CORPUS_DIR / "README.md").is_file():
        raise CorpusMissing(
            f"the acceptance corpus is missing from the checkout: expected {CORPUS_DIR} "
            "(it is committed with the repository; restore it with `git checkout -- tests/corpus`)"
        )
    return CORPUS_DIR


def corpus_files(*folders: str, suffixes: tuple[str, ...] = (".eml", ".txt")) -> list[Path]:
    """Return every file with those suffixes under the given corpus folders, sorted."""
    root = corpus_dir()
    return sorted(
        p for folder in folders for p in (root / folder).rglob("*") if p.suffix in suffixes
    )


def load_manifest(folder: str) -> list[dict[str, Any]]:
    """Return the entries of `<folder>/manifest.json` (paths relative to the corpus)."""
    data = json.loads((corpus_dir() / folder / "manifest.json").read_text(encoding="utf-8"))
    entries = data if isinstance(data, list) else data.get("entries", [])
    return [e for e in entries if isinstance(e, dict)]


# --- reply-stripping cases -------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyCase:
    """One input for `strip_reply` and the judgement its source project applies."""

    corpus: str  # sub-folder of replies/
    group: str  # the kind of case inside it, e.g. "talon/text_cases"
    name: str
    text: str
    html: str | None
    expected: str  # what the source expects, for failure reports
    accepts: Callable[[str], bool]


# Turns a .eml file into (text, html) the way production does; set by the caller so that
# this module needs nothing from the code under test.
EmlReader = Callable[[bytes], tuple[str, str | None]]
HtmlToText = Callable[[str], str]


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _norm(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def _no_space(value: str) -> str:
    return re.sub(r"\s", "", value)


def _equals(expected: str) -> Callable[[str], bool]:
    want = _norm(expected)
    return lambda out: _norm(out) == want


def _equals_ignoring_space(expected: str) -> Callable[[str], bool]:
    want = _no_space(expected)
    return lambda out: _no_space(out) == want


def reply_cases(*, read_eml: EmlReader, html_to_text: HtmlToText) -> list[ReplyCase]:
    """Return every reply-stripping case of the corpus that `strip_reply` can answer."""
    root = corpus_dir() / "replies"
    return [
        *_trimmer_cases(root),
        *_talon_cases(root, read_eml=read_eml, html_to_text=html_to_text),
        *_mail_parser_reply_cases(root),
        *_crisp_cases(root),
    ]


def _cases_json(root: Path, corpus: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / corpus / "cases.json").read_text(encoding="utf-8"))
    return data


def _trimmer_cases(root: Path) -> Iterator[ReplyCase]:
    # trim(File.read(input).strip) == File.read(trimmed).strip
    for case in _cases_json(root, "email_reply_trimmer")["cases"]:
        expected = _read(root / case["expected_trimmed"])
        yield ReplyCase(
            corpus="email_reply_trimmer",
            group="email_reply_trimmer",
            name=Path(case["input"]).stem,
            text=_read(root / case["input"]).strip(),
            html=None,
            expected=expected.strip(),
            accepts=_equals(expected),
        )


def _talon_cases(
    root: Path, *, read_eml: EmlReader, html_to_text: HtmlToText
) -> Iterator[ReplyCase]:
    data = _cases_json(root, "talon")
    for case in data["file_cases"]:
        path = root / case["input"]
        kind = case["input_kind"]
        if kind.startswith("eml"):
            # extract_from_plain(first text/plain part) == expected, after .strip()
            text, html = read_eml(path.read_bytes())
            expected = case["expected_reply"]
            yield ReplyCase("talon", "talon/standard_replies", path.name, text, html, expected,
                            _equals(expected))  # fmt: skip
        elif kind == "html body":
            # html_to_text(extract_from_html(html)), all whitespace removed, == expected
            html = _read(path)
            expected = case.get("expected_reply_text") or case["expected_reply_text_no_whitespace"]
            yield ReplyCase("talon", "talon/html_replies", path.name, html_to_text(html), html,
                            expected, _equals_ignoring_space(expected))  # fmt: skip
        else:
            # whole file passed as plain text: a non-empty reply without "From"
            yield ReplyCase("talon", "talon/misc", path.name, _read(path), None,
                            "non-empty, without 'From'", lambda out: bool(out.strip())
                            and "From" not in out)  # fmt: skip
    for index, case in enumerate(data["text_cases"]):
        # extract_from_plain(input) == expected_reply
        yield ReplyCase("talon", "talon/text_cases", f"{index:02d}-{case['test']}", case["input"],
                        None, case["expected_reply"], _equals(case["expected_reply"]))  # fmt: skip
    for index, case in enumerate(data["signature_cases"]):
        # bruteforce.extract_signature(input)[0] == expected_text: the text without signature
        yield ReplyCase("talon", "talon/signature_cases", f"{index:02d}-{case['test']}",
                        case["input"], None, case["expected_text"],
                        _equals(case["expected_text"]))  # fmt: skip
    for case in data["ml_signature_cases"]:
        # body.strip() minus the trailing len(signature) characters, then .strip()
        body = _read(root / case["body"]).strip()
        signature = _read(root / case["expected_signature"]).strip()
        expected = body[: len(body) - len(signature)].strip()
        yield ReplyCase("talon", "talon/ml_signature_cases", Path(case["body"]).name, body, None,
                        expected, _equals(expected))  # fmt: skip


def _check(op: str, value: Any, out: str, flags: str = "") -> bool:
    if op == "equals":
        return _norm(out) == _norm(str(value))
    if op == "contains":
        return str(value) in out
    if op == "not_contains":
        return str(value) not in out
    if op == "startswith":
        return _norm(out).startswith(_norm(str(value)))
    if op == "regex":
        re_flags = (re.IGNORECASE if "i" in flags else 0) | (re.MULTILINE if "m" in flags else 0)
        return re.search(str(value), out, re_flags) is not None
    raise ValueError(f"unknown check op {op!r}")


def _all_checks(checks: list[dict[str, Any]]) -> Callable[[str], bool]:
    def accepts(out: str) -> bool:
        return all(_check(c["op"], c["value"], out, c.get("flags", "")) for c in checks)

    return accepts


def _describe(checks: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c['op']} {str(c['value'])[:60]!r}" for c in checks)


def _mail_parser_reply_cases(root: Path) -> Iterator[ReplyCase]:
    # replies[0].body is the newest reply without quote header, signature and disclaimers;
    # checks on other replies, .content, .signatures or .headers are about the library's
    # thread split, not the new text.
    for case in _cases_json(root, "mail_parser_reply")["cases"]:
        checks = [c for c in case["checks"] if c.get("target") == "replies[0].body"]
        if not checks:
            continue
        yield ReplyCase(
            corpus="mail_parser_reply",
            group="mail_parser_reply",
            name=case["test"],
            text=_read(root / case["email"]),
            html=None,
            expected=_describe(checks),
            accepts=_all_checks(checks),
        )


_CRISP_TARGETS = {"fragments[0]", "fragments[0].trim()", "visible_text", "visible_text.trim()"}


def _crisp_cases(root: Path) -> Iterator[ReplyCase]:
    # fragments[0] is the newest text; visible_text is every fragment that is not quoted,
    # a signature or after them. Fragment counts and flags are the library's own business.
    data = _cases_json(root, "crisp_email_reply_parser")
    for case in data["cases"]:
        checks = [c for c in case["checks"] if c.get("target") in _CRISP_TARGETS]
        if not checks:
            continue
        yield ReplyCase(
            corpus="crisp_email_reply_parser",
            group="crisp_email_reply_parser",
            name=case["test"],
            text=_read(root / case["email"]),
            html=None,
            expected=_describe(checks),
            accepts=_all_checks(checks),
        )


# --- scoring ------------------------------------------------------------------------------------


@dataclass
class Score:
    """How many cases of one group a stripper got right, and which it missed."""

    matched: int = 0
    total: int = 0
    missed: tuple[str, ...] = ()

    @property
    def share(self) -> float:
        return self.matched / self.total if self.total else 0.0

    def line(self, label: str) -> str:
        return f"{label}: {self.matched}/{self.total} ({100 * self.share:.1f}%)"


Stripper = Callable[[str, str | None], str]


def score_reply_cases(cases: list[ReplyCase], strip: Stripper) -> dict[str, Score]:
    """Run `strip` on every case; return a Score per corpus, per group and "overall"."""
    scores: dict[str, Score] = {}
    for case in cases:
        ok = case.accepts(strip(case.text, case.html))
        keys = {case.corpus, case.group, "overall"}
        for key in keys:
            score = scores.setdefault(key, Score())
            score.total += 1
            if ok:
                score.matched += 1
            elif key == case.group:
                score.missed = (*score.missed, case.name)
    return scores
