"""/docs works offline (Swagger UI from files the app serves) and has an Authorize button
(the bearerAuth scheme); the OpenAPI document lists each route's error answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from tests.support.api import ApiWorld, make_api_world


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


@pytest.fixture
def document(api: ApiWorld) -> dict[str, Any]:
    answer = api.client.get("/openapi.json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def test_the_docs_page_loads_every_asset_from_this_server(api: ApiWorld) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    assert "https://" not in page.text
    types = {}
    for asset in assets:
        served = api.client.get(asset)
        assert served.status_code == 200
        assert len(served.content) > 500
        types[asset.rsplit(".", 1)[1]] = served.headers["content-type"].split(";")[0]
    assert types == {"png": "image/png", "js": "text/javascript", "css": "text/css"}
    assert '"validatorUrl": null' in page.text


def test_the_document_declares_bearer_auth_and_each_api_route_requires_it(
    document: dict[str, Any],
) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"]["type"] == "http"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    unsecured = sorted(
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") != [{"bearerAuth": []}]
    )
    # Health is public; Gmail's consent link and Google's redirect carry their own proof.
    assert unsecured == [
        "GET /api/integrations/gmail/callback",
        "GET /api/integrations/gmail/connect",
        "GET /healthz",
        "GET /readyz",
        "POST /api/reputation/webhook/{org_slug}",  # signed with the org's webhook secret
    ]


def test_each_route_lists_its_error_answers_in_the_api_error_shape(
    document: dict[str, Any],
) -> None:
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    responses = document["paths"]["/api/agent/jobs/{job_id}/cancel"]["post"]["responses"]
    assert sorted(responses) == ["200", "400", "401", "403", "404", "409", "422"]
    for status in ("400", "401", "403", "404", "409", "422"):
        assert responses[status]["content"]["application/json"]["schema"] == error
    create = document["paths"]["/api/marketing/campaigns"]["post"]["responses"]
    assert sorted(create) == ["201", "400", "401", "403", "409", "413", "422"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    shape = document["components"]["schemas"]["ErrorResponse"]
    assert shape["required"] == ["error"]


def test_the_document_carries_the_validators_constraints(document: dict[str, Any]) -> None:
    [job_id] = document["paths"]["/api/agent/jobs/{job_id}"]["get"]["parameters"]
    assert job_id["schema"]["minimum"] == 1
    assert job_id["schema"]["maximum"] == 2**63 - 1
    schemas = document["components"]["schemas"]
    template = schemas["EmailTemplateFields"]["properties"]
    assert template["body"]["maxLength"] == 100_000
    campaign = schemas["CampaignCreate"]["properties"]
    assert campaign["email_template_ids"]["items"]["maximum"] == 2**63 - 1
    assert campaign["email_template_ids"]["maxItems"] == 20
