"""OAuth mode: install links that bind an install to an organization, and cached authorizations.

`salesbot org install-link --org lonestar` prints `/slack/install?link=<token>`: the token
is signed with SALESBOT_SECRET_KEY (HKDF key of its own purpose) and expires. The install
page refuses a forged or expired link with a page that says so; a good one is remembered
on the OAuth state row, so the callback binds the workspace to that organization instead
of making a new one. Without a link, an install binds the workspace's organization, or a
new one named after the workspace (as before). Either way the installer becomes the admin
of an organization that has none.

Every Slack request in OAuth mode needs an authorization (the workspace's bot token,
checked with auth.test). Bolt asks Slack for each request, and the deferred part of each
click asks again in the worker: a burst of clicks would meet auth.test's rate limit inside
the ack. `CachedAuthorize` keeps each workspace's authorization for a minute.
"""

from __future__ import annotations

import copy
import html
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from slack_bolt import BoltContext, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.authorize import Authorize
from slack_bolt.error import BoltError
from slack_bolt.oauth import OAuthFlow
from slack_bolt.oauth.callback_options import FailureArgs, SuccessArgs
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Installation

from bot.settings import Settings
from domain.errors import Conflict, InvalidInput
from integrations.crypto import LinkSigner
from storage.slack_store import DbInstallationStore, DbOAuthStateStore, InstallerProfile

log = logging.getLogger(__name__)

INSTALL_LINK_PURPOSE = "slack-install"
LINK_PARAMETER = "link"
AUTHORIZE_TTL_SECONDS = 60.0
AUTHORIZE_MAX_TEAMS = 10_000


# --- install links ------------------------------------------------------------------------


def install_link_signer(secret_key: str) -> LinkSigner:
    """Return the signer of install links (its own key, derived from SALESBOT_SECRET_KEY)."""
    return LinkSigner(secret_key, purpose=INSTALL_LINK_PURPOSE)


def install_link_url(settings: Settings, org_id: int, *, expires_in: int) -> str:
    """Return a link to /slack/install that binds the install to `org_id` until it expires."""
    token = install_link_signer(settings.SALESBOT_SECRET_KEY).sign(
        {"o": org_id}, expires_in=expires_in
    )
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/slack/install?{urlencode({LINK_PARAMETER: token})}"


def org_of_install_link(signer: LinkSigner, token: str) -> int:
    """Return the organization an install link binds to; raise InvalidInput if it cannot."""
    payload = signer.verify(token)
    org_id = payload.get("o")
    if not isinstance(org_id, int) or isinstance(org_id, bool):
        raise InvalidInput(f"malformed {INSTALL_LINK_PURPOSE} token")
    return org_id


class InstallRefused(BoltError):
    """The install cannot be stored as asked; the page shows the message."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def page(status: int, title: str, message: str, *, set_cookie: str | None = None) -> BoltResponse:
    """An HTML page for the person installing the app."""
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    headers: dict[str, str | Sequence[str]] = {"Content-Type": "text/html; charset=utf-8"}
    if set_cookie is not None:
        headers["Set-Cookie"] = [set_cookie]
    return BoltResponse(status=status, body=body, headers=headers)


_REFUSED_LINK = (
    "This install link is {reason}. Nothing was installed. Ask whoever sent it for a new one "
    "(`salesbot org install-link --org …`)."
)


class SalesbotOAuthFlow(OAuthFlow):
    """Bolt's OAuth flow, with install links and the installer made admin.

    `/slack/install?link=…` checks the link first and keeps its organization on the state
    it issues; the callback reads it back before Bolt consumes the state (the consume,
    a delete, still decides whether the callback is good) and stores the install bound
    to that organization.
    """

    _BOUND_ORG = "salesbot_install_org_id"

    def __init__(self, *, signer: LinkSigner, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signer = signer
        self.success_handler = self._succeeded
        self.failure_handler = self._failed

    @property
    def _states(self) -> DbOAuthStateStore:
        store = self.settings.state_store
        assert isinstance(store, DbOAuthStateStore)
        return store

    @property
    def _installations(self) -> DbInstallationStore:
        store = self.settings.installation_store
        assert isinstance(store, DbInstallationStore)
        return store

    def handle_installation(self, request: BoltRequest) -> BoltResponse:
        """Refuse a forged or expired install link with a page; else redirect to Slack."""
        link = _query(request, LINK_PARAMETER)
        if link is not None:
            try:
                request.context[self._BOUND_ORG] = org_of_install_link(self._signer, link)
            except InvalidInput as exc:
                reason = "expired" if "expired" in exc.message else "not valid (altered?)"
                log.warning("install link refused", extra={"reason": exc.message})
                return page(400, "Install link refused", _REFUSED_LINK.format(reason=reason))
        return super().handle_installation(request)

    def issue_new_state(self, request: BoltRequest) -> str:
        """Issue a state that remembers the organization of the install link, if any."""
        return self._states.issue(org_id=request.context.get(self._BOUND_ORG))

    def handle_callback(self, request: BoltRequest) -> BoltResponse:
        """Run Bolt's callback, knowing which organization the state was issued for."""
        state = _query(request, "state")
        if state is not None:
            request.context[self._BOUND_ORG] = self._states.org_of_state(state)
        return super().handle_callback(request)

    def store_installation(self, request: BoltRequest, installation: Installation) -> None:
        """Store the install bound to the link's organization, the installer as its admin."""
        org_id = request.context.get(self._BOUND_ORG)
        try:
            self._installations.save(
                installation, bind_to_org=org_id, installer=self._installer(installation)
            )
        except Conflict as exc:
            raise InstallRefused(
                f"{exc.message}. Nothing was changed in Salesbot; uninstall the app from this "
                "workspace or ask for an install link of that organization.",
                status=409,
            ) from None

    def _installer(self, installation: Installation) -> InstallerProfile | None:
        """Who installed the app: their address and name from users.info, when Slack tells."""
        if not installation.user_id:
            return None
        email = name = None
        try:
            answer = self.client.users_info(token=installation.bot_token, user=installation.user_id)
            user = answer.get("user") or {}
            profile = user.get("profile") or {}
            email = profile.get("email") or None
            name = profile.get("real_name") or user.get("name") or None
        except SlackApiError as exc:
            log.warning(
                "installer not looked up; linked by slack id",
                extra={"error": exc.response.get("error"), "user_id": installation.user_id},
            )
        return InstallerProfile(slack_user_id=installation.user_id, email=email, name=name)

    def _succeeded(self, args: SuccessArgs) -> BoltResponse:
        team = args.installation.team_name or args.installation.team_id or "your workspace"
        return page(
            200,
            "Salesbot is installed",
            f"Salesbot is installed in {team}. Go back to Slack and try /campaign list.",
            set_cookie=self.settings.state_utils.build_set_cookie_for_deletion(),
        )

    def _failed(self, args: FailureArgs) -> BoltResponse:
        cookie = self.settings.state_utils.build_set_cookie_for_deletion()
        if isinstance(args.error, InstallRefused):
            return page(
                args.error.status,
                "Salesbot was not installed",
                args.error.message,
                set_cookie=cookie,
            )
        return page(
            args.suggested_status_code,
            "Salesbot was not installed",
            f"The installation did not complete (reason: {args.reason}). "
            "Start again from the install link.",
            set_cookie=cookie,
        )


