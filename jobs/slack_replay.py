"""Replay the Slack calls listeners left for after their ack, in worker threads.

The web process stores each lazy listener call in the queue (`storage.slack_calls`, filled
by `bot.slack_app.QueuedLazyRunner`); this worker claims the calls and replays each request
through a Bolt app built for replay (same listeners, no signature check: the web process
verified the request before storing it), in Bolt's "lazy only" mode, which runs just the
named function.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from slack_bolt import App, BoltRequest
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_bolt.lazy_listener import LazyListenerRunner

from domain.clock import Clock
from jobs.loop import PolledWorker
from storage.slack_calls import ClaimedCall, SlackCallQueue

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 3
RETRY_STEP = timedelta(seconds=10)


class _ReplayLazyRunner(LazyListenerRunner):
    """Run the replayed lazy function in the worker's thread; note that it ran, and what
    it raised.

    Bolt's own runner logs a lazy function's exception and carries on, and Bolt answers
    200 without running the listener when, say, `auth.test` fails in the authorization
    middleware; from the status alone the worker would forget calls that never ran.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._local = threading.local()

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        """Never called: a replayed request runs only its lazy function, in `run`."""
        raise RuntimeError("a replayed Slack request cannot start another lazy function")

    def run(self, function: Callable[..., None], request: BoltRequest) -> None:
        """Run the function with the arguments it names; remember its exception."""
        self._local.ran = True
        self._local.error = None
        names = list(inspect.signature(function).parameters)
        kwargs = build_required_kwargs(
            logger=self.logger,
            required_arg_names=names,
            request=request,
            response=None,
            this_func=function,
        )
        try:
            function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which retries
            self._local.error = exc

    def forget(self) -> None:
        """Clear this thread's outcome before a replay."""
        self._local.ran = False
        self._local.error = None

    def outcome(self) -> tuple[bool, Exception | None]:
        """Whether a function ran in this thread since `forget()`, and what it raised."""
        return bool(getattr(self._local, "ran", False)), getattr(self._local, "error", None)


class SlackReplayWorker(PolledWorker):
    """Claims queued Slack calls and replays them; `run_until_idle()` in tests and benches.

    A call that ran is deleted. One whose function raised, or that never reached its
    function (an error in Bolt's middleware, or no listener has the function: a deploy
    in progress) is retried after 10 s, then 20 s, and failed for good with its error
    after `MAX_ATTEMPTS`. A call whose worker died is claimed again when its lease runs
    out. Each thread claims one call at a time, so a long call (a launch that plans a
    large audience) holds up no other call and no claimed call waits past its lease.
    """

    def __init__(
        self,
        bolt: App,
        queue: SlackCallQueue,
        clock: Clock,
        *,
        threads: int = 4,
        claim_size: int = 1,
        poll_seconds: float = 0.25,
        lease: timedelta = LEASE,
    ) -> None:
        self._bolt = bolt
        self._lease = lease
        self._runner = _ReplayLazyRunner(log)
        bolt.listener_runner.lazy_listener_runner = self._runner
        self._queue = queue
        self._clock = clock
        self._claim_size = claim_size
        self._poll_with(threads=threads, poll_seconds=poll_seconds, name="slack-replay")

    def run_once(self) -> int:
        """Claim and run a few calls; return how many were claimed."""
        now = self._clock.now()
        calls = self._queue.claim(limit=self._claim_size, now=now, lease_until=now + self._lease)
        for call in calls:
            try:
                self.run_call(call)
            except Exception:  # noqa: BLE001 - e.g. the database away: the lease brings it back
                log.exception("deferred Slack call not settled", extra={"call_id": call.id})
        return len(calls)

    def run_call(self, call: ClaimedCall) -> None:
        """Replay one call through Bolt; forget it once it ran."""
        if call.attempts > MAX_ATTEMPTS:
            log.error(
                "deferred Slack call given up", extra={"call_id": call.id, "fn": call.function}
            )
            self._queue.failed(
                call,
                f"its worker stopped while running it {MAX_ATTEMPTS} times",
                retry_at=None,
            )
            return
        self._runner.forget()
        try:
            request = BoltRequest(
                body=call.body,
                headers={
                    "content-type": [call.content_type],
                    "x-slack-bolt-lazy-only": ["1"],
                    "x-slack-bolt-lazy-function-name": [call.function],
                },
            )
            response = self._bolt.dispatch(request)
        except Exception as exc:  # noqa: BLE001 - kept for another attempt, the worker goes on
            self._retry(call, exc)
            return
        ran, error = self._runner.outcome()
        if error is not None:
            self._retry(call, error)
        elif not ran and response.status == 404:
            # No listener has the function: renamed by a deploy, or web processes already
            # run newer code than this worker (a rolling deploy); retried, then failed.
            self._retry(call, f"no listener has {call.function} (Bolt answered 404)")
        elif not ran:
            # E.g. the installation lookup or auth.test failed in Bolt's middleware.
            self._retry(call, f"Bolt answered {response.status} without running the listener")
        elif not self._queue.done(call):
            log.warning(
                "deferred Slack call ran after its lease ran out", extra={"call_id": call.id}
            )

    def _retry(self, call: ClaimedCall, error: Exception | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if call.attempts >= MAX_ATTEMPTS:
            log.error(
                "deferred Slack call failed for good",
                extra={"call_id": call.id, "fn": call.function, "error": text},
            )
            self._queue.failed(call, f"{text} (attempt {call.attempts}, given up)", retry_at=None)
            return
        log.warning(
            "deferred Slack call failed; retrying",
            extra={"call_id": call.id, "fn": call.function, "error": text},
        )
        retry_at = self._clock.now() + RETRY_STEP * call.attempts
        self._queue.failed(call, text, retry_at=retry_at)
