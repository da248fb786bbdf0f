"""Reputation use cases: take reviews in, score and route them, answer them (docs/reputation.md).

Each batch of reviews is read by the classifier (Claude, the offline model when Claude is
away or not configured) between units of work, then stored with its cards in one unit of
work: a review is never stored without the cards it calls for, nor a card without its
review. The cards live in the organization's replies inbox job and are posted by the
posting worker like every other card.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from domain.cards import Card, CardState, CardType, Priority, describe_refusal, draft_fingerprint
from domain.classification import Classification, ClassifyRequest
from domain.deps import Deps
from domain.errors import Conflict, ExternalServiceError, InvalidInput, NotFound, NotPermitted
from domain.jobs import TaskKind
from domain.outreach.common import Actor, CardRefused, StaleCard, authorize_card, decide_card
from domain.outreach.presenting import Presenting
from domain.ports import MessageClassifier, RegexEngine
from domain.reputation import (
    MAX_REVIEW_CHARS,
    CompiledRule,
    Escalation,
    EscalationKind,
    EscalationRule,
    IngestResult,
    Platform,
    ReputationSettings,
    ReputationTrends,
    ResponseTemplate,
    Review,
    ReviewIn,
    ReviewStatus,
    RouteTo,
    Scenario,
    SentimentReading,
    check_response_template,
    check_rule,
    compile_rules,
    draft_response,
    evaluate_escalation,
    needs_response,
    pick_template,
    platform_label,
    read_sentiment,
    scenario_for,
    verify_webhook,
)
from domain.reputation_ports import ReputationUnitOfWork, SecretCipher
from domain.templates import TemplateProblem

log = logging.getLogger(__name__)

#: The card says this: posting on the site is a person's step (no site integration).
POST_IT_YOURSELF: Final = "Post this response on the review site; Salesbot records it here."
#: Card types of reviews.
REVIEW_CARD_TYPES: Final = frozenset({CardType.REVIEW_RESPONSE, CardType.REVIEW_ESCALATION})


def _reading_request(review: ReviewIn) -> ClassifyRequest:
    platform = platform_label(review.platform)
    return ClassifyRequest(
        subject=f"{platform} review, {review.rating} of 5 stars",
        body=review.text[:MAX_REVIEW_CHARS],
        from_name=review.author,
        context=f"a public review of our firm on {platform} (not an email to us)",
    )


class Reputation:
    """Reviews in, sentiment, escalations, drafted responses, trends."""

    def __init__(
        self,
        deps: Deps[ReputationUnitOfWork],
        *,
        model: MessageClassifier,
        offline: MessageClassifier,
        regex: RegexEngine,
        cipher: SecretCipher,
        presenting: Presenting | None = None,
        on_cards: Callable[[], None] | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._model = model
        self._offline = offline
        self._regex = regex
        self._cipher = cipher
        self._presenting = presenting
        self._on_cards = on_cards

    # --- reviews in ------------------------------------------------------------------------

    def ingest(self, org_id: int, reviews: Sequence[ReviewIn], *, source: str) -> IngestResult:
        """Score, route and store a batch of reviews with their cards, in one unit of work.

        A review already stored (same platform and external id), or twice in the batch, is
        reported as a duplicate and left as it is.
        """
        keys = [(r.platform.value, r.external_id) for r in reviews]
        with self._uow() as uow:
            stored = uow.reviews.existing(org_id, keys)
            settings = uow.reputation_settings.get(org_id)
            rules = uow.review_rules.list(org_id)
            templates = uow.review_templates.list(org_id)
        fresh: list[ReviewIn] = []
        duplicates: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set(stored)
        for review, key in zip(reviews, keys, strict=True):
            if key in seen:
                duplicates.append(key)
                continue
            seen.add(key)
            fresh.append(review)
        readings = self._read(fresh)
        compiled = compile_rules(rules, self._regex)
        planned = [
            self._plan(org_id, review, reading, compiled, templates, settings, source=source)
            for review, reading in zip(fresh, readings, strict=True)
        ]
        now = self._clock.now()
        try:
            ids, again, cards, escalations, posts = self._store(org_id, planned, now)
        except Conflict:
            # Another request stored some of these since they were looked up: once more,
            # and what it stored is reported as duplicates.
            ids, again, cards, escalations, posts = self._store(org_id, planned, now)
        duplicates += again
        if posts and self._on_cards is not None:
            self._on_cards()
        log.info(
            "reviews stored",
            extra={"org_id": org_id, "stored": len(ids), "duplicates": len(duplicates)},
        )
        return IngestResult(
            created=ids, duplicates=duplicates, response_cards=cards, escalations=escalations
        )

    def _store(
        self, org_id: int, planned: list[Any], now: datetime
    ) -> tuple[list[int], list[tuple[str, str]], int, int, list[dict[str, Any]]]:
        """Store the planned reviews not stored meanwhile, with their cards, in one unit of
        work; return the ids, the keys found stored meanwhile, the counts and the posts."""
        cards = escalations = 0
        posts: list[dict[str, Any]] = []
        with self._uow() as uow:
            again = uow.reviews.existing(org_id, [k for k, *_ in planned])
            duplicates = [p[0] for p in planned if p[0] in again]
            planned = [p for p in planned if p[0] not in again]
            ids = uow.reviews.add_many(
                org_id, [{**row, "received_at": now} for _, row, _, _ in planned]
            )
            job_id = uow.jobs.inbox_job_id(org_id, now=now) if planned else 0
            for review_id, (_, row, response, escalation) in zip(ids, planned, strict=True):
                links: dict[str, Any] = {}
                if response is not None:
                    links["response_card_id"] = self._add_card(
                        uow, org_id, job_id, review_id, row, response
                    )
                    posts.append(_post(links["response_card_id"]))
                    cards += 1
                if escalation is not None:
                    links["escalation_card_id"] = self._add_card(
                        uow, org_id, job_id, review_id, row, escalation
                    )
                    posts.append(_post(links["escalation_card_id"]))
                    escalations += 1
                if links:
                    uow.reviews.update(org_id, review_id, **links)
            if posts:
                # Queued even where this process has no chat (the CSV import): the posting
                # worker of the server shows them; without a chat anywhere they wait in the
                # App Home and the API.
                uow.tasks.add_many(org_id, job_id, posts)
            uow.commit()
        return ids, duplicates, cards, escalations, posts

    def ingest_webhook(
        self, org_slug: str, *, timestamp: str | None, signature: str | None, body: bytes
    ) -> int:
        """Verify a webhook request's signature with the organization's secret; return the
        organization's id (raise WebhookRefused: the API answers 401)."""
        with self._uow() as uow:
            org_id = uow.reputation_settings.org_id_by_slug(org_slug)
            sealed = uow.reputation_settings.webhook_secret(org_id) if org_id else None
        secret = self._cipher.decrypt_bytes(sealed) if sealed is not None else None
        verify_webhook(
            secret, timestamp=timestamp, signature=signature, body=body, now=self._clock.now()
        )
        if org_id is None:  # never: an unknown slug has no secret and was refused above
            raise NotFound(f"organization {org_slug!r} not found")
        return org_id

    def _read(self, reviews: Sequence[ReviewIn]) -> list[SentimentReading]:
        """Read the text of each review with the model, the offline model where it fails."""
        with_text = [i for i, r in enumerate(reviews) if r.text.strip()]
        requests = [_reading_request(reviews[i]) for i in with_text]
        answers: list[Classification | ExternalServiceError] = (
            self._model.classify_many(requests) if requests else []
        )
        offline_model = self._model is self._offline
        failed = [k for k, a in enumerate(answers) if isinstance(a, ExternalServiceError)]
        if failed and not offline_model:
            log.warning("review sentiment read offline: the model failed", extra={"n": len(failed)})
            fallback = self._offline.classify_many([requests[k] for k in failed])
            for k, again in zip(failed, fallback, strict=True):
                answers[k] = again
        by_index: dict[int, tuple[Classification | ExternalServiceError, bool]] = {
            i: (answers[k], offline_model or k in failed) for k, i in enumerate(with_text)
        }
        readings: list[SentimentReading] = []
        for i, review in enumerate(reviews):
            found = by_index.get(i)
            read = found[0] if found is not None else None
            if found is None or not isinstance(read, Classification):
                readings.append(read_sentiment(review.rating, None, source="rating", offline=True))
                continue
            offline = found[1]
            source = self._offline.name if offline else self._model.name
            readings.append(read_sentiment(review.rating, read, source=source, offline=offline))
        return readings

    def _plan(
        self,
        org_id: int,
        review: ReviewIn,
        reading: SentimentReading,
        rules: Sequence[CompiledRule],
        templates: Sequence[ResponseTemplate],
        settings: ReputationSettings,
        *,
        source: str,
    ) -> tuple[tuple[str, str], dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        """The review's row, and the response and escalation cards it calls for."""
        escalation = evaluate_escalation(review.text, review.rating, rules)
        respond = needs_response(review.rating, reading.label)
        row: dict[str, Any] = {
            "platform": review.platform.value,
            "external_id": review.external_id,
            "author": review.author,
            "rating": review.rating,
            "text": review.text,
            "url": review.url,
            "posted_at": review.posted_at,
            "sentiment": reading.label.value,
            "sentiment_score": reading.score,
            "sentiment_source": reading.source[:100],
            "status": (ReviewStatus.AWAITING_RESPONSE if respond else ReviewStatus.NEW).value,
            "source": source,
            "escalated": escalation is not None,
            "escalation_reason": escalation.reason[:1000] if escalation else None,
            "escalated_to": escalation.route_to.value if escalation else None,
            "escalated_user_id": _route_user(escalation, settings),
        }
        who = review.author or "someone"
        stars = "★" * review.rating + "☆" * (5 - review.rating)
        base: dict[str, Any] = {
            "platform": review.platform.value,
            "rating": review.rating,
            "author": review.author,
            "review_url": review.url,
            "sentiment": reading.label.value,
            "sentiment_score": reading.score,
            "sentiment_source": reading.source,
        }
        urgent = review.rating <= 2 or escalation is not None
        response: dict[str, Any] | None = None
        if respond:
            scenario = scenario_for(reading.label, escalation)
            body, name = pick_template(templates, scenario)
            try:
                draft = draft_response(
                    template=body,
                    platform=review.platform,
                    author=review.author,
                    rating=review.rating,
                    text=review.text,
                    firm_name=settings.firm_name,
                )
                note = None
            except TemplateProblem as exc:
                # The organization's template failed for this review: the built-in one
                # drafts it, and the card says why.
                draft = draft_response(
                    template=pick_template([], scenario)[0],
                    platform=review.platform,
                    author=review.author,
                    rating=review.rating,
                    text=review.text,
                    firm_name=settings.firm_name,
                )
                note, name = f"template {name!r} failed ({exc.message}); built-in draft", None
            assignee = settings.account_manager_user_id
            response = {
                "type": CardType.REVIEW_RESPONSE,
                "priority": Priority.HIGH if urgent else Priority.MEDIUM,
                "title": f"Respond to {who}'s {stars} {platform_label(review.platform)} review",
                "rationale": (
                    f"{review.rating}★, {reading.label.value} ({reading.score:+.2f})"
                    + (" — escalated" if escalation else "")
                ),
                "payload": {
                    **base,
                    "response": draft,
                    "scenario": scenario.value,
                    "template": name,
                    "draft_note": note,
                    "assignee_user_id": assignee,
                    "sender_user_id": assignee,
                    "post_channel_id": settings.channel_id,
                },
                "fingerprint": _fingerprint(draft),
            }
        esc_card: dict[str, Any] | None = None
        if escalation is not None:
            assignee = row["escalated_user_id"]
            esc_card = {
                "type": CardType.REVIEW_ESCALATION,
                "priority": Priority.HIGH,
                "title": (
                    f"Escalated to {_route_words(escalation.route_to)}: {who}'s {stars} "
                    f"{platform_label(review.platform)} review"
                ),
                "rationale": escalation.reason,
                "payload": {
                    **base,
                    "escalated_to": escalation.route_to.value,
                    "escalation_reason": escalation.reason,
                    "assignee_user_id": assignee,
                    "sender_user_id": assignee,
                    "routing_note": None
                    if assignee is not None
                    else f"no {_route_words(escalation.route_to)} is set for reputation",
                },
                "fingerprint": None,
            }
        return (review.platform.value, review.external_id), row, response, esc_card

    def _add_card(
        self,
        uow: ReputationUnitOfWork,
        org_id: int,
        job_id: int,
        review_id: int,
        row: dict[str, Any],
        plan: dict[str, Any],
    ) -> int:
        (card_id,) = uow.cards.add_many(
            org_id,
            [
                {
                    "job_id": job_id,
                    "type": plan["type"].value,
                    "state": CardState.IN_REVIEW.value,
                    "priority": plan["priority"].value,
                    "title": plan["title"][:300],
                    "description": row["text"],
                    "rationale": plan["rationale"],
                    "action_payload": {**plan["payload"], "review_id": review_id},
                    "draft_fingerprint": plan["fingerprint"],
                }
            ],
        )
        return card_id

    # --- responding ------------------------------------------------------------------------

    def approve_response(self, actor: Actor, card_id: int, *, fingerprint: str | None) -> Card:
        """Approve a review's drafted response as shown: the response is recorded and the
        review marked responded, with the card done, in one unit of work."""
        now = self._clock.now()
        with self._uow() as uow:
            card = self._review_card(uow, actor, card_id)
            if fingerprint is not None and fingerprint != card.draft_fingerprint:
                raise StaleCard(
                    "This response changed since this message was shown; it has been "
                    "refreshed. Review it again."
                )
            if not decide_card(
                uow, card, CardState.APPROVED, now=now, approved_by=actor.user_id, approved_at=now
            ):
                raise CardRefused(
                    "Someone else acted on this card at the same moment; nothing was done twice."
                )
            uow.cards.compare_and_set(
                actor.org_id,
                card_id,
                expected=frozenset({CardState.APPROVED}),
                to=CardState.DONE,
                now=now,
                executed_at=now,
            )
            review_id = int(card.action_payload["review_id"])
            uow.reviews.update(
                actor.org_id,
                review_id,
                response_text=str(card.action_payload.get("response") or ""),
                responded_at=now,
                responded_by=actor.user_id,
                status=ReviewStatus.RESPONDED.value,
            )
            uow.commit()
            done = uow.cards.get(actor.org_id, card_id)
        log.info("review response approved", extra={"card_id": card_id, "review_id": review_id})
        self._show(actor, card_id)
        return done

    def edit_response(
        self,
        actor: Actor,
        card_id: int,
        *,
        text: str,
        approve: bool,
        fingerprint: str | None = None,
    ) -> Card:
        """Save an edited response (back in review, a new fingerprint); with `approve`,
        approve it as saved."""
        text = text.strip()
        if not text:
            raise InvalidInput("The response cannot be empty.", field="response")
        if len(text) > MAX_REVIEW_CHARS:
            raise InvalidInput(
                f"The response is longer than {MAX_REVIEW_CHARS:,} characters.", field="response"
            )
        now = self._clock.now()
        with self._uow() as uow:
            card = self._review_card(uow, actor, card_id)
            if fingerprint is not None and fingerprint != card.draft_fingerprint:
                raise StaleCard("This response changed since the form was opened; open it again.")
            payload = {**card.action_payload, "response": text, "edited_by": actor.user_id}
            new_fp = _fingerprint(text)
            if not decide_card(
                uow,
                card,
                CardState.IN_REVIEW,
                now=now,
                action_payload=payload,
                draft_fingerprint=new_fp,
            ):
                raise CardRefused(describe_refusal(card, CardState.IN_REVIEW))
            uow.commit()
            edited = uow.cards.get(actor.org_id, card_id)
        if approve:
            return self.approve_response(actor, card_id, fingerprint=new_fp)
        self._show(actor, card_id)
        return edited

    def decline_response(self, actor: Actor, card_id: int, *, reason: str | None) -> Card:
        """Reject a drafted response: the card is closed and the review left unanswered."""
        now = self._clock.now()
        reason = (reason or "").strip()[:500] or None
        with self._uow() as uow:
            card = self._review_card(uow, actor, card_id)
            if not decide_card(
                uow,
                card,
                CardState.REJECTED,
                now=now,
                rejected_reason=reason,
                approved_by=actor.user_id,
            ):
                raise CardRefused(describe_refusal(card, CardState.REJECTED))
            uow.reviews.update(
                actor.org_id,
                int(card.action_payload["review_id"]),
                status=ReviewStatus.DECLINED.value,
            )
            uow.commit()
            rejected = uow.cards.get(actor.org_id, card_id)
        self._show(actor, card_id)
        return rejected

    def _review_card(self, uow: ReputationUnitOfWork, actor: Actor, card_id: int) -> Card:
        card = uow.cards.get(actor.org_id, card_id)
        authorize_card(uow, actor, card)
        if card.type != CardType.REVIEW_RESPONSE or "review_id" not in card.action_payload:
            raise InvalidInput("This card is not a review's drafted response.")
        return card

    def _show(self, actor: Actor, card_id: int) -> None:
        if self._presenting is not None:
            self._presenting.show_card(actor.org_id, card_id, actor_slack_id=actor.slack_user_id)

    # --- reading ---------------------------------------------------------------------------

    def list_reviews(self, org_id: int, **filters: Any) -> list[Review]:
        """List reviews, newest first (filters: platform, status, escalated, since, until)."""
        with self._uow() as uow:
            return uow.reviews.list(org_id, **filters)

    def get_review(self, org_id: int, review_id: int) -> Review:
        """Return one review."""
        with self._uow() as uow:
            return uow.reviews.get(org_id, review_id)

    def trends(self, org_id: int, since: datetime, until: datetime) -> ReputationTrends:
        """Daily sentiment and ratings, response rate and times of [since, until)."""
        if until <= since:
            raise InvalidInput("`until` must be after `since`.", field="until")
        if (until - since).days > 366:
            raise InvalidInput("A trends window is at most 366 days.", field="since")
        with self._uow() as uow:
            return uow.reviews.trends(org_id, since, until)

    # --- settings, templates, rules --------------------------------------------------------

    def settings(self, org_id: int) -> ReputationSettings:
        """Return the organization's reputation settings."""
        with self._uow() as uow:
            return uow.reputation_settings.get(org_id)

    def update_settings(
        self, actor: Actor | None, org_id: int, **values: Any
    ) -> ReputationSettings:
        """Set who gets review cards, where responses are posted, the firm's name (admins)."""
        _admin(actor)
        if "firm_name" in values:
            values["firm_name"] = (values["firm_name"] or "").strip()
        with self._uow() as uow:
            for key in ("account_manager_user_id", "legal_user_id"):
                user_id = values.get(key)
                if user_id is not None and uow.users.find(org_id, user_id) is None:
                    raise InvalidInput(f"user {user_id} is not in this organization", field=key)
            uow.reputation_settings.save(org_id, **values)
            uow.commit()
            return uow.reputation_settings.get(org_id)

    def rotate_webhook_secret(self, actor: Actor | None, org_id: int) -> str:
        """Make a new webhook secret (the old one stops working); return it, shown once."""
        _admin(actor)
        secret = secrets.token_urlsafe(32)
        with self._uow() as uow:
            uow.reputation_settings.save(
                org_id, webhook_secret_encrypted=self._cipher.encrypt_bytes(secret)
            )
            uow.commit()
        return secret

    def list_templates(self, org_id: int) -> list[ResponseTemplate]:
        """List the response templates."""
        with self._uow() as uow:
            return uow.review_templates.list(org_id)

    def get_template(self, org_id: int, template_id: int) -> ResponseTemplate:
        """Return one response template."""
        with self._uow() as uow:
            return uow.review_templates.get(org_id, template_id)

    def add_template(
        self,
        actor: Actor | None,
        org_id: int,
        *,
        scenario: Scenario,
        name: str,
        body: str,
        is_active: bool = True,
    ) -> ResponseTemplate:
        """Add a response template, checked in the sandbox first (admins)."""
        _admin(actor)
        check_response_template(body)
        with self._uow() as uow:
            template = uow.review_templates.add(
                org_id,
                scenario=scenario,
                name=name,
                body=body,
                is_active=is_active,
                now=self._clock.now(),
            )
            uow.commit()
            return template

    def update_template(
        self, actor: Actor | None, org_id: int, template_id: int, **values: Any
    ) -> ResponseTemplate:
        """Change a response template (admins); a new body is checked first."""
        _admin(actor)
        changes = {k: v for k, v in values.items() if v is not None}
        if "body" in changes:
            check_response_template(changes["body"])
        with self._uow() as uow:
            uow.review_templates.get(org_id, template_id)
            if changes:
                uow.review_templates.update(org_id, template_id, now=self._clock.now(), **changes)
            uow.commit()
            return uow.review_templates.get(org_id, template_id)

    def remove_template(self, actor: Actor | None, org_id: int, template_id: int) -> None:
        """Delete a response template (admins)."""
        _admin(actor)
        with self._uow() as uow:
            uow.review_templates.remove(org_id, template_id)
            uow.commit()

    def list_rules(self, org_id: int) -> list[EscalationRule]:
        """List the escalation rules."""
        with self._uow() as uow:
            return uow.review_rules.list(org_id)

    def get_rule(self, org_id: int, rule_id: int) -> EscalationRule:
        """Return one escalation rule."""
        with self._uow() as uow:
            return uow.review_rules.get(org_id, rule_id)

    def add_rule(
        self,
        actor: Actor | None,
        org_id: int,
        *,
        kind: EscalationKind,
        pattern: str,
        route_to: RouteTo,
        user_id: int | None = None,
        is_active: bool = True,
    ) -> EscalationRule:
        """Add an escalation rule (admins); a regex RE2 cannot run is refused."""
        _admin(actor)
        pattern = check_rule(kind, pattern, route_to, user_id, self._regex)
        with self._uow() as uow:
            if user_id is not None and uow.users.find(org_id, user_id) is None:
                raise InvalidInput(f"user {user_id} is not in this organization", field="user_id")
            rule = uow.review_rules.add(
                org_id,
                kind=kind,
                pattern=pattern,
                route_to=route_to,
                user_id=user_id,
                is_active=is_active,
            )
            uow.commit()
            return rule

    def update_rule(
        self,
        actor: Actor | None,
        org_id: int,
        rule_id: int,
        *,
        is_active: bool | None = None,
        route_to: RouteTo | None = None,
        user_id: int | None = None,
    ) -> EscalationRule:
        """Change where a rule routes, or whether it is active (admins)."""
        _admin(actor)
        with self._uow() as uow:
            rule = uow.review_rules.get(org_id, rule_id)
            route = route_to or rule.route_to
            who = user_id if route == RouteTo.USER else None
            if route == RouteTo.USER and who is None:
                who = rule.user_id
            check_rule(rule.kind, rule.pattern, route, who, self._regex)
            changes: dict[str, Any] = {"route_to": route.value, "user_id": who}
            if is_active is not None:
                changes["is_active"] = is_active
            uow.review_rules.update(org_id, rule_id, **changes)
            uow.commit()
            return uow.review_rules.get(org_id, rule_id)

    def remove_rule(self, actor: Actor | None, org_id: int, rule_id: int) -> None:
        """Delete an escalation rule (admins)."""
        _admin(actor)
        with self._uow() as uow:
            uow.review_rules.remove(org_id, rule_id)
            uow.commit()


def _admin(actor: Actor | None) -> None:
    """Changes are for admins, and for organization-wide tokens (actor None)."""
    if actor is not None and not actor.is_admin:
        raise NotPermitted("Only an admin can change reputation settings, templates and rules.")


def _route_user(escalation: Escalation | None, settings: ReputationSettings) -> int | None:
    if escalation is None:
        return None
    if escalation.route_to == RouteTo.USER:
        return escalation.user_id
    if escalation.route_to == RouteTo.LEGAL:
        return settings.legal_user_id
    return settings.account_manager_user_id


def _route_words(route: RouteTo) -> str:
    return {RouteTo.ACCOUNT_MANAGER: "the account manager", RouteTo.LEGAL: "legal"}.get(
        route, "a named person"
    )


def _fingerprint(response: str) -> str:
    return draft_fingerprint(to="review", subject="", body=response)


def _post(card_id: int) -> dict[str, Any]:
    return {"kind": TaskKind.POST_CARD.value, "input": {"card_id": card_id}}


__all__ = ["POST_IT_YOURSELF", "REVIEW_CARD_TYPES", "Platform", "Reputation"]
