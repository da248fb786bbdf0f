"""SlackNotifier.channel_status when Slack cannot be reached."""

from __future__ import annotations

import socket

from slack_sdk import WebClient

from bot.notifier import SlackNotifier
from domain.reply_routing import check_card_channel


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_slack_is_a_warning_not_an_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api/"
    notifier = SlackNotifier(
        lambda _org: WebClient(token="xoxb-test", base_url=url, retry_handlers=[])
    )

    warning = check_card_channel(notifier, 1, "C0MARKET01")

    assert warning is not None
    assert warning.startswith("Salesbot could not check <#C0MARKET01> (Slack could not be reached")
    assert warning.endswith("; it is set anyway.")
