"""The text a person wrote: HTML turned into text, and a reply stripped of history and signature.

`strip_reply` is built on mail-parser-reply (quote headers and disclaimers in 14 languages)
with a layer of our own where the corpus in `tests/corpus/replies` showed the library
falling short; `python -m bench reply_stripping` prints both figures (the library alone
matched 129 of 251 cases, this module 218):

* HTML quote markup (Gmail, Outlook, Apple Mail, Thunderbird, Yahoo, Zoho) is cut before
  the HTML is turned into text, since markup is a surer sign than any text pattern;
* quoted (`>`) lines never count as new text, and a quote header ends the new text: an
  attribution ("On <date>, <name> wrote:" in more languages, or any wrapped line ending in
  a colon with an address and a date), an Outlook "From: / Sent:" block with localised
  labels, or an "Original Message" separator. Text below a quote (a bottom-posted or inline
  answer) is kept; a forward with nothing above it keeps what it forwards;
* signatures: a "-- " block, "Sent from my ..." lines (and what mobile clients put below
  them), a lone "-Name" last line. Sign-offs such as "Thanks,\nDana" stay: the library's
  rule for them drops everything after any line that merely starts with "Thanks," and the
  sources disagree on them anyway (talon and email_reply_trimmer keep them);
* cuts are made on the original lines, so the library's whitespace normalisation does not
  reach the result.

Everything here is heuristics on untrusted text: it never raises on odd input, works on at
most `MAX_INPUT_CHARS` (and hands the library less, since some of its patterns backtrack
badly on hostile input), and when unsure it keeps text rather than dropping it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import html_text
import lxml.etree
import lxml.html
from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

from integrations.gmail.hidden_html import HiddenText, drop_hidden_text

# A reply a person typed is never this long; what follows is history or noise.
MAX_INPUT_CHARS: Final = 200_000
# The part of the text handed to mail-parser-reply (new text is at the top).
LIBRARY_MAX_CHARS: Final = 20_000
LIBRARY_MAX_LINE: Final = 300

_LANGUAGES: Final = tuple(MAIL_LANGUAGES)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")

# --- HTML -------------------------------------------------------------------------------------


def html_to_text(html: str) -> str:
    """Turn an HTML body into readable plain text (layout kept as line breaks).

    Text a reader would not see (hidden elements, white on white, comments: see
    `integrations/gmail/hidden_html.py`) is left out.
    """
    return visible_text(html)[0]


def visible_text(html: str) -> tuple[str, HiddenText]:
    """Return the text a reader of the HTML sees, and what hidden text was dropped."""
    cleaned = _CONTROL.sub("", html)
    if not cleaned.strip():
        return "", HiddenText()
    root = html_text.parse_html(cleaned)
    hidden = drop_hidden_text(root)
    return _CONTROL.sub("", html_text.extract_text(root)), hidden


_FROM_WORDS: Final = (
    r"From|De|Von|Da|Van|Fra|Från|Od|От|Lähettäjä|Feladó|Kimden|Remetente|Afzender"
    r"|发件人|寄件者|差出人|보낸\s?사람"
)
_HEADER_WORDS: Final = (
    _FROM_WORDS + r"|Sent|Date|To|Subject|Cc|Bcc|Reply-To|Envoyé(?:\s+le)?|À|A|Objet|Copie\s+à"
    r"|Message\s+du|Gesendet|Datum|An|Betreff|Kopie|Inviato|Data|Oggetto|Risposta|Verzonden"
    r"|Aan|Onderwerp|Sendt|Til|Emne|Dato|Skickat|Till|Ämne|Kopia|Wysłano|Do|Temat|DW"
    r"|Отправлено|Дата|Кому|Тема|Копия|Enviado(?:\s+el)?|Para|Asunto|Fecha|Assunto|Lähetetty"
    r"|Vastaanottaja|Aihe|Elküldve|Címzett|Tárgy|Gönderildi|Kime|Konu"
    r"|发送时间|收件人|主题|抄送|日期|送信日時|宛先|件名|보낸\s?날짜|받는\s?사람|제목"
)
_LABEL = r"^[ \t>]*\*{0,2}(?:WORDS)\*{0,2}[ \t]*\*{0,2}[:：]"
_FROM_LABEL = re.compile(_LABEL.replace("WORDS", _FROM_WORDS), re.IGNORECASE)
_ANY_LABEL = re.compile(_LABEL.replace("WORDS", _HEADER_WORDS), re.IGNORECASE)


def _strip_html_quotes(html: str) -> str | None:
    """Return the text of the HTML without its quoted history, or None if it has no quote markup."""
    try:
        root = lxml.html.fromstring(_CONTROL.sub("", html))
    except (lxml.etree.ParserError, ValueError):
        return None
    marker = _first_quote_marker(root)
    if marker is None:
        return None
    node = marker
    while (parent := node.getparent()) is not None:
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        if node is not marker:
            node.tail = None
        node = parent
    marker_parent = marker.getparent()
    if marker_parent is not None:
        marker_parent.remove(marker)
    return html_to_text(lxml.html.tostring(root, encoding="unicode"))


_QUOTE_CLASSES: Final = frozenset(
    {
        "gmail_quote",
        "gmail_quote_container",
        "yahoo_quoted",
        "moz-cite-prefix",
        "OutlookMessageHeader",
        "zmail_extra",
        "protonmail_quote",
        "ms-outlook-mobile-reference-message",
    }
)
_QUOTE_IDS: Final = frozenset(
    {
        "divRplyFwdMsg",
        "appendonsend",
        "OLK_SRC_BODY_SECTION",
        "stopSpelling",
        "mail-editor-reference-message-container",
    }
)


# Rules and bordered divs are checked for a following "From:" only this many times, since
# each check reads the rest of the document.
_MAX_RULE_CHECKS: Final = 20


def _first_quote_marker(root: lxml.html.HtmlElement) -> lxml.html.HtmlElement | None:
    rule_checks = 0
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        classes = set((el.get("class") or "").split())
        if classes & _QUOTE_CLASSES or any(c.endswith("yahoo_quoted") for c in classes):
            return el
        if el.get("id") in _QUOTE_IDS:
            return el
        if el.tag == "blockquote" and (el.get("type") or "").lower() == "cite":
            return el
        is_rule = el.tag == "hr" or (el.tag == "div" and "border-top" in (el.get("style") or ""))
        if is_rule and rule_checks < _MAX_RULE_CHECKS:
            # Outlook's header block: a rule or a top border, then "From: ..."
            rule_checks += 1
            texts = el.xpath("following::text()") if el.tag == "hr" else el.xpath(".//text()")
            if _FROM_LABEL.match("".join(str(t) for t in texts[:12]).strip()):
                return el
    return None


# --- plain text ------------------------------------------------------------------------------

_WROTE_VERBS: Final = (
    r"wrote|writes|a\s+écrit|schrieb|hat\s+geschrieben|escribió|escreveu|ha\s+scritto|scrisse"
    r"|schreef|het\s+volgende\s+geschreven|napisał\(a\)|napisała|napisał|написал\(а\)"
    r"|написала|написал|skrev|kirjoitti|írta|yazdı|napsal\(a\)|napsal|写道|寫道|に書きました"
    r"|님이\s*작성"
)
# An attribution ("On <date>, <name> wrote:"), joined from up to three wrapped lines.
_WROTE_TAIL = re.compile(rf"(?:{_WROTE_VERBS})\s*[:：]?\s*(?:-{{2,}})?\s*$", re.IGNORECASE)
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DATE_OR_TIME = re.compile(r"\d{1,2}[:.]\d{2}|\d{4}|\d{1,2}[./-]\d{1,2}")
_COLON_END = re.compile(r"[:：]\s*$")
# Gmail's localised attribution without a verb: "2013/7/20 sam <sam@x.org>" or "... GMT+01:00".
_FRAMED_WROTE = re.compile(rf"^-{{2,}}.*\s(?:{_WROTE_VERBS})\s*-{{2,}}$", re.IGNORECASE)
_DATE_FIRST = re.compile(r"^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b.*(?:@|GMT[+-]?\d)")
_ORIGINAL_WORDS: Final = (
    r"Original\s+Message|Forwarded\s+message|Ursprüngliche\s+Nachricht|Weitergeleitete\s+Nachricht"
    r"|Message\s+d'origine|Message\s+transféré|Messaggio\s+originale|Messaggio\s+inoltrato"
    r"|Mensaje\s+original|Mensaje\s+reenviado|Mensagem\s+original|Mensagem\s+encaminhada"
    r"|Oorspronkelijk\s+bericht|Doorgestuurd\s+bericht|Oprindelig\s+(?:besked|meddelelse)"
    r"|Videresendt\s+(?:besked|meddelelse)|Originalmeddelande|Vidarebefordrat\s+meddelande"
    r"|Opprinnelig\s+melding|Alkuperäinen\s+viesti|Wiadomość\s+oryginalna|Oryginalna\s+wiadomość"
    r"|Reply\s+Message|Antwort\s+Nachricht|Исходное\s+сообщение|Пересланное\s+сообщение|原始邮件|原始郵件|転送メッセージ|元のメッセージ"
)
_ORIGINAL_SEPARATOR = re.compile(
    rf"^[\s>*]*-{{2,}}\s*(?:{_ORIGINAL_WORDS})\s*-{{2,}}[\s*]*$"
    rf"|^[\s>*]*(?:Begin\s+forwarded\s+message|Anfang\s+der\s+weitergeleiteten\s+Nachricht)\s*:",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"^\s*>")
_SIG_DELIMITER = re.compile(r"^\s*(?:-{2,}|_{2,})\s*$")
_SENT_FROM = re.compile(
    r"^\s*(?:Sent\s+(?:from|with|via|using)|Get\s+Outlook\s+for|Envoyé\s+(?:de|depuis|à\s+partir\s+de)"
    r"|Von\s+meinem|Gesendet\s+(?:von|mit)|Enviado\s+(?:desde|de|do)|Inviato\s+da|Verzonden\s+(?:met|vanaf)"
    r"|Skickat\s+från|Sendt\s+fra|Wysłane\s+z|Отправлено\s+с|Diese\s+Nachricht\s+wurde\s+von)\b"
    r"[^,;]{0,100}$",
    re.IGNORECASE,
)
_DASH_NAME = re.compile(r"^\s*-\s?[^\W\d_][\w.'’-]*(?:\s[^\W\d_][\w.'’-]*){0,3}\s*$")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_NOISE = re.compile(r"^[\s_=*~#+\-ᐧ]*$")


def strip_reply(text: str, *, html: str | None = None) -> str:
    """Return only the new text of a reply: no quoted history, quote headers or signature."""
    if html:
        from_html = _strip_html_quotes(html[: MAX_INPUT_CHARS * 5])
        if from_html is not None:
            return _strip_text(from_html)
        if not text.strip():
            text = html_to_text(html)
    return _strip_text(text)


def _strip_text(text: str) -> str:
    lines = text[:MAX_INPUT_CHARS].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = _cut_history(lines)
    lines = _with_library(lines)
    lines = _drop_signature(lines)
    return "\n".join(lines).strip()


# Kinds of quote header.
_ATTRIBUTION = "attribution"  # "On <date>, <name> wrote:", usually over `>` quoted lines
_BLOCK = "block"  # Outlook's "From: / Sent: / To: / Subject:" over unquoted history
_SEPARATOR = "separator"  # "-----Original Message-----"


def _cut_history(lines: list[str]) -> list[str]:
    """Remove quoted lines and quote headers; keep new text written around or below them."""
    attributions = _find_attributions(lines)
    out: list[str] = []
    i = 0
    while i < len(lines):
        kind, end = _header_at(lines, i, attributions)
        if kind is None:
            if not _QUOTED.match(lines[i]):
                out.append(lines[i])
            i += 1
            continue
        after = _skip_blank(lines, end)
        if kind == _ATTRIBUTION and after < len(lines) and _QUOTED.match(lines[after]):
            # The quote it introduces is skipped; text after it is new (bottom or inline reply).
            i = _skip_quoted(lines, after)
            continue
        if any(line.strip() for line in out):
            break  # a top-posted reply: everything from here on is history
        # Nothing above it (a forward, or an answer below the header): keep what it introduces.
        i = _skip_header_fields(lines, end) if kind != _ATTRIBUTION else after
    if not any(line.strip() for line in out):
        return lines  # only quotes: better shown as they are than as nothing
    return out


def _skip_blank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _skip_quoted(lines: list[str], i: int) -> int:
    """Skip a quoted block, with the unquoted lines a client wrapped inside it."""
    while i < len(lines):
        if not lines[i].strip() or _QUOTED.match(lines[i]):
            i += 1
        elif i > 0 and _QUOTED.match(lines[i - 1]) and _wrapped_in_quote(lines, i):
            i += 1
        else:
            break
    return i


def _wrapped_in_quote(lines: list[str], i: int) -> bool:
    """Tell whether unquoted line i sits between quoted lines (a quote wrapped by the client)."""
    for k in (i + 1, i + 2):
        if k >= len(lines) or not lines[k].strip():
            return False
        if _QUOTED.match(lines[k]):
            return True
    return False


def _skip_header_fields(lines: list[str], i: int) -> int:
    """Skip the "From: / Date: / Subject:" fields (and wrapped values) after a separator."""
    i = _skip_blank(lines, i)
    while i < len(lines) and lines[i].strip():
        i += 1
    return _skip_blank(lines, i)


def _header_at(lines: list[str], i: int, attributions: dict[int, int]) -> tuple[str | None, int]:
    """Return the kind of quote header starting at line i and the line after it."""
    if i in attributions:
        return _ATTRIBUTION, attributions[i]
    line = lines[i]
    if not line.strip() or _QUOTED.match(line):
        return None, i
    if _ORIGINAL_SEPARATOR.match(line):
        return _SEPARATOR, i + 1
    if _is_header_block(lines, i):
        return _BLOCK, i
    if _DATE_FIRST.match(line):
        return _ATTRIBUTION, i + 1
    return None, i


def _find_attributions(lines: list[str]) -> dict[int, int]:
    """Map the first line of each attribution ("On <date>, <name> wrote:") to the line after it.

    An attribution is found from its last line (ending in "wrote:" or in a colon) back to the
    shortest run of lines that reads as one; it then takes in the lines above it that it
    continues, since mail clients wrap long attributions anywhere ("... <" / "addr> wrote:").
    """
    spans: dict[int, int] = {}
    taken = -1
    for j, line in enumerate(lines):
        if not (_WROTE_TAIL.search(line) or _COLON_END.search(line)):
            continue
        start = _attribution_start(lines, j)
        if start is None or start <= taken or _QUOTED.match(lines[start]):
            continue
        spans[start] = j + 1
        taken = j
    return spans


def _attribution_start(lines: list[str], j: int) -> int | None:
    rows: list[int] = []
    for k in range(j, max(j - 6, -1), -1):
        if not lines[k].strip():
            continue
        rows.insert(0, k)
        joined = " ".join(lines[r].strip() for r in rows)
        if len(joined) > 400:
            return None
        if _reads_as_attribution(joined):
            start = rows[0]
            while start > 0 and start > j - 6:
                above = _previous_text_line(lines, start)
                if above is None or not _continues(lines[above], lines[start]):
                    break
                start = above
            return start
    return None


def _reads_as_attribution(joined: str) -> bool:
    if _WROTE_TAIL.search(joined) and (
        _DATE_OR_TIME.search(joined) or "@" in joined or _FRAMED_WROTE.match(joined)
    ):
        return True
    return bool(
        _COLON_END.search(joined) and _ADDRESS.search(joined) and _DATE_OR_TIME.search(joined)
    )


def _previous_text_line(lines: list[str], i: int) -> int | None:
    k = i - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    return k if k >= 0 and i - k <= 2 else None


_CONTINUATION = re.compile(
    rf"^\s*(?:[<(\[]|>\s*(?:[:：]|(?:{_WROTE_VERBS}))|mailto:|[\w.+-]+@[\w-]+\.|(?:{_WROTE_VERBS})\b)",
    re.IGNORECASE,
)


def _continues(above: str, line: str) -> bool:
    """Tell whether `line` carries on the attribution begun on the line above it."""
    return bool(_CONTINUATION.match(line)) or above.rstrip().endswith(("<", "("))


def _is_header_block(lines: list[str], i: int) -> bool:
    """Tell whether an Outlook-style block ("From: / Sent: / To: / Subject:") starts at line i."""
    if not _ANY_LABEL.match(lines[i]):
        return False
    labels, has_from, wrapped = 1, bool(_FROM_LABEL.match(lines[i])), False
    for line in lines[i + 1 : i + 10]:
        if _ANY_LABEL.match(line):
            labels += 1
            has_from = has_from or bool(_FROM_LABEL.match(line))
            wrapped = False
        elif line.strip() and not wrapped and len(line) < 100:
            wrapped = True  # a value on two lines, e.g. a long sender address
        else:
            break
        if labels >= 2 and has_from:
            return True
    return False


def _with_library(lines: list[str]) -> list[str]:
    """Let mail-parser-reply find quote headers and disclaimers we missed; keep our lines."""
    head, tail = _head(lines)
    # The library's patterns backtrack badly on long runs of blank lines (a hostile message
    # can stall them for minutes), so it sees the head with blank runs squeezed.
    # Its header patterns also nest lazy repeats, slow on long lines; no quote header is long.
    text = _BLANK_RUNS.sub("\n\n", "\n".join(line.strip()[:LIBRARY_MAX_LINE] for line in head))
    if not text.strip():
        return lines
    reply = _library_first_reply(text)
    if reply.headers:
        return lines  # the library saw no new text above its first quote header
    # The library's `body` also drops its guess at a signature, but its "Thanks," and
    # "Regards" rules cut whole paragraphs that merely start with those words: signatures
    # are left to `_drop_signature`.
    body = reply.content
    for disclaimer in reply.disclaimers:
        body = body.replace(disclaimer, "")
    kept = _original_lines(head, body)
    if len(kept) == len(head) or not any(line.strip() for line in head[len(kept) :]):
        return kept + tail  # nothing cut: the part the library did not see stays
    return kept


@dataclass(frozen=True)
class _LibraryReply:
    """The newest reply as mail-parser-reply splits it: its quote header, text, disclaimers."""

    headers: str
    content: str
    disclaimers: tuple[str, ...]


def _library_message(text: str, **patterns: re.Pattern[str]) -> EmailMessage:
    """Return mail-parser-reply's message for `text`: every language, hyphen lists kept."""
    return EmailMessage(
        text=text,
        languages=list(_LANGUAGES),
        keep_hyphen_lists=True,
        **patterns,
    )


