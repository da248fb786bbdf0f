"""The Slack app manifest and the listeners agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from slack_bolt import App, BoltRequest, BoltResponse

from bot.slack_app import BOT_SCOPES
from handlers.slack import actions, commands, events, proposals, relabel, views
from handlers.slack.common import SlackDeps
from handlers.slack.ids import ActionId, CallbackId, Command

MANIFEST = Path(__file__).parents[2] / "manifest.yml"


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def _registered() -> App:
    app = App(signing_secret="x" * 32, token="xoxb-test", token_verification_enabled=False)
    deps = SlackDeps(
        outreach=None,  # type: ignore[arg-type]
        accounts=None,  # type: ignore[arg-type]
        rules=None,  # type: ignore[arg-type]
        session_factory=None,  # type: ignore[arg-type]
        clock=None,  # type: ignore[arg-type]
        wake_worker=lambda: None,
        gmail_connect_url=lambda actor: None,
        gmail_address=lambda actor: None,
        reply_policies=None,  # type: ignore[arg-type]
    )
    # In bot/slack_app.py's order: proposals and relabel before the actions' catch-all.
    for module in (commands, proposals, relabel, actions, views, events):
        module.register(app, deps)
    return app


def _handled(app: App, body: dict[str, Any]) -> bool:
    """True when some registered listener matches this payload."""
    request = BoltRequest(body=body, mode="socket_mode")
    response = BoltResponse(status=200)
    return any(listener.matches(req=request, resp=response) for listener in app._listeners)


def _command(name: str) -> dict[str, Any]:
    return {"command": name, "text": "help", "team_id": "T1", "user_id": "U1"}


def _click(action_id: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": "U1"},
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button"}],
    }


def _submission(callback_id: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": "U1"},
        "view": {"type": "modal", "callback_id": callback_id, "state": {"values": {}}},
    }


def _event(event_type: str) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "Ev1",
        "event": {"type": event_type, "user": "U1", "channel_type": "im"},
    }


def test_every_slash_command_in_the_manifest_has_a_listener() -> None:
    declared = {c["command"] for c in _manifest()["features"]["slash_commands"]}
    assert declared == {c.value for c in Command}
    app = _registered()
    for command in declared:
        assert _handled(app, _command(command)), command


def test_every_request_url_points_at_the_one_slack_endpoint() -> None:
    manifest = _manifest()
    urls = [c["url"] for c in manifest["features"]["slash_commands"]]
    urls.append(manifest["settings"]["event_subscriptions"]["request_url"])
    urls.append(manifest["settings"]["interactivity"]["request_url"])
    assert {u.rsplit("/", 2)[-2:][0] + "/" + u.rsplit("/", 1)[-1] for u in urls} == {"slack/events"}
    assert manifest["oauth_config"]["redirect_urls"][0].endswith("/slack/oauth_redirect")


def test_the_manifest_asks_for_the_scopes_the_install_flow_requests() -> None:
    assert sorted(_manifest()["oauth_config"]["scopes"]["bot"]) == sorted(BOT_SCOPES)


def test_every_bot_event_in_the_manifest_has_a_listener() -> None:
    events_declared = _manifest()["settings"]["event_subscriptions"]["bot_events"]
    app = _registered()
    for event in events_declared:
        assert _handled(app, _event(event.split(".")[0])), event


def test_every_button_and_modal_id_has_a_listener() -> None:
    app = _registered()
    inputs = {
        ActionId.SUBJECT_INPUT,
        ActionId.BODY_INPUT,
        ActionId.APPROVE_AFTER_EDIT,
        ActionId.REASON_INPUT,
    }
    for action in set(ActionId) - inputs:
        assert _handled(app, _click(action.value)), action
    for callback in (
        CallbackId.EDIT_CARD,
        CallbackId.REJECT_CARD,
        CallbackId.RELABEL_CARD,
        CallbackId.REFERRAL_EMAIL,
    ):
        assert _handled(app, _submission(callback.value)), callback


def test_an_unknown_action_is_still_answered_by_the_catch_all() -> None:
    assert _handled(_registered(), _click("no_such_action"))
