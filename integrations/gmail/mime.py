"""Parse inbound email (Gmail `users.messages.get`, format raw or full) into a `ParsedEmail`.

Built on the standard library's `email` package with `policy.default`. Nothing here raises
on bad input: MIME defects, unknown charsets, undecodable bytes and oversized bodies become
flags and short `defects` notes on the result, so the worker stores the message and moves
on. Attachments are measured, never kept. Message content is never logged.

Parsing is on the hot path of inbound sync, so the package's costliest habits are avoided
without changing its answers: each header value is parsed once (the package parses a
part's Content-Type again on every question it asks of the part), and header values in
their plainest form (an ASCII Subject, `Name <a@b.example>`) are read directly rather than
through the package's header parser; anything else still goes through the package.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import logging
import quopri
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors as email_errors
from email import policy
from email.header import decode_header
from email.headerregistry import HeaderRegistry, MessageIDHeader, UnstructuredHeader
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, Final

from charset_normalizer import from_bytes as detect_charset

from domain.email_message import (
    DSN_FIELDS,
    KEPT_HEADERS,
    REPORT_FIELDS,
    Attachment,
    DeliveryStatusRecipient,
    EmailFlag,
    EmbeddedMessage,
    ParsedEmail,
)
from integrations.gmail.reply_text import strip_reply, visible_text

log = logging.getLogger(__name__)

# About 1 MB of text per body: far more than any reply a person writes, small enough to
# store and to hand to the classifier. Longer bodies are cut and flagged "truncated".
DEFAULT_MAX_BODY_CHARS: Final = 1_000_000
# Deeper MIME nesting than this is not a real message; parts below it are skipped.
MAX_DEPTH: Final = 40
# Parts whose encoded payload is larger than this many bytes per allowed character are
# cut before decoding, so a 20 MB body is never decoded whole (UTF-8 needs at most 4 bytes
# a character, base64 adds a third, line breaks a little more).
_ENCODED_BYTES_PER_CHAR: Final = 6


class _HeaderCache(HeaderRegistry):
    """`policy.default`'s header factory, without its repeated work.

    The stock registry builds a new class on every call and the parser asks for a part's
    Content-Type about five times while it reads the part; each time the value is parsed
    again. Header objects are immutable (a `str` with its parse tree and defects), so one
    parse per (name, value) gives the same answers.
    """

    _MAX_CACHED: Final = 512
    _MAX_CACHED_CHARS: Final = 2000

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}
        self._parsed: dict[tuple[str, str], Any] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: str) -> Any:
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            header = self[name](name, value)
            if len(value) > self._MAX_CACHED_CHARS:
                return header
            if len(self._parsed) >= self._MAX_CACHED:
                self._parsed.clear()
            self._parsed[key] = header
        return header


_HEADER_FACTORY: Final = _HeaderCache()
_PARSE_POLICY: Final = policy.default.clone(header_factory=_HEADER_FACTORY)
_MSG_ID = re.compile(r"<[^<>\s]+>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NEWLINES = re.compile(r"[\r\n]+")
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_BASE64_NOISE = re.compile(rb"[^A-Za-z0-9+/]")

# Charset labels seen in mail that Python does not know, or for which mail clients really
# mean a larger encoding (the WHATWG Encoding Standard decodes these the same way).
_CHARSET_ALIASES: Final[Mapping[str, str]] = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-8-i": "iso8859_8",
    "iso-8859-6-i": "iso8859_6",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "x-mac-roman": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
}
_ASCII_CODECS: Final = frozenset({"ascii"})
_LATIN_CODECS: Final = frozenset({"cp1252"})

# Defects of the email package, sorted into the flags a person can act on.
_DECODE_DEFECTS: Final = (
    email_errors.InvalidBase64PaddingDefect,
    email_errors.InvalidBase64CharactersDefect,
    email_errors.InvalidBase64LengthDefect,
    email_errors.UndecodableBytesDefect,
)
_IGNORED_DEFECTS: Final = (email_errors.ObsoleteHeaderDefect,)


class _Notes:
    """Flags and defect notes gathered while parsing one message."""

    def __init__(self) -> None:
        self.flags: set[EmailFlag] = set()
        self.defects: list[str] = []

    def add(self, flag: EmailFlag, note: str | None = None) -> None:
        self.flags.add(flag)
        if note and note not in self.defects and len(self.defects) < 50:
            self.defects.append(note)

    def add_defects(self, defects: Iterable[object], where: str) -> None:
        for defect in defects:
            if isinstance(defect, _IGNORED_DEFECTS):
                continue
            name = type(defect).__name__
            if isinstance(defect, _DECODE_DEFECTS):
                flag = EmailFlag.DECODE_ERROR
            elif isinstance(defect, email_errors.HeaderDefect):
                flag = EmailFlag.MALFORMED_HEADER
            elif isinstance(defect, email_errors.CharsetError) or "charset" in str(defect).lower():
                flag = EmailFlag.UNKNOWN_CHARSET
            else:
                flag = EmailFlag.MALFORMED_MIME
            self.add(flag, f"{name} in {where}")


# --- small decoders -----------------------------------------------------------------------


def decode_base64url(data: str | bytes) -> bytes:
    """Decode Gmail's base64url (padding optional, whitespace ignored); ValueError if invalid."""
    if isinstance(data, str):
        data = data.encode("ascii", "ignore")
    compact = re.sub(rb"\s+", b"", data).rstrip(b"=")
    return base64.b64decode(compact + b"=" * (-len(compact) % 4), altchars=b"-_", validate=True)


