"""The mailbox use cases on a fake unit of work and a fake Google: which consents connect a
mailbox, which are refused, and what each leaves stored."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import pytest

from domain.clock import FixedClock
from domain.errors import ExternalServiceError, NotFound, NotPermitted
from domain.mailboxes import (
    STATE_TTL,
    AccountStatus,
    AccountTokens,
    ConsentRefused,
    ConsentRequest,
    ConsentStart,
    ConsumedState,
    GmailAccountView,
    Grant,
    MailboxAllowance,
    MailboxAllowances,
    Mailboxes,
    MailboxIdentity,
    MailboxPace,
    MailboxTaken,
    RevokeResult,
)
from integrations.crypto import LinkSigner

ORG = 1
MARIA, JOSE, ANA = 10, 11, 12
MARIA_EMAIL = "maria@lonestar.example.com"
JOSE_EMAIL = "jose@lonestar.example.com"
ANA_EMAIL = "ana@lonestar.example.com"
SHARED_EMAIL = "orders@lonestar.example.com"
SCOPES = ("gmail.readonly", "gmail.send", "gmail.modify", "userinfo.email")
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


# --- fakes ----------------------------------------------------------------------------------


@dataclass
class _User:
    email: str
    name: str
    role: str
    allowed: str | None = None
    allowed_by: str | None = None
    allowed_at: datetime | None = None


@dataclass
class _Account:
    view: GmailAccountView
    tokens: AccountTokens | None


@dataclass
class _State:
    org_id: int
    user_id: int
    code_verifier: str
    redirect_uri: str
    expires_at: datetime
    used_at: datetime | None = None


@dataclass
class Stored:
    """What the fake database holds once committed."""

    users: dict[int, _User] = field(default_factory=dict)
    accounts: dict[int, _Account] = field(default_factory=dict)
    states: dict[str, _State] = field(default_factory=dict)
    sends: list[tuple[int, datetime]] = field(default_factory=list)


class FakeGmailAccounts:
    def __init__(self, data: Stored) -> None:
        self._d = data

    def save_connection(
        self,
        org_id: int,
        *,
        user_id: int,
        email: str,
        scopes: Any,
        refresh_token: str,
        access_token: str | None,
        access_token_expires_at: datetime | None,
        daily_send_cap: int,
        min_send_interval_seconds: int,
        now: datetime,
    ) -> GmailAccountView:
        email = email.strip().lower()
        same = [a for a in self._d.accounts.values() if a.view.email == email]
        if same and same[0].view.user_id not in (None, user_id) and same[0].view.connected:
            owner = self._d.users[same[0].view.user_id or 0].name
            raise MailboxTaken(email, owner=owner)
        for account in self._d.accounts.values():
            if account.view.user_id == user_id and account.view.email != email:
                self._disconnect(account, reason=f"replaced by {email}", now=now)
        account_id = same[0].view.id if same else len(self._d.accounts) + 1
        view = GmailAccountView(
            id=account_id,
            org_id=org_id,
            user_id=user_id,
            email=email,
            status=AccountStatus.CONNECTED,
            scopes=tuple(scopes),
            daily_send_cap=same[0].view.daily_send_cap if same else daily_send_cap,
            min_send_interval_seconds=(
                same[0].view.min_send_interval_seconds if same else min_send_interval_seconds
            ),
            next_send_at=None,
            disconnected_at=None,
            disconnected_reason=None,
        )
        tokens = AccountTokens(refresh_token, access_token or None, access_token_expires_at)
        self._d.accounts[account_id] = _Account(view, tokens)
        return view

    def for_user(
        self, org_id: int, user_id: int, *, connected_only: bool = False
    ) -> GmailAccountView | None:
        mine = [
            a.view
            for a in self._d.accounts.values()
            if a.view.org_id == org_id and a.view.user_id == user_id
        ]
        connected = [v for v in mine if v.connected]
        if connected or connected_only:
            return connected[0] if connected else None
        return mine[-1] if mine else None

    def tokens(self, account_id: int) -> AccountTokens | None:
        account = self._d.accounts.get(account_id)
        return account.tokens if account is not None and account.view.connected else None

    def save_access_token(
        self, account_id: int, *, access_token: str, expires_at: datetime | None, now: datetime
    ) -> None:
        account = self._d.accounts[account_id]
        if account.tokens is not None and account.view.connected:
            account.tokens = replace(
                account.tokens, access_token=access_token, access_token_expires_at=expires_at
            )

    def mark_disconnected(self, account_id: int, *, reason: str, now: datetime) -> bool:
        account = self._d.accounts[account_id]
        was = account.view.connected
        self._disconnect(account, reason=reason, now=now)
        return was

    def sends_since(self, account_id: int, since: datetime) -> int:
        return sum(1 for a, at in self._d.sends if a == account_id and at > since)

    @staticmethod
    def _disconnect(account: _Account, *, reason: str, now: datetime) -> None:
        account.view = replace(
            account.view,
            status=AccountStatus.DISCONNECTED,
            disconnected_at=now,
            disconnected_reason=reason,
        )
        account.tokens = None


class FakeOAuthStates:
    def __init__(self, data: Stored) -> None:
        self._d = data

    def add(
        self,
        org_id: int,
        *,
        user_id: int,
        nonce: str,
        code_verifier: str,
        redirect_uri: str,
        expires_at: datetime,
    ) -> None:
        self._d.states[nonce] = _State(org_id, user_id, code_verifier, redirect_uri, expires_at)

    def consume(
        self, nonce: str, *, org_id: int, user_id: int, now: datetime
    ) -> ConsumedState | None:
        state = self._d.states.get(nonce)
        if (
            state is None
            or (state.org_id, state.user_id) != (org_id, user_id)
            or state.used_at is not None
            or state.expires_at <= now
        ):
            return None
        state.used_at = now
        return ConsumedState(code_verifier=state.code_verifier, redirect_uri=state.redirect_uri)

    def purge(self, *, expired_before: datetime) -> int:
        old = [n for n, s in self._d.states.items() if s.expires_at < expired_before]
        for nonce in old:
            del self._d.states[nonce]
        return len(old)


class FakeAllowances:
    def __init__(self, data: Stored) -> None:
        self._d = data

    def for_user(self, org_id: int, user_id: int) -> MailboxAllowance:
        user = self._d.users.get(user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return MailboxAllowance(user_id, user.email, user.allowed, user.allowed_by, user.allowed_at)

    def role_of(self, org_id: int, user_id: int) -> str | None:
        user = self._d.users.get(user_id)
        return user.role if user is not None else None

    def allow(
        self,
        org_id: int,
        *,
        user_email: str,
        address: str | None,
        allowed_by: str,
        now: datetime,
    ) -> MailboxAllowance:
        for user_id, user in self._d.users.items():
            if user.email == user_email.strip().lower():
                user.allowed = address.strip().lower() if address else None
                user.allowed_by, user.allowed_at = allowed_by, now
                return self.for_user(org_id, user_id)
        raise NotFound(f"no user with the email {user_email}")


class FakeUnitOfWork:
    """Works on a copy of what is stored; only a commit makes the copy what is stored."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored
        self.commits = 0
        self._work = stored

    @property
    def gmail_accounts(self) -> FakeGmailAccounts:
        return FakeGmailAccounts(self._work)

    @property
    def oauth_states(self) -> FakeOAuthStates:
        return FakeOAuthStates(self._work)

    @property
    def mailbox_allowances(self) -> FakeAllowances:
        return FakeAllowances(self._work)

    def __enter__(self) -> FakeUnitOfWork:
        self._work = copy.deepcopy(self.stored)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._work = self.stored

    def commit(self) -> None:
        self.stored.__dict__.update(copy.deepcopy(self._work).__dict__)
        self.commits += 1


