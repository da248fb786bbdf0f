"""Run the Slack work that listeners deferred past their ack, in worker threads.

The web process stores each lazy listener call (see `bot.slack_app.QueuedLazyRunner`);
this worker claims the calls and replays each request through a Bolt app built for
replay (same listeners, no signature check: the web process verified the request
before storing it), in Bolt's "lazy only" mode, which runs just the named function.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from slack_bolt import App, BoltRequest

from domain.clock import Clock
from jobs.loop import PollingThreads
from storage.slack_deferred import DeferredCall, SlackDeferredQueue

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 3


class DeferredSlackWorker:
    """Claims deferred Slack calls and runs them; `run_until_idle()` in tests and benches."""

    def __init__(
        self,
        bolt: App,
        queue: SlackDeferredQueue,
        clock: Clock,
        *,
        threads: int = 4,
        claim_size: int = 4,
        poll_seconds: float = 0.25,
    ) -> None:
        self._bolt = bolt
        self._queue = queue
        self._clock = clock
        self._claim_size = claim_size
        self._loop = PollingThreads(
            self.run_once, threads=threads, poll_seconds=poll_seconds, name="slack-deferred"
        )

    def run_once(self) -> int:
        """Claim and run a few calls; return how many were claimed."""
        now = self._clock.now()
        calls = self._queue.claim(limit=self._claim_size, now=now, lease_until=now + LEASE)
        for call in calls:
            self.run_call(call)
        return len(calls)

    def run_call(self, call: DeferredCall) -> None:
        """Replay one call through Bolt; forget it once it ran."""
        if call.attempts > MAX_ATTEMPTS:
            # Its worker stopped (crashed, or was killed) while running it, every time.
            log.error(
                "deferred Slack call given up", extra={"call_id": call.id, "fn": call.function}
            )
            self._queue.failed(
                call.id,
                f"gave up after {MAX_ATTEMPTS} attempts that did not finish",
                retry_at=None,
            )
            return
        request = BoltRequest(
            body=call.body,
            headers={
                "content-type": [call.content_type],
                "x-slack-bolt-lazy-only": ["1"],
                "x-slack-bolt-lazy-function-name": [call.function],
            },
        )
        try:
            response = self._bolt.dispatch(request)
        except Exception as exc:  # noqa: BLE001 - kept for another attempt, the worker goes on
            log.exception("deferred Slack call crashed", extra={"call_id": call.id})
            retry_at = self._clock.now() + timedelta(seconds=10 * call.attempts)
            self._queue.failed(call.id, f"{type(exc).__name__}: {exc}", retry_at=retry_at)
            return
        if response.status != 200:
            # Bolt found no listener for it (e.g. a function renamed by a deploy).
            log.error(
                "deferred Slack call had no listener",
                extra={"call_id": call.id, "fn": call.function, "status": response.status},
            )
            self._queue.failed(
                call.id, f"no listener ran it (Bolt answered {response.status})", retry_at=None
            )
            return
        self._queue.done(call.id)

    def run_until_idle(self, *, max_rounds: int = 10_000) -> int:
        """Run calls until none is due; return how many ran."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_once()
            if not ran:
                break
            total += ran
        return total

    def wake(self) -> None:
        """Tell the threads that a call was stored (in the same process)."""
        self._loop.wake()

    def start(self) -> None:
        """Start the worker threads."""
        self._loop.start()

    def stop(self) -> None:
        """Stop the worker threads after their current call."""
        self._loop.stop()
