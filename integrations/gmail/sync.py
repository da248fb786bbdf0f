"""Gmail history sync: from a mailbox's stored historyId to stored, parsed messages.

`GmailSync.sync_account(account_id)` lists `users.history.list` (all pages,
`messageAdded`) from the stored pointer, stores every new message id and moves the
pointer forward in one transaction, then fetches each message it stored
(`users.messages.get`, format raw), parses it and stores the result. When Gmail has
forgotten the stored historyId (404), when the listing would be too long, or when the
last sync is older than Gmail keeps history, it falls back to a bounded full sync:
`users.messages.list` with `after:<last successful sync, less an overlap>`, so no
message is missed. A message that cannot be fetched or stored keeps its row with the
error and is fetched again later by `retry_due()`.

The Gmail client comes from `service_for_account(account_id)`: an authorized
google-api-python-client `gmail v1` resource. The sync asks for a new one per call, so
concurrent syncs never share an httplib2 connection.
"""

from __future__ import annotations

import http.client
import logging
import multiprocessing
import socket
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from domain.clock import Clock
from domain.detection import Detection, DetectionContext
from domain.email_message import ParsedEmail
from domain.errors import ExternalServiceError
from domain.inbound import (
    InboundStore,
    MessageToFetch,
    NewMessage,
    ReadMessage,
    SyncState,
    is_synced_message,
)
from integrations.gmail.mime import DEFAULT_MAX_BODY_CHARS, decode_base64url, parse_gmail_message
from integrations.mail_signals.detect import detect_message

log = logging.getLogger(__name__)

ServiceFactory = Callable[[int], Any]
SyncMode = Literal["history", "full", "skipped"]

# The labels a watch reports changes of: received mail, and mail a rep sends by hand.
WATCHED_LABELS: Final = ("INBOX", "SENT")
PAGE_SIZE: Final = 500
# Listing calls are retried by the client on 5xx/429 (they gate the whole sync); message
# fetches are not, because a failed fetch is kept and retried by the retry job.
LIST_RETRIES: Final = 1
# Parsed messages are committed in batches of this many.
SAVE_BATCH: Final = 50
# Messages handed to the fetch threads at a time (bounds the fetched bytes held).
FETCH_CHUNK: Final = 100

_TRANSPORT_ERRORS: Final = (
    OSError,
    socket.timeout,
    http.client.HTTPException,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
)


# The parse result beside a failed fetch (never read).
Parsed = tuple[ParsedEmail, Detection]
_NOT_PARSED: Final[Future[Parsed]] = Future()


def read_gmail_message(
    resource: Any, *, max_body_chars: int, context: DetectionContext
) -> tuple[ParsedEmail, Detection]:
    """Parse a `users.messages.get` resource (format raw) and run the detectors on it.

    The detectors read the raw bytes (a bounce's attached original, DSN fields, ARF
    reports), so they run here, while the bytes are at hand; the inbound pipeline reads the
    stored `Detection` later. Module level, so a parser process can run it.
    """
    parsed = parse_gmail_message(resource, max_body_chars=max_body_chars)
    raw_data = resource.get("raw") if isinstance(resource, dict) else None
    if raw_data is None:
        return parsed, Detection(notes=("no raw message: the detectors did not run",))
    try:
        raw = decode_base64url(str(raw_data))
    except ValueError:
        return parsed, Detection(notes=("raw is not base64url: the detectors did not run",))
    return parsed, detect_message(raw, context=context, parsed=parsed)


class HistoryUnavailable(Exception):
    """The history from the stored pointer cannot serve: expired (404) or too long."""


@dataclass(frozen=True)
class SyncSettings:
    """Bounds of the sync; the defaults suit a rep's mailbox."""

    # Longer history listings than this many pages switch to a full sync.
    max_history_pages: int = 40
    # Gmail keeps history for about a week; an older pointer goes straight to a full sync.
    max_history_age: timedelta = timedelta(days=6)
    # A full sync lists messages newer than the last successful sync less this overlap.
    full_sync_overlap: timedelta = timedelta(hours=1)
    # ... and never further back than this window, nor more than this many messages.
    full_sync_window: timedelta = timedelta(days=30)
    full_sync_limit: int = 20_000
    # A worker's hold on the messages it stored: past it, the retry job may take them.
    fetch_lease: timedelta = timedelta(minutes=10)
    max_body_chars: int = DEFAULT_MAX_BODY_CHARS
    # Results per history.list / messages.list page (Gmail serves at most 500).
    page_size: int = PAGE_SIZE
    # Concurrent messages.get calls per mailbox sync (each thread has its own client).
    fetch_threads: int = 1
    # Processes that parse fetched messages; 0 parses in the fetching thread.
    parse_workers: int = 0


