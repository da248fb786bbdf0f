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
from domain.errors import NotPermitted
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
    actor: Actor | None,
    org_id: int,
    run_once: Callable[[int], TickReport | None],
) -> dict[str, Any] | None:
    """Run one cadence tick now for the caller's organization (admins); None when another
    process is running a tick.

    Only the organization's own due enrollments are advanced, and the report counts only
    them: an admin neither moves nor sees another organization's cadences.
    """
    require_admin(actor, to="run the cadence now")
    report = run_once(org_id)
    return report.as_dict() if report is not None else None
