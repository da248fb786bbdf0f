"""Cadence controls for people: the organization's cadence settings, and a tick run now.

Anyone of the organization may read its cadence settings; changing them, or running the
cadence tick at once, is for admins (and for organization-wide API tokens, which act for
the whole organization, as elsewhere). Whether a holiday country or subdivision exists is
the holiday calendar's to say: the caller checks it before saving (the domain does not
know the `holidays` package).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from domain.cadence import CadenceSettings
from domain.errors import NotFound, NotPermitted
from domain.outreach.cadences import TickReport
from domain.outreach.common import Actor
from domain.ports import OutreachUnitOfWork

log = logging.getLogger(__name__)


def require_admin(actor: Actor | None, *, to: str) -> None:
    """Refuse unless the actor is an admin or an organization-wide token (None)."""
    if actor is not None and not actor.is_admin:
        raise NotPermitted(f"Only an admin can {to}; ask an admin of your organization.")


def read_cadence_settings(uow: OutreachUnitOfWork, org_id: int) -> CadenceSettings:
    """Return the organization's cadence settings (the defaults where it set none)."""
    with uow:
        return uow.cadence.settings(org_id)


def save_cadence_settings(
    uow: OutreachUnitOfWork, actor: Actor | None, org_id: int, settings: CadenceSettings
) -> CadenceSettings:
    """Replace the organization's cadence settings (admins); return them as stored."""
    require_admin(actor, to="change the cadence settings")
    with uow:
        uow.cadence.save_settings(org_id, settings)
        uow.commit()
        stored = uow.cadence.settings(org_id)
    log.info(
        "cadence settings changed",
        extra={"org_id": org_id, "by": actor.user_id if actor is not None else None},
    )
    return stored


def run_tick_now(
    uow: OutreachUnitOfWork,
    actor: Actor | None,
    org_id: int,
    run_once: Callable[[], TickReport | None],
) -> dict[str, Any] | None:
    """Run one cadence tick now (admins); None when another process is running one.

    The tick advances every organization's due enrollments (it would within the minute
    anyway); the report shows the caller only the jobs of its own organization that the
    guard paused, the counts being the tick's.
    """
    require_admin(actor, to="run the cadence now")
    report = run_once()
    if report is None:
        return None
    shown = report.as_dict()
    with uow:
        shown["jobs_paused"] = [j for j in report.jobs_paused if _is_ours(uow, org_id, j)]
    return shown


def _is_ours(uow: OutreachUnitOfWork, org_id: int, job_id: int) -> bool:
    try:
        uow.jobs.get(org_id, job_id)
    except NotFound:
        return False
    return True
