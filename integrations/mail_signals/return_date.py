"""The return date an out-of-office message states, in English, Spanish, French or German.

Date expressions are found by our own patterns (month names and weekdays of the four
languages, numeric dates, and ranges such as "July 10-31", "from 10 to 31 July", "del 10 al
31 de julio", "vom 10. bis 31. Juli", whose end is kept) and each one is read by dateparser,
anchored to the message's Date header (`RELATIVE_BASE`, future dates preferred), so
"Friday" and "May 5" mean the ones after the message was written. Of the dates that fall
after the message and within a year of it, the latest is the return date: absences are
stated as "until X", "back on X" or "from A to X", and a reply names earlier dates (a
colleague's coverage, a deadline) more often than later ones. A bare weekday counts only
when no calendar date is written. No date stated, or none readable: None.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from typing import Any, Final

import dateparser

log = logging.getLogger(__name__)

# The absence is stated near the top; the rest is signatures and disclaimers.
MAX_SCAN_CHARS: Final = 4000
MAX_CANDIDATES: Final = 12
MAX_DAYS_AHEAD: Final = 366

_MONTHS: Final[dict[str, tuple[str, ...]]] = {
    "en": (
        "january", "february", "march", "april", "may", "june", "july", "august",
        "september", "october", "november", "december",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    ),
    "es": (
        "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
        "septiembre", "setiembre", "octubre", "noviembre", "diciembre", "ene", "dic",
    ),
    "fr": (
        "janvier", "février", "fevrier", "mars", "avril", "mai", "juin", "juillet", "août",
        "aout", "septembre", "octobre", "novembre", "décembre", "decembre",
        "janv", "févr", "fevr", "avr", "juil", "déc",
    ),
    "de": (
        "januar", "jänner", "februar", "märz", "maerz", "april", "mai", "juni", "juli",
        "august", "september", "oktober", "november", "dezember", "mär", "okt", "dez",
    ),
}  # fmt: skip
_WEEKDAYS: Final[dict[str, tuple[str, ...]]] = {
    "en": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "es": ("lunes", "martes", "miércoles", "miercoles", "jueves", "viernes", "sábado", "sabado",
           "domingo"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "de": ("montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonnabend",
           "sonntag"),
}  # fmt: skip
_LANGUAGE_HINTS: Final[dict[str, re.Pattern[str]]] = {
    "es": re.compile(r"\b(?:estaré|estoy|hasta|regresaré|volveré|oficina|vacaciones|el|del|de)\b"),
    "fr": re.compile(r"\b(?:je|serai|suis|jusqu|retour|bureau|congé|vacances|le|du|au)\b"),
    "de": re.compile(r"\b(?:ich|bin|bis|zum|wieder|büro|urlaub|abwesend|ab|dem|vom)\b"),
    "en": re.compile(r"\b(?:i|am|will|be|until|back|office|return|the|on|from)\b"),
}


def _alternation(words: dict[str, tuple[str, ...]]) -> str:
    every = sorted({w for ws in words.values() for w in ws}, key=len, reverse=True)
    return "|".join(re.escape(w) for w in every)


_M = rf"(?:{_alternation(_MONTHS)})\.?"
_W = rf"(?:{_alternation(_WEEKDAYS)})"
_ORD = r"(?:st|nd|rd|th|er|e|\.|º|°)?"
_YEAR = r"(?:,?\s+(?:de\s+)?(?P<year>\d{4}))?"
_TO = r"(?:-|–|—|to|till|until|through|thru|and|al|hasta|y|au|à|et|jusqu'au|bis|zum|und)"

# Ranges first: only their end is read.
_RANGE_MONTH_FIRST = re.compile(
    rf"\b(?P<m1>{_M})\s+\d{{1,2}}{_ORD}\s*{_TO}\s*(?:(?P<m2>{_M})\s+)?(?P<d2>\d{{1,2}}){_ORD}{_YEAR}(?!\d)",
    re.IGNORECASE,
)
_RANGE_DAY_FIRST = re.compile(
    rf"\b\d{{1,2}}{_ORD}\s*(?:(?:de\s+)?{_M}\s*)?{_TO}\s*(?:(?:el|le|den|dem|zum)\s+)?"
    rf"(?P<d2>\d{{1,2}}){_ORD}\s+(?:de\s+|of\s+)?(?P<m2>{_M}){_YEAR}(?!\d)",
    re.IGNORECASE,
)
_MONTH_FIRST = re.compile(rf"\b(?P<m>{_M})\s+(?P<d>\d{{1,2}}){_ORD}{_YEAR}(?![\d:])", re.IGNORECASE)
_DAY_FIRST = re.compile(
    rf"(?<![\d.])(?P<d>\d{{1,2}}){_ORD}\s+(?:de\s+|of\s+)?(?P<m>{_M}){_YEAR}(?![\w])",
    re.IGNORECASE,
)
_NUMERIC = re.compile(
    r"(?<![\d./:-])(?P<a>\d{1,2})(?P<sep>[./])(?P<b>\d{1,2})(?:(?P=sep)(?P<year>\d{4}|\d{2}))?"
    r"(?P=sep)?(?![\d/:]|\.\d|\s*(?:am|pm|a\.m|p\.m|h\b|uhr))",
    re.IGNORECASE,
)
_WEEKDAY = re.compile(rf"\b(?P<w>{_W})\b(?!,?\s*(?:\d|{_M}|the\b|de\b|le\b|den\b))", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^[ \t>*]*(?:sent|date|envoyé|gesendet|enviado|fecha|datum|von|from|de)\s*:", re.IGNORECASE
)


def _language(text: str) -> str:
    lowered = text.lower()
    scores = {lang: len(pattern.findall(lowered)) for lang, pattern in _LANGUAGE_HINTS.items()}
    return max(scores, key=lambda lang: (scores[lang], lang == "en"))


def _month_language(word: str, fallback: str) -> str:
    word = word.lower().rstrip(".")
    if word in _MONTHS.get(fallback, ()):
        return fallback
    for lang, words in _MONTHS.items():
        if word in words:
            return lang
    return fallback


def _settings(sent_at: datetime, order: str) -> dict[str, Any]:
    # dateparser compares with a naive base: the sender's own wall-clock time.
    return {
        "RELATIVE_BASE": sent_at.replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "DATE_ORDER": order,
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }


def _parse(expression: str, language: str, sent_at: datetime) -> date | None:
    # Numeric dates: month first in English (our clients write US dates), day first in the
    # other languages; an English "31/07" that cannot be month-first is read day-first.
    orders = ("MDY", "DMY") if language == "en" else ("DMY",)
    for order in orders:
        try:
            parsed = dateparser.parse(
                expression, languages=[language], settings=_settings(sent_at, order)
            )
        except Exception as exc:  # dateparser on odd input: the date is simply not read
            log.debug("date not parsed", extra={"error": type(exc).__name__})
            return None
        if parsed is not None:
            return parsed.date()
    return None


def _clean_day(day: str) -> str:
    return str(int(day))


def _candidates(text: str, language: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Return (calendar dates, bare weekdays) as (expression, language) pairs."""
    dates: list[tuple[str, str]] = []
    taken: list[tuple[int, int]] = []

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= s or span[0] >= e for s, e in taken)

    def add(span: tuple[int, int], expression: str, lang: str) -> None:
        if free(span) and len(dates) < MAX_CANDIDATES:
            taken.append(span)
            dates.append((expression, lang))

    for pattern in (_RANGE_MONTH_FIRST, _RANGE_DAY_FIRST):
        for match in pattern.finditer(text):
            month = match.group("m2") or match.groupdict().get("m1") or ""
            lang = _month_language(month, language)
            year = f" {match.group('year')}" if match.group("year") else ""
            day = _clean_day(match.group("d2"))
            expression = (
                f"{month.rstrip('.')} {day}{year}"
                if lang == "en"
                else f"{day} {month.rstrip('.')}{year}"
            )
            add(match.span(), expression, lang)
    for match in _MONTH_FIRST.finditer(text):
        lang = _month_language(match.group("m"), language)
        year = f" {match.group('year')}" if match.group("year") else ""
        add(
            match.span(),
            f"{match.group('m').rstrip('.')} {_clean_day(match.group('d'))}{year}",
            lang,
        )
    for match in _DAY_FIRST.finditer(text):
        lang = _month_language(match.group("m"), language)
        year = f" {match.group('year')}" if match.group("year") else ""
        add(
            match.span(),
            f"{_clean_day(match.group('d'))} {match.group('m').rstrip('.')}{year}",
            lang,
        )
    for match in _NUMERIC.finditer(text):
        year = match.group("year") or ""
        sep = match.group("sep")
        expression = f"{match.group('a')}{sep}{match.group('b')}" + (f"{sep}{year}" if year else "")
        add(match.span(), expression, language)
    weekdays = [
        (
            match.group("w"),
            language
            if match.group("w").lower() in _WEEKDAYS[language]
            else _weekday_language(match.group("w"), language),
        )
        for match in _WEEKDAY.finditer(text)
        if free(match.span())
    ][:MAX_CANDIDATES]
    return dates, weekdays


