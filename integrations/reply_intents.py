"""Read what a reply's intent carries out of its text: referrals, proposed meeting times and
the date a "not now" names (issue 12 item 6), in English, with Spanish and French phrases.

Every reader takes the reply's new text (quoted history already cut), reads only its first
MAX_TEXT_CHARS characters, and never raises on what it is given: text that says nothing it
understands gives an empty answer (no candidates, no times, no date).

- `extract_referrals`: the addresses written in the reply, each with the name and role
  written beside it, ranked (a referral cue such as "try", "reach out to", "the right
  person" beside it counts most); never the sender's own address, our reps', or a
  no-reply mailbox.
- `extract_meeting_times`: the times proposed, anchored to the message's Date in the
  sender's time zone (named, else the Date header's offset), in UTC. A day without an hour
  is its business hours (9:00-17:00); "morning" and "afternoon" are windows; "next week" is
  Monday to Friday of that week. An hour without a day ("2pm works") is kept as its
  words (no start); words with neither ("whenever suits you") propose nothing.
- `extract_resume_date`: "try me in January", "circle back after Q1", "in 3 months",
  "after the holidays" → the first business day of that period (weekends and the
  organization's holidays skipped). Of several, the latest: a "not now" is about not
  writing too early.

Own patterns rather than dateparser's `search_dates`: a reply is short, the phrases are few,
and search_dates reads numbers and words of ordinary sentences as dates ("2 files", "May I").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from domain.cadence import HolidayCalendar, NoHolidays
from domain.intents import ProposedTime, ReferralCandidate, ResumeDate

#: A reply's new text is short; what follows this is signatures, disclaimers or an attack.
MAX_TEXT_CHARS: Final = 4000
MAX_REFERRALS: Final = 5
#: A referral names one or two people; a reply listing dozens of addresses is a directory,
#: and each address costs a validation (about 0.2 ms).
MAX_ADDRESSES_READ: Final = 40
MAX_TIMES: Final = 8
#: A resume date further away than this is not a "not now" but a "no".
MAX_RESUME_DAYS: Final = 2 * 366

_WORKDAY_START: Final = time(9, 0)
_WORKDAY_END: Final = time(17, 0)
_PARTS_OF_DAY: Final[dict[str, tuple[time, time]]] = {
    "morning": (time(9, 0), time(12, 0)),
    "afternoon": (time(13, 0), time(17, 0)),
    "evening": (time(17, 0), time(19, 0)),
    "mañana": (time(9, 0), time(12, 0)),  # "por la mañana" (a bare "mañana" is tomorrow)
    "tarde": (time(13, 0), time(17, 0)),
    "matin": (time(9, 0), time(12, 0)),
    "matinée": (time(9, 0), time(12, 0)),
    "après-midi": (time(13, 0), time(17, 0)),
    "apres-midi": (time(13, 0), time(17, 0)),
}


def _clip(text: object) -> str:
    """The text as read: a string, its first MAX_TEXT_CHARS characters, NUL and other
    control characters (but line breaks and tabs) turned into spaces, quoted lines
    dropped, in NFC."""
    if not isinstance(text, str):
        return ""
    cut = unicodedata.normalize("NFC", text[:MAX_TEXT_CHARS])
    cleaned = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in cut
    )
    return "\n".join(line for line in cleaned.splitlines() if not line.lstrip().startswith(">"))


# --- referrals ------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+-])(?:mailto:)?([a-z0-9][a-z0-9._%+'-]{0,63}@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*\.[a-z]{2,24})(?![\w-])",
    re.IGNORECASE,
)
_REFERRAL_CUES: Final = re.compile(
    r"\b(?:try|reach(?:ing)? out|contact|get in touch|speak (?:with|to)|talk (?:with|to)|"
    r"write to|e-?mail|forward(?:ed|ing)?|cc'?d|loop(?:ing)? in|copied|right person|"
    r"better person|best person|handles?|in charge|responsible for|took over|replaced|"
    r"instead|no longer|left the company|retired|can help|will help|person for|"
    r"contacte|cont[aá]ctese|comun[ií]quese|escr[ií]bale|hable con|persona indicada|"
    r"encargad[oa]|se encarga|ya no|en su lugar|"
    r"contactez|adressez-vous|[ée]crivez|bonne personne|s'occupe|charg[ée]e? de|"
    r"n'est plus|[àa] sa place)\b",
    re.IGNORECASE,
)
_NO_REPLY = re.compile(
    r"^(?:no-?reply|do-?not-?reply|donotreply|mailer-daemon|postmaster|bounces?)\b",
    re.IGNORECASE,
)
_GENERIC_MAILBOX: Final = frozenset(
    {"info", "contact", "hello", "office", "admin", "support", "team", "sales", "help"}
)
_ROLE_LEAD = re.compile(
    r"^(?:(?:who is|who's|she's|he's|she is|he is|is|es|est)\s+)?"
    r"(?:our|the|my|their|his|her|nuestro|nuestra|su|el|la|notre|le|leur|son|sa)\s+"
    r"(?:new\s+|nuevo\s+|nueva\s+|nouveau\s+|nouvelle\s+)?(.{2,80})$",
    re.IGNORECASE,
)
_NAME_STOP: Final = frozenset(
    """please try contact email e-mail reach write call ask hi hello thanks thank i i'm we
    our the my she he her his they their you your mr mr. mrs mrs. ms ms. miss dr dr. sr.
    sra. mme m. vp svp evp avp ceo cfo coo cto president director manager head por favor
    contacte escriba hable hola gracias merci contactez écrivez veuillez bonjour also and
    or cc dear team new nuevo nueva nouveau nouvelle""".split()
)
_PARTICLES: Final = frozenset({"de", "del", "la", "van", "von", "da", "di", "le", "du", "st."})
_NAME_TOKEN = re.compile(r"^[^\W\d_][^\W\d_'’.-]*(?:['’.-][^\W\d_]+)*\.?$")


def _name_run(segment: str) -> str | None:
    """The capitalized words at the end of a segment (a person's name), stop words off."""
    words = segment.split()
    run: list[str] = []
    for word in reversed(words):
        bare = word.strip("\"“”'‘’*")
        if _NAME_TOKEN.match(bare) and bare[0].isupper():
            run.append(bare)
        elif bare.lower() in _PARTICLES and run:
            run.append(bare)
        else:
            break
        if len(run) == 5:
            break
    run.reverse()
    while run and (run[0].lower() in _NAME_STOP or run[0].lower() in _PARTICLES):
        run.pop(0)
    while run and run[-1].lower() in _PARTICLES:
        run.pop()
    if not run or all(w.isupper() and len(w) > 1 for w in run):  # "VP", "AMC": not a name
        return None
    return " ".join(run)[:120]


_SAYS_IS = re.compile(r"^(.*?)\s(?:is|es|est|would be|sería|serait)\s+(.{2,80})$", re.IGNORECASE)
_LEADING_NAME = re.compile(
    r"^((?:[^\W\d_][\w'’.-]*\s+){1,3}?)(?:is|es|est|handles|can|will|se encarga|s'occupe)\b"
)
_ROLE_ANYWHERE = re.compile(
    r"\b(?:our|my|their|nuestro|nuestra|notre|leur)\s+"
    r"(?:new\s+|nuevo\s+|nueva\s+|nouveau\s+|nouvelle\s+)?(.{2,80})$",
    re.IGNORECASE,
)


def _leading_name(segment: str) -> str | None:
    """ "Mike O'Neil is the person for that": a name at the start of a clause."""
    found = _LEADING_NAME.match(segment)
    if found is None:
        return None
    name = _name_run(found.group(1))
    return name if name is not None and name == found.group(1).strip() else None


def _role_in(segment: str) -> str | None:
    """A role written anywhere in a clause after "our", "my", ...: "reach out to our new VP
    of Lending" → "VP of Lending"."""
    found = _ROLE_ANYWHERE.search(segment.strip())
    if found is None:
        return None
    role = found.group(1).strip(" .;:!?)")
    return role[:120] if len(role) >= 2 else None


def _role_of(segment: str) -> str | None:
    found = _ROLE_LEAD.match(re.sub(r"^(?:or|and|y|o|ou|et)\s+", "", segment.strip(), flags=re.I))
    if found is None:
        return None
    role = found.group(1).strip(" .;:!?)")
    return role[:120] if len(role) >= 2 else None


_TRAILING_JOINERS = re.compile(
    r"(?:\s+(?:at|via|on|is|a|à|en|es|est|email|e-mail|correo|courriel)|[\s:,(<\[–—-])+$",
    re.IGNORECASE,
)


def _around(text: str, start: int, end: int) -> tuple[str | None, str | None]:
    """The name and role written beside the address at text[start:end]."""
    line_start = max(text.rfind("\n", 0, start) + 1, start - 160)
    before = text[line_start:start]
    sentence = max(before.rfind(". "), before.rfind("! "), before.rfind("? "))
    if sentence >= 0:
        before = before[sentence + 2 :]
    before = _TRAILING_JOINERS.sub("", before)
    name: str | None = None
    role: str | None = None
    segments = [s.strip() for s in re.split(r"[,;:()<>\[\]|]|\s[-–—]\s", before) if s.strip()]
    segments = segments[-3:]
    while segments:
        cleaned = _TRAILING_JOINERS.sub("", segments.pop())
        said_is = _SAYS_IS.match(cleaned)
        if said_is is not None and _name_run(said_is.group(2)) == said_is.group(2).strip():
            name = said_is.group(2).strip()  # "the right person is Karen Liu"
        elif _role_of(cleaned) is not None:
            role = role or _role_of(cleaned)  # "our VP of Lending": look before it
            continue
        else:
            name = _name_run(cleaned) or _leading_name(cleaned)
        if name is not None and role is None:
            # "our new VP of Lending, Tom Brady": the role is in the words before the name.
            head = cleaned[: cleaned.rfind(name)].strip() if name in cleaned else ""
            role = _role_in(head) or (_role_in(segments[-1]) if segments else None)
        break
    line_end = text.find("\n", end)
    after = text[end : line_end if line_end >= 0 else len(text)][:160]
    after = after.lstrip(" )>]")
    parenthesized = re.match(r"^\s*\(([^()]{2,80})\)", after)
    if parenthesized is not None and name is None:
        name = _name_run(parenthesized.group(1))
        after = after[parenthesized.end() :]
    if role is None:
        # "…@x.com, our appraisal desk manager": the clause right after the address, up to
        # the next address or sentence.
        first = re.split(r"[.;()\n!?]|\S+@", after.lstrip(" ,-–—:"))[0]
        if not re.match(r"(?:or|and|but|y|o|ou|et|mais|pero)\b", first, re.IGNORECASE):
            role = _role_of(first.split(",")[0])
    return name, role


def _normalized(address: str) -> str | None:
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return None
    return str(checked.normalized)


def _bare(address: str | None) -> str | None:
    if not address:
        return None
    found = _EMAIL.search(address)
    return found.group(1).lower() if found else None


def extract_referrals(
    text: str, *, sender: str | None = None, own_addresses: Iterable[str] = ()
) -> list[ReferralCandidate]:
    """The people a referral or wrong-person reply points to, best first (at most
    MAX_REFERRALS); empty when it writes no address (the card then asks the rep)."""
    body = _clip(text)
    excluded = {a for a in (_bare(x) for x in [sender, *own_addresses]) if a}
    best: dict[str, ReferralCandidate] = {}
    order: dict[str, int] = {}
    for seen, found in enumerate(_EMAIL.finditer(body)):
        if seen == MAX_ADDRESSES_READ:
            break
        raw = found.group(1).strip(".'")
        email = _normalized(raw)
        if email is None or email.lower() in excluded:
            continue
        local = email.rpartition("@")[0].lower()
        if _NO_REPLY.match(local):
            continue
        name, role = _around(body, found.start(), found.end())
        window = body[max(0, found.start() - 160) : found.end() + 80]
        score = 0.5
        if _REFERRAL_CUES.search(window):
            score += 0.3
        if name is not None:
            score += 0.1
        if role is not None:
            score += 0.05
        if local in _GENERIC_MAILBOX:
            score -= 0.15
        words = " ".join(window.split())[:300]
        candidate = ReferralCandidate(
            email=email, name=name, role=role, score=round(min(score, 1.0), 2), words=words
        )
        key = email.lower()
        if key not in best or candidate.score > best[key].score:
            best[key] = candidate
            order.setdefault(key, len(order))
    ranked = sorted(best, key=lambda k: (-best[k].score, order[k]))
    return [best[k] for k in ranked[:MAX_REFERRALS]]


# --- dates shared by meetings and "not now" --------------------------------------------------

_MONTHS: Final[dict[str, int]] = {
    **{m: i + 1 for i, m in enumerate(
        "january february march april may june july august september october november december"
        .split())},
    **{m: i + 1 for i, m in enumerate(
        "jan feb mar apr may jun jul aug sep oct nov dec".split())},
    "sept": 9,
    **{m: i + 1 for i, m in enumerate(
        "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
        "diciembre".split())},
    "setiembre": 9,
    **{m: i + 1 for i, m in enumerate(
        "janvier février mars avril mai juin juillet août septembre octobre novembre "
        "décembre".split())},
    "fevrier": 2, "aout": 8, "decembre": 12,
}  # fmt: skip
_WEEKDAYS: Final[dict[str, int]] = {
    **{d: i for i, d in enumerate(
        "monday tuesday wednesday thursday friday saturday sunday".split())},
    **{d: i for i, d in enumerate("mon tue wed thu fri sat sun".split())},
    "tues": 1, "thur": 3, "thurs": 3,
    **{d: i for i, d in enumerate("lunes martes miércoles jueves viernes sábado domingo".split())},
    "miercoles": 2, "sabado": 5,
    **{d: i for i, d in enumerate("lundi mardi mercredi jeudi vendredi samedi dimanche".split())},
}  # fmt: skip
_MONTH_WORDS = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_WEEKDAY_WORDS = "|".join(sorted(map(re.escape, _WEEKDAYS), key=len, reverse=True))


def _next_business_day(day: date, holidays: HolidayCalendar) -> date:
    """`day` itself when it is a business day, else the first one after it."""
    for _ in range(30):
        if day.weekday() < 5 and not holidays.is_holiday(day):
            return day
        day += timedelta(days=1)
    return day


def _month_start(year: int, month: int) -> date:
    year += (month - 1) // 12
    return date(year, (month - 1) % 12 + 1, 1)


def _month_after(today: date, month: int, *, strictly: bool = True) -> date:
    """The first day of the next `month` to come after `today` (this year or next)."""
    start = date(today.year, month, 1)
    # `strictly`: this month's own start is past; else the month we are in still counts.
    passed = start <= today if strictly else start < _month_start(today.year, today.month)
    return date(today.year + 1, month, 1) if passed else start


def _add_months(day: date, months: int) -> date:
    first = _month_start(day.year, day.month + months)
    last = (_month_start(first.year, first.month + 1) - timedelta(days=1)).day
    return first.replace(day=min(day.day, last))


_NUMBER_WORDS: Final[dict[str, int]] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "a couple of": 2,
    "a couple": 2, "couple of": 2, "a few": 3, "few": 3, "several": 3,
    "un": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "seis": 6, "unos": 3, "unas": 3,
    "pocos": 3, "unos pocos": 3, "une": 1, "deux": 2, "trois": 3, "quatre": 4,
    "quelques": 3,
}  # fmt: skip


