"""Time, always timezone-aware UTC, from an injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current time."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> datetime:
        """Return the fixed time."""
        return self._at

    def advance(self, **delta: float) -> None:
        """Move the clock forward by a timedelta's keyword arguments."""
        self._at = self._at + timedelta(**delta)


class FileClock:
    """A clock read from a file holding an ISO 8601 instant (tests and benches: several
    processes walk simulated weeks together while one writes the file)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def now(self) -> datetime:
        """Return the instant the file holds now."""
        with open(self._path, encoding="utf-8") as handle:
            at = datetime.fromisoformat(handle.read().strip())
        if at.tzinfo is None:
            raise ValueError(f"{self._path} must hold a timezone-aware instant")
        return at.astimezone(UTC)


class ShiftedClock:
    """The wall clock moved forward by an offset that only grows (the sandbox's clock
    control: advancing it makes cadence steps and digests come due in minutes)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    @property
    def offset(self) -> timedelta:
        """How far ahead of the wall clock this clock runs."""
        return self._offset

    def now(self) -> datetime:
        """Return the wall clock plus the offset."""
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` (never back) and return the new now."""
        if delta.total_seconds() < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset = self._offset + delta
        return self.now()
