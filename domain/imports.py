"""CSV import of CRM exports: header mapping and row validation, with no I/O.

A file is read as rows of text cells. The header is mapped to the fields of one
kind (clients, contacts, orders) whatever the CRM called its columns; each data
row is then turned into a typed row or a `RowError` that says, in words, what is
wrong and where: `row` is the row number a spreadsheet shows (the header is row 1),
`line` the physical line of the file the row starts on (they differ after a quoted
cell that spans lines). Storage upserts the typed rows; see `storage/importer.py`.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from functools import cache, lru_cache
from typing import Final, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from domain.contacts import (
    US_STATES,
    EmailStatus,
    OrderStatus,
    RoleCategory,
    normalize_domain,
    normalize_email,
)
from domain.email_preferences import VALID_TYPES, EmailType, parse_preference_cell
from domain.errors import InvalidInput


class ImportKind(StrEnum):
    """What a CSV file holds."""

    CLIENTS = "clients"
    CONTACTS = "contacts"
    ORDERS = "orders"


class ImportFileError(InvalidInput):
    """The file as a whole cannot be imported (no header, a required column missing)."""


@dataclass(frozen=True, slots=True)
class Column:
    """A field of an import kind and the header names it is recognised by."""

    field: str
    required: bool
    aliases: tuple[str, ...]
    """Other header names, best first; matching ignores case, spaces and punctuation."""
    max_length: int | None = None


def _col(name: str, *aliases: str, required: bool = False, max_length: int | None = None) -> Column:
    return Column(name, required, aliases, max_length)


COLUMNS: Final[dict[ImportKind, tuple[Column, ...]]] = {
    ImportKind.CLIENTS: (
        _col(
            "name",
            "client name",
            "company name",
            "company",
            "account name",
            "client",
            "lender name",
            "lender",
            "organization name",
            "organization",
            max_length=300,
        ),
        _col(
            "domain",
            "client domain",
            "company domain",
            "company domain name",
            "website",
            "company website",
            "website url",
            "web site",
            "url",
            required=True,
            max_length=253,
        ),
        _col("client_type", "type", "company type", "account type", max_length=32),
        _col("tags", "tag", "labels"),
    ),
    ImportKind.CONTACTS: (
        _col(
            "email",
            "email address",
            "e-mail",
            "e-mail address",
            "work email",
            "primary email",
            required=True,
        ),
        _col("first_name", "firstname", "given name", "first", max_length=100),
        _col("last_name", "lastname", "surname", "family name", "last", max_length=100),
        _col("title", "job title", "position", max_length=200),
        _col(
            "phone",
            "phone number",
            "work phone",
            "business phone",
            "office phone",
            "direct phone",
            "mobile phone",
            "mobile phone number",
            "mobile",
            "cell phone",
            max_length=40,
        ),
        _col("role_code", "role", max_length=32),
        _col("role_category", "role type"),
        _col("state", "state/region"),
        _col("tags", "tag", "labels"),
        _col("lead_score", "score", "hubspot score"),
        _col("timezone", "time zone", "tz"),
        _col(
            "client_domain",
            "company domain",
            "company domain name",
            "lender domain",
            "domain",
            "website",
            "company website",
            "website url",
        ),
        _col(
            "opted_out",
            "opted out at",
            "opt out",
            "opt-out",
            "unsubscribed",
            "email opt out",
            "do not email",
        ),
        _col(
            "email_status",
        ),
        _col("email_preferences", "email preference", "preferences", "subscriptions"),
    ),
    ImportKind.ORDERS: (
        _col(
            "order_number",
            "order #",
            "order no",
            "order id",
            "order",
            "file number",
            "file #",
            required=True,
            max_length=64,
        ),
        _col(
            "client_domain",
            "company domain",
            "lender domain",
            "domain",
            "website",
            "client website",
            required=True,
        ),
        _col(
            "contact_email",
            "ordered by email",
            "loan officer email",
            "requester email",
            "email",
            "email address",
        ),
        _col(
            "property_address",
            "subject property address",
            "address",
            "street address",
            "street",
            "address line",
            "address 1",
            "property street",
            max_length=300,
        ),
        _col("city", "property city", max_length=100),
        _col("state", "property state"),
        _col(
            "postal_code",
            "zip",
            "zip code",
            "zipcode",
            "postcode",
            "property zip",
            "property zip code",
        ),
        _col("status", "order status"),
        _col(
            "ordered_date",
            "order date",
            "ordered",
            "ordered at",
            "date ordered",
            required=True,
        ),
        _col("due_date", "due", "due at", "date due"),
        _col("completed_date", "completion date", "completed", "completed at", "date completed"),
        _col("fee", "appraisal fee", "order fee", "amount"),
    ),
}

NATURAL_KEYS: Final[dict[ImportKind, str]] = {
    ImportKind.CLIENTS: "domain",
    ImportKind.CONTACTS: "email",
    ImportKind.ORDERS: "order_number",
}


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV
# injection): cells written back for people are prefixed with a single quote, which
# spreadsheets show as text, and which the import takes off again.
FORMULA_STARTS: Final = frozenset("=+-@\t\r")


def neutralise_formula(cell: str) -> str:
    """Return a cell a spreadsheet will show as text, never run as a formula."""
    return "'" + cell if cell[:1] in FORMULA_STARTS else cell


def header_key(label: str) -> str:
    """Return the form header names are compared in: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", label.lower().replace("#", " number "))


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One record of the file: its spreadsheet row number, first line and cells."""

    row: int
    line: int
    cells: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: where it is, why, and its cells as they were in the file."""

    row: int
    line: int
    reason: str
    cells: tuple[str, ...] = ()


