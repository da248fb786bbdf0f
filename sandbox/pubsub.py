"""Google's OIDC token signer as Pub/Sub push uses it, with the certs URL that verifies it.

Pub/Sub puts a Google-signed OIDC token in the `Authorization: Bearer` header of
every push request. `PubSubOidcSigner` signs the same kind of token (RS256, a
`kid` in the header) with its own RSA key, and serves the public certificates in
the format `google.oauth2.id_token.verify_token(token, request, audience=...,
certs_url=...)` reads: a JSON object `{kid: PEM X.509 certificate}`, exactly like
https://www.googleapis.com/oauth2/v1/certs. (The JWKS form at `/oauth2/v3/certs`
is not served: google-auth needs PyJWT for it, which Salesbot does not install.)

Tests forge tokens by signing with a second signer, whose key the certs URL of
the first does not know.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

GOOGLE_ISSUER: Final = "https://accounts.google.com"
CERTS_PATH: Final = "/oauth2/v1/certs"
DEFAULT_PUSH_SERVICE_ACCOUNT: Final = "gmail-push@salesbot-sandbox.iam.gserviceaccount.com"
DEFAULT_SUBSCRIPTION: Final = "projects/salesbot-sandbox/subscriptions/gmail-push"

_KEY_BITS: Final = 2048
_CERT_LIFETIME: Final = timedelta(days=14)


def b64url(data: bytes) -> str:
    """Encode bytes as unpadded base64url, as JWTs do."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def numeric_subject(email: str) -> str:
    """Return a stable 21-digit subject id for an account, shaped like Google's `sub`."""
    digest = hashlib.sha256(email.lower().encode("utf-8")).digest()
    return "1" + str(int.from_bytes(digest[:9], "big")).zfill(20)[-20:]


@dataclass(frozen=True)
class _SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    certificate_pem: str


def _new_signing_key(now: datetime) -> _SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    public_der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = hashlib.sha1(public_der).hexdigest()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return _SigningKey(kid=kid, private_key=private_key, certificate_pem=pem)


class PubSubOidcSigner:
    """Sign Google OIDC tokens (Pub/Sub push, OAuth id_token) and serve their certificates."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        key = _new_signing_key(datetime.fromtimestamp(clock(), UTC))
        self._keys: list[_SigningKey] = [key]

    @property
    def kid(self) -> str:
        """The key id of the key that signs now."""
        with self._lock:
            return self._keys[-1].kid

    def certs(self) -> dict[str, str]:
        """Return `{kid: PEM certificate}` for every published key, as the certs URL serves it."""
        with self._lock:
            return {key.kid: key.certificate_pem for key in self._keys}

    def rotate_key(self, *, keep_previous: bool = True) -> str:
        """Sign with a new key from now on; keep publishing the old one unless told not to."""
        key = _new_signing_key(datetime.fromtimestamp(self._clock(), UTC))
        with self._lock:
            self._keys = [*self._keys, key] if keep_previous else [key]
        return key.kid

    def forget_previous_keys(self) -> None:
        """Stop publishing every key but the one that signs now."""
        with self._lock:
            self._keys = self._keys[-1:]

    def sign_claims(self, claims: Mapping[str, Any], *, kid: str | None = None) -> str:
        """Sign `claims` as an RS256 JWT; `kid` overrides the key id written in the header."""
        with self._lock:
            key = self._keys[-1]
        header = {"alg": "RS256", "kid": kid if kid is not None else key.kid, "typ": "JWT"}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))
            + "."
            + b64url(json.dumps(dict(claims), separators=(",", ":")).encode("utf-8"))
        )
        signature = key.private_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return signing_input + "." + b64url(signature)

    def sign(
        self,
        audience: str,
        *,
        email: str = DEFAULT_PUSH_SERVICE_ACCOUNT,
        email_verified: bool = True,
        issuer: str = GOOGLE_ISSUER,
        expires_in: int = 3600,
        issued_at: datetime | None = None,
        kid: str | None = None,
    ) -> str:
        """Return a token shaped like the one Pub/Sub sends in a push request's Bearer header."""
        iat = int(issued_at.timestamp()) if issued_at is not None else int(self._clock())
        subject = numeric_subject(email)
        claims = {
            "aud": audience,
            "azp": subject,
            "email": email,
            "email_verified": email_verified,
            "exp": iat + expires_in,
            "iat": iat,
            "iss": issuer,
            "sub": subject,
        }
        return self.sign_claims(claims, kid=kid)

    def push_headers(self, audience: str, **sign_options: Any) -> dict[str, str]:
        """Return the headers of a push request: JSON content and the signed Bearer token."""
        token = self.sign(audience, **sign_options)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def routes(self) -> list[Route]:
        """Return the route of the certs URL."""
        return [Route(CERTS_PATH, self._serve_certs, methods=["GET"])]

    async def _serve_certs(self, request: Request) -> JSONResponse:
        return JSONResponse(
            self.certs(),
            headers={"Cache-Control": "public, max-age=19800, must-revalidate, no-transform"},
        )


_push_message_ids = itertools.count(17_000_000_000_000_001)


def push_body(
    email_address: str,
    history_id: int | str,
    *,
    message_id: str | None = None,
    subscription: str = DEFAULT_SUBSCRIPTION,
    publish_time: datetime | None = None,
) -> dict[str, Any]:
    """Build the JSON body Pub/Sub POSTs to a push endpoint for a Gmail notification.

    Gmail publishes `{"emailAddress", "historyId"}`; `historyId` arrives as a JSON
    number in practice (the docs show a string), so pass a `str` to test both.
    """
    data = json.dumps({"emailAddress": email_address, "historyId": history_id})
    message_id = message_id if message_id is not None else str(next(_push_message_ids))
    published = publish_time if publish_time is not None else datetime.now(UTC)
    stamp = published.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "message": {
            "attributes": {},
            "data": base64.b64encode(data.encode("utf-8")).decode("ascii"),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": stamp,
            "publish_time": stamp,
        },
        "subscription": subscription,
    }
