"""The OpenAPI document and the /docs page.

The document says what each route can answer besides its success: FastAPI lists a 422
only, in its own shape, so the answers routes share are added here from what each
operation takes (an API token: 401 and 403; a path id: 404; a write: 409; a body: 400
and 413), all in the API's error shape. /docs serves Swagger UI from files
shipped in this package (see swagger_ui/SOURCES), so the page works offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from domain.fields import MAX_ID

ASSETS = Path(__file__).parent / "swagger_ui"
ASSETS_URL = "/docs/assets"
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
BEARER = "bearerAuth"
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}


class ErrorDetail(BaseModel):
    """One field that was refused, and why."""

    field: str
    message: str


class ErrorInfo(BaseModel):
    """What went wrong: a stable code, a sentence, and the fields at fault."""

    code: str
    message: str
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    """The body of every error the API answers."""

    error: ErrorInfo


_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_ANSWERS = {
    "400": "Malformed request: a NUL character in the URL, or a body that cannot be read.",
    "401": "No valid API token: the Authorization header is missing or malformed, or the "
    "token is unknown or revoked.",
    "403": "Not permitted: a read-only token asked to write, or the caller may not act on "
    "this resource.",
    "404": "Not found in the caller's organization.",
    "409": "Conflict with the resource's current state (e.g. a job that already finished).",
    "413": "The request body is larger than this endpoint takes.",
    "422": "Invalid input: the details name each field and what is wrong with it.",
    "503": "Not configured on this server (the message names the settings to set).",
}


def _answers(method: str, operation: dict[str, Any]) -> Iterator[str]:
    """The error answers an operation can give, from what it takes."""
    authenticated = any(BEARER in requirement for requirement in operation.get("security", []))
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if authenticated:
        yield from ("401", "403")
    if any(p.get("in") == "path" for p in parameters):
        yield "404"
    if authenticated and method.upper() in _WRITES:
        yield "409"
    if parameters or has_body:
        yield "400"  # a NUL character in the URL, or a body that cannot be read
    if has_body:
        yield "413"
    if parameters or has_body:
        yield "422"


def error_answer(status: int | str) -> dict[str, Any]:
    """An OpenAPI response in the API's error shape, with the usual description."""
    return {"description": _ANSWERS[str(status)], "content": {"application/json": {"schema": _REF}}}


def _restore_integer_bounds(document: Any) -> None:
    """Turn bounds FastAPI's OpenAPI model made floats back into integers.

    It types `maximum` as a float, and 2**63 - 1 as a float is 2**63: the document would
    allow one id more than a BIGINT holds.
    """
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                    node[key] = MAX_ID if value == float(MAX_ID) else int(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Return the app's OpenAPI document with every route's error answers."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _restore_integer_bounds(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    definitions = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(definitions.pop("$defs", {}))
    schemas["ErrorResponse"] = definitions
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _answers(method, operation):
                # An answer the route declares itself (e.g. an HTML page) is kept, and
                # may also come in the error shape (a refusal before the route runs);
                # FastAPI's own 422 is replaced by the API's error shape.
                if status not in responses or status == "422":
                    responses[status] = error_answer(status)
                else:
                    # The route's own answer (a page) and the API's error, which the
                    # checks in front of every route answer with.
                    content = responses[status].setdefault("content", {})
                    content.setdefault("application/json", {"schema": _REF})
    app.openapi_schema = document
    return document


def install_docs(app: FastAPI) -> None:
    """Serve /openapi.json with the error answers, and /docs from local assets."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            # No badge that asks validator.swagger.io about the document.
            swagger_ui_parameters={"validatorUrl": None},
        )
