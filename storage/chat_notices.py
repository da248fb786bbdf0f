"""Notices for Slack queued by a use case, sent after its commit by the Slack worker.

A use case that must tell someone in Slack (a rule proposed to the admins, a proposal
decided) must not call Slack inside its unit of work (a slow or failing Slack would hold or
undo the transaction), nor after it without a record (a crash between the commit and the
call would lose the message). So the notice is a row of the queue of deferred Slack calls
(`slack_deferred_calls`), written in the same unit of work: it exists exactly when the
change that calls for it is committed, and the replay worker (`jobs.slack_replay`) runs it
with its lease, retries and failure record, like the work a listener leaves after its ack.

The row carries an event of Salesbot's own (`NOTICE_EVENT`) addressed to the organization's
workspace; `handlers/slack/proposals.py` registers the listener whose lazy function
(`NOTICE_FUNCTION`) sends it. Slack never sends such an event, and the web route only takes
requests Slack signed, so only this queue produces them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Organization, SlackDeferredCall

#: The event type of a queued notice, and the lazy listener function that sends it.
NOTICE_EVENT: Final = "salesbot_notice"
NOTICE_FUNCTION: Final = "send_notice"
CONTENT_TYPE: Final = "application/json"


def notice_body(team_id: str, org_id: int, kind: str, data: Mapping[str, Any]) -> str:
    """The request the replay worker runs for a notice (an event addressed to the workspace)."""
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": team_id,
            "event": {"type": NOTICE_EVENT, "notice": kind, "org_id": org_id, "data": dict(data)},
        },
        separators=(",", ":"),
    )


class ChatNoticeRepo:
    """Queues notices in the caller's transaction (nothing here commits)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def queue(self, org_id: int, kind: str, data: Mapping[str, Any], *, now: datetime) -> bool:
        """Queue a notice; False when the organization is bound to no Slack workspace."""
        team_id = self._s.scalar(
            select(Organization.slack_team_id).where(Organization.id == org_id)
        )
        if not team_id:
            return False
        self._s.add(
            SlackDeferredCall(
                org_id=org_id,
                team_id=team_id,
                function=NOTICE_FUNCTION,
                body=notice_body(team_id, org_id, kind, data),
                content_type=CONTENT_TYPE,
                status="pending",
                attempts=0,
                not_before=now,
                created_at=now,
            )
        )
        self._s.flush()
        return True
