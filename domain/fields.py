"""Bounded values for what callers send: ids that fit a BIGINT column, text without NUL
characters, JSON objects of bounded depth and size.

Every request model and route parameter uses these, so that a value the database
cannot hold is refused as invalid input (422) before it reaches a query, instead of
failing there with a 500 (`bigint out of range`, `text fields cannot contain NUL`,
a RecursionError while a 900-level object is serialised).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo

# The largest value of a PostgreSQL BIGINT (and of a SQLite INTEGER).
MAX_ID = 2**63 - 1
# How deep a free-form JSON object (a campaign's `metrics`) may nest, and how long it may
# be once serialised: a dashboard's counters, not a document store.
MAX_JSON_DEPTH = 20
MAX_JSON_CHARS = 20_000


# The validation context of rows read back from the database: what was stored before a
# bound existed is served as it is, not refused on every read.
STORED: dict[str, bool] = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and info.context.get("stored") is True


def _check_nul(value: str) -> None:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")


def refuse_nul(value: str, info: ValidationInfo) -> str:
    """Refuse text with a NUL character: PostgreSQL text columns cannot hold one."""
    if not _stored(info):
        _check_nul(value)
    return value


def check_json_object(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """Refuse a JSON object nested too deep, too long, or carrying NUL characters.

    The walk uses an explicit stack: a deep object must not exhaust the interpreter's.
    """
    if _stored(info):
        return value
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"must not nest deeper than {MAX_JSON_DEPTH} levels")
            for key, child in item.items():
                _check_nul(str(key))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"must not nest deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_nul(item)
    if len(json.dumps(value, ensure_ascii=False, default=str)) > MAX_JSON_CHARS:
        raise ValueError(f"must not be longer than {MAX_JSON_CHARS} characters as JSON")
    return value


# A stored row's id (path parameters, id lists, references to other rows).
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# A position in a listing.
Offset = Annotated[int, Field(ge=0, le=MAX_ID)]
# Text without NUL characters; give its length limits with Field(...) where it is used.
Text = Annotated[str, AfterValidator(refuse_nul)]
# A short label: a tag, a role code, a channel id.
Label = Annotated[str, Field(max_length=100), AfterValidator(refuse_nul)]
# A free-form JSON object, bounded in depth and size.
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_object)]