def _clean(value: str) -> str:
    """Return text safe to store: surrogate-escaped bytes decoded, NUL characters dropped."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        else:
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                value = raw.decode("cp1252", "replace")
    return value.replace("\x00", "")


def _codec_for(label: str | None) -> str | None:
    """Return the Python codec for a MIME charset label, or None if it is unknown."""
    name = (label or "us-ascii").strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode_bytes(data: bytes, label: str | None, notes: _Notes, where: str) -> str:
    """Decode bytes in the declared charset, falling back (and flagging) where it fails."""
    codec = _codec_for(label)
    if codec is None:
        notes.add(EmailFlag.UNKNOWN_CHARSET, f"unknown charset {label!r:.40} in {where}")
        return _guess_decode(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    except LookupError:  # a codec that exists but is not a text codec (e.g. "base64")
        notes.add(EmailFlag.UNKNOWN_CHARSET, f"unusable charset {label!r:.40} in {where}")
        return _guess_decode(data)
    if codec in _ASCII_CODECS:
        # 8-bit text labelled us-ascii (or unlabelled) is very common and almost always UTF-8.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    elif codec in _LATIN_CODECS:
        return data.decode("latin-1")
    notes.add(EmailFlag.DECODE_ERROR, f"bytes invalid in {codec} in {where}")
    return data.decode(codec if codec not in _ASCII_CODECS else "cp1252", "replace")


def _guess_decode(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8 if valid, else a detected charset, else cp1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if len(data) >= 64:
        best = detect_charset(data[:65536]).best()
        if best is not None and best.encoding:
            return data.decode(best.encoding, "replace")
    return data.decode("cp1252", "replace")


def _unfold(value: str) -> str:
    return _NEWLINES.sub(" ", _FOLD.sub("", value)).strip()


def _msg_ids(value: str | None) -> list[str]:
    """Return the msg-ids (`<id@host>`) in a header value; a bare `id@host` is accepted too."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    if found:
        return found
    bare = value.strip()
    if bare and not any(c.isspace() or c in "<>" for c in bare):
        return [f"<{bare}>"]  # brackets missing, as some old mailers write it
    return []


# --- headers --------------------------------------------------------------------------------


