"""The sandbox firm's marketing and reputation: a week of content on the calendar, the
marketing channel, reputation settings, response templates, escalation rules and a handful of
reviews, so that `/content list`, the content and review cards, `/api/reputation/trends` and
the digest's content and reputation sections have something to show on a first start.

Everything goes in through the product's own use cases, as the REST API and `/content add`
do (`ContentCalendar`, `Reputation`); the reviews through the CSV import's path (the file
parsed by `parse_review_csv`, then ingested with source `csv`, as `salesbot import reviews`
does), so they are scored, checked against the escalation rules and given their cards, which
the posting worker shows once the app runs. Dates are relative to the day it was made. Each
part is made only when the organization does not have it yet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from domain.clock import Clock
from domain.content import ContentIn, ContentSettings, ContentStatus, ContentType, ScheduleIn
from domain.content_service import ContentCalendar
from domain.deps import Deps
from domain.errors import InvalidInput
from domain.newsletter_service import Newsletters
from domain.newsletters import IssueIn, IssueStatus, NewsletterIn
from domain.outreach.common import Actor
from domain.ports import MessageClassifier
from domain.reputation import EscalationKind, RouteTo, Scenario, parse_review_csv
from domain.reputation_ports import SecretCipher
from domain.reputation_service import Reputation
from integrations.regex_re2 import Re2Engine
from storage.uow import UnitOfWork

MARKETING_CHANNEL_ID: Final = "C0SBXMARKET"
MARKETING_CHANNEL_NAME: Final = "marketing"
REPUTATION_CHANNEL_ID: Final = "C0SBXREPUTE"
REPUTATION_CHANNEL_NAME: Final = "reputation"
#: The staff member a review may name (the staff rule escalates such a review).
NAMED_STAFF: Final = "Jose Ruiz"
#: How many content items the seed looks through for its own (it makes three).
MAX_ITEMS: Final = 500


@dataclass(frozen=True)
class SeedPost:
    """One scheduled post of a content item: its channel, the business day it falls on
    (0: the next business day after the seed's day) and its local time."""

    channel: str
    business_day: int
    at: time
    note: str | None = None


@dataclass(frozen=True)
class SeedContent:
    """A content item and its posts; `key` makes its creation idempotent."""

    key: str
    content_type: ContentType
    title: str
    body: str
    posts: tuple[SeedPost, ...]
    link: str | None = None


CONTENT: Final[tuple[SeedContent, ...]] = (
    SeedContent(
        key="linkedin-turn-times",
        content_type=ContentType.SOCIAL_POST,
        title="Travis County turn times are down to 5 days",
        body=(
            "Turn times in Travis, Williamson and Hays counties are down to 5 business days,"
            " FHA and VA included. If a file is stuck with another panel, send it our way and"
            " we'll tell you the same day whether we can hit your closing date."
        ),
        link="https://sandbox-appraisals.example/blog/turn-times",
        posts=(SeedPost("linkedin", 0, time(10, 0)),),
    ),
    SeedContent(
        key="blog-rural-appraisals",
        content_type=ContentType.BLOG,
        title="What lenders should know about rural appraisals in the Hill Country",
        body=(
            "Rural files take longer for three reasons: fewer comparable sales, wells and"
            " septic systems to note, and acreage that changes the approach to value. Here is"
            " how we keep them under 7 business days."
        ),
        link="https://sandbox-appraisals.example/blog/rural-appraisals",
        posts=(
            SeedPost("blog", 1, time(9, 30)),
            SeedPost("facebook", 1, time(15, 0), note="Share the article with its link."),
        ),
    ),
    SeedContent(
        key="instagram-new-appraisers",
        content_type=ContentType.INFOGRAPHIC,
        title="Meet our two new certified appraisers",
        body=(
            "Two certified residential appraisers joined us in Williamson and Hays counties:"
            " more coverage for rural and new-construction files. #appraisal #texasrealestate"
        ),
        posts=(SeedPost("instagram", 2, time(12, 0), note="Post the team photo with it."),),
    ),
)

#: Response templates, two or three per scenario (the oldest active one drafts a card).
RESPONSE_TEMPLATES: Final[tuple[tuple[Scenario, str, str], ...]] = (
    (
        Scenario.NEGATIVE,
        "Apology, call us",
        "Hi {{ reviewer_name }}, thank you for telling us, and we are sorry we fell short on"
        " this one. Please call our office at 512-555-0100 so we can look at your file with"
        " you and make it right.\n— {{ firm_name }}",
    ),
    (
        Scenario.NEGATIVE,
        "Turn time delay",
        "Hi {{ reviewer_name }}, you are right that this report took longer than it should"
        " have. We have added two appraisers to bring turn times back to 5 days; please reach"
        " out so we can talk it through.\n— {{ firm_name }}",
    ),
    (
        Scenario.NEUTRAL,
        "Thanks, we can do better",
        "Hi {{ reviewer_name }}, thank you for the {{ rating }}-star review on {{ platform }}."
        " We'd like to hear what would have made it five: reply here or call our office.\n"
        "— {{ firm_name }}",
    ),
    (
        Scenario.NEUTRAL,
        "Thanks for the feedback",
        "Thanks for the feedback, {{ reviewer_name }}. We read every review and pass it on to"
        " the appraiser who worked your file.\n— {{ firm_name }}",
    ),
    (
        Scenario.POSITIVE,
        "Thank you",
        "Thank you, {{ reviewer_name }}! We're glad the appraisal went smoothly, and we look"
        " forward to the next one.\n— {{ firm_name }}",
    ),
    (
        Scenario.POSITIVE,
        "Thank you, refer a friend",
        "Thanks so much, {{ reviewer_name }}. If a friend or colleague needs an appraiser in"
        " Central Texas, we'd be glad to help them too.\n— {{ firm_name }}",
    ),
    (
        Scenario.LEGAL,
        "Take it offline",
        "Hi {{ reviewer_name }}, we take your concerns seriously. Please contact our office"
        " directly so we can review your file with you.\n— {{ firm_name }}",
    ),
    (
        Scenario.LEGAL,
        "Reconsideration of value",
        "Hi {{ reviewer_name }}, we're sorry about the outcome. A reconsideration of value can"
        " be requested through your lender; please call our office and we'll explain how.\n"
        "— {{ firm_name }}",
    ),
)

#: The reviews, as a review site's CSV export carries them: (platform, external id, author,
#: rating, text, days before the seed's day it was posted).
REVIEWS: Final[tuple[tuple[str, str, str, int, str, int], ...]] = (
    (
        "zillow",
        "zl-20931",
        "Rebecca T.",
        2,
        "The appraiser came out a day late and the report took twelve days. Our closing"
        " slipped a week and nobody returned my calls until I left three messages.",
        1,
    ),
    (
        "google",
        "g-58812",
        "Frank D.",
        1,
        "The value came in $40,000 under contract and killed our sale. My attorney says we"
        " have grounds for a lawsuit if this is not corrected.",
        2,
    ),
    (
        "yelp",
        "y-7741",
        "Priya N.",
        3,
        f"{NAMED_STAFF} was polite at the inspection, but the report listed the wrong square"
        " footage and it took two rounds of revisions to fix.",
        4,
    ),
    (
        "google",
        "g-58790",
        "Marcus W.",
        5,
        "Fast, thorough and easy to reach. The report was clear and on time. Will use again!",
        6,
    ),
    (
        "trustpilot",
        "tp-3310",
        "Lauren K.",
        5,
        "Excellent work on a jumbo refinance: four days from order to report, great"
        " communication the whole way. Highly recommend.",
        9,
    ),
    (
        "facebook",
        "fb-1187",
        "Carlos G.",
        5,
        "Wonderful experience, friendly appraiser, and the report arrived early. Thank you!",
        12,
    ),
)


@dataclass
class MarketingReport:
    """What the marketing part of the seed holds."""

    marketing_channel_id: str = MARKETING_CHANNEL_ID
    reputation_channel_id: str = REPUTATION_CHANNEL_ID
    #: When the LinkedIn post is scheduled (its card comes that morning).
    linkedin_post_at: datetime | None = None
    #: The calendar's time zone (its weeks run Monday to Sunday there).
    time_zone: str = "UTC"
    content_items: int = 0
    scheduled_posts: int = 0
    reviews: int = 0
    #: The newsletter issue waiting for review (set once the mailboxes are connected).
    newsletter_issue_id: int | None = None
    made: list[str] = field(default_factory=list)


def next_business_day(today: date, offset: int = 0) -> date:
    """The weekday `offset` business days after the first weekday after `today`."""
    day = today + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    for _ in range(offset):
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
    return day


def reviews_csv(today: date) -> io.StringIO:
    """The reviews as a review site's export (docs/reputation.md's CSV columns)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("platform", "external_id", "author", "rating", "text", "url", "posted_at"))
    for platform, external_id, author, rating, text, days in REVIEWS:
        posted = datetime.combine(today - timedelta(days=days), time(17, 0), tzinfo=UTC)
        writer.writerow(
            (
                platform,
                external_id,
                author,
                str(rating),
                text,
                f"https://{platform}.example/reviews/{external_id}",
                posted.isoformat(),
            )
        )
    return io.StringIO(buffer.getvalue(), newline="")


def seed_marketing(
    units: Callable[[], UnitOfWork],
    *,
    org_id: int,
    clock: Clock,
    admin: Actor,
    legal_user_id: int,
    firm_name: str,
    classifiers: tuple[MessageClassifier, MessageClassifier],
    cipher: SecretCipher,
) -> MarketingReport:
    """Give the organization its content calendar, reputation settings, templates, rules
    and reviews; what it already has is kept as it is."""
    report = MarketingReport()
    calendar = ContentCalendar(Deps(uow=units, clock=clock))
    _ensure_content(calendar, org_id, admin, clock, report)
    model, offline = classifiers
    reputation = Reputation(
        Deps(uow=units, clock=clock),
        model=model,
        offline=offline,
        regex=Re2Engine(),
        cipher=cipher,
    )
    _ensure_reputation(reputation, org_id, admin, legal_user_id, firm_name, report)
    _ensure_reviews(reputation, org_id, clock, report)
    return report


def _ensure_content(
    calendar: ContentCalendar, org_id: int, admin: Actor, clock: Clock, report: MarketingReport
) -> None:
    if calendar.settings(org_id).channel_id is None:
        calendar.update_settings(admin, org_id, ContentSettings(channel_id=MARKETING_CHANNEL_ID))
        report.made.append("marketing channel")
    report.time_zone = calendar.morning(org_id).time_zone
    zone = ZoneInfo(report.time_zone)
    today = clock.now().astimezone(zone).date()
    have = {item.title: item for item in calendar.list_content(org_id, limit=MAX_ITEMS)}
    for seeded in CONTENT:
        first, *more = seeded.posts
        if seeded.title in have:
            entries = calendar.schedule_of(org_id, have[seeded.title].id)
        else:
            entry = calendar.create_scheduled(
                admin,
                ContentIn(
                    content_type=seeded.content_type,
                    title=seeded.title,
                    body=seeded.body,
                    link=seeded.link,
                    status=ContentStatus.READY,
                    tags=["sandbox"],
                ),
                _slot(first, today, zone),
                source_key=f"sandbox-seed:{seeded.key}",
            )
            entries = [entry]
            for post in more:
                entries.append(
                    calendar.schedule(
                        admin, org_id, entry.content_id, _slot(post, today, zone),
                        created_by=admin.user_id,
                    )
                )  # fmt: skip
            report.made.append(f"content {seeded.title}")
        if seeded.key == "linkedin-turn-times" and entries:
            report.linkedin_post_at = entries[0].scheduled_for
    items = calendar.list_content(org_id, limit=MAX_ITEMS)
    report.content_items = len(items)
    report.scheduled_posts = sum(len(calendar.schedule_of(org_id, item.id)) for item in items)


def _slot(post: SeedPost, today: date, zone: ZoneInfo) -> ScheduleIn:
    day = next_business_day(today, post.business_day)
    local = datetime.combine(day, post.at, tzinfo=zone)
    return ScheduleIn.model_validate(
        {"channel": post.channel, "scheduled_for": local.astimezone(UTC), "note": post.note}
    )


def _ensure_reputation(
    reputation: Reputation,
    org_id: int,
    admin: Actor,
    legal_user_id: int,
    firm_name: str,
    report: MarketingReport,
) -> None:
    settings = reputation.settings(org_id)
    if settings.account_manager_user_id is None:
        reputation.update_settings(
            admin,
            org_id,
            account_manager_user_id=admin.user_id,
            legal_user_id=legal_user_id,
            channel_id=REPUTATION_CHANNEL_ID,
            firm_name=firm_name,
        )
        report.made.append("reputation settings")
    if not reputation.list_templates(org_id):
        for scenario, name, body in RESPONSE_TEMPLATES:
            reputation.add_template(admin, org_id, scenario=scenario, name=name, body=body)
        report.made.append("response templates")
    if not reputation.list_rules(org_id):
        # The account manager reads legal threats first and brings legal in (a rule routed
        # to `legal` would send them to the legal rep's DM instead).
        reputation.add_rule(
            admin, org_id, kind=EscalationKind.LEGAL, pattern="", route_to=RouteTo.ACCOUNT_MANAGER
        )
        reputation.add_rule(
            admin,
            org_id,
            kind=EscalationKind.STAFF,
            pattern=NAMED_STAFF,
            route_to=RouteTo.ACCOUNT_MANAGER,
        )
        report.made.append("escalation rules")


def _ensure_reviews(
    reputation: Reputation, org_id: int, clock: Clock, report: MarketingReport
) -> None:
    reviews, errors = parse_review_csv(reviews_csv(clock.now().date()))
    if errors:
        raise InvalidInput(f"the sandbox's reviews did not parse: {errors[0]}")
    stored = {(r.platform.value, r.external_id) for r in reputation.list_reviews(org_id)}
    fresh = [r for r in reviews if (r.platform.value, r.external_id) not in stored]
    if fresh:
        result = reputation.ingest(org_id, fresh, source="csv")
        report.made.append(
            f"{len(result.created)} reviews ({result.response_cards} response cards,"
            f" {result.escalations} escalations)"
        )
    report.reviews = len(reputation.list_reviews(org_id))


# --- the newsletter -------------------------------------------------------------------------

NEWSLETTER_NAME: Final = "Lender Update"
NEWSLETTER_SUBJECT: Final = "{{ newsletter_name }}: {{ headline }}"
NEWSLETTER_TEXT: Final = """\
Hi {{ first_name or "there" }},

{{ headline }}. Here is what changed at {{ firm_name }} this month:

- Turn times in Travis, Williamson and Hays counties average 5 business days, FHA and VA \
included.
- Two certified residential appraisers joined us: rural and new-construction files are \
welcome.
- Revision requests are answered within 24 hours.

If a file of {{ company_name or "yours" }} is stuck with another panel, reply to this email \
and we'll tell you the same day whether we can hit your closing date.

— {{ firm_name }}
"""
NEWSLETTER_HTML: Final = """\
<p>Hi {{ first_name or "there" }},</p>
<p><strong>{{ headline }}.</strong> Here is what changed at {{ firm_name }} this month:</p>
<ul>
<li>Turn times in Travis, Williamson and Hays counties average 5 business days, FHA and VA
included.</li>
<li>Two certified residential appraisers joined us: rural and new-construction files are
welcome.</li>
<li>Revision requests are answered within 24 hours.</li>
</ul>
<p>If a file of {{ company_name or "yours" }} is stuck with another panel, reply to this
email and we'll tell you the same day whether we can hit your closing date.</p>
<p>— {{ firm_name }}</p>
"""


def seed_newsletter(
    units: Callable[[], UnitOfWork],
    *,
    org_id: int,
    clock: Clock,
    admin: Actor,
) -> tuple[int, list[str]]:
    """The newsletter "Lender Update", sent from the admin's mailbox, with this month's
    issue submitted for review: its preview card waits in #marketing (never approved here).
    Run once the reps' mailboxes are connected (a submission without a sending mailbox is
    refused). Return the issue's id and what was made now."""
    newsletters = Newsletters(Deps(uow=units, clock=clock))
    made: list[str] = []
    found = [n for n in newsletters.list_newsletters(org_id) if n.name == NEWSLETTER_NAME]
    if found:
        newsletter = found[0]
    else:
        newsletter = newsletters.create(
            admin,
            org_id,
            NewsletterIn(
                name=NEWSLETTER_NAME,
                description="The firm's monthly note to the lenders, brokers and AMCs it serves.",
                sender_user_ids=[admin.user_id],
                slack_channel_id=MARKETING_CHANNEL_ID,
            ),
        )
        made.append(f"newsletter {NEWSLETTER_NAME}")
    issues = newsletters.list_issues(org_id, newsletter.id)
    if issues:
        issue = issues[0]
    else:
        issue = newsletters.create_issue(
            admin,
            org_id,
            newsletter.id,
            IssueIn(
                title=f"{clock.now():%B %Y}",
                subject_template=NEWSLETTER_SUBJECT,
                text_template=NEWSLETTER_TEXT,
                html_template=NEWSLETTER_HTML,
                variables={"headline": "Turn times are down to 5 days"},
            ),
        )
        made.append(f"issue {issue.title}")
    if issue.status == IssueStatus.DRAFT:
        issue = newsletters.submit(admin, org_id, newsletter.id, issue.id)
        made.append(f"issue {issue.title} submitted for review")
    return issue.id, made
