"""Google OAuth 2.0 stand-in: consent (authorization endpoint), token, revoke and userinfo.

It speaks what google-auth, google-auth-oauthlib and requests-oauthlib send and
read, and answers errors the way Google does:

- `GET /o/oauth2/auth` (also `/o/oauth2/v2/auth`): the consent screen. The
  "user" who consents is set by the test (`set_consenting_user`); the answer is a
  302 to `redirect_uri?state=..&code=..&scope=..`, or `?error=access_denied&state=..`
  after `deny_consent()`. Unknown clients and unregistered redirect URIs get an
  error page (401 / 400), never a redirect, as on Google.
- `POST /token`: `authorization_code` (code single-use and 10 minutes long,
  `redirect_uri` must match, PKCE `plain`/`S256` checked) and `refresh_token`.
  Client credentials are read from HTTP Basic (requests-oauthlib) or from the
  form body (google-auth). A refresh token is returned on the first offline
  consent of a user for a client, or when `prompt=consent` was asked: like Google.
  Shorthand scopes are expanded as Google does (`email` -> `openid` +
  `.../auth/userinfo.email`), which oauthlib reports as a changed scope.
- `POST /revoke?token=..` (or form body): revokes the whole grant.
- `GET /oauth2/v2/userinfo`, `/oauth2/v3/userinfo`, `/v1/userinfo`.

Access tokens are checked by the Gmail stand-in through `authenticate()`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.pubsub import GOOGLE_ISSUER, PubSubOidcSigner, b64url, numeric_subject

SCOPE_OPENID: Final = "openid"
SCOPE_USERINFO_EMAIL: Final = "https://www.googleapis.com/auth/userinfo.email"
SCOPE_USERINFO_PROFILE: Final = "https://www.googleapis.com/auth/userinfo.profile"
SCOPE_MAIL: Final = "https://mail.google.com/"
SCOPE_GMAIL_SEND: Final = "https://www.googleapis.com/auth/gmail.send"
SCOPE_GMAIL_READONLY: Final = "https://www.googleapis.com/auth/gmail.readonly"
SCOPE_GMAIL_MODIFY: Final = "https://www.googleapis.com/auth/gmail.modify"
SCOPE_GMAIL_COMPOSE: Final = "https://www.googleapis.com/auth/gmail.compose"
SCOPE_GMAIL_METADATA: Final = "https://www.googleapis.com/auth/gmail.metadata"

DEFAULT_SCOPES: Final = (SCOPE_OPENID, SCOPE_USERINFO_EMAIL, SCOPE_GMAIL_SEND, SCOPE_GMAIL_READONLY)
SANDBOX_CLIENT_ID: Final = "salesbot-sandbox.apps.googleusercontent.com"
SANDBOX_CLIENT_SECRET: Final = "GOCSPX-salesbot-sandbox-secret"

DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 3599
AUTHORIZATION_CODE_LIFETIME: Final = 600
ID_TOKEN_LIFETIME: Final = 3600

AUTH_PATHS: Final = ("/o/oauth2/auth", "/o/oauth2/v2/auth")
TOKEN_PATH: Final = "/token"
REVOKE_PATH: Final = "/revoke"
USERINFO_PATHS: Final = ("/oauth2/v2/userinfo", "/oauth2/v3/userinfo", "/v1/userinfo")

_SHORTHAND_SCOPES: Final = {
    "email": (SCOPE_OPENID, SCOPE_USERINFO_EMAIL),
    "profile": (SCOPE_OPENID, SCOPE_USERINFO_PROFILE),
}
_HTTP_STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

Clock = Callable[[], float]


def google_api_error(
    status: int,
    message: str,
    *,
    reason: str,
    domain: str = "global",
    error_message: str | None = None,
    status_name: str | None = None,
    extra_error_fields: Mapping[str, str] | None = None,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Answer the error body every Google API uses: `{"error": {code, message, errors, status}}`."""
    item: dict[str, Any] = {"message": error_message or message, "domain": domain, "reason": reason}
    item.update(extra_error_fields or {})
    error: dict[str, Any] = {"code": status, "message": message, "errors": [item]}
    error["status"] = status_name or _HTTP_STATUS_NAMES.get(status, "UNKNOWN")
    if details:
        error["details"] = [dict(d) for d in details]
    return JSONResponse(
        {"error": error},
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json; charset=UTF-8",
    )


