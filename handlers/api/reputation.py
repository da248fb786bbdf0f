"""Reputation (docs/reputation.md): reviews in (REST and a signed webhook), their list,
response templates, escalation rules, settings, and trends.

Anyone with a token of the organization reads; sending reviews needs a write token;
changing templates, rules and settings is for admins (and organization-wide tokens).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Generic, NamedTuple, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from domain.errors import InvalidInput
from domain.fields import Id, Text
from domain.outreach import Actor
from domain.reputation import (
    MAX_BATCH,
    EscalationKind,
    EscalationRule,
    Platform,
    ReputationSettings,
    ReputationTrends,
    ResponseTemplate,
    Review,
    ReviewIn,
    ReviewStatus,
    RouteTo,
    Scenario,
    WebhookRefused,
    default_window,
    validation_message,
)
from domain.reputation_service import Reputation
from handlers.api.deps import ActorDep, IdentityDep, ServicesDep, Unauthorized
from handlers.api.docs import error_answer

router = APIRouter(prefix="/api/reputation", tags=["reputation"])

T = TypeVar("T")

#: Headers of a signed webhook request (docs/reputation.md).
TIMESTAMP_HEADER = "X-Salesbot-Timestamp"
SIGNATURE_HEADER = "X-Salesbot-Signature"


def get_reputation(request: Request) -> Reputation:
    """Return the reputation use cases the app was built with."""
    reputation: Reputation = request.app.state.runtime.reputation
    return reputation


ReputationDep = Annotated[Reputation, Depends(get_reputation)]


class ReviewBatch(BaseModel):
    """Several reviews at once (all stored, or none when one is invalid)."""

    model_config = ConfigDict(extra="forbid")

    reviews: list[ReviewIn] = Field(min_length=1, max_length=MAX_BATCH)


class IngestAnswer(BaseModel):
    """What storing reviews did."""

    created: int
    review_ids: list[int]
    duplicates: list[dict[str, str]] = Field(
        description="Reviews already stored (same platform and external_id): left as they are."
    )
    response_cards: int
    escalations: int


class ReviewOut(BaseModel):
    """A stored review."""

    id: int
    platform: Platform
    external_id: str
    author: str | None
    rating: int
    text: str
    url: str | None
    posted_at: datetime | None
    received_at: datetime
    sentiment: str
    sentiment_score: float
    sentiment_source: str
    status: ReviewStatus
    escalated: bool
    escalation_reason: str | None
    escalated_to: RouteTo | None
    response_text: str | None
    responded_at: datetime | None
    responded_by: int | None
    response_card_id: int | None
    escalation_card_id: int | None
    source: str

    @classmethod
    def of(cls, review: Review) -> ReviewOut:
        """The API's view of a review."""
        fields = {name: getattr(review, name) for name in cls.model_fields}
        return cls(**fields)


def _batch(payload: Any) -> list[ReviewIn]:
    """One review or `{"reviews": [...]}`, validated (a bad one refuses the whole batch)."""
    if isinstance(payload, dict) and "reviews" in payload:
        return ReviewBatch.model_validate(payload).reviews
    return [ReviewIn.model_validate(payload)]


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not JSON") from None


def _ingest(reputation: Reputation, org_id: int, payload: Any, *, source: str) -> dict[str, Any]:
    try:
        reviews = _batch(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {validation_message(first)}", field=where) from None
    return dict(reputation.ingest(org_id, reviews, source=source).as_json())


@router.post(
    "/reviews",
    status_code=201,
    response_model=IngestAnswer,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ReviewIn"},
                            {"$ref": "#/components/schemas/ReviewBatch"},
                        ]
                    }
                }
            },
        }
    },
)
async def add_reviews(
    request: Request, who: IdentityDep, reputation: ReputationDep
) -> dict[str, Any]:
    """Store one review, or `{"reviews": [...]}`: scored, checked against the escalation
    rules, and given a drafted response card when below 4 stars or negative."""
    payload = _parse(await request.body())
    return await run_in_threadpool(_ingest, reputation, who.org_id, payload, source="api")


@router.post(
    "/webhook/{org_slug}",
    status_code=201,
    response_model=IngestAnswer,
    responses={401: error_answer(401)},
)
async def review_webhook(
    org_slug: Annotated[str, Path(max_length=64)], request: Request, reputation: ReputationDep
) -> dict[str, Any]:
    """Reviews from a review site or an aggregator, signed with the organization's webhook
    secret (HMAC-SHA256 over `v1:<timestamp>:<body>`); 401 when the signature is missing,
    wrong or more than 5 minutes old."""
    body = await request.body()

    def work() -> dict[str, Any]:
        try:
            org_id = reputation.ingest_webhook(
                org_slug,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
                body=body,
            )
        except WebhookRefused as exc:
            raise Unauthorized(exc.message) from None
        return _ingest(reputation, org_id, _parse(body), source="webhook")

    return await run_in_threadpool(work)