def _zone(sent_at: datetime, tz: str | None) -> tzinfo:
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    offset = sent_at.tzinfo  # the Date header's own offset, when it had one
    return offset if offset is not None and sent_at.utcoffset() is not None else UTC


# --- "not now" -------------------------------------------------------------------------------

_NUMBER_ALT = "|".join(sorted(map(re.escape, _NUMBER_WORDS), key=len, reverse=True))
_UNITS: Final[dict[str, str]] = {
    "day": "days", "days": "days", "día": "days", "días": "days", "dias": "days",
    "jour": "days", "jours": "days",
    "week": "weeks", "weeks": "weeks", "semana": "weeks", "semanas": "weeks",
    "semaine": "weeks", "semaines": "weeks",
    "month": "months", "months": "months", "mes": "months", "meses": "months", "mois": "months",
    "year": "years", "years": "years", "año": "years", "años": "years", "an": "years",
    "ans": "years", "année": "years", "années": "years",
}  # fmt: skip
_UNIT_ALT = "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))

_AFTER = r"(?:after|past|once|following|beyond|después de|despues de|pasado|pasada|après|apres)"
_RESUME_PATTERNS: Final[list[tuple[str, re.Pattern[str]]]] = [
    (
        "in_span",
        re.compile(
            rf"\b(?:in|within|en|dentro de|dans|d'ici)\s+(?:about\s+|unos?\s+|environ\s+)?"
            rf"(\d{{1,3}}|{_NUMBER_ALT})\s*({_UNIT_ALT})\b",
            re.IGNORECASE,
        ),
    ),
    (
        "quarter",
        re.compile(
            rf"\b({_AFTER}\s+|in\s+|en\s+|until\s+|till\s+|hasta\s+|jusqu'?[àa]\s+)?"
            r"(?:the\s+|el\s+|le\s+)?(?:q([1-4])|(first|second|third|fourth|1st|2nd|3rd|4th|"
            r"primer|segundo|tercer|cuarto|premier|deuxième|troisième|quatrième)\s+"
            r"(?:quarter|trimestre)|(next|próximo|proximo|prochain)\s+(?:quarter|trimestre)|"
            r"(?:trimestre|quarter)\s+(?:que viene|prochain))\b",
            re.IGNORECASE,
        ),
    ),
    (
        "month",
        re.compile(
            rf"\b({_AFTER}\s+(?:(?:the\s+)?(?:end|middle) of\s+|(?:finales|mediados) de\s+|"
            rf"(?:la\s+)?(?:fin|mi-)\s*)?|(?:in|en|until|till|hasta|jusqu'?[àa]|around|by|"
            rf"early|mid-?|late|start of|beginning of|end of|a principios de|a finales de|"
            rf"début|fin|courant)\s+(?:de\s+|d')?|mid-)"
            rf"({_MONTH_WORDS})\b\.?(?!\s*\d{{1,2}}(?!\d))",
            re.IGNORECASE,
        ),
    ),
    (
        "date",
        re.compile(
            rf"\b({_AFTER}|on|around|by|until|till|from|el|le|hasta|jusqu'?au|[àa] partir du)\s+"
            rf"(?:(?:({_MONTH_WORDS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?)|"
            rf"(?:(\d{{1,2}})(?:er|st|nd|rd|th)?\s+(?:de\s+)?({_MONTH_WORDS})))\b",
            re.IGNORECASE,
        ),
    ),
    (
        "holidays",
        re.compile(
            rf"\b{_AFTER}\s+(?:the\s+|las\s+|les\s+)?(?:holidays|holiday season|new year|"
            r"christmas|fiestas|navidades|navidad|año nuevo|fêtes|fetes|noël|noel|"
            r"nouvel an)\b|\b(?:in|en)\s+(?:the\s+)?new year\b|\bnext year\b|"
            r"\bel año que viene\b|\bel próximo año\b|\bl'année prochaine\b",
            re.IGNORECASE,
        ),
    ),
    (
        "season",
        re.compile(
            rf"\b({_AFTER}\s+(?:the\s+|el\s+|l')?|(?:in|en|this|next|el|la|le|cet|ce)\s+"
            r"(?:the\s+)?)(spring|summer|fall|autumn|winter|tax season|primavera|verano|"
            r"otoño|invierno|printemps|été|automne|hiver)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "next_period",
        re.compile(
            r"\b(?:next|el próximo|el proximo|el|la próxima|la proxima|la)\s*(month|week|mes|"
            r"semana)(?:\s+que viene)?\b|\ble mois prochain\b|\bla semaine prochaine\b",
            re.IGNORECASE,
        ),
    ),
]
# Seasons: the month they start in, as a business means them (not the solstices).
_SEASONS: Final[dict[str, int]] = {
    "spring": 3, "primavera": 3, "printemps": 3,
    "summer": 6, "verano": 6, "été": 6,
    "fall": 9, "autumn": 9, "otoño": 9, "automne": 9,
    "winter": 12, "invierno": 12, "hiver": 12,
    "tax season": 4,  # the season itself: January to April 15
}  # fmt: skip
_SEASON_ENDS: Final[dict[int, int]] = {3: 6, 6: 9, 9: 12, 12: 3, 4: 5}
_ORDINALS: Final[dict[str, int]] = {
    "first": 1, "1st": 1, "primer": 1, "premier": 1,
    "second": 2, "2nd": 2, "segundo": 2, "deuxième": 2,
    "third": 3, "3rd": 3, "tercer": 3, "troisième": 3,
    "fourth": 4, "4th": 4, "cuarto": 4, "quatrième": 4,
}  # fmt: skip


def _is_after(prefix: str | None) -> bool:
    return bool(prefix) and re.match(_AFTER, prefix or "", re.IGNORECASE) is not None


def _resume_from(kind: str, m: re.Match[str], today: date) -> date | None:
    if kind == "in_span":
        raw, unit = m.group(1).lower(), _UNITS[m.group(2).lower()]
        count = int(raw) if raw.isdigit() else _NUMBER_WORDS.get(raw, 0)
        if count <= 0:
            return None
        if unit == "months":
            return _add_months(today, count)
        if unit == "years":
            return _add_months(today, 12 * count)
        return today + timedelta(**{unit: count})
    if kind == "quarter":
        after = _is_after(m.group(1))
        if m.group(4) is not None or m.group(0).lower().rstrip().endswith(("viene", "prochain")):
            current = (today.month - 1) // 3 + 1
            quarter = current % 4 + 1
        else:
            quarter = int(m.group(2)) if m.group(2) else _ORDINALS[m.group(3).lower()]
        month = (quarter - 1) * 3 + 1 + (3 if after else 0)
        return _month_after(today, (month - 1) % 12 + 1, strictly=False)
    if kind == "month":
        lead = (m.group(1) or "").lower()
        month = _MONTHS[m.group(2).lower()]
        if _is_after(lead):
            if "mid" in lead or "mediados" in lead or "middle" in lead:
                return _month_after(today, month, strictly=False).replace(day=16)
            return _month_start(_month_after(today, month, strictly=False).year, month + 1)
        start = _month_after(today, month, strictly=False)
        if start <= today:
            start = _month_after(today, month)
        if lead.startswith("mid"):
            return start.replace(day=15)
        if lead.startswith(("late", "end of", "a finales", "fin")):
            return start.replace(day=20)
        return start
    if kind == "date":
        month = _MONTHS[(m.group(2) or m.group(5)).lower()]
        on = date(today.year, month, int(m.group(3) or m.group(4)))
        if on <= today:
            on = on.replace(year=today.year + 1)
        return on + timedelta(days=1) if _is_after(m.group(1)) else on
    if kind == "holidays":
        words = m.group(0).lower()
        if today.month >= 6 or "year" in words or "año" in words or "année" in words:
            return date(today.year + 1, 1, 1)
        return None  # "after the holidays" written in spring: those holidays are past
    if kind == "season":
        season = _SEASONS[m.group(2).lower()]
        lead = (m.group(1) or "").lower()
        month = _SEASON_ENDS[season] if _is_after(lead) else season
        if m.group(2).lower() == "tax season" and _is_after(lead):
            return _month_after(today, 4, strictly=False).replace(day=16)
        return _month_after(today, month, strictly=month == today.month)
    if kind == "next_period":
        unit = (m.group(1) or ("month" if "mois" in m.group(0).lower() else "week")).lower()
        if unit in ("month", "mes"):
            return _month_start(today.year, today.month + 1)
        return today + timedelta(days=7 - today.weekday())
    return None


def extract_resume_date(
    text: str,
    *,
    sent_at: datetime,
    tz: str | None = None,
    holidays: HolidayCalendar | None = None,
) -> ResumeDate | None:
    """The date a "not now" reply says to come back: the first business day of the period
    it names (the latest, when it names several), or None when it names none."""
    body = _clip(text)
    if not body or not isinstance(sent_at, datetime):
        return None
    calendar = holidays if holidays is not None else NoHolidays()
    today = sent_at.astimezone(_zone(sent_at, tz)) if sent_at.utcoffset() is not None else sent_at
    day = today.date()
    found: list[tuple[date, str]] = []
    for kind, pattern in _RESUME_PATTERNS:
        for m in pattern.finditer(body):
            try:
                resume = _resume_from(kind, m, day)
            except (ValueError, KeyError, OverflowError):
                continue  # a date that does not exist (a month's 31st): not this phrase
            if resume is None or not day < resume <= day + timedelta(days=MAX_RESUME_DAYS):
                continue
            found.append((_next_business_day(resume, calendar), " ".join(m.group(0).split())))
    if not found:
        return None
    on, words = max(found, key=lambda f: f[0])
    return ResumeDate(on=on, words=words[:200])


# --- meeting times ---------------------------------------------------------------------------

_TIME = re.compile(
    r"(?<![\d:/])(?:(?<![\w-])(noon|midday|mediod[ií]a|midi)|"
    r"(\d{1,2})(?:[:h.](\d{2}))?\s*(a\.?m\.?|p\.?m\.?|h(?!\w))?)"
    r"(?:\s*(?:-|–|to|until|a|à|and|y|et)\s*(\d{1,2})(?:[:h.](\d{2}))?\s*(a\.?m\.?|p\.?m\.?|h(?!\w))?)?"
    r"(?![\d/])",
    re.IGNORECASE,
)
_DAY = re.compile(
    rf"\b(?:(today|hoy|aujourd'hui)|(tomorrow|mañana(?!\s+por)|demain)|"
    rf"(next\s+|this\s+|el\s+próximo\s+|el\s+proximo\s+|el\s+|le\s+|ce\s+)?({_WEEKDAY_WORDS})\.?"
    rf"(?:\s+(?:prochain|que viene|próximo))?|"
    rf"({_MONTH_WORDS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b|"
    rf"(\d{{1,2}})(?:er|st|nd|rd|th)?\s+(?:de\s+)?({_MONTH_WORDS})\b|"
    r"(\d{1,2})/(\d{1,2})(?:/\d{2,4})?(?!\d))",
    re.IGNORECASE,
)
_WEEK = re.compile(
    r"\b(next week|this week|later this week|la semana que viene|la próxima semana|"
    r"la proxima semana|esta semana|la semaine prochaine|cette semaine)\b",
    re.IGNORECASE,
)
_PART = re.compile(
    r"\b(morning|afternoon|evening|por la mañana|en la mañana|por la tarde|en la tarde|"
    r"matin|matinée|après-midi|apres-midi)\b",
    re.IGNORECASE,
)
_CHUNK_SPLIT = re.compile(r"\s+(?:or|o|ou)\s+|;|\n|\.\s|,\s*(?=\D)|\?|!", re.IGNORECASE)
_TIME_CUE = re.compile(r"\b(?:at|@|a las|à|vers|around|from|de|entre|between)\s*$", re.IGNORECASE)


def _clock(hour: str, minute: str | None, suffix: str | None, *, cued: bool) -> time | None:
    h, mins = int(hour), int(minute) if minute else 0
    mark = (suffix or "").lower().replace(".", "")
    if mins > 59:
        return None
    if mark == "pm" and h < 12:
        h += 12
    elif mark == "am" and h == 12:
        h = 0
    elif not mark and not minute and not cued:
        return None  # a bare number ("2 files") is no time
    elif not mark.startswith(("a", "p")) and 1 <= h <= 6:
        h += 12  # "at 2", "2:30": business hours, so the afternoon
    if h > 23:
        return None
    return time(h, mins)


def _times_in(chunk: str) -> tuple[time | None, time | None]:
    for m in _TIME.finditer(chunk):
        if m.group(1):
            return time(12, 0), None
        # Only the words just before: searching the whole prefix per number is quadratic.
        cued = _TIME_CUE.search(chunk[max(0, m.start() - 16) : m.start()]) is not None
        cued = cued or bool(m.group(5))
        end_suffix = m.group(7)
        start_suffix = m.group(4) or (end_suffix if m.group(5) else None)
        start = _clock(m.group(2), m.group(3), start_suffix, cued=cued)
        if start is None:
            continue
        end = _clock(m.group(5), m.group(6), end_suffix, cued=True) if m.group(5) else None
        if end is not None and end <= start:
            end = None
        return start, end
    return None, None


def _day_in(chunk: str, today: date) -> date | None:
    m = _DAY.search(chunk)
    if m is None:
        return None
    if m.group(1):
        return today
    if m.group(2):
        return today + timedelta(days=1)
    if m.group(4):
        weekday = _WEEKDAYS[m.group(4).lower()]
        ahead = (weekday - today.weekday()) % 7 or 7
        lead = (m.group(3) or "").strip().lower()
        if lead == "next" and today + timedelta(days=ahead) <= today + timedelta(
            days=6 - today.weekday()
        ):
            ahead += 7
        return today + timedelta(days=ahead)
    if m.group(5):
        month, day_of_month = _MONTHS[m.group(5).lower()], int(m.group(6))
    elif m.group(8):
        month, day_of_month = _MONTHS[m.group(8).lower()], int(m.group(7))
    else:
        month, day_of_month = int(m.group(9)), int(m.group(10))  # US order: month/day
    try:
        candidate = date(today.year, month, day_of_month)
    except ValueError:
        return None
    if candidate < today:
        candidate = candidate.replace(year=today.year + 1)
    return candidate


def _week_in(chunk: str, today: date) -> tuple[date, date] | None:
    m = _WEEK.search(chunk)
    if m is None:
        return None
    words = m.group(1).lower()
    monday = today - timedelta(days=today.weekday())
    if words.startswith(("this", "later", "esta", "cette")):
        start = today + timedelta(days=1)
        friday = monday + timedelta(days=4)
        return (start, friday) if start <= friday else None
    return monday + timedelta(days=7), monday + timedelta(days=11)


def extract_meeting_times(
    text: str, *, sent_at: datetime, tz: str | None = None
) -> list[ProposedTime]:
    """The times a meeting request proposes, in the order written (at most MAX_TIMES)."""
    body = _clip(text)
    if not body or not isinstance(sent_at, datetime):
        return []
    zone = _zone(sent_at, tz)
    local_sent = sent_at.astimezone(zone) if sent_at.utcoffset() is not None else sent_at
    today = local_sent.date()
    proposals: list[ProposedTime] = []
    last_day: date | None = None
    for raw in _CHUNK_SPLIT.split(body):
        chunk = " ".join(raw.split())
        if not chunk:
            continue
        day = _day_in(chunk, today)
        week = _week_in(chunk, today) if day is None else None
        start, end = _times_in(chunk)
        part = _PART.search(chunk)
        window = _PARTS_OF_DAY[part.group(1).lower().split()[-1]] if part else None
        if day is None and week is None and start is None and window is None:
            continue
        inherited = day is None and week is None and last_day is not None and bool(start or window)
        if inherited:
            day = last_day  # "Tuesday at 2 or 4pm": the second time is Tuesday's too
        words = chunk[:200]
        if day is not None:
            first, until = (start, end) if start else (window or (_WORKDAY_START, _WORKDAY_END))
            proposal = _proposal(day, first, until, zone, words)
            previous = proposals[-1] if proposals else None
            if inherited and previous is not None and _narrows(previous, proposal):
                # "Tomorrow morning, around 10": the hour places the window's meeting.
                proposal = proposal.model_copy(update={"words": f"{previous.words}, {words}"[:200]})
                proposals[-1] = proposal
            else:
                proposals.append(proposal)
            last_day = day
        elif week is not None:
            first, until = window or (_WORKDAY_START, _WORKDAY_END)
            if start is not None:
                first, until = start, end or until
            proposals.append(_window(week, first, until, zone, words))
        else:
            proposals.append(ProposedTime(words=words))
        if len(proposals) == MAX_TIMES:
            break
    return proposals


def _narrows(window: ProposedTime, moment: ProposedTime) -> bool:
    """Tell whether `moment` is a time inside the window proposed just before it."""
    return (
        window.start is not None
        and window.end is not None
        and moment.start is not None
        and moment.end is None
        and window.start <= moment.start < window.end
    )


def _at(day: date, moment: time, zone: tzinfo) -> datetime:
    return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)