# Headers most mail carries in their plainest form, which the email package would return
# unchanged (and without defects): read here without building its parse tree. Anything
# else (encoded words, comments, quoting, non-ASCII, odd spacing) goes to the package.
# tests/unit/test_mime_headers.py checks these shortcuts against the package.
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM: Final = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_PLAIN_ADDRESS: Final = rf"{_DOT_ATOM}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_QTEXT: Final = r"[!#-\[\]-~]"
_PLAIN_MAILBOX = re.compile(
    rf"""(?:(?P<phrase>{_ATEXT}+(?: {_ATEXT}+)*)|"(?P<quoted>{_QTEXT}+(?: {_QTEXT}+)*)")"""
    rf" ?<(?P<angled>{_PLAIN_ADDRESS})>"
    rf"|<(?P<bracketed>{_PLAIN_ADDRESS})>"
    rf"|(?P<bare>{_PLAIN_ADDRESS})"
)
_LIST_SEPARATOR = re.compile(r" *(?:,|$) *")
_PLAIN_MSG_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
_PLAIN_TEXT = re.compile(r"[ \t!-~]*")


def _plain_addresses(raw: str) -> list[tuple[str, str]] | None:
    """Return (display name, address) pairs of a plain address list, or None if not plain."""
    if "=?" in raw:
        return None  # encoded words: decoded by the email package
    found: list[tuple[str, str]] = []
    at = len(raw) - len(raw.lstrip(" "))
    while True:
        mailbox = _PLAIN_MAILBOX.match(raw, at)
        if mailbox is None:
            return None
        separator = _LIST_SEPARATOR.match(raw, mailbox.end())
        if separator is None:
            return None
        phrase, quoted, angled, bracketed, bare = mailbox.groups()
        found.append((phrase or quoted or "", angled or bracketed or bare))
        at = separator.end()
        if at == len(raw):
            return found


def _plain_text(name: str, raw: str) -> str | None:
    """Return what the email package decodes a header to, where that is `raw` itself."""
    if "=?" in raw or not _PLAIN_TEXT.fullmatch(raw):
        return None
    kind = _HEADER_FACTORY[name]
    if issubclass(kind, UnstructuredHeader):
        return raw
    if issubclass(kind, MessageIDHeader) and _PLAIN_MSG_ID.fullmatch(raw):
        return raw
    return None


@dataclass
class _Headers:
    """A part's header fields as (name, raw value) pairs, decoded on demand."""

    items: list[tuple[str, str]]
    notes: _Notes
    where: str = "headers"
    _by_name: dict[str, list[str]] | None = None

    def raw(self, name: str) -> list[str]:
        """Return every value of that header, unfolded as the email package does."""
        if self._by_name is None:
            self._by_name = {}
            for key, value in self.items:
                self._by_name.setdefault(key.lower(), []).append(value)
        return [_LINE_BREAKS.sub("", _clean(str(v))) for v in self._by_name.get(name.lower(), ())]

    def first_raw(self, name: str) -> str | None:
        values = self.raw(name)
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        """Return a header decoded (RFC 2047, unknown charsets guessed) and unfolded."""
        raw = self.first_raw(name)
        if raw is None:
            return None
        plain = _plain_text(name, raw)
        if plain is not None:
            return _unfold(plain)
        try:
            header = _PARSE_POLICY.header_factory(name, raw)
            value = str(header)
            defects = header.defects
        except Exception as exc:  # the header parser has had crash bugs on hostile input
            self.notes.add(EmailFlag.MALFORMED_HEADER, f"{name} unreadable ({type(exc).__name__})")
            return _unfold(_decode_words(raw, self.notes, name))
        if any(isinstance(d, email_errors.CharsetError) for d in defects) or "\ufffd" in value:
            value = _decode_words(raw, self.notes, name)
        self.notes.add_defects(
            (d for d in defects if not isinstance(d, email_errors.CharsetError)), name
        )
        return _unfold(_clean(value))

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """Return (display name, address) pairs of every header of that name."""
        pairs: list[tuple[str, str]] = []
        for raw in self.raw(name):
            plain = _plain_addresses(raw)
            if plain is not None:
                pairs.extend((_unfold(display), addr.strip()) for display, addr in plain)
            else:
                pairs.extend(self._parse_addresses(name, raw))
        return pairs

    def _parse_addresses(self, name: str, raw: str) -> list[tuple[str, str]]:
        try:
            header = _PARSE_POLICY.header_factory(name, raw)
            found = [(a.display_name, a.addr_spec) for a in header.addresses]
            defects = header.defects
        except Exception as exc:  # the address parser has had crash bugs on hostile input
            self.notes.add(EmailFlag.MALFORMED_HEADER, f"{name} unreadable ({type(exc).__name__})")
            found = getaddresses([_decode_words(raw, self.notes, name)])
            defects = []
        self.notes.add_defects(
            (d for d in defects if not isinstance(d, email_errors.CharsetError)), name
        )
        if any(isinstance(d, email_errors.CharsetError) for d in defects):
            found = getaddresses([_decode_words(raw, self.notes, name)])
        return [
            (_unfold(_clean(display)), _clean(addr).strip())
            for display, addr in found
            if "@" in addr and not addr.startswith("<")
        ]

    def date(self, name: str) -> datetime | None:
        raw = self.first_raw(name)
        if raw is None or not raw.strip():
            return None
        try:
            parsed = parsedate_to_datetime(_unfold(raw))
        except (TypeError, ValueError, IndexError, OverflowError):
            self.notes.add(EmailFlag.MALFORMED_HEADER, f"{name} is not a date")
            return None
        if parsed.tzinfo is None:  # "-0000": the zone is unknown; UTC is the best guess
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


def _decode_words(raw: str, notes: _Notes, where: str) -> str:
    """Decode RFC 2047 encoded words with our charset fallbacks."""
    try:
        chunks = decode_header(raw)
    except (email_errors.HeaderParseError, ValueError, LookupError):
        return _clean(raw)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(_clean(chunk))
        else:
            out.append(_decode_bytes(chunk, charset or "utf-8", notes, where))
    return "".join(out)


# --- one tree for both sources ------------------------------------------------------------


@dataclass
class _Part:
    """A MIME part, from a stdlib message or a Gmail payload node."""

    content_type: str
    headers: list[tuple[str, str]]
    charset: str | None = None
    filename: str | None = None
    disposition: str | None = None
    children: list[_Part] = field(default_factory=list)
    # Returns (decoded content bytes, cut short?) reading at most about `limit` bytes.
    load: Callable[[int], tuple[bytes, bool]] = lambda _limit: (b"", False)
    # Decoded size in bytes, computed without keeping the content.
    measure: Callable[[], int] = lambda: 0
    # Field blocks of a report part (delivery status, feedback report, read receipt).
    field_blocks: list[list[tuple[str, str]]] | None = None
    # The header fields of an embedded message/rfc822.
    embedded_headers: list[tuple[str, str]] | None = None
    attachment_id: str | None = None
    # The email package's defects for this part, read after its payload was decoded (base64
    # errors are only found then).
    defects: Callable[[], list[object]] = lambda: []
    broken_multipart: bool = False


def _from_stdlib(msg: Message, notes: _Notes, depth: int = 0) -> _Part:
    content_type = msg.get_content_type()
    part = _Part(
        content_type=content_type,
        headers=[(k, str(v)) for k, v in msg.raw_items()],
        defects=lambda: list(msg.defects),
    )
    part.charset = _safe(lambda: msg.get_content_charset(), None)
    part.filename = _safe(lambda: _clean(msg.get_filename() or "") or None, None)
    part.disposition = _safe(lambda: msg.get_content_disposition(), None)
    payload = msg.get_payload()
    if isinstance(payload, list):
        if depth >= MAX_DEPTH:
            notes.add(EmailFlag.MALFORMED_MIME, f"MIME nested deeper than {MAX_DEPTH} levels")
            return part
        if content_type in _FIELD_TYPES:
            part.field_blocks = [
                [(k, str(v)) for k, v in block.raw_items()]
                for block in payload
                if isinstance(block, Message)
            ]
        elif content_type.startswith("message/"):
            inner = next((p for p in payload if isinstance(p, Message)), None)
            if inner is not None:
                part.embedded_headers = [(k, str(v)) for k, v in inner.raw_items()]
                part.children = [_from_stdlib(inner, notes, depth + 1)]
        else:
            part.children = [
                _from_stdlib(p, notes, depth + 1) for p in payload if isinstance(p, Message)
            ]
        return part
    if content_type.startswith("multipart/"):
        # No boundary was found: the email package left the whole body as one string.
        part.broken_multipart = True
    part.load = lambda limit: _load_stdlib(msg, limit)
    part.measure = lambda: _measure_stdlib(msg)
    return part


def _safe(read: Callable[[], Any], default: Any) -> Any:
    try:
        return read()
    except Exception:  # malformed parameters: the value is simply unknown
        return default


def _transfer_encoding(msg: Message) -> str:
    return str(msg.get("content-transfer-encoding", "")).strip().lower()


def _load_stdlib(msg: Message, limit: int) -> tuple[bytes, bool]:
    cte = _transfer_encoding(msg)
    if cte in ("base64", "quoted-printable"):
        encoded = msg.get_payload()
        if isinstance(encoded, str) and len(encoded) > limit:
            # Decode only the head of an oversized part.
            head = encoded[:limit].encode("ascii", "replace")
            return _decode_transfer(head, cte), True
    data = msg.get_payload(decode=True)
    data = data if isinstance(data, bytes) else b""
    return data[:limit], len(data) > limit


def _decode_transfer(encoded: bytes, cte: str) -> bytes:
    """Decode the head of a transfer-encoded payload that was cut short."""
    if cte == "base64":
        compact = _BASE64_NOISE.sub(b"", encoded)
        compact = compact[: len(compact) - len(compact) % 4]
        try:
            return binascii.a2b_base64(compact)
        except binascii.Error:
            return b""
    return quopri.decodestring(encoded[: encoded.rfind(b"\n") + 1 or len(encoded)])


def _measure_stdlib(msg: Message) -> int:
    encoded = msg.get_payload()
    if _transfer_encoding(msg) == "base64" and isinstance(encoded, str):
        # Counted from the encoded text, so a large attachment is never decoded.
        # Padding is not counted in `compact`, so this floor is the exact decoded size.
        compact = _BASE64_NOISE.sub(b"", encoded.encode("ascii", "replace"))
        return len(compact) * 3 // 4
    data = msg.get_payload(decode=True)
    return len(data) if isinstance(data, bytes) else 0


def _from_gmail(node: Mapping[str, Any], notes: _Notes, depth: int = 0) -> _Part:
    headers = [
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in node.get("headers") or []
        if isinstance(h, Mapping)
    ]
    content_type = str(node.get("mimeType") or "text/plain").strip().lower()
    header_view = _Headers(headers, notes, "part headers")
    params = _content_params(header_view.first_raw("Content-Type"))
    disposition_raw = header_view.first_raw("Content-Disposition") or ""
    disposition = disposition_raw.split(";", 1)[0].strip().lower() or None
    raw_body = node.get("body")
    body: Mapping[str, Any] = raw_body if isinstance(raw_body, Mapping) else {}
    data = body.get("data")
    size = body.get("size")
    part = _Part(
        content_type=content_type,
        headers=headers,
        charset=params.get("charset"),
        filename=_clean(str(node.get("filename") or "")) or params.get("name"),
        disposition=disposition,
        attachment_id=body.get("attachmentId") or None,
    )
    decoded: list[bytes] = []

    def load(limit: int) -> tuple[bytes, bool]:
        if not decoded:
            try:
                decoded.append(decode_base64url(data) if data else b"")
            except ValueError:
                notes.add(EmailFlag.DECODE_ERROR, f"{content_type} body is not base64url")
                decoded.append(b"")
        return decoded[0][:limit], len(decoded[0]) > limit

    part.load = load
    part.measure = lambda: int(size) if isinstance(size, int) else len(load(1 << 62)[0])
    children = [c for c in node.get("parts") or [] if isinstance(c, Mapping)]
    if depth >= MAX_DEPTH and children:
        notes.add(EmailFlag.MALFORMED_MIME, f"MIME nested deeper than {MAX_DEPTH} levels")
        return part
    if content_type in _MESSAGE_TYPES:
        if children:
            inner = children[0]
            part.embedded_headers = [
                (str(h.get("name", "")), str(h.get("value", "")))
                for h in inner.get("headers") or []
                if isinstance(h, Mapping)
            ]
            part.children = [_from_gmail(inner, notes, depth + 1)]
        elif data:
            raw, _cut = load(1 << 62)
            inner_msg = _safe(lambda: BytesParser(policy=_PARSE_POLICY).parsebytes(raw), None)
            if inner_msg is not None:
                part.embedded_headers = [(k, str(v)) for k, v in inner_msg.raw_items()]
    elif content_type in _FIELD_TYPES and data:
        raw, _cut = load(1 << 62)
        part.field_blocks = _split_fields(raw)
    else:
        part.children = [_from_gmail(c, notes, depth + 1) for c in children]
    return part


_DSN_TYPES: Final = frozenset({"message/delivery-status", "message/global-delivery-status"})
_REPORT_TYPES: Final = frozenset(
    {
        "message/feedback-report",
        "message/disposition-notification",
        "message/global-disposition-notification",
    }
)
_FIELD_TYPES: Final = _DSN_TYPES | _REPORT_TYPES
_MESSAGE_TYPES: Final = frozenset({"message/rfc822", "message/global"})


def _content_params(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    try:
        header = _PARSE_POLICY.header_factory("Content-Type", value)
        return {k.lower(): _clean(str(v)) for k, v in header.params.items()}
    except Exception:  # malformed parameters: treat as none given
        return {}


def _split_fields(raw: bytes) -> list[list[tuple[str, str]]]:
    """Split the text of a report part (delivery status, ...) into its field blocks."""
    text = raw.decode("utf-8", "replace")
    parser = HeaderParser(policy=_PARSE_POLICY)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text)
    return [[(k, str(v)) for k, v in parser.parsestr(b).raw_items()] for b in blocks if b.strip()]


# --- walking the tree ----------------------------------------------------------------------


@dataclass
class _Collected:
    # ("plain", text) or ("html", html, has a plain-text twin)
    segments: list[tuple[str, str, bool]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    embedded: list[EmbeddedMessage] = field(default_factory=list)
    dsn_blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    report_blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    chars: int = 0


class _Walker:
    def __init__(self, notes: _Notes, max_body_chars: int) -> None:
        self.notes = notes
        self.max_chars = max_body_chars
        self.out = _Collected()

    def walk(self, part: _Part, *, twin: bool = False, where: str = "message") -> None:
        try:
            self._walk(part, twin=twin, where=where)
        except Exception as exc:  # one bad part must not lose the rest of the message
            log.warning(
                "mime part unreadable",
                extra={"content_type": part.content_type, "error": type(exc).__name__},
            )
            self.notes.add(
                EmailFlag.MALFORMED_MIME, f"{part.content_type} part unreadable ({exc!s:.80})"
            )

    def _walk(self, part: _Part, *, twin: bool, where: str) -> None:
        try:
            self._read(part, twin=twin, where=where)
        finally:
            self.notes.add_defects(part.defects(), where)

    def _read(self, part: _Part, *, twin: bool, where: str) -> None:
        ctype = part.content_type
        if ctype in _FIELD_TYPES:
            blocks = part.field_blocks if part.field_blocks is not None else self._fields(part)
            if ctype in _DSN_TYPES:
                self.out.dsn_blocks.extend(blocks)
            else:
                self._report(ctype, blocks)
            return
        if ctype in _MESSAGE_TYPES:
            self._embedded(part)
            return
        if ctype == "text/rfc822-headers":
            data, _cut = part.load(256 * 1024)
            text = _decode_bytes(data, part.charset, self.notes, ctype)
            items = list(HeaderParser(policy=_PARSE_POLICY).parsestr(text).raw_items())
            self.out.embedded.append(self._embedded_from(ctype, items))
            return
        if part.children:
            if ctype == "multipart/alternative":
                twin = twin or any(_has_plain(c) for c in part.children)
            for index, child in enumerate(part.children, start=1):
                self.walk(child, twin=twin, where=f"{where}.{index} ({child.content_type})")
            return
        if part.broken_multipart:
            self.notes.add(EmailFlag.MALFORMED_MIME, f"{ctype} without readable parts")
            self._text(part, "plain", twin=False)
            return
        if _is_attachment(part):
            self.out.attachments.append(
                Attachment(
                    filename=part.filename,
                    content_type=ctype,
                    size=max(part.measure(), 0),
                    gmail_attachment_id=part.attachment_id,
                )
            )
            return
        self._text(part, "html" if ctype == "text/html" else "plain", twin=twin)

    def _text(self, part: _Part, kind: str, *, twin: bool) -> None:
        room = self.max_chars - self.out.chars
        if room <= 0:
            self.notes.add(EmailFlag.TRUNCATED, "body longer than the limit")
            return
        data, cut = part.load(room * _ENCODED_BYTES_PER_CHAR)
        text = _decode_bytes(data, part.charset, self.notes, part.content_type)
        if cut or len(text) > room:
            self.notes.add(EmailFlag.TRUNCATED, "body longer than the limit")
            text = text[:room]
        text = _clean(text)
        if kind == "plain" or not twin:
            self.out.chars += len(text)
        self.out.segments.append((kind, text, twin))

    def _fields(self, part: _Part) -> list[list[tuple[str, str]]]:
        data, _cut = part.load(256 * 1024)
        return _split_fields(data)

    def _report(self, ctype: str, blocks: list[list[tuple[str, str]]]) -> None:
        self.out.report_blocks.extend(blocks)
        # A read receipt names the message it acknowledges: keep it for linking.
        for block in blocks:
            for name, value in block:
                if name.strip().lower() == "original-message-id":
                    ids = _msg_ids(_unfold(value))
                    if ids:
                        self.out.embedded.append(EmbeddedMessage(source=ctype, message_id=ids[0]))

    def _embedded(self, part: _Part) -> None:
        self.notes.add(EmailFlag.NESTED_MESSAGE)
        if part.embedded_headers is None:
            data, _cut = part.load(512 * 1024)
            inner = _safe(lambda: BytesParser(policy=_PARSE_POLICY).parsebytes(data), None)
            part.embedded_headers = [(k, str(v)) for k, v in inner.raw_items()] if inner else []
        self.out.embedded.append(self._embedded_from(part.content_type, part.embedded_headers))

    def _embedded_from(self, source: str, items: list[tuple[str, str]]) -> EmbeddedMessage:
        # Oddities in a copy of another message are not this message's defects.
        headers = _Headers(items, _Notes(), f"{source} headers")
        ids = _msg_ids(headers.first_raw("Message-ID"))
        senders = headers.addresses("From")
        return EmbeddedMessage(
            source=source,
            message_id=ids[0] if ids else None,
            from_email=senders[0][1] if senders else None,
            to=tuple(addr for _name, addr in headers.addresses("To")),
            subject=headers.text("Subject"),
            date=headers.date("Date"),
        )


def _has_plain(part: _Part) -> bool:
    if part.content_type == "text/plain" and not _is_attachment(part):
        return True
    return (
        any(_has_plain(c) for c in part.children)
        if part.content_type.startswith("multi")
        else False
    )


def _is_attachment(part: _Part) -> bool:
    if part.disposition == "attachment":
        return True
    if part.content_type not in ("text/plain", "text/html"):
        return True
    return bool(part.filename) and part.disposition != "inline"


# --- inline copies of the original message in bounce text ----------------------------------

_INLINE_MESSAGE_ID = re.compile(r"^([ \t>]*)Message-I[Dd][ \t]*:", re.IGNORECASE | re.MULTILINE)
_HEADER_LINE = re.compile(r"[A-Za-z][A-Za-z0-9-]*[ \t]*:")


def _inline_original_headers(text: str) -> list[tuple[str, str]] | None:
    """Find a copied header block (with a Message-ID) in a bounce's plain text."""
    match = _INLINE_MESSAGE_ID.search(text)
    if match is None:
        return None
    prefix = match.group(1)
    lines = text.splitlines()
    at = text.count("\n", 0, match.start())

    def is_header(line: str) -> bool:
        return line.startswith(prefix) and bool(_HEADER_LINE.match(line[len(prefix) :]))

    def is_continuation(line: str) -> bool:
        rest = line[len(prefix) :] if line.startswith(prefix) else ""
        return bool(rest) and rest[0] in " \t" and bool(rest.strip())

    start = at
    while start > 0 and (is_header(lines[start - 1]) or is_continuation(lines[start - 1])):
        start -= 1
    end = at + 1
    while end < len(lines) and (is_header(lines[end]) or is_continuation(lines[end])):
        end += 1
    block = "\n".join(line[len(prefix) :] for line in lines[start:end]) + "\n\n"
    return [(k, str(v)) for k, v in HeaderParser(policy=_PARSE_POLICY).parsestr(block).raw_items()]


# --- building the result -------------------------------------------------------------------


def _dsn(
    blocks: Sequence[list[tuple[str, str]]],
) -> tuple[dict[str, str], list[DeliveryStatusRecipient]]:
    fields: dict[str, str] = {}
    recipients: list[DeliveryStatusRecipient] = []
    wanted = {name.lower(): name for name in DSN_FIELDS}
    for block in blocks:
        values: dict[str, str] = {}
        for name, value in block:
            key = wanted.get(name.strip().lower())
            if key and key not in values:
                values[key] = _clean(_unfold(value))
        for key, value in values.items():
            fields.setdefault(key, value)
        if "Final-Recipient" in values or "Status" in values or "Action" in values:
            recipients.append(
                DeliveryStatusRecipient(
                    final_recipient=values.get("Final-Recipient"),
                    original_recipient=values.get("Original-Recipient"),
                    action=values.get("Action"),
                    status=_status_code(values.get("Status")),
                    diagnostic_code=values.get("Diagnostic-Code"),
                    remote_mta=values.get("Remote-MTA"),
                )
            )
    return fields, recipients


_STATUS_CODE = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")


def _status_code(value: str | None) -> str | None:
    """Return the bare DSN code of a Status field ("5.1.1 (user unknown)" -> "5.1.1")."""
    if value is None:
        return None
    found = _STATUS_CODE.search(value)
    return found.group() if found else value


def _report_fields(blocks: Sequence[list[tuple[str, str]]]) -> dict[str, str]:
    wanted = {name.lower(): name for name in REPORT_FIELDS}
    fields: dict[str, str] = {}
    for block in blocks:
        for name, value in block:
            key = wanted.get(name.strip().lower())
            if key:
                fields.setdefault(key, _clean(_unfold(value)))
    return fields


def _build(
    root: _Part, notes: _Notes, *, size: int, max_body_chars: int, **gmail: Any
) -> ParsedEmail:
    if not root.headers:
        notes.add(EmailFlag.MALFORMED_MIME, "message has no header fields")
    walker = _Walker(notes, max_body_chars)
    walker.walk(root)
    found = walker.out
    headers = _Headers(root.headers, notes)

    plains = [text for kind, text, _twin in found.segments if kind == "plain"]
    htmls = [text for kind, text, _twin in found.segments if kind == "html"]
    texts: list[str] = []
    hidden_chars = 0
    hidden_instructions = False
    for kind, value, twin in found.segments:
        if kind == "plain":
            texts.append(value)
            continue
        # Every HTML part is read for hidden text, even one with a plain twin: the reply
        # text may come from its markup, and hidden text is worth a flag either way.
        visible, hidden = visible_text(value)
        hidden_chars += hidden.characters
        hidden_instructions = hidden_instructions or hidden.reads_like_instructions
        if not twin:
            texts.append(visible)
    if hidden_chars:
        notes.add(EmailFlag.HIDDEN_TEXT, f"html: {hidden_chars} characters of hidden text removed")
    if hidden_instructions:
        notes.add(
            EmailFlag.HIDDEN_INSTRUCTIONS, "html: the hidden text read like instructions to a model"
        )
    text = "\n\n".join(t.strip("\r\n") for t in texts if t.strip())
    if len(text) > max_body_chars:
        notes.add(EmailFlag.TRUNCATED, "body longer than the limit")
        text = text[:max_body_chars]
    html = "\n".join(htmls) or None
    if html is not None and len(html) > max_body_chars:
        notes.add(EmailFlag.TRUNCATED, "html body longer than the limit")
        html = html[:max_body_chars]
    if htmls and not plains:
        notes.add(EmailFlag.HTML_ONLY)
    if found.attachments:
        notes.add(EmailFlag.HAS_ATTACHMENTS)

    embedded = list(found.embedded)
    if not any(m.message_id for m in embedded) and text:
        inline = _inline_original_headers(text)
        if inline:
            embedded.append(walker._embedded_from("text/plain", inline))

    kept: dict[str, str] = {}
    for name in KEPT_HEADERS:
        kept_value = headers.text(name)
        if kept_value is not None:
            kept[name] = kept_value
    dsn_fields, recipients = _dsn(found.dsn_blocks)
    for name, value in dsn_fields.items():
        kept.setdefault(name, value)
    for name, value in _report_fields(found.report_blocks).items():
        kept.setdefault(name, value)

    senders = headers.addresses("From")
    reply_to = headers.addresses("Reply-To")
    references: list[str] = []
    for value in headers.raw("References"):
        references.extend(i for i in _msg_ids(value) if i not in references)
    message_ids = _msg_ids(headers.first_raw("Message-ID"))
    in_reply_to = _msg_ids(headers.first_raw("In-Reply-To"))

    return ParsedEmail(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(references),
        subject=headers.text("Subject") or "",
        from_email=senders[0][1] if senders else None,
        from_name=(senders[0][0] or None) if senders else None,
        to=tuple(addr for _n, addr in headers.addresses("To")),
        cc=tuple(addr for _n, addr in headers.addresses("Cc")),
        reply_to=reply_to[0][1] if reply_to else None,
        date=headers.date("Date"),
        text=text,
        html=html,
        reply_text=_reply_text(text, html, notes),
        attachments=tuple(found.attachments),
        headers=kept,
        embedded_messages=tuple(embedded),
        delivery_status=tuple(recipients),
        flags=frozenset(notes.flags),
        defects=tuple(notes.defects),
        size=max(size, 0),
        **gmail,
    )


def _reply_text(text: str, html: str | None, notes: _Notes) -> str:
    try:
        return strip_reply(text, html=html)
    except Exception as exc:  # the stripper is heuristics; the full text is the safe answer
        log.warning("reply stripping failed", extra={"error": type(exc).__name__})
        notes.defects.append(f"reply stripping failed ({type(exc).__name__})")
        return text.strip()


def _fallback(
    raw: bytes, notes: _Notes, *, size: int, max_body_chars: int, **gmail: Any
) -> ParsedEmail:
    """The result when even the top level could not be read: the raw bytes as text."""
    text = _clean(raw[: max_body_chars * 4].decode("utf-8", "replace"))[:max_body_chars]
    if len(raw) > max_body_chars:
        notes.add(EmailFlag.TRUNCATED, "body longer than the limit")
    return ParsedEmail(
        text=text,
        reply_text=text.strip(),
        flags=frozenset(notes.flags),
        defects=tuple(notes.defects),
        size=max(size, 0),
        **gmail,
    )


# --- public entry points --------------------------------------------------------------------


def parse_raw(raw: bytes, *, max_body_chars: int = DEFAULT_MAX_BODY_CHARS) -> ParsedEmail:
    """Parse an RFC 5322 message; never raises, flags what it could not read."""
    return _parse_raw(raw, max_body_chars=max_body_chars, gmail={})


def _parse_raw(raw: bytes, *, max_body_chars: int, gmail: dict[str, Any]) -> ParsedEmail:
    notes = _Notes()
    try:
        message = BytesParser(policy=_PARSE_POLICY).parsebytes(raw)
        root = _from_stdlib(message, notes)
        return _build(root, notes, size=len(raw), max_body_chars=max_body_chars, **gmail)
    except Exception as exc:  # never lose an inbound message: keep its bytes as text, flagged
        log.warning("message unreadable as MIME", extra={"error": type(exc).__name__, **gmail})
        notes.add(EmailFlag.MALFORMED_MIME, f"message unreadable as MIME ({type(exc).__name__})")
        return _fallback(raw, notes, size=len(raw), max_body_chars=max_body_chars, **gmail)


def parse_gmail_message(
    resource: Mapping[str, Any], *, max_body_chars: int = DEFAULT_MAX_BODY_CHARS
) -> ParsedEmail:
    """Parse a `users.messages.get` resource in format "raw" or "full" (or "metadata")."""
    gmail = _gmail_fields(resource)
    raw_data = resource.get("raw")
    if raw_data is not None:
        try:
            raw = decode_base64url(str(raw_data))
        except ValueError:
            notes = _Notes()
            notes.add(EmailFlag.DECODE_ERROR, "raw is not base64url")
            notes.add(EmailFlag.MALFORMED_MIME)
            return _fallback(b"", notes, size=0, max_body_chars=max_body_chars, **gmail)
        return _parse_raw(raw, max_body_chars=max_body_chars, gmail=gmail)
    notes = _Notes()
    payload = resource.get("payload")
    size = resource.get("sizeEstimate")
    size = size if isinstance(size, int) else 0
    if not isinstance(payload, Mapping):
        notes.add(EmailFlag.MALFORMED_MIME, "resource has neither raw nor payload")
        return _fallback(b"", notes, size=size, max_body_chars=max_body_chars, **gmail)
    try:
        root = _from_gmail(payload, notes)
        return _build(root, notes, size=size, max_body_chars=max_body_chars, **gmail)
    except Exception as exc:  # never lose an inbound message: keep what Gmail said, flagged
        log.warning("gmail payload unreadable", extra={"error": type(exc).__name__, **gmail})
        notes.add(EmailFlag.MALFORMED_MIME, f"payload unreadable ({type(exc).__name__})")
        return _fallback(b"", notes, size=size, max_body_chars=max_body_chars, **gmail)


def _gmail_fields(resource: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if isinstance(resource.get("id"), str):
        fields["gmail_id"] = resource["id"]
    if isinstance(resource.get("threadId"), str):
        fields["gmail_thread_id"] = resource["threadId"]
    labels = resource.get("labelIds")
    if isinstance(labels, list):
        fields["label_ids"] = tuple(str(label) for label in labels)
    internal = resource.get("internalDate")
    try:
        if internal is not None:
            fields["internal_date"] = datetime.fromtimestamp(int(internal) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    return fields