@router.get("/reviews", response_model=list[ReviewOut])
def list_reviews(
    who: IdentityDep,
    reputation: ReputationDep,
    platform: Platform | None = None,
    status: ReviewStatus | None = None,
    escalated: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ReviewOut]:
    """List reviews, newest first."""
    reviews = reputation.list_reviews(
        who.org_id,
        platform=platform,
        status=status,
        escalated=escalated,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
        offset=offset,
    )
    return [ReviewOut.of(r) for r in reviews]


@router.get("/reviews/{review_id}", response_model=ReviewOut)
def get_review(review_id: Id, who: IdentityDep, reputation: ReputationDep) -> ReviewOut:
    """Return one review."""
    return ReviewOut.of(reputation.get_review(who.org_id, review_id))


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _bound(value: str | None, *, name: str, end: bool) -> datetime | None:
    """A `since`/`until` given as a date (the day's start; `until`: the next day's start)
    or a date and time (UTC when no zone)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            at = datetime.combine(day, time(), tzinfo=UTC)
            return at + timedelta(days=1) if end else at
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date (2026-12-01) or an ISO date and time", field=name
        ) from None


@router.get("/trends", response_model=ReputationTrends)
def trends(
    who: IdentityDep,
    reputation: ReputationDep,
    services: ServicesDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> ReputationTrends:
    """Daily sentiment and average rating, response rate and response time; `until` given
    as a date includes that day. Default: the last 30 days."""
    start, end = default_window(services.clock.now())
    return reputation.trends(
        who.org_id,
        _bound(since, name="since", end=False) or start,
        _bound(until, name="until", end=True) or end,
    )


# --- templates and escalation rules: five routes each, alike but for names and models -------

#: The id in a template's or a rule's path, under the name that route's path gives it.
_ItemId = Annotated[Id, Path(validation_alias=AliasChoices("template_id", "rule_id"))]


class _Calls(NamedTuple, Generic[T]):
    """The use cases behind a resource's routes (methods of Reputation)."""

    list_all: Callable[[Reputation, int], list[T]]
    add: Callable[..., T]
    get: Callable[[Reputation, int, int], T]
    update: Callable[..., T]
    remove: Callable[[Reputation, Actor | None, int, int], None]


class _Docs(NamedTuple):
    """What each of a resource's routes says it does (its OpenAPI description)."""

    list_all: str
    add: str
    get: str
    update: str
    remove: str


def _taking(model: type[BaseModel], endpoint: Callable[..., T]) -> Callable[..., T]:
    """Give the endpoint's `body` parameter the resource's model, from which FastAPI
    validates the request body and documents it."""
    signature = inspect.signature(endpoint)
    parameters = [
        p.replace(annotation=model) if p.name == "body" else p
        for p in signature.parameters.values()
    ]
    endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return endpoint


def _add_routes(
    *,
    path: str,
    name: str,
    plural: str,
    model: type[T],
    create: type[BaseModel],
    update: type[BaseModel],
    calls: _Calls[T],
    docs: _Docs,
) -> None:
    """Add a resource's list, add, get, update and remove routes to the router: named
    `list_<plural>`, `add_<name>`, ... (the operation ids), the id in the path `<name>_id`."""
    item = f"{path}/{{{name}_id}}"

    def list_all(who: IdentityDep, reputation: ReputationDep) -> list[T]:
        return calls.list_all(reputation, who.org_id)

    def add(body: BaseModel, who: IdentityDep, actor: ActorDep, reputation: ReputationDep) -> T:
        return calls.add(reputation, actor, who.org_id, **body.model_dump())

    def get(item_id: _ItemId, who: IdentityDep, reputation: ReputationDep) -> T:
        return calls.get(reputation, who.org_id, item_id)

    def change(
        item_id: _ItemId,
        body: BaseModel,
        who: IdentityDep,
        actor: ActorDep,
        reputation: ReputationDep,
    ) -> T:
        return calls.update(reputation, actor, who.org_id, item_id, **body.model_dump())

    def remove(
        item_id: _ItemId, who: IdentityDep, actor: ActorDep, reputation: ReputationDep
    ) -> Response:
        calls.remove(reputation, actor, who.org_id, item_id)
        return Response(status_code=204)

    router.add_api_route(
        path,
        list_all,
        methods=["GET"],
        name=f"list_{plural}",
        response_model=list[model],  # type: ignore[valid-type]  # a type made at run time
        description=docs.list_all,
    )
    router.add_api_route(
        path,
        _taking(create, add),
        methods=["POST"],
        name=f"add_{name}",
        status_code=201,
        response_model=model,
        description=docs.add,
    )
    router.add_api_route(
        item,
        get,
        methods=["GET"],
        name=f"get_{name}",
        response_model=model,
        description=docs.get,
    )
    router.add_api_route(
        item,
        _taking(update, change),
        methods=["PATCH"],
        name=f"update_{name}",
        response_model=model,
        description=docs.update,
    )
    router.add_api_route(
        item,
        remove,
        methods=["DELETE"],
        name=f"remove_{name}",
        status_code=204,
        description=docs.remove,
    )