def _weekday_language(word: str, fallback: str) -> str:
    word = word.lower()
    for lang, words in _WEEKDAYS.items():
        if word in words:
            return lang
    return fallback


def find_return_date(text: str, *, sent_at: datetime | None) -> date | None:
    """Return the last day of absence (or the day back) an out-of-office text states."""
    if sent_at is None or not text:
        return None
    # Lines of a quoted header block ("Sent: Thursday, April 29") date the original.
    scanned = "\n".join(
        line for line in text[:MAX_SCAN_CHARS].splitlines() if not _HEADER_LINE.match(line)
    )
    language = _language(scanned)
    dates, weekdays = _candidates(scanned, language)
    sent_day = sent_at.date()
    latest = sent_day + timedelta(days=MAX_DAYS_AHEAD)
    for group in (dates, weekdays):
        found = [
            parsed
            for expression, lang in group
            if (parsed := _parse(expression, lang, sent_at)) is not None
            and sent_day <= parsed <= latest
        ]
        if found:
            return max(found)
    return None


def warm_up() -> None:
    """Load dateparser's data for the four languages (about a second, once per process).

    Call it at worker start so the first out-of-office message of each language is not the
    one that waits.
    """
    sent_at = datetime(2024, 1, 1)
    for language, expression in (("en", "July 31"), ("es", "31 de julio"), ("fr", "31 juillet"),
                                 ("de", "31. Juli")):  # fmt: skip
        _parse(expression, language, sent_at)