# `EmailMessage.read()` builds its patterns from the language tables on every call, and
# splits the whole text into replies, searching each one for disclaimers and a signature.
# Only the newest reply and its disclaimers are used here: the patterns are built once,
# and `_library_first_reply` walks the header matches the way `read()` does, up to it.
_PROTOTYPE: Final = _library_message("")
_HEADER_PATTERN: Final = _PROTOTYPE.HEADER_REGEX
_DISCLAIMER_PATTERN: Final = _PROTOTYPE.DISCLAIMERS_REGEX


def _header_texts(
    pattern: re.Pattern[str], text: str, *, starts: _MatchStarts | None
) -> Iterator[str]:
    """Yield what `chain.from_iterable(pattern.findall(text))` yields, lazily, without blanks.

    With `starts`, matches are tried only where one can start.
    """
    for match in starts.finditer(text) if starts is not None else pattern.finditer(text):
        if pattern.groups == 0:
            groups: Iterable[str | None] = (match.group(0),)
        elif pattern.groups == 1:
            groups = match.group(1) or ""  # findall gives the one group's text: its characters
        else:
            groups = match.groups()
        for found in groups:
            if found:
                yield found


class _MatchStarts:
    """Where a pattern's matches can start: line starts, line feeds, a few literal prefixes.

    The library's header pattern is a long alternation, and a search tries all of it at
    every character of the text. Its branches begin with `^` or a line feed, except one that
    may begin with a fixed text ("-----Oprindelig meddelelse-----"). Trying
    `pattern.match` at those positions only, in order, finds the matches `finditer` finds,
    at a fraction of the cost. The starts are read from the pattern's parse tree; `of()`
    returns None for a pattern it cannot vouch for, which is then searched everywhere.
    """

    def __init__(self, pattern: re.Pattern[str], literals: frozenset[str]) -> None:
        self._pattern = pattern
        alternatives = "|".join(re.escape(literal) for literal in sorted(literals))
        # A lookahead, so overlapping occurrences are all found (with the pattern's flags,
        # so letters compare as the pattern compares them).
        self._literals = re.compile(f"(?=(?:{alternatives}))", pattern.flags) if literals else None

    @classmethod
    def of(cls, pattern: re.Pattern[str]) -> _MatchStarts | None:
        """Return the starts of `pattern`'s matches, or None if they cannot be told."""
        try:
            # The standard library's own regex parser (private, hence looked up by name).
            parser = importlib.import_module("re._parser")
            sre = importlib.import_module("re._constants")
            parsed = parser.parse(pattern.pattern, pattern.flags)
            starts = _sequence_starts(sre, parsed.data) if parsed.getwidth()[0] > 0 else None
        except Exception:  # noqa: BLE001 - a private module that may change: search all
            return None
        if starts is None:
            return None
        return cls(pattern, frozenset(starts - {_ON_A_LINE}))

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """Yield the matches `pattern.finditer(text)` yields (never empty: width > 0)."""
        position = 0
        for start in self._positions(text):
            if start < position:
                continue
            match = self._pattern.match(text, start)
            if match is not None:
                yield match
                position = match.end()

    def _positions(self, text: str) -> list[int]:
        lines = _line_positions(text)
        if self._literals is None:
            return lines
        literals = [found.start() for found in self._literals.finditer(text)]
        return sorted(set(lines).union(literals)) if literals else lines


