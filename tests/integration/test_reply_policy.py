"""The auto-reply policy stored and served (/api/inbound/reply-policy), on SQLite and
PostgreSQL: defaults until an admin sets one, one row per organization, refusals with
their reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from domain.classification import Category
from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.deps import Deps
from domain.outreach import Actor
from domain.reply_policy import ReplyPolicies, ReplyPolicy
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import create_token, ensure_user
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_org

SessionFactory = Callable[[], Session]
POLICY = "/api/inbound/reply-policy"


# --- storage --------------------------------------------------------------------------------


@pytest.fixture
def orgs(session: Session) -> tuple[int, int]:
    first, second = make_org(session, name="Lone Star Appraisals"), make_org(session, name="Rival")
    session.commit()
    return first.id, second.id


@pytest.fixture
def policies(session_factory: SessionFactory, clock: FixedClock) -> ReplyPolicies:
    return ReplyPolicies(Deps(uow=lambda: UnitOfWork(session_factory), clock=clock))


def test_an_organization_without_a_stored_policy_reads_the_defaults_and_stores_no_row(
    policies: ReplyPolicies, orgs: tuple[int, int], session: Session
) -> None:
    assert policies.get_policy(orgs[0]) == ReplyPolicy()
    assert session.scalar(select(func.count()).select_from(m.OrgReplyPolicy)) == 0


def test_a_saved_policy_replaces_the_last_one_and_stays_with_its_organization(
    policies: ReplyPolicies,
    orgs: tuple[int, int],
    session: Session,
    session_factory: SessionFactory,
    clock: FixedClock,
) -> None:
    org, other = orgs
    first = policies.set_policy(None, org, enabled=True)
    clock.advance(minutes=5)
    with session_factory() as s:
        admin = ensure_user(s, org, email="ana@lonestar.test", role=UserRole.ADMIN)
        s.commit()
    second = policies.set_policy(
        Actor(org_id=org, user_id=admin, role="admin"),
        org,
        enabled=False,
        categories=[Category.REMOVE, Category.SCHEDULING],
        min_confidence=0.8,
    )

    assert first.updated_at is not None
    assert second.updated_at == first.updated_at + timedelta(minutes=5)
    assert policies.get_policy(org) == second
    assert (second.enabled, second.categories, second.min_confidence, second.updated_by) == (
        False,
        frozenset({Category.REMOVE, Category.SCHEDULING}),
        0.8,
        admin,
    )
    assert policies.get_policy(other) == ReplyPolicy()
    rows = session.execute(select(m.OrgReplyPolicy.org_id, m.OrgReplyPolicy.categories)).all()
    assert [tuple(r) for r in rows] == [(org, ["REMOVE", "SCHEDULING"])]


def test_a_stored_name_that_is_no_longer_allowed_is_dropped_when_read(
    policies: ReplyPolicies, orgs: tuple[int, int], session: Session
) -> None:
    org, _ = orgs
    policies.set_policy(None, org, enabled=True)
    session.execute(
        m.OrgReplyPolicy.__table__.update().values(
            categories=["STATUS", "AMC_ORDER", "OPPORTUNITY", "GONE"]
        )
    )
    session.commit()

    assert policies.get_policy(org).categories == frozenset({Category.STATUS})


def test_deleting_the_organization_deletes_its_policy(
    policies: ReplyPolicies, orgs: tuple[int, int], session: Session
) -> None:
    org, _ = orgs
    policies.set_policy(None, org, enabled=True)
    session.execute(m.Organization.__table__.delete().where(m.Organization.id == org))
    session.commit()

    assert session.scalar(select(func.count()).select_from(m.OrgReplyPolicy)) == 0


# --- REST -----------------------------------------------------------------------------------


@pytest.fixture
def api(engine: Engine, session_factory: SessionFactory, clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


def user_token(
    api: ApiWorld, session_factory: SessionFactory, email: str, role: UserRole
) -> tuple[int, dict[str, str]]:
    with session_factory() as session:
        user_id = ensure_user(session, api.org_id, email=email, role=role)
        _, token = create_token(session, api.org_id, name=email, user_id=user_id)
        session.commit()
    return user_id, api.auth(token)


def put(api: ApiWorld, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return api.client.put(POLICY, json=body, headers=headers or api.auth())


def test_the_api_shows_the_default_policy_until_an_admin_changes_it(
    api: ApiWorld, session_factory: SessionFactory, clock: FixedClock
) -> None:
    shown = api.client.get(POLICY, headers=api.auth(api.read_token))
    assert shown.status_code == 200
    assert shown.json() == {
        "enabled": False,
        "categories": ["REMOVE", "SCHEDULING", "STATUS"],
        "min_confidence": 0.95,
        "never_auto": ["AMC_ORDER", "CASE", "AP", "AR", "ESCALATE"],
        "description": ReplyPolicy().describe(),
        "updated_by": None,
        "updated_at": None,
    }
    admin, headers = user_token(api, session_factory, "ana@lonestar.test", UserRole.ADMIN)

    changed = put(api, {"enabled": True, "categories": ["STATUS"], "min_confidence": 0.97}, headers)

    assert changed.status_code == 200
    body = changed.json()
    assert (body["enabled"], body["categories"], body["min_confidence"]) == (
        True,
        ["STATUS"],
        0.97,
    )
    assert body["updated_by"] == admin
    assert body["updated_at"].startswith(clock.now().date().isoformat())
    assert api.client.get(POLICY, headers=api.auth()).json() == body
    assert api.client.get(POLICY, headers=api.auth(api.other_token)).json()["enabled"] is False


def test_a_put_leaving_fields_out_takes_their_defaults(api: ApiWorld) -> None:
    put(api, {"enabled": True, "categories": ["SCHEDULING"], "min_confidence": 0.6})

    body = put(api, {"enabled": True}).json()

    assert (body["categories"], body["min_confidence"]) == (
        ["REMOVE", "SCHEDULING", "STATUS"],
        0.95,
    )


def test_a_forbidden_category_is_refused_with_the_reason_and_nothing_changes(
    api: ApiWorld,
) -> None:
    refused = put(api, {"enabled": True, "categories": ["STATUS", "AMC_ORDER", "AR"]})

    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["message"].startswith("these categories can never be auto-sent (AMC_ORDER: ")
    assert "AR: accounts receivable is money" in error["message"]
    assert api.client.get(POLICY, headers=api.auth()).json()["enabled"] is False


def test_a_category_outside_status_scheduling_and_remove_is_refused_with_the_reason(
    api: ApiWorld,
) -> None:
    refused = put(api, {"enabled": True, "categories": ["STATUS", "OPPORTUNITY"]})

    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == (
        "OPPORTUNITY cannot be auto-sent: only REMOVE, SCHEDULING, STATUS may be, "
        "a person answers the rest"
    )
    assert api.client.get(POLICY, headers=api.auth()).json()["enabled"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"enabled": True, "min_confidence": 0.3},
        {"enabled": True, "min_confidence": 1.5},
        {"enabled": True, "categories": ["BILLING"]},
        {"enabled": "maybe"},
        {},
        {"enabled": True, "surprise": 1},
    ],
)
def test_a_malformed_policy_is_refused(api: ApiWorld, body: dict[str, Any]) -> None:
    assert put(api, body).status_code == 422
    assert api.client.get(POLICY, headers=api.auth()).json()["enabled"] is False


def test_a_rep_a_read_only_token_and_no_token_cannot_change_it(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    _, rep = user_token(api, session_factory, "rex@lonestar.test", UserRole.REP)

    assert put(api, {"enabled": True}, rep).status_code == 403
    assert put(api, {"enabled": True}, api.auth(api.read_token)).status_code == 403
    assert api.client.put(POLICY, json={"enabled": True}).status_code == 401
    assert api.client.get(POLICY).status_code == 401
    assert api.client.get(POLICY, headers=api.auth()).json()["enabled"] is False
