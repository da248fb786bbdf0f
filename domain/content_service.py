"""Content calendar use cases (docs/content-calendar.md): content and its schedule (REST and
`/content`), the due-morning cards and what people do with them.

Each use case is one unit of work. The due-card sweep (`post_due`) claims waiting posts
whose morning came under a lease (one transaction), then, with no transaction open,
posts each card and records its ts (a compare-and-set on the lease). A worker that dies
between the claim and the record leaves the lease to run out: the next worker takes the
post again and, before posting, looks in the channel for a card of this post it may have
posted already (its metadata names the post), so a card is neither lost nor posted twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from domain import faults
from domain.content import (
    MAX_CALENDAR_ROWS,
    OPEN,
    WAITING,
    ContentIn,
    ContentItem,
    ContentSettings,
    ContentSettingsSet,
    ContentStatus,
    ContentUpdate,
    ContentWeek,
    ContentWeekItem,
    DueCard,
    Morning,
    ScheduleEntry,
    ScheduleIn,
    ScheduleStatus,
    ScheduleUpdate,
    SnoozeChoice,
    check_campaign_channel,
    check_transition,
    due_morning,
    snooze_until,
    week_of,
)
from domain.content_ports import ContentChat, ContentUnitOfWork
from domain.deps import Deps
from domain.errors import (
    ExternalServiceError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    NotPermitted,
)
from domain.outreach.common import Actor
from domain.ports import ChannelDirectory
from domain.reply_routing import check_card_channel

log = logging.getLogger(__name__)

#: The longest window the calendar answers for at once.
MAX_WINDOW_DAYS: Final = 92
#: Waits before a card that could not be posted is tried again: 1, 2, 4 … up to 60 minutes.
RETRY_BASE: Final = timedelta(minutes=1)
RETRY_MAX: Final = timedelta(minutes=60)
NOWHERE: Final = (
    "No one to tell: this item's owner is not linked to Slack and no marketing channel is "
    "set (PUT /api/marketing/content-settings with a channel_id)."
)


def retry_delay(attempts: int) -> timedelta:
    """The wait after `attempts` failed tries: 1, 2, 4, … minutes, at most an hour."""
    factor: int = 2 ** max(0, min(attempts, 7) - 1)
    return min(RETRY_BASE * factor, RETRY_MAX)


@dataclass(frozen=True)
class Week:
    """A local week of scheduled posts (Monday 00:00 to the next Monday, in UTC)."""

    since: datetime
    until: datetime
    time_zone: str
    entries: list[ScheduleEntry]

    @property
    def summary(self) -> ContentWeek:
        """The week as the digest lists it."""
        return week_summary(self.since, self.until, self.entries)


@dataclass(frozen=True)
class Acted:
    """What a click or a command did to a scheduled post."""

    entry: ScheduleEntry
    #: False when the post already was in that state (a double click, a Slack retry).
    changed: bool


class ContentCalendar:
    """Marketing content, its schedule, and the due-morning cards."""

    def __init__(
        self,
        deps: Deps[ContentUnitOfWork],
        *,
        chat: ContentChat | None = None,
        channels: ChannelDirectory | None = None,
        lease: timedelta = timedelta(minutes=5),
        worker: str = "content",
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self.chat = chat
        self._channels = channels
        self._lease = lease
        self._worker = worker

    # --- content ---------------------------------------------------------------------------

    def create_content(
        self,
        org_id: int,
        data: ContentIn,
        *,
        created_by: int | None,
        source_key: str | None = None,
    ) -> ContentItem:
        """Store a piece of content (its owner defaults to its creator). With `source_key`
        (a modal's view id), the same submission twice stores one item."""
        now = self._clock.now()
        with self._uow() as uow:
            if source_key is not None:
                found = uow.content.by_source_key(org_id, source_key)
                if found is not None:
                    return found
            _check_refs(uow, org_id, campaign_id=data.campaign_id, owner=data.owner_user_id)
            values = data.model_dump(mode="json")
            values["owner_user_id"] = data.owner_user_id or created_by
            item = uow.content.add(
                org_id,
                {**values, "created_by": created_by, "source_key": source_key},
                now=now,
            )
            uow.commit()
        log.info("content created", extra={"org_id": org_id, "content_id": item.id})
        return item

    def list_content(self, org_id: int, **filters: Any) -> list[ContentItem]:
        """List content, newest first (filters: status, campaign_id, limit, offset)."""
        with self._uow() as uow:
            return uow.content.list(org_id, **filters)

    def get_content(self, org_id: int, content_id: int) -> ContentItem:
        """Return one piece of content."""
        with self._uow() as uow:
            return uow.content.get(org_id, content_id)

    def update_content(
        self, actor: Actor | None, org_id: int, content_id: int, data: ContentUpdate
    ) -> ContentItem:
        """Change a piece of content (its owner, its creator or an admin). A new campaign
        must use the channels of the item's open scheduled posts."""
        changes = data.model_dump(mode="json", exclude_unset=True)
        now = self._clock.now()
        with self._uow() as uow:
            item = uow.content.get(org_id, content_id)
            _authorize(actor, item)
            campaign_id = changes.get("campaign_id", item.campaign_id)
            _check_refs(
                uow,
                org_id,
                campaign_id=changes.get("campaign_id"),
                owner=changes.get("owner_user_id"),
            )
            if "campaign_id" in changes and campaign_id is not None:
                campaign = uow.campaigns.get(org_id, campaign_id)
                for entry in uow.content_schedule.of_content(org_id, content_id):
                    if entry.status in OPEN:
                        check_campaign_channel(
                            entry.channel,
                            campaign_name=campaign.name,
                            campaign_channels=[c.value for c in campaign.channels],
                        )
            if changes:
                uow.content.update(org_id, content_id, now=now, **changes)
            uow.commit()
            return uow.content.get(org_id, content_id)

    def remove_content(self, actor: Actor | None, org_id: int, content_id: int) -> None:
        """Delete a piece of content and its schedule."""
        with self._uow() as uow:
            _authorize(actor, uow.content.get(org_id, content_id))
            uow.content.remove(org_id, content_id)
            uow.commit()

    # --- the schedule ----------------------------------------------------------------------

    def schedule(
        self,
        actor: Actor | None,
        org_id: int,
        content_id: int,
        data: ScheduleIn,
        *,
        created_by: int | None,
    ) -> ScheduleEntry:
        """Schedule a post of an item on one channel; a channel its campaign does not use
        is refused, naming the campaign's channels."""
        now = self._clock.now()
        with self._uow() as uow:
            item = uow.content.get(org_id, content_id)
            _authorize(actor, item)
            _check_channel(uow, org_id, item, data.channel)
            morning = uow.content_schedule.morning(org_id)
            entry_id = uow.content_schedule.add(
                org_id,
                {
                    "content_id": content_id,
                    "channel": data.channel.value,
                    "scheduled_for": data.scheduled_for,
                    "due_at": due_morning(data.scheduled_for, morning),
                    "status": ScheduleStatus.SCHEDULED.value,
                    "note": data.note,
                    "created_by": created_by,
                },
                now=now,
            )
            uow.commit()
            entry = uow.content_schedule.get(org_id, entry_id)
        log.info(
            "content scheduled",
            extra={"org_id": org_id, "content_id": content_id, "schedule_id": entry_id},
        )
        return entry

    def schedule_of(self, org_id: int, content_id: int) -> list[ScheduleEntry]:
        """An item's scheduled posts, by time."""
        with self._uow() as uow:
            uow.content.get(org_id, content_id)
            return uow.content_schedule.of_content(org_id, content_id)

    def get_entry(self, org_id: int, content_id: int | None, entry_id: int) -> ScheduleEntry:
        """One scheduled post (of this item, when given)."""
        with self._uow() as uow:
            entry = uow.content_schedule.get(org_id, entry_id)
        if content_id is not None and entry.content_id != content_id:
            raise NotFound(f"scheduled post {entry_id} not found")
        return entry

    def update_entry(
        self,
        actor: Actor | None,
        org_id: int,
        content_id: int,
        entry_id: int,
        data: ScheduleUpdate,
    ) -> ScheduleEntry:
        """Move a scheduled post (a new time schedules it again, a new channel is checked
        against the campaign), change its note, or record it done or skipped."""
        if data.status not in (None, ScheduleStatus.DONE, ScheduleStatus.SKIPPED):
            raise InvalidInput(
                "`status` may be set to done or skipped; move a post with `scheduled_for`.",
                field="status",
            )
        posted_url = check_url(data.posted_url) if data.posted_url is not None else None
        now = self._clock.now()
        with self._uow() as uow:
            item = uow.content.get(org_id, content_id)
            _authorize(actor, item)
            entry = uow.content_schedule.get(org_id, entry_id)
            if entry.content_id != content_id:
                raise NotFound(f"scheduled post {entry_id} not found")
            changes: dict[str, Any] = {}
            if data.channel is not None and data.channel != entry.channel:
                _check_channel(uow, org_id, item, data.channel)
                changes["channel"] = data.channel.value
            if data.note is not None:
                changes["note"] = data.note
            if data.scheduled_for is not None:
                if entry.status in (ScheduleStatus.DONE, ScheduleStatus.SKIPPED):
                    check_transition(entry_id, entry.status, ScheduleStatus.SCHEDULED)
                morning = uow.content_schedule.morning(org_id)
                changes.update(
                    scheduled_for=data.scheduled_for,
                    due_at=due_morning(data.scheduled_for, morning),
                    status=ScheduleStatus.SCHEDULED.value,
                    snoozed_until=None,
                    lease_until=None,
                    last_error=None,
                    attempts=0,
                )
            if changes:
                uow.content_schedule.update(org_id, entry_id, now=now, **changes)
            uow.commit()
        if data.status is not None:
            who = actor or Actor(org_id=org_id, user_id=0, role="admin")
            return self._act(
                who,
                entry_id,
                data.status,
                posted_url=posted_url,
                authorized=True,
            ).entry
        return self.get_entry(org_id, content_id, entry_id)

    def remove_entry(
        self, actor: Actor | None, org_id: int, content_id: int, entry_id: int
    ) -> None:
        """Delete a scheduled post."""
        with self._uow() as uow:
            _authorize(actor, uow.content.get(org_id, content_id))
            entry = uow.content_schedule.get(org_id, entry_id)
            if entry.content_id != content_id:
                raise NotFound(f"scheduled post {entry_id} not found")
            uow.content_schedule.remove(org_id, entry_id)
            uow.commit()

    def calendar(
        self,
        org_id: int,
        since: datetime,
        until: datetime,
        *,
        limit: int = MAX_CALENDAR_ROWS,
        offset: int = 0,
    ) -> list[ScheduleEntry]:
        """The posts scheduled in [since, until), by time, a page of at most `limit`."""
        if until <= since:
            raise InvalidInput("`to` must be after `from`.", field="to")
        if until - since > timedelta(days=MAX_WINDOW_DAYS):
            raise InvalidInput(
                f"a calendar window is at most {MAX_WINDOW_DAYS} days.", field="from"
            )
        with self._uow() as uow:
            return uow.content_schedule.window(org_id, since, until, limit=limit, offset=offset)

    def this_week(self, org_id: int) -> Week:
        """The organization's local week (Monday to Sunday) of scheduled posts."""
        now = self._clock.now()
        with self._uow() as uow:
            zone = uow.content_schedule.morning(org_id).time_zone
            since, until = week_of(now, zone)
            entries = uow.content_schedule.window(org_id, since, until)
        return Week(since=since, until=until, time_zone=zone, entries=entries)

    def create_scheduled(
        self,
        actor: Actor,
        data: ContentIn,
        slot: ScheduleIn,
        *,
        source_key: str | None = None,
    ) -> ScheduleEntry:
        """Store a piece of content and its first scheduled post at once (`/content add`);
        the same submission twice (`source_key`) stores one."""
        org_id = actor.org_id
        now = self._clock.now()
        with self._uow() as uow:
            if source_key is not None:
                found = uow.content.by_source_key(org_id, source_key)
                if found is not None:
                    return uow.content_schedule.of_content(org_id, found.id)[0]
            _check_refs(uow, org_id, campaign_id=data.campaign_id, owner=data.owner_user_id)
            values = data.model_dump(mode="json")
            values["owner_user_id"] = data.owner_user_id or actor.user_id
            item = uow.content.add(
                org_id,
                {**values, "created_by": actor.user_id, "source_key": source_key},
                now=now,
            )
            _check_channel(uow, org_id, item, slot.channel)
            morning = uow.content_schedule.morning(org_id)
            entry_id = uow.content_schedule.add(
                org_id,
                {
                    "content_id": item.id,
                    "channel": slot.channel.value,
                    "scheduled_for": slot.scheduled_for,
                    "due_at": due_morning(slot.scheduled_for, morning),
                    "status": ScheduleStatus.SCHEDULED.value,
                    "note": slot.note,
                    "created_by": actor.user_id,
                },
                now=now,
            )
            uow.commit()
            entry = uow.content_schedule.get(org_id, entry_id)
        log.info(
            "content scheduled from Slack",
            extra={"org_id": org_id, "content_id": item.id, "schedule_id": entry_id},
        )
        return entry

    def morning(self, org_id: int) -> Morning:
        """The organization's time zone and morning."""
        with self._uow() as uow:
            return uow.content_schedule.morning(org_id)

    # --- settings --------------------------------------------------------------------------

    def settings(self, org_id: int) -> ContentSettings:
        """The organization's content settings."""
        with self._uow() as uow:
            return uow.content_settings.get(org_id)

    def update_settings(
        self, actor: Actor | None, org_id: int, settings: ContentSettings
    ) -> ContentSettingsSet:
        """Set the marketing channel (admins and organization-wide tokens). An archived
        channel is refused; one Salesbot is not in, or could not check, is stored with a
        warning that says what to do."""
        if actor is not None and not actor.is_admin:
            raise NotPermitted("Only an admin can set the marketing channel.")
        warning = (
            check_card_channel(self._channels, org_id, settings.channel_id)
            if settings.channel_id is not None
            else None
        )
        with self._uow() as uow:
            uow.content_settings.save(org_id, channel_id=settings.channel_id, now=self._clock.now())
            uow.commit()
            stored = uow.content_settings.get(org_id)
        return ContentSettingsSet(channel_id=stored.channel_id, warning=warning)

    # --- what people do with a card --------------------------------------------------------

    def mark_done(self, actor: Actor, entry_id: int, *, posted_url: str | None = None) -> Acted:
        """Record that a post went out (with its URL, if given); the card shows who."""
        if posted_url is not None:
            posted_url = check_url(posted_url)
        return self._act(actor, entry_id, ScheduleStatus.DONE, posted_url=posted_url)

    def skip(self, actor: Actor, entry_id: int) -> Acted:
        """Record that a post will not go out."""
        return self._act(actor, entry_id, ScheduleStatus.SKIPPED)

    def snooze(self, actor: Actor, entry_id: int, choice: SnoozeChoice) -> Acted:
        """Put a card off to a later morning; it comes again as a new message then."""
        return self._act(actor, entry_id, ScheduleStatus.SNOOZED, snooze=choice)

    def _act(
        self,
        actor: Actor,
        entry_id: int,
        to: ScheduleStatus,
        *,
        posted_url: str | None = None,
        snooze: SnoozeChoice | None = None,
        authorized: bool = False,
    ) -> Acted:
        now = self._clock.now()
        with self._uow() as uow:
            entry = uow.content_schedule.get(actor.org_id, entry_id)
            item = uow.content.get(actor.org_id, entry.content_id)
            if not authorized:
                _authorize(actor, item)
            if entry.status == to and to != ScheduleStatus.SNOOZED:
                return Acted(entry, changed=False)
            check_transition(entry_id, entry.status, to)
            values: dict[str, Any] = {
                "status": to.value,
                "acted_by": actor.user_id or None,
                "acted_at": now,
                "lease_until": None,
            }
            if to == ScheduleStatus.DONE and posted_url:
                values["posted_url"] = posted_url
            if to == ScheduleStatus.SNOOZED:
                until = snooze_until(
                    snooze or SnoozeChoice.TOMORROW,
                    now=now,
                    morning=uow.content_schedule.morning(actor.org_id),
                )
                # A new card comes then: its attempts count afresh.
                values.update(snoozed_until=until, due_at=until, attempts=0)
            if not uow.content_schedule.compare_and_set(
                actor.org_id, entry_id, expected=frozenset({entry.status}), now=now, **values
            ):
                again = uow.content_schedule.get(actor.org_id, entry_id)
                if again.status == to:
                    return Acted(again, changed=False)
                raise InvalidTransition(
                    f"Someone else changed this post at the same moment (it is now "
                    f"{again.status.value}); nothing was done twice."
                )
            uow.commit()
            done = uow.content_schedule.get(actor.org_id, entry_id)
            morning = uow.content_schedule.morning(actor.org_id)
        log.info(
            "scheduled post updated",
            extra={"org_id": actor.org_id, "schedule_id": entry_id, "status": to.value},
        )
        self._show(actor.org_id, done, item, morning.time_zone, actor.slack_user_id)
        return Acted(done, changed=True)

    def show(self, org_id: int, entry_id: int, *, actor_slack_id: str | None = None) -> None:
        """Refresh a post's card to show where it stands."""
        with self._uow() as uow:
            entry = uow.content_schedule.get(org_id, entry_id)
            item = uow.content.get(org_id, entry.content_id)
            zone = uow.content_schedule.morning(org_id).time_zone
        self._show(org_id, entry, item, zone, actor_slack_id)

    def _show(
        self,
        org_id: int,
        entry: ScheduleEntry,
        item: ContentItem,
        time_zone: str,
        actor_slack_id: str | None,
    ) -> None:
        if self.chat is None or not (entry.card_channel_id and entry.card_ts):
            return
        try:
            self.chat.update_card(
                org_id,
                entry,
                body=item.body,
                link=item.link,
                time_zone=time_zone,
                actor_slack_id=actor_slack_id,
            )
        except ExternalServiceError as exc:
            # What happened is recorded; only its display on the card is missing.
            log.warning(
                "content card not updated",
                extra={"org_id": org_id, "schedule_id": entry.id, "reason": exc.message},
            )

    # --- the due-morning sweep ---------------------------------------------------------------

    def post_due(self, *, limit: int = 20) -> int:
        """Claim the posts whose morning came and post each one's card; return how many
        were claimed (0: nothing due)."""
        if self.chat is None:
            return 0
        now = self._clock.now()
        with self._uow() as uow:
            cards = uow.content_schedule.claim_due(
                now=now, limit=limit, lease_until=now + self._lease, worker=self._worker
            )
            uow.commit()
        if not cards:
            return 0
        faults.reach("content.claimed")
        for card in cards:
            self._post(card)
        return len(cards)

    def _post(self, card: DueCard) -> None:
        entry = card.entry
        context = {"org_id": entry.org_id, "schedule_id": entry.id, "attempts": entry.attempts}
        assert self.chat is not None
        target = card.target
        if target is None:
            self._release(card, NOWHERE, context)
            return
        try:
            channel = self.chat.open_target(entry.org_id, target)
            ts = None
            if entry.attempts > 1:
                # A worker before this one may have posted it and died before recording it.
                ts = self.chat.find_card(entry.org_id, channel, card)
            if ts is None:
                ts = self.chat.post_card(entry.org_id, channel, card)
                faults.reach("content.posted")
        except ExternalServiceError as exc:
            self._release(card, exc.message, context)
            return
        now = self._clock.now()
        with self._uow() as uow:
            recorded = uow.content_schedule.record_posted(
                entry.id,
                worker=self._worker,
                due_at=entry.due_at,
                channel_id=channel,
                ts=ts,
                now=now,
            )
            uow.commit()
        if recorded:
            log.info("content card posted", extra=context)
            return
        # Marked done or skipped, or moved, while the card was being posted: say so on it.
        log.warning("content card posted after its post changed", extra=context)
        with self._uow() as uow:
            current = uow.content_schedule.get(entry.org_id, entry.id)
            item = uow.content.get(entry.org_id, entry.content_id)
        if current.status not in WAITING or current.due_at != entry.due_at:
            self._show(
                entry.org_id,
                current.model_copy(update={"card_channel_id": channel, "card_ts": ts}),
                item,
                card.time_zone,
                None,
            )

    def _release(self, card: DueCard, error: str, context: dict[str, Any]) -> None:
        now = self._clock.now()
        with self._uow() as uow:
            uow.content_schedule.release(
                card.entry.id,
                worker=self._worker,
                due_at=card.entry.due_at,
                error=error[:500],
                retry_at=now + retry_delay(card.entry.attempts),
                now=now,
            )
            uow.commit()
        log.warning("content card not posted", extra={**context, "reason": error[:200]})


def week_summary(since: datetime, until: datetime, entries: list[ScheduleEntry]) -> ContentWeek:
    """The week's scheduled posts as the digest lists them."""
    return ContentWeek(
        since=since,
        until=until,
        items=[
            ContentWeekItem(
                schedule_id=e.id,
                content_id=e.content_id,
                title=e.title,
                channel=e.channel,
                scheduled_for=e.scheduled_for,
                status=e.status,
            )
            for e in entries
        ],
    )


def check_url(value: str) -> str:
    """A post's URL: http(s), at most 2,000 characters."""
    url = value.strip()
    if not url:
        raise InvalidInput("The post's link is empty.", field="posted_url")
    # `<`, `>` and `|` would end or split the link on the card (`<url|the post>`) and let
    # the rest be read as mrkdwn: a mention of @channel, a link elsewhere.
    if (
        not url.lower().startswith(("https://", "http://"))
        or len(url) > 2_000
        or any(c.isspace() or not c.isprintable() or c in "<>|" for c in url)
    ):
        raise InvalidInput(
            "The post's link must be a web address starting with https://", field="posted_url"
        )
    return url


def _authorize(actor: Actor | None, item: ContentItem) -> None:
    """The item's owner (its creator when it has none) and admins act on it; an
    organization-wide token (actor None) too."""
    if actor is None or actor.is_admin:
        return
    responsible = item.owner_user_id or item.created_by
    if responsible is None or actor.user_id == responsible:
        return
    raise NotPermitted("Only this item's owner or an admin can change it or its scheduled posts.")


def _check_refs(
    uow: ContentUnitOfWork, org_id: int, *, campaign_id: int | None, owner: int | None
) -> None:
    if campaign_id is not None:
        try:
            uow.campaigns.get(org_id, campaign_id)
        except NotFound:
            raise InvalidInput(
                f"campaign {campaign_id} is not in this organization", field="campaign_id"
            ) from None
    if owner is not None and uow.users.find(org_id, owner) is None:
        raise InvalidInput(f"user {owner} is not in this organization", field="owner_user_id")


def _check_channel(uow: ContentUnitOfWork, org_id: int, item: ContentItem, channel: Any) -> None:
    if item.campaign_id is None:
        return
    campaign = uow.campaigns.get(org_id, item.campaign_id)
    check_campaign_channel(
        channel,
        campaign_name=campaign.name,
        campaign_channels=[c.value for c in campaign.channels],
    )


__all__ = ["Acted", "ContentCalendar", "ContentStatus", "Week", "retry_delay", "week_summary"]