@dataclass
class FakeGoogle:
    """Google as the consent sees it: the grant it gives and the mailbox that grant opens."""

    mailbox: str = MARIA_EMAIL
    granted: tuple[str, ...] = SCOPES
    refresh_token: str | None = "1//refresh"
    open_error: ExternalServiceError | None = None
    revoke_answer: RevokeResult = RevokeResult.REVOKED
    hints: list[str | None] = field(default_factory=list)
    exchanged: list[tuple[str, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    _verifiers: int = 0

    def consent_url(self, *, state: str, login_hint: str | None) -> ConsentRequest:
        self.hints.append(login_hint)
        self._verifiers += 1
        return ConsentRequest(
            url=f"https://accounts.example/auth?state={state}",
            code_verifier=f"verifier-{self._verifiers}",
            redirect_uri="https://salesbot.example/callback",
        )

    def exchange_code(self, code: str, *, code_verifier: str) -> Grant:
        self.exchanged.append((code, code_verifier))
        return Grant(
            access_token="ya29.access",
            refresh_token=self.refresh_token,
            scopes=self.granted,
            missing_scopes=frozenset(SCOPES[:3]) - set(self.granted),
            expires_at=NOW + timedelta(hours=1),
        )

    def open_mailbox(self, grant: Grant) -> MailboxIdentity:
        if self.open_error is not None:
            raise self.open_error
        return MailboxIdentity(self.mailbox, "ya29.refreshed", NOW + timedelta(hours=1))

    def revoke(self, token: str) -> RevokeResult:
        self.revoked.append(token)
        return self.revoke_answer

    def discard_grant(self, token: str) -> None:
        self.discarded.append(token)


SIGNER = LinkSigner("unit-test-secret-key-0123456789-abcdefghij", purpose="gmail-oauth-state")


@dataclass
class World:
    mailboxes: Mailboxes
    allowances: MailboxAllowances
    uow: FakeUnitOfWork
    google: FakeGoogle
    clock: FixedClock

    @property
    def stored(self) -> Stored:
        return self.uow.stored

    def start(self, user_id: int = MARIA) -> tuple[ConsentStart, str]:
        """Start a consent; return it and the state Google will send back."""
        started = self.mailboxes.start_consent(ORG, user_id)
        return started, started.url.split("state=", 1)[1]

    def connect(self, user_id: int = MARIA) -> Any:
        started, state = self.start(user_id)
        return self.mailboxes.complete(
            state=state, code="4/code", error=None, browser_secret=started.browser_secret
        )


@pytest.fixture
def world() -> World:
    stored = Stored(
        users={
            MARIA: _User(MARIA_EMAIL, "María López", "rep"),
            JOSE: _User(JOSE_EMAIL, "Jose Ruiz", "rep"),
            ANA: _User(ANA_EMAIL, "Ana Admin", "admin"),
        }
    )
    uow = FakeUnitOfWork(stored)
    clock = FixedClock(NOW)
    google = FakeGoogle()
    pace = MailboxPace(
        daily_cap=lambda email: 100 if email.endswith("@gmail.com") else 400,
        min_send_interval_seconds=5,
        window=timedelta(hours=24),
    )
    return World(
        mailboxes=Mailboxes(
            lambda: uow, clock=clock, google=google, state_signer=SIGNER, pace=pace
        ),
        allowances=MailboxAllowances(lambda: uow, clock=clock),
        uow=uow,
        google=google,
        clock=clock,
    )


def connected(world: World) -> list[tuple[int | None, str, AccountStatus]]:
    return [(a.view.user_id, a.view.email, a.view.status) for a in world.stored.accounts.values()]


# --- starting a consent ---------------------------------------------------------------------


def test_a_consent_stores_its_verifier_for_ten_minutes_and_hints_the_users_own_address(
    world: World,
) -> None:
    started, state = world.start()

    (nonce,) = world.stored.states
    stored = world.stored.states[nonce]
    assert (stored.user_id, stored.code_verifier, stored.used_at) == (MARIA, "verifier-1", None)
    assert stored.expires_at == NOW + STATE_TTL == NOW + timedelta(minutes=10)
    assert world.google.hints == [MARIA_EMAIL]
    claims = SIGNER.verify(state)
    assert (claims["n"], claims["o"], claims["u"]) == (nonce, ORG, MARIA)
    assert started.browser_secret not in state
    assert world.uow.commits == 1


def test_starting_a_consent_deletes_consents_expired_a_day_ago(world: World) -> None:
    world.start()
    world.clock.advance(days=1, minutes=11)

    world.start()

    assert [s.code_verifier for s in world.stored.states.values()] == ["verifier-2"]


def test_a_consent_for_an_unknown_user_is_not_found_and_stores_nothing(world: World) -> None:
    with pytest.raises(NotFound, match="user 99 not found"):
        world.mailboxes.start_consent(ORG, 99)

    assert world.stored.states == {}


# --- finishing it ---------------------------------------------------------------------------


def test_a_consent_connects_the_users_own_mailbox_with_the_tokens_google_gave(
    world: World,
) -> None:
    mailbox = world.connect()

    assert (mailbox.user_id, mailbox.email, mailbox.scopes) == (MARIA, MARIA_EMAIL, SCOPES)
    assert world.google.exchanged == [("4/code", "verifier-1")]
    account = world.stored.accounts[mailbox.account_id]
    assert account.tokens == AccountTokens("1//refresh", "ya29.refreshed", NOW + timedelta(hours=1))
    assert (account.view.daily_send_cap, account.view.min_send_interval_seconds) == (400, 5)
    assert world.mailboxes.status(ORG, MARIA).connected is True
    assert world.mailboxes.connected_address(ORG, MARIA) == MARIA_EMAIL


def test_a_state_used_once_is_refused_the_second_time_and_exchanges_no_second_code(
    world: World,
) -> None:
    started, state = world.start()
    world.mailboxes.complete(
        state=state, code="4/code", error=None, browser_secret=started.browser_secret
    )

    with pytest.raises(ConsentRefused, match="already used or has expired"):
        world.mailboxes.complete(
            state=state, code="4/code", error=None, browser_secret=started.browser_secret
        )

    assert len(world.google.exchanged) == 1


def test_a_state_older_than_ten_minutes_is_refused_before_any_code_exchange(
    world: World,
) -> None:
    started, state = world.start()
    world.clock.advance(minutes=10)

    with pytest.raises(ConsentRefused, match="already used or has expired"):
        world.mailboxes.complete(
            state=state, code="4/code", error=None, browser_secret=started.browser_secret
        )

    assert world.google.exchanged == []
    assert world.stored.accounts == {}


def test_a_state_not_signed_by_salesbot_is_refused(world: World) -> None:
    started, _ = world.start()
    forged = LinkSigner("another-secret-key-0123456789-abcdefghij", purpose="x").sign(
        {"n": "guess", "o": ORG, "u": MARIA, "b": "x"}
    )

    with pytest.raises(ConsentRefused, match="not valid or has expired"):
        world.mailboxes.complete(
            state=forged, code="4/code", error=None, browser_secret=started.browser_secret
        )
    with pytest.raises(ConsentRefused, match="opened without the state"):
        world.mailboxes.complete(
            state=None, code="4/code", error=None, browser_secret=started.browser_secret
        )

    assert world.google.exchanged == []


def test_a_consent_finished_in_another_browser_is_refused_and_leaves_its_state_unused(
    world: World,
) -> None:
    started, state = world.start()

    for cookie in (None, "the-secret-of-another-browser"):
        with pytest.raises(ConsentRefused, match="started in another browser"):
            world.mailboxes.complete(state=state, code="4/code", error=None, browser_secret=cookie)

    assert [s.used_at for s in world.stored.states.values()] == [None]
    assert world.google.exchanged == []
    connected_now = world.mailboxes.complete(
        state=state, code="4/code", error=None, browser_secret=started.browser_secret
    )
    assert connected_now.email == MARIA_EMAIL


def test_an_error_from_google_uses_the_state_and_connects_nothing(world: World) -> None:
    started, state = world.start()

    with pytest.raises(ConsentRefused, match="Google answered “access_denied”"):
        world.mailboxes.complete(
            state=state, code=None, error="access_denied", browser_secret=started.browser_secret
        )

    assert [s.used_at for s in world.stored.states.values()] == [NOW]
    assert world.google.exchanged == []
    assert world.stored.accounts == {}


def test_a_grant_without_every_scope_is_refused_and_discarded(world: World) -> None:
    world.google.granted = ("gmail.send", "userinfo.email")

    with pytest.raises(ConsentRefused, match="tick every box"):
        world.connect()

    assert world.google.discarded == ["1//refresh"]
    assert world.stored.accounts == {}


def test_a_grant_without_a_refresh_token_is_refused(world: World) -> None:
    world.google.refresh_token = None

    with pytest.raises(ConsentRefused, match="Google sent no refresh token"):
        world.connect()

    assert world.stored.accounts == {}


def test_a_mailbox_that_cannot_be_opened_is_refused_with_googles_reason(world: World) -> None:
    world.google.open_error = ExternalServiceError("Gmail is not enabled for this account")

    with pytest.raises(
        ConsentRefused, match="could not be opened: Gmail is not enabled for this account"
    ):
        world.connect()

    assert world.stored.accounts == {}


def test_a_mailbox_of_another_address_is_refused_and_its_grant_left_alone(
    world: World,
) -> None:
    world.google.mailbox = JOSE_EMAIL

    with pytest.raises(ConsentRefused) as refused:
        world.connect()

    assert refused.value.message.startswith(
        f"You signed in to Google as {JOSE_EMAIL}, but your Salesbot address is {MARIA_EMAIL}."
    )
    assert "ask an admin to allow that address first" in refused.value.message
    assert world.stored.accounts == {}
    assert (world.google.revoked, world.google.discarded) == ([], [])


def test_the_address_an_admin_allowed_connects_and_a_taken_back_one_is_refused_again(
    world: World,
) -> None:
    world.allowances.allow_address(
        ORG, admin_id=ANA, user_email=MARIA_EMAIL, address=SHARED_EMAIL.upper()
    )
    world.google.mailbox = SHARED_EMAIL

    assert world.connect().email == SHARED_EMAIL
    world.allowances.allow_address(ORG, admin_id=ANA, user_email=MARIA_EMAIL, address=None)
    with pytest.raises(ConsentRefused, match=f"You signed in to Google as {SHARED_EMAIL}"):
        world.connect()


def test_a_mailbox_connected_by_another_user_stays_with_them(world: World) -> None:
    world.google.mailbox = JOSE_EMAIL
    world.connect(JOSE)
    world.allowances.allow_address(ORG, admin_id=ANA, user_email=MARIA_EMAIL, address=JOSE_EMAIL)

    with pytest.raises(ConsentRefused, match="already connected to Salesbot by Jose Ruiz"):
        world.connect(MARIA)

    assert connected(world) == [(JOSE, JOSE_EMAIL, AccountStatus.CONNECTED)]


def test_a_new_mailbox_replaces_the_users_previous_one(world: World) -> None:
    world.connect()
    world.allowances.allow_address(ORG, admin_id=ANA, user_email=MARIA_EMAIL, address=SHARED_EMAIL)
    world.google.mailbox = SHARED_EMAIL

    world.connect()

    assert connected(world) == [
        (MARIA, MARIA_EMAIL, AccountStatus.DISCONNECTED),
        (MARIA, SHARED_EMAIL, AccountStatus.CONNECTED),
    ]
    assert world.mailboxes.connected_address(ORG, MARIA) == SHARED_EMAIL


# --- status and disconnecting ---------------------------------------------------------------


def test_status_counts_the_sends_of_the_last_24_hours(world: World) -> None:
    account_id = world.connect().account_id
    world.stored.sends += [
        (account_id, NOW - timedelta(hours=25)),
        (account_id, NOW - timedelta(hours=2)),
        (account_id, NOW - timedelta(minutes=1)),
    ]

    status = world.mailboxes.status(ORG, MARIA)

    assert (status.connected, status.email, status.sent_last_24h) == (True, MARIA_EMAIL, 2)
    assert world.mailboxes.status(ORG, JOSE).connected is False


def test_disconnecting_revokes_the_grant_and_forgets_the_tokens(world: World) -> None:
    account_id = world.connect().account_id

    done = world.mailboxes.disconnect(ORG, MARIA)

    assert (done.email, done.revoked) == (MARIA_EMAIL, True)
    assert world.google.revoked == ["1//refresh"]
    account = world.stored.accounts[account_id]
    assert (account.view.status, account.view.disconnected_reason, account.tokens) == (
        AccountStatus.DISCONNECTED,
        "disconnected by the rep",
        None,
    )
    with pytest.raises(NotFound, match="You have no connected Gmail mailbox."):
        world.mailboxes.disconnect(ORG, MARIA)


def test_a_revocation_google_did_not_confirm_still_forgets_the_tokens(world: World) -> None:
    world.connect()
    world.google.revoke_answer = RevokeResult.FAILED

    done = world.mailboxes.disconnect(ORG, MARIA)

    assert done.revoked is False
    assert world.mailboxes.connected_address(ORG, MARIA) is None


# --- allowances -----------------------------------------------------------------------------


def test_an_admin_allowance_records_who_allowed_which_address_and_when(world: World) -> None:
    allowance = world.allowances.allow_address(
        ORG, admin_id=ANA, user_email=MARIA_EMAIL, address=SHARED_EMAIL
    )

    assert (allowance.user_id, allowance.allowed, allowance.allowed_by, allowance.allowed_at) == (
        MARIA,
        SHARED_EMAIL,
        ANA_EMAIL,
        NOW,
    )
    assert world.uow.commits == 1


@pytest.mark.parametrize("by", [JOSE, 99])
def test_only_an_admin_can_allow_another_address(world: World, by: int) -> None:
    with pytest.raises(NotPermitted, match="Only an admin can let a user connect"):
        world.allowances.allow_address(
            ORG, admin_id=by, user_email=MARIA_EMAIL, address=SHARED_EMAIL
        )

    assert world.stored.users[MARIA].allowed is None
    assert world.uow.commits == 0
