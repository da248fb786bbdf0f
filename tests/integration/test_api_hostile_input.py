"""Values the database cannot hold and bodies too large are refused with a 4xx that says
why, before they reach a query or fill the memory (on SQLite and PostgreSQL).

Each case here answered 500 before (`bigint out of range`, `PostgreSQL text fields cannot
contain NUL characters`, a RecursionError on a 900-level `metrics`), or was read whole
before it was refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from storage import models as m
from tests.support.api import ApiWorld, make_api_world

TOO_BIG = 2**63  # one past the largest BIGINT
CAMPAIGN = {"name": "Q4 lender win-back", "include_tags": ["lender"]}
TEMPLATE = {"name": "Step 1", "subject": "Hello {{ first_name }}", "body": "Hi {{ first_name }}"}
JOB = {
    "name": "Win-back",
    "params": {
        "target": {"contact_ids": [1]},
        "templates": [{"subject": "Hi {{ first_name }}", "body": "Hello"}],
    },
}


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


def _stored_rows(session_factory: Callable[[], Session]) -> int:
    with session_factory() as session:
        return sum(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (m.MarketingCampaign, m.EmailTemplate, m.Job)
        )


def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body["error"]


TOO_LARGE = "Input should be less than or equal to 9223372036854775807"


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", f"/api/marketing/campaigns/{TOO_BIG}", TOO_LARGE),
        ("PUT", f"/api/marketing/campaigns/{TOO_BIG}", TOO_LARGE),
        ("GET", f"/api/marketing/email-templates/{TOO_BIG}", TOO_LARGE),
        ("DELETE", f"/api/marketing/email-templates/{TOO_BIG}", TOO_LARGE),
        ("POST", f"/api/campaigns/{TOO_BIG}/launch", TOO_LARGE),
        ("GET", f"/api/agent/jobs/{TOO_BIG}", TOO_LARGE),
        ("GET", f"/api/agent/jobs/{TOO_BIG}/tasks", TOO_LARGE),
        ("POST", f"/api/agent/jobs/{TOO_BIG}/cancel", TOO_LARGE),
        ("GET", f"/api/marketing/campaigns?offset={TOO_BIG}", TOO_LARGE),
        ("GET", f"/api/agent/jobs/1/tasks?offset={TOO_BIG}", TOO_LARGE),
        ("GET", "/api/marketing/campaigns/0", "Input should be greater than or equal to 1"),
    ],
)
def test_an_id_or_offset_outside_a_bigint_is_refused_with_422(
    api: ApiWorld, method: str, path: str, message: str
) -> None:
    body = {"name": "x"} if method == "PUT" else None
    response = api.client.request(method, path, json=body, headers=api.auth())
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "validation_error"
    assert [d["message"] for d in error["details"]] == [message]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/marketing/campaigns",
            {**CAMPAIGN, "email_template_ids": [TOO_BIG]},
            "email_template_ids.0",
        ),
        (
            "/api/agent/jobs",
            {**JOB, "params": {**JOB["params"], "target": {"contact_ids": [1, TOO_BIG]}}},
            "params.target.contact_ids.1",
        ),
        (
            "/api/agent/jobs",
            {**JOB, "params": {**JOB["params"], "target": {"client_ids": [TOO_BIG]}}},
            "params.target.client_ids.0",
        ),
        ("/api/agent/jobs", {**JOB, "campaign_id": TOO_BIG}, "campaign_id"),
    ],
)
def test_an_id_list_with_a_value_outside_a_bigint_is_refused_with_422(
    api: ApiWorld, path: str, body: dict[str, Any], field: str
) -> None:
    response = api.client.post(path, json=body, headers=api.auth())
    assert response.status_code == 422
    [detail] = _error(response)["details"]
    assert detail["field"] == field
    assert detail["message"] == TOO_LARGE


NUL_MESSAGE = "must not contain NUL characters (\\u0000)"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/marketing/campaigns", {**CAMPAIGN, "name": "Q4\x00"}, "name"),
        ("/api/marketing/campaigns", {**CAMPAIGN, "description": "a\x00b"}, "description"),
        ("/api/marketing/campaigns", {**CAMPAIGN, "include_tags": ["x\x00"]}, "include_tags.0"),
        ("/api/marketing/campaigns", {**CAMPAIGN, "metrics": {"a": ["\x00"]}}, "metrics"),
        ("/api/marketing/campaigns", {**CAMPAIGN, "metrics": {"k\x00": 1}}, "metrics"),
        ("/api/marketing/email-templates", {**TEMPLATE, "body": "Hi\x00"}, "body"),
        ("/api/marketing/audiences/calculate-size", {"exclude_tags": ["\x00"]}, "exclude_tags.0"),
        ("/api/agent/jobs", {**JOB, "name": "\x00"}, "name"),
    ],
)
def test_text_with_a_nul_character_is_refused_with_422(
    api: ApiWorld, session_factory: Callable[[], Session], path: str, body: Any, field: str
) -> None:
    response = api.client.post(path, json=body, headers=api.auth())
    assert response.status_code == 422
    [detail] = _error(response)["details"]
    assert detail == {"field": field, "message": NUL_MESSAGE}
    assert _stored_rows(session_factory) == 0


def test_a_campaign_update_with_a_nul_character_is_refused_and_changes_nothing(
    api: ApiWorld,
) -> None:
    created = api.client.post("/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth())
    campaign_id = created.json()["id"]
    response = api.client.put(
        f"/api/marketing/campaigns/{campaign_id}",
        json={"description": "\x00"},
        headers=api.auth(),
    )
    assert response.status_code == 422
    stored = api.client.get(f"/api/marketing/campaigns/{campaign_id}", headers=api.auth())
    assert stored.json()["description"] is None


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_metrics_nested_900_levels_deep_are_refused_with_422(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns",
        content=json.dumps({**CAMPAIGN, "metrics": _nested(900)}),
        headers={**api.auth(), "content-type": "application/json"},
    )
    assert response.status_code == 422
    [detail] = _error(response)["details"]
    assert detail == {"field": "metrics", "message": "must not nest deeper than 20 levels"}


def test_metrics_nested_20_levels_deep_are_stored_and_served_back(api: ApiWorld) -> None:
    metrics = _nested(20)
    response = api.client.post(
        "/api/marketing/campaigns", json={**CAMPAIGN, "metrics": metrics}, headers=api.auth()
    )
    assert response.status_code == 201
    assert response.json()["metrics"] == metrics


def test_a_metrics_string_longer_than_the_cap_is_refused_with_422(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/campaigns",
        json={**CAMPAIGN, "metrics": {"note": "x" * 30_000}},
        headers=api.auth(),
    )
    assert response.status_code == 422
    [detail] = _error(response)["details"]
    assert detail["message"] == "must not be longer than 20000 characters as JSON"


def test_a_50_mb_metrics_string_is_refused_with_413_and_nothing_is_stored(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    body = json.dumps({**CAMPAIGN, "metrics": {"blob": "x" * 50_000_000}})
    response = api.client.post(
        "/api/marketing/campaigns",
        content=body,
        headers={**api.auth(), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "code": "payload_too_large",
            "message": "request body too large: this endpoint takes at most 1 MiB",
            "details": [],
        }
    }
    assert _stored_rows(session_factory) == 0


def test_a_template_body_longer_than_the_cap_is_refused_with_422(api: ApiWorld) -> None:
    response = api.client.post(
        "/api/marketing/email-templates",
        json={**TEMPLATE, "body": "x" * 100_001},
        headers=api.auth(),
    )
    assert response.status_code == 422
    [detail] = _error(response)["details"]
    assert detail == {"field": "body", "message": "String should have at most 100000 characters"}


# --- body size, at the ASGI interface: what the app reads of a body it refuses ----------------


class _Upload:
    """A request body the app can read, counting how much it read."""

    def __init__(self, chunks: int, chunk: bytes) -> None:
        self.chunks = chunks
        self.chunk = chunk
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        if self.read >= self.chunks:
            return {"type": "http.disconnect"}
        self.read += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.read < self.chunks}


def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]], upload: _Upload) -> Any:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, upload.receive, send))
    start = next(s for s in sent if s["type"] == "http.response.start")
    body = b"".join(s.get("body", b"") for s in sent if s["type"] == "http.response.body")
    return start, json.loads(body)


def test_a_declared_200_mb_push_is_refused_with_413_before_a_byte_is_read(api: ApiWorld) -> None:
    upload = _Upload(chunks=200, chunk=b"x" * 1_000_000)
    start, body = _call(
        api.client.app,
        "/api/integrations/gmail/push",
        [(b"content-length", b"200000000"), (b"content-type", b"application/json")],
        upload,
    )
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    assert body["error"]["message"] == "request body too large: this endpoint takes at most 64 KiB"
    assert upload.read == 0


def test_a_chunked_body_is_read_only_up_to_the_limit_then_refused_with_413(api: ApiWorld) -> None:
    upload = _Upload(chunks=200, chunk=b"x" * 65_536)
    start, body = _call(
        api.client.app,
        "/api/marketing/campaigns",
        [(b"content-type", b"application/json"), *_auth_header(api)],
        upload,
    )
    assert start["status"] == 413
    assert body["error"]["code"] == "payload_too_large"
    assert upload.read == 17  # 1 MiB is 16 chunks: the 17th crosses the limit


def test_a_body_within_the_limit_is_served_as_before(api: ApiWorld) -> None:
    response = api.client.post("/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth())
    assert response.status_code == 201


def test_a_non_numeric_content_length_is_refused_with_400(api: ApiWorld) -> None:
    start, body = _call(
        api.client.app,
        "/api/marketing/campaigns",
        [(b"content-length", b"lots"), *_auth_header(api)],
        _Upload(chunks=1, chunk=b"{}"),
    )
    assert start["status"] == 400
    assert body["error"]["message"] == "Content-Length is not a number"


def _auth_header(api: ApiWorld) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {api.token}".encode())]


@pytest.mark.parametrize(
    "url",
    [
        "/unsubscribe/abc%00def",
        "/api/integrations/gmail/callback?state=%00&code=x",
        "/api/marketing/campaigns?status=active%00",
    ],
)
def test_a_nul_character_in_the_url_is_refused_with_400(api: ApiWorld, url: str) -> None:
    response = api.client.get(url, headers=api.auth())
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "bad_request",
        "message": "the URL must not contain NUL characters",
        "details": [],
    }


def test_a_campaign_stored_before_the_metrics_cap_is_still_served(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    created = api.client.post("/api/marketing/campaigns", json=CAMPAIGN, headers=api.auth())
    campaign_id = created.json()["id"]
    legacy = {"note": "x" * 30_000}
    with session_factory() as session:
        session.get_one(m.MarketingCampaign, campaign_id).metrics = legacy
        session.commit()
    stored = api.client.get(f"/api/marketing/campaigns/{campaign_id}", headers=api.auth())
    assert stored.status_code == 200
    assert stored.json()["metrics"] == legacy
    listed = api.client.get("/api/marketing/campaigns", headers=api.auth())
    assert [c["id"] for c in listed.json()] == [campaign_id]
