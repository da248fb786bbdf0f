"""Serve one stand-in on a port until interrupted: `python -m sandbox slack --port 4001`."""

from __future__ import annotations

import argparse
import signal
import threading

from sandbox.google import start_google_stand_in
from sandbox.slack_api import start_slack_stand_in


def main() -> None:
    """Start the named stand-in and block until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", choices=["slack", "google"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.which == "slack":
        _, server = start_slack_stand_in(port=args.port)
    else:
        _, server = start_google_stand_in(port=args.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
