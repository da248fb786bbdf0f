"""Requests are counted by their route's whole template, prefixes of nested routers included."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from handlers.observability import UNMATCHED, ObservabilityMiddleware
from integrations import metrics


def _count(route: str, method: str = "GET", status_class: str = "2xx") -> float:
    return float(metrics.HTTP_REQUESTS.labels(route, method, status_class)._value.get())


def _nested_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(ObservabilityMiddleware)
    outer = APIRouter(prefix="/nested-outer")
    inner = APIRouter()
    deeper = APIRouter(prefix="/deeper")

    @outer.get("")
    def page() -> dict[str, str]:
        return {}

    @inner.post("/act/{thing_id}")
    def act(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    @deeper.get("/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    inner.include_router(deeper)
    outer.include_router(inner)
    app.include_router(outer)
    prefixed = APIRouter()

    @prefixed.get("/things/{thing_id}")
    def thing(thing_id: int) -> dict[str, int]:
        return {"thing": thing_id}

    app.include_router(prefixed, prefix="/nested-api")

    @app.get("/nested-top")
    def top() -> dict[str, str]:
        return {}

    return app


def test_a_route_of_a_nested_router_is_counted_under_its_whole_template() -> None:
    client = TestClient(_nested_app())
    templates = [
        ("/nested-outer", "GET"),
        ("/nested-outer/act/{thing_id}", "POST"),
        ("/nested-outer/deeper/{item_id}", "GET"),
        ("/nested-api/things/{thing_id}", "GET"),
        ("/nested-top", "GET"),
    ]
    before = {t: _count(*t) for t in templates}

    assert client.get("/nested-outer").status_code == 200
    assert client.post("/nested-outer/act/SECRET-1").status_code == 200
    assert client.get("/nested-outer/deeper/42").status_code == 200
    assert client.get("/nested-api/things/7").status_code == 200
    assert client.get("/nested-top").status_code == 200

    assert {t: _count(*t) - before[t] for t in templates} == dict.fromkeys(templates, 1.0)
    assert _count("/act/{thing_id}", "POST") == 0
    assert _count("/{item_id}") == 0
    assert _count("/things/{thing_id}") == 0


def test_a_path_no_route_matched_is_counted_as_unmatched() -> None:
    client = TestClient(_nested_app())
    before = _count(UNMATCHED, "GET", "4xx")

    assert client.get("/nested-outer/nothing/here").status_code == 404

    assert _count(UNMATCHED, "GET", "4xx") == before + 1