# A match starting at a line start or on a line feed (in `_sequence_starts` results).
_ON_A_LINE: Final = ""


def _sequence_starts(sre: Any, items: list[tuple[Any, Any]]) -> set[str] | None:
    """Return what every match of a parsed sequence starts with, or None if unsure.

    `_ON_A_LINE` for a line start or a line feed, else a literal text the match begins with.
    """
    starts: set[str] = set()
    for index, (op, arg) in enumerate(items):
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            continue  # zero-width: the match still starts where the next item does
        if op is sre.AT:
            if arg in (sre.AT_BEGINNING, sre.AT_BEGINNING_LINE, sre.AT_BEGINNING_STRING):
                return starts | {_ON_A_LINE}
            return None
        if op is sre.LITERAL:
            if arg == ord("\n"):
                return starts | {_ON_A_LINE}
            literal = []
            for next_op, next_arg in items[index:]:
                if next_op is not sre.LITERAL:
                    break
                literal.append(chr(next_arg))
            return starts | {"".join(literal)}
        if op is sre.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            inner = None if add_flags or del_flags else _sequence_starts(sre, body.data)
            return None if inner is None else starts | inner
        if op is sre.BRANCH:
            for branch in arg[1]:
                inner = _sequence_starts(sre, branch.data)
                if inner is None:
                    return None
                starts |= inner
            return starts
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, _high, body = arg
            inner = _sequence_starts(sre, body.data)
            if inner is None:
                return None
            starts |= inner
            if low >= 1:
                return starts
            continue  # an optional part: when it is skipped the rest starts the match
        return None
    return None  # the sequence may match nothing here: a match could start anywhere


