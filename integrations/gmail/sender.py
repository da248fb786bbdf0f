"""Send email from a rep's own Gmail exactly once, at the mailbox's pace.

`GmailMailer` implements the domain's `Mailer` port through an outbox (`email_sends`):

1. The email is written with our own Message-ID and committed before Gmail is called;
   a card has one row (`card_id` is unique), so asking twice returns the first outcome.
2. A row is claimed by compare-and-set together with a send slot of its mailbox: the
   mailbox row is locked (SKIP LOCKED on PostgreSQL), the daily cap counted over the
   last 24 hours and the minimum spacing kept through `gmail_accounts.next_send_at`.
   What cannot go now is QUEUED with the time it will go and a sentence saying why.
3. Gmail's answer decides: accepted → sent; rate limited → retried after Retry-After
   with jittered backoff; refused → failed (certainly not sent); no answer (a 5xx, a
   broken connection, a crash) → the row stays `sending` under a lease and the mailbox
   is searched for `rfc822msgid:` before anything is sent again.

`OutboxWorker` sends queued rows when they are due and reconciles rows whose lease ran
out, in background threads of every replica; `on_sent` tells the composition root when
a queued send finally went out or failed, so the card can follow.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.orm import Session

from domain import faults
from domain.clock import Clock
from domain.errors import ExternalServiceError, InvalidInput
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.mailboxes import AccountTokens
from integrations.gmail.client import (
    FailureKind,
    GmailClient,
    GmailError,
    GmailMessageRef,
    GoogleConfig,
)
from integrations.gmail.compose import Unsubscribe, compose_email, new_message_id
from storage.gmail import (
    GmailAccountRepo,
    OutboxEmail,
    OutboxRepo,
    OutboxStatus,
    TokenCipher,
    user_label,
)

log = logging.getLogger(__name__)

CONSUMER_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})

# org_id, email_send_id, card_id, outcome
SendListener = Callable[[int, int, int | None, SendOutcome], None]
# org_id, user_id, mailbox address, reason
DisconnectListener = Callable[[int, int | None, str, str], None]


@dataclass(frozen=True)
class SendLimits:
    """Throttles and timings of the sender; caps and spacing are kept per mailbox."""

    # Gmail allows about 2,000 a day from Workspace and 500 from consumer accounts.
    workspace_daily_cap: int = 400
    consumer_daily_cap: int = 100
    min_send_interval_seconds: int = 5
    window: timedelta = timedelta(hours=24)
    # A `sending` row is reconciled once its lease is over; longer than any Gmail call.
    lease: timedelta = timedelta(minutes=10)
    # After an unconfirmed send, wait this long before trusting a search that finds nothing.
    confirm_after: timedelta = timedelta(minutes=2)
    # A new row belongs to the caller this long before the outbox worker may take it.
    claim_grace: timedelta = timedelta(minutes=1)
    # A send holds its mailbox this long at most (one send at a time per mailbox); an
    # email that finds its mailbox busy tries again after `busy_retry` at the earliest.
    send_hold: timedelta = timedelta(minutes=2)
    busy_retry: timedelta = timedelta(milliseconds=500)
    max_inline_wait_seconds: float = 10.0
    max_inline_attempts: int = 3
    backoff_base_seconds: float = 2.0
    max_backoff: timedelta = timedelta(minutes=15)
    quota_pause: timedelta = timedelta(hours=1)
    disconnected_hold: timedelta = timedelta(hours=1)


def default_daily_cap(email: str, limits: SendLimits) -> int:
    """Return a new mailbox's daily cap: consumer Gmail gets the lower one."""
    domain = email.rsplit("@", 1)[-1].lower()
    return limits.consumer_daily_cap if domain in CONSUMER_DOMAINS else limits.workspace_daily_cap


def describe_time(at: datetime, now: datetime) -> str:
    """Say when, for a card: `09:00 UTC`, `15:00:05 UTC` when soon, `Nov 26 09:00 UTC`."""
    if at.date() != now.date():
        return f"{at:%b %d %H:%M} UTC"
    if at - now < timedelta(minutes=10):
        return f"{at:%H:%M:%S} UTC"
    return f"{at:%H:%M} UTC"


