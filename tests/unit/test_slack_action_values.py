"""Reading the clicked action of a block-actions payload (handlers/slack/common.py)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import InvalidInput
from handlers.slack.blocks import parse_button_value
from handlers.slack.common import (
    NAMES_NO_CARD,
    clicked_action,
    first_action,
    parse_action_value,
)


@pytest.mark.parametrize(
    "body",
    [{}, {"actions": None}, {"actions": []}, {"actions": ["approve"]}, {"actions": [None]}],
)
def test_a_payload_without_an_action_object_has_no_first_action(body: dict[str, Any]) -> None:
    assert first_action(body) is None
    with pytest.raises(InvalidInput, match="carried no action"):
        clicked_action(body)


def test_the_first_action_is_the_clicked_one() -> None:
    body = {"actions": [{"action_id": "a", "value": "1"}, {"action_id": "b"}]}
    assert first_action(body) == clicked_action(body) == {"action_id": "a", "value": "1"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"actions": [{"action_id": "approve"}]},
        {"actions": [{"value": "not a card"}]},
        {"actions": [{"value": ["a", "list"]}]},
    ],
)
def test_a_value_the_parser_refuses_is_told_with_the_callers_sentence(
    body: dict[str, Any],
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_action_value(body, parse_button_value, refusal=NAMES_NO_CARD)
    assert refused.value.message == NAMES_NO_CARD


def test_a_value_the_parser_takes_is_returned() -> None:
    assert parse_action_value({"actions": [{"value": "42"}]}, int, refusal="no") == 42
