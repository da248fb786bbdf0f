"""The organization's triage channel: where reply cards go that no rep or campaign channel takes.

Anyone with a token of the organization may read it, with how reply cards are routed;
changing it is for admins (and for organization-wide tokens, which act for the whole
organization, as elsewhere). Setting a channel checks that Salesbot can post there: an
archived channel is refused, one Salesbot is not in (or could not check) is stored with
a warning.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.reply_routing import Triage, TriageView
from handlers.api.deps import ActorDep, IdentityDep

router = APIRouter(prefix="/api/inbound/triage", tags=["inbound"])


class TriageBody(BaseModel):
    """The triage channel to use; null clears it."""

    model_config = ConfigDict(extra="forbid")

    channel_id: str | None = Field(
        min_length=1,
        max_length=100,
        description="A Slack channel id (C0123ABCD), or a channel as Slack escapes it "
        "(<#C0123ABCD|replies>); null: no triage channel. A direct message is refused.",
    )


class TriageOut(BaseModel):
    """The triage channel and how reply cards are routed."""

    channel_id: str | None = Field(description="The triage channel; null: none is set.")
    routing: list[str] = Field(description="Where a reply card goes, in the order tried.")
    notes: list[str] = Field(description="What happens when a place refuses the card.")
    warning: str | None = Field(
        default=None,
        description="After a change: why cards may not be posted in the channel set "
        "(Salesbot is not in it, or it could not be checked).",
    )
    reposted: int = Field(
        default=0,
        description="After setting a channel: the reply cards that had nowhere to go, "
        "queued to be posted again.",
    )

    @classmethod
    def of(cls, view: TriageView) -> TriageOut:
        """Show a triage setting."""
        return cls(
            channel_id=view.channel_id,
            routing=list(view.routing),
            notes=list(view.notes),
            warning=view.warning,
            reposted=view.reposted,
        )


def get_triage(request: Request) -> Triage:
    """Return the triage use cases the app was built with."""
    triage: Triage = request.app.state.runtime.triage
    return triage


TriageDep = Annotated[Triage, Depends(get_triage)]


@router.get("", response_model=TriageOut)
def read_triage(who: IdentityDep, triage: TriageDep) -> TriageOut:
    """Return the triage channel and how reply cards are routed."""
    return TriageOut.of(triage.show(who.org_id))


@router.put("", response_model=TriageOut)
def replace_triage(
    body: TriageBody, who: IdentityDep, actor: ActorDep, triage: TriageDep
) -> TriageOut:
    """Set the triage channel, or clear it with null (admins)."""
    if body.channel_id is None:
        return TriageOut.of(triage.clear(actor, who.org_id))
    return TriageOut.of(triage.set_channel(actor, who.org_id, body.channel_id))