def _line_positions(text: str) -> list[int]:
    """Return, in order and once each, every line start and line feed of `text`."""
    positions = [0]
    for feed in _LINE_FEEDS.finditer(text):
        at = feed.start()
        if at != positions[-1]:
            positions.append(at)
        positions.append(at + 1)
    return positions


_LINE_FEEDS = re.compile("\n")


_HEADER_STARTS: Final = _MatchStarts.of(_HEADER_PATTERN)


def _library_first_reply(text: str) -> _LibraryReply:
    """Return `EmailMessage(text, ...).read().replies[0]`'s header, content and disclaimers."""
    message = _library_message(
        text, _header_regex=_HEADER_PATTERN, _disclaimers_regex=_DISCLAIMER_PATTERN
    )
    normalised = message.text  # line ends and spaces normalised by the library
    current, previous = 0, ""
    for header in _header_texts(_HEADER_PATTERN, normalised, starts=_HEADER_STARTS):
        position = normalised.find(header, current + 1 if current > 0 else current)
        segment = normalised[current:position]
        reply_header, previous = previous, header
        current = position if position >= 0 else 0
        if segment.strip():
            return _library_reply(reply_header, segment)
    # The last reply is kept even when empty, as `read()` keeps it.
    return _library_reply(previous, normalised[current:])


