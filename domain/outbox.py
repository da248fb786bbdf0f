"""Send email from a rep's own mailbox exactly once, at the mailbox's pace.

`Outbox` implements the `Mailer` port through the outbox (`email_sends`):

1. The email is written with our own Message-ID and committed before the mailbox is
   called; a card has one row (`card_id` is unique), so asking twice returns the first
   outcome.
2. A row is claimed by compare-and-set together with a send slot of its mailbox: the
   mailbox row is locked (SKIP LOCKED on PostgreSQL), the daily cap counted over the
   last 24 hours and the minimum spacing kept through `gmail_accounts.next_send_at`.
   What cannot go now is QUEUED with the time it will go and a sentence saying why.
3. The mailbox's answer decides: accepted → sent (and, for a contact, a `sent` event in
   its engagement history, in the same transaction); rate limited → retried after
   Retry-After with jittered backoff; refused → failed (certainly not sent); no answer
   (a 5xx, a broken connection, a crash) → the row stays `sending` under a lease and the
   mailbox is searched for `rfc822msgid:` before anything is sent again.

Each `with self._uow()` block below is one transaction, and where they begin and end is
what makes a send exactly-once: the row is committed before the mailbox is called, a
claim is committed before the call, and the call's outcome is recorded in a transaction
of its own after it. No transaction is open while the mailbox is called. The fault
points (`domain/faults.py`) mark the moments between them that a crash test kills.

`drain()` is one round of the outbox worker (jobs/outbox.py): rows whose lease ran out
are reconciled, then queued rows that are due are sent.
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
from typing import Final

from domain import faults
from domain.clock import Clock
from domain.email_preferences import EmailType, UnsubscribeLinks
from domain.engagement import EngagementEvent, record_engagement
from domain.errors import InvalidInput
from domain.mail import OutgoingEmail, SendOutcome, SendStatus, text_to_html
from domain.mailboxes import AccountTokens
from domain.ports import EmailTracker, MailboxConnection, MailSender, OutboxUnitOfWork
from domain.sending import (
    FailureKind,
    MailboxError,
    MailMessage,
    MessageRef,
    OutboxEmail,
    OutboxStatus,
    SendLimits,
    backoff_detail,
    backoff_seconds,
    cap_detail,
    cap_position,
    cap_reopens_at,
    describe_time,
    disconnected_wait_detail,
    retries_inline,
    spaced_send_at,
    spacing_detail,
)
from domain.tracking import TOKEN_LIFETIME, TrackingPlan, tracking_plan
from domain.unsubscribe_address import build_unsubscribe_address

log = logging.getLogger(__name__)

# org_id, user_id, mailbox address, reason
DisconnectListener = Callable[[int, int | None, str, str], None]

# What a message is composed with when it is only checked before being stored.
_CHECK_MESSAGE_ID: Final = "<check@salesbot.invalid>"


@dataclass(frozen=True)
class FinishedSend:
    """A queued send that finally went out or failed, for the outbox worker's `on_sent`."""

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


class _LostRace:
    """Another request stored the card's row first (the insert found it)."""


