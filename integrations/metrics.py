"""Prometheus metrics: every `salesbot_*` family, the price table of Claude's tokens, and the
exposition of one process (`salesbot serve`, `salesbot worker --metrics-port`) or of all the
processes of `salesbot web --processes N` (multiprocess mode).

The metric objects are module globals in prometheus_client's default registry, as the
library intends: a counter bumped in any thread of any module lands in one place. They hold
no connection and no client, so creating them at import breaks no rule of the composition
root. Labels are low-cardinality by construction: route templates, fixed outcome names,
model names from settings; never an organization, an address or a raw path.

Multiprocess mode: prometheus_client decides when it is first imported whether values live
in memory or in files under PROMETHEUS_MULTIPROC_DIR, so `salesbot web` sets that variable
before its worker processes start (see `bot.cli.web`). `exposition()` then reads every
process's files; the gauges say how to combine processes (`multiprocess_mode`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets, in seconds. HTTP: most answers take milliseconds; Slack must have its
# ack within 3 s, so the buckets around 1-3 s say how close acks come to that deadline.
_HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
_ACK_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0)
# A classification: offline well under a millisecond, Claude about a second.
_CLASSIFY_BUCKETS: Final = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# How late a periodic job started after it was due (seconds).
_LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0)
_SEND_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "salesbot_http_requests",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx...).",
    ["route", "method", "status_class"],
)
HTTP_LATENCY = Histogram(
    "salesbot_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template.",
    ["route", "method", "status_class"],
    buckets=_HTTP_BUCKETS,
)
SLACK_ACK = Histogram(
    "salesbot_slack_ack_seconds",
    "Time from a Slack request's arrival to its ack (Slack's deadline is 3 s), by kind.",
    ["kind"],
    buckets=_ACK_BUCKETS,
)
GMAIL_PUSHES = Counter(
    "salesbot_gmail_pushes",
    "Gmail Pub/Sub pushes received, by outcome (stored, redelivered, refused, ...).",
    ["outcome"],
)
INBOUND_MESSAGES = Counter(
    "salesbot_inbound_messages",
    "Inbound messages through a pipeline stage (fetch, understanding), by outcome.",
    ["stage", "outcome"],
)
CLASSIFICATIONS = Counter(
    "salesbot_classifications",
    "Inbound messages classified, by who decided (detector, rule, claude, offline).",
    ["source"],
)
CLASSIFICATION_LATENCY = Histogram(
    "salesbot_classification_seconds",
    "Time one model classification took (claude: its API calls, retries included; "
    "offline: one message in a batch).",
    ["source"],
    buckets=_CLASSIFY_BUCKETS,
)
INBOUND_ACTIONS = Counter(
    "salesbot_inbound_actions",
    "What the inbound pipeline did because of a message (opted_out, marked_bounced, ...).",
    ["action"],
)
BOUNCES = Counter(
    "salesbot_bounces",
    "Bounces read from inbound mail: hard (address marked bounced) or soft (counted).",
    ["kind"],
)
OPT_OUTS = Counter(
    "salesbot_opt_outs",
    "Contacts opted out, by where the request came from (one_click, unsubscribe_page, email).",
    ["source"],
)
LLM_TOKENS = Counter(
    "salesbot_llm_tokens",
    "Tokens of Claude's answers, by model, purpose and kind (input, output, cache_read, "
    "cache_write).",
    ["model", "purpose", "kind"],
)
LLM_COST = Counter(
    "salesbot_llm_cost_usd",
    "Estimated cost of Claude's calls in US dollars (the price table in integrations/metrics.py).",
    ["model", "purpose"],
)
LLM_CALLS = Counter(
    "salesbot_llm_calls",
    "Claude API calls, by model, purpose and outcome (ok, error).",
    ["model", "purpose", "outcome"],
)
EMAIL_SENDS = Counter(
    "salesbot_email_sends",
    "Gmail send calls, by outcome: sent, failed (certainly not sent), retry (rate limited or "
    "refused for now, retried later), uncertain (no answer: the mailbox is searched first).",
    ["outcome"],
)
EMAIL_SEND_LATENCY = Histogram(
    "salesbot_email_send_seconds",
    "Time one Gmail send call took.",
    buckets=_SEND_BUCKETS,
)
CARD_TRANSITIONS = Counter(
    "salesbot_card_transitions",
    "Cards moved to a state (approved, executing, done, blocked, withdrawn, ...).",
    ["to"],
)
PERIODIC_LAG = Histogram(
    "salesbot_periodic_job_lag_seconds",
    "How late a periodic job's run started after it was due, by job.",
    ["job"],
    buckets=_LAG_BUCKETS,
)
PERIODIC_RUNS = Counter(
    "salesbot_periodic_job_runs",
    "Runs of a periodic job, by outcome (ok, failed).",
    ["job", "outcome"],
)
PERIODIC_LAST_SUCCESS = Gauge(
    "salesbot_periodic_job_last_success_timestamp_seconds",
    "Unix time of the last run of a periodic job that ended without an error.",
    ["job"],
    multiprocess_mode="max",
)


# --- Claude's prices --------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# Anthropic's list prices (USD per million tokens, anthropic.com/pricing, checked 2025-11),
# matched by the longest prefix of the model name. A model not listed is counted in tokens
# but not in dollars, and logged once. Keep this table the one place prices live.
PRICES: Final[Mapping[str, Price]] = {
    "claude-opus-4-5": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4": Price(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.30),
    "claude-3-7-sonnet": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4": Price(1.0, 5.0, 1.25, 0.10),
    "claude-3-5-haiku": Price(0.80, 4.0, 1.0, 0.08),
    "claude-3-haiku": Price(0.25, 1.25, 0.30, 0.03),
}
_UNPRICED_LOGGED: set[str] = set()
_UNPRICED_LOCK = threading.Lock()


def price_of(model: str) -> Price | None:
    """The price of a model (by the longest matching prefix), or None when not listed."""
    best = max((p for p in PRICES if model.startswith(p)), key=len, default=None)
    return PRICES[best] if best is not None else None


def cost_usd(price: Price, usage: TokenCounts) -> float:
    """What an answer's tokens cost at `price`."""
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.cache_write
        + usage.cache_read_input_tokens * price.cache_read
    ) / 1_000_000


