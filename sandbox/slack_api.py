"""A stand-in for the Slack Web API, served over HTTP on loopback.

The official clients talk to it unchanged: slack_sdk's `WebClient(token=..., base_url=url +
"/api/")` and a Bolt `App(client=...)`. It keeps small workspaces in memory (teams, users,
channels, bot tokens), answers the methods Salesbot uses the way Slack does, including Slack's
`ok: false` errors and HTTP 429 with `Retry-After`, and records every call so that a test can
read what Slack would have received.

Tests read its state from their own thread while uvicorn serves it from another, so every
access to the state goes through one lock, and readers get immutable snapshots.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.server import RunningServer, serve_in_thread

DEFAULT_TEAM_ID: Final = "T0SANDBOX"
DEFAULT_TEAM_NAME: Final = "Sandbox Appraisals"
DEFAULT_TEAM_DOMAIN: Final = "sandbox-appraisals"
DEFAULT_BOT_TOKEN: Final = "xoxb-0000000001-0000000001-sandboxbottoken0001"
DEFAULT_BOT_USER_ID: Final = "U0SANDBOXBOT"
DEFAULT_BOT_ID: Final = "B0SANDBOXBOT"
DEFAULT_BOT_NAME: Final = "salesbot"
DEFAULT_ADMIN_USER_ID: Final = "U0SANDBOXADM"
DEFAULT_CHANNEL_ID: Final = "C0SANDBOXGEN"
APP_ID: Final = "A0SANDBOXAPP"
DEFAULT_CLIENT_ID: Final = "0000000001.0000000001"
DEFAULT_CLIENT_SECRET: Final = "sandbox-client-secret"
DEFAULT_BOT_SCOPES: Final = frozenset(
    {
        "channels:read",
        "chat:write",
        "chat:write.public",
        "commands",
        "files:write",
        "groups:read",
        "im:history",
        "im:read",
        "im:write",
        "mpim:read",
        "mpim:write",
        "users:read",
        "users:read.email",
    }
)

MAX_TEXT_CHARS: Final = 40_000
MAX_ALT_TEXT_CHARS: Final = 2000
# What Slack requires of a file id in an image block's slack_file.
_FILE_ID: Final = re.compile(r"^[F][A-Z0-9]{8,}$")
MAX_MESSAGE_BLOCKS: Final = 50
MAX_VIEW_BLOCKS: Final = 100
MAX_ATTACHMENTS: Final = 100
MAX_VIEW_STACK: Final = 3
MAX_VIEW_BYTES: Final = 250_000
MAX_RESPONSE_URL_USES: Final = 5
MAX_MPIM_USERS: Final = 8
TRIGGER_TTL_SECONDS: Final = 3.0

# Fields that Slack accepts as JSON text inside a form body (and slack_sdk sometimes sends so).
_JSON_FIELDS: Final = frozenset({"blocks", "attachments", "view", "files", "metadata"})

_KNOWN_BLOCK_TYPES: Final = frozenset(
    {
        "actions",
        "call",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)


# --------------------------------------------------------------------------------------------
# What the stand-in holds and what tests read back (immutable snapshots)


@dataclass(frozen=True, slots=True)
class Team:
    """A workspace with the app's bot user installed in it."""

    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str
    bot_name: str = DEFAULT_BOT_NAME


@dataclass(frozen=True, slots=True)
class User:
    """A member of a workspace (people and the bot user)."""

    id: str
    team_id: str
    name: str
    email: str | None
    real_name: str
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "America/Chicago"

    def to_api(self, *, with_email: bool) -> dict[str, Any]:
        """Render the user as `users.info` does."""
        profile: dict[str, Any] = {
            "real_name": self.real_name,
            "display_name": self.name,
            "team": self.team_id,
        }
        if with_email and self.email is not None:
            profile["email"] = self.email
        label, offset = _tz_label_and_offset(self.tz)
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": label,
            "tz_offset": offset,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 0,
            "profile": profile,
        }


@dataclass(frozen=True, slots=True)
class Channel:
    """A conversation: public or private channel, DM (`D...`) or group DM (`G...`)."""

    id: str
    team_id: str
    name: str
    created: int
    is_private: bool = False
    is_im: bool = False
    is_mpim: bool = False
    is_general: bool = False
    is_archived: bool = False
    is_member: bool = True
    user: str | None = None
    members: tuple[str, ...] | None = None

    def to_api(self) -> dict[str, Any]:
        """Render the conversation as `conversations.info` does."""
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "created": self.created,
            "creator": "",
            "is_channel": not self.is_mpim,
            "is_group": False,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private or self.is_mpim,
            "is_archived": self.is_archived,
            "is_general": self.is_general,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": self.is_member,
        }


