"""Pure rules of inbound sync: retry spacing and which Gmail messages are mail to store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.inbound import is_synced_message, retry_delay


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        (0, timedelta(minutes=1)),
        (1, timedelta(minutes=1)),
        (2, timedelta(minutes=2)),
        (5, timedelta(minutes=16)),
        (9, timedelta(hours=4, minutes=16)),
        (10, timedelta(hours=6)),
        (500, timedelta(hours=6)),
    ],
)
def test_retries_wait_twice_as_long_each_time_up_to_six_hours(
    attempts: int, delay: timedelta
) -> None:
    assert retry_delay(attempts) == delay


@pytest.mark.parametrize(
    ("labels", "stored"),
    [
        (("INBOX", "UNREAD"), True),
        (("SENT",), True),
        (("Label_42",), True),
        ((), True),
        (("DRAFT",), False),
        (("SPAM", "UNREAD"), False),
        (("TRASH", "INBOX"), False),
        (("CHAT",), False),
    ],
)
def test_drafts_spam_trash_and_chats_are_not_mail_to_store(
    labels: tuple[str, ...], stored: bool
) -> None:
    assert is_synced_message(labels) is stored
