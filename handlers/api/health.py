"""Liveness and readiness."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from handlers.api.deps import ServicesDep
from storage.heartbeats import STALE_AFTER, newest_beat
from storage.models import InboundEmail, Job, SlackDeferredCall

router = APIRouter(tags=["health"])

#: What the start-up check may say of a configured Claude model that makes calls with it fail.
_FAILING_MODEL: Final = frozenset({"unknown", "retired"})


@router.get(
    "/healthz",
    responses={
        503: {
            "description": "The database is unreachable or its schema is not the one the "
            "code expects (`status` is `error`, `database` says why)."
        },
        200: {
            "description": "The database answers with the expected schema. `status` is `ok`, "
            "or `degraded` when a configured Claude model is unknown or retired "
            "(`degraded_because` says which): the service runs, its Claude calls fail."
        },
    },
)
def healthz(services: ServicesDep, request: Request) -> JSONResponse:
    """Report whether the database answers and carries the expected schema.

    `classifier` names what classifies inbound mail: `claude:<model>`, or
    `offline:<version>` without an Anthropic key. With a key, `claude_models` says what the
    Models API said at start-up about each configured model (known, deprecated, retired,
    unknown, not_checked); it is absent until the check has answered. A model it calls
    unknown or retired makes `status` `degraded` (still HTTP 200: the database is fine), and
    `degraded_because` lists the check's messages.
    """
    from storage.migrate import current_heads

    heads = current_heads()
    try:
        with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT 1"))
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if version in heads:
                slack_work = slack_work_queue(conn, services.clock.now())
                jobs_to_plan = jobs_to_plan_queue(conn, services.clock.now())
                inbound = inbound_queue(conn, services.clock.now())
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        return JSONResponse({"status": "error", "database": f"unreachable: {reason}"}, 503)
    if version not in heads:
        return JSONResponse(
            {
                "status": "error",
                "database": f"schema at {version}, code expects {', '.join(sorted(heads))}; "
                "run `salesbot db upgrade`",
            },
            503,
        )
    body: dict[str, object] = {
        "status": "ok",
        "database": services.engine.dialect.name,
        "schema": version,
        "slack_work": slack_work,
        "jobs_to_plan": jobs_to_plan,
        "inbound": inbound,
    }
    classifier = getattr(request.app.state, "classifier", None)
    if classifier:
        body["classifier"] = classifier
    models: list[dict[str, str]] | None = getattr(request.app.state, "claude_models", None)
    if models:
        body["claude_models"] = models
        failing = [m["message"] for m in models if m.get("status") in _FAILING_MODEL]
        if failing:
            body["status"] = "degraded"
            body["degraded_because"] = failing
    return JSONResponse(body)


@router.get(
    "/readyz",
    responses={
        200: {"description": "Ready: every check passed (`checks` says what each found)."},
        503: {
            "description": "Not ready: `failed` names the checks that failed, and each "
            "failed check's `action` says what to do."
        },
    },
)
def readyz(services: ServicesDep) -> JSONResponse:
    """Say whether the deployment can do its work: the database answers, its schema is at
    the head the code expects, and a process running the background work (`salesbot
    worker`, or `salesbot serve`) beat within the last minute.

    For a deploy gate and an alert. A web process answers Slack without the worker (the
    work is stored and waits), so a load balancer's health check of web processes should
    use `/healthz`: with `/readyz` every web process leaves the pool when the worker stops.
    """
    from storage.migrate import current_heads

    checks: dict[str, dict[str, object]] = {}
    heads = current_heads()
    now = services.clock.now()
    version: str | None = None
    beat: datetime | None = None
    workers = 0
    try:
        with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True, "detail": services.engine.dialect.name}
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if version in heads:
                beat, workers = newest_beat(conn)
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        if "database" not in checks:
            checks["database"] = {
                "ok": False,
                "detail": f"unreachable: {reason}",
                "action": "check DATABASE_URL and that the database server is up",
            }
        else:
            checks["migrations"] = {
                "ok": False,
                "detail": f"no schema version: {reason}",
                "action": "run `salesbot db upgrade`",
            }
    if "database" in checks and checks["database"]["ok"] and "migrations" not in checks:
        expected = ", ".join(sorted(heads))
        checks["migrations"] = (
            {"ok": True, "detail": f"at {version}"}
            if version in heads
            else {
                "ok": False,
                "detail": f"schema at {version}, code expects {expected}",
                "action": "run `salesbot db upgrade` (then restart the processes)",
            }
        )
    if checks.get("migrations", {}).get("ok"):
        checks["worker"] = _worker_check(beat, workers, now)
    failed = [name for name, check in checks.items() if not check["ok"]]
    for name in ("database", "migrations", "worker"):
        if name not in checks:
            checks[name] = {"ok": False, "detail": "not checked: an earlier check failed"}
    body = {"status": "not_ready" if failed else "ready", "failed": failed, "checks": checks}
    return JSONResponse(body, 503 if failed else 200)


def _worker_check(beat: datetime | None, workers: int, now: datetime) -> dict[str, object]:
    limit = int(STALE_AFTER.total_seconds())
    if beat is None:
        return {
            "ok": False,
            "detail": "no process running the background work has reported",
            "action": "start `salesbot worker` beside `salesbot web` (or run `salesbot serve`)",
        }
    age = max((now - beat).total_seconds(), 0.0)
    if age > limit:
        return {
            "ok": False,
            "detail": f"the newest worker heartbeat is {age:.0f} s old (limit {limit} s)",
            "action": "the worker is down or stuck: read its log, then restart `salesbot worker`",
        }
    return {
        "ok": True,
        "detail": f"newest heartbeat {age:.0f} s ago",
        "workers": workers,
    }


def jobs_to_plan_queue(conn: Connection, now: datetime) -> dict[str, float | int]:
    """Jobs accepted (REST launches, `POST /api/agent/jobs`) that no worker has planned yet:
    a count whose oldest keeps ageing means no `salesbot worker` is running."""
    waiting, oldest = conn.execute(
        select(func.count(), func.min(Job.created_at)).where(
            Job.planned_at.is_(None), Job.status.in_(("pending", "running"))
        )
    ).one()
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return {"waiting": int(waiting), "oldest_waiting_seconds": round(max(age, 0.0), 1)}


def inbound_queue(conn: Connection, now: datetime) -> dict[str, float | int]:
    """The inbound pipeline's queue: parsed messages waiting (an oldest that keeps ageing
    means no worker runs it), messages parked after failing five times (`error` says why;
    `salesbot inbound reclassify --status failed` retries them), and messages classified
    offline that wait for Claude."""
    e = InboundEmail
    rows = conn.execute(
        select(e.status, func.count(), func.min(e.created_at))
        .where(
            (e.status == "parsed")
            | ((e.status == "failed") & (e.pipeline_attempts > 0))
            | ((e.status == "processed") & e.reclassify_at.is_not(None))
        )
        .group_by(e.status)
    ).all()
    counts = {r[0]: (int(r[1]), r[2]) for r in rows}
    waiting, oldest = counts.get("parsed", (0, None))
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return {
        "waiting": waiting,
        "oldest_waiting_seconds": round(max(age, 0.0), 1),
        "failed": counts.get("failed", (0, None))[0],
        "to_reclassify": counts.get("processed", (0, None))[0],
    }


def slack_work_queue(conn: Connection, now: datetime) -> dict[str, float | int]:
    """The Slack work stored for `salesbot worker`: a backlog whose oldest call keeps
    ageing means no worker is running (clicks are acked but not acted on)."""
    calls = SlackDeferredCall
    rows = conn.execute(
        select(calls.status, func.count(), func.min(calls.created_at)).group_by(calls.status)
    ).all()
    waiting = [r for r in rows if r[0] != "failed"]
    oldest = min((r[2] for r in waiting), default=None)
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return {
        "waiting": sum(r[1] for r in waiting),
        "failed": sum(r[1] for r in rows if r[0] == "failed"),
        "oldest_waiting_seconds": round(max(age, 0.0), 1),
    }