class TokenCounts(Protocol):
    """The token counts of one answer (the Anthropic SDK's `Usage` has them)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_creation_input_tokens(self) -> int: ...
    @property
    def cache_read_input_tokens(self) -> int: ...


@dataclass(frozen=True)
class _Usage:
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


def record_llm_usage(model: str, purpose: str, usage: object) -> None:
    """Count one Claude answer's tokens and estimated cost (`usage`: the SDK's `Usage`)."""
    counts = _Usage(
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cache_creation_input_tokens=int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
        cache_read_input_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
    )
    LLM_CALLS.labels(model, purpose, "ok").inc()
    for kind, value in (
        ("input", counts.input_tokens),
        ("output", counts.output_tokens),
        ("cache_write", counts.cache_creation_input_tokens),
        ("cache_read", counts.cache_read_input_tokens),
    ):
        if value:
            LLM_TOKENS.labels(model, purpose, kind).inc(value)
    price = price_of(model)
    if price is None:
        with _UNPRICED_LOCK:
            first = model not in _UNPRICED_LOGGED
            _UNPRICED_LOGGED.add(model)
        if first:
            log.warning(
                "no price for a Claude model: its cost is not counted",
                extra={"model": model, "prices": "integrations/metrics.py PRICES"},
            )
        return
    LLM_COST.labels(model, purpose).inc(cost_usd(price, counts))


def record_llm_failure(model: str, purpose: str) -> None:
    """Count a Claude call that returned no answer."""
    LLM_CALLS.labels(model, purpose, "error").inc()


# --- exposition -------------------------------------------------------------------------------


class Source(Protocol):
    """Anything with prometheus_client's `collect()`: a registry or a collector."""

    def collect(self) -> Iterable[Metric]: ...


@dataclass(frozen=True)
class _Joined:
    sources: tuple[Source, ...]

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


def multiprocess_dir() -> str | None:
    """The directory of the processes' metric files, when several processes serve."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(*extra: Source, accept: str = "") -> tuple[bytes, str]:
    """This process's metrics (or every web process's, in multiprocess mode) and `extra`'s,
    in the format the scraper's Accept header asks for (the Prometheus text format 0.0.4
    when it names none); return (body, content type)."""
    own: Source = (
        multiprocess.MultiProcessCollector(None, multiprocess_dir())
        if multiprocess_dir()
        else REGISTRY
    )
    encode, content_type = choose_encoder(accept)
    return encode(_Joined((own, *extra))), content_type


_PID_FILE = re.compile(r"_(\d+)\.db$")


def mark_dead_processes() -> list[int]:
    """Let the live-gauge files of web processes that died go (multiprocess mode only).

    uvicorn restarts a web process that died without telling anyone; each process calls
    this when it starts, so what a dead one left is forgotten at the next start. Counters
    and histograms of dead processes are kept (their counts happened).
    """
    path = multiprocess_dir()
    if path is None or not os.path.isdir(path):
        return []
    pids = {int(m.group(1)) for name in os.listdir(path) if (m := _PID_FILE.search(name))}
    dead = [pid for pid in sorted(pids) if pid != os.getpid() and not _alive(pid)]
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return dead


def mark_this_process_dead() -> None:
    """Forget this process's live gauges as it exits (multiprocess mode only)."""
    path = multiprocess_dir()
    if path is not None and os.path.isdir(path):
        multiprocess.mark_process_dead(os.getpid(), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_class(status: int) -> str:
    """2xx, 3xx, 4xx or 5xx."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"