# --- templates ------------------------------------------------------------------------------


class TemplateCreate(BaseModel):
    """A response template for one scenario (Jinja2: reviewer_name, platform, rating,
    review_text, firm_name)."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario
    name: Text = Field(min_length=1, max_length=200)
    body: Text = Field(min_length=1, max_length=10_000)
    is_active: bool = True


class TemplateUpdate(BaseModel):
    """A change of a template; fields left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario | None = None
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    body: Text | None = Field(default=None, min_length=1, max_length=10_000)
    is_active: bool | None = None


_add_routes(
    path="/templates",
    name="template",
    plural="templates",
    model=ResponseTemplate,
    create=TemplateCreate,
    update=TemplateUpdate,
    calls=_Calls(
        list_all=Reputation.list_templates,
        add=Reputation.add_template,
        get=Reputation.get_template,
        update=Reputation.update_template,
        remove=Reputation.remove_template,
    ),
    docs=_Docs(
        list_all="List the response templates.",
        add="Add a response template (admins); it is checked in the sandbox first.",
        get="Return one response template.",
        update="Change a response template (admins).",
        remove="Delete a response template (admins).",
    ),
)


# --- escalation rules -----------------------------------------------------------------------


class RuleCreate(BaseModel):
    """An escalation rule."""

    model_config = ConfigDict(extra="forbid")

    kind: EscalationKind = Field(
        description="keyword (RE2 regex), rating (flags ratings at most the pattern), staff "
        "(a name), legal (legal terms: the pattern, or the built-in list when empty)"
    )
    pattern: Text = Field(default="", max_length=500)
    route_to: RouteTo
    user_id: Id | None = Field(default=None, description="The person, for route_to=user.")
    is_active: bool = True


class RuleUpdate(BaseModel):
    """A change of a rule (a new pattern is a new rule)."""

    model_config = ConfigDict(extra="forbid")

    route_to: RouteTo | None = None
    user_id: Id | None = None
    is_active: bool | None = None


_add_routes(
    path="/escalation-rules",
    name="rule",
    plural="rules",
    model=EscalationRule,
    create=RuleCreate,
    update=RuleUpdate,
    calls=_Calls(
        list_all=Reputation.list_rules,
        add=Reputation.add_rule,
        get=Reputation.get_rule,
        update=Reputation.update_rule,
        remove=Reputation.remove_rule,
    ),
    docs=_Docs(
        list_all="List the escalation rules, in the order they are tried.",
        add="Add an escalation rule (admins); a regex RE2 cannot run is refused.",
        get="Return one escalation rule.",
        update="Change where a rule routes or whether it is active (admins).",
        remove="Delete an escalation rule (admins).",
    ),
)


# --- settings -------------------------------------------------------------------------------


class SettingsUpdate(BaseModel):
    """Who gets review cards and where; fields left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    account_manager_user_id: Id | None = None
    legal_user_id: Id | None = None
    channel_id: Text | None = Field(default=None, max_length=32)
    firm_name: Text | None = Field(default=None, max_length=200)


class SettingsOut(BaseModel):
    """The reputation settings (never the webhook secret)."""

    account_manager_user_id: int | None
    legal_user_id: int | None
    channel_id: str | None
    firm_name: str
    has_webhook_secret: bool


class SecretAnswer(BaseModel):
    """The new webhook secret: shown once, stored encrypted."""

    secret: str
    timestamp_header: str = TIMESTAMP_HEADER
    signature_header: str = SIGNATURE_HEADER


@router.get("/settings", response_model=SettingsOut)
def get_settings(who: IdentityDep, reputation: ReputationDep) -> SettingsOut:
    """Return the reputation settings (never the webhook secret)."""
    return _settings_json(reputation.settings(who.org_id))


@router.put("/settings", response_model=SettingsOut)
def put_settings(
    body: SettingsUpdate, who: IdentityDep, actor: ActorDep, reputation: ReputationDep
) -> SettingsOut:
    """Set the account manager, legal, the response cards' channel, the firm's name (admins)."""
    values = body.model_dump(exclude_unset=True)
    return _settings_json(reputation.update_settings(actor, who.org_id, **values))


@router.post("/settings/webhook-secret", status_code=201, response_model=SecretAnswer)
def rotate_secret(who: IdentityDep, actor: ActorDep, reputation: ReputationDep) -> SecretAnswer:
    """Make a new webhook secret (the previous one stops working at once)."""
    return SecretAnswer(secret=reputation.rotate_webhook_secret(actor, who.org_id))


def _settings_json(settings: ReputationSettings) -> SettingsOut:
    return SettingsOut(
        account_manager_user_id=settings.account_manager_user_id,
        legal_user_id=settings.legal_user_id,
        channel_id=settings.channel_id,
        firm_name=settings.firm_name,
        has_webhook_secret=settings.has_webhook_secret,
    )