class CsvRows:
    """Reads a CSV text stream: the header first, then every record as a SourceRow.

    The stream must be opened with `newline=""` so that quoted cells keep their line
    breaks. A record the csv module cannot parse (a quote in the middle of a quoted
    cell, a quoted cell never closed) comes out as a RowError and reading goes on.
    Blank records (no cells, or only empty ones) are skipped but still counted, so
    row numbers stay those a spreadsheet shows.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._reader = csv.reader(lines, strict=True)
        self._row = 0
        try:
            first = next(self._reader)
        except StopIteration:
            raise ImportFileError("the file is empty: expected a header row") from None
        except csv.Error as exc:
            raise ImportFileError(f"the header row is not valid CSV: {exc}") from None
        self._row = 1
        self.header: tuple[str, ...] = tuple(cell.strip() for cell in first)
        if not any(self.header):
            raise ImportFileError("the first row is empty: expected a header row")

    def __iter__(self) -> Iterator[SourceRow | RowError]:
        reader = self._reader
        while True:
            line = reader.line_num + 1
            self._row += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RowError(self._row, line, f"not valid CSV: {_csv_reason(exc)}")
                continue
            if not any(cells):
                continue
            yield SourceRow(self._row, line, tuple(cells))


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if text == "unexpected end of data":
        return "a quoted cell is never closed (it runs to the end of the file)"
    return text


def find_invalid_utf8(chunks: Iterable[bytes]) -> tuple[int, int] | None:
    """Return the byte offset and line of the first byte that is not UTF-8, if any."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    newlines = 0
    for chunk in chunks:
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            # The decoder may hold back the start of a split character from the previous
            # chunk; `exc.start` counts from the bytes it was given, held-back ones first.
            held = len(exc.object) - len(chunk)
            at = offset - held + exc.start
            before = chunk[: max(exc.start - held, 0)]
            return at, newlines + before.count(b"\n") + 1
        offset += len(chunk)
        newlines += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        held = len(exc.object)
        return offset - held + exc.start, newlines + 1
    return None


# --- header ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderMap:
    """Which column of the file feeds which field, and which columns are ignored."""

    kind: ImportKind
    columns: dict[str, int]
    ignored: tuple[str, ...]
    header: tuple[str, ...]


def map_header(kind: ImportKind, header: Sequence[str]) -> HeaderMap:
    """Map a header row to the fields of `kind`; raise ImportFileError if one is missing.

    Matching ignores case, spaces, underscores and punctuation ("Email Address",
    "email_address" and "E-mail address" are one name). When two columns name the same
    field, the better name (the field's own, then its aliases in order) wins and the
    other is listed as ignored.
    """
    other = _better_kind(kind, header)
    if other is not None:
        raise ImportFileError(_wrong_kind_message(kind, other, header))
    specs = COLUMNS[kind]
    rank = _ranks(kind)
    chosen: dict[str, tuple[int, int]] = {}
    ignored: list[str] = []
    for index, label in enumerate(header):
        match = rank.get(header_key(label))
        if match is None:
            ignored.append(label.strip() or f"(column {index + 1} has no name)")
            continue
        name, position = match
        current = chosen.get(name)
        if current is None or position < current[1]:
            if current is not None:
                ignored.append(f"{header[current[0]].strip()} (using {label.strip()} for {name})")
            chosen[name] = (index, position)
        else:
            ignored.append(f"{label.strip()} (using {header[current[0]].strip()} for {name})")
    missing = [spec for spec in specs if spec.required and spec.field not in chosen]
    if missing:
        raise ImportFileError(_missing_columns_message(kind, missing, header))
    return HeaderMap(
        kind=kind,
        columns={name: index for name, (index, _) in chosen.items()},
        ignored=tuple(ignored),
        header=tuple(header),
    )


