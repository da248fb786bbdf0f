"""Account rules and use cases, on a fake unit of work: who becomes admin, how a first-seen
Slack user is linked, which tokens are refused, that a token's secret is shown once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType

import pytest

from domain.accounts import (
    NO_EMAIL_DOMAIN,
    Accounts,
    Org,
    OrgSummary,
    StoredToken,
    TokenSummary,
    UnknownUser,
    User,
    appoint_installer,
    hash_token,
)
from domain.clock import FixedClock
from domain.contacts import TokenScope, UserRole
from domain.errors import Conflict, InvalidInput, NotFound

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class _Token:
    stored: StoredToken
    name: str
    token_hash: str
    prefix: str


@dataclass
class _Rows:
    """What the fake database holds."""

    orgs: dict[int, Org] = field(default_factory=dict)
    users: dict[int, User] = field(default_factory=dict)
    tokens: dict[int, _Token] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class FakeOrgs:
    def __init__(self, rows: _Rows) -> None:
        self._rows = rows

    def add(self, *, slug: str, name: str) -> Org:
        org = Org(self._rows.new_id(), slug, name)
        self._rows.orgs[org.id] = org
        return org

    def find(self, org_id: int) -> Org | None:
        return self._rows.orgs.get(org_id)

    def find_by_slug(self, slug: str) -> Org | None:
        return next((o for o in self._rows.orgs.values() if o.slug == slug), None)

    def find_by_slack_team(self, team_id: str) -> Org | None:
        return next((o for o in self._rows.orgs.values() if o.slack_team_id == team_id), None)

    def set_slack_team(self, org_id: int, team_id: str) -> None:
        self._rows.orgs[org_id] = replace(self._rows.orgs[org_id], slack_team_id=team_id)

    def list_summaries(self) -> list[OrgSummary]:
        raise NotImplementedError("counts are a query: tested on the databases")


class FakeUsers:
    def __init__(self, rows: _Rows) -> None:
        self._rows = rows

    def find(self, org_id: int, user_id: int) -> User | None:
        user = self._rows.users.get(user_id)
        return user if user is not None and user.org_id == org_id else None

    def find_by_email(self, org_id: int, email: str) -> User | None:
        return self._first(org_id, lambda u: u.email == email)

    def find_by_slack_id(self, org_id: int, slack_user_id: str) -> User | None:
        return self._first(org_id, lambda u: u.slack_user_id == slack_user_id)

    def has_admin(self, org_id: int) -> bool:
        return self._first(org_id, lambda u: u.role == UserRole.ADMIN) is not None

    def add(
        self,
        org_id: int,
        *,
        email: str,
        name: str | None,
        role: UserRole,
        slack_user_id: str | None,
    ) -> User:
        user = User(self._rows.new_id(), org_id, email, name, role.value, slack_user_id)
        self._rows.users[user.id] = user
        return user

    def save(self, user: User) -> None:
        assert user.id in self._rows.users
        self._rows.users[user.id] = user

    def _first(self, org_id: int, match: Callable[[User], bool]) -> User | None:
        found = (u for u in self._rows.users.values() if u.org_id == org_id and match(u))
        return next(found, None)


class FakeTokens:
    def __init__(self, rows: _Rows) -> None:
        self._rows = rows

    def add(
        self,
        org_id: int,
        *,
        name: str,
        scope: TokenScope,
        user_id: int | None,
        token_hash: str,
        prefix: str,
    ) -> int:
        stored = StoredToken(self._rows.new_id(), org_id, user_id, scope, None, None)
        self._rows.tokens[stored.id] = _Token(stored, name, token_hash, prefix)
        return stored.id

    def find_by_hash(self, token_hash: str) -> StoredToken | None:
        found = (t.stored for t in self._rows.tokens.values() if t.token_hash == token_hash)
        return next(found, None)

    def touch(self, token_id: int, *, at: datetime) -> None:
        token = self._rows.tokens[token_id]
        token.stored = replace(token.stored, last_used_at=at)

    def revoke(self, org_id: int, token_id: int, *, at: datetime) -> bool:
        token = self._rows.tokens.get(token_id)
        if token is None or token.stored.org_id != org_id:
            return False
        token.stored = replace(token.stored, revoked_at=at)
        return True

    def list_summaries(self, org_id: int) -> list[TokenSummary]:
        return [
            TokenSummary(t.stored.id, t.name, t.stored.scope, None, START, None, None)
            for t in self._rows.tokens.values()
            if t.stored.org_id == org_id
        ]


class FakeUnitOfWork:
    """Works on a copy of the committed rows; `commit` keeps the copy, leaving drops it."""

    def __init__(self, database: FakeDatabase) -> None:
        self._database = database
        self._rows = _Rows()

    @property
    def orgs(self) -> FakeOrgs:
        return FakeOrgs(self._rows)

    @property
    def users(self) -> FakeUsers:
        return FakeUsers(self._rows)

    @property
    def tokens(self) -> FakeTokens:
        return FakeTokens(self._rows)

    def __enter__(self) -> FakeUnitOfWork:
        self._rows = copy.deepcopy(self._database.rows)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._rows = _Rows()

    def commit(self) -> None:
        self._database.rows = copy.deepcopy(self._rows)
        self._database.commits += 1


@dataclass
class FakeDatabase:
    rows: _Rows = field(default_factory=_Rows)
    commits: int = 0

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def accounts(database: FakeDatabase, clock: FixedClock) -> Accounts:
    return Accounts(uow=database.uow, clock=clock)


def users_of(database: FakeDatabase) -> list[tuple[str, str, str | None, str | None]]:
    """(email, role, name, Slack id) of every user, by email."""
    return sorted((u.email, u.role, u.name, u.slack_user_id) for u in database.rows.users.values())


# --- organizations and workspaces ------------------------------------------------------------


def test_an_organization_is_created_with_its_admin_and_workspace_in_one_commit(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(
        slug=" LoneStar ", name="", admin_email="Boss@LoneStar.example.com", slack_team_id="T01"
    )
    assert (org.slug, org.name, org.slack_team_id) == ("lonestar", "lonestar", "T01")
    assert users_of(database) == [("boss@lonestar.example.com", "admin", None, None)]
    assert database.commits == 1


def test_a_slug_that_is_not_one_or_is_taken_is_refused_and_nothing_is_stored(
    accounts: Accounts, database: FakeDatabase
) -> None:
    with pytest.raises(InvalidInput, match="slug must be 2-63 characters"):
        accounts.create_org(slug="x", name="X")
    accounts.create_org(slug="lonestar", name="Lone Star")
    with pytest.raises(Conflict, match="organization 'lonestar' already exists"):
        accounts.create_org(slug="lonestar", name="Again", admin_email="a@example.com")
    assert [o.name for o in database.rows.orgs.values()] == ["Lone Star"]
    assert users_of(database) == []


def test_a_workspace_of_another_organization_is_refused_and_the_new_one_is_not_kept(
    accounts: Accounts, database: FakeDatabase
) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star", slack_team_id="T01")
    with pytest.raises(Conflict, match="Slack workspace T01 already belongs to organization"):
        accounts.create_org(slug="rival", name="Rival", slack_team_id="T01")
    assert [o.slug for o in database.rows.orgs.values()] == ["lonestar"]


def test_an_organization_is_not_moved_to_another_workspace(accounts: Accounts) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star", slack_team_id="T01")
    with pytest.raises(Conflict, match="lonestar is already bound to Slack workspace T01"):
        accounts.link_slack_team("lonestar", "T02")
    assert accounts.link_slack_team("lonestar", "T01").slack_team_id == "T01"
    assert accounts.org_for_slack_team("T02") is None


def test_an_organization_is_found_by_slug_or_by_id(accounts: Accounts) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star")
    assert accounts.find_org(" LoneStar") == org
    assert accounts.find_org(str(org.id)) == org
    with pytest.raises(NotFound, match="organization 'rival' not found"):
        accounts.find_org("rival")


# --- the installer becomes admin ------------------------------------------------------------


def test_the_installer_becomes_the_admin_of_an_organization_without_one(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star")
    with database.uow() as uow:
        admin = appoint_installer(
            uow.users, org.id, slack_user_id="U01", email="Ana@LoneStar.example.com", name="Ana"
        )
    assert admin is not None
    assert (admin.email, admin.role, admin.name, admin.slack_user_id) == (
        "ana@lonestar.example.com",
        "admin",
        "Ana",
        "U01",
    )


def test_an_installer_who_is_a_rep_already_becomes_admin_and_keeps_their_name(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star")
    accounts.link_first_seen_slack_user(
        org.id, slack_user_id="U09", email="ana@lonestar.example.com", name="Ana López"
    )
    with database.uow() as uow:
        admin = appoint_installer(
            uow.users, org.id, slack_user_id="U01", email="ana@lonestar.example.com", name="Ana"
        )
        uow.commit()
    assert admin is not None
    assert users_of(database) == [("ana@lonestar.example.com", "admin", "Ana López", "U01")]


def test_an_installer_is_not_made_admin_of_an_organization_that_has_one(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star", admin_email="boss@example.com")
    with database.uow() as uow:
        assert (
            appoint_installer(uow.users, org.id, slack_user_id="U01", email=None, name=None) is None
        )
        uow.commit()
    assert users_of(database) == [("boss@example.com", "admin", None, None)]


def test_an_installer_slack_gave_no_address_for_is_found_by_their_slack_id(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star")
    rep = accounts.link_first_seen_slack_user(
        org.id, slack_user_id="U0AB", email="ana@lonestar.example.com", name="Ana"
    )
    with database.uow() as uow:
        admin = appoint_installer(uow.users, org.id, slack_user_id="U0AB", email=None, name=None)
        uow.commit()
    assert admin is not None
    assert admin.id == rep.id
    assert users_of(database) == [("ana@lonestar.example.com", "admin", "Ana", "U0AB")]


def test_an_unknown_installer_slack_gave_no_address_for_gets_one_no_mail_goes_to(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star")
    with database.uow() as uow:
        admin = appoint_installer(uow.users, org.id, slack_user_id="U0AB", email=None, name="Ana")
        uow.commit()
    assert admin is not None
    assert users_of(database) == [(f"u0ab@{NO_EMAIL_DOMAIN}", "admin", "Ana", "U0AB")]


# --- first-seen Slack users -----------------------------------------------------------------


def test_a_first_seen_slack_user_is_linked_to_the_user_with_their_address(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star", slack_team_id="T01")
    token = accounts.create_token(
        "lonestar", name="maria", user_email="maria@lonestar.example.com", create_user=True
    )
    commits = database.commits
    user = accounts.link_first_seen_slack_user(
        org.id, slack_user_id="U02", email="Maria@LoneStar.example.com", name="María"
    )
    assert database.commits == commits + 1
    assert database.rows.tokens[token.id].stored.user_id == user.id
    assert users_of(database) == [("maria@lonestar.example.com", "rep", "María", "U02")]
    assert accounts.find_slack_user("T01", "U02") == (org, user)


def test_a_first_seen_slack_user_with_an_unknown_address_becomes_a_rep(
    accounts: Accounts, database: FakeDatabase
) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star", slack_team_id="T01")
    assert accounts.find_slack_user("T01", "U03") == (org, None)
    user = accounts.link_first_seen_slack_user(
        org.id, slack_user_id="U03", email="jose@lonestar.example.com", name=None
    )
    assert (user.role, user.label) == ("rep", "jose@lonestar.example.com")
    assert accounts.find_slack_user("T01", "U03") == (org, user)
    assert accounts.find_slack_user("T09", "U03") == (None, None)


def test_the_sandbox_bootstrap_can_be_repeated(accounts: Accounts, database: FakeDatabase) -> None:
    for _ in range(2):
        org = accounts.bootstrap_sandbox(
            team_id="T0SANDBOX",
            slug="sandbox",
            name="Sandbox Appraisals",
            admin_email="admin@sandbox.example.com",
            admin_slack_user_id="U0ADMIN",
            admin_name="Sandbox Admin",
        )
        assert (org.slug, org.slack_team_id) == ("sandbox", "T0SANDBOX")
    assert len(database.rows.orgs) == 1
    assert users_of(database) == [
        ("admin@sandbox.example.com", "admin", "Sandbox Admin", "U0ADMIN")
    ]


# --- API tokens -----------------------------------------------------------------------------


def test_a_token_secret_is_returned_once_and_only_its_hash_is_kept(
    accounts: Accounts, database: FakeDatabase
) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star")
    token = accounts.create_token("lonestar", name="ops", scope=TokenScope.READ)
    assert token.secret.startswith("sbt_")
    kept = database.rows.tokens[token.id]
    assert (kept.token_hash, kept.prefix) == (hash_token(token.secret), token.secret[:10])
    assert token.secret not in repr(database.rows)
    _, listed = accounts.list_tokens("lonestar")
    assert token.secret not in repr(listed)
    assert [(t.id, t.name, t.scope) for t in listed] == [(token.id, "ops", TokenScope.READ)]


def test_a_token_for_an_address_that_is_not_a_user_needs_create_user(
    accounts: Accounts, database: FakeDatabase
) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star")
    with pytest.raises(UnknownUser) as refused:
        accounts.create_token("lonestar", name="x", user_email="nobody@example.com")
    assert (refused.value.email, refused.value.org.slug) == ("nobody@example.com", "lonestar")
    assert database.rows.tokens == {}
    assert users_of(database) == []


def test_a_token_authenticates_as_what_it_was_made_for(accounts: Accounts) -> None:
    org = accounts.create_org(slug="lonestar", name="Lone Star")
    token = accounts.create_token(
        "lonestar", name="maria", user_email="maria@example.com", create_user=True
    )
    identity = accounts.authenticate_token(token.secret)
    assert identity is not None
    user = accounts.find_user(org.id, identity.user_id or 0)
    assert (identity.token_id, identity.org_id, identity.scope) == (
        token.id,
        org.id,
        TokenScope.WRITE,
    )
    assert user is not None
    assert user.email == "maria@example.com"


def test_a_revoked_or_unknown_token_is_refused(
    accounts: Accounts, database: FakeDatabase, clock: FixedClock
) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star")
    token = accounts.create_token("lonestar", name="ops")
    accounts.revoke_token("lonestar", token.id)
    assert database.rows.tokens[token.id].stored.revoked_at == START
    commits = database.commits
    assert accounts.authenticate_token(token.secret) is None
    assert accounts.authenticate_token("sbt_never-issued") is None
    assert database.commits == commits


def test_a_token_of_another_organization_is_not_revoked(
    accounts: Accounts, database: FakeDatabase
) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star")
    accounts.create_org(slug="rival", name="Rival")
    token = accounts.create_token("lonestar", name="ops")
    with pytest.raises(NotFound, match=f"token {token.id} not found"):
        accounts.revoke_token("rival", token.id)
    assert database.rows.tokens[token.id].stored.revoked_at is None


def test_a_token_records_its_use_at_most_once_a_minute(
    accounts: Accounts, database: FakeDatabase, clock: FixedClock
) -> None:
    accounts.create_org(slug="lonestar", name="Lone Star")
    token = accounts.create_token("lonestar", name="ops")
    commits = database.commits
    assert accounts.authenticate_token(token.secret) is not None
    clock.advance(seconds=60)
    assert accounts.authenticate_token(token.secret) is not None
    assert database.commits == commits + 1
    assert database.rows.tokens[token.id].stored.last_used_at == START
    clock.advance(seconds=1)
    assert accounts.authenticate_token(token.secret) is not None
    assert database.commits == commits + 2
    assert database.rows.tokens[token.id].stored.last_used_at == clock.now()