@dataclass(frozen=True)
class FinishedSend:
    """A queued send that finally went out or failed, for `on_sent`."""

    org_id: int
    email_send_id: int
    card_id: int | None
    outcome: SendOutcome


@dataclass(frozen=True)
class DrainReport:
    """One round of the outbox: how many rows it handled and which ones finished."""

    handled: int
    finished: list[FinishedSend]


@dataclass(frozen=True)
class _Claimed:
    row: OutboxEmail
    hold: datetime  # the mailbox's `sending_until` this send set
    interval: timedelta


@dataclass(frozen=True)
class _Waiting:
    retry_at: datetime
    detail: str


@dataclass(frozen=True)
class _Refused:
    detail: str


@dataclass(frozen=True)
class _Busy:
    """Another worker holds the mailbox right now; the row stays due."""


_Reservation = _Claimed | _Waiting | _Refused | _Busy


def _outcome(
    row: OutboxEmail | None,
    status: SendStatus,
    *,
    detail: str | None = None,
    retry_at: datetime | None = None,
    ref: GmailMessageRef | None = None,
) -> SendOutcome:
    return SendOutcome(
        status=status,
        email_send_id=row.id if row is not None else 0,
        message_id=row.message_id if row is not None else "",
        gmail_message_id=ref.id if ref else (row.gmail_message_id if row else None),
        gmail_thread_id=ref.thread_id if ref else (row.gmail_thread_id if row else None),
        detail=detail,
        retry_at=retry_at,
    )


