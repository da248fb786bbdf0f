"""One loopback server for every Google stand-in: Gmail API, OAuth 2.0 and the OIDC certs URL.

```python
google, server = start_google_stand_in()
urls = GoogleUrls(server.url)
urls.as_env()  # GMAIL_API_URL, GOOGLE_TOKEN_URI, GOOGLE_AUTH_URI, GOOGLE_CERTS_URL
```

| setting            | URL                                |
|--------------------|------------------------------------|
| `GMAIL_API_URL`    | `server.url + "/"`                 |
| `GOOGLE_TOKEN_URI` | `server.url + "/token"`            |
| `GOOGLE_AUTH_URI`  | `server.url + "/o/oauth2/auth"`    |
| `GOOGLE_CERTS_URL` | `server.url + "/oauth2/v1/certs"`  |
| revoke             | `server.url + "/revoke"`           |
| userinfo           | `server.url + "/oauth2/v2/userinfo"` |

The OAuth stand-in's access tokens open the Gmail stand-in's mailboxes; its
`id_token`s and the Pub/Sub push tokens are signed by the same key, published
at the certs URL, as Google does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from sandbox.gmail_api import GmailStandIn, Mailbox
from sandbox.google_oauth import GoogleOAuthStandIn
from sandbox.pubsub import PubSubOidcSigner, push_body
from sandbox.server import RunningServer, serve_in_thread


@dataclass(frozen=True)
class GoogleUrls:
    """The URLs of a running Google stand-in; `base` is the server URL without a slash."""

    base: str

    @property
    def gmail_api_url(self) -> str:
        """`api_endpoint` for googleapiclient (`GMAIL_API_URL`)."""
        return self.base + "/"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint (`GOOGLE_TOKEN_URI`)."""
        return self.base + "/token"

    @property
    def auth_uri(self) -> str:
        """The OAuth authorization (consent) endpoint (`GOOGLE_AUTH_URI`)."""
        return self.base + "/o/oauth2/auth"

    @property
    def certs_url(self) -> str:
        """The `{kid: PEM}` certificates of the OIDC signer (`GOOGLE_CERTS_URL`)."""
        return self.base + "/oauth2/v1/certs"

    @property
    def revoke_uri(self) -> str:
        """The OAuth revocation endpoint."""
        return self.base + "/revoke"

    @property
    def userinfo_url(self) -> str:
        """The OAuth userinfo endpoint (v2)."""
        return self.base + "/oauth2/v2/userinfo"

    def as_env(self) -> dict[str, str]:
        """Return the Salesbot settings that point the Google clients at this stand-in."""
        return {
            "GMAIL_API_URL": self.gmail_api_url,
            "GOOGLE_TOKEN_URI": self.token_uri,
            "GOOGLE_AUTH_URI": self.auth_uri,
            "GOOGLE_CERTS_URL": self.certs_url,
        }


class GoogleStandIn:
    """The Google stand-ins sharing one state: `oauth`, `gmail` and the OIDC `signer`."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, history_limit: int | None = None
    ) -> None:
        self.signer = PubSubOidcSigner(clock=clock)
        self.oauth = GoogleOAuthStandIn(id_token_signer=self.signer, clock=clock)
        self.gmail = GmailStandIn(self.oauth, clock=clock, history_limit=history_limit)

    def reset(self) -> None:
        """Forget mailboxes, grants, tokens, calls, failures and rotated-out keys."""
        self.gmail.reset()
        self.oauth.reset()
        self.signer.forget_previous_keys()

    def add_mailbox(self, email: str) -> Mailbox:
        """Create a Gmail mailbox for `email`."""
        return self.gmail.add_mailbox(email)

    def push_request(
        self, email: str, *, audience: str, **body_options: Any
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Return the headers and JSON body of the Pub/Sub push for a mailbox's current state."""
        body = push_body(email.lower(), self.gmail.history_id(email), **body_options)
        return self.signer.push_headers(audience), body


def create_google_app(google: GoogleStandIn) -> Starlette:
    """Build the ASGI app that serves the Gmail API, Google OAuth and the certs URL."""
    routes = [*google.gmail.routes(), *google.oauth.routes(), *google.signer.routes()]
    return Starlette(routes=routes)


def start_google_stand_in(
    google: GoogleStandIn | None = None, *, port: int | None = None
) -> tuple[GoogleStandIn, RunningServer]:
    """Serve a Google stand-in on a loopback port in a thread; stop it with `server.stop()`."""
    google = google if google is not None else GoogleStandIn()
    server = serve_in_thread(
        create_google_app(google), port=port, access_logger="sandbox.google.access"
    )
    return google, server
