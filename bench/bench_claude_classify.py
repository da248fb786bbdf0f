"""Claude classification throughput and tokens per message (`python -m bench claude_classify`).

1,000 replies (the offline model's labelled set, repeated and numbered) are classified by the
real `ClaudeClassifier` through the official SDK against the Anthropic stand-in, which answers
every request after 1 s, as a fast model roughly does for this short forced tool call. The
concurrency is the ANTHROPIC_CONCURRENCY default (bot/settings.py says why it is what it is);
`BENCH_CLAUDE_CONCURRENCY` overrides it.

Printed: elapsed seconds, messages/s, the most requests the stand-in saw in flight, and tokens
per message from the stand-in's usage accounting (a token is 4 characters; the first request
of each concurrent wave writes the cached prefix, as the API does: a prefix is readable only
once the answer that wrote it has been sent).
"""

from __future__ import annotations

import os
import time

from bot.settings import Settings
from domain.classification import Classification, ClassifyRequest
from integrations.claude import build_anthropic_client
from integrations.claude_classifier import ClaudeClassifier
from integrations.offline_classifier import read_labelled_examples
from sandbox.anthropic_api import start_anthropic_stand_in

MESSAGES = 1_000
ANSWER_SECONDS = 1.0
MODEL = "claude-haiku-4-5"
KEY = "sk-ant-bench"


def main() -> None:
    """Classify 1,000 messages against a stand-in answering after 1 s; print the figures."""
    default = Settings.model_fields["ANTHROPIC_CONCURRENCY"].default
    concurrency = int(os.environ.get("BENCH_CLAUDE_CONCURRENCY", default))
    examples = read_labelled_examples()
    requests = [
        ClassifyRequest(
            subject=example.subject,
            body=f"{example.body}\n\n(message {number})",
            from_email=f"sender{number}@lender.example.com",
            context="we sent: Turn times in Travis County (campaign Q4 win-back)",
        )
        for number, example in ((n, examples[n % len(examples)]) for n in range(MESSAGES))
    ]
    stand_in, server = start_anthropic_stand_in(api_keys=[KEY], response_delay=ANSWER_SECONDS)
    try:
        client = build_anthropic_client(KEY, server.url, timeout=30.0)
        classifier = ClaudeClassifier(client, model=MODEL, concurrency=concurrency)
        started = time.perf_counter()
        results = classifier.classify_many(requests)
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    classified = sum(isinstance(result, Classification) for result in results)
    usage = stand_in.usage
    per = max(usage.messages, 1)
    print(
        f"messages:            {MESSAGES} ({classified} classified, {MESSAGES - classified} failed)"
    )
    print(
        f"concurrency:         {concurrency} (stand-in saw at most {stand_in.peak_in_flight} in flight)"
    )
    print(f"stand-in answers in: {ANSWER_SECONDS:.1f} s")
    print(f"elapsed:             {elapsed:.1f} s")
    print(f"throughput:          {MESSAGES / elapsed:.1f} messages/s")
    print("tokens per message (stand-in accounting, 4 characters a token):")
    print(f"  input (uncached):  {usage.input_tokens / per:.0f}")
    print(f"  cache read:        {usage.cache_read_input_tokens / per:.0f}")
    print(f"  cache creation:    {usage.cache_creation_input_tokens / per:.0f}")
    print(f"  output:            {usage.output_tokens / per:.0f}")
    mine = classifier.usage
    print(
        f"classifier totals agree with the stand-in: "
        f"{(mine.input_tokens, mine.cache_read_input_tokens, mine.output_tokens) == (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens)}"
    )


if __name__ == "__main__":
    main()
