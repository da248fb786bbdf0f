"""Build the real ASGI app on the test's transaction, with API tokens for two orgs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.app import build_app
from bot.settings import Settings
from domain.clock import Clock
from domain.contacts import TokenScope
from handlers.api.deps import Services
from tests.support.accounts import create_org, create_token

TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnop"


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test app: no external credentials, a fixed secret key."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "SALESBOT_SECRET_KEY": TEST_SECRET_KEY,
        "PUBLIC_BASE_URL": "http://testserver",
        "SLACK_POST_INTERVAL_SECONDS": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class ApiWorld:
    """A test client and the bearer tokens of two organizations."""

    client: TestClient
    org_id: int
    other_org_id: int
    token: str
    read_token: str
    other_token: str
    token_id: int

    def auth(self, token: str | None = None) -> dict[str, str]:
        """Return the Authorization header for a token (the main org's by default)."""
        return {"Authorization": f"Bearer {token or self.token}"}


def make_api_world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: Clock,
    *,
    start_background: bool = True,
    settings: dict[str, object] | None = None,
) -> ApiWorld:
    """Create two orgs with tokens and the app serving on the test's transaction."""
    with session_factory() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        other = create_org(session, slug="rival", name="Rival Appraisals")
        token_id, token = create_token(session, org.id, name="test")
        _, read_token = create_token(session, org.id, name="reader", scope=TokenScope.READ)
        _, other_token = create_token(session, other.id, name="other")
        session.commit()
    services = Services(engine=engine, session_factory=session_factory, clock=clock)
    url = engine.url.render_as_string(hide_password=False)
    app = build_app(
        make_settings(url, **(settings or {})),
        services=services,
        start_background=start_background,
    )
    return ApiWorld(
        client=TestClient(app, raise_server_exceptions=False),
        org_id=org.id,
        other_org_id=other.id,
        token=token,
        read_token=read_token,
        other_token=other_token,
        token_id=token_id,
    )
