"""Verify the OIDC token Pub/Sub puts on every Gmail push, with Google's certificates cached.

Pub/Sub signs each push with a Google OIDC token (`Authorization: Bearer <jwt>`). It is
checked with google-auth's `id_token.verify_token` against the certificates at
`GOOGLE_CERTS_URL` (not `verify_oauth2_token`, which hard-codes Google's URL and so cannot
serve the stand-in), then for issuer, the push service account's email, and
`email_verified`. Certificates are cached for as long as the certs URL's `Cache-Control`
allows, so a push does not fetch them; a token naming an unknown key id refetches them
at most once a minute (Google rotates keys with overlap, forgers must not cause a storm).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.auth.transport.requests import Request as RequestsTransport
from google.oauth2 import id_token

from domain.errors import ExternalServiceError, SalesbotError

log = logging.getLogger(__name__)

GOOGLE_ISSUERS: Final = frozenset({"accounts.google.com", "https://accounts.google.com"})
# Tokens are minted just before the push; a few seconds of skew between clocks is normal.
CLOCK_SKEW_SECONDS: Final = 10
_DEFAULT_CACHE_SECONDS: Final = 300.0
_MAX_CACHE_SECONDS: Final = 86_400.0
_REFETCH_INTERVAL_SECONDS: Final = 60.0
_FETCH_TIMEOUT_SECONDS: Final = 10.0
_MAX_AGE = re.compile(r"max-age=(\d+)")


class PushAuthError(SalesbotError):
    """A push request whose token is missing or not acceptable; `status` is 401 or 403."""

    code = "unauthorized"

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status
        self.code = "unauthorized" if status == 401 else "forbidden"


@dataclass(frozen=True)
class PushClaims:
    """The checked claims of a push token."""

    email: str
    audience: str
    issuer: str
    subject: str | None


class _CachedResponse(transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = dict(headers)
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


@dataclass
class _Entry:
    response: _CachedResponse
    fetched_at: float
    expires_at: float


class CachingRequest(transport.Request):
    """A google-auth transport that caches successful GETs for their `max-age`."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = RequestsTransport(session or requests.Session())
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}
        self.fetches = 0

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        if method != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout)
        now = self._clock()
        with self._lock:
            entry = self._cache.get(url)
            if entry is not None and entry.expires_at > now:
                return entry.response
        response = self._inner(
            url, method="GET", headers=headers, timeout=timeout or _FETCH_TIMEOUT_SECONDS
        )
        with self._lock:
            self.fetches += 1
        if response.status != 200:
            return response
        cached = _CachedResponse(response.status, response.headers, response.data)
        ttl = _cache_seconds(response.headers.get("Cache-Control", ""))
        with self._lock:
            self._cache[url] = _Entry(cached, fetched_at=now, expires_at=now + ttl)
        return cached

    def age(self, url: str) -> float | None:
        """Return how many seconds ago `url` was fetched, or None if it is not cached."""
        with self._lock:
            entry = self._cache.get(url)
        return None if entry is None else self._clock() - entry.fetched_at

    def forget(self, url: str) -> None:
        """Drop the cached answer of `url`."""
        with self._lock:
            self._cache.pop(url, None)


def _cache_seconds(cache_control: str) -> float:
    match = _MAX_AGE.search(cache_control)
    if match is None or "no-store" in cache_control or "no-cache" in cache_control:
        return _DEFAULT_CACHE_SECONDS
    return min(float(match.group(1)), _MAX_CACHE_SECONDS)


def bearer_token(authorization: str | None) -> str:
    """Return the token of an `Authorization: Bearer` header, or raise PushAuthError."""
    if not authorization:
        raise PushAuthError("missing Authorization header: a push must carry a Bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise PushAuthError("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


class PushVerifier:
    """Checks push tokens: signature by Google's keys, audience, issuer, service account."""

    def __init__(
        self,
        *,
        audience: str,
        service_account: str,
        certs_url: str,
        request: CachingRequest | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not audience or not service_account:
            raise ValueError("PUBSUB_AUDIENCE and PUBSUB_SERVICE_ACCOUNT are both required")
        self._audience = audience
        self._service_account = service_account.lower()
        self._certs_url = certs_url
        self._request = request or CachingRequest(clock=clock)
        self._clock = clock
        self._refetch_lock = threading.Lock()

    @property
    def certificate_fetches(self) -> int:
        """How many times the certificates were fetched (not answered from the cache)."""
        return self._request.fetches

    def verify(self, authorization: str | None) -> PushClaims:
        """Return the claims of a push's Bearer token, or raise PushAuthError with the reason."""
        token = bearer_token(authorization)
        claims = self._verified_claims(token)
        issuer = str(claims.get("iss", ""))
        if issuer not in GOOGLE_ISSUERS:
            raise PushAuthError("push token was not issued by Google", status=403)
        email = str(claims.get("email") or "")
        if email.lower() != self._service_account:
            raise PushAuthError(
                "push token is for another service account than PUBSUB_SERVICE_ACCOUNT",
                status=403,
            )
        if claims.get("email_verified") is not True:
            raise PushAuthError("push token's email is not verified", status=403)
        subject = claims.get("sub")
        return PushClaims(
            email=email,
            audience=self._audience,
            issuer=issuer,
            subject=str(subject) if subject is not None else None,
        )

    def _verified_claims(self, token: str) -> Mapping[str, Any]:
        try:
            return self._verify_once(token)
        except auth_exceptions.MalformedError as exc:
            if not _unknown_key(exc) or not self._may_refetch():
                raise _refusal(exc) from None
        # A key we do not know: Google may have rotated; fetch the certificates again.
        try:
            return self._verify_once(token)
        except (auth_exceptions.MalformedError, auth_exceptions.InvalidValue) as exc:
            raise _refusal(exc) from None

    def _verify_once(self, token: str) -> Mapping[str, Any]:
        try:
            claims: Mapping[str, Any] = id_token.verify_token(
                token,
                self._request,
                audience=self._audience,
                certs_url=self._certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        except auth_exceptions.TransportError as exc:
            raise ExternalServiceError(
                f"could not fetch Google's certificates to check a push: {exc}", retryable=True
            ) from None
        except auth_exceptions.InvalidValue as exc:
            raise _refusal(exc) from None
        except auth_exceptions.MalformedError:
            raise
        except ValueError as exc:  # google-auth raises plain ValueError for some bad input
            raise PushAuthError(f"push token is malformed ({type(exc).__name__})") from None
        return claims

    def _may_refetch(self) -> bool:
        with self._refetch_lock:
            age = self._request.age(self._certs_url)
            if age is not None and age < _REFETCH_INTERVAL_SECONDS:
                return False
            self._request.forget(self._certs_url)
            return True


def _unknown_key(exc: Exception) -> bool:
    return "Certificate for key id" in str(exc)


def _refusal(exc: Exception) -> PushAuthError:
    """Turn google-auth's verdict into a reason that names the problem, never the token."""
    message = str(exc)
    if "wrong audience" in message:
        return PushAuthError("push token is for another audience than PUBSUB_AUDIENCE", status=403)
    if "Token expired" in message:
        return PushAuthError("push token has expired")
    if "used too early" in message:
        return PushAuthError("push token is not valid yet")
    if _unknown_key(exc):
        return PushAuthError("push token is signed by a key Google does not publish")
    if "signature" in message:
        return PushAuthError("push token signature does not verify")
    return PushAuthError("push token is malformed")
