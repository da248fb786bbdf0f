"""Templates written by users run with a budget: nothing is folded, nothing grows unbounded.

Each hostile template here froze, filled or crashed the process before the budget (a
500, a 13 s hold of the interpreter while the template was only being checked, a loop
that never ended); each is now a TemplateProblem that names the problem.
"""

from __future__ import annotations

import tracemalloc

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from domain.template_sandbox import RenderBudget
from domain.templates import (
    TEMPLATE_VARIABLES,
    TemplateProblem,
    TemplateTooSlow,
    check_template,
    render_text,
)

NESTED_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


NESTED_TOO_DEEP = (
    "body, line 1: macros, blocks or recursive loops nest more than 50 deep"
    " (does a macro call itself?)"
)


def refusal(source: str) -> str:
    """The message of the TemplateProblem that checking `source` raises."""
    with pytest.raises(TemplateProblem) as raised:
        check_template(source, field="body")
    return raised.value.message


def test_a_huge_power_is_refused_before_anything_computes_it() -> None:
    # Jinja2 folded this constant while the variables were looked up: 13 s under the GIL.
    assert refusal("{{ (9**10000000) % 7 }}") == (
        "body, line 1: `**` with an exponent above 100 is not allowed"
    )
    assert refusal("{{ 9**1000000 }}") == (
        "body, line 1: `**` with an exponent above 100 is not allowed"
    )


def test_a_power_whose_result_would_be_huge_is_refused() -> None:
    assert refusal("{{ (2**100)**100 }}") == (
        "body, line 1: `**` would make a number of more than 1000 digits"
    )
    assert refusal("{% set n = 10**99 %}{{ n*n*n*n*n*n*n*n*n*n*n }}") == (
        "body, line 1: `*` would make a number of more than 1000 digits"
    )


def test_what_a_template_contains_is_not_evaluated_while_it_is_checked() -> None:
    # The branch never runs; Jinja2's optimizer used to compute it anyway (and then fail
    # to write a million-digit constant into the compiled code).
    assert check_template("{% if false %}{{ 9**1000000 }}{% endif %}ok", field="body") == set()
    assert render_text("{% if false %}{{ 9**1000000 }}{% endif %}ok", {}) == "ok"


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 500000000 }}",
        "{{ 500000000 * 'a' }}",
        "{{ [first_name] * 100000000 }}",
        "{% for a in first_name * 100000 %}{% endfor %}",
    ],
)
def test_repeating_text_or_a_list_beyond_the_limit_is_refused(source: str) -> None:
    assert refusal(source) == (
        "body, line 1: repeating with `*` would make text longer than 200,000 characters"
    )


def test_a_recursive_macro_is_a_clear_refusal_not_a_crash() -> None:
    assert refusal("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}") == (NESTED_TOO_DEEP)
    assert refusal("{% for x in [[1]] recursive %}{{ loop([[1]]) }}{% endfor %}") == (
        NESTED_TOO_DEEP
    )
    assert refusal("{% block a %}{{ self.a() }}{% endblock %}") == NESTED_TOO_DEEP


def test_macros_nested_a_few_deep_render() -> None:
    source = (
        "{% macro greet(n) %}{% if n %}{{ greet(n - 1) }}!{% else %}Hi{% endif %}{% endmacro %}"
        "{{ greet(10) }}"
    )
    assert render_text(source, {}) == "Hi" + "!" * 10


def test_nested_loops_are_cut_by_the_step_budget_with_the_contacts_name() -> None:
    with pytest.raises(TemplateTooSlow) as raised:
        check_template(NESTED_LOOPS, field="body")
    assert raised.value.message == (
        "body: the template needed more than 100,000 steps (loop iterations, calls and"
        " operators) to render for Dana Whitfield: check loops"
    )


def test_a_loop_is_cut_by_the_time_budget() -> None:
    with pytest.raises(TemplateTooSlow) as raised:
        render_text(
            NESTED_LOOPS,
            {"full_name": "Sam Ortiz"},
            field="body",
            budget=RenderBudget(seconds=0.05, steps=10**12),
        )
    assert raised.value.message == (
        "body: the template took longer than 0.05 s to render for Sam Ortiz: check loops"
    )


def test_each_render_has_its_own_budget() -> None:
    source = "{% for a in range(30000) %}{% endfor %}{{ first_name }}"
    budget = RenderBudget(seconds=60, steps=40_000)
    assert [render_text(source, {"first_name": "Dana"}, budget=budget) for _ in range(3)] == [
        "Dana"
    ] * 3


