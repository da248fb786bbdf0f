"""Account test data on a session: the domain's account rules over the storage repositories.

The caller commits (or its test transaction rolls back), as with the other builders.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from domain import accounts
from domain.accounts import Org
from domain.contacts import TokenScope, UserRole
from storage.accounts import OrgRepo, TokenRepo, UserRepo


def create_org(session: Session, *, slug: str, name: str) -> Org:
    """Add an organization."""
    return accounts.add_org(OrgRepo(session), slug=slug, name=name)


def link_slack_team(session: Session, org_id: int, team_id: str) -> Org:
    """Bind a Slack workspace to an organization."""
    return accounts.bind_slack_team(OrgRepo(session), org_id, team_id)


def org_for_slack_team(session: Session, team_id: str) -> Org | None:
    """Return the organization a Slack workspace is bound to, if any."""
    return OrgRepo(session).find_by_slack_team(team_id)


def ensure_user(
    session: Session,
    org_id: int,
    *,
    email: str,
    name: str | None = None,
    role: UserRole = UserRole.REP,
) -> int:
    """Return the id of the user with this email, adding them if needed."""
    return accounts.ensure_user(UserRepo(session), org_id, email=email, name=name, role=role).id


def create_token(
    session: Session,
    org_id: int,
    *,
    name: str,
    scope: TokenScope = TokenScope.WRITE,
    user_id: int | None = None,
) -> tuple[int, str]:
    """Add an API token; return its id and its secret."""
    org = OrgRepo(session).find(org_id)
    assert org is not None, f"no organization {org_id}"
    issued = accounts.issue_token(TokenRepo(session), org, name=name, scope=scope, user_id=user_id)
    return issued.id, issued.secret


def revoke_token(session: Session, org_id: int, token_id: int, *, now: datetime) -> None:
    """Revoke an API token."""
    assert TokenRepo(session).revoke(org_id, token_id, at=now), f"no token {token_id}"
