"""SQLAlchemy 2 models: the whole schema, one class per table, one module per concept.

Every tenant table carries `org_id`, and every index that serves a tenant query
starts with it. Rows never leave `storage/`: repositories turn them into domain
objects.

Importing this package registers every table on `Base.metadata` (migrations and
Alembic's autogenerate read it from here); `from storage import models as m` then
`m.Card` names any model.
"""

from __future__ import annotations

from storage.models.accounts import ApiToken, Organization, PeriodicLease, User
from storage.models.analytics import (
    ClientRanking,
    DigestPost,
    DigestSubscription,
    EmailTrackingEvent,
)
from storage.models.base import NAMING_CONVENTION, Base
from storage.models.content import ContentSchedule, ContentSetting, MarketingContent
from storage.models.corrections import ClassifierCorrection, RuleProposal
from storage.models.crm import AppraisalOrder, Client, Contact, Property
from storage.models.email_campaigns import EmailCampaign
from storage.models.engagement import ContactEngagementEvent
from storage.models.events import ProcessedEvent
from storage.models.gmail import GmailAccount, GmailOAuthState
from storage.models.inbound import ClassifierRule, GmailPushNotification, InboundEmail
from storage.models.marketing import EmailTemplate, MarketingCampaign
from storage.models.newsletters import Newsletter, NewsletterIssue
from storage.models.operations import WorkerHeartbeat
from storage.models.outreach import Card, Enrollment, Job, JobTask
from storage.models.reply_policy import OrgReplyPolicy
from storage.models.reputation import (
    ReputationSetting,
    Review,
    ReviewEscalationRule,
    ReviewResponseTemplate,
)
from storage.models.sends import EmailConversation, EmailSend
from storage.models.slack import SlackDeferredCall, SlackInstallation, SlackOAuthState
from storage.models.targeting import TargetingRun

__all__ = [
    "NAMING_CONVENTION",
    "ApiToken",
    "AppraisalOrder",
    "Base",
    "Card",
    "ClassifierCorrection",
    "ClassifierRule",
    "Client",
    "ClientRanking",
    "Contact",
    "ContentSchedule",
    "ContentSetting",
    "ContactEngagementEvent",
    "DigestPost",
    "DigestSubscription",
    "EmailCampaign",
    "EmailConversation",
    "EmailSend",
    "EmailTemplate",
    "EmailTrackingEvent",
    "Enrollment",
    "GmailAccount",
    "GmailOAuthState",
    "GmailPushNotification",
    "InboundEmail",
    "Job",
    "JobTask",
    "MarketingCampaign",
    "MarketingContent",
    "Newsletter",
    "NewsletterIssue",
    "OrgReplyPolicy",
    "Organization",
    "PeriodicLease",
    "ProcessedEvent",
    "ReputationSetting",
    "Review",
    "ReviewEscalationRule",
    "ReviewResponseTemplate",
    "RuleProposal",
    "Property",
    "SlackDeferredCall",
    "SlackInstallation",
    "SlackOAuthState",
    "TargetingRun",
    "User",
    "WorkerHeartbeat",
]