def _outcome(
    row: OutboxEmail | None,
    status: SendStatus,
    *,
    detail: str | None = None,
    retry_at: datetime | None = None,
    ref: MessageRef | None = None,
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


def _default_name(rng: random.Random) -> str:
    host = socket.gethostname()[:24]
    return f"{host}:{os.getpid()}:{rng.randrange(16**6):06x}"


class Outbox:
    """The Mailer port through the outbox, and its drain; safe to share between threads."""

    def __init__(
        self,
        *,
        uow: Callable[[], OutboxUnitOfWork],
        sender: MailSender,
        clock: Clock,
        unsubscribe_url: UnsubscribeLinks,
        unsubscribe_token: Callable[[int, int], str] | None = None,
        limits: SendLimits | None = None,
        on_disconnected: DisconnectListener | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        name: str | None = None,
        tracker: EmailTracker | None = None,
    ) -> None:
        self._uow = uow
        # Adds the pixel and redirecting links to the campaign emails of organizations
        # that track opens or clicks (None: nothing is ever tracked).
        self._tracker = tracker
        self._sender = sender
        self._clock = clock
        self._unsubscribe_url = unsubscribe_url
        self._unsubscribe_token = unsubscribe_token
        self.limits = limits or SendLimits()
        self.on_disconnected = on_disconnected
        self.on_queued: Callable[[], None] | None = None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._name = (name or _default_name(self._rng))[:48]

    @property
    def _worker(self) -> str:
        """This thread's claim name: claims never pass between threads."""
        return f"{self._name}:{threading.get_ident() % 10**9}"

    def new_message_id(self) -> str:
        """Return a new Message-ID of ours (rows queued in bulk carry one from the start)."""
        return self._sender.new_message_id()

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
        stored = self._store_row(email, now)
        if not isinstance(stored, _LostRace):
            return stored
        with self._uow() as uow:
            raced = uow.outbox.by_card(email.card_id or 0)
        if raced is None:
            raise RuntimeError("outbox row of a card vanished during the send")
        return self._outcome_of(raced, now)

    def _store_row(self, email: OutgoingEmail, now: datetime) -> int | SendOutcome | _LostRace:
        to = email.to_email.strip()
        with self._uow() as uow:
            outbox = uow.outbox
            existing = outbox.by_card(email.card_id) if email.card_id is not None else None
            if existing is not None and existing.status != OutboxStatus.FAILED:
                return self._outcome_of(existing, now)

            def refuse(detail: str) -> SendOutcome:
                return _outcome(existing, SendStatus.FAILED, detail=detail)

            if email.sender_user_id is None:
                return refuse("This email has no sender; send it from a rep's connected Gmail.")
            account = uow.gmail_accounts.for_user(
                email.org_id, email.sender_user_id, connected_only=True
            )
            if account is None:
                who = outbox.sender_label(email.org_id, email.sender_user_id)
                return refuse(
                    f"No Gmail mailbox is connected for {who}: connect Gmail from Salesbot's"
                    " App Home, then Retry."
                )
            block = outbox.recipient_block(
                email.org_id, to, card_id=email.card_id, email_type=email.email_type
            )
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
                thread_id = outbox.last_sent_thread(email.enrollment_id)
            references = [r for r in email.references if r.strip()]
            in_reply_to = email.in_reply_to
            if thread_id and not references and not in_reply_to:
                references = outbox.thread_message_ids(email.org_id, thread_id)
                in_reply_to = references[-1] if references else None
            content: dict[str, object] = {
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
                "email_type": email.email_type.value if email.email_type else None,
            }
            try:
                self._sender.check(
                    MailMessage(
                        message_id=_CHECK_MESSAGE_ID,
                        date=now,
                        from_email=account.email,
                        from_name=None,
                        to_email=to,
                        to_name=email.to_name,
                        subject=email.subject,
                        body_text=email.body_text,
                        body_html=email.body_html,
                        in_reply_to=in_reply_to,
                        references=tuple(references),
                    )
                )
            except InvalidInput as exc:
                return refuse(f"This email cannot be sent: {exc.message}")
            not_before = now + self.limits.claim_grace
            plan = self._tracking_plan(uow, email)
            content["tracked"] = plan is not None
            if existing is not None:
                if plan is not None:
                    content["body_html"] = self._tracked_html(email, existing.id, plan, now)
                if not outbox.rearm_failed(existing.id, not_before=not_before, **content):
                    return self._outcome_of(outbox.get(existing.id), now)
                send_id = existing.id
            else:
                row = outbox.add(
                    email.org_id,
                    card_id=email.card_id,
                    message_id=self._sender.new_message_id(),
                    not_before=not_before,
                    **content,
                )
                if row is None:
                    return _LostRace()
                send_id = row.id
                if plan is not None:
                    # The tokens name the send: its HTML is made once its id is known, and
                    # stored, so every attempt sends the same body.
                    html = self._tracked_html(email, send_id, plan, now)
                    outbox.replace_body_html(send_id, html)
            uow.commit()
        return send_id

    def _tracking_plan(self, uow: OutboxUnitOfWork, email: OutgoingEmail) -> TrackingPlan | None:
        """What this email carries to track it, from its organization's settings now."""
        if self._tracker is None or not email.campaign_email or email.job_id is None:
            return None
        settings = uow.analytics_settings.get(email.org_id).tracking
        return tracking_plan(settings, campaign_email=email.campaign_email, job_id=email.job_id)

    def _tracked_html(
        self, email: OutgoingEmail, send_id: int, plan: TrackingPlan, now: datetime
    ) -> str:
        """The email's HTML part with the pixel and redirecting links (the plain text part
        keeps its links as they are)."""
        assert self._tracker is not None  # a plan is made only with a tracker
        html = email.body_html if email.body_html is not None else text_to_html(email.body_text)
        return self._tracker.track(
            html,
            org_id=email.org_id,
            send_id=send_id,
            plan=plan,
            expires_at=now + TOKEN_LIFETIME,
        )

    def _attempt_new(self, send_id: int) -> SendOutcome:
        now = self._clock.now()
        with self._uow() as uow:
            row = uow.outbox.lock_queued(send_id)
            if row is not None:
                reservation = self._reserve(uow, row, now=now, wait=True, ahead=0)
                uow.commit()
        if row is None:
            # Claimed by the outbox worker meanwhile (or no longer queued): say where it is.
            with self._uow() as uow:
                current = uow.outbox.get(send_id)
            return self._outcome_of(current, now)
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
        self, uow: OutboxUnitOfWork, row: OutboxEmail, *, now: datetime, wait: bool, ahead: int
    ) -> _Reservation:
        """Claim `row` with a send slot of its mailbox now, or say when and why not."""
        outbox = uow.outbox
        mine = self._worker if row.status == OutboxStatus.SENDING else None
        if row.gmail_account_id is None:
            detail = "The mailbox of this email was removed; connect Gmail again, then Retry."
            outbox.mark_failed(row.id, reason=detail, worker=mine)
            return _Refused(detail)
        slot = outbox.lock_mailbox(row.gmail_account_id, wait=wait)
        if slot is None:
            return _Busy()
        if not slot.connected and row.email_type == EmailType.NEWSLETTER:
            # A newsletter has no Retry button: its emails wait for the mailbox instead of
            # failing (the card says so; cancelling the issue withdraws them).
            held_until = now + self.limits.disconnected_hold
            detail = disconnected_wait_detail(slot.email)
            outbox.requeue(row.id, not_before=held_until, reason=detail, worker=mine)
            return _Waiting(held_until, detail)
        if not slot.connected:
            detail = (
                f"Gmail is not connected for {slot.email} any more: reconnect it from"
                " Salesbot's App Home, then Retry."
            )
            outbox.mark_failed(row.id, reason=detail, worker=mine)
            return _Refused(detail)
        block = outbox.recipient_block(
            row.org_id,
            row.to_email,
            card_id=row.card_id,
            email_type=row.email_type,
            contact_required=row.campaign_email,
        )
        if block is None and row.email_type == EmailType.NEWSLETTER:
            # A newsletter row put back in the queue after its issue was cancelled (Gmail
            # rate-limited the attempt that was on its way): withdrawn, as the cancel would.
            block = outbox.withdrawn_newsletter(row.id)
        if block is not None:
            outbox.mark_failed(row.id, reason=block, worker=mine)
            return _Refused(block)
        window_start = now - self.limits.window
        full = cap_position(
            slot, sent=outbox.sends_since(slot.account_id, window_start), ahead=ahead
        )
        if full is not None:
            aged_out = outbox.send_time_since(
                slot.account_id, window_start, offset=full.known_offset
            )
            reopen = cap_reopens_at(
                full, aged_out=aged_out, interval=slot.interval, now=now, limits=self.limits
            )
            if ahead == 0:
                outbox.push_next_send(slot.account_id, reopen)
            detail = cap_detail(slot, reopen, now)
            outbox.requeue(row.id, not_before=reopen, reason=detail, worker=mine)
            return _Waiting(reopen, detail)
        at = spaced_send_at(slot, now=now, ahead=ahead, limits=self.limits)
        if at is not None:
            detail = spacing_detail(slot, at, now)
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
        outbox.push_next_send(slot.account_id, now + slot.interval)
        claimed = replace(
            row,
            from_email=slot.email,
            status=OutboxStatus.SENDING,
            claimed_by=self._worker,
            claimed_until=lease_until,
        )
        return _Claimed(claimed, hold=hold, interval=slot.interval)

    # one attempt -------------------------------------------------------------------------

    def _tokens(self, row: OutboxEmail) -> tuple[AccountTokens | None, str | None]:
        with self._uow() as uow:
            tokens = (
                uow.gmail_accounts.tokens(row.gmail_account_id)
                if row.gmail_account_id is not None
                else None
            )
            name = uow.outbox.sender_label(row.org_id, row.sender_user_id)
        return tokens, (name if row.sender_user_id is not None else None)

    def _unsubscribe_mailto(self, row: OutboxEmail) -> str | None:
        """Return the sending mailbox's `+unsub-<token>` address for this contact, if any.

        None (the mailbox's own address is used, as before) when no token maker is set or
        the mailbox's address cannot carry a tag (a plus-address already, a local part too
        long for the token).
        """
        if self._unsubscribe_token is None or row.contact_id is None or not row.from_email:
            return None
        token = self._unsubscribe_token(row.org_id, row.contact_id)
        try:
            return build_unsubscribe_address(row.from_email, token)
        except ValueError:
            return None

    def mailbox_tokens(self, account_id: int) -> AccountTokens | None:
        """Return a connected mailbox's tokens (inbound sync reads it with them), else None."""
        with self._uow() as uow:
            return uow.gmail_accounts.tokens(account_id)

    def _deliver(self, claim: _Claimed, *, attempt: int, inline: bool) -> SendOutcome:
        """Call the mailbox for a claimed row, free it for the next send, record the result."""
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
        unsubscribe_url = unsubscribe_mailto = None
        if row.campaign_email and row.contact_id is not None:
            unsubscribe_url = self._unsubscribe_url(row.org_id, row.contact_id, row.email_type)
            unsubscribe_mailto = self._unsubscribe_mailto(row)
        message = MailMessage(
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
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=unsubscribe_mailto,
        )
        mailbox = self._sender.connect(tokens)
        try:
            ref = mailbox.send(message, thread_id=row.gmail_thread_id)
        except InvalidInput as exc:
            self._release(claim)
            return self._finish_failed(row, f"This email cannot be sent: {exc.message}")
        except MailboxError as exc:
            self._keep_token(row, mailbox)
            if exc.kind == FailureKind.NOT_FOUND and row.gmail_thread_id:
                # The thread is gone from the mailbox (deleted): nothing was sent; the email
                # starts a new thread, in the same send slot.
                with self._uow() as uow:
                    uow.outbox.forget_thread(row.id)
                    uow.commit()
                unthreaded = replace(claim, row=replace(row, gmail_thread_id=None))
                return self._deliver(unthreaded, attempt=attempt, inline=inline)
            self._release(claim)
            return self._after_failure(row, mailbox, exc, attempt=attempt, inline=inline)
        # From here a crash leaves the row `sending`: once its lease is over the outbox
        # finds the email by its Message-ID (`rfc822msgid:`) and never sends it again.
        faults.reach("gmail.accepted")
        self._keep_token(row, mailbox)
        return self._finish_sent(row, ref, claim=claim)

    def _release(self, claim: _Claimed) -> None:
        """Free the mailbox: its next send may start once the spacing after this one is over."""
        with self._uow() as uow:
            self._release_in(uow, claim)
            uow.commit()

    def _release_in(self, uow: OutboxUnitOfWork, claim: _Claimed) -> None:
        account_id = claim.row.gmail_account_id
        if account_id is None:
            return
        uow.outbox.release_mailbox(account_id, held_until=claim.hold)
        uow.outbox.push_next_send(account_id, self._clock.now() + claim.interval)

    def _after_failure(
        self,
        row: OutboxEmail,
        mailbox: MailboxConnection,
        exc: MailboxError,
        *,
        attempt: int,
        inline: bool,
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
            return self._confirm_or_hold(row, mailbox)
        return self._back_off(row, exc, attempt=attempt, inline=inline)

    def _back_off(
        self, row: OutboxEmail, exc: MailboxError, *, attempt: int, inline: bool
    ) -> SendOutcome:
        """Gmail certainly did not send it: pause the mailbox, then retry here or later."""
        now = self._clock.now()
        wait = backoff_seconds(exc, attempt=attempt, limits=self.limits, jitter=self._rng.random())
        resume = now + timedelta(seconds=wait)
        retry_here = retries_inline(wait, attempt=attempt, inline=inline, limits=self.limits)
        detail = backoff_detail(exc, from_email=row.from_email, resume=resume, now=now)
        with self._uow() as uow:
            if row.gmail_account_id is not None:
                uow.outbox.push_next_send(row.gmail_account_id, resume)
            if retry_here:
                uow.outbox.release_slot(row.id, worker=self._worker)
            else:
                uow.outbox.requeue(row.id, not_before=resume, reason=detail, worker=self._worker)
            uow.commit()
        if not retry_here:
            return _outcome(row, SendStatus.QUEUED, detail=detail, retry_at=resume)
        self._sleep(wait)
        with self._uow() as uow:
            reservation = self._reserve(uow, row, now=self._clock.now(), wait=True, ahead=0)
            uow.commit()
        if isinstance(reservation, _Claimed):
            return self._deliver(reservation, attempt=attempt + 1, inline=inline)
        return self._settle(row, reservation, inline=inline)

    def _confirm_or_hold(self, row: OutboxEmail, mailbox: MailboxConnection) -> SendOutcome:
        """Gmail may have sent it: look for our Message-ID; if not seen, wait and look again."""
        try:
            ref = mailbox.find_by_message_id(row.message_id)
        except MailboxError:
            ref = None
        self._keep_token(row, mailbox)
        if ref is not None:
            return self._finish_sent(row, ref)
        now = self._clock.now()
        until = now + self.limits.confirm_after
        detail = (
            "Gmail did not confirm the send; Salesbot checks the mailbox at"
            f" {describe_time(until, now)} before sending anything again"
        )
        with self._uow() as uow:
            uow.outbox.hold(row.id, worker=self._worker, until=until, reason=detail)
            uow.commit()
        return _outcome(row, SendStatus.QUEUED, detail=detail, retry_at=until)

    def _finish_sent(
        self, row: OutboxEmail, ref: MessageRef, *, claim: _Claimed | None = None
    ) -> SendOutcome:
        now = self._clock.now()
        with self._uow() as uow:
            recorded = uow.outbox.mark_sent(
                row.id,
                worker=self._worker,
                gmail_message_id=ref.id,
                gmail_thread_id=ref.thread_id,
                at=now,
            )
            if recorded and row.contact_id is not None:
                # In the same transaction as the row's `sent`: a send is in the contact's
                # history exactly when it is sent (and once: the send id is the key).
                record_engagement(
                    uow.engagement,
                    org_id=row.org_id,
                    contact_id=row.contact_id,
                    event=EngagementEvent.SENT,
                    occurred_at=now,
                    email_send_id=row.id,
                    detail={"card_id": row.card_id} if row.card_id is not None else None,
                )
            if claim is not None:
                self._release_in(uow, claim)
            uow.commit()
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
        with self._uow() as uow:
            uow.outbox.mark_failed(row.id, reason=detail, worker=self._worker)
            uow.commit()
        return _outcome(row, SendStatus.FAILED, detail=detail)

    def _keep_token(self, row: OutboxEmail, mailbox: MailboxConnection) -> None:
        update = mailbox.token_update()
        if update is None or row.gmail_account_id is None:
            return
        with self._uow() as uow:
            uow.gmail_accounts.save_access_token(
                row.gmail_account_id,
                access_token=update.access_token,
                expires_at=update.expires_at,
                now=self._clock.now(),
            )
            uow.commit()

    def _disconnect(self, row: OutboxEmail, *, reason: str) -> None:
        if row.gmail_account_id is None:
            return
        with self._uow() as uow:
            was_connected = uow.gmail_accounts.mark_disconnected(
                row.gmail_account_id, reason=reason, now=self._clock.now()
            )
            account = uow.gmail_accounts.get(row.gmail_account_id)
            uow.commit()
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

    def drain(self, *, limit: int = 20) -> DrainReport:
        """Reconcile rows whose lease ran out, then send the queued rows that are due."""
        finished: list[FinishedSend] = []
        handled = self._reconcile_expired(limit, finished)
        handled += self._send_due(limit, finished)
        return DrainReport(handled=handled, finished=finished)

    def next_due_at(self) -> datetime | None:
        """Return when the outbox next has work."""
        with self._uow() as uow:
            return uow.outbox.next_due_at()

    def _reconcile_expired(self, limit: int, finished: list[FinishedSend]) -> int:
        now = self._clock.now()
        with self._uow() as uow:
            rows = uow.outbox.expired_leases(now=now, limit=limit)
            for row in rows:
                uow.outbox.extend_lease(row.id, worker=self._worker, until=now + self.limits.lease)
            uow.commit()
        for row in rows:
            mine = replace(row, claimed_by=self._worker)
            ref = self._search(mine)
            if isinstance(ref, MessageRef):
                outcome = self._finish_sent(mine, ref)
                finished.append(FinishedSend(row.org_id, row.id, row.card_id, outcome))
        return len(rows)

    def _search(self, row: OutboxEmail) -> MessageRef | None | bool:
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
            with self._uow() as uow:
                uow.outbox.hold(
                    row.id,
                    worker=self._worker,
                    until=now + self.limits.disconnected_hold,
                    reason=detail,
                )
                uow.commit()
            return False
        mailbox = self._sender.connect(tokens)
        try:
            ref = mailbox.find_by_message_id(row.message_id)
        except MailboxError as exc:
            self._keep_token(row, mailbox)
            if exc.kind == FailureKind.REVOKED:
                self._disconnect(row, reason="Google access was revoked")
            with self._uow() as uow:
                uow.outbox.hold(
                    row.id,
                    worker=self._worker,
                    until=now + self.limits.confirm_after,
                    reason=f"Salesbot could not search the mailbox yet ({exc.message})",
                )
                uow.commit()
            return False
        self._keep_token(row, mailbox)
        if ref is not None:
            log.info(
                "unconfirmed send found in the mailbox",
                extra={"email_send_id": row.id, "gmail_message_id": ref.id},
            )
            return ref
        with self._uow() as uow:
            uow.outbox.requeue(
                row.id,
                not_before=now,
                reason="Gmail never received it; sending it again",
                worker=self._worker,
            )
            uow.commit()
        log.info("unconfirmed send not in the mailbox; requeued", extra={"email_send_id": row.id})
        return None

    def _send_due(self, limit: int, finished: list[FinishedSend]) -> int:
        now = self._clock.now()
        claimed: list[_Claimed] = []
        with self._uow() as uow:
            rows = uow.outbox.due_queued(now=now, limit=limit)
            deferred: dict[int, int] = {}
            handled = 0
            for row in rows:
                key = row.gmail_account_id or 0
                reservation = self._reserve(
                    uow, row, now=now, wait=False, ahead=deferred.get(key, 0)
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
            uow.commit()
        for claim in claimed:
            outcome = self._deliver(claim, attempt=1, inline=False)
            if outcome.status in (SendStatus.SENT, SendStatus.FAILED):
                row = claim.row
                finished.append(FinishedSend(row.org_id, row.id, row.card_id, outcome))
        return handled
