"""The unit of work: the single owner of a transaction."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from storage.accounts import OrgRepo, TokenRepo, UserRepo
from storage.analytics import AnalyticsViews
from storage.analytics_settings import AnalyticsSettingsRepo
from storage.audience import AudienceRepo
from storage.cadence import CadenceRepo
from storage.campaigns import CampaignRepo
from storage.card_details import CardDetailsViews
from storage.cards import CardRepo
from storage.chat_notices import ChatNoticeRepo
from storage.contacts import ContactContextRepo
from storage.content import ContentRepo, ContentScheduleRepo, ContentSettingsRepo
from storage.corrections import CorrectionRepo, RuleProposalRepo
from storage.db import SessionFactory
from storage.digests import DigestRepo
from storage.email_campaigns import EmailCampaignRepo
from storage.engagement import EngagementRepo, EngagementViews
from storage.events import EventKeys
from storage.gmail import GmailAccountRepo, MailboxAllowanceRepo, OAuthStateRepo, TokenCipher
from storage.jobs import EnrollmentRepo, JobRepo, TaskRepo
from storage.newsletters import IssueRepo, NewsletterRepo, SubscriberRepo
from storage.outbox import OutboxRepo
from storage.reply_actions import ReplyActionRepo
from storage.reply_context import ReplyContextRepo
from storage.reply_policy import ReplyPolicyRepo
from storage.reply_routing import ReplyRoutingRepo
from storage.reputation import (
    EscalationRuleRepo,
    ReputationSettingsRepo,
    ResponseTemplateRepo,
    ReviewRepo,
)
from storage.rules import ClassifierRuleRepo
from storage.suppression import OptOutRepo
from storage.targeting import TargetingRepo
from storage.templates import TemplateRepo
from storage.tracking import TrackingRepo
from storage.understanding import ConversationRepo, InboundActionRepo, InboundPipelineRepo

if TYPE_CHECKING:
    from domain.content_ports import ContentUnitOfWork
    from domain.email_campaigns import EmailCampaignUnitOfWork
    from domain.newsletter_ports import NewsletterUnitOfWork
    from domain.ports import (
        AccountsUnitOfWork,
        AnalyticsSettingsUnitOfWork,
        AnalyticsUnitOfWork,
        CatalogUnitOfWork,
        CorrectionsUnitOfWork,
        DigestPostingUnitOfWork,
        DigestsUnitOfWork,
        EngagementUnitOfWork,
        MailboxUnitOfWork,
        OutboxUnitOfWork,
        OutreachUnitOfWork,
        RepliesUnitOfWork,
        ReplyPolicyUnitOfWork,
        RulesUnitOfWork,
        SuppressionUnitOfWork,
        TargetingUnitOfWork,
        TrackingUnitOfWork,
        TriageUnitOfWork,
        UnderstandingUnitOfWork,
    )
    from domain.reputation_ports import ReputationUnitOfWork


class _NoCipher:
    """The cipher of a unit of work built without one: mailbox tokens stay out of reach."""

    def encrypt_bytes(self, plaintext: str) -> bytes:
        """Refuse: there is no key to encrypt with."""
        raise RuntimeError("this unit of work was built without a token cipher")

    def decrypt_bytes(self, token: bytes) -> str:
        """Refuse: there is no key to decrypt with."""
        raise RuntimeError("this unit of work was built without a token cipher")


class UnitOfWork:
    """Opens a session, hands it to repositories, commits once or rolls back.

    Use cases do `with uow: ...; uow.commit()`. Leaving the block without a commit
    rolls everything back. Nothing else in the code base commits.
    """

    campaigns: CampaignRepo
    templates: TemplateRepo
    audience: AudienceRepo
    jobs: JobRepo
    tasks: TaskRepo
    enrollments: EnrollmentRepo
    cards: CardRepo
    card_details: CardDetailsViews
    contexts: ContactContextRepo
    events: EventKeys
    orgs: OrgRepo
    users: UserRepo
    tokens: TokenRepo
    gmail_accounts: GmailAccountRepo
    oauth_states: OAuthStateRepo
    mailbox_allowances: MailboxAllowanceRepo
    opt_outs: OptOutRepo
    outbox: OutboxRepo
    inbound_pipeline: InboundPipelineRepo
    conversations: ConversationRepo
    inbound_actions: InboundActionRepo
    engagement: EngagementRepo
    engagement_views: EngagementViews
    classifier_rules: ClassifierRuleRepo
    reply_contexts: ReplyContextRepo
    reply_policies: ReplyPolicyRepo
    reply_routing: ReplyRoutingRepo
    corrections: CorrectionRepo
    rule_proposals: RuleProposalRepo
    chat_notices: ChatNoticeRepo
    reply_actions: ReplyActionRepo
    analytics_settings: AnalyticsSettingsRepo
    tracking: TrackingRepo
    targeting: TargetingRepo
    analytics: AnalyticsViews
    digests: DigestRepo
    reviews: ReviewRepo
    review_templates: ResponseTemplateRepo
    review_rules: EscalationRuleRepo
    reputation_settings: ReputationSettingsRepo
    email_campaigns: EmailCampaignRepo
    content: ContentRepo
    content_schedule: ContentScheduleRepo
    content_settings: ContentSettingsRepo
    newsletters: NewsletterRepo
    newsletter_issues: IssueRepo
    newsletter_subscribers: SubscriberRepo

    def __init__(
        self, session_factory: SessionFactory, *, cipher: TokenCipher | None = None
    ) -> None:
        self._session_factory = session_factory
        self._cipher: TokenCipher = cipher or _NoCipher()
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The session of the open unit of work."""
        if self._session is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        if self._session is not None:
            raise RuntimeError("unit of work is not re-entrant")
        session = self._session_factory()
        self._session = session
        self.campaigns = CampaignRepo(session)
        self.templates = TemplateRepo(session)
        self.audience = AudienceRepo(session)
        self.jobs = JobRepo(session)
        self.tasks = TaskRepo(session)
        self.enrollments = EnrollmentRepo(session)
        self.cards = CardRepo(session)
        self.card_details = CardDetailsViews(session)
        self.contexts = ContactContextRepo(session)
        self.events = EventKeys(session)
        self.orgs = OrgRepo(session)
        self.users = UserRepo(session)
        self.tokens = TokenRepo(session)
        self.gmail_accounts = GmailAccountRepo(session, self._cipher)
        self.oauth_states = OAuthStateRepo(session, self._cipher)
        self.mailbox_allowances = MailboxAllowanceRepo(session)
        self.opt_outs = OptOutRepo(session)
        self.outbox = OutboxRepo(session)
        self.inbound_pipeline = InboundPipelineRepo(session)
        self.conversations = ConversationRepo(session)
        self.inbound_actions = InboundActionRepo(session)
        self.engagement = EngagementRepo(session)
        self.engagement_views = EngagementViews(session)
        self.classifier_rules = ClassifierRuleRepo(session)
        self.reply_contexts = ReplyContextRepo(session)
        self.reply_policies = ReplyPolicyRepo(session)
        self.reply_routing = ReplyRoutingRepo(session)
        self.corrections = CorrectionRepo(session)
        self.rule_proposals = RuleProposalRepo(session)
        self.chat_notices = ChatNoticeRepo(session)
        self.reply_actions = ReplyActionRepo(session)
        self.cadence = CadenceRepo(session)
        self.analytics_settings = AnalyticsSettingsRepo(session)
        self.tracking = TrackingRepo(session)
        self.targeting = TargetingRepo(session)
        self.analytics = AnalyticsViews(session)
        self.digests = DigestRepo(session)
        self.reviews = ReviewRepo(session)
        self.review_templates = ResponseTemplateRepo(session)
        self.review_rules = EscalationRuleRepo(session)
        self.reputation_settings = ReputationSettingsRepo(session)
        self.email_campaigns = EmailCampaignRepo(session)
        self.content = ContentRepo(session)
        self.content_schedule = ContentScheduleRepo(session)
        self.content_settings = ContentSettingsRepo(session)
        self.newsletters = NewsletterRepo(session)
        self.newsletter_issues = IssueRepo(session)
        self.newsletter_subscribers = SubscriberRepo(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            session.rollback()
        finally:
            session.close()
            self._session = None

    def commit(self) -> None:
        """Commit the transaction."""
        self.session.commit()


if TYPE_CHECKING:

    def _implements_the_ports(
        uow: UnitOfWork,
    ) -> tuple[
        CatalogUnitOfWork,
        OutreachUnitOfWork,
        AccountsUnitOfWork,
        MailboxUnitOfWork,
        SuppressionUnitOfWork,
        OutboxUnitOfWork,
        UnderstandingUnitOfWork,
        EngagementUnitOfWork,
        RulesUnitOfWork,
        RepliesUnitOfWork,
        ReplyPolicyUnitOfWork,
        TriageUnitOfWork,
        CorrectionsUnitOfWork,
        DigestsUnitOfWork,
    ]:
        """Let the type checker hold this unit of work to the ports of the use cases."""
        return uow, uow, uow, uow, uow, uow, uow, uow, uow, uow, uow, uow, uow, uow

    def _implements_the_analytics_ports(
        uow: UnitOfWork,
    ) -> tuple[AnalyticsSettingsUnitOfWork, TrackingUnitOfWork]:
        """The ports of the analytics settings and of tracking (issue 14)."""
        return uow, uow

    def _implements_targeting(uow: UnitOfWork) -> TargetingUnitOfWork:
        """Let the type checker hold this unit of work to the targeting port."""
        return uow

    def _implements_the_analytics_port(uow: UnitOfWork) -> AnalyticsUnitOfWork:
        """Let the type checker hold this unit of work to the analytics port."""
        return uow

    def _implements_the_digest_posting_port(uow: UnitOfWork) -> DigestPostingUnitOfWork:
        """Let the type checker hold this unit of work to the digest poster's port."""
        return uow

    def _implements_reputation(uow: UnitOfWork) -> ReputationUnitOfWork:
        """Let the type checker hold this unit of work to the reputation port."""
        return uow

    def _implements_email_campaigns(uow: UnitOfWork) -> EmailCampaignUnitOfWork:
        """Let the type checker hold this unit of work to the email_campaigns ports."""
        return uow

    def _implements_content(uow: UnitOfWork) -> ContentUnitOfWork:
        """Let the type checker hold this unit of work to the content calendar's port."""
        return uow

    def _implements_newsletters(uow: UnitOfWork) -> NewsletterUnitOfWork:
        """Let the type checker hold this unit of work to the newsletters port."""
        return uow