def _query(request: BoltRequest, name: str) -> str | None:
    values = request.query.get(name) or []
    return values[0] if values else None


# --- cached authorizations ----------------------------------------------------------------


@dataclass
class _Entry:
    result: AuthorizeResult
    expires: float


class CachedAuthorize(Authorize):
    """Bolt's installation-store authorize, remembered per workspace for a short while.

    Only bot authorizations are kept (an authorization that carries a user's token is that
    user's, not the workspace's). At most `max_teams` workspaces are kept, the least
    recently used dropped first; `forget` drops a workspace whose tokens were revoked or
    which uninstalled the app. The web app and the worker's app share one.
    """

    def __init__(
        self,
        inner: Authorize,
        *,
        ttl_seconds: float = AUTHORIZE_TTL_SECONDS,
        max_teams: int = AUTHORIZE_MAX_TEAMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._ttl = ttl_seconds
        self._max = max_teams
        self._clock = clock
        self._entries: OrderedDict[tuple[str | None, str | None], _Entry] = OrderedDict()
        self._fills: dict[tuple[str | None, str | None], tuple[threading.Lock, int]] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        *,
        context: BoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        """Return the workspace's authorization, from the cache while it is fresh."""
        key = (enterprise_id, team_id)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        # One request per workspace asks Slack; a burst of clicks waits for its answer
        # instead of asking Slack once each.
        with self._filling(key):
            cached = self._fresh(key)
            if cached is not None:
                return cached
            result: AuthorizeResult | None = self._inner(
                context=context,
                enterprise_id=enterprise_id,
                team_id=team_id,
                user_id=user_id,
                actor_enterprise_id=actor_enterprise_id,
                actor_team_id=actor_team_id,
                actor_user_id=actor_user_id,
            )
            if result is not None and result.user_token is None:
                with self._lock:
                    self._entries[key] = _Entry(copy.copy(result), self._clock() + self._ttl)
                    self._entries.move_to_end(key)
                    while len(self._entries) > self._max:
                        self._entries.popitem(last=False)
            return result

    def _fresh(self, key: tuple[str | None, str | None]) -> AuthorizeResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.expires <= self._clock():
                return None
            self._entries.move_to_end(key)
            return copy.copy(entry.result)

    @contextmanager
    def _filling(self, key: tuple[str | None, str | None]) -> Iterator[None]:
        with self._lock:
            lock, users = self._fills.get(key, (threading.Lock(), 0))
            self._fills[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._fills[key]
                if users == 1:
                    del self._fills[key]
                else:
                    self._fills[key] = (lock, users - 1)

    def forget(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Drop a workspace's authorization (its tokens were revoked or the app uninstalled)."""
        with self._lock:
            self._entries.pop((enterprise_id, team_id), None)

    def middleware(
        self,
        request: BoltRequest,
        body: dict[str, Any],
        next: Callable[[], None],  # noqa: A002
    ) -> None:
        """Forget a workspace when Slack says its tokens are revoked or the app uninstalled."""
        event = body.get("event") if body.get("type") == "event_callback" else None
        if isinstance(event, dict) and event.get("type") in ("tokens_revoked", "app_uninstalled"):
            self.forget(enterprise_id=body.get("enterprise_id"), team_id=body.get("team_id"))
            log.info("slack authorization forgotten", extra={"team_id": body.get("team_id")})
        next()