def _ranks(kind: ImportKind) -> dict[str, tuple[str, int]]:
    """Header key -> (field, rank of the name: 0 for the field's own, then its aliases)."""
    rank: dict[str, tuple[str, int]] = {}
    for spec in COLUMNS[kind]:
        for position, name in enumerate((spec.field, *spec.aliases)):
            rank.setdefault(header_key(name), (spec.field, position))
    return rank


def recognised_fields(kind: ImportKind, header: Sequence[str]) -> dict[str, str]:
    """Return the fields of `kind` the header names, each with the first label naming it."""
    rank = _ranks(kind)
    found: dict[str, str] = {}
    for label in header:
        match = rank.get(header_key(label))
        if match is not None:
            found.setdefault(match[0], label.strip())
    return found


def likely_kind(header: Sequence[str]) -> ImportKind | None:
    """Return the kind whose columns the header names most, if one does and it is complete.

    A kind is complete when the header has every column it requires. A tie names none.
    """
    scores = {kind: recognised_fields(kind, header) for kind in ImportKind}
    best = max(len(fields) for fields in scores.values())
    leaders = [kind for kind, fields in scores.items() if len(fields) == best]
    if best == 0 or len(leaders) != 1:
        return None
    kind = leaders[0]
    required = {spec.field for spec in COLUMNS[kind] if spec.required}
    return kind if required <= scores[kind].keys() else None


def _better_kind(kind: ImportKind, header: Sequence[str]) -> ImportKind | None:
    """Another kind the header fits better than `kind` (contacts.csv imported as clients:
    its client_domain and tags columns also name a client's domain and tags)."""
    other = likely_kind(header)
    if other is None or other == kind:
        return None
    return other


def _wrong_kind_message(kind: ImportKind, other: ImportKind, header: Sequence[str]) -> str:
    ours = _ranks(kind)
    theirs = list(recognised_fields(other, header).values())
    telling = [label for label in theirs if header_key(label) not in ours] or theirs
    shown = ", ".join(telling[:4]) + (", …" if len(telling) > 4 else "")
    return (
        f"this looks like a file of {other.value}, not {kind.value} (its header has {shown}); "
        f"nothing was imported: run `salesbot import {other.value}` with it"
    )


def _missing_columns_message(
    kind: ImportKind, missing: Sequence[Column], header: Sequence[str]
) -> str:
    parts = []
    for spec in missing:
        also = ", ".join(repr(a) for a in spec.aliases[:4])
        parts.append(f"'{spec.field}'" + (f" (or {also})" if also else ""))
    noun = "column" if len(missing) == 1 else "columns"
    message = f"a {kind.value} file needs the {noun} {' and '.join(parts)}"
    found = [label for label in header if label.strip()]
    message += "; the header has: " + (", ".join(found) if found else "no names")
    if len(found) == 1 and (";" in found[0] or "\t" in found[0]):
        message += " (the file looks separated by ';' or tabs: save it comma-separated)"
    return message


