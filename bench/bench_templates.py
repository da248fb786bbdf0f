"""Templates: what one render and one check cost, and what the budget costs on top.

A 10k-contact launch renders the subject and body of its template once per contact,
so the per-render cost, times 20,000, is what templates add to a launch. The check
(parse, variables, one render with the sample contact) runs once per saved template.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from domain.templates import (
    TEMPLATE_VARIABLES,
    TemplateTooSlow,
    check_template,
    render_text,
)

SUBJECT = "Turn times in {{ state }} are down, {{ first_name }}"
BODY = (
    "Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days since "
    "{{ company_name }} last sent us an order.{% if orders_last_year > 12 %} You were one "
    "of our busiest lenders last year.{% endif %}\n\n"
    "{% for word in ['fast', 'fair', 'local'] %}- {{ word|title }}\n{% endfor %}\n"
    "Best,\n{{ rep_name }}\n{{ rep_phone }}\n\nUnsubscribe: {{ unsubscribe_url }}\n"
)
LOOPS_FOR_EVER = "{% for a in range(100000) %}{% for b in range(100000) %}{% set x = b * 2 %}{% endfor %}{% endfor %}"
RENDERS = 20_000
CHECKS = 500
ROUNDS = 9


def _per_call_us(runs: dict[str, Callable[[], object]], times: int) -> dict[str, list[float]]:
    """CPU time of each run, `times` times, in alternating rounds (the machine is shared)."""
    rounds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(ROUNDS):
        for label, run in runs.items():
            started = time.thread_time()
            for _ in range(times // ROUNDS):
                run()
            rounds[label].append((time.thread_time() - started) / (times // ROUNDS) * 1e6)
    return rounds


def main() -> None:
    """Print the median cost of one render and one check, in microseconds."""
    context = dict(TEMPLATE_VARIABLES)
    render_text(BODY, context, field="body")  # compile once, as a launch does
    # Jinja2's own sandbox, as templates rendered before the budget, in the same run:
    # the machine is shared, so only figures taken side by side compare.
    stock = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    stock_subject, stock_body = stock.from_string(SUBJECT), stock.from_string(BODY)
    timings = _per_call_us(
        {
            "Jinja2 sandbox, no budget (before)": lambda: (
                stock_subject.render(**context),
                stock_body.render(**context),
            ),
            "budgeted sandbox, render_text (now)": lambda: (
                render_text(SUBJECT, context, field="subject"),
                render_text(BODY, context, field="body"),
            ),
        },
        RENDERS,
    )
    for label, rounds in timings.items():
        median = statistics.median(rounds)
        print(
            f"render subject+body, {label}: median {median:.1f} µs, best {min(rounds):.1f} µs"
            f" per contact (a 10k launch spends {median * 10_000 / 1e6:.2f} s)"
        )
    counter = iter(range(10**9))
    rounds = _per_call_us(
        {"check": lambda: check_template(f"{BODY}{{# {next(counter)} #}}", field="body")}, CHECKS
    )["check"]
    print(
        "check a template (parse, variables, compile, sample render):"
        f" median {statistics.median(rounds):.0f} µs"
    )
    cut = []
    for _ in range(5):
        started = time.thread_time()
        try:
            render_text(LOOPS_FOR_EVER, context, field="body")
        except TemplateTooSlow:
            cut.append((time.thread_time() - started) * 1e3)
    print(
        "a template looping 10^10 times is cut by the step budget after"
        f" {statistics.median(cut):.0f} ms of CPU (median of {len(cut)})"
    )
