"""Gmail routes: connect (OAuth consent), callback, status, disconnect, and sending one email.

A consent always starts in the browser that will finish it: the signed link Slack's App
Home shows (`/api/integrations/gmail/connect?u=<token>`) sets an HttpOnly, SameSite=Lax
cookie holding a secret whose hash is in the OAuth state, and redirects to Google; the
callback refuses a state whose cookie is missing or different. An API client with a token
tied to a user gets such a link (valid ten minutes) as `authorization_url`, to open in the
user's browser. The callback answers a small HTML page, since a browser lands on it.

`PUT /api/integrations/gmail/allowed-address` (admins only) lets a user connect one Gmail
address other than their own; who allowed it and when are stored beside it.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import InvalidInput, NotFound, NotPermitted
from domain.fields import Id, Text
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.mailboxes import (
    STATE_TTL,
    ConsentRefused,
    MailboxAllowance,
    MailboxAllowances,
    Mailboxes,
)
from domain.outbox import Outbox
from handlers.api.deps import IdentityDep, ServicesDep, SuppressionDep, get_identity
from handlers.api.errors import error_body
from integrations.crypto import LinkSigner
from integrations.gmail.client import GoogleConfig
from jobs.outbox import OutboxWorker
from storage.accounts import TokenIdentity

CONNECT_PATH: Final = "/api/integrations/gmail/connect"
CALLBACK_PATH: Final = "/api/integrations/gmail/callback"
# The link is a capability: short-lived; the App Home renders a fresh one every time.
CONNECT_LINK_TTL_SECONDS: Final = 3600
# What an API client gets to open in the user's browser: as long as the consent itself.
API_CONNECT_LINK_TTL_SECONDS: Final = int(STATE_TTL.total_seconds())
# The browser's half of a consent in progress; scoped to the connect and callback routes.
CONSENT_COOKIE: Final = "salesbot_gmail_consent"
CONSENT_COOKIE_PATH: Final = "/api/integrations/gmail"


@dataclass
class GmailIntegration:
    """Gmail as the routes use it, built by the composition root (bot/gmail.py): the
    mailbox use cases, the mailer and its outbox worker, the signer of connect links."""

    config: GoogleConfig
    mailboxes: Mailboxes
    mailer: Outbox
    outbox: OutboxWorker
    connect_signer: LinkSigner
    public_base_url: str

    def gmail_connect_link(
        self, user_id: int, org_id: int, *, expires_in: int = CONNECT_LINK_TTL_SECONDS
    ) -> str:
        """Return the signed link (valid an hour) that starts a user's Gmail consent."""
        token = self.connect_signer.sign({"u": user_id, "o": org_id}, expires_in=expires_in)
        return f"{self.public_base_url}{CONNECT_PATH}?u={token}"

    def connected_address(self, org_id: int, user_id: int) -> str | None:
        """Return the address of the user's connected mailbox, or None."""
        return self.mailboxes.connected_address(org_id, user_id)


# --- dependencies ---------------------------------------------------------------------------


def get_gmail(request: Request) -> GmailIntegration:
    """Return the app's Gmail integration; 503 when Gmail is not configured."""
    runtime = getattr(request.app.state, "runtime", None)
    gmail = getattr(runtime, "gmail", None)
    if not isinstance(gmail, GmailIntegration):
        raise StarletteHTTPException(
            503,
            detail="Gmail is not configured on this server: set GOOGLE_CLIENT_ID and"
            " GOOGLE_CLIENT_SECRET.",
        )
    return gmail


GmailDep = Annotated[GmailIntegration, Depends(get_gmail)]


def get_mailbox_allowances(request: Request) -> MailboxAllowances:
    """Return the use case of allowing addresses (it works without Gmail configured)."""
    allowances: MailboxAllowances = request.app.state.runtime.mailbox_allowances
    return allowances


MailboxAllowancesDep = Annotated[MailboxAllowances, Depends(get_mailbox_allowances)]


