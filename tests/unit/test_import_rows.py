"""CSV import, the pure part: header mapping, row numbers, and every reason a row is refused."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from domain.contacts import EmailStatus, OrderStatus, RoleCategory
from domain.imports import (
    COLUMNS,
    ClientRow,
    ContactRow,
    CsvRows,
    EmailChecker,
    ImportFileError,
    ImportKind,
    OrderRow,
    ParsedRow,
    PropertyAddress,
    RowError,
    RowParser,
    SourceRow,
    email_problem,
    find_invalid_utf8,
    map_header,
    parse_datetime,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def parse_file(kind: ImportKind, text: str) -> list[ParsedRow | RowError]:
    """Read a whole CSV text and return, in order, the typed row or error of each row."""
    rows = CsvRows(io.StringIO(text, newline=""))
    parser = RowParser(map_header(kind, rows.header), now=NOW)
    return [item if isinstance(item, RowError) else parser.parse(item) for item in rows]


def one(kind: ImportKind, text: str) -> ParsedRow | RowError:
    (result,) = parse_file(kind, text)
    return result


def reason(kind: ImportKind, text: str) -> str:
    result = one(kind, text)
    assert isinstance(result, RowError), result
    return result.reason


def contact(text: str) -> ContactRow:
    result = one(ImportKind.CONTACTS, text)
    assert isinstance(result, ContactRow), result
    return result


def order(text: str) -> OrderRow:
    result = one(ImportKind.ORDERS, text)
    assert isinstance(result, OrderRow), result
    return result


ORDER_HEADER = "order_number,client_domain,ordered_date"


# --- header ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["email", "Email", "EMAIL", "Email Address", "email_address", "E-mail", " e mail "]
)
def test_header_names_match_whatever_their_case_spaces_and_underscores(label: str) -> None:
    assert map_header(ImportKind.CONTACTS, [label]).columns == {"email": 0}


def test_common_crm_column_names_are_understood() -> None:
    contacts = map_header(
        ImportKind.CONTACTS,
        ["Email Address", "First Name", "Last Name", "Job Title", "State/Region", "Website"],
    )
    assert contacts.columns == {
        "email": 0,
        "first_name": 1,
        "last_name": 2,
        "title": 3,
        "state": 4,
        "client_domain": 5,
    }
    orders = map_header(
        ImportKind.ORDERS, ["Order #", "Company Domain", "Order Date", "Address", "Zip", "Fee"]
    )
    assert orders.columns == {
        "order_number": 0,
        "client_domain": 1,
        "ordered_date": 2,
        "property_address": 3,
        "postal_code": 4,
        "fee": 5,
    }
    clients = map_header(ImportKind.CLIENTS, ["Company Name", "Website", "Type"])
    assert clients.columns == {"name": 0, "domain": 1, "client_type": 2}


def test_unknown_columns_are_reported_as_ignored() -> None:
    header = map_header(ImportKind.CONTACTS, ["Email", "Lifecycle Stage", "", "Owner"])
    assert header.columns == {"email": 0}
    assert header.ignored == ("Lifecycle Stage", "(column 3 has no name)", "Owner")


def test_of_two_columns_for_one_field_the_better_name_wins_and_the_other_is_ignored() -> None:
    header = map_header(ImportKind.CONTACTS, ["Email", "Mobile Phone", "Phone Number"])
    assert header.columns == {"email": 0, "phone": 2}
    assert header.ignored == ("Mobile Phone (using Phone Number for phone)",)


def test_a_missing_required_column_is_fatal_and_named() -> None:
    with pytest.raises(ImportFileError) as raised:
        map_header(ImportKind.CONTACTS, ["First Name", "Last Name"])
    assert raised.value.message == (
        "a contacts file needs the column 'email' (or 'email address', 'e-mail', "
        "'e-mail address', 'work email'); the header has: First Name, Last Name"
    )


def test_every_missing_required_column_is_named_at_once() -> None:
    with pytest.raises(
        ImportFileError, match="needs the columns 'order_number' .* and 'ordered_date'"
    ):
        map_header(ImportKind.ORDERS, ["client_domain", "fee"])


def test_a_file_separated_by_semicolons_gets_a_hint() -> None:
    with pytest.raises(ImportFileError, match="looks separated by ';' or tabs"):
        map_header(ImportKind.CONTACTS, ["email;first_name"])


def test_an_empty_file_is_fatal() -> None:
    with pytest.raises(ImportFileError, match="the file is empty"):
        CsvRows(io.StringIO("", newline=""))


# --- row numbers ----------------------------------------------------------------------


def test_rows_are_numbered_as_a_spreadsheet_shows_them() -> None:
    results = parse_file(
        ImportKind.CONTACTS, "email\na@pinnacle.com\nnot-an-email\nc@pinnacle.com\n"
    )
    assert [type(r) for r in results] == [ContactRow, RowError, ContactRow]
    error = results[1]
    assert isinstance(error, RowError)
    assert (error.row, error.line) == (3, 3)


def test_a_quoted_cell_spanning_lines_keeps_row_numbers_right_and_gives_the_line() -> None:
    text = (
        "email,title\n"
        'dana@pinnacle.com,"Senior Loan Officer\nTravis County\nand Hays"\n'
        "broken,Processor\n"
    )
    results = parse_file(ImportKind.CONTACTS, text)
    assert isinstance(results[0], ContactRow)
    assert results[0].title == "Senior Loan Officer\nTravis County\nand Hays"
    error = results[1]
    assert isinstance(error, RowError)
    assert (error.row, error.line) == (3, 5)
    assert error.cells == ("broken", "Processor")


def test_blank_rows_are_skipped_but_still_counted() -> None:
    text = "email\n\n,\nnot-an-email\n"
    (error,) = parse_file(ImportKind.CONTACTS, text)
    assert isinstance(error, RowError)
    assert error.row == 4


def test_a_row_that_is_not_valid_csv_is_refused_and_reading_goes_on() -> None:
    text = 'email,title\na@pinnacle.com,"Loan" Officer\nb@pinnacle.com,Processor\n'
    results = parse_file(ImportKind.CONTACTS, text)
    assert results[0] == RowError(2, 2, "not valid CSV: ',' expected after '\"'")
    assert isinstance(results[1], ContactRow)
    assert results[1].email == "b@pinnacle.com"


def test_a_quoted_cell_that_is_never_closed_is_refused_where_it_starts() -> None:
    text = 'email,title\na@pinnacle.com,Processor\nb@pinnacle.com,"Loan Officer\nc@x.com,y\n'
    results = parse_file(ImportKind.CONTACTS, text)
    assert isinstance(results[0], ContactRow)
    assert results[1] == RowError(
        3, 3, "not valid CSV: a quoted cell is never closed (it runs to the end of the file)"
    )


def test_a_row_with_more_cells_than_the_header_is_refused() -> None:
    assert reason(ImportKind.CONTACTS, "email,first_name\na@pinnacle.com,Dana,Whitfield\n") == (
        "3 cells but the header has 2 columns (a comma in a cell that is not quoted?)"
    )


def test_a_row_with_fewer_cells_reads_the_missing_ones_as_empty() -> None:
    row = contact("email,first_name,last_name\na@pinnacle.com,Dana\n")
    assert (row.first_name, row.last_name) == ("Dana", None)


# --- contacts -------------------------------------------------------------------------


def test_a_contact_is_read_with_every_field_cleaned() -> None:
    row = contact(
        "Email Address,First Name,Role Category,State,Tags,Lead Score,Time Zone,Website,"
        "Email Status\n"
        ' Dana@PinnacleLending.com ,Dana,Loan Origination,texas,"Purchase; VA,purchase",88,'
        "america/chicago,https://www.PinnacleLending.com/about,Bounced\n"
    )
    assert row == ContactRow(
        email="dana@pinnaclelending.com",
        first_name="Dana",
        last_name=None,
        title=None,
        phone=None,
        role_code=None,
        role_category=RoleCategory.LOAN_ORIGINATION,
        state="TX",
        tags=("purchase", "va"),
        lead_score=88,
        timezone="America/Chicago",
        client_domain="pinnaclelending.com",
        opted_out_at=None,
        email_status=EmailStatus.BOUNCED,
    )


def test_a_contact_without_an_email_is_refused() -> None:
    assert reason(ImportKind.CONTACTS, "email,first_name\n,Dana\n") == "missing email"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("dana.pinnaclelending.com", "An email address must have an @-sign."),
        ("dana@", "There must be something after the @-sign."),
        ("dana@pinnacle", "The part after the @-sign is not valid. It should have a period."),
        (
            "da na@pinnacle.com",
            "The email address contains invalid characters before the @-sign: SPACE.",
        ),
        ("Dana <dana@pinnacle.com>", "give the bare address, without a name or angle brackets"),
    ],
)
def test_a_malformed_email_is_refused_with_the_reason(value: str, why: str) -> None:
    assert reason(ImportKind.CONTACTS, f"email\n{value}\n") == f"malformed email {value!r}: {why}"


@pytest.mark.parametrize("value", ["Texass", "T", "99"])
def test_a_state_that_is_not_a_us_state_is_refused(value: str) -> None:
    assert reason(ImportKind.CONTACTS, f"email,state\na@pinnacle.com,{value}\n") == (
        f"bad state {value!r}: use a US state code such as TX"
    )


@pytest.mark.parametrize("value", ["150", "-1", "high", "85.5", "NaN"])
def test_a_lead_score_outside_0_to_100_or_not_whole_is_refused(value: str) -> None:
    assert reason(ImportKind.CONTACTS, f"email,lead_score\na@pinnacle.com,{value}\n") == (
        f"bad lead_score {value!r}: use a whole number from 0 to 100"
    )


@pytest.mark.parametrize(("value", "score"), [("0", 0), ("100", 100), ("85.0", 85), (" 7 ", 7)])
def test_whole_lead_scores_are_accepted(value: str, score: int) -> None:
    assert contact(f"email,lead_score\na@pinnacle.com,{value}\n").lead_score == score


def test_an_unknown_timezone_is_refused() -> None:
    assert reason(ImportKind.CONTACTS, "email,timezone\na@pinnacle.com,Central\n") == (
        "bad timezone 'Central': use an IANA name such as America/Chicago"
    )


def test_an_unknown_role_category_is_refused_with_the_choices() -> None:
    assert reason(ImportKind.CONTACTS, "email,role_category\na@pinnacle.com,sales\n") == (
        "bad role_category 'sales': use one of loan_origination, processing, underwriting, "
        "vendor_management, leadership, operations, other"
    )


@pytest.mark.parametrize("value", ["Vendor Management", "vendor-management", "VENDOR_MANAGEMENT"])
def test_role_categories_are_read_whatever_their_case_and_separators(value: str) -> None:
    row = contact(f"email,role_category\na@pinnacle.com,{value}\n")
    assert row.role_category is RoleCategory.VENDOR_MANAGEMENT


@pytest.mark.parametrize(
    ("value", "at"),
    [
        ("yes", NOW),
        ("TRUE", NOW),
        ("1", NOW),
        ("no", None),
        ("0", None),
        ("", None),
        ("2026-06-12", datetime(2026, 6, 12, tzinfo=UTC)),
        ("06/12/2026", datetime(2026, 6, 12, tzinfo=UTC)),
    ],
)
def test_opted_out_is_a_flag_or_the_date_of_the_opt_out(value: str, at: datetime | None) -> None:
    assert contact(f"email,opted_out\na@pinnacle.com,{value}\n").opted_out_at == at


def test_an_opted_out_value_that_is_neither_flag_nor_date_is_refused() -> None:
    assert reason(ImportKind.CONTACTS, "email,opted_out\na@pinnacle.com,maybe\n") == (
        "bad opted_out 'maybe': use true/false, yes/no, 1/0 or the date of the opt-out"
    )


def test_an_unknown_email_status_is_refused() -> None:
    assert reason(ImportKind.CONTACTS, "email,email_status\na@pinnacle.com,unknown\n") == (
        "bad email_status 'unknown': use one of valid, bounced, complained"
    )


def test_a_malformed_client_domain_is_refused() -> None:
    assert reason(ImportKind.CONTACTS, "email,client_domain\na@pinnacle.com,pinnacle\n") == (
        "malformed client_domain 'pinnacle': expected a domain such as pinnaclelending.com"
    )


def test_every_problem_of_a_row_is_reported_at_once() -> None:
    text = "email,state,lead_score\nnot-an-email,Texass,150\n"
    assert reason(ImportKind.CONTACTS, text) == (
        "malformed email 'not-an-email': An email address must have an @-sign.; "
        "bad state 'Texass': use a US state code such as TX; "
        "bad lead_score '150': use a whole number from 0 to 100"
    )


def test_a_value_longer_than_its_column_is_refused() -> None:
    text = f"email,first_name\na@pinnacle.com,{'x' * 101}\n"
    assert reason(ImportKind.CONTACTS, text) == "first_name is longer than 100 characters"


def test_a_later_row_with_the_same_email_is_refused_as_a_duplicate() -> None:
    text = "email\ndana@pinnacle.com\nmarcus@pinnacle.com\n DANA@Pinnacle.com\n"
    results = parse_file(ImportKind.CONTACTS, text)
    assert [type(r) for r in results] == [ContactRow, ContactRow, RowError]
    assert results[2] == RowError(
        4, 4, "duplicate of row 2 (same email dana@pinnacle.com)", (" DANA@Pinnacle.com",)
    )


def test_a_row_refused_for_another_reason_does_not_make_a_later_one_a_duplicate() -> None:
    text = "email,state\ndana@pinnacle.com,Texass\ndana@pinnacle.com,TX\n"
    results = parse_file(ImportKind.CONTACTS, text)
    assert isinstance(results[0], RowError)
    assert isinstance(results[1], ContactRow)


# --- clients --------------------------------------------------------------------------


def test_a_client_domain_is_normalized_from_a_url() -> None:
    result = one(
        ImportKind.CLIENTS,
        "Company Name,Website,Type,Tags\n"
        "Hill Country CU,https://www.HillCountryCU.org/loans,Credit Union,Texas;portfolio\n",
    )
    assert result == ClientRow(
        domain="hillcountrycu.org",
        name="Hill Country CU",
        client_type="credit_union",
        tags=("texas", "portfolio"),
    )


def test_a_client_without_a_domain_is_refused() -> None:
    assert reason(ImportKind.CLIENTS, "name,domain\nPinnacle Lending,\n") == "missing domain"


def test_a_client_with_a_malformed_domain_is_refused() -> None:
    assert reason(ImportKind.CLIENTS, "name,domain\nPinnacle,pinnacle lending.com\n") == (
        "malformed domain 'pinnacle lending.com': expected a domain such as pinnaclelending.com"
    )


def test_a_later_client_with_the_same_domain_is_a_duplicate() -> None:
    text = "name,domain\nPinnacle,pinnaclelending.com\nPinnacle Lending,www.pinnaclelending.com\n"
    error = parse_file(ImportKind.CLIENTS, text)[1]
    assert isinstance(error, RowError)
    assert error.reason == "duplicate of row 2 (same domain pinnaclelending.com)"


# --- orders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "at"),
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("03/01/2026", datetime(2026, 3, 1, tzinfo=UTC)),
        ("3/1/2026", datetime(2026, 3, 1, tzinfo=UTC)),
        ("3/1/2026 14:30", datetime(2026, 3, 1, 14, 30, tzinfo=UTC)),
        ("2026-03-01T14:30:00", datetime(2026, 3, 1, 14, 30, tzinfo=UTC)),
        ("2026-03-01T14:30:00Z", datetime(2026, 3, 1, 14, 30, tzinfo=UTC)),
        ("2026-03-01T09:30:00-05:00", datetime(2026, 3, 1, 14, 30, tzinfo=UTC)),
    ],
)
def test_order_dates_are_iso_us_or_iso_date_times_read_as_utc(value: str, at: datetime) -> None:
    row = order(f"{ORDER_HEADER}\nA-1,pinnacle.com,{value}\n")
    assert row.ordered_at == at
    assert row.ordered_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value", ["2026-13-01", "13/01/2026", "01-03-2026", "next week", "1899-12-31"]
)
def test_a_bad_order_date_is_refused(value: str) -> None:
    assert reason(ImportKind.ORDERS, f"{ORDER_HEADER}\nA-1,pinnacle.com,{value}\n") == (
        f"bad ordered_date {value!r}: use YYYY-MM-DD, MM/DD/YYYY or an ISO date-time"
    )


def test_an_order_without_its_required_cells_is_refused() -> None:
    assert reason(ImportKind.ORDERS, f"{ORDER_HEADER},fee\n,,,$650\n") == (
        "missing order_number; missing client_domain; missing ordered_date"
    )


def test_an_order_is_read_with_its_property_fee_and_status() -> None:
    row = order(
        "Order #,Lender Domain,Contact Email,Property Address,City,State,Zip,Order Status,"
        "Order Date,Due Date,Completed Date,Fee\n"
        "APR-0412,pinnaclelending.com,Dana@PinnacleLending.com,1407  Barton Hills Dr.,Austin,"
        'texas,2134,In Review,2026-04-02,04/09/2026,,"$1,250.00"\n'
    )
    assert row == OrderRow(
        order_number="APR-0412",
        client_domain="pinnaclelending.com",
        contact_email="dana@pinnaclelending.com",
        property=PropertyAddress("1407  Barton Hills Dr.", "Austin", "TX", "02134"),
        property_address="1407  Barton Hills Dr., Austin, TX 02134",
        status=OrderStatus.IN_REVIEW,
        ordered_at=datetime(2026, 4, 2, tzinfo=UTC),
        due_at=datetime(2026, 4, 9, tzinfo=UTC),
        completed_at=None,
        fee=Decimal("1250.00"),
    )
    assert row.property is not None
    assert row.property.key == "1407 barton hills dr austin tx 02134"


def test_the_same_address_written_differently_has_one_key() -> None:
    first = PropertyAddress("1407 Barton Hills Dr.", "Austin", "TX", "78704")
    second = PropertyAddress(" 1407 barton hills dr", "AUSTIN", "TX", "78704")
    assert first.key == second.key


def test_an_order_without_a_street_has_no_property_but_keeps_its_address_text() -> None:
    row = order(
        "order_number,client_domain,ordered_date,city,state\nA-1,p.com,2026-03-01,Austin,TX\n"
    )
    assert (row.property, row.property_address) == (None, "Austin, TX")


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("Canceled", OrderStatus.CANCELLED),
        ("on hold", OrderStatus.ON_HOLD),
        ("COMPLETE", OrderStatus.COMPLETED),
    ],
)
def test_order_statuses_are_read_tolerantly(value: str, status: OrderStatus) -> None:
    row = order(f"{ORDER_HEADER},status\nA-1,pinnacle.com,2026-03-01,{value}\n")
    assert row.status is status


@pytest.mark.parametrize("value", ["$-5", "twelve", "$100,000,000.00"])
def test_a_bad_fee_is_refused(value: str) -> None:
    assert reason(ImportKind.ORDERS, f'{ORDER_HEADER},fee\nA-1,p.com,2026-03-01,"{value}"\n') == (
        f"bad fee {value!r}: use an amount in dollars such as $1,250.00"
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [("78701", "78701"), ("787011234", "78701-1234"), ("78701-1234", "78701-1234")],
)
def test_zip_codes_are_five_digits_or_zip_plus_four(value: str, code: str) -> None:
    row = order(
        f"{ORDER_HEADER},property_address,postal_code\nA-1,p.com,2026-03-01,1 Main St,{value}\n"
    )
    assert row.property is not None
    assert row.property.postal_code == code


def test_a_bad_zip_code_is_refused() -> None:
    text = f"{ORDER_HEADER},postal_code\nA-1,p.com,2026-03-01,787\n"
    assert reason(ImportKind.ORDERS, text) == (
        "bad postal_code '787': use a US ZIP code such as 78701 or 78701-1234"
    )


def test_a_later_order_with_the_same_number_is_a_duplicate() -> None:
    text = f"{ORDER_HEADER}\nA-1,p.com,2026-03-01\nA-2,p.com,2026-03-01\nA-1,p.com,2026-03-02\n"
    error = parse_file(ImportKind.ORDERS, text)[2]
    assert isinstance(error, RowError)
    assert (error.row, error.reason) == (4, "duplicate of row 2 (same order_number A-1)")


def test_parse_datetime_converts_offsets_to_utc() -> None:
    at = parse_datetime("2026-03-01T20:00:00+02:00")
    assert at == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    assert at is not None
    assert at.tzinfo == UTC


# --- email syntax and encoding --------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "dana@pinnacle.com",
        "da..na@pinnacle.com",
        ".dana@pinnacle.com",
        f"{'d' * 65}@pinnacle.com",
        f"d@{'p' * 250}.com",
    ],
)
def test_the_email_checker_agrees_with_the_full_check_once_a_domain_is_known(address: str) -> None:
    checker = EmailChecker()
    assert checker.problem("known@pinnacle.com") is None
    assert checker.problem(address) == email_problem(address)


def test_an_address_with_an_unknown_domain_gets_the_full_check() -> None:
    checker = EmailChecker()
    assert checker.problem("dana@pinnacle") == email_problem("dana@pinnacle")
    assert checker.problem("dana@pinnacle") is not None


def test_invalid_utf8_is_found_with_its_byte_offset_and_line() -> None:
    assert find_invalid_utf8([b"email\nren\xe9e@x.com\n"]) == (9, 2)


def test_a_character_split_across_chunks_is_valid_utf8() -> None:
    assert find_invalid_utf8([b"email\nren\xc3", b"\xa9e@x.com\n"]) is None


def test_invalid_utf8_after_a_chunk_boundary_is_found_at_its_absolute_offset() -> None:
    assert find_invalid_utf8([b"ab\nc\xc3", b"\xa9\n\xff"]) == (7, 3)


def test_a_file_cut_in_the_middle_of_a_character_is_not_utf8() -> None:
    assert find_invalid_utf8([b"email\nren\xc3"]) == (9, 2)


def test_a_source_row_keeps_its_cells() -> None:
    rows = CsvRows(io.StringIO("email\na@pinnacle.com\n", newline=""))
    assert list(rows) == [SourceRow(2, 2, ("a@pinnacle.com",))]


def test_the_import_guide_names_every_column_and_alias() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "csv-import.md").read_text()
    tables = guide.split("| column | required | also accepted as | format |")[1:]
    assert len(tables) == len(COLUMNS)
    for table, (kind, columns) in zip(tables, COLUMNS.items(), strict=True):
        lines = [line for line in table.split("\n\n")[0].splitlines() if line.startswith("| `")]
        rows = {
            cells[1].strip("`"): cells[2:4]
            for cells in ([cell.strip() for cell in line.split("|")] for line in lines)
        }
        assert rows == {
            c.field: ["yes" if c.required else "", ", ".join(c.aliases)] for c in columns
        }, kind