def _proposal(day: date, start: time, end: time | None, zone: tzinfo, words: str) -> ProposedTime:
    return ProposedTime(
        start=_at(day, start, zone),
        end=_at(day, end, zone) if end is not None else None,
        words=words,
    )


def _window(
    week: tuple[date, date], start: time, end: time | None, zone: tzinfo, words: str
) -> ProposedTime:
    return ProposedTime(
        start=_at(week[0], start, zone),
        end=_at(week[1], end or _WORKDAY_END, zone),
        words=words,
    )


# --- the port --------------------------------------------------------------------------------


class ReplyIntentReader:
    """The readers above as the card conversion's port (domain.ports.IntentReader), with the
    holiday calendar a resume date skips."""

    def __init__(self, *, holidays: HolidayCalendar | None = None) -> None:
        self._holidays = holidays

    def referrals(
        self, text: str, *, sender: str | None, own_addresses: Iterable[str]
    ) -> list[ReferralCandidate]:
        """The people a referral or wrong-person reply points to, best first."""
        return extract_referrals(text, sender=sender, own_addresses=own_addresses)

    def meeting_times(self, text: str, *, sent_at: datetime, tz: str | None) -> list[ProposedTime]:
        """The times a meeting request proposes, in the order written."""
        return extract_meeting_times(text, sent_at=sent_at, tz=tz)

    def resume_date(self, text: str, *, sent_at: datetime, tz: str | None) -> ResumeDate | None:
        """The first business day a "not now" says to come back, or None."""
        return extract_resume_date(text, sent_at=sent_at, tz=tz, holidays=self._holidays)