def test_a_loop_filling_a_buffer_is_cut_by_the_text_budget() -> None:
    # Nothing streams out of a `{% set %}` block: the output limit alone never saw it.
    source = "{% set x %}{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}{% endset %}"
    with pytest.raises(TemplateTooSlow) as raised:
        check_template(source, field="body")
    assert raised.value.message == (
        "body: the template made more than 5,000,000 characters of text while rendering"
        " for Dana Whitfield: check loops"
    )


def test_a_pipeline_of_filters_is_charged_item_by_item() -> None:
    # `join` sees a generator it cannot measure first; each padded item is charged.
    with pytest.raises(TemplateTooSlow, match="made more than 5,000,000 characters"):
        check_template("{{ range(1000)|map('center', 150000)|join }}", field="body")


def test_a_loop_writing_straight_out_stops_at_the_output_limit() -> None:
    assert refusal("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}") == (
        "body: renders to more than 200000 characters"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ 'a'|center(1000000000) }}",
            "the `center` filter with a width above 200,000 is not allowed",
        ),
        ("{{ 'a'.ljust(1000000000) }}", "`ljust()` with a width above 200,000 is not allowed"),
        (
            "{{ '%999999999s' % 'x' }}",
            "`%` formatting with a width or precision above 200,000 is not allowed",
        ),
        (
            "{{ '%*s' % (999999999, 'x') }}",
            "`%` formatting with a width or precision above 200,000 is not allowed",
        ),
        (
            "{{ '{:>999999999}'.format('x') }}",
            "`format()` with a width or precision above 200,000 is not allowed",
        ),
        (
            "{{ '%999999999s'|format('x') }}",
            "the `format` filter with a width or precision above 200,000 is not allowed",
        ),
        (
            "{{ ('x' * 100000)|replace('x', 'yyyy') }}",
            "the `replace` filter would make text longer than 200,000 characters",
        ),
        (
            "{{ ('x' * 100000).replace('x', 'yyyy') }}",
            "`replace()` would make text longer than 200,000 characters",
        ),
        (
            "{{ ('a\\n' * 50000)|indent(100) }}",
            "the `indent` filter would make text longer than 200,000 characters",
        ),
        (
            "{{ ('x' * 100000) ~ ('x' * 150000) }}",
            "`~` would make text longer than 200,000 characters",
        ),
        (
            "{{ ('x' * 150000) + ('x' * 150000) }}",
            "`+` would make text longer than 200,000 characters",
        ),
        (
            "{% set s = 'x' * 100000 %}{{ [s, s, s, s, s, s, s, s] }}",
            "the output would make text longer than 200,000 characters",
        ),
        (
            "{% set s = 'x' * 100000 %}{{ [s, s, s]|join }}",
            "the `join` filter would make text longer than 200,000 characters",
        ),
        (
            "{% set s = 'x' * 100000 %}{{ ','.join([s, s, s]) }}",
            "`join()` would make text longer than 200,000 characters",
        ),
        (
            "{{ ('\\t' * 100000).expandtabs(100) }}",
            "`expandtabs()` would make text longer than 200,000 characters",
        ),
    ],
)
def test_padding_formatting_and_joining_beyond_the_limit_is_refused(
    source: str, message: str
) -> None:
    assert refusal(source) == f"body, line 1: {message}"


def test_lorem_ipsum_of_any_length_is_not_offered() -> None:
    assert refusal("{{ lipsum(100000) }}").startswith(
        "body, line 1: unknown variable(s) lipsum; available: "
    )


def test_brackets_nested_too_deeply_are_a_clear_refusal() -> None:
    assert refusal("{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}") == (
        "body: brackets or tags nested too deeply"
    )


def test_a_number_too_long_to_read_is_a_clear_refusal() -> None:
    assert refusal("{{ " + "9" * 5000 + " }}").startswith(
        "body: cannot read the template: Exceeds the limit (4300 digits)"
    )


def test_autoescape_blocks_are_refused() -> None:
    assert refusal("{% autoescape true %}{{ first_name }}{% endautoescape %}") == (
        "body, line 1: {% autoescape %} is not supported in email templates"
    )


