"""Settings from environment variables and an optional `.env` file."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIN_SECRET_KEY_CHARS = 32
_DATABASE_DRIVERS = frozenset(
    {"sqlite", "sqlite+pysqlite", "postgres", "postgresql", "postgresql+psycopg"}
)


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


class Settings(BaseSettings):
    """Everything Salesbot reads from its environment (see DESIGN.md)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    DATABASE_URL: str = "sqlite:///./salesbot.db"
    SALESBOT_SECRET_KEY: str = Field(
        description="Key for encrypting tokens at rest and signing links (32+ characters)."
    )
    PUBLIC_BASE_URL: str = "http://localhost:3000"
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=3000, ge=1, le=65535)
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: str = Field(
        default="text",
        description="`text`: one line a record with its extras as key=value; `json`: one "
        "JSON object a line.",
    )

    SLACK_API_URL: str = "https://slack.com/api/"
    SLACK_BOT_TOKEN: str | None = None
    SLACK_SIGNING_SECRET: str | None = None
    SLACK_CLIENT_ID: str | None = None
    SLACK_CLIENT_SECRET: str | None = None
    SLACK_POST_INTERVAL_SECONDS: float = Field(
        default=1.1,
        ge=0,
        le=60,
        description="Spacing of card messages per channel (Slack allows about 1/s; the margin "
        "keeps clock jitter from bouncing off 429s).",
    )

    GMAIL_API_URL: str = "https://gmail.googleapis.com/"
    GOOGLE_TOKEN_URI: str = "https://oauth2.googleapis.com/token"
    GOOGLE_AUTH_URI: str = "https://accounts.google.com/o/oauth2/auth"
    GOOGLE_CERTS_URL: str = "https://www.googleapis.com/oauth2/v1/certs"
    GOOGLE_CLIENT_ID: str | None = None
    GOOGLE_CLIENT_SECRET: str | None = None
    PUBSUB_TOPIC: str | None = None
    PUBSUB_AUDIENCE: str | None = None
    PUBSUB_SERVICE_ACCOUNT: str | None = None

    ANTHROPIC_API_KEY: str | None = None
    ANTHROPIC_BASE_URL: str | None = None
    ANTHROPIC_MODEL: str = Field(
        default="claude-sonnet-4-6", description="The model that writes (draft personalisation)."
    )
    ANTHROPIC_FAST_MODEL: str = Field(
        default="claude-haiku-4-5",
        description="The model that classifies inbound email: fast and cheap, one short "
        "forced tool call per message.",
    )
    # 32 calls in flight: with Claude answering in about 1 s that is ~32 classifications/s
    # (1,000 messages in ~32 s, `python -m bench claude_classify`), ~1,900 requests a
    # minute, inside the RPM limit of Anthropic's Tier 3 (2,000) and Tier 4 (4,000) for
    # Haiku. Cached prompt reads do not count toward the input-token limit, so the limit
    # that binds is requests a minute; on a lower tier set it lower (8 for Tier 2's 1,000
    # RPM at 1 s a call): a 429 is honoured by every caller, but each one costs a round trip.
    ANTHROPIC_CONCURRENCY: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Classification calls to Anthropic in flight at once, for the whole "
        "process (see the comment above for how it relates to Anthropic's rate limits).",
    )

    RULE_PROPOSAL_AFTER: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Identical re-labels by reps (same new category) for one sender, or for "
        "several senders of one domain, before a classification rule is proposed to the admins.",
    )
    OFFLINE_CORRECTIONS_FILE: str = Field(
        default="./salesbot-corrections.jsonl",
        description="Reps' corrections exported by `salesbot inbound train`; the offline "
        "classifier trains on the shipped labelled set plus this file when it exists.",
    )

    WORK_LEASE_SECONDS: float = Field(
        default=300,
        ge=0.5,
        le=86_400,
        description="Lease of claimed tasks and of job planning, and how long a card may stay "
        "approved or executing without reaching the outbox before the recovery sweep carries "
        "it on (after a crashed worker).",
    )
    GMAIL_SEND_LEASE_SECONDS: float = Field(
        default=600,
        ge=0.5,
        le=86_400,
        description="Lease of an email being sent; after it, the outbox searches the mailbox "
        "for the Message-ID before anything is sent again. Longer than any Gmail call.",
    )
    WORKER_POLL_SECONDS: float = Field(
        default=5,
        ge=0.05,
        le=300,
        description="How often idle background workers look for work they were not woken for.",
    )
    SHUTDOWN_GRACE_SECONDS: float = Field(
        default=25,
        ge=0,
        le=600,
        description="On SIGTERM, how long the background work may take to finish what it "
        "has in hand (an email being sent) before the process exits anyway; keep it under "
        "the orchestrator's kill timeout (Kubernetes: 30 s).",
    )
    CADENCE_TICK_SECONDS: float = Field(
        default=60,
        ge=0.05,
        le=3600,
        description="How often the scheduler's cadence tick advances due enrollments.",
    )
    CADENCE_TICK_LIMIT: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Enrollments one tick works through at most; a backlog after downtime "
        "drains over the next ticks, in due order, instead of in one burst.",
    )
    # Each chunk asks its jobs and its contacts' facts a few queries whatever its size:
    # 10,000 due steps took 7.7 s in chunks of 500 and 4.2 s in chunks of 2000 on 1M
    # enrollments (bench/cadence_tick.py); a chunk's transaction lasts well under a second.
    CADENCE_TICK_CHUNK: int = Field(
        default=2000,
        ge=1,
        le=10_000,
        description="Enrollments the tick claims, judges and commits in one transaction.",
    )
    DIGEST_TICK_SECONDS: float = Field(
        default=60,
        ge=0.05,
        le=3600,
        description="How often the digest job looks for subscriptions whose posting time came "
        "and for digests to post (`/digest now` wakes it at once).",
    )
    NEWSLETTER_PLAN_BATCH: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Subscribers a newsletter issue's planning stores in one transaction (its "
        "cursor moves with them: a crash carries on after the last batch committed).",
    )
    SALESBOT_CLOCK_FILE: str = Field(
        default="",
        description="Tests and benches only: read the current time from this file (an ISO "
        "8601 instant) instead of the wall clock, so processes walk weeks in seconds. "
        "Never set in production.",
    )
    SALESBOT_FAULT_POINTS: str = Field(
        default="",
        description="Tests only: end the process (exit 137) at these named points, "
        "`name[@n],...` (domain/faults.py).",
    )

    @field_validator("SALESBOT_SECRET_KEY")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if len(value) < MIN_SECRET_KEY_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_CHARS} characters")
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # The message never repeats the value: it may hold a password.
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            url = None
        sqlite_file = value.startswith(("sqlite:///", "sqlite+pysqlite:///"))
        if (
            url is None
            or url.drivername not in _DATABASE_DRIVERS
            or (url.get_backend_name() == "sqlite" and not sqlite_file)
        ):
            raise ValueError(
                "must be a sqlite:///path or postgresql://user:password@host:port/database URL"
            )
        return value

    @field_validator(
        "PUBLIC_BASE_URL",
        "SLACK_API_URL",
        "GMAIL_API_URL",
        "GOOGLE_TOKEN_URI",
        "GOOGLE_AUTH_URI",
        "GOOGLE_CERTS_URL",
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("SALESBOT_FAULT_POINTS")
    @classmethod
    def _fault_points(cls, value: str) -> str:
        from domain.faults import parse

        parse(value)
        return value

    @field_validator("SALESBOT_CLOCK_FILE")
    @classmethod
    def _clock_file(cls, value: str) -> str:
        # Checked at start-up: a clock that cannot be read failed every call it served.
        if not value:
            return value
        example = "an ISO 8601 instant with its offset, e.g. 2026-03-02T15:00:00+00:00"
        try:
            with open(value, encoding="utf-8") as handle:
                text = handle.read(200).strip()
        except FileNotFoundError:
            raise ValueError(f"there is no file {value}; it must hold {example}") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ValueError(f"cannot read {value} ({reason}); it must hold {example}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{value} is not text; it must hold {example}") from None
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value} must hold {example}, not {text[:40]!r}") from None
        if at.tzinfo is None:
            raise ValueError(f"{value} holds {text!r} without an offset; it must hold {example}")
        return value

    @field_validator("LOG_LEVEL")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @field_validator("LOG_FORMAT")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.lower()
        if value not in {"text", "json"}:
            raise ValueError("must be text or json")
        return value

    @property
    def sandbox(self) -> bool:
        """True when no external credentials are set: run against local stand-ins."""
        return not (self.SLACK_BOT_TOKEN or self.SLACK_CLIENT_ID) and not (
            self.GOOGLE_CLIENT_ID or self.ANTHROPIC_API_KEY
        )


def load_settings(**overrides: object) -> Settings:
    """Load settings, turning validation errors into one line that names the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        if first["type"] == "missing":
            raise SettingsError(
                f"setting {name} is missing: set it in the environment or .env"
            ) from None
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"setting {name} is malformed: {reason}") from None
