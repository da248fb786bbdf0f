"""What the offline classifier reads of a message: bounded text and simple entities."""

from __future__ import annotations

import time

import pytest

from integrations.offline_classifier import (
    BODY_LIMIT,
    SUBJECT_LIMIT,
    extract_entities,
    model_text,
)


@pytest.mark.parametrize(
    ("text", "orders"),
    [
        ("Order #: AO-482913\nFee: $525.00", ["AO-482913"]),
        ("Order Number: 88231\nForm: FHA 1004", ["88231"]),
        ("RUSH order 5519027 - 2204 Cedar Bluff Ln", ["5519027"]),
        ("Order ID: 5519027", ["5519027"]),
        ("Order No: 2024-0931-77", ["2024-0931-77"]),
        ("Assignment #AM-77120 | Field Review", ["AM-77120"]),
        ("Orden #: AO-50218", ["AO-50218"]),
        ("Commande n° : 77-30418", ["77-30418"]),
        ("Auftragsnummer: GA-60217", ["GA-60217"]),
        ("Order Desk\nThe order placed yesterday", []),
        ("Order #A-1001 and order #A-1001 again, then Order #B-2002", ["A-1001", "B-2002"]),
    ],
)
def test_order_numbers_are_read_as_written(text: str, orders: list[str]) -> None:
    assert extract_entities("", text).order_numbers == orders


@pytest.mark.parametrize(
    ("text", "amounts"),
    [
        ("Fee: $525.00 (includes 1007)", ["$525.00"]),
        ("$600 + $150 rush", ["$600", "$150"]),
        ("Total $2,390.04, mileage $410.04", ["$2,390.04", "$410.04"]),
        ("contract $1.85M", ["$1.85M"]),
        ("Honoraires : 550 $", ["550 $"]),
        ("Rechnung über 286,00 $ für Webhosting", ["286,00 $"]),
        ("no money here, call 630-555-0134", []),
    ],
)
def test_money_amounts_are_read_as_written(text: str, amounts: list[str]) -> None:
    assert extract_entities("", text).amounts == amounts


def test_at_most_twenty_entities_of_each_kind_are_kept() -> None:
    text = " ".join(f"Order #{number}00 fee ${number}.00" for number in range(100, 150))
    entities = extract_entities("", text)
    assert len(entities.order_numbers) == 20
    assert len(entities.amounts) == 20


def test_entities_come_only_from_the_bounded_text() -> None:
    body = "x" * BODY_LIMIT + " Order #99999 $10.00"
    assert extract_entities("", body).order_numbers == []
    assert extract_entities("", body).amounts == []


def test_pathological_input_is_scanned_quickly() -> None:
    hostile = ("order " + "#" * 50 + ":" * 50 + " ") * 200 + "$" + "9," * 3000
    started = time.process_time()
    extract_entities(hostile, hostile)
    assert time.process_time() - started < 1.0  # linear scan of ~8 kB, not backtracking


def test_the_model_reads_a_bounded_subject_and_body() -> None:
    text = model_text("S" * 10_000, "B" * 1_000_000)
    assert text == "S" * SUBJECT_LIMIT + "\n" + "B" * BODY_LIMIT


@pytest.mark.parametrize(
    "quote_header",
    [
        "On Tue, Oct 8, 2024 at 10:14 AM Dana <dana@example.com> wrote:",
        "-----Original Message-----",
        "> Hi Mark, it's been a while",
        "El mar, 8 oct 2024 a las 10:14, Dana Whitfield escribió:",
        "Le mar. 8 oct. 2024 à 10:14, Dana Whitfield a écrit :",
        "Am 08.10.2024 um 10:14 schrieb Dana Whitfield:",
    ],
)
def test_the_quoted_message_below_a_reply_is_not_read(quote_header: str) -> None:
    body = f"Yes, send me your fee schedule.\n\n{quote_header}\nWe have new appraisers in DuPage."
    assert model_text("Re: hi", body) == "Re: hi\nYes, send me your fee schedule.\n"
