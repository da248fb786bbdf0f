"""`GET /metrics`: the Prometheus text format, for a scraper on the private network.

What the processes counted (integrations/metrics.py: every web process's in multiprocess
mode) and, read from the database at each scrape, the queues a dead or slow worker lets
grow: the Slack work deferred past acks, the outbox, the inbound pipeline, the jobs to plan,
and the age of the worker's heartbeat. They are the queries `/healthz` runs (a handful of
index-only counts), so a scrape every 15 s costs the database little. When the database
does not answer, `salesbot_database_up` is 0 and the queue gauges are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Request, Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from domain.clock import Clock
from handlers.api.deps import ServicesDep
from handlers.api.health import inbound_queue, jobs_to_plan_queue, slack_work_queue
from integrations import metrics
from storage.heartbeats import newest_beat
from storage.models import EmailSend

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class QueueCollector:
    """Gauges read from the database when scraped (one connection, a few small queries)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield the database's gauges (only `salesbot_database_up 0` when it is away)."""
        up = GaugeMetricFamily(
            "salesbot_database_up", "1 when the database answered this scrape's queries."
        )
        try:
            with self._engine.connect() as conn:
                found = list(self._gauges(conn, self._clock.now()))
        except SQLAlchemyError as exc:
            log.warning(
                "metrics: the database did not answer",
                extra={"reason": str(getattr(exc, "orig", exc)).splitlines()[0]},
            )
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _gauges(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        slack = slack_work_queue(conn, now)
        yield _gauge(
            "salesbot_slack_deferred_waiting",
            "Slack work stored after an ack that no worker has run yet.",
            slack["waiting"],
        )
        yield _gauge(
            "salesbot_slack_deferred_oldest_age_seconds",
            "Age of the oldest Slack work waiting (grows while no worker runs).",
            slack["oldest_waiting_seconds"],
        )
        yield _gauge(
            "salesbot_slack_deferred_failed",
            "Slack work that failed for good (kept for a person to look at).",
            slack["failed"],
        )
        outbox = GaugeMetricFamily(
            "salesbot_outbox_emails",
            "Emails in the outbox, by status (queued: waiting for their time or the "
            "mailbox's cap; sending: a Gmail call in flight or unconfirmed).",
            labels=["status"],
        )
        e = EmailSend
        counts = dict(
            conn.execute(
                select(e.status, func.count())
                .where(e.status.in_(("queued", "sending")))
                .group_by(e.status)
            ).all()
        )
        for status in ("queued", "sending"):
            outbox.add_metric([status], int(counts.get(status, 0)))
        yield outbox
        overdue = conn.execute(
            select(func.min(e.not_before)).where(e.status == "queued", e.not_before <= now)
        ).scalar()
        yield _gauge(
            "salesbot_outbox_oldest_overdue_seconds",
            "How long the oldest queued email has been due (0: none is overdue).",
            round(max((now - overdue).total_seconds(), 0.0), 1) if overdue else 0.0,
        )
        inbound = inbound_queue(conn, now)
        yield _gauge(
            "salesbot_inbound_waiting",
            "Inbound messages parsed and waiting for the pipeline.",
            inbound["waiting"],
        )
        yield _gauge(
            "salesbot_inbound_oldest_waiting_seconds",
            "Age of the oldest inbound message waiting for the pipeline.",
            inbound["oldest_waiting_seconds"],
        )
        yield _gauge(
            "salesbot_inbound_parked",
            "Inbound messages parked after failing five times.",
            inbound["failed"],
        )
        plan = jobs_to_plan_queue(conn, now)
        yield _gauge(
            "salesbot_jobs_to_plan", "Jobs accepted that no worker has planned.", plan["waiting"]
        )
        beat, workers = newest_beat(conn)
        yield _gauge(
            "salesbot_worker_heartbeat_age_seconds",
            "Seconds since the newest heartbeat of a process running the background work "
            "(-1: none has ever beaten).",
            round(max((now - beat).total_seconds(), 0.0), 1) if beat else -1.0,
        )
        yield _gauge(
            "salesbot_workers",
            "Processes running the background work with a heartbeat row.",
            workers,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(services: ServicesDep, request: Request) -> Response:
    """The metrics in the Prometheus text format (or OpenMetrics, when asked for)."""
    collector = QueueCollector(services.engine, services.clock)
    accept = request.headers.get("accept", "")
    body, content_type = await run_in_threadpool(
        lambda: metrics.exposition(collector, accept=accept)
    )
    return Response(content=body, media_type=None, headers={"Content-Type": content_type})