# --- typed rows -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientRow:
    """A client (lender or AMC), keyed by its domain. None means 'not given'."""

    domain: str
    name: str | None
    client_type: str | None
    tags: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A contact, keyed by email. None means 'not given': the stored value stays."""

    email: str
    first_name: str | None
    last_name: str | None
    title: str | None
    phone: str | None
    role_code: str | None
    role_category: RoleCategory | None
    state: str | None
    tags: tuple[str, ...] | None
    lead_score: int | None
    timezone: str | None
    client_domain: str | None
    opted_out_at: datetime | None
    email_status: EmailStatus | None
    # The types of email the row turns off (domain/email_preferences.py); `on` never turns
    # back on a type the contact turned off, as `opted_out` never opts back in.
    turned_off: frozenset[EmailType] = frozenset()


@dataclass(frozen=True, slots=True)
class PropertyAddress:
    """The subject property of an order."""

    line: str
    city: str | None
    state: str | None
    postal_code: str | None

    @property
    def full(self) -> str:
        """The address on one line: '123 Main St, Austin, TX 78701'."""
        return join_address(self.line, self.city, self.state, self.postal_code)

    @property
    def key(self) -> str:
        """The natural key of a property: lower case, punctuation and extra spaces dropped."""
        return address_key(self.full)


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An appraisal order, keyed by order number. None means 'not given'."""

    order_number: str
    client_domain: str
    contact_email: str | None
    property: PropertyAddress | None
    property_address: str | None
    status: OrderStatus | None
    ordered_at: datetime
    due_at: datetime | None
    completed_at: datetime | None
    fee: Decimal | None


ParsedRow = ClientRow | ContactRow | OrderRow


def join_address(line: str | None, city: str | None, state: str | None, postal: str | None) -> str:
    """Join address parts as they are written on an envelope, skipping the missing ones."""
    tail = " ".join(p for p in (state, postal) if p)
    return ", ".join(p for p in (line, city, tail) if p)


def address_key(full: str) -> str:
    """Return the natural key of an address: lower case, punctuation and extra spaces dropped."""
    return " ".join(re.sub(r"[^\w\s]", " ", full.lower()).split())


def natural_key(row: ParsedRow) -> str:
    """Return the value a row is upserted by."""
    if isinstance(row, ClientRow):
        return row.domain
    if isinstance(row, ContactRow):
        return row.email
    return row.order_number


# --- parsing --------------------------------------------------------------------------

US_STATE_NAMES: Final[dict[str, str]] = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
    "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND",
    "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN",
    "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA",
    "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY", "puerto rico": "PR",
    "guam": "GU", "u.s. virgin islands": "VI", "virgin islands": "VI",
    "american samoa": "AS", "northern mariana islands": "MP",
}  # fmt: skip

_TRUE: Final = frozenset({"true", "yes", "y", "1", "t"})
_FALSE: Final = frozenset({"false", "no", "n", "0", "f"})
_ORDER_STATUS_SYNONYMS: Final[dict[str, OrderStatus]] = {
    "canceled": OrderStatus.CANCELLED,
    "complete": OrderStatus.COMPLETED,
    "hold": OrderStatus.ON_HOLD,
}
_US_DATE_FORMATS: Final = ("%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p")
_DATE_HINT: Final = "use YYYY-MM-DD, MM/DD/YYYY or an ISO date-time"
_ZIP: Final = re.compile(r"\d{5}(?:-?\d{4})?")
_SEPARATORS: Final = re.compile(r"[\s_\-/]+")
_TAG_SEPARATORS: Final = re.compile(r"[;,]")
_MAX_FEE: Final = Decimal("99999999.99")
_CENT: Final = Decimal("0.01")
_E = TypeVar("_E", bound=StrEnum)
MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2100


class _Cells:
    """The cells of one row by field name, collecting every problem found in them."""

    __slots__ = ("_values", "problems")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        """Return the trimmed cell of a field, or None if it is empty or not in the file."""
        return self._values.get(name) or None

    def reject(self, reason: str) -> None:
        """Record a problem with the row."""
        self.problems.append(reason)


