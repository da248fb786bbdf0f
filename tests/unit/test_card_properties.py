"""The card state machine under any sequence of decisions, failures and crashes (hypothesis).

A stateful test drives the review and recovery use cases on the fake world: reps approve
(as shown, or with a draft that changed since), edit, reject and retry cards; the job is
cancelled; Gmail refuses sends for a while; the process dies right after a card was
committed `executing`, before Gmail saw its email (the mailer raises, as `kill -9` at
`execute.committed` would leave it); the clock moves past the work lease and the recovery
sweep runs. After every step the invariants hold:

- a card is sent at most once, and a card is `done` exactly when its email went;
- what is sent is the draft that was approved (subject and body as fingerprinted);
- a terminal state (done, rejected, withdrawn) never changes, and every change a card
  went through is one the transition table allows (directly or through its steps);
- once the sweep ran past the lease with Gmail up, no card is left approved or executing.

A crash after Gmail accepted is not modelled here: the fake world has no outbox, and the
outbox's reconciliation (`rfc822msgid:`) is tested on both databases and by killing real
processes (tests/e2e/test_crash_recovery.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.accounts import User
from domain.cards import Card, CardState, CardType, Priority, can_transition, draft_fingerprint
from domain.clock import FixedClock
from domain.deps import Deps
from domain.errors import InvalidTransition, SalesbotError
from domain.jobs import JobParams, JobStatus, StepTemplate, TargetSelection
from domain.mail import OutgoingEmail, SendOutcome
from domain.outreach import Outreach
from domain.ports import OutreachUnitOfWork
from tests.unit.fakes import (
    NOW,
    ORG,
    REP,
    FakeMailer,
    FakeNotifier,
    FakeUnitOfWork,
    World,
    actor,
    make_contact,
)

S = CardState
TERMINAL = frozenset({S.DONE, S.REJECTED, S.WITHDRAWN})
LEASE = timedelta(minutes=5)
CARDS = 4
CARD = st.integers(min_value=0, max_value=CARDS - 1)  # which of the job's cards


class ProcessDied(Exception):
    """The process ended between the commit of `executing` and the call to Gmail."""


class CrashingMailer(FakeMailer):
    """The fake mailer, which can also die before Gmail sees the email (once per crash)."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_next = False

    def send(self, email: OutgoingEmail) -> SendOutcome:
        if self.crash_next:
            self.crash_next = False
            raise ProcessDied
        return super().send(email)