def _user_of(identity: TokenIdentity) -> int:
    if identity.user_id is None:
        raise NotPermitted(
            "This API token is not tied to a user; Gmail belongs to a rep, so use a token"
            " created for that rep."
        )
    return identity.user_id


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _page(title: str, message: str, *, status: int) -> HTMLResponse:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family:sans-serif;max-width:36em;margin:4em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


# --- routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/api/integrations/gmail", tags=["gmail"])


# A link or a consent answer that is not valid is answered with a page that says so.
_INVALID_PAGE: dict[int | str, dict[str, Any]] = {
    400: {"description": "The link or Google's answer is not valid.", "content": {"text/html": {}}}
}
_CONNECT_ANSWERS: dict[int | str, dict[str, Any]] = {
    **_INVALID_PAGE,
    302: {"description": "A signed link (`u`): the redirect to Google's consent page."},
    401: {"description": "No `u` and no valid API token."},
    403: {"description": "The API token is not tied to a user."},
}


@router.get("/connect", response_model=None, responses=_CONNECT_ANSWERS)
def connect(
    request: Request, services: ServicesDep, gmail: GmailDep, u: str | None = None
) -> Response:
    """Start the Gmail consent: a redirect for Slack's signed link, a link for an API token."""
    if u is not None:
        try:
            claims = gmail.connect_signer.verify(u)
            org_id, user_id = int(claims["o"]), int(claims["u"])
        except (InvalidInput, KeyError, TypeError, ValueError):
            return _page(
                "Link not valid",
                "This Gmail connection link is not valid or has expired. Open Salesbot's App"
                " Home in Slack for a fresh one.",
                status=400,
            )
        started = gmail.mailboxes.start_consent(org_id, user_id)
        redirect = RedirectResponse(
            started.url, status_code=302, headers={"Cache-Control": "no-store"}
        )
        # Lax: the cookie comes back on Google's top-level redirect to the callback, and
        # never on a request another site makes.
        redirect.set_cookie(
            CONSENT_COOKIE,
            started.browser_secret,
            max_age=int(STATE_TTL.total_seconds()),
            path=CONSENT_COOKIE_PATH,
            secure=gmail.public_base_url.startswith("https://"),
            httponly=True,
            samesite="lax",
        )
        return redirect
    identity = get_identity(request, services)
    user_id = _user_of(identity)
    link = gmail.gmail_connect_link(
        user_id, identity.org_id, expires_in=API_CONNECT_LINK_TTL_SECONDS
    )
    return JSONResponse(
        {"authorization_url": link, "expires_in": API_CONNECT_LINK_TTL_SECONDS},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/callback", response_class=HTMLResponse, responses=_INVALID_PAGE)
def callback(
    request: Request,
    gmail: GmailDep,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    """Finish the consent Google redirected back from; a bad or replayed state is refused,
    and so is one that comes back to another browser than the one that started it."""
    # The cookie is left to expire (ten minutes): it matches only the state it was made
    # with, which is used once, and a reload of this page then says "already used".
    try:
        connected = gmail.mailboxes.complete(
            state=state,
            code=code,
            error=error,
            browser_secret=request.cookies.get(CONSENT_COOKIE),
        )
    except ConsentRefused as exc:
        return _page("Gmail not connected", exc.message, status=400)
    return _page(
        "Gmail connected",
        f"Salesbot can now send from and read {connected.email}. You can close this tab and"
        " go back to Slack.",
        status=200,
    )


class AllowAddressRequest(BaseModel):
    """Let a user connect one Gmail address other than their own; null takes it back."""

    user_email: str = Field(min_length=3, max_length=320)
    address: str | None = Field(default=None, max_length=320)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from email_validator import EmailNotValidError, validate_email

        try:
            return validate_email(value.strip(), check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None


def _allowance_body(allowance: MailboxAllowance, user_email: str) -> dict[str, Any]:
    return {
        "user_email": user_email,
        "address": allowance.allowed,
        "allowed_by": allowance.allowed_by,
        "allowed_at": _jsonable(allowance.allowed_at),
    }


@router.put("/allowed-address")
def allow_address(
    body: AllowAddressRequest, who: IdentityDep, allowances: MailboxAllowancesDep
) -> dict[str, Any]:
    """Let a user connect the Gmail mailbox of another address (admins only; recorded)."""
    allowance = allowances.allow_address(
        who.org_id, admin_id=_user_of(who), user_email=body.user_email, address=body.address
    )
    return _allowance_body(allowance, body.user_email)


@router.get("/status")
def status(who: IdentityDep, gmail: GmailDep) -> dict[str, Any]:
    """Say whether the caller's Gmail is connected, its address, scopes and throttles."""
    found = gmail.mailboxes.status(who.org_id, _user_of(who))
    return {str(k): _jsonable(v) for k, v in asdict(found).items()}


@router.post("/disconnect")
def disconnect(who: IdentityDep, gmail: GmailDep) -> dict[str, Any]:
    """Revoke the caller's Gmail grant at Google and delete the stored tokens."""
    result = gmail.mailboxes.disconnect(who.org_id, _user_of(who))
    return {"disconnected": True, "email": result.email, "revoked": result.revoked}


email_router = APIRouter(prefix="/api/email", tags=["email"])


class SendEmailRequest(BaseModel):
    """One email to send from the caller's connected Gmail."""

    to: str = Field(min_length=3, max_length=320)
    to_name: Text | None = Field(default=None, max_length=300)
    subject: Text = Field(min_length=1, max_length=998)
    body_text: Text = Field(min_length=1, max_length=200_000)
    body_html: Text | None = Field(default=None, max_length=500_000)
    contact_id: Id | None = None
    thread_id: Text | None = Field(default=None, max_length=64)
    in_reply_to: Text | None = Field(default=None, max_length=998)
    references: list[Annotated[Text, Field(max_length=998)]] = Field(
        default_factory=list, max_length=50
    )
    campaign_email: bool = Field(
        default=True, description="Carry List-Unsubscribe and an unsubscribe footer."
    )

    @field_validator("to")
    @classmethod
    def _address(cls, value: str) -> str:
        from email_validator import EmailNotValidError, validate_email

        try:
            return validate_email(value.strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("the subject must be one line")
        return value.strip()


def _outcome_body(outcome: SendOutcome) -> dict[str, Any]:
    return {str(k): _jsonable(v) for k, v in asdict(outcome).items()}


@email_router.post("/send", response_model=None)
def send_email(
    body: SendEmailRequest, who: IdentityDep, suppression: SuppressionDep, gmail: GmailDep
) -> JSONResponse:
    """Send one email on behalf of the caller: 200 sent, 202 queued (with when and why)."""
    user_id = _user_of(who)
    if body.contact_id is not None:
        contact = suppression.contact(who.org_id, body.contact_id)
        if contact is None:
            raise NotFound(f"contact {body.contact_id} not found")
        if contact.email.lower() != body.to.lower():
            raise InvalidInput(
                f"contact {body.contact_id} is {contact.email}, not {body.to}", field="to"
            )
    outcome = gmail.mailer.send(
        OutgoingEmail(
            org_id=who.org_id,
            to_email=body.to,
            to_name=body.to_name,
            subject=body.subject,
            body_text=body.body_text,
            body_html=body.body_html,
            sender_user_id=user_id,
            contact_id=body.contact_id,
            thread_id=body.thread_id,
            in_reply_to=body.in_reply_to,
            references=tuple(body.references),
            campaign_email=body.campaign_email,
        )
    )
    if outcome.status == SendStatus.FAILED:
        failure = error_body("send_failed", outcome.detail or "the email was not sent")
        failure["outcome"] = _outcome_body(outcome)
        return JSONResponse(failure, status_code=422)
    code = 200 if outcome.status == SendStatus.SENT else 202
    return JSONResponse(_outcome_body(outcome), status_code=code)