class RowParser:
    """Turns the rows of one file into typed rows or RowErrors.

    It remembers the natural key of every row it accepted, so that a later row with
    the same key is rejected as a duplicate of the earlier one.
    """

    def __init__(self, header: HeaderMap, *, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("RowParser needs a timezone-aware `now`")
        self.header = header
        self._now = now
        self._width = len(header.header)
        self._columns = tuple(header.columns.items())
        self._limits = tuple(
            (spec.field, spec.max_length)
            for spec in COLUMNS[header.kind]
            if spec.max_length is not None and spec.field in header.columns
        )
        self._seen: dict[str, int] = {}
        self._domains: dict[str, str | None] = {}
        self._emails = EmailChecker()
        self._parse: Callable[[_Cells], ParsedRow | None] = {
            ImportKind.CLIENTS: self._client,
            ImportKind.CONTACTS: self._contact,
            ImportKind.ORDERS: self._order,
        }[header.kind]

    def parse(self, source: SourceRow) -> ParsedRow | RowError:
        """Return the typed row, or a RowError listing every problem of the row."""
        cells = source.cells
        if len(cells) > self._width and any(c.strip() for c in cells[self._width :]):
            return self._error(
                source,
                f"{len(cells)} cells but the header has {self._width} columns "
                "(a comma in a cell that is not quoted?)",
            )
        count = len(cells)
        values = {name: cells[i].strip() if i < count else "" for name, i in self._columns}
        for name, value in values.items():
            if value[:1] == "'" and value[1:2] in FORMULA_STARTS:
                # A cell we (or a spreadsheet) kept from being read as a formula.
                values[name] = value[1:]
        row = _Cells(values)
        for name, limit in self._limits:
            if len(values[name]) > limit:
                row.reject(f"{name} is longer than {limit} characters")
        if any("\x00" in cell for cell in cells):
            for name, value in values.items():
                if "\x00" in value:
                    row.reject(f"{name} contains a NUL character")
        if row.problems:
            return self._error(source, "; ".join(row.problems))
        parsed = self._parse(row)
        if parsed is None or row.problems:
            return self._error(source, "; ".join(row.problems))
        key = natural_key(parsed)
        first = self._seen.get(key)
        if first is not None:
            field_name = NATURAL_KEYS[self.header.kind]
            return self._error(source, f"duplicate of row {first} (same {field_name} {key})")
        self._seen[key] = source.row
        return parsed

    @staticmethod
    def _error(source: SourceRow, reason: str) -> RowError:
        return RowError(source.row, source.line, reason, source.cells)

    # -- kinds --

    def _client(self, row: _Cells) -> ClientRow | None:
        domain = self._domain(row, "domain", required=True)
        client_type = row.text("client_type")
        if domain is None:
            return None
        return ClientRow(
            domain=domain,
            name=row.text("name"),
            client_type=_snake(client_type) if client_type else None,
            tags=_tags(row.text("tags")),
        )

    def _contact(self, row: _Cells) -> ContactRow | None:
        email = self._email(row, "email", required=True)
        role_category = _enum(row, "role_category", RoleCategory)
        state = _state(row, "state")
        lead_score = _lead_score(row)
        timezone = _timezone(row)
        client_domain = self._domain(row, "client_domain", required=False)
        opted_out_at = self._opted_out(row)
        email_status = _enum(row, "email_status", EmailStatus)
        turned_off = _turned_off(row)
        if email is None:
            return None
        return ContactRow(
            email=email,
            first_name=row.text("first_name"),
            last_name=row.text("last_name"),
            title=row.text("title"),
            phone=row.text("phone"),
            role_code=row.text("role_code"),
            role_category=role_category,
            state=state,
            tags=_tags(row.text("tags")),
            lead_score=lead_score,
            timezone=timezone,
            client_domain=client_domain,
            opted_out_at=opted_out_at,
            email_status=email_status,
            turned_off=turned_off,
        )

    def _order(self, row: _Cells) -> OrderRow | None:
        order_number = row.text("order_number")
        if order_number is None:
            row.reject("missing order_number")
        client_domain = self._domain(row, "client_domain", required=True)
        contact_email = self._email(row, "contact_email", required=False)
        line, city = row.text("property_address"), row.text("city")
        state = _state(row, "state")
        postal_code = _postal_code(row)
        status = _order_status(row)
        ordered_at = _date(row, "ordered_date", required=True)
        due_at = _date(row, "due_date", required=False)
        completed_at = _date(row, "completed_date", required=False)
        fee = _fee(row)
        if order_number is None or client_domain is None or ordered_at is None:
            return None
        full = join_address(line, city, state, postal_code) or None
        return OrderRow(
            order_number=order_number,
            client_domain=client_domain,
            contact_email=contact_email,
            property=PropertyAddress(line, city, state, postal_code) if line else None,
            property_address=full,
            status=status,
            ordered_at=ordered_at,
            due_at=due_at,
            completed_at=completed_at,
            fee=fee,
        )

    # -- fields that need the parser's state --

    def _email(self, row: _Cells, name: str, *, required: bool) -> str | None:
        raw = row.text(name)
        if raw is None:
            if required:
                row.reject(f"missing {name}")
            return None
        problem = self._emails.problem(raw)
        if problem is not None:
            row.reject(f"malformed {name} {raw!r}: {problem}")
            return None
        return normalize_email(raw)

    def _domain(self, row: _Cells, name: str, *, required: bool) -> str | None:
        raw = row.text(name)
        if raw is None:
            if required:
                row.reject(f"missing {name}")
            return None
        if raw not in self._domains:
            self._domains[raw] = valid_domain(raw)
        domain = self._domains[raw]
        if domain is None:
            row.reject(f"malformed {name} {raw!r}: expected a domain such as pinnaclelending.com")
        return domain

    def _opted_out(self, row: _Cells) -> datetime | None:
        raw = row.text("opted_out")
        if raw is None:
            return None
        flag = raw.lower()
        if flag in _TRUE:
            return self._now
        if flag in _FALSE:
            return None
        at = parse_datetime(raw)
        if at is None:
            row.reject(
                f"bad opted_out {raw!r}: use true/false, yes/no, 1/0 or the date of the opt-out"
            )
        return at


Checked = tuple[SourceRow, ParsedRow] | RowError
"""A row that passed, with the source it came from, or why it did not."""


def check_rows(parser: RowParser, rows: Iterable[SourceRow | RowError]) -> Iterator[Checked]:
    """Check rows in file order; rows the csv module could not read pass through."""
    for item in rows:
        if isinstance(item, RowError):
            yield item
            continue
        parsed = parser.parse(item)
        yield parsed if isinstance(parsed, RowError) else (item, parsed)


def email_problem(raw: str) -> str | None:
    """Return why an address is not a valid email address, or None if it is one.

    The syntax rules are email-validator's (through pydantic), without the DNS check.
    """
    if "<" in raw or ">" in raw:
        return "give the bare address, without a name or angle brackets"
    try:
        validate_email(raw)
    except PydanticCustomError as exc:
        context = exc.context or {}
        return str(context.get("reason") or exc.message())
    return None


class EmailChecker:
    """`email_problem` for many addresses, checking each distinct domain once.

    email-validator spends most of its time on the part after the @-sign. Its rules
    for the part before it do not depend on the domain, nor its rules for the domain
    on the local part, so once an address with a domain has passed, a later address
    with the same domain only needs its local part checked; that is done by the
    same library, on the local part joined to a short domain that is known to pass.
    Only the length of the whole address ties the two parts; a long one gets the
    full check.
    """

    _PROBE_DOMAIN: Final = "a.co"
    _MAX_LENGTH: Final = 254

    def __init__(self) -> None:
        self._valid_domains: set[str] = set()

    def problem(self, raw: str) -> str | None:
        """Return why an address is not a valid email address, or None if it is one."""
        local, at, domain = raw.rpartition("@")
        if at and domain in self._valid_domains and len(raw) <= self._MAX_LENGTH:
            return email_problem(f"{local}@{self._PROBE_DOMAIN}")
        problem = email_problem(raw)
        if problem is None and at:
            self._valid_domains.add(domain)
        return problem


def valid_domain(raw: str) -> str | None:
    """Return the normalized domain of a domain, URL or address, or None if it is not one."""
    domain = normalize_domain(raw)
    if not domain or "." not in domain or email_problem(f"postmaster@{domain}") is not None:
        return None
    return domain


def parse_datetime(raw: str) -> datetime | None:
    """Parse 2026-03-01, 03/01/2026 or an ISO date-time into an aware UTC datetime.

    A date alone is midnight UTC; a date-time without a zone is taken as UTC.
    """
    value = raw.strip()
    parsed: datetime | None = None
    if "/" in value:
        for fmt in _US_DATE_FORMATS:
            try:
                parsed = datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
    elif len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        parsed = datetime(day.year, day.month, day.day)
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    if parsed is None or not MIN_YEAR <= parsed.year <= MAX_YEAR:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _date(row: _Cells, name: str, *, required: bool) -> datetime | None:
    raw = row.text(name)
    if raw is None:
        if required:
            row.reject(f"missing {name}")
        return None
    at = parse_datetime(raw)
    if at is None:
        row.reject(f"bad {name} {raw!r}: {_DATE_HINT}")
    return at


def _snake(value: str) -> str:
    return "_".join(_SEPARATORS.split(value.strip().lower()))


# The helpers below are cached: a column of an export holds few distinct values.
@lru_cache(maxsize=1024)
def _member(enum: type[StrEnum], raw: str) -> StrEnum | None:
    try:
        return enum(_snake(raw))
    except ValueError:
        return None


def _enum(row: _Cells, name: str, enum: type[_E]) -> _E | None:
    raw = row.text(name)
    if raw is None:
        return None
    member = cast("_E | None", _member(enum, raw))
    if member is None:
        choices = ", ".join(member.value for member in enum)
        row.reject(f"bad {name} {raw!r}: use one of {choices}")
    return member


def _order_status(row: _Cells) -> OrderStatus | None:
    raw = row.text("status")
    if raw is None:
        return None
    key = _snake(raw)
    if key in _ORDER_STATUS_SYNONYMS:
        return _ORDER_STATUS_SYNONYMS[key]
    return _enum(row, "status", OrderStatus)


def _state(row: _Cells, name: str) -> str | None:
    raw = row.text(name)
    if raw is None:
        return None
    code = raw.upper()
    if code in US_STATES:
        return code
    named = US_STATE_NAMES.get(" ".join(raw.lower().split()))
    if named is not None:
        return named
    row.reject(f"bad {name} {raw!r}: use a US state code such as TX")
    return None


def _postal_code(row: _Cells) -> str | None:
    raw = row.text("postal_code")
    if raw is None:
        return None
    # Spreadsheets drop the leading zero of New England ZIP codes (02134 becomes 2134).
    value = raw.zfill(5) if raw.isdigit() and len(raw) == 4 else raw
    if not _ZIP.fullmatch(value):
        row.reject(f"bad postal_code {raw!r}: use a US ZIP code such as 78701 or 78701-1234")
        return None
    if len(value) == 9:
        value = f"{value[:5]}-{value[5:]}"
    return value


def _tags(raw: str | None) -> tuple[str, ...] | None:
    return None if raw is None else _split_tags(raw)


@lru_cache(maxsize=4096)
def _split_tags(raw: str) -> tuple[str, ...] | None:
    tags = dict.fromkeys(t.strip().lower() for t in _TAG_SEPARATORS.split(raw))
    tags.pop("", None)
    return tuple(tags) or None


def _turned_off(row: _Cells) -> frozenset[EmailType]:
    raw = row.text("email_preferences")
    if raw is None:
        return frozenset()
    try:
        changes = _preference_cell(raw)
    except ValueError as exc:
        row.reject(
            f"bad email_preferences {raw!r}: {exc} (write type:on or type:off separated by ;"
            f" with types among {VALID_TYPES})"
        )
        return frozenset()
    return frozenset(t for t, subscribed in changes.items() if not subscribed)


@lru_cache(maxsize=256)
def _preference_cell(raw: str) -> dict[EmailType, bool]:
    return parse_preference_cell(raw)


def _lead_score(row: _Cells) -> int | None:
    raw = row.text("lead_score")
    if raw is None:
        return None
    score = _whole_score(raw)
    if score is None:
        row.reject(f"bad lead_score {raw!r}: use a whole number from 0 to 100")
    return score


@lru_cache(maxsize=1024)
def _whole_score(raw: str) -> int | None:
    try:
        number = Decimal(raw)
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value() or not 0 <= number <= 100:
        return None
    return int(number)


def _fee(row: _Cells) -> Decimal | None:
    raw = row.text("fee")
    if raw is None:
        return None
    cleaned = raw.replace("$", "").replace(",", "").replace(" ", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or not Decimal(0) <= amount <= _MAX_FEE:
        row.reject(f"bad fee {raw!r}: use an amount in dollars such as $1,250.00")
        return None
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


@cache
def _timezones_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


@cache
def _zone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return _timezones_by_lower_name().get(name.lower())
    return name


def _timezone(row: _Cells) -> str | None:
    raw = row.text("timezone")
    if raw is None:
        return None
    zone = _zone(raw)
    if zone is None:
        row.reject(f"bad timezone {raw!r}: use an IANA name such as America/Chicago")
    return zone


# --- the outcome ----------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did: counts, the rejected rows and the columns it did not use."""

    kind: ImportKind
    header: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    dry_run: bool = False
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    fatal: str | None = None
    """Why the import stopped before the end of the file, if it did."""

    @property
    def rejected(self) -> int:
        """How many rows were rejected."""
        return len(self.errors)

    def reject(self, error: RowError) -> None:
        """Count a rejected row."""
        self.errors.append(error)

    def sorted_errors(self) -> list[RowError]:
        """The rejected rows in file order."""
        return sorted(self.errors, key=lambda e: e.row)
