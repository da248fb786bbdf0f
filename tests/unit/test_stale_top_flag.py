"""`--stale-top N` taken out of a `/campaign launch` command's text."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from handlers.slack.commands import split_command, split_dry_run, split_stale_top


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("launch Win-back --stale-top 50", ("launch Win-back", 50, True)),
        ("launch --stale-top=7 Win-back", ("launch Win-back", 7, True)),
        ("launch Win-back —stale-top 1000", ("launch Win-back", 1000, True)),
        ("launch Win-back –STALE-TOP 1", ("launch Win-back", 1, True)),
        ("launch Win-back", ("launch Win-back", None, False)),
        ("launch Win-back --stale-topper 5", ("launch Win-back --stale-topper 5", None, False)),
    ],
)
def test_the_flag_and_its_number_are_taken_out_of_the_text(
    text: str, expected: tuple[str, int | None, bool]
) -> None:
    assert split_stale_top(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("launch Win-back --stale-top", "`--stale-top` takes a number of clients from 1 to 1000"),
        ("launch Win-back --stale-top 0", "0 clients: `--stale-top` takes"),
        ("launch Win-back --stale-top 1001", "1,001 clients: `--stale-top` takes"),
        ("launch Win-back --stale-top ten", "`ten`: `--stale-top` takes"),
        ("launch Win-back --stale-top -5", "`-5`: `--stale-top` takes"),
        ("launch W --stale-top 5 --stale-top 6", "give `--stale-top` once"),
    ],
)
def test_a_missing_or_out_of_range_number_is_refused_with_the_usage(
    text: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        split_stale_top(text)
    assert message in refused.value.message
    assert "e.g. `/campaign launch Win-back --stale-top 50`" in refused.value.message


def test_it_goes_with_the_dry_run_flag_in_either_order() -> None:
    for text in (
        "launch Win-back --stale-top 2 --dry-run",
        "launch --dry-run Win-back --stale-top 2",
        "launch --stale-top 2 --dry-run Win-back",
    ):
        rest, dry_run = split_dry_run(text)
        rest, top, given = split_stale_top(rest)
        assert (split_command(rest), top, given, dry_run) == (("launch", "Win-back"), 2, True, True)
