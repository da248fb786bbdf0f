"""The classification rules over HTTP (/api/inbound/rules), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.classification import Category, Decider, Intent
from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.rules import Rules
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.api import ApiWorld, make_api_world

RULES = "/api/inbound/rules"
PINNACLE = {"rule_type": "sender_domain", "pattern": "pinnacle.com", "category": "AMC_ORDER"}


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


def user_token(
    api: ApiWorld, session_factory: Callable[[], Session], email: str, role: UserRole
) -> dict[str, str]:
    """The Authorization header of a token acting as a user of the main organization."""
    with session_factory() as session:
        user_id = ensure_user(session, api.org_id, email=email, role=role)
        _, token = create_token(session, api.org_id, name=email, user_id=user_id)
        session.commit()
    return api.auth(token)


def rules_of(api: ApiWorld) -> Rules:
    rules: Rules = api.client.app.state.runtime.rules  # type: ignore[attr-defined]
    return rules


def add(api: ApiWorld, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return api.client.post(RULES, json=body, headers=headers or api.auth())


def test_a_rule_is_added_listed_read_changed_and_removed(api: ApiWorld) -> None:
    created = add(api, {**PINNACLE, "priority": 10})
    assert created.status_code == 201
    rule = created.json()
    assert {k: rule[k] for k in ("rule_type", "pattern", "category", "priority", "is_active")} == {
        "rule_type": "sender_domain",
        "pattern": "pinnacle.com",
        "category": "AMC_ORDER",
        "priority": 10,
        "is_active": True,
    }
    assert rule["created_by"] is None  # an organization-wide token
    path = f"{RULES}/{rule['id']}"

    assert api.client.get(RULES, headers=api.auth()).json() == [rule]
    assert api.client.get(path, headers=api.auth()).json() == rule

    changed = api.client.patch(
        path, json={"category": "ESCALATE", "is_active": False}, headers=api.auth()
    )
    assert changed.status_code == 200
    assert (changed.json()["category"], changed.json()["is_active"]) == ("ESCALATE", False)
    assert changed.json()["priority"] == 10

    assert api.client.delete(path, headers=api.auth()).status_code == 204
    assert api.client.get(path, headers=api.auth()).status_code == 404
    assert api.client.get(RULES, headers=api.auth()).json() == []


def test_rules_are_listed_in_the_order_they_are_tried(api: ApiWorld) -> None:
    late = add(api, {**PINNACLE, "priority": 50}).json()
    early = add(
        api,
        {
            "rule_type": "subject_contains",
            "pattern": "order",
            "category": "AMC_ORDER",
            "priority": 5,
        },
    ).json()
    tie = add(
        api, {"rule_type": "sender_email", "pattern": "a@b.com", "category": "CASE", "priority": 50}
    ).json()

    listed = [r["id"] for r in api.client.get(RULES, headers=api.auth()).json()]

    assert listed == [early["id"], late["id"], tie["id"]]


def test_a_rule_added_through_the_api_classifies_the_next_message_at_once(api: ApiWorld) -> None:
    rules = rules_of(api)
    assert rules.classify(api.org_id, sender_email="dana@mail.pinnacle.com", subject="Hi") is None

    rule = add(api, {**PINNACLE, "category": "REMOVE"}).json()
    found = rules.classify(api.org_id, sender_email="dana@mail.pinnacle.com", subject="Hi")

    assert found is not None
    assert (found.category, found.intent, found.confidence, found.decided_by) == (
        Category.REMOVE,
        Intent.UNSUBSCRIBE,
        1.0,
        Decider.RULE,
    )
    assert found.decided_detail == f"rule {rule['id']} (sender_domain)"
    api.client.patch(f"{RULES}/{rule['id']}", json={"is_active": False}, headers=api.auth())
    assert rules.classify(api.org_id, sender_email="dana@pinnacle.com", subject="Hi") is None


def test_the_rule_is_stored_as_given_with_who_added_it(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    admin = user_token(api, session_factory, "ana@lonestar.test", UserRole.ADMIN)

    rule = add(api, {**PINNACLE, "pattern": "@Pinnacle.COM"}, admin).json()

    with session_factory() as session:
        row = session.scalars(select(m.ClassifierRule)).one()
        assert (row.org_id, row.pattern, row.category, row.created_by) == (
            api.org_id,
            "pinnacle.com",
            "AMC_ORDER",
            rule["created_by"],
        )
        assert rule["created_by"] is not None
        assert row.created_at == clock.now()


# --- who may do what ------------------------------------------------------------------------


def test_a_rep_may_read_rules_but_not_change_them(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    rule = add(api, PINNACLE).json()
    rep = user_token(api, session_factory, "maria@lonestar.test", UserRole.REP)
    path = f"{RULES}/{rule['id']}"

    assert api.client.get(RULES, headers=rep).json() == [rule]
    for answer in (
        add(api, {**PINNACLE, "pattern": "other.com"}, rep),
        api.client.patch(path, json={"priority": 1}, headers=rep),
        api.client.delete(path, headers=rep),
    ):
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "forbidden"
        assert answer.json()["error"]["message"].startswith("Only an admin can ")
    assert api.client.get(path, headers=api.auth()).json() == rule


def test_an_admin_token_changes_rules(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    admin = user_token(api, session_factory, "ana@lonestar.test", UserRole.ADMIN)

    rule = add(api, PINNACLE, admin)
    assert rule.status_code == 201
    path = f"{RULES}/{rule.json()['id']}"
    assert api.client.patch(path, json={"priority": 7}, headers=admin).json()["priority"] == 7
    assert api.client.delete(path, headers=admin).status_code == 204


def test_a_read_only_token_cannot_add_a_rule(api: ApiWorld) -> None:
    answer = add(api, PINNACLE, api.auth(api.read_token))

    assert answer.status_code == 403
    assert "read-only" in answer.json()["error"]["message"]


def test_another_organization_s_rules_are_not_found(api: ApiWorld) -> None:
    rule = add(api, PINNACLE).json()
    path = f"{RULES}/{rule['id']}"
    other = api.auth(api.other_token)

    assert api.client.get(RULES, headers=other).json() == []
    assert api.client.get(path, headers=other).status_code == 404
    assert api.client.patch(path, json={"priority": 1}, headers=other).status_code == 404
    assert api.client.delete(path, headers=other).status_code == 404
    assert api.client.get(path, headers=api.auth()).json() == rule
    assert (
        rules_of(api).classify(api.other_org_id, sender_email="a@pinnacle.com", subject="") is None
    )


def test_without_a_token_rules_are_refused(api: ApiWorld) -> None:
    assert api.client.get(RULES).status_code == 401


# --- refusals -------------------------------------------------------------------------------


def test_a_backreference_is_refused_with_re2_s_reason(api: ApiWorld) -> None:
    answer = add(api, {"rule_type": "subject_regex", "pattern": r"(a)\1", "category": "CASE"})

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert "invalid escape sequence: \\1" in error["message"]
    assert "RE2 has no backreferences" in error["message"]
    assert error["details"] == [{"field": "pattern", "message": error["message"]}]
    assert api.client.get(RULES, headers=api.auth()).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PINNACLE, "category": "SPAM"}, "category"),
        ({**PINNACLE, "rule_type": "body_contains"}, "rule_type"),
        ({**PINNACLE, "pattern": ""}, "pattern"),
        ({**PINNACLE, "pattern": "x" * 501}, "pattern"),
        ({**PINNACLE, "pattern": "a\x00b"}, "pattern"),
        ({**PINNACLE, "priority": 10_001}, "priority"),
        ({**PINNACLE, "priority": -1}, "priority"),
        ({**PINNACLE, "owner": "me"}, "owner"),
    ],
)
def test_a_malformed_body_is_refused_naming_the_field(
    api: ApiWorld, body: dict[str, Any], field: str
) -> None:
    answer = add(api, body)

    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["error"]["details"]] == [field]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**PINNACLE, "pattern": "not a domain"}, "is not a domain"),
        ({**PINNACLE, "rule_type": "sender_email"}, "is not an email address"),
        ({**PINNACLE, "pattern": "   "}, "pattern must not be empty"),
        ({"rule_type": "subject_regex", "pattern": ".*", "category": "REMOVE"}, "every subject"),
    ],
)
def test_a_pattern_that_cannot_match_as_written_is_refused(
    api: ApiWorld, body: dict[str, Any], message: str
) -> None:
    answer = add(api, body)

    assert answer.status_code == 422
    assert message in answer.json()["error"]["message"]


def test_the_same_pattern_twice_is_a_conflict(api: ApiWorld) -> None:
    first = add(api, PINNACLE).json()

    answer = add(api, {**PINNACLE, "pattern": "PINNACLE.com", "category": "CASE"})

    assert answer.status_code == 409
    assert (
        f"rule {first['id']} already has this sender_domain pattern"
        in (answer.json()["error"]["message"])
    )


def test_an_empty_change_is_refused(api: ApiWorld) -> None:
    rule = add(api, PINNACLE).json()

    answer = api.client.patch(f"{RULES}/{rule['id']}", json={}, headers=api.auth())

    assert answer.status_code == 422
    assert "nothing to change" in answer.json()["error"]["message"]


def test_a_pattern_cannot_be_changed_in_place(api: ApiWorld) -> None:
    rule = add(api, PINNACLE).json()

    answer = api.client.patch(
        f"{RULES}/{rule['id']}", json={"pattern": "other.com"}, headers=api.auth()
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "pattern"


def test_an_id_too_large_for_the_database_is_invalid_input(api: ApiWorld) -> None:
    assert api.client.get(f"{RULES}/{2**63}", headers=api.auth()).status_code == 422
