"""`salesbot serve` in sandbox mode: the links in emails reach the port it serves on."""

from __future__ import annotations

from bot.sandbox import served_at
from bot.settings import Settings

SECRET = "x" * 48


def test_an_unset_public_base_url_is_the_served_port() -> None:
    settings = Settings(_env_file=None, SALESBOT_SECRET_KEY=SECRET, PORT=3117)

    served = served_at(settings, 3117)

    # An unsubscribe link on http://localhost:3000 would reach nothing on another port.
    assert served.PUBLIC_BASE_URL == "http://127.0.0.1:3117"
    assert settings.PUBLIC_BASE_URL == "http://localhost:3000"


def test_a_public_base_url_that_was_set_is_kept() -> None:
    settings = Settings(
        _env_file=None, SALESBOT_SECRET_KEY=SECRET, PUBLIC_BASE_URL="https://bot.example.com"
    )

    assert served_at(settings, 3117).PUBLIC_BASE_URL == "https://bot.example.com"
