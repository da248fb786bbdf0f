"""Slack action ids, callback ids and block ids: one place, as constants."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    """`action_id`s of the buttons and inputs Salesbot renders."""

    APPROVE = "card_approve"
    EDIT = "card_edit"
    REJECT = "card_reject"
    RETRY = "card_retry"
    VIEW_FULL = "card_view_full"
    APPROVE_ALL = "batch_approve_all"
    CONNECT_GMAIL = "home_connect_gmail"
    REFRESH_HOME = "home_refresh"
    SUBJECT_INPUT = "subject_input"
    BODY_INPUT = "body_input"
    APPROVE_AFTER_EDIT = "approve_after_edit"
    REASON_INPUT = "reason_input"
    #: A reply card's overflow menu (View thread, Open contact, Re-label).
    CARD_MORE = "card_more"
    #: A reply card's snooze menu (an overflow holds five options: snoozing is its own).
    CARD_SNOOZE = "card_snooze"
    #: Bring a snoozed card back now.
    UNSNOOZE = "card_unsnooze"
    #: "Enroll <name> in <campaign>" on a referral card.
    ENROLL_REFERRAL = "card_enroll_referral"
    CATEGORY_INPUT = "category_input"
    INTENT_INPUT = "intent_input"
    SENTIMENT_INPUT = "sentiment_input"
    EMAIL_INPUT = "email_input"
    NAME_INPUT = "name_input"
    #: A rep's cadence step (a LinkedIn touch, a call, a task): done, or skipped.
    STEP_DONE = "card_step_done"
    STEP_SKIP = "card_step_skip"
    #: Accept / dismiss a rule proposed from reps' corrections.
    ACCEPT_RULE_PROPOSAL = "rule_proposal_accept"
    DISMISS_RULE_PROPOSAL = "rule_proposal_dismiss"
    #: A review's drafted response (docs/reputation.md): approve (records it), edit, reject.
    REVIEW_APPROVE = "review_response_approve"
    REVIEW_EDIT = "review_response_edit"
    REVIEW_REJECT = "review_response_reject"
    RESPONSE_INPUT = "review_response_input"
    #: A content calendar's due card (docs/content-calendar.md): done, done with the
    #: post's link (a modal), snooze to tomorrow morning or later, skip.
    CONTENT_DONE = "content_done"
    CONTENT_DONE_LINK = "content_done_link"
    CONTENT_SNOOZE = "content_snooze"
    CONTENT_SNOOZE_MORE = "content_snooze_more"
    CONTENT_SKIP = "content_skip"
    CONTENT_URL_INPUT = "content_url_input"
    CONTENT_TITLE_INPUT = "content_title_input"
    CONTENT_TYPE_INPUT = "content_type_input"
    CONTENT_BODY_INPUT = "content_body_input"
    CONTENT_CHANNEL_INPUT = "content_channel_input"
    CONTENT_DATE_INPUT = "content_date_input"
    CONTENT_TIME_INPUT = "content_time_input"
    CONTENT_CAMPAIGN_INPUT = "content_campaign_input"
    #: A newsletter issue's preview card (docs/newsletters.md).
    NEWSLETTER_APPROVE = "newsletter_issue_approve"
    NEWSLETTER_EDIT = "newsletter_issue_edit"
    NEWSLETTER_REJECT = "newsletter_issue_reject"
    NEWSLETTER_SUBJECT_INPUT = "newsletter_subject_input"
    NEWSLETTER_TEXT_INPUT = "newsletter_text_input"
    NEWSLETTER_HTML_INPUT = "newsletter_html_input"


class OverflowChoice(StrEnum):
    """What an option of a card's overflow menu does (its value is `<choice>:<card id>`)."""

    RELABEL = "relabel"
    SNOOZE_HOUR = "snooze_1h"
    SNOOZE_TOMORROW = "snooze_tomorrow"
    SNOOZE_NEXT_WEEK = "snooze_next_week"
    VIEW_THREAD = "view_thread"
    OPEN_CONTACT = "open_contact"


class CallbackId(StrEnum):
    """`callback_id`s of the modals Salesbot opens."""

    EDIT_CARD = "card_edit_modal"
    REJECT_CARD = "card_reject_modal"
    FULL_CARD = "card_full_modal"
    RELABEL_CARD = "card_relabel_modal"
    REFERRAL_EMAIL = "card_referral_email_modal"
    THREAD = "card_thread_modal"
    CONTACT = "card_contact_modal"
    EDIT_REVIEW_RESPONSE = "review_response_edit_modal"
    #: `/content add`, and Done with the post's link.
    ADD_CONTENT = "content_add_modal"
    CONTENT_DONE_LINK = "content_done_link_modal"
    EDIT_NEWSLETTER_ISSUE = "newsletter_issue_edit_modal"


class BlockId(StrEnum):
    """`block_id`s that view submissions read values from."""

    SUBJECT = "subject"
    BODY = "body"
    OPTIONS = "options"
    REASON = "reason"
    CATEGORY = "category"
    INTENT = "intent"
    SENTIMENT = "sentiment"
    EMAIL = "email"
    NAME = "name"
    CARD_ACTIONS = "card_actions"
    RESPONSE = "review_response"
    CONTENT_ACTIONS = "content_actions"
    CONTENT_URL = "content_url"
    CONTENT_TITLE = "content_title"
    CONTENT_TYPE = "content_type"
    CONTENT_BODY = "content_body"
    CONTENT_CHANNEL = "content_channel"
    CONTENT_DATE = "content_date"
    CONTENT_TIME = "content_time"
    CONTENT_CAMPAIGN = "content_campaign"
    NEWSLETTER_SUBJECT = "newsletter_subject"
    NEWSLETTER_TEXT = "newsletter_text"
    NEWSLETTER_HTML = "newsletter_html"


class Command(StrEnum):
    """Slash commands declared in manifest.yml."""

    CAMPAIGN = "/campaign"
    JOB = "/job"
    RULES = "/rules"
    TRIAGE = "/triage"
    ENGAGEMENT = "/engagement"
    DIGEST = "/digest"
    CONTENT = "/content"