@dataclass(frozen=True)
class SyncResult:
    """What one sync of a mailbox did."""

    account_id: int
    mode: SyncMode
    listed: int = 0
    stored: int = 0
    parsed: int = 0
    failed: int = 0
    history_id: int | None = None
    pointer_moved: bool = False


@dataclass(frozen=True)
class FetchOutcome:
    """How fetching a set of messages went."""

    parsed: int = 0
    failed: int = 0
    gone: int = 0


def describe_http_error(operation: str, exc: HttpError) -> str:
    """Return a one-line reason for a Gmail error: the call, the status and Gmail's message."""
    reason = str(getattr(exc, "reason", "") or "").splitlines()[0:1]
    text = reason[0] if reason else ""
    return f"{operation}: Gmail answered {exc.resp.status}" + (f" ({text[:200]})" if text else "")


def _describe(operation: str, exc: BaseException) -> str:
    if isinstance(exc, HttpError):
        return describe_http_error(operation, exc)
    return f"{operation}: {type(exc).__name__}"


class GmailSync:
    """Brings a mailbox's new messages into storage; safe to run concurrently."""

    def __init__(
        self,
        store: InboundStore,
        service_for_account: ServiceFactory,
        clock: Clock,
        *,
        settings: SyncSettings | None = None,
    ) -> None:
        self._store = store
        self._service_for = service_for_account
        self._clock = clock
        self._settings = settings or SyncSettings()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- sync -------------------------------------------------------------------------------

    def sync_account(self, account_id: int) -> SyncResult:
        """Store and parse every message added to a mailbox since its stored historyId.

        Raises ExternalServiceError when Gmail cannot be asked (the caller retries later);
        message-level failures are kept on their rows and do not raise.
        """
        state = self._store.sync_state(account_id)
        if state is None or not state.syncable:
            return SyncResult(account_id=account_id, mode="skipped")
        started = self._clock.now()
        service = self._service(account_id)
        if state.history_id is None:
            return self._full_sync(state, service, started, why="no stored history id")
        if state.last_synced_at is not None and (
            started - state.last_synced_at > self._settings.max_history_age
        ):
            return self._full_sync(state, service, started, why="last sync older than history")
        try:
            messages, history_id = self._list_history(service, state.history_id)
        except HistoryUnavailable as exc:
            return self._full_sync(state, service, started, why=str(exc))
        return self._store_and_fetch(state, service, messages, history_id, started, "history")

    def _full_sync(
        self, state: SyncState, service: Any, started: datetime, *, why: str
    ) -> SyncResult:
        settings = self._settings
        since = (state.last_synced_at or state.connected_at) - settings.full_sync_overlap
        since = max(since, started - settings.full_sync_window)
        log.warning(
            "gmail full sync",
            extra={"account_id": state.account_id, "reason": why, "since": since.isoformat()},
        )
        try:
            profile = service.users().getProfile(userId="me").execute(num_retries=LIST_RETRIES)
            history_id = int(profile["historyId"])
            messages = self._list_since(service, since, state.account_id)
        except HttpError as exc:
            raise _gmail_failure("full sync", exc) from None
        except auth_exceptions.RefreshError:
            raise _credentials_refused() from None
        except _TRANSPORT_ERRORS as exc:
            raise ExternalServiceError(_describe("full sync", exc), retryable=True) from None
        return self._store_and_fetch(state, service, messages, history_id, started, "full")

    def _store_and_fetch(
        self,
        state: SyncState,
        service: Any,
        messages: list[NewMessage],
        history_id: int,
        started: datetime,
        mode: SyncMode,
    ) -> SyncResult:
        recorded = self._store.record_messages(
            state.account_id,
            messages,
            history_id=history_id,
            synced_at=started,
            lease_until=started + self._settings.fetch_lease,
        )
        outcome = self._fetch(state.account_id, service, recorded.to_fetch)
        result = SyncResult(
            account_id=state.account_id,
            mode=mode,
            listed=len(messages),
            stored=len(recorded.to_fetch),
            parsed=outcome.parsed,
            failed=outcome.failed,
            history_id=history_id,
            pointer_moved=recorded.pointer_moved,
        )
        if result.stored or mode == "full":
            log.info(
                "gmail sync",
                extra={
                    "account_id": state.account_id,
                    "mode": mode,
                    "listed": result.listed,
                    "stored": result.stored,
                    "parsed": result.parsed,
                    "failed": result.failed,
                    "history_id": history_id,
                },
            )
        return result

    def _list_history(self, service: Any, start: int) -> tuple[list[NewMessage], int]:
        history = service.users().history()
        request = history.list(
            userId="me",
            startHistoryId=str(start),
            historyTypes=["messageAdded"],
            maxResults=self._settings.page_size,
        )
        found: dict[str, NewMessage] = {}
        latest = start
        pages = 0
        while request is not None:
            try:
                page = request.execute(num_retries=LIST_RETRIES)
            except HttpError as exc:
                if exc.resp.status == 404:
                    raise HistoryUnavailable("history id expired (Gmail answered 404)") from None
                raise _gmail_failure("history.list", exc) from None
            except auth_exceptions.RefreshError:
                raise _credentials_refused() from None
            except _TRANSPORT_ERRORS as exc:
                raise ExternalServiceError(_describe("history.list", exc), retryable=True) from None
            pages += 1
            latest = max(latest, int(page.get("historyId") or latest))
            for record in page.get("history", ()):
                for added in record.get("messagesAdded", ()):
                    message = added.get("message") or {}
                    gmail_id = message.get("id")
                    labels = tuple(str(label) for label in message.get("labelIds") or ())
                    if gmail_id and is_synced_message(labels):
                        found.setdefault(
                            gmail_id, NewMessage(gmail_id, message.get("threadId"), labels)
                        )
            if page.get("nextPageToken") and pages >= self._settings.max_history_pages:
                raise HistoryUnavailable(f"history longer than {pages} pages")
            request = history.list_next(request, page)
        return list(found.values()), latest

    def _list_since(self, service: Any, since: datetime, account_id: int) -> list[NewMessage]:
        limit = self._settings.full_sync_limit
        query = f"after:{int(since.timestamp())} -in:drafts -in:chats"
        messages = service.users().messages()
        request = messages.list(userId="me", q=query, maxResults=self._settings.page_size)
        found: dict[str, NewMessage] = {}
        while request is not None:
            page = request.execute(num_retries=LIST_RETRIES)
            for item in page.get("messages", ()):
                if item.get("id"):
                    found.setdefault(item["id"], NewMessage(item["id"], item.get("threadId")))
            if len(found) >= limit:
                log.error(
                    "gmail full sync hit its message limit; older messages are not listed",
                    extra={"account_id": account_id, "limit": limit},
                )
                break
            request = messages.list_next(request, page)
        return list(found.values())[:limit]

    # -- fetch ------------------------------------------------------------------------------

    def fetch_messages(self, account_id: int, messages: Sequence[MessageToFetch]) -> FetchOutcome:
        """Fetch, parse and store messages of one mailbox (rows this worker claimed)."""
        if not messages:
            return FetchOutcome()
        return self._fetch(account_id, self._service(account_id), messages)

    def _fetch(
        self, account_id: int, service: Any, messages: Sequence[MessageToFetch]
    ) -> FetchOutcome:
        """Fetch messages (in `fetch_threads`), parse them (in `parse_workers`), store them.

        Parsing is CPU work: with worker processes it runs beside the fetching, which
        waits on the network. Parsed messages are stored in batches, oldest first.
        """
        parsed_count = failed = gone = 0
        pending: deque[tuple[MessageToFetch, Future[Parsed]]] = deque()
        context = self._store.detection_context(account_id)

        def store_oldest(count: int) -> None:
            nonlocal parsed_count, failed
            batch: list[ReadMessage] = []
            for _ in range(min(count, len(pending))):
                message, future = pending.popleft()
                try:
                    batch.append(ReadMessage(message, *future.result()))
                except BrokenProcessPool:
                    self._reset_parse_pool()
                    self._fail(message, "parse failed (the parser process died)")
                    failed += 1
                except Exception as exc:  # noqa: BLE001 - the parser must not lose a message
                    self._fail(message, f"parse failed ({type(exc).__name__})")
                    failed += 1
            saved, unsaved = self._save(batch)
            parsed_count += saved
            failed += unsaved

        try:
            for message, parsed, error in self._fetch_all(account_id, service, messages, context):
                if error is not None:
                    if isinstance(error, auth_exceptions.RefreshError):
                        # The mailbox's grant is gone: every fetch would fail the same way.
                        # The rows keep their lease and are retried once it is reconnected.
                        raise _credentials_refused() from None
                    if isinstance(error, HttpError) and error.resp.status == 404:
                        self._store.mark_gone(
                            message, error=describe_http_error("messages.get", error)
                        )
                        gone += 1
                    else:
                        self._fail(message, _describe("messages.get", error))
                        failed += 1
                    continue
                pending.append((message, parsed))
                # Keep a batch being parsed while the next one is fetched.
                if len(pending) >= 2 * SAVE_BATCH:
                    store_oldest(SAVE_BATCH)
        finally:
            while pending:
                store_oldest(SAVE_BATCH)
        return FetchOutcome(parsed=parsed_count, failed=failed, gone=gone)

    def _fetch_all(
        self,
        account_id: int,
        service: Any,
        messages: Sequence[MessageToFetch],
        context: DetectionContext,
    ) -> Iterator[tuple[MessageToFetch, Future[Parsed], BaseException | None]]:
        """Fetch and parse messages; yield (message, parsed, None) or (message, _, error).

        Results come in the given order. Each message is parsed by the thread that fetched
        it (or handed to a parser process), so a message is read and parsed in one go:
        a thread that only parsed would hold the interpreter lock for long stretches while
        the fetching threads, woken by their answers, wait for it.
        """
        threads = self._settings.fetch_threads
        if threads <= 1 or len(messages) <= 1:
            api = service.users().messages()
            for message in messages:
                yield self._fetch_and_parse(api, message, context)
            return
        # httplib2 is not thread-safe: every fetch thread builds its own client.
        local = threading.local()

        def fetch(
            message: MessageToFetch,
        ) -> tuple[MessageToFetch, Future[Parsed], BaseException | None]:
            api = getattr(local, "api", None)
            if api is None:
                try:
                    api = local.api = self._service_for(account_id).users().messages()
                except auth_exceptions.RefreshError as exc:
                    return message, _NOT_PARSED, exc
            return self._fetch_and_parse(api, message, context)

        with ThreadPoolExecutor(threads, thread_name_prefix="gmail-fetch") as pool:
            for start in range(0, len(messages), FETCH_CHUNK):
                yield from pool.map(fetch, messages[start : start + FETCH_CHUNK])

    def _fetch_and_parse(
        self, api: Any, message: MessageToFetch, context: DetectionContext
    ) -> tuple[MessageToFetch, Future[Parsed], BaseException | None]:
        message, resource, error = _get_raw(api, message)
        if error is not None:
            return message, _NOT_PARSED, error
        return message, self._parse(resource, context), None

    def _parse(self, resource: Any, context: DetectionContext) -> Future[Parsed]:
        limit = self._settings.max_body_chars
        pool = self._parse_pool()
        if pool is not None:
            try:
                return pool.submit(
                    read_gmail_message, resource, max_body_chars=limit, context=context
                )
            except BrokenProcessPool:
                self._reset_parse_pool()
        done: Future[Parsed] = Future()
        try:
            done.set_result(read_gmail_message(resource, max_body_chars=limit, context=context))
        except Exception as exc:  # noqa: BLE001 - reported when the result is read
            done.set_exception(exc)
        return done

    def _parse_pool(self) -> ProcessPoolExecutor | None:
        if self._settings.parse_workers <= 0:
            return None
        with self._pool_lock:
            if self._pool is None:
                # spawn, not fork: this process runs threads (uvicorn, the scheduler).
                self._pool = ProcessPoolExecutor(
                    self._settings.parse_workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def _reset_parse_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the parser processes, if any."""
        self._reset_parse_pool()

    def _save(self, batch: Sequence[ReadMessage]) -> tuple[int, int]:
        """Store a batch; if the batch fails, store one by one and keep failures as failed."""
        if not batch:
            return 0, 0
        try:
            self._store.save_parsed(batch)
            return len(batch), 0
        except Exception as exc:  # noqa: BLE001 - find the message the database refused
            log.warning(
                "storing a batch of parsed messages failed; storing one by one",
                extra={"error": type(exc).__name__, "batch": len(batch)},
            )
        saved = unsaved = 0
        for read in batch:
            try:
                self._store.save_parsed([read])
                saved += 1
            except Exception as exc:  # noqa: BLE001 - recorded on the row, retried later
                self._fail(
                    read.message, f"storing the parsed message failed ({type(exc).__name__})"
                )
                unsaved += 1
        return saved, unsaved

    def _fail(self, message: MessageToFetch, reason: str) -> None:
        log.warning(
            "gmail message kept for retry",
            extra={
                "account_id": message.account_id,
                "gmail_id": message.gmail_id,
                "row_id": message.row_id,
                "reason": reason,
            },
        )
        self._store.mark_failed(message, error=reason, now=self._clock.now())

    def retry_due(self, *, limit: int = 200) -> FetchOutcome:
        """Fetch again the messages whose earlier attempt failed or whose worker vanished."""
        now = self._clock.now()
        claimed = self._store.claim_retries(
            limit=limit, now=now, lease_until=now + self._settings.fetch_lease
        )
        by_account: dict[int, list[MessageToFetch]] = defaultdict(list)
        for message in claimed:
            by_account[message.account_id].append(message)
        parsed = failed = gone = 0
        for account_id, messages in by_account.items():
            try:
                outcome = self.fetch_messages(account_id, messages)
            except ExternalServiceError as exc:
                log.warning(
                    "gmail retry skipped a mailbox",
                    extra={"account_id": account_id, "reason": exc.message},
                )
                continue
            parsed += outcome.parsed
            failed += outcome.failed
            gone += outcome.gone
        return FetchOutcome(parsed=parsed, failed=failed, gone=gone)

    # -- watch ------------------------------------------------------------------------------

    def watch(self, account_id: int, *, topic: str) -> datetime:
        """Ask Gmail to push INBOX and SENT changes to `topic`; return when the watch expires."""
        body = {
            "topicName": topic,
            "labelIds": list(WATCHED_LABELS),
            "labelFilterBehavior": "include",
        }
        try:
            answer = (
                self._service(account_id)
                .users()
                .watch(userId="me", body=body)
                .execute(num_retries=LIST_RETRIES)
            )
        except HttpError as exc:
            raise _gmail_failure("watch", exc) from None
        except auth_exceptions.RefreshError:
            raise _credentials_refused() from None
        except _TRANSPORT_ERRORS as exc:
            raise ExternalServiceError(_describe("watch", exc), retryable=True) from None
        expires_at = datetime.fromtimestamp(int(answer["expiration"]) / 1000, UTC)
        history_id = _history_id(answer.get("historyId"))
        self._store.set_watch(account_id, expires_at=expires_at, history_id=history_id)
        log.info(
            "gmail watch renewed",
            extra={
                "account_id": account_id,
                "expires_at": expires_at.isoformat(),
                "history_id": history_id,
            },
        )
        return expires_at

    def _service(self, account_id: int) -> Any:
        try:
            return self._service_for(account_id)
        except auth_exceptions.RefreshError:
            raise _credentials_refused() from None


def _history_id(value: object) -> int | None:
    """Return a historyId Gmail answered (a decimal string), or None if it is unusable."""
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


def _credentials_refused() -> ExternalServiceError:
    return ExternalServiceError(
        "Google refused the mailbox's credentials (revoked or expired grant); reconnect Gmail",
        retryable=False,
    )


def _gmail_failure(operation: str, exc: HttpError) -> ExternalServiceError:
    status = exc.resp.status
    return ExternalServiceError(
        describe_http_error(operation, exc), retryable=status == 429 or status >= 500
    )


def _get_raw(api: Any, message: MessageToFetch) -> tuple[MessageToFetch, Any, BaseException | None]:
    try:
        return message, api.get(userId="me", id=message.gmail_id, format="raw").execute(), None
    except Exception as exc:  # noqa: BLE001 - whatever failed is kept on the message's row
        return message, None, exc