def _library_reply(header: str, segment: str) -> _LibraryReply:
    disclaimers = _DISCLAIMER_PATTERN.findall(segment)
    return _LibraryReply(
        headers=header.strip(),
        content=segment.strip(),
        disclaimers=tuple(d.strip() for d in disclaimers),
    )


def _head(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split lines after about LIBRARY_MAX_CHARS characters."""
    total = 0
    for i, line in enumerate(lines):
        total += len(line) + 1
        if total > LIBRARY_MAX_CHARS:
            return lines[:i], lines[i:]
    return lines, []


def _original_lines(lines: list[str], body: str) -> list[str]:
    """Return our lines up to where the library's (whitespace-normalised) text ends."""
    wanted = [row.strip() for row in body.strip().split("\n") if row.strip()]
    if not wanted:
        return []
    stripped = [line.strip() for line in lines]
    at, last = 0, -1
    for row in wanted:
        for k in range(at, min(at + 50, len(stripped))):
            if stripped[k] == row or row in stripped[k]:
                at, last = k + 1, k
                break
    if last < 0:
        return lines
    # A line the library dropped whole (a disclaimer) inside the kept part goes too.
    wanted_set = set(wanted)
    return [
        line
        for line in lines[: last + 1]
        if not line.strip() or line.strip() in wanted_set or any(r in line for r in wanted_set)
    ]


def _drop_signature(lines: list[str]) -> list[str]:
    lines = _trim_noise(lines)
    text_lines = [i for i, line in enumerate(lines) if line.strip()]
    if not text_lines:
        return lines
    # "-- " and the few lines after it, when there is text above it.
    for i in text_lines[1:]:
        if _SIG_DELIMITER.match(lines[i]) and len(lines) - i <= 25:
            lines = _trim_noise(lines[:i])
            break
    # "Sent from my iPhone" ends what the person wrote; mobile clients put history below it.
    for i in text_lines[1:]:
        if i < len(lines) and _SENT_FROM.match(lines[i]):
            lines = _trim_noise(lines[:i])
            break
    # "-Name" alone on the last line, not the last item of a "- " list.
    text_lines = [i for i, line in enumerate(lines) if line.strip()]
    if len(text_lines) >= 2 and _DASH_NAME.match(lines[text_lines[-1]]):
        before = lines[text_lines[-2]].strip()
        if not before.startswith("-") and not before.endswith(":"):
            lines = _trim_noise(lines[: text_lines[-1]])
    return lines


def _trim_noise(lines: list[str]) -> list[str]:
    end = len(lines)
    while end > 0 and _TRAILING_NOISE.match(lines[end - 1]):
        end -= 1
    return lines[:end]