ORDINARY = [
    "Hi {{ first_name }},\n\nIt has been {{ days_since_last_order }} days.\n",
    "{{ full_name|upper }} {{ company_name|title }} {{ email|replace('@', ' at ') }}",
    "{% for word in ['fast', 'fair', 'local'] %}- {{ word|title }}{{ loop.index }}\n{% endfor %}",
    "{% macro line(label, value) %}{{ label }}: {{ value }}{% endmacro %}"
    "{{ line('Orders', orders_last_year) }} {{ line('State', state) }}",
    "{{ first_name[:1] }}{{ last_name[::-1] }} {{ (orders_last_year / 12)|round(1) }}",
    "{{ '%s has %d orders'|format(company_name, orders_last_year) }} {{ 2 ** 10 }} {{ 3 * 4 }}",
    "{{ '{} in {}'.format(first_name, state) }} {{ ', '.join([first_name, last_name]) }}",
    "{% set ns = namespace(total=0) %}{% for c in first_name %}{% set ns.total = ns.total + 1 %}"
    "{% endfor %}{{ ns.total }} {{ first_name ~ '!' }} {{ [1, 2] + [3] }} {{ 'ab' * 3 }}",
    "{% set greeting %}Dear {{ first_name }}{% endset %}{{ greeting|center(30) }}|"
    "{{ rep_name|wordwrap(5) }}|{{ 'x\ny'|indent(2, true) }}|{{ {'a': 1}|tojson }}",
    "{% for x in [1, [2, [3]]] recursive %}{% if x is iterable %}{{ loop(x) }}"
    "{% else %}{{ x }}{% endif %}{% endfor %}",
    "{% if orders_last_year > 12 %}busy{% elif orders_last_year %}quiet{% else %}new{% endif %}"
    "{{ '%5.1f'|format(3.14159) }}{{ [3, 1, 2]|sort|join(',') }}",
]


@pytest.mark.parametrize("source", ORDINARY)
def test_ordinary_templates_render_exactly_as_in_jinja2s_own_sandbox(source: str) -> None:
    stock = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    expected = stock.from_string(source).render(**TEMPLATE_VARIABLES)
    check_template(source, field="body")
    assert render_text(source, TEMPLATE_VARIABLES) == expected


def peak_megabytes_while_checking(source: str) -> float:
    """Check `source` (expecting a refusal) and return the most memory it took, in MB."""
    tracemalloc.start()
    try:
        with pytest.raises(TemplateProblem):
            check_template(source, field="body")
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "source",
    [
        "{{ '{:>{}}'.format('x', 300000) }}",
        "{{ '{0:>{1}}'.format('x', '300000') }}",
        "{{ '{:>{}{}}'.format('x', '300', '000') }}",
        "{{ '{a:>{b}}'.format_map({'a': 'x', 'b': 300000}) }}",
    ],
)
def test_a_width_given_as_an_argument_of_format_is_refused_before_it_pads(source: str) -> None:
    # `'{:>{}}'.format('a', 2*10**9)` padded 2 GB under the interpreter lock (the API and
    # every Slack ack waited 2 s); only the format string's own digits were checked.
    name = "format_map" if "format_map" in source else "format"
    assert refusal(source) == (
        f"body, line 1: `{name}()` with a width or precision above 200,000 is not allowed"
    )


@pytest.mark.parametrize(
    "source",
    [
        # one argument written 1,000 times: 100 MB from a 4 kB format string
        "{% set s = 'x' * 100000 %}{{ ('{0}' * 1000).format(s) }}",
        "{% set s = 'x' * 100000 %}{{ ('{s}' * 1000).format(s=s) }}",
        "{% set s = 'x' * 100000 %}{{ ('%(s)s' * 1000) % {'s': s} }}",
        "{% set s = 'x' * 100000 %}{{ ('%(s)s' * 1000)|format(s=s) }}",
        # many widths, each under the limit
        "{{ ('%199999s' * 500) % (" + "1, " * 500 + ") }}",
        "{{ ('%*s' * 500) % (" + "199999, 1, " * 500 + ") }}",
        "{{ ('{:199999}' * 500).format(" + "1, " * 500 + ") }}",
    ],
)
def test_formatting_that_would_make_too_much_text_is_refused_before_it_is_made(
    source: str,
) -> None:
    assert peak_megabytes_while_checking(source) < 10


def test_a_number_in_the_text_of_a_format_string_is_not_taken_for_a_width() -> None:
    assert render_text("{{ 'Order 12345678: %s' % first_name }}", {"first_name": "Dana"}) == (
        "Order 12345678: Dana"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 1|dictsort }}", "cannot render: 'int' object has no attribute 'items'"),
        ("{{ 1|xmlattr }}", "cannot render: 'int' object has no attribute 'items'"),
        (
            "{% set x = 1 %}{% set x.y = 2 %}",
            "cannot render: cannot assign attribute on non-namespace object",
        ),
        (
            "{{ 'a'|truncate(1, true, 'xx', 0) }}",
            "cannot render: expected length >= 2, got 1",
        ),
    ],
)
def test_any_error_a_template_raises_is_a_template_problem(source: str, message: str) -> None:
    # These were 500s when a template was saved, and failed a whole drafting batch
    # when only some contacts reached them.
    assert refusal(source) == f"body, line 1: {message}"
