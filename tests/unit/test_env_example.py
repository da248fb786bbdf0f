"""`.env.example` names every setting of bot/settings.py, no other, with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
COMPOSE = ROOT / "docker-compose.yml"

# `NAME=value` sets a setting; `# NAME=value` shows its default.
_ENTRY = re.compile(r"^(?P<commented>#\s?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# Names the example may carry that Salesbot does not read: docker-compose.yml uses them.
COMPOSE_ONLY = frozenset({"POSTGRES_PASSWORD"})
# Named for the deployer, read from the process environment by uvicorn or the Procfile.
PROCESS_ONLY = {"FORWARDED_ALLOW_IPS": "docker-compose.yml", "WEB_CONCURRENCY": "Procfile"}


def _entries() -> list[tuple[str, str, bool]]:
    """(name, value, commented out) for each setting line of the example, in order."""
    found: list[tuple[str, str, bool]] = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ENTRY.match(line)
        if match:
            found.append((match["name"], match["value"], match["commented"] is not None))
    return found


def test_every_setting_is_in_the_example() -> None:
    named = {name for name, _, _ in _entries()}
    missing = sorted(set(Settings.model_fields) - named)
    assert not missing, f".env.example lacks these settings of bot/settings.py: {missing}"


def test_the_example_names_no_unknown_setting() -> None:
    named = {name for name, _, _ in _entries()}
    unknown = sorted(named - set(Settings.model_fields) - COMPOSE_ONLY - set(PROCESS_ONLY))
    assert not unknown, f".env.example names settings bot/settings.py does not have: {unknown}"


def test_each_setting_appears_once() -> None:
    names = [name for name, _, _ in _entries()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f".env.example names these more than once: {repeated}"


def test_compose_only_names_are_used_by_compose() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for name in COMPOSE_ONLY:
        assert "${" + name in text, (
            f"{name} is in .env.example but docker-compose.yml never uses it"
        )


def test_process_only_names_are_used_where_the_example_says() -> None:
    root = COMPOSE.parent
    for name, where in PROCESS_ONLY.items():
        assert name in (root / where).read_text(encoding="utf-8"), f"{where} never uses {name}"


@pytest.mark.parametrize("entry", _entries(), ids=lambda entry: entry[0])
def test_a_commented_setting_shows_its_default(entry: tuple[str, str, bool]) -> None:
    name, value, commented = entry
    if name in COMPOSE_ONLY or name in PROCESS_ONLY:
        return
    field = Settings.model_fields[name]
    if field.default is PydanticUndefined:
        assert not commented, f"{name} is required: the example must set it, not comment it out"
        return
    assert commented, f"{name} has a default: the example shows it commented out"
    if field.default in (None, ""):
        assert value == "", f"{name} has no default value; the example must show `# {name}=`"
        return
    shown = TypeAdapter(field.annotation).validate_python(value, strict=False)
    assert shown == field.default, (
        f"{name}: the example shows {value!r}, the default is {field.default!r}"
    )
