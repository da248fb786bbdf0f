"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from handlers.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(services: ServicesDep) -> JSONResponse:
    """Report whether the database answers and carries the expected schema."""
    from storage.migrate import current_heads

    try:
        with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT 1"))
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        return JSONResponse({"status": "error", "database": f"unreachable: {reason}"}, 503)
    heads = current_heads()
    if version not in heads:
        return JSONResponse(
            {
                "status": "error",
                "database": f"schema at {version}, code expects {', '.join(sorted(heads))}; "
                "run `salesbot db upgrade`",
            },
            503,
        )
    return JSONResponse(
        {"status": "ok", "database": services.engine.dialect.name, "schema": version}
    )