class GmailMailer:
    """The Mailer port on Gmail, through the outbox; safe to share between threads."""

    def __init__(
        self,
        config: GoogleConfig,
        *,
        session_factory: Callable[[], Session],
        clock: Clock,
        cipher: TokenCipher,
        unsubscribe_url: Callable[[int, int], str],
        message_id_domain: str,
        limits: SendLimits | None = None,
        on_disconnected: DisconnectListener | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        self._config = config
        self._sessions = session_factory
        self._clock = clock
        self._cipher = cipher
        self._unsubscribe_url = unsubscribe_url
        self._domain = message_id_domain
        self.limits = limits or SendLimits()
        self.on_disconnected = on_disconnected
        self.on_queued: Callable[[], None] | None = None
        self._sleep = sleep
        self._rng = rng or random.Random()
        base = name or f"{socket.gethostname()[:24]}:{os.getpid()}:{self._rng.randrange(16**6):06x}"
        self._name = base[:48]

    @property
    def _worker(self) -> str:
        """This thread's claim name: claims never pass between threads."""
        return f"{self._name}:{threading.get_ident() % 10**9}"

    # the Mailer port -------------------------------------------------------------------

    def send(self, email: OutgoingEmail) -> SendOutcome:
        """Send (or queue) an email from the sender's mailbox; a card is sent at most once."""
        stored = self._store(email)
        if isinstance(stored, SendOutcome):
            return stored
        # From here a crash leaves a queued row: the outbox sends it after `claim_grace`.
        faults.reach("outbox.stored")
        outcome = self._attempt_new(stored)
        if outcome.status == SendStatus.QUEUED and self.on_queued is not None:
            self.on_queued()
        return outcome

    def _store(self, email: OutgoingEmail) -> int | SendOutcome:
        now = self._clock.now()
        to = email.to_email.strip()
        with self._sessions() as session:
            outbox = OutboxRepo(session)
            existing = outbox.by_card(email.card_id) if email.card_id is not None else None
            if existing is not None and existing.status != OutboxStatus.FAILED:
                return self._outcome_of(existing, now)

            def refuse(detail: str) -> SendOutcome:
                return _outcome(existing, SendStatus.FAILED, detail=detail)

            if email.sender_user_id is None:
                return refuse("This email has no sender; send it from a rep's connected Gmail.")
            account = GmailAccountRepo(session, self._cipher).for_user(
                email.org_id, email.sender_user_id, connected_only=True
            )
            if account is None:
                who = user_label(session, email.org_id, email.sender_user_id)
                return refuse(
                    f"No Gmail mailbox is connected for {who}: connect Gmail from Salesbot's"
                    " App Home, then Retry."
                )
            block = outbox.recipient_block(email.org_id, to)
            if block is not None:
                return refuse(block)
            contact_id = email.contact_id or outbox.contact_id_for(email.org_id, to)
            if email.campaign_email and contact_id is None:
                return refuse(
                    f"{to} is not a contact, so the email could not carry an unsubscribe link;"
                    " add the contact first, or send it as a one-off email."
                )
            thread_id = email.thread_id
            if thread_id is None and email.enrollment_id is not None:
                thread_id = outbox.enrollment_thread(email.enrollment_id)
            references = [r for r in email.references if r.strip()]
            in_reply_to = email.in_reply_to
            if thread_id and not references and not in_reply_to:
                references = outbox.thread_message_ids(email.org_id, thread_id)
                in_reply_to = references[-1] if references else None
            content = {
                "job_id": email.job_id,
                "campaign_id": email.campaign_id,
                "enrollment_id": email.enrollment_id,
                "contact_id": contact_id,
                "gmail_account_id": account.id,
                "sender_user_id": email.sender_user_id,
                "gmail_thread_id": thread_id,
                "from_email": account.email,
                "to_email": to,
                "to_name": email.to_name,
                "subject": email.subject.strip(),
                "body_text": email.body_text,
                "body_html": email.body_html,
                "in_reply_to": in_reply_to,
                "references": references,
                "campaign_email": email.campaign_email,
            }
            try:
                compose_email(
                    message_id="<check@salesbot.invalid>",
                    date=now,
                    from_email=account.email,
                    from_name=None,
                    to_email=to,
                    to_name=email.to_name,
                    subject=email.subject,
                    body_text=email.body_text,
                    body_html=email.body_html,
                    in_reply_to=in_reply_to,
                    references=references,
                )
            except InvalidInput as exc:
                return refuse(f"This email cannot be sent: {exc.message}")
            not_before = now + self.limits.claim_grace
            if existing is not None:
                if not outbox.rearm_failed(existing.id, not_before=not_before, **content):
                    return self._outcome_of(outbox.get(existing.id), now)
                send_id = existing.id
            else:
                row = outbox.add(
                    email.org_id,
                    card_id=email.card_id,
                    message_id=new_message_id(self._domain),
                    not_before=not_before,
                    **content,
                )
                if row is None:
                    session.rollback()
                    raced = OutboxRepo(session).by_card(email.card_id or 0)
                    if raced is None:
                        raise RuntimeError("outbox row of a card vanished during the send")
                    return self._outcome_of(raced, now)
                send_id = row.id
            session.commit()
        return send_id

    def _attempt_new(self, send_id: int) -> SendOutcome:
        now = self._clock.now()
        with self._sessions() as session:
            outbox = OutboxRepo(session)
            row = outbox.lock_queued(send_id)
            if row is None:
                session.rollback()
                return self._outcome_of(OutboxRepo(session).get(send_id), now)
            reservation = self._reserve(session, row, now=now, wait=True, ahead=0)
            session.commit()
        return self._settle(row, reservation, inline=True)

    def _settle(self, row: OutboxEmail, reservation: _Reservation, *, inline: bool) -> SendOutcome:
        if isinstance(reservation, _Claimed):
            return self._deliver(reservation, attempt=1, inline=inline)
        if isinstance(reservation, _Waiting):
            return _outcome(
                row, SendStatus.QUEUED, detail=reservation.detail, retry_at=reservation.retry_at
            )
        if isinstance(reservation, _Refused):
            return _outcome(row, SendStatus.FAILED, detail=reservation.detail)
        return _outcome(row, SendStatus.QUEUED, detail="Being sent by the outbox.")

    def _outcome_of(self, row: OutboxEmail, now: datetime) -> SendOutcome:
        if row.status == OutboxStatus.SENT:
            return _outcome(row, SendStatus.SENT)
        if row.status == OutboxStatus.FAILED:
            return _outcome(row, SendStatus.FAILED, detail=row.error or "Sending failed.")
        if row.status == OutboxStatus.QUEUED:
            at = row.not_before or now
            return _outcome(
                row,
                SendStatus.QUEUED,
                detail=row.error or f"Queued; sending at {describe_time(at, now)}.",
                retry_at=at,
            )
        return _outcome(
            row,
            SendStatus.QUEUED,
            detail=row.error or "Being sent now.",
            retry_at=row.claimed_until,
        )

    # throttles -------------------------------------------------------------------------

    def _reserve(
        self, session: Session, row: OutboxEmail, *, now: datetime, wait: bool, ahead: int
    ) -> _Reservation:
        """Claim `row` with a send slot of its mailbox now, or say when and why not."""
        outbox = OutboxRepo(session)
        mine = self._worker if row.status == OutboxStatus.SENDING else None
        if row.gmail_account_id is None:
            detail = "The mailbox of this email was removed; connect Gmail again, then Retry."
            outbox.mark_failed(row.id, reason=detail, worker=mine)
            return _Refused(detail)
        slot = outbox.lock_mailbox(row.gmail_account_id, wait=wait)
        if slot is None:
            return _Busy()
        if not slot.connected:
            detail = (
                f"Gmail is not connected for {slot.email} any more: reconnect it from"
                " Salesbot's App Home, then Retry."
            )
            outbox.mark_failed(row.id, reason=detail, worker=mine)
            return _Refused(detail)
        block = outbox.recipient_block(row.org_id, row.to_email)
        if block is not None:
            outbox.mark_failed(row.id, reason=block, worker=mine)
            return _Refused(block)
        interval = timedelta(seconds=slot.min_send_interval_seconds)
        window_start = now - self.limits.window
        sent = outbox.sends_since(slot.account_id, window_start)
        if sent >= slot.daily_send_cap:
            # The k-th email waiting goes when the k-th oldest send of the window ages out.
            offset = sent - slot.daily_send_cap + ahead
            oldest = outbox.send_time_since(
                slot.account_id, window_start, offset=min(offset, max(sent - 1, 0))
            )
            reopen = (oldest or now) + self.limits.window
            reopen += max(0, offset - (sent - 1)) * interval
            if ahead == 0:
                outbox.push_next_send(slot.account_id, reopen)
            detail = (
                f"Gmail daily cap reached ({slot.daily_send_cap} emails in 24 h from"
                f" {slot.email}), sending at {describe_time(reopen, now)}"
            )
            outbox.requeue(row.id, not_before=reopen, reason=detail, worker=mine)
            return _Waiting(reopen, detail)
        busy = slot.sending_until is not None and slot.sending_until > now
        if busy or (slot.next_send_at is not None and slot.next_send_at > now):
            at = max(slot.next_send_at or now, now)
            if busy:
                # Another worker is sending from this mailbox right now.
                at = max(at, now + max(interval, self.limits.busy_retry))
            at += ahead * interval
            detail = (
                f"Queued behind other emails from {slot.email}, sending at {describe_time(at, now)}"
            )
            outbox.requeue(row.id, not_before=at, reason=detail, worker=mine)
            return _Waiting(at, detail)
        lease_until = now + self.limits.lease
        if not outbox.claim(
            row.id,
            worker=self._worker,
            slot_at=now,
            lease_until=lease_until,
            from_email=slot.email,
        ):
            return _Busy()
        hold = now + self.limits.send_hold
        outbox.hold_mailbox(slot.account_id, until=hold)
        outbox.push_next_send(slot.account_id, now + interval)
        claimed = replace(
            row,
            from_email=slot.email,
            status=OutboxStatus.SENDING,
            claimed_by=self._worker,
            claimed_until=lease_until,
        )
        return _Claimed(claimed, hold=hold, interval=interval)

    def _pause(self, exc: GmailError, attempt: int) -> float:
        """Seconds to wait after a rate limit: Retry-After at least, jittered backoff."""
        if exc.kind == FailureKind.QUOTA:
            return max(exc.retry_after or 0.0, self.limits.quota_pause.total_seconds())
        backoff = self.limits.backoff_base_seconds * 2 ** (attempt - 1)
        floor = max(exc.retry_after or 0.0, backoff)
        jittered = floor * (1.0 + 0.25 * self._rng.random())
        return min(jittered, max(self.limits.max_backoff.total_seconds(), exc.retry_after or 0.0))

    # one attempt -------------------------------------------------------------------------

    def _tokens(self, row: OutboxEmail) -> tuple[AccountTokens | None, str | None]:
        with self._sessions() as session:
            tokens = (
                GmailAccountRepo(session, self._cipher).tokens(row.gmail_account_id)
                if row.gmail_account_id is not None
                else None
            )
            name = user_label(session, row.org_id, row.sender_user_id)
        return tokens, (name if row.sender_user_id is not None else None)

    def service_for_account(self, account_id: int) -> Any:
        """An authorized Gmail service for a connected mailbox (for inbound history sync)."""
        with self._sessions() as session:
            tokens = GmailAccountRepo(session, self._cipher).tokens(account_id)
        if tokens is None:
            raise ExternalServiceError(f"Gmail account {account_id} is not connected")
        return self._client(tokens).service()

    def _client(self, tokens: AccountTokens) -> GmailClient:
        return GmailClient(
            self._config,
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
            access_token_expires_at=tokens.access_token_expires_at,
        )

    def _deliver(self, claim: _Claimed, *, attempt: int, inline: bool) -> SendOutcome:
        """Call Gmail for a claimed row, free its mailbox for the next send, record the result."""
        row = claim.row
        now = self._clock.now()
        tokens, from_name = self._tokens(row)
        if tokens is None:
            self._release(claim)
            return self._finish_failed(
                row,
                f"Gmail was disconnected for {row.from_email}: reconnect it from Salesbot's App"
                " Home, then Retry.",
            )
        unsubscribe = None
        if row.campaign_email and row.contact_id is not None:
            unsubscribe = Unsubscribe(
                url=self._unsubscribe_url(row.org_id, row.contact_id), mailto=row.from_email
            )
        try:
            raw = compose_email(
                message_id=row.message_id,
                date=now,
                from_email=row.from_email or "",
                from_name=from_name,
                to_email=row.to_email,
                to_name=row.to_name,
                subject=row.subject,
                body_text=row.body_text,
                body_html=row.body_html,
                in_reply_to=row.in_reply_to,
                references=row.references,
                unsubscribe=unsubscribe,
            )
        except InvalidInput as exc:
            self._release(claim)
            return self._finish_failed(row, f"This email cannot be sent: {exc.message}")
        client = self._client(tokens)
        try:
            ref = client.send(raw, thread_id=row.gmail_thread_id)
        except GmailError as exc:
            self._keep_token(row, client)
            if exc.kind == FailureKind.NOT_FOUND and row.gmail_thread_id:
                # The thread is gone from the mailbox (deleted): nothing was sent; the email
                # starts a new thread, in the same send slot.
                with self._sessions() as session:
                    OutboxRepo(session).forget_thread(row.id)
                    session.commit()
                unthreaded = replace(claim, row=replace(row, gmail_thread_id=None))
                return self._deliver(unthreaded, attempt=attempt, inline=inline)
            self._release(claim)
            return self._after_failure(row, client, exc, attempt=attempt, inline=inline)
        # From here a crash leaves the row `sending`: once its lease is over the outbox
        # finds the email by its Message-ID (`rfc822msgid:`) and never sends it again.
        faults.reach("gmail.accepted")
        self._keep_token(row, client)
        return self._finish_sent(row, ref, claim=claim)

    def _release(self, claim: _Claimed) -> None:
        """Free the mailbox: its next send may start once the spacing after this one is over."""
        with self._sessions() as session:
            self._release_in(session, claim)
            session.commit()

    def _release_in(self, session: Session, claim: _Claimed) -> None:
        account_id = claim.row.gmail_account_id
        if account_id is None:
            return
        outbox = OutboxRepo(session)
        outbox.release_mailbox(account_id, held_until=claim.hold)
        outbox.push_next_send(account_id, self._clock.now() + claim.interval)

    def _after_failure(
        self, row: OutboxEmail, client: GmailClient, exc: GmailError, *, attempt: int, inline: bool
    ) -> SendOutcome:
        log.warning(
            "gmail send failed",
            extra={
                "email_send_id": row.id,
                "card_id": row.card_id,
                "kind": exc.kind.value,
                "status": exc.status,
                "reason": exc.reason,
                "attempt": attempt,
            },
        )
        if exc.kind == FailureKind.REVOKED:
            self._disconnect(row, reason="Google access was revoked")
            return self._finish_failed(
                row,
                f"Gmail access for {row.from_email} was revoked: reconnect Gmail from Salesbot's"
                " App Home, then Retry.",
            )
        if exc.kind in (FailureKind.REFUSED, FailureKind.NOT_FOUND):
            return self._finish_failed(row, f"{exc.message} Nothing was sent.")
        if exc.kind == FailureKind.UNCERTAIN:
            return self._confirm_or_hold(row, client)
        return self._back_off(row, exc, attempt=attempt, inline=inline)

    def _back_off(
        self, row: OutboxEmail, exc: GmailError, *, attempt: int, inline: bool
    ) -> SendOutcome:
        """Gmail certainly did not send it: pause the mailbox, then retry here or later."""
        now = self._clock.now()
        wait = self._pause(exc, attempt)
        resume = now + timedelta(seconds=wait)
        retry_here = (
            inline
            and wait <= self.limits.max_inline_wait_seconds
            and attempt < self.limits.max_inline_attempts
        )
        if exc.kind == FailureKind.QUOTA:
            detail = (
                f"Gmail says {row.from_email} reached its sending limit; retrying at"
                f" {describe_time(resume, now)}"
            )
        elif exc.kind == FailureKind.RATE_LIMITED:
            detail = f"Gmail asked us to slow down; retrying at {describe_time(resume, now)}"
        else:
            detail = f"Gmail could not be reached; retrying at {describe_time(resume, now)}"
        with self._sessions() as session:
            outbox = OutboxRepo(session)
            if row.gmail_account_id is not None:
                outbox.push_next_send(row.gmail_account_id, resume)
            if retry_here:
                outbox.release_slot(row.id, worker=self._worker)
            else:
                outbox.requeue(row.id, not_before=resume, reason=detail, worker=self._worker)
            session.commit()
        if not retry_here:
            return _outcome(row, SendStatus.QUEUED, detail=detail, retry_at=resume)
        self._sleep(wait)
        with self._sessions() as session:
            reservation = self._reserve(session, row, now=self._clock.now(), wait=True, ahead=0)
            session.commit()
        if isinstance(reservation, _Claimed):
            return self._deliver(reservation, attempt=attempt + 1, inline=inline)
        return self._settle(row, reservation, inline=inline)

    def _confirm_or_hold(self, row: OutboxEmail, client: GmailClient) -> SendOutcome:
        """Gmail may have sent it: look for our Message-ID; if not seen, wait and look again."""
        try:
            ref = client.find_by_message_id(row.message_id)
        except GmailError:
            ref = None
        self._keep_token(row, client)
        if ref is not None:
            return self._finish_sent(row, ref)
        now = self._clock.now()
        until = now + self.limits.confirm_after
        detail = (
            "Gmail did not confirm the send; Salesbot checks the mailbox at"
            f" {describe_time(until, now)} before sending anything again"
        )
        with self._sessions() as session:
            OutboxRepo(session).hold(row.id, worker=self._worker, until=until, reason=detail)
            session.commit()
        return _outcome(row, SendStatus.QUEUED, detail=detail, retry_at=until)

    def _finish_sent(
        self, row: OutboxEmail, ref: GmailMessageRef, *, claim: _Claimed | None = None
    ) -> SendOutcome:
        now = self._clock.now()
        with self._sessions() as session:
            recorded = OutboxRepo(session).mark_sent(
                row.id,
                worker=self._worker,
                gmail_message_id=ref.id,
                gmail_thread_id=ref.thread_id,
                at=now,
            )
            if claim is not None:
                self._release_in(session, claim)
            session.commit()
        # From here a crash leaves the card `executing` beside a sent row: the recovery
        # sweep tells the card.
        faults.reach("outbox.recorded")
        log.info(
            "email sent",
            extra={
                "email_send_id": row.id,
                "card_id": row.card_id,
                "gmail_message_id": ref.id,
                "recorded": recorded,
            },
        )
        return _outcome(replace(row, status=OutboxStatus.SENT), SendStatus.SENT, ref=ref)

    def _finish_failed(self, row: OutboxEmail, detail: str) -> SendOutcome:
        with self._sessions() as session:
            OutboxRepo(session).mark_failed(row.id, reason=detail, worker=self._worker)
            session.commit()
        return _outcome(row, SendStatus.FAILED, detail=detail)

    def _keep_token(self, row: OutboxEmail, client: GmailClient) -> None:
        update = client.token_update()
        if update is None or row.gmail_account_id is None:
            return
        with self._sessions() as session:
            GmailAccountRepo(session, self._cipher).save_access_token(
                row.gmail_account_id,
                access_token=update.access_token,
                expires_at=update.expires_at,
                now=self._clock.now(),
            )
            session.commit()

    def _disconnect(self, row: OutboxEmail, *, reason: str) -> None:
        if row.gmail_account_id is None:
            return
        with self._sessions() as session:
            repo = GmailAccountRepo(session, self._cipher)
            was_connected = repo.mark_disconnected(
                row.gmail_account_id, reason=reason, now=self._clock.now()
            )
            account = repo.get(row.gmail_account_id)
            session.commit()
        log.warning(
            "gmail disconnected",
            extra={"org_id": row.org_id, "gmail_account_id": account.id, "reason": reason},
        )
        if was_connected and self.on_disconnected is not None:
            try:
                self.on_disconnected(account.org_id, account.user_id, account.email, reason)
            except Exception:  # noqa: BLE001 - telling the rep must not undo the disconnection
                log.exception("telling the rep about a disconnected mailbox failed")

    # the outbox --------------------------------------------------------------------------

    def drain_outbox(self, *, limit: int = 20) -> DrainReport:
        """Reconcile rows whose lease ran out, then send the queued rows that are due."""
        finished: list[FinishedSend] = []
        handled = self._reconcile_expired(limit, finished)
        handled += self._send_due(limit, finished)
        return DrainReport(handled=handled, finished=finished)

    def next_due_at(self) -> datetime | None:
        """Return when the outbox next has work."""
        with self._sessions() as session:
            return OutboxRepo(session).next_due_at()

    def _reconcile_expired(self, limit: int, finished: list[FinishedSend]) -> int:
        now = self._clock.now()
        with self._sessions() as session:
            outbox = OutboxRepo(session)
            rows = outbox.expired_leases(now=now, limit=limit)
            for row in rows:
                outbox.extend_lease(row.id, worker=self._worker, until=now + self.limits.lease)
            session.commit()
        for row in rows:
            mine = replace(row, claimed_by=self._worker)
            ref = self._search(mine)
            if isinstance(ref, GmailMessageRef):
                outcome = self._finish_sent(mine, ref)
                finished.append(FinishedSend(row.org_id, row.id, row.card_id, outcome))
        return len(rows)

    def _search(self, row: OutboxEmail) -> GmailMessageRef | None | bool:
        """Find an unconfirmed send in its mailbox; requeue it if Gmail never got it.

        Returns the message, None when it was requeued, False when the answer is not known
        yet (the row stays `sending` and is looked at again later).
        """
        now = self._clock.now()
        tokens, _ = self._tokens(row)
        if tokens is None:
            detail = (
                f"Salesbot cannot check whether this email went out until Gmail is reconnected"
                f" for {row.from_email}"
            )
            with self._sessions() as session:
                OutboxRepo(session).hold(
                    row.id,
                    worker=self._worker,
                    until=now + self.limits.disconnected_hold,
                    reason=detail,
                )
                session.commit()
            return False
        client = self._client(tokens)
        try:
            ref = client.find_by_message_id(row.message_id)
        except GmailError as exc:
            self._keep_token(row, client)
            if exc.kind == FailureKind.REVOKED:
                self._disconnect(row, reason="Google access was revoked")
            with self._sessions() as session:
                OutboxRepo(session).hold(
                    row.id,
                    worker=self._worker,
                    until=now + self.limits.confirm_after,
                    reason=f"Salesbot could not search the mailbox yet ({exc.message})",
                )
                session.commit()
            return False
        self._keep_token(row, client)
        if ref is not None:
            log.info(
                "unconfirmed send found in the mailbox",
                extra={"email_send_id": row.id, "gmail_message_id": ref.id},
            )
            return ref
        with self._sessions() as session:
            OutboxRepo(session).requeue(
                row.id,
                not_before=now,
                reason="Gmail never received it; sending it again",
                worker=self._worker,
            )
            session.commit()
        log.info("unconfirmed send not in the mailbox; requeued", extra={"email_send_id": row.id})
        return None

    def _send_due(self, limit: int, finished: list[FinishedSend]) -> int:
        now = self._clock.now()
        claimed: list[_Claimed] = []
        with self._sessions() as session:
            rows = OutboxRepo(session).due_queued(now=now, limit=limit)
            deferred: dict[int, int] = {}
            handled = 0
            for row in rows:
                key = row.gmail_account_id or 0
                reservation = self._reserve(
                    session, row, now=now, wait=False, ahead=deferred.get(key, 0)
                )
                if isinstance(reservation, _Busy):
                    continue
                handled += 1
                if isinstance(reservation, _Claimed):
                    claimed.append(reservation)
                elif isinstance(reservation, _Waiting):
                    deferred[key] = deferred.get(key, 0) + 1
                else:
                    outcome = _outcome(row, SendStatus.FAILED, detail=reservation.detail)
                    finished.append(FinishedSend(row.org_id, row.id, row.card_id, outcome))
            session.commit()
        for claim in claimed:
            outcome = self._deliver(claim, attempt=1, inline=False)
            if outcome.status in (SendStatus.SENT, SendStatus.FAILED):
                row = claim.row
                finished.append(FinishedSend(row.org_id, row.id, row.card_id, outcome))
        return handled


class OutboxWorker:
    """Background threads that drain the outbox; `drain_outbox()` runs one round by hand."""

    def __init__(
        self,
        mailer: GmailMailer,
        *,
        clock: Clock,
        on_sent: SendListener | None = None,
        threads: int = 1,
        batch: int = 20,
        poll_seconds: float = 5.0,
    ) -> None:
        self.mailer = mailer
        self.on_sent = on_sent
        self._clock = clock
        self._threads = threads
        self._batch = batch
        self._poll = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        mailer.on_queued = self.wake

    def drain_outbox(self) -> int:
        """Run one round: reconcile expired leases, send what is due; return rows handled."""
        report = self.mailer.drain_outbox(limit=self._batch)
        for item in report.finished:
            self._tell(item)
        return report.handled

    def run_until_idle(self, *, max_rounds: int = 10_000) -> int:
        """Drain until a round handles nothing; return how many rows were handled."""
        total = 0
        for _ in range(max_rounds):
            handled = self.drain_outbox()
            if not handled:
                break
            total += handled
        return total

    def _tell(self, item: FinishedSend) -> None:
        if self.on_sent is None:
            return
        try:
            self.on_sent(item.org_id, item.email_send_id, item.card_id, item.outcome)
        except Exception:  # noqa: BLE001 - the send is recorded; the card is refreshed later
            log.exception(
                "on_sent listener failed",
                extra={"email_send_id": item.email_send_id, "card_id": item.card_id},
            )

    def wake(self) -> None:
        """Tell the threads that the outbox changed (a row was queued)."""
        self._wake.set()

    def start(self) -> None:
        """Start the background threads."""
        if self._workers:
            return
        self._stop.clear()
        for n in range(self._threads):
            thread = threading.Thread(target=self._loop, name=f"outbox-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        """Stop the threads after their current round."""
        self._stop.set()
        self._wake.set()
        for thread in self._workers:
            thread.join(timeout=60)
        self._workers.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.drain_outbox()
                due = self.mailer.next_due_at() if not handled else None
            except Exception:  # noqa: BLE001 - e.g. the database restarting; try again later
                log.exception("outbox round failed")
                handled, due = 0, None
            if handled:
                continue
            wait = self._poll
            if due is not None:
                wait = max(0.05, min(wait, (due - self._clock.now()).total_seconds()))
            self._wake.wait(wait)
            self._wake.clear()