def _reachable(start: CardState) -> frozenset[CardState]:
    """Every state the transition table lets a card reach from `start`, `start` included."""
    seen = {start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for to in S:
            if to not in seen and can_transition(state, to):
                seen.add(to)
                frontier.append(to)
    return frozenset(seen)


REACHABLE = {state: _reachable(state) for state in S}


class CardLives(RuleBasedStateMachine):
    """Cards of one running job, decided, failed, crashed and recovered in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.clock = FixedClock(NOW)
        self.mailer = CrashingMailer()
        world, clock = self.world, self.clock

        def uow() -> OutreachUnitOfWork:
            return FakeUnitOfWork(world, clock)

        self.uow = uow
        self.outreach = Outreach.build(
            Deps(uow=uow, clock=clock),
            unsubscribe_url=lambda org_id, contact_id, *_: f"https://salesbot.test/u/{contact_id}",
            mailer=self.mailer,
            notifier=FakeNotifier(),
            work_lease=LEASE,
        )
        world.users[(ORG, REP)] = User(REP, ORG, "maria@pinnacle.test", "Maria Lopez", "rep", "U7")
        self.ids: list[int] = []
        self.job_id = 0
        self.seen: dict[int, CardState] = {}
        # The (subject, body) of the draft each card was approved with.
        self.approved_drafts: dict[int, set[tuple[str, str]]] = {}
        self.edits = 0

    @initialize()
    def a_running_job_with_cards_in_review(self) -> None:
        params = JobParams(
            target=TargetSelection(contact_ids=[1]),
            templates=[StepTemplate(subject="Turn times", body="Hi")],
        )
        with self.uow() as uow:
            job = uow.jobs.add(
                ORG,
                name="Win-back · launch",
                description=None,
                params=params.model_dump(mode="json"),
                owner_id=REP,
                campaign_id=None,
            )
            uow.jobs.set_status(
                ORG, job.id, JobStatus.RUNNING, expected=[JobStatus.PENDING], now=NOW
            )
            uow.jobs.mark_planned(job.id, now=NOW)
            uow.commit()
        self.job_id = job.id
        for n in range(1, CARDS + 1):
            contact = make_contact(n)
            self.world.contacts[(ORG, n)] = contact
            subject, body = f"Turn times {n}", f"Hi {contact.first_name}, turn times are down."
            card = Card(
                id=next(self.world.next_id),
                org_id=ORG,
                type=CardType.SEND_EMAIL,
                state=S.IN_REVIEW,
                priority=Priority.MEDIUM,
                title=f"Email {contact.full_name}",
                created_at=NOW,
                updated_at=NOW,
                job_id=job.id,
                contact_id=contact.contact_id,
                action_payload={
                    "to": contact.email,
                    "to_name": contact.full_name,
                    "subject": subject,
                    "body": body,
                    "step": 0,
                    "total_steps": 1,
                    "campaign_name": "Q4 lender win-back",
                },
                draft_fingerprint=draft_fingerprint(to=contact.email, subject=subject, body=body),
            )
            self.world.cards[card.id] = card
            self.seen[card.id] = card.state
            self.ids.append(card.id)

    # -- the world moving ---------------------------------------------------------------

    def card(self, card_id: int) -> Card:
        return self.world.cards[card_id]

    def _act(self, action: Callable[[], object]) -> None:
        """Run one use case; a refusal is an answer, a crash leaves what was committed."""
        try:
            action()
        except (ProcessDied, SalesbotError, InvalidTransition):
            pass

    def _approve(self, card_id: int, fingerprint: str | None) -> None:
        """Approve as a click does; remember the draft an approval that went through had."""
        card = self.card(card_id)
        draft = (str(card.action_payload["subject"]), str(card.action_payload["body"]))
        try:
            self.outreach.review.approve_card(actor(), card_id, fingerprint=fingerprint)
        except (SalesbotError, InvalidTransition):
            return  # refused: nothing approved
        except ProcessDied:
            pass  # approved and committed `executing`; the sweep carries it on
        self.approved_drafts.setdefault(card_id, set()).add(draft)

    @rule(n=CARD, as_shown=st.booleans())
    def a_rep_approves(self, n: int, as_shown: bool) -> None:
        card_id = self.ids[n]
        card = self.card(card_id)
        before = len(self.mailer.sent)
        self._approve(card_id, card.draft_fingerprint if as_shown else "shown-before-an-edit")
        if not as_shown and card.draft_fingerprint:
            # A stale approval is refused: nothing moves, nothing is sent.
            assert self.card(card_id) == card
            assert len(self.mailer.sent) == before

    @rule(n=CARD)
    def a_rep_retries_without_a_fingerprint(self, n: int) -> None:
        self._approve(self.ids[n], None)

    @rule(n=CARD)
    def a_rep_edits(self, n: int) -> None:
        card_id = self.ids[n]
        self.edits += 1
        body = f"Hi, our turn times are down to {self.edits} days."
        self._act(
            lambda: self.outreach.review.edit_card(
                actor(), card_id, subject=f"Edit {self.edits}", body=body, approve=False
            )
        )

    @rule(n=CARD)
    def a_rep_rejects(self, n: int) -> None:
        card_id = self.ids[n]
        self._act(lambda: self.outreach.review.reject_card(actor(), card_id, reason="no"))

    # Late in a run only: a cancelled job ends every card at once, leaving nothing to explore.
    @precondition(lambda self: self.edits + len(self.approved_drafts) >= 4)
    @rule()
    def the_job_is_cancelled(self) -> None:
        self._act(
            lambda: self.outreach.jobs.set_job_status(
                ORG, self.job_id, JobStatus.CANCELLED, by=actor()
            )
        )

    @rule(refusing=st.booleans())
    def gmail_refuses_or_accepts_sends(self, refusing: bool) -> None:
        self.mailer.failing = "Gmail refused the send (550)" if refusing else None

    @rule()
    def the_process_will_die_before_the_next_send(self) -> None:
        self.mailer.crash_next = True

    @rule()
    def the_lease_runs_out_and_the_sweep_carries_on(self) -> None:
        self.mailer.crash_next = False
        self.mailer.failing = None
        self.clock.advance(seconds=LEASE.total_seconds() + 1)
        self.outreach.recovery.recover_cards()
        stuck = [c.id for c in self.world.cards.values() if c.state in (S.APPROVED, S.EXECUTING)]
        assert stuck == [], f"cards left in flight after the sweep: {stuck}"

    # -- what must always hold ----------------------------------------------------------

    @invariant()
    def each_card_is_sent_at_most_once_and_done_exactly_when_sent(self) -> None:
        sent: dict[int, int] = {}
        for email in self.mailer.sent:
            assert email.card_id is not None
            sent[email.card_id] = sent.get(email.card_id, 0) + 1
        assert all(n == 1 for n in sent.values()), sent
        done = {c.id for c in self.world.cards.values() if c.state == S.DONE}
        assert done == set(sent)

    @invariant()
    def what_is_sent_is_a_draft_that_was_approved(self) -> None:
        for email in self.mailer.sent:
            assert email.card_id is not None
            assert (email.subject, email.body_text) in self.approved_drafts.get(
                email.card_id, set()
            ), email.card_id

    def teardown(self) -> None:
        # What the examples reached (`pytest --hypothesis-show-statistics`).
        for state in sorted({c.state for c in self.world.cards.values()}):
            event(f"a card ended {state}")
        event(f"emails sent: {len(self.mailer.sent)}")

    @invariant()
    def terminal_states_stay_and_every_change_is_one_the_table_allows(self) -> None:
        for card in self.world.cards.values():
            before = self.seen.get(card.id)
            if before is None:
                continue
            if before in TERMINAL:
                assert card.state == before, (card.id, before, card.state)
            assert card.state in REACHABLE[before], (card.id, before, card.state)
            self.seen[card.id] = card.state


CardLives.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_card_lives_keep_their_invariants = CardLives.TestCase
