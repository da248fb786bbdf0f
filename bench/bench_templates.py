"""Templates: what one render and one check cost, and what the budget costs on top.

A 10k-contact launch renders the subject and body of its template once per contact,
so the per-render cost, times 20,000, is what templates add to a launch. The check
(parse, variables, one render with the sample contact) runs once per saved template.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from domain.templates import TEMPLATE_VARIABLES, check_template, render_text

SUBJECT = "Turn times in {{ state }} are down, {{ first_name }}"
BODY = (
    "Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days since "
    "{{ company_name }} last sent us an order.{% if orders_last_year > 12 %} You were one "
    "of our busiest lenders last year.{% endif %}\n\n"
    "{% for word in ['fast', 'fair', 'local'] %}- {{ word|title }}\n{% endfor %}\n"
    "Best,\n{{ rep_name }}\n{{ rep_phone }}\n\nUnsubscribe: {{ unsubscribe_url }}\n"
)
RENDERS = 20_000
CHECKS = 500


def _per_call_us(run: Callable[[], object], times: int) -> tuple[float, float]:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(times // 5):
            run()
        rounds.append((time.perf_counter() - started) / (times // 5) * 1e6)
    return statistics.median(rounds), min(rounds)


def main() -> None:
    """Print the median cost of one render and one check, in microseconds."""
    context = dict(TEMPLATE_VARIABLES)
    render_text(BODY, context, field="body")  # compile once, as a launch does
    median, best = _per_call_us(
        lambda: (
            render_text(SUBJECT, context, field="subject"),
            render_text(BODY, context, field="body"),
        ),
        RENDERS,
    )
    print(
        f"render subject+body of a typical template: median {median:.1f} µs, best {best:.1f} µs"
        f" per contact ({RENDERS} contacts; a 10k launch spends {median * 10_000 / 1e6:.2f} s)"
    )
    counter = iter(range(10**9))
    median, best = _per_call_us(
        lambda: check_template(f"{BODY}{{# {next(counter)} #}}", field="body"), CHECKS
    )
    print(f"check a template (parse, variables, compile, sample render): median {median:.0f} µs")