@dataclass(frozen=True, slots=True)
class Token:
    """An access token the stand-in accepts: a bot token (xoxb-) or a user token (xoxp-)."""

    value: str
    team_id: str
    kind: str
    user_id: str
    scopes: frozenset[str]
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One Web API call as the stand-in received and answered it."""

    method: str
    params: dict[str, Any]
    token: str | None
    http_method: str
    at: float
    status: int
    ok: bool
    error: str | None
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """The current state of a message in a channel, after any updates."""

    channel: str
    ts: str
    text: str
    user: str
    team_id: str
    bot_id: str | None = None
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    metadata: dict[str, Any] | None = None
    files: list[dict[str, Any]] | None = None
    edited_ts: str | None = None
    edit_count: int = 0

    def to_api(self) -> dict[str, Any]:
        """Render the message as Slack returns it in `message`."""
        out: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
            "team": self.team_id,
        }
        if self.bot_id is not None:
            out["bot_id"] = self.bot_id
            out["app_id"] = APP_ID
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.attachments is not None:
            out["attachments"] = self.attachments
        if self.thread_ts is not None:
            out["thread_ts"] = self.thread_ts
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.files is not None:
            out["files"] = self.files
            out["upload"] = True
        if self.edited_ts is not None:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        return out


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """An ephemeral message shown to one user in a channel."""

    channel: str
    user: str
    message_ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    thread_ts: str | None
    sender: str


@dataclass(frozen=True, slots=True)
class View:
    """A modal (opened or pushed) or an App Home tab (published), in its current state."""

    id: str
    team_id: str
    type: str
    definition: dict[str, Any]
    hash: str
    trigger_id: str | None
    user_id: str | None
    external_id: str | None
    root_view_id: str
    previous_view_id: str | None
    opened_by: str
    update_count: int
    bot_id: str
    #: True once the person closed the modal (Cancel, or a submission the app answered with
    #: an empty ack or `response_action: clear`); Slack forgets such a view.
    closed: bool = False

    @property
    def title(self) -> str | None:
        """Return the title text, if the view has one."""
        title = self.definition.get("title")
        return title.get("text") if isinstance(title, dict) else None

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """Return the view's blocks."""
        blocks = self.definition.get("blocks")
        return blocks if isinstance(blocks, list) else []

    @property
    def callback_id(self) -> str:
        """Return the view's callback_id ("" when none)."""
        return str(self.definition.get("callback_id") or "")

    @property
    def private_metadata(self) -> str:
        """Return the view's private_metadata ("" when none)."""
        return str(self.definition.get("private_metadata") or "")

    def to_api(self) -> dict[str, Any]:
        """Render the view as `views.*` methods return it."""
        d = self.definition
        return {
            "id": self.id,
            "team_id": self.team_id,
            "type": self.type,
            "title": d.get("title"),
            "submit": d.get("submit"),
            "close": d.get("close"),
            "blocks": self.blocks,
            "private_metadata": self.private_metadata,
            "callback_id": self.callback_id,
            "external_id": self.external_id or "",
            "state": {"values": {}},
            "hash": self.hash,
            "clear_on_close": bool(d.get("clear_on_close", False)),
            "notify_on_close": bool(d.get("notify_on_close", False)),
            "root_view_id": self.root_view_id,
            "previous_view_id": self.previous_view_id,
            "app_id": APP_ID,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file uploaded through files.getUploadURLExternal, the upload URL and completion."""

    id: str
    team_id: str
    user: str
    filename: str
    length: int
    created: int
    title: str | None = None
    alt_txt: str | None = None
    snippet_type: str | None = None
    content: bytes | None = None
    completed: bool = False
    channels: tuple[str, ...] = ()
    initial_comment: str | None = None
    thread_ts: str | None = None

    def to_api(self) -> dict[str, Any]:
        """Render the file object as `files.completeUploadExternal` returns it."""
        extension = self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""
        size = len(self.content) if self.content is not None else self.length
        private_url = f"https://files.slack.com/files-pri/{self.team_id}-{self.id}/{self.filename}"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.filename,
            "title": self.title or self.filename,
            "mimetype": mimetypes.guess_type(self.filename)[0] or "application/octet-stream",
            "filetype": self.snippet_type or extension or "binary",
            "user": self.user,
            "user_team": self.team_id,
            "size": size,
            "mode": "snippet" if self.snippet_type else "hosted",
            "is_external": False,
            "is_public": False,
            "url_private": private_url,
            "permalink": f"https://{self.team_id.lower()}.slack.com/files/{self.user}/{self.id}",
            "channels": [c for c in self.channels if c.startswith("C")],
            "groups": [c for c in self.channels if c.startswith("G")],
            "ims": [c for c in self.channels if c.startswith("D")],
            "alt_txt": self.alt_txt,
            "comments_count": 0,
        }


@dataclass(frozen=True, slots=True)
class ApiReply:
    """What the stand-in answers to one Web API call: HTTP status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


# --------------------------------------------------------------------------------------------
# Internal state


@dataclass(slots=True)
class _Trigger:
    issued_at: float | None
    user_id: str | None = None
    view_id: str | None = None
    used: bool = False
    expired: bool = False


@dataclass(slots=True)
class _Fault:
    error: str
    times: int
    status: int
    retry_after: int | None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class _ResponseUrl:
    team_id: str
    channel: str
    user: str
    message_ts: str | None
    uses: int = 0


@dataclass(frozen=True, slots=True)
class _OAuthCode:
    team_id: str
    team_name: str | None
    installer_user_id: str
    scope: str
    user_scope: str | None
    redirect_uri: str | None


@dataclass(frozen=True, slots=True)
class _Ctx:
    params: Mapping[str, Any]
    token: Token | None
    base_url: str
    client_credentials: tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Callable[[_Ctx], dict[str, Any]]
    authed: bool = True
    scope: str | None = None


class _Refusal(Exception):
    """A Slack `ok: false` answer, raised inside a method handler."""

    def __init__(
        self, error: str, *, status: int = 200, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.extra = extra


def _invalid_arguments(*messages: str) -> _Refusal:
    return _Refusal("invalid_arguments", response_metadata={"messages": list(messages)})


# --------------------------------------------------------------------------------------------
# The stand-in


class SlackStandIn:
    """In-memory Slack workspaces that answer Web API calls and record every one of them.

    It starts with one workspace (`DEFAULT_TEAM_ID`), its bot user, a bot token
    (`DEFAULT_BOT_TOKEN`, every scope Salesbot asks for), an admin and a #general channel;
    `reset()` returns to exactly that. Tests add what they need (`add_user`, `add_channel`,
    `add_team`, `add_token`, `add_oauth_code`), inject failures (`fail_next`,
    `rate_limit_per_channel`, `expire_trigger_id`) and read back what Slack received
    (`calls`, `messages`, `last_message`, `ephemerals`, `views`, `uploaded_files`,
    `wait_for`).

    Deliberate simplifications: trigger ids the stand-in did not mint are accepted once and
    never expire; thread_ts is not checked against existing messages; Block Kit is checked
    for the limits a card can break (counts, lengths, types, duplicate ids), not against the
    full schema; an upload is ready for an image block as soon as files.completeUploadExternal
    answers (Slack finishes processing a file a moment later, and may answer "invalid slack
    file" to an image block posted at once).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        oauth_redirect_uri: str | None = None,
        trigger_ttl: float = TRIGGER_TTL_SECONDS,
    ) -> None:
        self._clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.oauth_redirect_uri = oauth_redirect_uri
        self._trigger_ttl = trigger_ttl
        self.served_url: str | None = None
        self._changed = threading.Condition(threading.RLock())
        self._routes: dict[str, _Route] = {
            "api.test": _Route(self._api_test, authed=False),
            "auth.test": _Route(self._auth_test),
            "chat.postMessage": _Route(self._chat_post_message, scope="chat:write"),
            "chat.update": _Route(self._chat_update, scope="chat:write"),
            "chat.postEphemeral": _Route(self._chat_post_ephemeral, scope="chat:write"),
            "chat.delete": _Route(self._chat_delete, scope="chat:write"),
            "chat.getPermalink": _Route(self._chat_get_permalink),
            "views.open": _Route(self._views_open),
            "views.push": _Route(self._views_push),
            "views.update": _Route(self._views_update),
            "views.publish": _Route(self._views_publish),
            "users.info": _Route(self._users_info, scope="users:read"),
            "users.lookupByEmail": _Route(self._users_lookup_by_email, scope="users:read.email"),
            "conversations.open": _Route(self._conversations_open),
            "conversations.info": _Route(self._conversations_info),
            "conversations.list": _Route(self._conversations_list),
            "conversations.history": _Route(self._conversations_history),
            "conversations.replies": _Route(self._conversations_replies),
            "files.getUploadURLExternal": _Route(self._files_get_upload_url, scope="files:write"),
            "files.completeUploadExternal": _Route(
                self._files_complete_upload, scope="files:write"
            ),
            "oauth.v2.access": _Route(self._oauth_v2_access, authed=False),
        }
        self._seed()

    # ---- set-up -------------------------------------------------------------------------------

    def _seed(self) -> None:
        with self._changed:
            self._teams: dict[str, Team] = {}
            self._users: dict[str, User] = {}
            self._channels: dict[str, Channel] = {}
            self._tokens: dict[str, Token] = {}
            self._calls: list[RecordedCall] = []
            self._messages: dict[str, dict[str, Message]] = {}
            self._ephemerals: list[Ephemeral] = []
            self._views: dict[str, View] = {}
            self._home_views: dict[tuple[str, str], str] = {}
            self._triggers: dict[str, _Trigger] = {}
            self._files: dict[str, UploadedFile] = {}
            self._upload_keys: dict[str, str] = {}
            self._oauth_codes: dict[str, _OAuthCode] = {}
            self._response_urls: dict[str, _ResponseUrl] = {}
            self._faults: dict[str, list[_Fault]] = {}
            self._channel_rate: tuple[float, int] | None = None
            self._buckets: dict[str, _Bucket] = {}
            self._ids: Iterator[int] = itertools.count(1)
            self._last_ts_us = 0
            self._installer = (DEFAULT_TEAM_ID, DEFAULT_ADMIN_USER_ID)
            self.add_team(DEFAULT_TEAM_ID, DEFAULT_TEAM_NAME, domain=DEFAULT_TEAM_DOMAIN)
            self.add_token(DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID)
            self.add_user(
                DEFAULT_ADMIN_USER_ID,
                "sandbox.admin",
                "admin@sandbox-appraisals.example",
                real_name="Sandbox Admin",
                is_admin=True,
                is_owner=True,
            )
            self.add_channel(DEFAULT_CHANNEL_ID, "general", is_general=True)

    def reset(self) -> None:
        """Forget everything recorded and added; keep only the default workspace, bot and token."""
        self._seed()

    def add_team(self, team_id: str, name: str, *, domain: str | None = None) -> Team:
        """Add a workspace with the app installed: its bot user is `U<id>BOT`, bot `B<id>BOT`."""
        with self._changed:
            suffix = team_id[1:]
            team = Team(
                id=team_id,
                name=name,
                domain=domain or name.lower().replace(" ", "-"),
                bot_user_id=f"U{suffix}BOT",
                bot_id=f"B{suffix}BOT",
            )
            self._teams[team_id] = team
            self._users[team.bot_user_id] = User(
                id=team.bot_user_id,
                team_id=team_id,
                name=team.bot_name,
                email=None,
                real_name="Salesbot",
                is_bot=True,
            )
            return team

    def add_user(
        self,
        user_id: str,
        name: str,
        email: str | None,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        is_admin: bool = False,
        is_owner: bool = False,
        real_name: str | None = None,
        tz: str = "America/Chicago",
        deleted: bool = False,
    ) -> User:
        """Add (or replace) a person in a workspace."""
        with self._changed:
            self._require_team(team_id)
            user = User(
                id=user_id,
                team_id=team_id,
                name=name,
                email=email,
                real_name=real_name or name,
                is_admin=is_admin,
                is_owner=is_owner,
                deleted=deleted,
                tz=tz,
            )
            self._users[user_id] = user
            return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        is_private: bool = False,
        is_member: bool = True,
        is_archived: bool = False,
        is_general: bool = False,
        members: tuple[str, ...] | None = None,
    ) -> Channel:
        """Add a channel; `members=None` means every member of the workspace is in it."""
        with self._changed:
            self._require_team(team_id)
            channel = Channel(
                id=channel_id,
                team_id=team_id,
                name=name,
                created=int(self._clock()),
                is_private=is_private,
                is_member=is_member,
                is_archived=is_archived,
                is_general=is_general,
                members=members,
            )
            self._channels[channel_id] = channel
            return channel

    def add_token(
        self,
        token: str,
        team_id: str = DEFAULT_TEAM_ID,
        *,
        scopes: frozenset[str] | None = None,
        user_id: str | None = None,
    ) -> Token:
        """Accept `token` for `team_id`: xoxb- acts as the team's bot, xoxp- as `user_id`."""
        with self._changed:
            team = self._require_team(team_id)
            is_user_token = token.startswith("xoxp-")
            if is_user_token and user_id is None:
                raise ValueError(f"user token {token[:9]}... needs the user_id it acts as")
            record = Token(
                value=token,
                team_id=team_id,
                kind="user" if is_user_token else "bot",
                user_id=user_id if is_user_token and user_id else team.bot_user_id,
                scopes=DEFAULT_BOT_SCOPES if scopes is None else frozenset(scopes),
            )
            self._tokens[token] = record
            return record

    def revoke_token(self, token: str) -> None:
        """Make Slack answer `token_revoked` to calls made with `token` from now on."""
        with self._changed:
            self._tokens[token] = replace(self._tokens[token], revoked=True)

    def add_oauth_code(
        self,
        code: str,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        team_name: str | None = None,
        installer_user_id: str = DEFAULT_ADMIN_USER_ID,
        scope: str | None = None,
        user_scope: str | None = None,
        redirect_uri: str | None = None,
    ) -> None:
        """Make oauth.v2.access exchange `code` (once) for a new bot token of `team_id`."""
        with self._changed:
            self._oauth_codes[code] = _OAuthCode(
                team_id=team_id,
                team_name=team_name,
                installer_user_id=installer_user_id,
                scope=scope if scope is not None else ",".join(sorted(DEFAULT_BOT_SCOPES)),
                user_scope=user_scope,
                redirect_uri=redirect_uri,
            )

    def set_installer(self, user_id: str, *, team_id: str = DEFAULT_TEAM_ID) -> None:
        """Choose who approves the install on the stand-in's /oauth/v2/authorize page."""
        with self._changed:
            self._installer = (team_id, user_id)

    def issue_trigger_id(self, *, user_id: str | None = None, view_id: str | None = None) -> str:
        """Mint a trigger_id as Slack does for an interaction; it expires after 3 seconds.

        `view_id` names the modal the interaction happened in, so that views.push with this
        trigger stacks onto that modal. Trigger ids the stand-in did not mint are accepted
        once, with no expiry (tests often write their own payloads).
        """
        with self._changed:
            now = self._clock()
            trigger_id = f"{next(self._ids)}.{int(now)}.{next(self._ids):012x}"
            self._triggers[trigger_id] = _Trigger(issued_at=now, user_id=user_id, view_id=view_id)
            return trigger_id

    def expire_trigger_id(self, trigger_id: str) -> None:
        """Make views.open/views.push answer `expired_trigger_id` for `trigger_id`."""
        with self._changed:
            trigger = self._triggers.setdefault(trigger_id, _Trigger(issued_at=None))
            trigger.expired = True

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
        status: int = 200,
    ) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`.

        `ratelimited` is answered as Slack does: HTTP 429 with a `Retry-After` header
        (1 second unless `retry_after` says otherwise).
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if method not in self._routes:
            raise ValueError(f"{method} is not a method the stand-in serves")
        if error == "ratelimited":
            status = 429 if status == 200 else status
            retry_after = 1 if retry_after is None else retry_after
        with self._changed:
            self._faults.setdefault(method, []).append(
                _Fault(error=error, times=times, status=status, retry_after=retry_after)
            )

    def rate_limit_per_channel(
        self, messages_per_second: float | None = 1.0, *, burst: int = 1
    ) -> None:
        """Answer chat.postMessage with 429 + Retry-After when one channel gets posts too fast.

        Slack allows about one message per second per channel, with short bursts; a token
        bucket of `burst` messages refilled at `messages_per_second` models it. Pass None to
        stop limiting.
        """
        with self._changed:
            if messages_per_second is None:
                self._channel_rate = None
            else:
                if messages_per_second <= 0 or burst < 1:
                    raise ValueError("messages_per_second must be > 0 and burst >= 1")
                self._channel_rate = (messages_per_second, burst)
            self._buckets.clear()

    # ---- reading what was received ------------------------------------------------------------

    @property
    def default_team(self) -> Team:
        """Return the workspace the default token belongs to."""
        with self._changed:
            return self._teams[DEFAULT_TEAM_ID]

    @property
    def default_token(self) -> str:
        """Return the bot token created with the stand-in."""
        return DEFAULT_BOT_TOKEN

    def team(self, team_id: str) -> Team:
        """Return a workspace by id."""
        with self._changed:
            return self._require_team(team_id)

    def user(self, user_id: str) -> User:
        """Return a user by id."""
        with self._changed:
            return self._users[user_id]

    def users(self, team_id: str = DEFAULT_TEAM_ID) -> list[User]:
        """Return the members of a workspace (its bot included), by name."""
        with self._changed:
            found = [u for u in self._users.values() if u.team_id == team_id]
        return sorted(found, key=lambda u: (u.name, u.id))

    def channel(self, channel_id: str) -> Channel:
        """Return a conversation by id (a user id means the bot's DM with that user);
        raise KeyError when there is none."""
        with self._changed:
            return self._channels[self._dm_alias(channel_id)]

    def channels(self) -> list[Channel]:
        """Return every conversation of every workspace, channels first, by name."""
        with self._changed:
            found = list(self._channels.values())
        return sorted(found, key=lambda c: (c.is_im, c.name, c.id))

    def message(self, channel: str, ts: str) -> Message:
        """Return one message in its current state; raise LookupError when it is not there."""
        with self._changed:
            found = self._messages.get(self._dm_alias(channel), {}).get(ts)
        if found is None:
            raise LookupError(f"no message {ts} in {channel}")
        return found

    def token(self, token: str) -> Token:
        """Return what the stand-in knows about a token (e.g. one minted by oauth.v2.access)."""
        with self._changed:
            return self._tokens[token]

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Return the calls received, oldest first, of one method or of all."""
        with self._changed:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(
        self, channel: str | None = None, *, thread_ts: str | None = None
    ) -> list[Message]:
        """Return the messages of a channel (a user id means the bot's DM with that user).

        Messages come in ts order with every update applied; deleted ones are gone. With
        `thread_ts`, only that thread (parent and replies). Without `channel`, all channels.
        """
        with self._changed:
            if channel is None:
                found = [m for msgs in self._messages.values() for m in msgs.values()]
            else:
                found = list(self._messages.get(self._dm_alias(channel), {}).values())
            if thread_ts is not None:
                found = [m for m in found if thread_ts in (m.ts, m.thread_ts)]
            return sorted(found, key=lambda m: (_ts_key(m.ts), m.channel))

    def last_message(self, channel: str) -> Message:
        """Return the newest message of a channel; raise LookupError when there is none."""
        found = self.messages(channel)
        if not found:
            with self._changed:
                posted = sorted(c for c, msgs in self._messages.items() if msgs)
            raise LookupError(f"no message in {channel}; channels with messages: {posted}")
        return found[-1]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Ephemeral]:
        """Return ephemeral messages, oldest first, optionally of one channel and/or user."""
        with self._changed:
            return [
                e
                for e in self._ephemerals
                if (channel is None or e.channel == self._dm_alias(channel))
                and (user is None or e.user == user)
            ]

    @property
    def views(self) -> list[View]:
        """Return every view opened, pushed or published, in the order they were created."""
        with self._changed:
            return list(self._views.values())

    def view(self, view_id: str) -> View:
        """Return a view by id, in its current state."""
        with self._changed:
            return self._views[view_id]

    def home_view(self, user_id: str, *, team_id: str = DEFAULT_TEAM_ID) -> View:
        """Return the App Home view published to a user."""
        with self._changed:
            return self._views[self._home_views[(team_id, user_id)]]

    @property
    def uploaded_files(self) -> list[UploadedFile]:
        """Return every file upload started, in order, with its bytes once uploaded."""
        with self._changed:
            return list(self._files.values())

    def dm_channel_id(self, user_id: str) -> str:
        """Return the id conversations.open gives the bot's DM with `user_id`."""
        return f"D{user_id[1:]}"

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[RecordedCall]:
        """Wait until `count` calls of `method` arrived (answered ok or not); return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self._calls if c.method == method]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [c.method for c in self._calls]
                    raise TimeoutError(
                        f"expected {count} {method} call(s) within {timeout}s, got {len(found)}; "
                        f"calls received: {seen}"
                    )
                self._changed.wait(remaining)

    # ---- what Slack's own client does (the sandbox console) -------------------------------------

    def open_modals(self, user_id: str) -> list[View]:
        """Return the modals open in front of `user_id`, bottom of the stack first."""
        with self._changed:
            return [
                v
                for v in self._views.values()
                if v.type == "modal" and v.user_id == user_id and not v.closed
            ]

    def close_view(self, view_id: str, *, whole_stack: bool = False) -> None:
        """Close a modal, as its Cancel button does; `whole_stack` closes the views under it
        too (the modal's ✕, or `response_action: clear`)."""
        with self._changed:
            view = self._views[view_id]
            for other in list(self._views.values()):
                same = other.id == view.id or (
                    whole_stack and other.root_view_id == view.root_view_id
                )
                if same and not other.closed:
                    self._views[other.id] = replace(other, closed=True)
            self._changed.notify_all()

    def answer_view_submission(
        self, view_id: str, answer: Mapping[str, Any] | None
    ) -> dict[str, str]:
        """Act on the app's ack of a modal submission as Slack does; return the errors to show
        under the inputs (block_id → message), empty when there are none.

        An empty ack closes the modal; `response_action` `update` replaces it, `push` puts a
        new one on top, `clear` closes the whole stack, `errors` keeps it open.
        """
        with self._changed:
            current = self._views[view_id]
            action = (answer or {}).get("response_action")
            if action is None:
                self.close_view(view_id)
                return {}
            if action == "errors":
                errors = (answer or {}).get("errors")
                if not isinstance(errors, dict) or not errors:
                    raise ValueError("response_action errors needs an errors object")
                return {str(k): str(v) for k, v in errors.items()}
            if action == "clear":
                self.close_view(view_id, whole_stack=True)
                return {}
            definition = (answer or {}).get("view")
            if action not in ("update", "push") or not isinstance(definition, dict):
                raise ValueError(f"Slack does not know response_action {action!r} with this view")
            _check_view(definition, allowed_types=("modal",))
            if action == "update":
                self._views[view_id] = replace(
                    current,
                    definition=definition,
                    hash=self._new_hash(),
                    update_count=current.update_count + 1,
                )
            else:
                depth = sum(
                    1
                    for v in self._views.values()
                    if v.root_view_id == current.root_view_id and not v.closed
                )
                if depth >= MAX_VIEW_STACK:
                    raise ValueError("push_limit_reached: a modal stack holds three views")
                pushed = replace(
                    current,
                    id=self._new_id("V"),
                    definition=definition,
                    hash=self._new_hash(),
                    external_id=_str(definition, "external_id") or None,
                    previous_view_id=current.id,
                    opened_by="response_action",
                    update_count=0,
                )
                self._views[pushed.id] = pushed
            self._changed.notify_all()
            return {}

    def answer_command(self, *, channel: str, user: str, body: str) -> None:
        """Show what the app answered a slash command within its ack, as Slack does: a text
        or message body visible to `user` only, or posted to the channel with
        `response_type: in_channel`; an empty ack shows nothing."""
        if not body.strip():
            return
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"text": body}
        if not isinstance(payload, dict):
            payload = {"text": body}
        with self._changed:
            team_id = self._users[user].team_id if user in self._users else DEFAULT_TEAM_ID
            target = _ResponseUrl(
                team_id=team_id, channel=self._dm_alias(channel), user=user, message_ts=None
            )
            try:
                self._act_on_response(target, payload)
            except _Refusal as refusal:
                raise ValueError(f"Slack would not show this answer: {refusal.error}") from None
            self._changed.notify_all()

    # ---- the Web API --------------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        token: str | None,
        http_method: str = "POST",
        base_url: str = "http://127.0.0.1/",
        client_credentials: tuple[str, str] | None = None,
        body_error: str | None = None,
    ) -> ApiReply:
        """Answer one Web API call as Slack would, and record it.

        `base_url` is where this stand-in is served (for the upload URLs it hands out);
        `body_error` is the Slack error for a request body that could not be read.
        """
        with self._changed:
            headers: dict[str, str] = {}
            try:
                route = self._routes.get(method)
                if route is None:
                    raise _Refusal("unknown_method", req_method=method)
                if body_error is not None:
                    raise _Refusal(body_error)
                auth: Token | None = None
                if route.authed:
                    auth = self._authenticate(token)
                    headers["x-oauth-scopes"] = ",".join(sorted(auth.scopes))
                    headers["x-accepted-oauth-scopes"] = route.scope or ""
                    if route.scope is not None:
                        _require_scope(auth, route.scope)
                self._raise_injected_fault(method)
                ctx = _Ctx(
                    params=params,
                    token=auth,
                    base_url=base_url if base_url.endswith("/") else base_url + "/",
                    client_credentials=client_credentials,
                )
                body: dict[str, Any] = {"ok": True, **route.handler(ctx)}
                status = 200
            except _Refusal as refusal:
                body = {"ok": False, "error": refusal.error, **refusal.extra}
                status = refusal.status
                if refusal.retry_after is not None:
                    headers["Retry-After"] = str(refusal.retry_after)
            self._record(method, params, token, http_method, status, body)
            return ApiReply(status=status, body=body, headers=headers)

    def response_url(
        self,
        *,
        channel: str,
        user: str,
        team_id: str = DEFAULT_TEAM_ID,
        message_ts: str | None = None,
    ) -> str:
        """Mint the `response_url` Slack puts in a slash command or interaction payload.

        Posts to it (Bolt's `respond()`) are recorded as calls of the pseudo-method
        "response_url" and act as Slack does: an ephemeral message to `user` by default, a new
        channel message with `response_type: in_channel`, and `replace_original` /
        `delete_original` acting on the message at `message_ts` (the one whose button was
        clicked). Like Slack's, a URL serves at most 5 responses.
        """
        with self._changed:
            if self.served_url is None:
                raise RuntimeError("serve the stand-in (start_slack_stand_in) first")
            key = f"{team_id}/{next(self._ids)}/sandbox{next(self._ids):08x}"
            self._response_urls[key] = _ResponseUrl(
                team_id=team_id, channel=channel, user=user, message_ts=message_ts
            )
            return f"{self.served_url}/hooks/commands/{key}"

    def respond(self, key: str, payload: Mapping[str, Any]) -> tuple[int, str]:
        """Act on a post to a response URL; return Slack's HTTP status and plain-text answer."""
        with self._changed:
            target = self._response_urls.get(key)
            if target is None:
                status, answer = 404, "no_service"
            else:
                target.uses += 1
                try:
                    if target.uses > MAX_RESPONSE_URL_USES:
                        raise _Refusal("used_url", status=404)
                    self._act_on_response(target, payload)
                    status, answer = 200, "ok"
                except _Refusal as refusal:
                    status, answer = refusal.status if refusal.status != 200 else 400, refusal.error
            body: dict[str, Any] = {"ok": status == 200}
            if status != 200:
                body["error"] = answer
            self._record("response_url", payload, None, "POST", status, body)
            return status, answer

    def _record(
        self,
        method: str,
        params: Mapping[str, Any],
        token: str | None,
        http_method: str,
        status: int,
        body: dict[str, Any],
    ) -> None:
        self._calls.append(
            RecordedCall(
                method=method,
                params=dict(params),
                token=token,
                http_method=http_method,
                at=self._clock(),
                status=status,
                ok=bool(body["ok"]),
                error=None if body["ok"] else str(body["error"]),
                response=body,
            )
        )
        self._changed.notify_all()

    def _act_on_response(self, target: _ResponseUrl, payload: Mapping[str, Any]) -> None:
        team = self._require_team(target.team_id)
        channel_messages = self._messages.get(target.channel, {})
        original = channel_messages.get(target.message_ts or "")
        if _flag(payload, "delete_original"):
            if original is None:
                raise _Refusal("message_not_found")
            del channel_messages[original.ts]
            return
        content = _read_content(payload)
        self._check_slack_files(team.id, content.get("blocks"))
        if _flag(payload, "replace_original") and original is not None:
            channel_messages[original.ts] = replace(
                original, **content, edited_ts=self._next_ts(), edit_count=original.edit_count + 1
            )
        elif payload.get("response_type") == "in_channel":
            self._store_message(
                Message(
                    channel=target.channel,
                    ts=self._next_ts(),
                    text=content.get("text") or "",
                    user=team.bot_user_id,
                    team_id=team.id,
                    bot_id=team.bot_id,
                    blocks=content.get("blocks"),
                    attachments=content.get("attachments"),
                    thread_ts=_str(payload, "thread_ts") or None,
                )
            )
        else:
            self._ephemerals.append(
                Ephemeral(
                    channel=target.channel,
                    user=target.user,
                    message_ts=self._next_ts(),
                    text=content.get("text") or "",
                    blocks=content.get("blocks"),
                    attachments=content.get("attachments"),
                    thread_ts=_str(payload, "thread_ts") or None,
                    sender=team.bot_user_id,
                )
            )

    def receive_upload(self, upload_key: str, content: bytes) -> int:
        """Store the bytes POSTed to an upload URL; return their length (KeyError if unknown)."""
        with self._changed:
            file_id = self._upload_keys[upload_key]
            current = self._files[file_id]
            if current.completed:
                raise KeyError(upload_key)
            self._files[file_id] = replace(current, content=content)
            self._changed.notify_all()
            return len(content)

    def authorize_install(self, params: Mapping[str, str]) -> str:
        """Approve an install on /oauth/v2/authorize; return where Slack redirects the browser.

        Raises ValueError with Slack's error code when the request cannot be approved.
        """
        with self._changed:
            if params.get("client_id") != self.client_id:
                raise ValueError("invalid_client_id")
            redirect_uri = params.get("redirect_uri") or self.oauth_redirect_uri
            if not redirect_uri:
                raise ValueError("bad_redirect_uri")
            scope = params.get("scope", "")
            if not scope and not params.get("user_scope"):
                raise ValueError("no_scopes")
            team_id, installer = self._installer
            code = f"{next(self._ids)}.{int(self._clock())}.sandbox{next(self._ids):08x}"
            self.add_oauth_code(
                code,
                team_id=team_id,
                installer_user_id=installer,
                scope=scope,
                user_scope=params.get("user_scope") or None,
                redirect_uri=params.get("redirect_uri") or None,
            )
            query = {"code": code}
            if params.get("state"):
                query["state"] = params["state"]
            separator = "&" if "?" in redirect_uri else "?"
            return f"{redirect_uri}{separator}{urlencode(query)}"

    # ---- plumbing -----------------------------------------------------------------------------

    def _require_team(self, team_id: str) -> Team:
        team = self._teams.get(team_id)
        if team is None:
            raise KeyError(f"unknown team {team_id}; add it with add_team() first")
        return team

    def _authenticate(self, token: str | None) -> Token:
        if not token:
            raise _Refusal("not_authed")
        record = self._tokens.get(token)
        if record is None:
            raise _Refusal("invalid_auth")
        if record.revoked:
            raise _Refusal("token_revoked")
        return record

    def _raise_injected_fault(self, method: str) -> None:
        queue = self._faults.get(method)
        if not queue:
            return
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.pop(0)
        raise _Refusal(fault.error, status=fault.status, retry_after=fault.retry_after)

    def _next_ts(self) -> str:
        now_us = int(self._clock() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0SB{next(self._ids):06d}"

    def _new_hash(self) -> str:
        return f"{int(self._clock())}.{next(self._ids):08x}"

    def _dm_alias(self, channel: str) -> str:
        user = self._users.get(channel)
        return self.dm_channel_id(channel) if user is not None else channel

    def _find_user(self, token: Token, user_id: str | None) -> User | None:
        user = self._users.get(user_id or "")
        return user if user is not None and user.team_id == token.team_id else None

    def _resolve_channel(
        self,
        token: Token,
        value: str | None,
        *,
        user_means_dm: bool = False,
        missing: str = "channel_not_found",
    ) -> Channel:
        """Find a channel by id (or name, or a user id meaning the DM) as the token sees it."""
        if not value:
            raise _Refusal(missing)
        channel = self._channels.get(value) or self._implicit_dm(token, value)
        if channel is None and user_means_dm and self._find_user(token, value) is not None:
            channel = self._open_dm(token, value)[0]
        if channel is None:
            name = value.removeprefix("#")
            channel = next(
                (
                    c
                    for c in self._channels.values()
                    if c.team_id == token.team_id and c.name == name and not c.is_im
                ),
                None,
            )
        if channel is None or channel.team_id != token.team_id:
            raise _Refusal(missing)
        if token.kind == "bot" and channel.is_private and not channel.is_member:
            raise _Refusal(missing)  # a bot cannot see private channels it was not invited to
        return channel

    def _implicit_dm(self, token: Token, channel_id: str) -> Channel | None:
        """Open the bot's DM with a user when addressed by its id before conversations.open.

        In Slack the DM between an installed app and a member exists (the app's Messages
        tab) and its id arrives in events such as app_home_opened; here that id is
        `dm_channel_id(user)`.
        """
        if not channel_id.startswith("D"):
            return None
        user = next(
            (
                u
                for u in self._users.values()
                if u.team_id == token.team_id and self.dm_channel_id(u.id) == channel_id
            ),
            None,
        )
        return self._open_dm(token, user.id)[0] if user is not None and not user.is_bot else None

    def _check_slack_files(self, team_id: str, blocks: list[dict[str, Any]] | None) -> None:
        """Refuse image blocks whose `slack_file` names no file of the workspace whose upload
        was completed, as Slack does (`invalid_blocks`, "invalid slack file")."""
        problems: list[str] = []
        for index, block in enumerate(blocks or []):
            file = block.get("slack_file") if block.get("type") == "image" else None
            if not isinstance(file, dict):
                continue
            found = self._files.get(str(file.get("id"))) if "id" in file else None
            if "url" in file:
                found = next(
                    (
                        f
                        for f in self._files.values()
                        if file["url"] in (f.to_api()["url_private"], f.to_api()["permalink"])
                    ),
                    None,
                )
            if found is None or found.team_id != team_id or not found.completed:
                problems.append(f"invalid slack file [json-pointer:/blocks/{index}/slack_file]")
        if problems:
            raise _Refusal(
                "invalid_blocks",
                errors=problems,
                response_metadata={"messages": [f"[ERROR] {p}" for p in problems]},
            )

    def _check_can_post(self, token: Token, channel: Channel) -> None:
        if channel.is_archived:
            raise _Refusal("is_archived")
        if token.kind == "bot" and not channel.is_member and not (channel.is_im or channel.is_mpim):
            if "chat:write.public" not in token.scopes:
                raise _Refusal("not_in_channel")

    def _open_dm(self, token: Token, user_id: str) -> tuple[Channel, bool]:
        channel_id = self.dm_channel_id(user_id)
        existing = self._channels.get(channel_id)
        if existing is not None:
            return existing, False
        channel = Channel(
            id=channel_id,
            team_id=token.team_id,
            name=user_id,
            created=int(self._clock()),
            is_im=True,
            user=user_id,
            members=(user_id, token.user_id),
        )
        self._channels[channel_id] = channel
        return channel, True

    def _store_message(self, message: Message) -> None:
        self._messages.setdefault(message.channel, {})[message.ts] = message

    def _take_channel_slot(self, channel_id: str) -> None:
        """Apply the per-channel rate limit, if on: refuse with 429 when the bucket is empty."""
        if self._channel_rate is None:
            return
        rate, burst = self._channel_rate
        now = self._clock()
        bucket = self._buckets.setdefault(channel_id, _Bucket(tokens=float(burst), updated=now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / rate
        raise _Refusal("ratelimited", status=429, retry_after=max(1, math.ceil(wait)))

    def _exchange_trigger(self, trigger_id: str) -> _Trigger:
        trigger = self._triggers.setdefault(trigger_id, _Trigger(issued_at=None))
        if trigger.used:
            raise _Refusal("exchanged_trigger_id")
        too_old = (
            trigger.issued_at is not None and self._clock() - trigger.issued_at > self._trigger_ttl
        )
        if trigger.expired or too_old:
            raise _Refusal("expired_trigger_id")
        return trigger

    def _check_external_id(self, team_id: str, external_id: str | None, *, own: str | None) -> None:
        if not external_id:
            return
        for view in self._views.values():
            if view.team_id == team_id and view.external_id == external_id and view.id != own:
                raise _Refusal("duplicate_external_id")

    # ---- methods: api, auth -------------------------------------------------------------------

    def _api_test(self, ctx: _Ctx) -> dict[str, Any]:
        args = dict(ctx.params)
        if "error" in args:
            raise _Refusal(str(args["error"]), args=args)
        return {"args": args} if args else {}

    def _auth_test(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        team = self._teams[token.team_id]
        user = self._users.get(token.user_id)
        body: dict[str, Any] = {
            "url": f"https://{team.domain}.slack.com/",
            "team": team.name,
            "user": user.name if user is not None else team.bot_name,
            "team_id": team.id,
            "user_id": token.user_id,
        }
        if token.kind == "bot":
            body["bot_id"] = team.bot_id
        body["is_enterprise_install"] = False
        return body

    # ---- methods: chat ------------------------------------------------------------------------

    def _chat_post_message(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._resolve_channel(token, _str(p, "channel"), user_means_dm=True)
        self._check_can_post(token, channel)
        content = _read_content(p)
        self._check_slack_files(token.team_id, content.get("blocks"))
        self._take_channel_slot(channel.id)
        message = Message(
            channel=channel.id,
            ts=self._next_ts(),
            text=content.get("text") or "",
            user=token.user_id,
            team_id=token.team_id,
            bot_id=self._teams[token.team_id].bot_id if token.kind == "bot" else None,
            blocks=content.get("blocks"),
            attachments=content.get("attachments"),
            thread_ts=_str(p, "thread_ts") or None,
            reply_broadcast=_flag(p, "reply_broadcast"),
            metadata=_metadata(p),
        )
        self._store_message(message)
        return {"channel": channel.id, "ts": message.ts, "message": message.to_api()}

    def _chat_update(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._resolve_channel(token, _str(p, "channel"))
        ts = _str(p, "ts")
        current = self._messages.get(channel.id, {}).get(ts or "")
        if current is None:
            raise _Refusal("message_not_found")
        if current.user != token.user_id:
            raise _Refusal("cant_update_message")
        if channel.is_archived:
            raise _Refusal("is_inactive")
        content = _read_content(p)
        self._check_slack_files(token.team_id, content.get("blocks"))
        changes: dict[str, Any] = dict(content)
        if "metadata" in p:
            changes["metadata"] = _metadata(p) or None
        updated = replace(
            current, **changes, edited_ts=self._next_ts(), edit_count=current.edit_count + 1
        )
        self._store_message(updated)
        return {
            "channel": channel.id,
            "ts": updated.ts,
            "text": updated.text,
            "message": updated.to_api(),
        }

    def _chat_post_ephemeral(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._resolve_channel(token, _str(p, "channel"))
        if channel.is_archived:
            raise _Refusal("is_archived")
        recipient = self._find_user(token, _str(p, "user"))
        if recipient is None:
            raise _Refusal("user_not_in_channel")
        if channel.members is not None and recipient.id not in channel.members:
            raise _Refusal("user_not_in_channel")
        content = _read_content(p)
        self._check_slack_files(token.team_id, content.get("blocks"))
        ephemeral = Ephemeral(
            channel=channel.id,
            user=recipient.id,
            message_ts=self._next_ts(),
            text=content.get("text") or "",
            blocks=content.get("blocks"),
            attachments=content.get("attachments"),
            thread_ts=_str(p, "thread_ts") or None,
            sender=token.user_id,
        )
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.message_ts}

    def _chat_delete(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._resolve_channel(token, _str(p, "channel"))
        ts = _str(p, "ts") or ""
        current = self._messages.get(channel.id, {}).get(ts)
        if current is None:
            raise _Refusal("message_not_found")
        if current.user != token.user_id:
            raise _Refusal("cant_delete_message")
        del self._messages[channel.id][ts]
        return {"channel": channel.id, "ts": ts}

    def _chat_get_permalink(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._resolve_channel(token, _str(p, "channel"))
        ts = _str(p, "message_ts") or ""
        message = self._messages.get(channel.id, {}).get(ts)
        if message is None:
            raise _Refusal("message_not_found")
        team = self._teams[token.team_id]
        permalink = f"https://{team.domain}.slack.com/archives/{channel.id}/p{ts.replace('.', '')}"
        if message.thread_ts is not None and message.thread_ts != message.ts:
            # A reply in a thread opens with its thread, as Slack's links do.
            permalink += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": permalink}

    # ---- methods: views -----------------------------------------------------------------------

    def _views_open(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        trigger_id = _str(p, "trigger_id") or _str(p, "interactivity_pointer")
        if not trigger_id:
            raise _invalid_arguments("invalid `trigger_id`")
        view = _read_view(p)
        trigger = self._exchange_trigger(trigger_id)
        _check_view(view, allowed_types=("modal",))
        external_id = _str(view, "external_id") or None
        self._check_external_id(token.team_id, external_id, own=None)
        view_id = self._new_id("V")
        record = View(
            id=view_id,
            team_id=token.team_id,
            type="modal",
            definition=view,
            hash=self._new_hash(),
            trigger_id=trigger_id,
            user_id=trigger.user_id,
            external_id=external_id,
            root_view_id=view_id,
            previous_view_id=None,
            opened_by="views.open",
            update_count=0,
            bot_id=self._teams[token.team_id].bot_id,
        )
        trigger.used = True
        self._views[view_id] = record
        return {"view": record.to_api()}

    def _views_push(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        trigger_id = _str(p, "trigger_id") or _str(p, "interactivity_pointer")
        if not trigger_id:
            raise _invalid_arguments("invalid `trigger_id`")
        view = _read_view(p)
        trigger = self._exchange_trigger(trigger_id)
        _check_view(view, allowed_types=("modal",))
        external_id = _str(view, "external_id") or None
        self._check_external_id(token.team_id, external_id, own=None)
        view_id = self._new_id("V")
        below = self._views.get(trigger.view_id or "")
        root_view_id = below.root_view_id if below is not None else view_id
        if below is not None:
            depth = sum(1 for v in self._views.values() if v.root_view_id == root_view_id)
            if depth >= MAX_VIEW_STACK:
                raise _Refusal("push_limit_reached")
        record = View(
            id=view_id,
            team_id=token.team_id,
            type="modal",
            definition=view,
            hash=self._new_hash(),
            trigger_id=trigger_id,
            user_id=trigger.user_id,
            external_id=external_id,
            root_view_id=root_view_id,
            previous_view_id=below.id if below is not None else None,
            opened_by="views.push",
            update_count=0,
            bot_id=self._teams[token.team_id].bot_id,
        )
        trigger.used = True
        self._views[view_id] = record
        return {"view": record.to_api()}

    def _views_update(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        view_id = _str(p, "view_id")
        external_id = _str(p, "external_id")
        if not view_id and not external_id:
            raise _invalid_arguments("[ERROR] either view_id or external_id is required")
        current = next(
            (
                v
                for v in self._views.values()
                if v.team_id == token.team_id
                and (
                    (view_id and v.id == view_id) or (not view_id and v.external_id == external_id)
                )
            ),
            None,
        )
        if current is None:
            raise _Refusal("not_found")
        expected_hash = _str(p, "hash")
        if expected_hash and expected_hash != current.hash:
            raise _Refusal("hash_conflict")
        view = _read_view(p)
        _check_view(view, allowed_types=(current.type,))
        new_external_id = _str(view, "external_id") or current.external_id
        self._check_external_id(token.team_id, new_external_id, own=current.id)
        updated = replace(
            current,
            definition=view,
            hash=self._new_hash(),
            external_id=new_external_id,
            update_count=current.update_count + 1,
        )
        self._views[current.id] = updated
        return {"view": updated.to_api()}

    def _views_publish(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        user = self._find_user(token, _str(p, "user_id"))
        if user is None:
            raise _invalid_arguments("invalid `user_id`")
        view = _read_view(p)
        _check_view(view, allowed_types=("home",))
        key = (token.team_id, user.id)
        current = self._views.get(self._home_views.get(key, ""))
        expected_hash = _str(p, "hash")
        if current is not None and expected_hash and expected_hash != current.hash:
            raise _Refusal("hash_conflict")
        external_id = _str(view, "external_id") or None
        own = current.id if current is not None else None
        self._check_external_id(token.team_id, external_id, own=own)
        if current is None:
            view_id = self._new_id("V")
            record = View(
                id=view_id,
                team_id=token.team_id,
                type="home",
                definition=view,
                hash=self._new_hash(),
                trigger_id=None,
                user_id=user.id,
                external_id=external_id,
                root_view_id=view_id,
                previous_view_id=None,
                opened_by="views.publish",
                update_count=0,
                bot_id=self._teams[token.team_id].bot_id,
            )
            self._home_views[key] = view_id
        else:
            record = replace(
                current,
                definition=view,
                hash=self._new_hash(),
                external_id=external_id,
                update_count=current.update_count + 1,
            )
        self._views[record.id] = record
        return {"view": record.to_api()}

    # ---- methods: users, conversations --------------------------------------------------------

    def _users_info(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        user = self._find_user(token, _str(ctx.params, "user"))
        if user is None:
            raise _Refusal("user_not_found")
        return {"user": user.to_api(with_email="users:read.email" in token.scopes)}

    def _users_lookup_by_email(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        email = (_str(ctx.params, "email") or "").strip().lower()
        user = next(
            (
                u
                for u in self._users.values()
                if u.team_id == token.team_id and email and (u.email or "").lower() == email
            ),
            None,
        )
        if user is None:
            raise _Refusal("users_not_found")
        return {"user": user.to_api(with_email=True)}

    def _conversations_open(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        return_im = _flag(p, "return_im")
        channel_id = _str(p, "channel")
        if channel_id:
            existing = self._channels.get(channel_id) or self._implicit_dm(token, channel_id)
            if existing is None or existing.team_id != token.team_id:
                raise _Refusal("channel_not_found")
            if not (existing.is_im or existing.is_mpim):
                raise _Refusal("method_not_supported_for_channel_type")
            return _opened(existing, created=False, full=return_im)
        raw = p.get("users")
        ids = raw if isinstance(raw, list) else str(raw or "").split(",")
        user_ids = list(dict.fromkeys(str(u).strip() for u in ids if str(u).strip()))
        if not user_ids:
            raise _Refusal("users_list_not_supplied")
        for user_id in user_ids:
            if self._find_user(token, user_id) is None:
                raise _Refusal("user_not_found")
        others = [u for u in user_ids if u != token.user_id] or user_ids
        if len(others) == 1:
            _require_scope(token, "im:write")
            channel, created = self._open_dm(token, others[0])
            return _opened(channel, created=created, full=return_im)
        _require_scope(token, "mpim:write")
        if len(others) > MAX_MPIM_USERS:
            raise _Refusal("too_many_users")
        members = tuple(sorted({*others, token.user_id}))
        existing = next(
            (
                c
                for c in self._channels.values()
                if c.is_mpim and c.team_id == token.team_id and c.members == members
            ),
            None,
        )
        if existing is not None:
            return _opened(existing, created=False, full=return_im)
        names = [self._users[u].name for u in members]
        channel = Channel(
            id=self._new_id("G"),
            team_id=token.team_id,
            name="mpdm-" + "--".join(names) + "-1",
            created=int(self._clock()),
            is_private=True,
            is_mpim=True,
            members=members,
        )
        self._channels[channel.id] = channel
        return _opened(channel, created=True, full=return_im)

    def _conversations_info(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        channel = self._resolve_channel(token, _str(ctx.params, "channel"))
        if channel.is_im:
            _require_scope(token, "im:read")
        elif channel.is_mpim:
            _require_scope(token, "mpim:read")
        elif channel.is_private:
            _require_scope(token, "groups:read")
        else:
            _require_scope(token, "channels:read")
        return {"channel": channel.to_api()}

    def _conversations_list(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        types = [t.strip() for t in (_str(p, "types") or "public_channel").split(",") if t.strip()]
        if not types or any(t not in _TYPE_SCOPES for t in types):
            raise _Refusal("invalid_types")
        for kind in types:
            _require_scope(token, _TYPE_SCOPES[kind])
        skip_archived = _flag(p, "exclude_archived")
        found = [
            c
            for c in self._channels.values()
            if c.team_id == token.team_id
            and _conversation_type(c) in types
            and self._visible_to(token, c)
            and not (skip_archived and c.is_archived)
        ]
        page, cursor = _page(found, p, default_limit=100, max_limit=1000)
        return {
            "channels": [c.to_api() for c in page],
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_history(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._readable_channel(token, _str(p, "channel"))
        inside = _ts_window(p)
        stored = self._messages.get(channel.id, {})
        # The channel's own messages: thread parents and plain posts, and replies also sent
        # to the channel; the other replies are read with conversations.replies.
        found = [
            m
            for m in stored.values()
            if (m.thread_ts in (None, m.ts) or m.reply_broadcast) and inside(m.ts)
        ]
        found.sort(key=lambda m: _ts_key(m.ts), reverse=True)
        page, cursor = _page(found, p, default_limit=100, max_limit=999)
        return {
            "messages": [self._history_message(m) for m in page],
            "has_more": bool(cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_replies(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        channel = self._readable_channel(token, _str(p, "channel"))
        ts = _str(p, "ts")
        if not ts:
            raise _invalid_arguments("[ERROR] missing required field: ts")
        stored = self._messages.get(channel.id, {})
        named = stored.get(ts)
        if named is None:
            raise _Refusal("thread_not_found")
        parent = stored.get(named.thread_ts or named.ts)
        if parent is None:  # the parent was deleted: Slack still answers with the replies
            parent = named
        inside = _ts_window(p)
        replies = [
            m
            for m in stored.values()
            if m.thread_ts == parent.ts and m.ts != parent.ts and inside(m.ts)
        ]
        replies.sort(key=lambda m: _ts_key(m.ts))
        page, cursor = _page(replies, p, default_limit=1000, max_limit=1000)
        # Every page starts with the thread's parent, as Slack's do.
        return {
            "messages": [self._history_message(m) for m in [parent, *page]],
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def _visible_to(self, token: Token, channel: Channel) -> bool:
        if channel.is_im:
            return (
                token.kind != "bot" or channel.members is None or token.user_id in channel.members
            )
        if channel.is_mpim:
            return channel.members is not None and token.user_id in channel.members
        return not (token.kind == "bot" and channel.is_private and not channel.is_member)

    def _readable_channel(self, token: Token, value: str | None) -> Channel:
        channel = self._resolve_channel(token, value)
        _require_scope(token, _HISTORY_SCOPES[_conversation_type(channel)])
        if not (channel.is_im or channel.is_mpim) and not channel.is_member:
            raise _Refusal("not_in_channel")
        return channel

    def _history_message(self, message: Message) -> dict[str, Any]:
        """A message as conversations.history and .replies return it: a thread's parent
        with its reply count, repliers and latest reply; a reply with its parent's author."""
        out = message.to_api()
        replies = sorted(
            (
                m
                for m in self._messages.get(message.channel, {}).values()
                if m.thread_ts == message.ts and m.ts != message.ts
            ),
            key=lambda m: _ts_key(m.ts),
        )
        if replies:
            users = list(dict.fromkeys(m.user for m in replies))
            out.update(
                thread_ts=message.ts,
                reply_count=len(replies),
                reply_users_count=len(users),
                reply_users=users[:5],
                latest_reply=replies[-1].ts,
                is_locked=False,
                subscribed=False,
            )
        elif message.thread_ts is not None and message.thread_ts != message.ts:
            parent = self._messages.get(message.channel, {}).get(message.thread_ts)
            if parent is not None:
                out["parent_user_id"] = parent.user
        return out

    # ---- methods: files -----------------------------------------------------------------------

    def _files_get_upload_url(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        filename = _str(p, "filename")
        if not filename:
            raise _invalid_arguments("[ERROR] missing required field: filename")
        raw_length = _str(p, "length")
        if raw_length is None or not raw_length.strip().isdigit():
            raise _invalid_arguments("[ERROR] missing required field: length")
        length = int(raw_length)
        if length == 0:
            raise _Refusal("missing_argument")
        alt_txt = _str(p, "alt_txt")
        if alt_txt is not None and len(alt_txt) > 1000:
            raise _Refusal("alt_txt_too_large")
        file_id = self._new_id("F")
        upload_key = f"{file_id}-{next(self._ids):010d}"
        self._files[file_id] = UploadedFile(
            id=file_id,
            team_id=token.team_id,
            user=token.user_id,
            filename=filename,
            length=length,
            created=int(self._clock()),
            alt_txt=alt_txt,
            snippet_type=_str(p, "snippet_type"),
        )
        self._upload_keys[upload_key] = file_id
        return {"upload_url": f"{ctx.base_url}upload/v1/{upload_key}", "file_id": file_id}

    def _files_complete_upload(self, ctx: _Ctx) -> dict[str, Any]:
        token = _authed(ctx)
        p = ctx.params
        items = p.get("files")
        if not isinstance(items, list) or not items:
            raise _invalid_arguments("[ERROR] files must be a non-empty JSON array")
        targets: list[str] = []
        channel_id = _str(p, "channel_id")
        if channel_id:
            targets.append(channel_id)
        raw_channels = p.get("channels")
        if isinstance(raw_channels, list):
            targets += [str(c) for c in raw_channels]
        elif raw_channels:
            targets += [c.strip() for c in str(raw_channels).split(",") if c.strip()]
        channels = [
            self._resolve_channel(token, t, user_means_dm=True, missing="invalid_channel")
            for t in dict.fromkeys(targets)
        ]
        thread_ts = _str(p, "thread_ts") or None
        if thread_ts is not None and len(channels) != 1:
            raise _invalid_arguments("[ERROR] thread_ts needs exactly one channel")
        done: list[UploadedFile] = []
        for item in items:
            file_id = item.get("id") if isinstance(item, dict) else None
            current = self._files.get(str(file_id))
            if (
                current is None
                or current.team_id != token.team_id
                or current.content is None
                or current.completed
            ):
                raise _Refusal("file_not_found")
            title = item.get("title") if isinstance(item, dict) else None
            done.append(
                replace(
                    current,
                    title=str(title) if title else current.filename,
                    completed=True,
                    channels=tuple(c.id for c in channels),
                    initial_comment=_str(p, "initial_comment"),
                    thread_ts=thread_ts,
                )
            )
        for uploaded in done:
            self._files[uploaded.id] = uploaded
        shared = [f.to_api() for f in done]
        for channel in channels:
            self._store_message(
                Message(
                    channel=channel.id,
                    ts=self._next_ts(),
                    text=_str(p, "initial_comment") or "",
                    user=token.user_id,
                    team_id=token.team_id,
                    bot_id=self._teams[token.team_id].bot_id if token.kind == "bot" else None,
                    thread_ts=thread_ts,
                    files=shared,
                )
            )
        return {"files": shared}

    # ---- methods: oauth -----------------------------------------------------------------------

    def _oauth_v2_access(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        client_id, client_secret = ctx.client_credentials or (
            _str(p, "client_id") or "",
            _str(p, "client_secret") or "",
        )
        if client_id != self.client_id:
            raise _Refusal("invalid_client_id")
        if client_secret != self.client_secret:
            raise _Refusal("bad_client_secret")
        if _str(p, "grant_type") == "refresh_token" or p.get("refresh_token"):
            raise _Refusal("invalid_refresh_token")  # the stand-in does not rotate tokens
        code = _str(p, "code") or ""
        grant = self._oauth_codes.get(code)
        if grant is None:
            raise _Refusal("invalid_code")
        if grant.redirect_uri is not None and _str(p, "redirect_uri") != grant.redirect_uri:
            raise _Refusal("bad_redirect_uri")
        del self._oauth_codes[code]
        team = self._teams.get(grant.team_id) or self.add_team(
            grant.team_id, grant.team_name or f"Workspace {grant.team_id}"
        )
        serial = next(self._ids)
        bot_token = f"xoxb-{serial:010d}-{team.id}-sandboxinstall{serial:06d}"
        scopes = frozenset(s for s in grant.scope.split(",") if s)
        self.add_token(bot_token, team.id, scopes=scopes)
        authed_user: dict[str, Any] = {"id": grant.installer_user_id}
        if grant.user_scope:
            user_token = f"xoxp-{serial:010d}-{grant.installer_user_id}-sandboxuser{serial:06d}"
            self.add_token(
                user_token,
                team.id,
                scopes=frozenset(s for s in grant.user_scope.split(",") if s),
                user_id=grant.installer_user_id,
            )
            authed_user.update(
                {"scope": grant.user_scope, "access_token": user_token, "token_type": "user"}
            )
        return {
            "access_token": bot_token,
            "token_type": "bot",
            "scope": grant.scope,
            "bot_user_id": team.bot_user_id,
            "app_id": APP_ID,
            "team": {"name": team.name, "id": team.id},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": authed_user,
        }


# --------------------------------------------------------------------------------------------
# Validation and parameter helpers


def _authed(ctx: _Ctx) -> Token:
    if ctx.token is None:  # only routes with authed=False run without a token
        raise _Refusal("not_authed")
    return ctx.token


def _require_scope(token: Token, scope: str) -> None:
    if scope not in token.scopes:
        raise _Refusal("missing_scope", needed=scope, provided=",".join(sorted(token.scopes)))


def _str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise _invalid_arguments(f"[ERROR] must be a string [json-pointer:/{key}]")


def _flag(params: Mapping[str, Any], key: str) -> bool:
    value = params.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return False


def _metadata(params: Mapping[str, Any]) -> dict[str, Any] | None:
    value = params.get("metadata")
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or "event_type" not in value:
        raise _Refusal("invalid_metadata_format")
    return value


_TYPE_SCOPES: Final = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "mpim": "mpim:read",
    "im": "im:read",
}
_HISTORY_SCOPES: Final = {
    "public_channel": "channels:history",
    "private_channel": "groups:history",
    "mpim": "mpim:history",
    "im": "im:history",
}


def _conversation_type(channel: Channel) -> str:
    if channel.is_im:
        return "im"
    if channel.is_mpim:
        return "mpim"
    return "private_channel" if channel.is_private else "public_channel"


def _page(
    items: list[Any], params: Mapping[str, Any], *, default_limit: int, max_limit: int
) -> tuple[list[Any], str]:
    """One page of `items` for `limit` and `cursor`; return it and the next cursor ("" at the
    end). Slack's cursors are opaque base64; a limit above the method's maximum is cut to it."""
    raw_limit = (_str(params, "limit") or "").strip()
    if raw_limit and not raw_limit.isdigit():
        raise _Refusal("invalid_limit")
    limit = min(int(raw_limit), max_limit) if raw_limit and int(raw_limit) > 0 else default_limit
    start = 0
    cursor = (_str(params, "cursor") or "").strip()
    if cursor:
        try:
            kind, _, offset = base64.b64decode(cursor, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refusal("invalid_cursor") from None
        if kind != "next" or not offset.isdigit():
            raise _Refusal("invalid_cursor")
        start = int(offset)
    end = start + limit
    following = base64.b64encode(f"next:{end}".encode()).decode() if end < len(items) else ""
    return items[start:end], following


def _ts_window(params: Mapping[str, Any]) -> Callable[[str], bool]:
    """The test of a message ts against `oldest`, `latest` and `inclusive` (Slack's defaults:
    from the beginning to now, both ends left out)."""
    oldest = _ts_bound(params, "oldest")
    latest = _ts_bound(params, "latest")
    inclusive = _flag(params, "inclusive")

    def inside(ts: str) -> bool:
        key = _ts_key(ts)
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            return False
        return latest is None or key < latest or (key == latest and inclusive)

    return inside


def _ts_bound(params: Mapping[str, Any], key: str) -> tuple[int, int] | None:
    value = (_str(params, key) or "").strip()
    if not value or value == "0":
        return None
    if not re.fullmatch(r"\d+(\.\d{1,6})?", value):
        raise _Refusal("invalid_ts_" + key)
    seconds, _, micros = value.partition(".")
    return int(seconds), int(micros.ljust(6, "0") or 0)


def _opened(channel: Channel, *, created: bool, full: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel.to_api() if full else {"id": channel.id}}
    if not created:
        body = {"no_op": True, "already_open": True, **body}
    return body


def _read_content(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the text, blocks and attachments of a message as Slack does."""
    content: dict[str, Any] = {}
    text = _str(params, "text")
    markdown_text = _str(params, "markdown_text")
    if markdown_text is not None:
        if text or params.get("blocks") is not None:
            raise _Refusal("markdown_text_conflict")
        text = markdown_text
    if text is not None:
        content["text"] = text
    blocks = params.get("blocks")
    if blocks is not None:
        if isinstance(blocks, str):
            raise _Refusal("invalid_blocks_format")  # form text that is not JSON
        problems = _block_problems(blocks, limit=MAX_MESSAGE_BLOCKS, pointer="/blocks")
        if problems:
            raise _Refusal("invalid_blocks", response_metadata={"messages": problems})
        content["blocks"] = blocks
    attachments = params.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
            raise _Refusal("invalid_attachments")
        if len(attachments) > MAX_ATTACHMENTS:
            raise _Refusal("too_many_attachments")
        content["attachments"] = attachments
    if not (content.get("text") or content.get("blocks") or content.get("attachments")):
        raise _Refusal("no_text")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise _Refusal("msg_too_long")
    return content


def _read_view(params: Mapping[str, Any]) -> dict[str, Any]:
    view = params.get("view")
    if view is None:
        raise _invalid_arguments("[ERROR] missing required field: view")
    if not isinstance(view, dict):
        raise _invalid_arguments("[ERROR] must provide an object [json-pointer:/view]")
    if len(json.dumps(view)) > MAX_VIEW_BYTES:
        raise _Refusal("view_too_large")
    return view


def _check_view(view: dict[str, Any], *, allowed_types: tuple[str, ...]) -> None:
    problems: list[str] = []
    view_type = view.get("type")
    if view_type not in allowed_types:
        allowed = ", ".join(allowed_types)
        problems.append(f"[ERROR] must be one of: {allowed} [json-pointer:/view/type]")
    if view_type == "modal":
        problems += _plain_text_problems(view.get("title"), "/view/title", required=True)
        problems += _plain_text_problems(view.get("submit"), "/view/submit", required=False)
        problems += _plain_text_problems(view.get("close"), "/view/close", required=False)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            problems.append(
                "[ERROR] must provide submit when the view has input blocks "
                "[json-pointer:/view/submit]"
            )
    if "blocks" not in view:
        problems.append("[ERROR] missing required field: blocks [json-pointer:/view]")
    else:
        problems += _block_problems(view["blocks"], limit=MAX_VIEW_BLOCKS, pointer="/view/blocks")
    for key, limit in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        value = view.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            problems.append(
                f"[ERROR] must be a string of at most {limit} characters [json-pointer:/view/{key}]"
            )
    if problems:
        raise _invalid_arguments(*problems)


def _plain_text_problems(value: Any, pointer: str, *, required: bool) -> list[str]:
    if value is None:
        return [f"[ERROR] missing required field: {pointer.rsplit('/', 1)[-1]}"] if required else []
    if not isinstance(value, dict) or value.get("type") != "plain_text":
        return [f"[ERROR] must be a plain_text text object [json-pointer:{pointer}]"]
    text = value.get("text")
    if not isinstance(text, str) or not text:
        return [f"[ERROR] missing required field: text [json-pointer:{pointer}]"]
    if len(text) > 24:
        return [f"[ERROR] must be less than 25 characters [json-pointer:{pointer}/text]"]
    return []


def message_block_problems(blocks: Any) -> list[str]:
    """Slack's messages for what the stand-in would refuse in a message's blocks (the
    Block Kit rules it checks; files are checked when posted): empty when none."""
    return _block_problems(blocks, limit=MAX_MESSAGE_BLOCKS, pointer="/blocks")


def _block_problems(blocks: Any, *, limit: int, pointer: str) -> list[str]:
    """Check the Block Kit rules that Salesbot's cards can break; return Slack's messages."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must provide an array [json-pointer:{pointer}]"]
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        at = f"{pointer}/{index}"
        if not isinstance(block, dict):
            problems.append(f"[ERROR] must provide an object [json-pointer:{at}]")
            continue
        block_type = block.get("type")
        if not isinstance(block_type, str) or not block_type:
            problems.append(f"[ERROR] missing required field: type [json-pointer:{at}]")
            continue
        if block_type not in _KNOWN_BLOCK_TYPES:
            problems.append(f"[ERROR] unsupported type: {block_type} [json-pointer:{at}/type]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255:
                problems.append(f"[ERROR] invalid block_id [json-pointer:{at}/block_id]")
            elif block_id in block_ids:
                problems.append(f"[ERROR] duplicate block_id: {block_id} [json-pointer:{at}]")
            else:
                block_ids.add(block_id)
        problems += _block_content_problems(block, block_type, at)
    return problems


def _block_content_problems(block: dict[str, Any], block_type: str, at: str) -> list[str]:
    problems: list[str] = []
    if block_type == "section":
        text = block.get("text")
        fields = block.get("fields")
        if text is None and not fields:
            problems.append(f"[ERROR] must provide text or fields [json-pointer:{at}]")
        if isinstance(text, dict) and len(str(text.get("text", ""))) > 3000:
            problems.append(f"[ERROR] must be less than 3001 characters [json-pointer:{at}/text]")
        if isinstance(fields, list) and len(fields) > 10:
            problems.append(f"[ERROR] no more than 10 items allowed [json-pointer:{at}/fields]")
    elif block_type == "header":
        text = block.get("text")
        if not isinstance(text, dict) or text.get("type") != "plain_text":
            problems.append(f"[ERROR] must be a plain_text text object [json-pointer:{at}/text]")
        elif len(str(text.get("text", ""))) > 150:
            problems.append(f"[ERROR] must be less than 151 characters [json-pointer:{at}/text]")
    elif block_type == "image":
        problems += _image_problems(block, at)
    elif block_type in ("actions", "context"):
        elements = block.get("elements")
        limit = 25 if block_type == "actions" else 10
        if not isinstance(elements, list) or not elements:
            problems.append(f"[ERROR] must provide elements [json-pointer:{at}/elements]")
        elif len(elements) > limit:
            problems.append(
                f"[ERROR] no more than {limit} items allowed [json-pointer:{at}/elements]"
            )
        elif block_type == "actions":
            problems += _action_element_problems(elements, at)
    return problems


def _image_problems(block: dict[str, Any], at: str) -> list[str]:
    """An image block: alt text, an optional title, and exactly one of `image_url` and
    `slack_file`, which names its file by exactly one of `id` and `url`."""
    problems: list[str] = []
    alt_text = block.get("alt_text")
    if not isinstance(alt_text, str) or not alt_text:
        problems.append(f"[ERROR] missing required field: alt_text [json-pointer:{at}]")
    elif len(alt_text) > MAX_ALT_TEXT_CHARS:
        problems.append(f"[ERROR] must be less than 2001 characters [json-pointer:{at}/alt_text]")
    title = block.get("title")
    if title is not None:
        if not isinstance(title, dict) or title.get("type") != "plain_text":
            problems.append(f"[ERROR] must be a plain_text text object [json-pointer:{at}/title]")
        elif len(str(title.get("text", ""))) > MAX_ALT_TEXT_CHARS:
            problems.append(
                f"[ERROR] must be less than 2001 characters [json-pointer:{at}/title/text]"
            )
    file = block.get("slack_file")
    if ("image_url" in block) == (file is not None):
        problems.append(
            f"[ERROR] must provide exactly one of: image_url, slack_file [json-pointer:{at}]"
        )
    elif "image_url" in block:
        url = block["image_url"]
        if not isinstance(url, str) or not url or len(url) > 3000:
            problems.append(f"[ERROR] invalid image_url [json-pointer:{at}/image_url]")
    elif not isinstance(file, dict) or ("id" in file) == ("url" in file):
        problems.append(
            f"[ERROR] must provide exactly one of: id, url [json-pointer:{at}/slack_file]"
        )
    elif "id" in file and not (isinstance(file["id"], str) and _FILE_ID.fullmatch(file["id"])):
        problems.append(
            f"[ERROR] input must match regex pattern: {_FILE_ID.pattern} "
            f"[json-pointer:{at}/slack_file/id]"
        )
    return problems


def _action_element_problems(elements: list[Any], at: str) -> list[str]:
    problems: list[str] = []
    action_ids: set[str] = set()
    for index, element in enumerate(elements):
        where = f"{at}/elements/{index}"
        if not isinstance(element, dict) or not element.get("type"):
            problems.append(f"[ERROR] missing required field: type [json-pointer:{where}]")
            continue
        action_id = element.get("action_id")
        if isinstance(action_id, str):
            if action_id in action_ids:
                problems.append(f"[ERROR] duplicate action_id: {action_id} [json-pointer:{where}]")
            action_ids.add(action_id)
        if element["type"] == "button":
            text = element.get("text")
            if not isinstance(text, dict) or len(str(text.get("text", ""))) > 75:
                problems.append(f"[ERROR] invalid button text [json-pointer:{where}/text]")
            value = element.get("value")
            if value is not None and len(str(value)) > 2000:
                problems.append(
                    f"[ERROR] must be less than 2001 characters [json-pointer:{where}/value]"
                )
    return problems


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _tz_label_and_offset(tz: str) -> tuple[str, int]:
    try:
        now = datetime.now(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError):
        return tz, 0  # an unknown zone name is shown as given, like Slack's free-text fallback
    offset = now.utcoffset()
    return now.tzname() or tz, int(offset.total_seconds()) if offset is not None else 0


# --------------------------------------------------------------------------------------------
# HTTP


async def _read_params(request: Request) -> tuple[dict[str, Any], str | None, str | None]:
    """Read a Web API request as Slack does: return (params, token from the body, body error)."""
    params: dict[str, Any] = dict(request.query_params)
    token = params.pop("token", None)
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body:
        if media_type == "application/json":
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return params, token, "invalid_json"
            if not isinstance(payload, dict):
                return params, token, "invalid_json"
            # Slack reads the token of a JSON body only from the Authorization header.
            payload.pop("token", None)
            params.update(payload)
        elif media_type == "application/x-www-form-urlencoded":
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                return params, token, "invalid_form_data"
            token = form.pop("token", None) or token
            params.update(form)
        elif media_type == "multipart/form-data":
            async with request.form() as multipart:
                for key, value in multipart.multi_items():
                    params[key] = value.filename if isinstance(value, UploadFile) else value
            form_token = params.pop("token", None)
            token = form_token if isinstance(form_token, str) and form_token else token
        elif not media_type:
            return params, token, "missing_post_type"
        else:
            return params, token, "invalid_post_type"
    for key in _JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            try:
                params[key] = json.loads(params[key])
            except json.JSONDecodeError:
                pass  # left as text: the method answers invalid_blocks_format and the like
    return params, token, None


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, separator, secret = decoded.partition(":")
    return (client_id, secret) if separator else None


def create_app(stand_in: SlackStandIn) -> Starlette:
    """Serve `stand_in` as Slack: Web API, file upload URLs, OAuth authorize, response URLs."""

    async def api(request: Request) -> Response:
        params, body_token, body_error = await _read_params(request)
        reply = stand_in.call(
            request.path_params["method"],
            params,
            token=_bearer_token(request) or body_token,
            http_method=request.method,
            base_url=str(request.base_url),
            client_credentials=_basic_credentials(request),
            body_error=body_error,
        )
        return Response(
            content=json.dumps(reply.body),
            status_code=reply.status,
            headers=reply.headers,
            media_type="application/json; charset=utf-8",
        )

    async def upload(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        content = b""
        if media_type == "multipart/form-data":
            async with request.form() as form:
                for _, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        content = await value.read()
                        break
                    content = value.encode("utf-8")
        else:
            content = await request.body()
        try:
            size = stand_in.receive_upload(request.path_params["key"], content)
        except KeyError:
            return PlainTextResponse("upload not found", status_code=404)
        return PlainTextResponse(f"OK - {size}")

    async def respond(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(payload, dict):
            return PlainTextResponse("invalid_payload", status_code=400)
        for key in _JSON_FIELDS & payload.keys():
            if isinstance(payload[key], str):
                try:
                    payload[key] = json.loads(payload[key])
                except json.JSONDecodeError:
                    pass  # left as text: answered invalid_blocks_format
        status, answer = stand_in.respond(request.path_params["key"], payload)
        return PlainTextResponse(answer, status_code=status)

    async def authorize(request: Request) -> Response:
        try:
            location = stand_in.authorize_install(dict(request.query_params))
        except ValueError as refused:
            return PlainTextResponse(str(refused), status_code=400)
        return RedirectResponse(location, status_code=302)

    return Starlette(
        routes=[
            Route("/api/{method}", api, methods=["GET", "POST"]),
            Route("/upload/v1/{key}", upload, methods=["POST"]),
            Route("/oauth/v2/authorize", authorize, methods=["GET"]),
            Route("/hooks/commands/{key:path}", respond, methods=["POST"]),
        ]
    )


def api_base_url(server: RunningServer) -> str:
    """Return the `base_url` a WebClient (or SLACK_API_URL) needs for a served stand-in."""
    return f"{server.url}/api/"


def start_slack_stand_in(
    stand_in: SlackStandIn | None = None, *, port: int | None = None
) -> tuple[SlackStandIn, RunningServer]:
    """Serve a (new) stand-in on a loopback port in a thread; stop it with `server.stop()`."""
    stand_in = stand_in or SlackStandIn()
    server = serve_in_thread(create_app(stand_in), port=port, access_logger="sandbox.slack.access")
    stand_in.served_url = server.url
    return stand_in, server


__all__ = [
    "APP_ID",
    "DEFAULT_ADMIN_USER_ID",
    "DEFAULT_BOT_ID",
    "DEFAULT_BOT_SCOPES",
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_BOT_USER_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TEAM_ID",
    "ApiReply",
    "Channel",
    "Ephemeral",
    "Message",
    "RecordedCall",
    "SlackStandIn",
    "Team",
    "Token",
    "UploadedFile",
    "User",
    "View",
    "api_base_url",
    "create_app",
    "start_slack_stand_in",
]
