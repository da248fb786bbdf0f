"""Logging for every command: one handler on the root logger, extras printed, secrets and
capability tokens redacted, the HTTP request's id on every line logged while it runs.

`log.warning("card message failed", extra={"card_id": 7, "reason": "..."})` prints
`... card message failed card_id=7 reason=...` in the text format (LOG_FORMAT=text, the
default), or one JSON object a line (LOG_FORMAT=json) with `timestamp`, `level`, `logger`,
`message`, `request_id` (null outside an HTTP request) and the extras as keys. uvicorn's
loggers propagate to the same handler (run uvicorn with `log_config=None`), so its access
log is formatted and redacted like the rest: the paths and query parameters that carry a
capability (an unsubscribe token, a Gmail connect link, a Slack install link, an OAuth code
or state) never reach a log line, nor do bearer tokens, Slack tokens, or an extra whose
name says it holds a secret or an email's body.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from handlers.request_ids import REQUEST_ID

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# A logged extra longer than this is cut: a log line is not the place for a document.
MAX_EXTRA_CHARS = 500

# The attributes every LogRecord has; anything else on a record came from `extra=`.
# (uvicorn adds `color_message`, the same message with terminal colours.)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

# Path segments after these prefixes are capabilities (signed tokens); a tracked link's
# token (`/t/c/`) also carries the URL the recipient was sent to.
_CAPABILITY_PATHS = re.compile(r"(/unsubscribe/|/t/[oc]/)[^\s?#\"']+")
# Query parameters that carry a capability or a credential.
_CAPABILITY_PARAMS = re.compile(
    r"([?&](?:u|link|code|state|token|access_token|refresh_token|id_token|client_secret)=)"
    r"[^&\s#\"']+"
)


# Credentials written out: an Authorization header's bearer or basic credentials, and
# Slack's tokens (bot, user, app, config, refresh) wherever they appear.
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SLACK_TOKEN = re.compile(r"\bxox[abposre]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+")
# Extras whose name says what they hold: a secret (the value goes), or an email's body.
_SECRET_NAMES = re.compile(
    r"(^|_)(token|secret|password|passwd|authorization|api_key|apikey|signature|cookie)s?$"
    r"|^(access|refresh|id|bot|user)_token$",
    re.IGNORECASE,
)
# Token counts of Claude's answers are numbers named like tokens, never secrets.
_NOT_SECRET = re.compile(r"_tokens$", re.IGNORECASE)
_BODY_NAMES = frozenset({"body", "body_text", "body_html", "html", "email_body", "raw"})


def redact(text: str) -> str:
    """Replace capability tokens in URLs and paths, and written-out credentials, with a marker."""
    if "Bearer" in text or "Basic" in text or "bearer" in text or "basic" in text:
        text = _BEARER.sub(r"\1 " + REDACTED, text)
    if "xox" in text or "xapp-" in text:
        text = _SLACK_TOKEN.sub(REDACTED, text)
    if "/unsubscribe/" not in text and "/t/" not in text and "=" not in text:
        return text
    text = _CAPABILITY_PATHS.sub(r"\1" + REDACTED, text)
    return _CAPABILITY_PARAMS.sub(r"\1" + REDACTED, text)


def redact_extra(name: str, value: Any) -> Any:
    """What an extra may show: nothing of a secret, the size of an email's body."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if _SECRET_NAMES.search(name) and not _NOT_SECRET.search(name):
        return REDACTED
    if name.lower() in _BODY_NAMES:
        size = len(value) if isinstance(value, str | bytes) else None
        return f"[redacted: {size} characters]" if size is not None else REDACTED
    return redact(value) if isinstance(value, str) else value


class RedactCapabilities(logging.Filter):
    """Redact capability URLs and credentials in a record's message, arguments and extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        for name, value in _extras(record).items():
            redacted = redact_extra(name, value)
            if redacted is not value:
                setattr(record, name, redacted)
        return True


class AddRequestId(logging.Filter):
    """Put the id of the HTTP request being answered on the record (`request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None and getattr(record, "request_id", None) is None:
            record.request_id = request_id
        return True


def _redact_arg(value: Any) -> Any:
    if isinstance(value, int | float | bool) or value is None:
        return value
    # A URL object (httpx logs its requests' URLs) is redacted as the text it prints as.
    text = value if isinstance(value, str) else str(value)
    redacted = redact(text)
    return value if redacted == text and not isinstance(value, str) else redacted


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"}


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_EXTRA_CHARS:
        text = text[:MAX_EXTRA_CHARS] + "…"
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """The usual one-line format, followed by the record's extras as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        extras = _extras(record)
        if not extras:
            return line
        return line + " " + " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())


class _JsonFormatter(JsonFormatter):
    """JSON lines with UTC ISO 8601 times, a request id (null outside a request), and
    extras cut as in the text format."""

    _OWN_KEYS = frozenset({"timestamp", "level", "logger", "message", "exc_info", "stack_info"})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = datetime.fromtimestamp(record.created, UTC)
        return f"{stamp:%Y-%m-%dT%H:%M:%S}.{int(record.msecs):03d}Z"

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data.setdefault("request_id", None)
        for key, value in log_data.items():
            if key not in self._OWN_KEYS and isinstance(value, str):
                if len(value) > MAX_EXTRA_CHARS:
                    log_data[key] = value[:MAX_EXTRA_CHARS] + "…"
        return log_data


def json_formatter() -> logging.Formatter:
    """One JSON object a line: timestamp, level, logger, message, request_id and the extras
    as keys."""
    return _JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


class _DropMessage(logging.Filter):
    """Drop the records whose message is exactly `message`."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


_DROP_BOLT_TOKEN_WARNING = _DropMessage(warning_client_prioritized_and_token_skipped())


# Third-party loggers whose DEBUG records carry request bodies or URLs (see configure_logging).
_CLIENT_LOGGERS: Final = ("anthropic", "httpx", "httpcore", "googleapiclient", "urllib3")


def configure_logging(
    level: str, log_format: str = "text", *, stream: IO[str] | None = None
) -> None:
    """Send every logger's records through one redacting handler on the root logger."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if log_format == "json" else TextFormatter())
    handler.addFilter(AddRequestId())
    handler.addFilter(RedactCapabilities())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Clients that log a whole request at DEBUG: the Anthropic SDK logs "Request options"
    # with the prompt (an email's body), httpx/httpcore and urllib3 the traffic, and
    # google-api-python-client each request's URL. They stay at INFO whatever LOG_LEVEL
    # says, so LOG_LEVEL=DEBUG never prints an email.
    for name in _CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    # Alembic announces each of its plugins at INFO when it is first imported (seven lines
    # in `salesbot serve` and at each web process's first /healthz): not news to anyone.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # APScheduler logs two INFO lines for every run of every periodic job (the cadence
    # tick, the sweeps: several a minute); their failures and missed runs are warnings.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # Bolt reads SLACK_BOT_TOKEN from the environment beside the client we give it (made
    # with that token) and warns that the token "will be unused", twice a process.
    logging.getLogger("slack_bolt.App").addFilter(_DROP_BOLT_TOKEN_WARNING)
    # uvicorn's loggers print through the root handler (and its filter), not their own.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
