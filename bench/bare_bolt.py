"""A bare Bolt app that acks approve clicks and does nothing else, served like Salesbot.

The baseline of the ack-latency benchmark:
`python -m bench.bare_bolt --port N --slack-api URL --token T [--processes P]`.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI
from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.app import _mount_slack
from handlers.slack.ids import ActionId

SECRET = "bench-signing-secret"


def build(slack_api: str, token: str) -> FastAPI:
    """Return the bare app: signature check, one action listener that acks."""
    bolt = App(
        signing_secret=SECRET,
        client=WebClient(token=token, base_url=slack_api),
        token_verification_enabled=False,
        process_before_response=True,
    )

    @bolt.action(ActionId.APPROVE.value)
    def approve(ack: Ack) -> None:
        ack()

    app = FastAPI()
    _mount_slack(app, bolt, SECRET)
    return app


def from_env() -> FastAPI:
    """The app as each uvicorn worker process builds it."""
    return build(os.environ["BARE_BOLT_SLACK_API"], os.environ["BARE_BOLT_TOKEN"])


def main() -> None:
    """Serve the bare app until interrupted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slack-api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    os.environ["BARE_BOLT_SLACK_API"] = args.slack_api
    os.environ["BARE_BOLT_TOKEN"] = args.token
    uvicorn.run(
        "bench.bare_bolt:from_env",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.processes,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
