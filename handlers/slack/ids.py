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


class CallbackId(StrEnum):
    """`callback_id`s of the modals Salesbot opens."""

    EDIT_CARD = "card_edit_modal"
    REJECT_CARD = "card_reject_modal"
    FULL_CARD = "card_full_modal"


class BlockId(StrEnum):
    """`block_id`s that view submissions read values from."""

    SUBJECT = "subject"
    BODY = "body"
    OPTIONS = "options"
    REASON = "reason"
    CARD_ACTIONS = "card_actions"


class Command(StrEnum):
    """Slash commands declared in manifest.yml."""

    CAMPAIGN = "/campaign"
    JOB = "/job"
    RULES = "/rules"
