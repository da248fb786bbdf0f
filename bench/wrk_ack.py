"""Sustained ack load with wrk (Debian package `wrk`): 50 connections for 10 s of signed clicks.

Not part of `make bench` (wrk is not a project dependency):
`apt-get install wrk && .venv/bin/python -m bench.wrk_ack`. Prints wrk's latency percentiles and
requests/s for Salesbot and for the bare Bolt app, each served in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.bench_slack import SECRET, _click_body, _fresh_database, _seed, _spawn
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from tests.support.slack import signed_headers


def main() -> None:
    """Run wrk against both apps, twice each."""
    py = sys.executable
    sport, oport, bport = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{sport}/api/"
    ps = [_spawn([py, "-m", "sandbox", "slack", "--port", str(sport)], {}, api + "api.test")]
    url = _fresh_database()
    org, _ = _seed(url, 1, campaign="Wrk bench")
    env = {
        "DATABASE_URL": url,
        "SALESBOT_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijkl",
        "SLACK_API_URL": api,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_POST_INTERVAL_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    ps.append(
        _spawn(
            [py, "-c", "from bot.cli import main; main()", "serve", "--port", str(oport)],
            env,
            f"http://127.0.0.1:{oport}/healthz",
        )
    )
    ps.append(
        _spawn(
            [
                py,
                "-m",
                "bench.bare_bolt",
                "--port",
                str(bport),
                "--slack-api",
                api,
                "--token",
                DEFAULT_BOT_TOKEN,
            ],
            {},
            f"http://127.0.0.1:{bport}/docs",
        )
    )
    body = _click_body(0, None)
    h = signed_headers(body, signing_secret=SECRET)
    lua = (
        "wrk.method='POST'\nwrk.body="
        + json.dumps(body)
        + "\n"
        + "".join(f"wrk.headers[{json.dumps(k)}]={json.dumps(v)}\n" for k, v in h.items())
    )
    open("/tmp/click.lua", "w").write(lua)
    try:
        for name, port in (
            ("salesbot", oport),
            ("bare bolt", bport),
            ("salesbot", oport),
            ("bare bolt", bport),
        ):
            out = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    "-c50",
                    "-d10s",
                    "--latency",
                    "-s",
                    "/tmp/click.lua",
                    f"http://127.0.0.1:{port}/slack/events",
                ],
                capture_output=True,
                text=True,
            ).stdout
            lines = [
                line
                for line in out.splitlines()
                if "%" in line
                and ("50%" in line or "90%" in line or "99%" in line)
                or "Requests/sec" in line
                or "Non-2xx" in line
            ]
            print(name, " | ".join(x.strip() for x in lines))
    finally:
        for p in ps:
            p.terminate()


if __name__ == "__main__":
    main()
