"""The digest job (issue 14): a periodic job of the process's scheduler that claims the
subscriptions whose posting time came, then posts the claimed digests to Slack.

Every `salesbot worker` (and `salesbot serve`) schedules it (jobs/scheduler.py); a run
takes the periodic lock (`storage.inbound.periodic_lock`), so one process runs it at a
time, and the claims lock their rows with SKIP LOCKED in any case: each period is stored
once (unique per subscription and period start) and each post leased to one worker.

`SlackDigestChat` is the Slack side: permalinks of the cards the digest names, the chart
uploaded with `files_upload_v2` without a channel (the message's image block shows it), and
the message, retried for a few seconds when Slack answers `invalid_blocks` because the
file it refers to is not processed yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from domain.analytics import DayPoint, DigestFacts
from domain.digest_message import render_digest, with_chart
from domain.digests import DigestPoster, Frequency, RenderedDigest, permanent_error
from domain.errors import ExternalServiceError
from domain.reply_routing import ChannelUnavailable
from integrations.charts import trend_chart_png
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME: Final = "salesbot:digest"

# Slack answers these when the channel refuses Salesbot: posting again will not help.
_CHANNEL_REFUSALS: Final = frozenset({"channel_not_found", "not_in_channel", "is_archived"})
# The token or the app's install is wrong: only a person can fix it.
_PERMANENT: Final = {
    "invalid_auth": "Salesbot's Slack token is invalid; reinstall the app",
    "account_inactive": "Salesbot's Slack token was revoked; reinstall the app",
    "token_revoked": "Salesbot's Slack token was revoked; reinstall the app",
    "missing_scope": "Salesbot's Slack app lacks a permission (files:write?); reinstall it",
    "not_authed": "Salesbot has no Slack token",
    "msg_too_long": "the digest is too long for one Slack message",
}
# Worth another attempt later.
_RETRYABLE: Final = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "invalid_blocks",
        "file_not_found",
    }
)


class FileNotReadyRetryHandler(RetryHandler):
    """Retry a `chat.postMessage` whose image refers to an uploaded file Slack has not
    processed yet (it answers `invalid_blocks` for a moment after the upload)."""

    def __init__(self, max_retry_count: int = 4) -> None:
        super().__init__(
            max_retry_count=max_retry_count,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=0.5),
        )

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not request.url.endswith("chat.postMessage"):
            return False
        body = response.body or {}
        return body.get("error") == "invalid_blocks" and b"slack_file" in (request.data or b"")


def _external(exc: SlackApiError, *, channel_id: str | None) -> ExternalServiceError:
    error = str(exc.response.get("error", "unknown_error"))
    if channel_id and error in _CHANNEL_REFUSALS:
        refusal = ChannelUnavailable("", channel_id=channel_id, error=error)
        return ChannelUnavailable(
            f"Slack: {permanent_error(refusal)} ({error})", channel_id=channel_id, error=error
        )
    if error in _PERMANENT:
        return ExternalServiceError(f"Slack: {_PERMANENT[error]} ({error})", retryable=False)
    return ExternalServiceError(f"Slack answered {error}", retryable=error in _RETRYABLE)


class SlackDigestChat:
    """The DigestChat port on Slack's Web API."""

    def __init__(self, client_for_org: Callable[[int], WebClient]) -> None:
        self._client_for_org = client_for_org

    def _client(self, org_id: int) -> WebClient:
        """The organization's client, retrying a post whose file is not processed yet."""
        base = self._client_for_org(org_id)
        return WebClient(
            token=base.token,
            base_url=base.base_url,
            timeout=base.timeout,
            retry_handlers=[*base.retry_handlers, FileNotReadyRetryHandler()],
        )

    def permalink(self, org_id: int, channel_id: str, ts: str) -> str | None:
        """Return a link to a message, or None when Slack gives none."""
        try:
            answer = self._client_for_org(org_id).chat_getPermalink(
                channel=channel_id, message_ts=ts
            )
        except SlackApiError as exc:
            raise _external(exc, channel_id=None) from exc
        except (SlackClientError, OSError) as exc:
            raise ExternalServiceError(
                f"Slack could not be reached ({exc})", retryable=True
            ) from exc
        link = answer.get("permalink")
        return str(link) if link else None

    def upload_png(
        self, org_id: int, content: bytes, *, filename: str, title: str, alt: str
    ) -> str:
        """Upload a PNG shared nowhere (the digest's image block shows it); its file id."""
        try:
            answer = self._client_for_org(org_id).files_upload_v2(
                content=content, filename=filename, title=title, alt_txt=alt[:1000]
            )
        except SlackApiError as exc:
            raise _external(exc, channel_id=None) from exc
        except (SlackClientError, OSError) as exc:
            raise ExternalServiceError(
                f"Slack could not be reached ({exc})", retryable=True
            ) from exc
        uploaded: Any = answer.get("file") or (answer.get("files") or [{}])[0]
        file_id = uploaded.get("id") if isinstance(uploaded, dict) else None
        if not file_id:
            raise ExternalServiceError("Slack gave no file id for the chart", retryable=True)
        return str(file_id)

    def post(
        self,
        org_id: int,
        channel_id: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None = None,
    ) -> str:
        """Post a message (a thread reply with `thread_ts`); return its ts."""
        extra: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        try:
            answer = self._client(org_id).chat_postMessage(
                channel=channel_id,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                **extra,
            )
        except SlackApiError as exc:
            raise _external(exc, channel_id=channel_id) from exc
        except (SlackClientError, OSError) as exc:
            # No answer: the message may or may not be posted; the lease decides (see
            # DigestPoster: a retry may post it twice, never zero times).
            raise ExternalServiceError(
                f"Slack could not be reached ({exc})", retryable=True
            ) from exc
        return str(answer["ts"])


class DigestMessages:
    """The DigestRenderer port: the Block Kit of domain/digest_message.py and the chart of
    integrations/charts.py (matplotlib, Agg)."""

    def render(
        self,
        facts: DigestFacts,
        *,
        frequency: Frequency,
        time_zone: str,
        title: str,
        permalinks: Mapping[int, str],
        asked_by: str | None,
    ) -> RenderedDigest:
        """Return the message of a digest."""
        message = render_digest(
            facts,
            frequency="weekly" if frequency == Frequency.WEEKLY else "daily",
            time_zone=time_zone,
            title=title,
            permalinks=permalinks,
            asked_by=asked_by,
        )
        return RenderedDigest(
            text=message.text,
            blocks=message.blocks,
            rest=message.rest,
            chart_alt=message.chart_alt,
            rest_text=message.rest_text,
        )

    def with_chart(
        self, blocks: list[dict[str, Any]], file_id: str, alt: str
    ) -> list[dict[str, Any]]:
        """Return the blocks with the chart's image block."""
        return with_chart(blocks, file_id, alt)

    def chart_png(self, points: Sequence[DayPoint], *, title: str) -> bytes:
        """Return the 30-day trend chart as a PNG."""
        return trend_chart_png(points, title=title)


class DigestScheduler:
    """The digest job as the scheduler runs it: under the periodic lock, claim the due
    periods, then post the pending digests."""

    NAME: Final = "digest"

    def __init__(self, poster: DigestPoster, session_factory: SessionFactory) -> None:
        self._poster = poster
        self._sessions = session_factory

    def run_once(self) -> int:
        """One round: claim due periods, post a batch; return how much was done (0: idle)."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                log.debug("digest job running elsewhere")
                return 0
            claimed = self._poster.claim_due()
            report = self._poster.post_pending()
        return claimed + report.handled