def expand_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Expand Google's shorthand scopes (`email`, `profile`) and drop duplicates, keeping order."""
    expanded: list[str] = []
    for scope in scopes:
        for item in _SHORTHAND_SCOPES.get(scope, (scope,)):
            if item not in expanded:
                expanded.append(item)
    return tuple(expanded)


@dataclass(frozen=True)
class OAuthClient:
    """A registered OAuth client; `redirect_uris=None` accepts any redirect URI."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] | None = None


@dataclass
class Grant:
    """What one user granted one client; revoking it kills its refresh and access tokens."""

    id: int
    email: str
    client_id: str
    scopes: tuple[str, ...]
    refresh_tokens: list[str] = field(default_factory=list)
    revoked: bool = False


@dataclass(frozen=True)
class AccessToken:
    """An access token the token endpoint issued."""

    token: str
    email: str
    client_id: str
    scopes: tuple[str, ...]
    grant_id: int
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint answered for one grant exchange."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None
    id_token: str | None


@dataclass(frozen=True)
class TokenRequest:
    """One call of the token endpoint, for assertions (`error` is None on success)."""

    grant_type: str
    client_id: str | None
    email: str | None
    error: str | None


@dataclass(frozen=True)
class _Consent:
    email: str | None
    granted_scopes: tuple[str, ...] | None
    error: str | None


@dataclass
class _AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    email: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    code_challenge_method: str
    offline: bool
    force_consent: bool
    expires_at: float
    used: bool = False


class _TokenError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


class GoogleOAuthStandIn:
    """In-memory Google OAuth 2.0 server: clients, consent, grants and tokens (thread-safe)."""

    def __init__(
        self, *, id_token_signer: PubSubOidcSigner | None = None, clock: Clock = time.time
    ) -> None:
        self._signer = id_token_signer
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every grant and token; keep only the sandbox client; nobody consents yet."""
        with self._lock:
            self._clients: dict[str, OAuthClient] = {
                SANDBOX_CLIENT_ID: OAuthClient(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)
            }
            self._consent = _Consent(email=None, granted_scopes=None, error=None)
            self._access_token_lifetime = DEFAULT_ACCESS_TOKEN_LIFETIME
            self._codes: dict[str, _AuthorizationCode] = {}
            self._grants: dict[int, Grant] = {}
            self._refresh_tokens: dict[str, int] = {}
            self._access_tokens: dict[str, AccessToken] = {}
            self._token_requests: list[TokenRequest] = []

    # -- configuration -------------------------------------------------------

    def add_client(
        self, client_id: str, client_secret: str, *, redirect_uris: Sequence[str] | None = None
    ) -> OAuthClient:
        """Register an OAuth client; with `redirect_uris`, only those are accepted."""
        client = OAuthClient(
            client_id, client_secret, tuple(redirect_uris) if redirect_uris is not None else None
        )
        with self._lock:
            self._clients[client_id] = client
        return client

    def set_consenting_user(
        self, email: str, *, granted_scopes: Sequence[str] | None = None
    ) -> None:
        """Make `email` the user who clicks "Allow"; `granted_scopes` limits what they tick."""
        granted = expand_scopes(granted_scopes) if granted_scopes is not None else None
        with self._lock:
            self._consent = _Consent(email=email.lower(), granted_scopes=granted, error=None)

    def deny_consent(self, *, error: str = "access_denied") -> None:
        """Make the consent screen answer `error` (the user clicked "Cancel") until reset."""
        with self._lock:
            self._consent = replace(self._consent, error=error)

    def set_access_token_lifetime(self, seconds: int) -> None:
        """Give access tokens issued from now on this lifetime (`expires_in`)."""
        with self._lock:
            self._access_token_lifetime = seconds

    # -- test helpers ----------------------------------------------------------

    def issue_grant(
        self,
        email: str,
        *,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        client_id: str = SANDBOX_CLIENT_ID,
    ) -> TokenSet:
        """Create a grant as if `email` had consented offline, and return its first tokens."""
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown OAuth client {client_id!r}")
            grant = self._grant_for(email.lower(), client_id, expand_scopes(scopes))
            refresh_token = self._new_refresh_token(grant)
            return self._token_set(grant, refresh_token=refresh_token)

    def revoke_grant(self, email: str) -> int:
        """Revoke every grant `email` gave (as from Google account settings); return how many."""
        with self._lock:
            live = [g for g in self._grants.values() if g.email == email.lower() and not g.revoked]
            for grant in live:
                grant.revoked = True
            return len(live)

    def expire_access_tokens(self, email: str | None = None) -> int:
        """Make the access tokens issued so far (for `email`, or all) expired; return how many."""
        now = self._clock()
        with self._lock:
            expired = 0
            for token, record in list(self._access_tokens.items()):
                if (email is None or record.email == email.lower()) and record.expires_at > now:
                    self._access_tokens[token] = replace(record, expires_at=now - 1)
                    expired += 1
            return expired

    def issued_access_tokens(self, email: str | None = None) -> list[AccessToken]:
        """Return the access tokens issued so far (for `email`, or all), oldest first."""
        with self._lock:
            return [
                t for t in self._access_tokens.values() if email is None or t.email == email.lower()
            ]

    def grants(self, email: str | None = None) -> list[Grant]:
        """Return copies of the grants (for `email`, or all)."""
        with self._lock:
            return [
                replace(g, refresh_tokens=list(g.refresh_tokens))
                for g in self._grants.values()
                if email is None or g.email == email.lower()
            ]

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every call of the token endpoint so far."""
        with self._lock:
            return list(self._token_requests)

    def authenticate(self, token: str) -> AccessToken | None:
        """Return the live access token `token`, or None if unknown, expired or revoked."""
        with self._lock:
            record = self._access_tokens.get(token)
            if record is None or record.expires_at <= self._clock():
                return None
            if self._grants[record.grant_id].revoked:
                return None
            return record

    # -- HTTP ----------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Return the routes of the authorization, token, revoke and userinfo endpoints."""
        routes = [Route(path, self._authorize, methods=["GET"]) for path in AUTH_PATHS]
        routes.append(Route(TOKEN_PATH, self._token, methods=["POST"]))
        routes.append(Route(REVOKE_PATH, self._revoke, methods=["GET", "POST"]))
        routes.extend(Route(path, self._userinfo, methods=["GET"]) for path in USERINFO_PATHS)
        return routes

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        with self._lock:
            client = self._clients.get(client_id)
            consent = self._consent
            if client is None:
                return _error_page(401, "invalid_client", "The OAuth client was not found.")
            if not redirect_uri or (
                client.redirect_uris is not None and redirect_uri not in client.redirect_uris
            ):
                return _error_page(
                    400,
                    "redirect_uri_mismatch",
                    f"redirect_uri {redirect_uri!r} is not registered for this client.",
                )
            state = params.get("state")
            if params.get("response_type") != "code":
                return _redirect(redirect_uri, error="unsupported_response_type", state=state)
            scope = params.get("scope", "").split()
            if not scope:
                return _error_page(400, "invalid_request", "Missing required parameter: scope")
            method = params.get("code_challenge_method", "plain")
            challenge = params.get("code_challenge")
            if challenge is not None and method not in ("plain", "S256"):
                return _error_page(
                    400, "invalid_request", f"Invalid code_challenge_method: {method}"
                )
            if consent.error is not None:
                return _redirect(redirect_uri, error=consent.error, state=state)
            if consent.email is None:
                return _error_page(
                    400,
                    "invalid_request",
                    "The stand-in has no consenting user: call set_consenting_user(email).",
                )
            requested = expand_scopes(scope)
            prompts = params.get("prompt", "").split()
            if "none" in prompts and not self._has_live_grant(consent.email, client_id, requested):
                return _redirect(redirect_uri, error="consent_required", state=state)
            granted = tuple(
                s
                for s in requested
                if consent.granted_scopes is None
                or s in consent.granted_scopes
                or s == SCOPE_OPENID
            )
            code = "4/0A" + secrets.token_urlsafe(48)
            self._codes[code] = _AuthorizationCode(
                code=code,
                client_id=client_id,
                redirect_uri=redirect_uri,
                email=consent.email,
                scopes=granted,
                code_challenge=challenge,
                code_challenge_method=method,
                offline=params.get("access_type") == "offline",
                force_consent="consent" in prompts,
                expires_at=self._clock() + AUTHORIZATION_CODE_LIFETIME,
            )
        return _redirect(
            redirect_uri,
            state=state,
            code=code,
            scope=" ".join(granted),
            authuser="0",
            prompt="consent",
        )

    async def _token(self, request: Request) -> Response:
        form = _parse_form(await request.body(), request.headers.get("content-type", ""))
        grant_type = form.get("grant_type", "")
        client_id, client_secret = _client_credentials(request, form)
        with self._lock:
            try:
                client = self._authenticate_client(client_id, client_secret)
                if grant_type == "authorization_code":
                    grant, result = self._exchange_code(client, form)
                elif grant_type == "refresh_token":
                    grant, result = self._refresh(client, form)
                else:
                    raise _TokenError(
                        400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}"
                    )
            except _TokenError as exc:
                self._token_requests.append(TokenRequest(grant_type, client_id, None, exc.error))
                return JSONResponse(
                    {"error": exc.error, "error_description": exc.description},
                    status_code=exc.status,
                )
            self._token_requests.append(TokenRequest(grant_type, client_id, grant.email, None))
        body: dict[str, Any] = {
            "access_token": result.access_token,
            "expires_in": result.expires_in,
            "scope": result.scope,
            "token_type": "Bearer",
        }
        if result.refresh_token is not None:
            body["refresh_token"] = result.refresh_token
        if result.id_token is not None:
            body["id_token"] = result.id_token
        return JSONResponse(body, headers={"Cache-Control": "no-cache, no-store, max-age=0"})

    async def _revoke(self, request: Request) -> Response:
        form = _parse_form(await request.body(), request.headers.get("content-type", ""))
        token = request.query_params.get("token") or form.get("token", "")
        with self._lock:
            grant_id = self._refresh_tokens.get(token)
            if grant_id is None and token in self._access_tokens:
                record = self._access_tokens[token]
                grant_id = record.grant_id if record.expires_at > self._clock() else None
            grant = self._grants.get(grant_id) if grant_id is not None else None
            if grant is None or grant.revoked:
                return JSONResponse(
                    {"error": "invalid_token", "error_description": "Token expired or revoked"},
                    status_code=400,
                )
            grant.revoked = True
        return JSONResponse({})

    async def _userinfo(self, request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization")) or request.query_params.get(
            "access_token", ""
        )
        record = self.authenticate(token)
        if record is None:
            return google_api_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                reason="authError",
                error_message="Invalid Credentials",
                extra_error_fields={"location": "Authorization", "locationType": "header"},
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        subject = numeric_subject(record.email)
        sees_email = SCOPE_USERINFO_EMAIL in record.scopes
        if request.url.path == "/oauth2/v2/userinfo":
            body: dict[str, Any] = {"id": subject}
            if sees_email:
                body.update(email=record.email, verified_email=True)
        else:
            body = {"sub": subject}
            if sees_email:
                body.update(email=record.email, email_verified=True)
        return JSONResponse(body)

    # -- internals (called with the lock held) ----------------------------------

    def _authenticate_client(self, client_id: str | None, client_secret: str | None) -> OAuthClient:
        if not client_id:
            raise _TokenError(400, "invalid_request", "Could not determine client ID from request.")
        client = self._clients.get(client_id)
        if client is None:
            raise _TokenError(401, "invalid_client", "The OAuth client was not found.")
        if client_secret != client.client_secret:
            raise _TokenError(401, "invalid_client", "Unauthorized")
        return client

    def _exchange_code(
        self, client: OAuthClient, form: Mapping[str, str]
    ) -> tuple[Grant, TokenSet]:
        code = form.get("code")
        if not code:
            raise _TokenError(400, "invalid_request", "Missing required parameter: code")
        entry = self._codes.get(code)
        if (
            entry is None
            or entry.used
            or entry.expires_at <= self._clock()
            or entry.client_id != client.client_id
        ):
            raise _TokenError(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri") != entry.redirect_uri:
            raise _TokenError(400, "redirect_uri_mismatch", "Bad Request")
        verifier = form.get("code_verifier")
        if entry.code_challenge is None:
            if verifier is not None:
                raise _TokenError(
                    400, "invalid_request", "code_verifier or verifier is not needed."
                )
        elif verifier is None:
            raise _TokenError(400, "invalid_grant", "Missing code verifier.")
        elif _code_challenge(verifier, entry.code_challenge_method) != entry.code_challenge:
            raise _TokenError(400, "invalid_grant", "Invalid code verifier.")
        entry.used = True
        existing = self._live_grant(entry.email, client.client_id)
        had_refresh_token = existing is not None and bool(existing.refresh_tokens)
        grant = self._grant_for(entry.email, client.client_id, entry.scopes)
        refresh_token = None
        if entry.offline and (entry.force_consent or not had_refresh_token):
            refresh_token = self._new_refresh_token(grant)
        return grant, self._token_set(grant, refresh_token=refresh_token, scopes=entry.scopes)

    def _refresh(self, client: OAuthClient, form: Mapping[str, str]) -> tuple[Grant, TokenSet]:
        token = form.get("refresh_token")
        if not token:
            raise _TokenError(400, "invalid_request", "Missing required parameter: refresh_token")
        grant_id = self._refresh_tokens.get(token)
        grant = self._grants.get(grant_id) if grant_id is not None else None
        if grant is None or grant.revoked:
            raise _TokenError(400, "invalid_grant", "Token has been expired or revoked.")
        if grant.client_id != client.client_id:
            raise _TokenError(401, "unauthorized_client", "Unauthorized")
        scopes = grant.scopes
        if form.get("scope"):
            asked = expand_scopes(form["scope"].split())
            if not set(asked) <= set(grant.scopes):
                raise _TokenError(
                    400,
                    "invalid_scope",
                    "Some requested scopes were invalid. {valid=[" + ", ".join(grant.scopes) + "]}",
                )
            scopes = asked
        return grant, self._token_set(grant, refresh_token=None, scopes=scopes)

    def _live_grant(self, email: str, client_id: str) -> Grant | None:
        for grant in self._grants.values():
            if grant.email == email and grant.client_id == client_id and not grant.revoked:
                return grant
        return None

    def _has_live_grant(self, email: str, client_id: str, scopes: Sequence[str]) -> bool:
        grant = self._live_grant(email, client_id)
        return grant is not None and set(scopes) <= set(grant.scopes)

    def _grant_for(self, email: str, client_id: str, scopes: Sequence[str]) -> Grant:
        grant = self._live_grant(email, client_id)
        if grant is None:
            grant = Grant(id=len(self._grants) + 1, email=email, client_id=client_id, scopes=())
            self._grants[grant.id] = grant
        grant.scopes = expand_scopes([*grant.scopes, *scopes])
        return grant

    def _new_refresh_token(self, grant: Grant) -> str:
        token = "1//0g" + secrets.token_urlsafe(64)
        grant.refresh_tokens.append(token)
        self._refresh_tokens[token] = grant.id
        return token

    def _token_set(
        self, grant: Grant, *, refresh_token: str | None, scopes: Sequence[str] | None = None
    ) -> TokenSet:
        now = self._clock()
        scopes = tuple(scopes if scopes is not None else grant.scopes)
        token = "ya29.a0" + secrets.token_urlsafe(96)
        self._access_tokens[token] = AccessToken(
            token=token,
            email=grant.email,
            client_id=grant.client_id,
            scopes=scopes,
            grant_id=grant.id,
            issued_at=now,
            expires_at=now + self._access_token_lifetime,
        )
        return TokenSet(
            access_token=token,
            expires_in=self._access_token_lifetime,
            scope=" ".join(scopes),
            refresh_token=refresh_token,
            id_token=self._id_token(grant, token, scopes, now),
        )

    def _id_token(
        self, grant: Grant, access_token: str, scopes: Sequence[str], now: float
    ) -> str | None:
        if self._signer is None or SCOPE_OPENID not in scopes:
            return None
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        claims: dict[str, Any] = {
            "iss": GOOGLE_ISSUER,
            "azp": grant.client_id,
            "aud": grant.client_id,
            "sub": numeric_subject(grant.email),
            "at_hash": b64url(digest[:16]),
            "iat": int(now),
            "exp": int(now) + ID_TOKEN_LIFETIME,
        }
        if SCOPE_USERINFO_EMAIL in scopes:
            claims.update(email=grant.email, email_verified=True)
        return self._signer.sign_claims(claims)


def _code_challenge(verifier: str, method: str) -> str:
    if method == "S256":
        return b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return verifier


def _parse_form(body: bytes, content_type: str) -> dict[str, str]:
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str | None, str | None]:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, _, client_secret = decoded.partition(":")
        return client_id, client_secret
    return form.get("client_id"), form.get("client_secret")


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header, or None."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _redirect(redirect_uri: str, **params: str | None) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True)]
    query.extend((k, v) for k, v in params.items() if v is not None)
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


def _error_page(status: int, error: str, detail: str) -> PlainTextResponse:
    return PlainTextResponse(
        f"Access blocked: authorization error\n\nError {status}: {error}\n{detail}\n",
        status_code=status,
    )
