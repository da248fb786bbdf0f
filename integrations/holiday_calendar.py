"""An organization's holiday calendar from the `holidays` package (the cadence's port).

`holidays` keeps the public holidays of about 150 countries and their subdivisions, with
observed days (a Saturday holiday observed on Friday). Calendars are built once per
(country, subdivision) and fill years lazily as the cadence asks about them.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays

from domain.errors import InvalidInput


class PublicHolidays:
    """The public holidays of a country, or of one of its states or provinces."""

    def __init__(self, country: str, subdivision: str | None = None) -> None:
        code = country.strip().upper()
        if code not in holidays.list_supported_countries():
            raise InvalidInput(
                f"{country!r} is not a country the holiday calendar knows: use an ISO 3166 "
                "code such as US or CA",
                field="holiday_country",
            )
        subdivisions = holidays.list_supported_countries()[code]
        subdiv = subdivision.strip().upper() if subdivision else None
        if subdiv is not None and subdiv not in subdivisions:
            raise InvalidInput(
                f"{subdivision!r} is not a subdivision of {code} the holiday calendar knows",
                field="holiday_subdivision",
            )
        self.country = code
        self.subdivision = subdiv
        self._calendar = holidays.country_holidays(code, subdiv=subdiv, observed=True)

    def is_holiday(self, day: date) -> bool:
        """Tell whether `day` is a public holiday (or the day one is observed)."""
        return day in self._calendar

    def name(self, day: date) -> str | None:
        """Return the holiday's name, for a card that says why a step waited."""
        return self._calendar.get(day)


@lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str | None = None) -> PublicHolidays:
    """Return the (shared) calendar of a country and subdivision."""
    return PublicHolidays(country, subdivision)
