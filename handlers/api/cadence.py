"""The cadence: run a tick now, and the organization's cadence settings.

`POST /api/agent/cadence/execute` runs one tick through the scheduler, so the periodic lock
is respected: while another process runs a tick the answer is 409. The settings (send
window, time zone, holiday calendar, fatigue limits, deliverability guard) are read by
anyone of the organization and replaced by admins (and organization-wide tokens).
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from domain.cadence import CadenceSettings
from domain.errors import Conflict, InvalidInput
from domain.outreach.cadence_control import (
    read_cadence_settings,
    require_admin,
    run_tick_now,
    save_cadence_settings,
)
from handlers.api.deps import ActorDep, IdentityDep, UowDep
from handlers.api.jobs import RuntimeDep
from integrations.holiday_calendar import public_holidays

router = APIRouter(prefix="/api/agent/cadence", tags=["cadence"])

# A local wall-clock time as "HH:MM": JSON Schema's `time` format would demand a UTC offset,
# and a send window's times are the contact's local times, without one.
LocalTime = Annotated[
    time,
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
            "examples": ["09:00"],
        }
    ),
]


class CadenceSettingsBody(CadenceSettings):
    """The organization's cadence settings, its window's times as local "HH:MM"."""

    window_start: LocalTime = Field(
        default=time(9, 0), description="Local time steps start, e.g. 09:00."
    )
    window_end: LocalTime = Field(default=time(17, 0), description="Local time steps stop.")

    @classmethod
    def of(cls, settings: CadenceSettings) -> CadenceSettingsBody:
        """Show stored settings."""
        return cls.model_validate(settings.model_dump())

    def settings(self) -> CadenceSettings:
        """The settings as the domain takes them."""
        return CadenceSettings.model_validate(self.model_dump())


class TickReportOut(BaseModel):
    """What one cadence tick did."""

    at: str = Field(description="When the tick ran (ISO 8601, UTC).")
    claimed: int = Field(description="Due enrollments the tick took up.")
    ran: int = Field(description="Steps that ran (a draft or a card was created).")
    deferred: int = Field(description="Steps that wait (their day, the window, fatigue, …).")
    paused: int
    stopped: int
    completed: int
    resumed: int = Field(description="Enrollments whose pause ended and are due again.")
    tasks_created: int
    wins: int = Field(description="Cadences stopped by a new order of the contact's client.")
    jobs_paused: list[int] = Field(
        description="Jobs of your organization the deliverability guard paused."
    )
    reasons: dict[str, int] = Field(description="Why enrollments waited, paused or stopped.")


@router.post(
    "/execute",
    response_model=TickReportOut,
    responses={409: {"description": "Another process is running a cadence tick right now."}},
)
def execute_cadence(who: IdentityDep, actor: ActorDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Advance the organization's cadences now: one tick, as the scheduler runs every
    minute, limited to this organization's due enrollments (admins).

    The tick takes the periodic lock as the scheduler's does, so two never run at once
    (a 409 meanwhile); its counts are this organization's only.
    """
    report = run_tick_now(actor, who.org_id, runtime.cadence_scheduler.run_once)
    if report is None:
        raise Conflict(
            "a cadence tick is running in another process right now; try again in a minute"
        )
    return report


@router.get("/settings", response_model=CadenceSettingsBody)
def read_settings(who: IdentityDep, uow: UowDep) -> CadenceSettingsBody:
    """Return the organization's cadence settings (the defaults until an admin sets them)."""
    return CadenceSettingsBody.of(read_cadence_settings(uow, who.org_id))


@router.put("/settings", response_model=CadenceSettingsBody)
def replace_settings(
    body: Annotated[CadenceSettingsBody, Body()], who: IdentityDep, actor: ActorDep, uow: UowDep
) -> CadenceSettingsBody:
    """Replace the organization's cadence settings (admins); a field left out takes its
    default. A time zone, holiday country or subdivision that does not exist is refused
    with the field named."""
    require_admin(actor, to="change the cadence settings")  # before saying what is wrong
    if body.holiday_country:
        # Raises InvalidInput naming holiday_country or holiday_subdivision.
        public_holidays(body.holiday_country, body.holiday_subdivision)
    elif body.holiday_subdivision:
        raise InvalidInput(
            "a holiday subdivision needs its country (holiday_country)",
            field="holiday_subdivision",
        )
    return CadenceSettingsBody.of(save_cadence_settings(uow, actor, who.org_id, body.settings()))
