"""The sandbox user templates run in: a budget of steps, time, text and depth per render.

Templates are written by users of one organization and rendered by processes that serve
every organization, so a template must not be able to hold the interpreter, fill the
memory or loop for ever. Jinja2's sandbox stops templates from reaching Python's
internals; this module adds the budget:

- Nothing a user writes is evaluated while a template is checked or compiled: Jinja2
  folds constant expressions at compile time (and `meta.find_undeclared_variables` always
  does), so `{{ 9**10000000 }}` used to run, holding the GIL, before any render started.
  Here the optimizer is off and the code generator never folds output expressions.
- Every operation that can make a big value is checked before it runs: `**` and `*`
  (exponents, repeated text, huge numbers), `+`, `%`, `~`, slices, filters and methods
  that pad, replace or join; each value stays under `MAX_VALUE_CHARS` and one render
  makes at most `MAX_MADE_CHARS` characters of text in all.
- Each loop iteration, call, filter and operator is a step: a render has `steps` of them
  and `seconds` of wall time, checked at every step, so a loop is cut short wherever it
  is. A thread cannot be killed in Python; a budget checked inside the template can stop
  it. A step costs about 0.2 µs for a loop iteration and 1-2 µs for an operator or a
  filter, so a typical email costs ~30 µs more to render and a template that loops for
  ever is cut after about 0.1-0.3 s of CPU (`python -m bench templates` measures both).
- Macros, blocks and recursive loops may nest `MAX_DEPTH` deep, so a recursive macro is
  a clear refusal, not a RecursionError.

Rendering in a separate process with a hard timeout was the other way; it would also
cap memory with certainty, but costs a round trip per render (or per batch) and a pool
of processes to keep, and still needs the checks above for the check at save time,
which runs in the web process.

A refusal raises `BudgetExceeded` with a sentence that names the problem;
`domain.templates.render_text` turns it into a `TemplateProblem`.
"""

from __future__ import annotations

import functools
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import update_wrapper
from string import Formatter
from typing import Any, Final

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace, _PassArg

# One value (a string, or a list of strings) may hold this many characters; the whole
# rendered email is limited separately (domain.templates.MAX_RENDERED_CHARS).
MAX_VALUE_CHARS: Final = 200_000
# All the text one render makes (values, output, macro output thrown away), in characters.
MAX_MADE_CHARS: Final = 5_000_000
MAX_EXPONENT: Final = 100
MAX_NUMBER_DIGITS: Final = 1_000
MAX_DEPTH: Final = 50
DEFAULT_SECONDS: Final = 2.0
DEFAULT_STEPS: Final = 100_000

_DIGITS_PER_BIT: Final = 0.30103
_MAX_BITS: Final = int(MAX_NUMBER_DIGITS / _DIGITS_PER_BIT)
# Values whose text is short: a few characters, whatever they hold.
_SCALARS: Final = frozenset({bool, float, type(None)})


class BudgetExceeded(SecurityError):
    """A template asked for more than its budget; `reason` says what.

    `exhausted` is True when the render ran out of steps, time or text (the template
    loops; `reason` then follows "the template ..."), False for one operation refused
    at once (a huge exponent, a long repetition; `reason` is a whole sentence).
    """

    def __init__(self, reason: str, *, exhausted: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exhausted = exhausted


@dataclass(frozen=True)
class RenderBudget:
    """What one render may spend: wall-clock seconds and steps (iterations, calls, ops)."""

    seconds: float = DEFAULT_SECONDS
    steps: int = DEFAULT_STEPS


class _Meter:
    """What is left of one render's budget; lives in a context variable during a render."""

    __slots__ = ("budget", "chars_left", "deadline", "depth", "steps_left")

    def __init__(self, budget: RenderBudget) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget.seconds
        self.steps_left = budget.steps
        self.chars_left = MAX_MADE_CHARS
        self.depth = 0

    def tick(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise BudgetExceeded(
                f"needed more than {self.budget.steps:,} steps (loop iterations, calls and"
                " operators) to render",
                exhausted=True,
            )
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(
                f"took longer than {self.budget.seconds:g} s to render", exhausted=True
            )

    def charge(self, chars: int) -> None:
        self.chars_left -= chars
        if self.chars_left < 0:
            raise BudgetExceeded(
                f"made more than {MAX_MADE_CHARS:,} characters of text while rendering",
                exhausted=True,
            )


_METER: ContextVar[_Meter] = ContextVar("template_meter")


def _meter() -> _Meter:
    meter = _METER.get(None)
    if meter is None:
        # Only domain.templates renders, always inside `metered`; reaching here is a bug.
        raise RuntimeError("a user template was rendered outside metered()")
    return meter


@contextmanager
def metered(budget: RenderBudget) -> Iterator[None]:
    """Give the renders inside `with metered(budget):` (in this thread) one budget."""
    token = _METER.set(_Meter(budget))
    try:
        yield
    finally:
        _METER.reset(token)


# -- sizes -----------------------------------------------------------------------------


def text_size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """Return about how many characters `value` takes as text, counting to just past `limit`.

    Containers count their items (a list literal can hold the same long string 30,000
    times: its text is what matters, not its length).
    """
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is int:
        return int(value.bit_length() * _DIGITS_PER_BIT) + 1
    if kind in _SCALARS:
        return 5
    total = 0
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, bool | float | None):
            total += 5
        elif isinstance(item, int):
            total += int(item.bit_length() * _DIGITS_PER_BIT) + 2
        elif isinstance(item, bytes | bytearray):
            total += 4 * len(item) + 3
        elif isinstance(item, list | tuple | set | frozenset | dict | Namespace):
            if id(item) in seen:
                total += 5
                continue
            seen.add(id(item))
            if isinstance(item, Namespace):
                item = object.__getattribute__(item, "_Namespace__attrs")
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
            total += 2
        else:
            total += 64
        if total > limit:
            return total
    return total


def _check_size(value: Any, what: str) -> int:
    size = text_size(value)
    if size > MAX_VALUE_CHARS:
        raise BudgetExceeded(f"{what} would make text longer than {MAX_VALUE_CHARS:,} characters")
    return size


def _made(value: Any, what: str) -> Any:
    """Check and charge a value an operation made; return it."""
    kind = type(value)
    if kind is str:  # the common cases first, kept cheap: one render makes many values
        size = len(value)
        if size > MAX_VALUE_CHARS:
            raise BudgetExceeded(
                f"{what} would make text longer than {MAX_VALUE_CHARS:,} characters"
            )
        _meter().charge(size)
    elif kind is int:
        if value.bit_length() > _MAX_BITS:
            _check_number(value, what)
    elif kind in _SCALARS:
        pass
    elif isinstance(value, str | list | tuple | dict | set | frozenset | Namespace):
        _meter().charge(_check_size(value, what))
    elif isinstance(value, int) and not isinstance(value, bool):
        _check_number(value, what)
    return value


def _check_number(value: int, what: str) -> None:
    if value.bit_length() * _DIGITS_PER_BIT > MAX_NUMBER_DIGITS:
        raise BudgetExceeded(f"{what} would make a number of more than {MAX_NUMBER_DIGITS} digits")


# Conversion specifiers of printf-style formatting ("%-20s", "%(name)s", "%*.*f", "%%").
_PRINTF_SPEC: Final = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?"
    r"[hlL]?(?P<kind>.?)",
    re.DOTALL,
)
_WIDE: Final = f"with a width or precision above {MAX_VALUE_CHARS:,} is not allowed"
_LONG: Final = f"would make text longer than {MAX_VALUE_CHARS:,} characters"


def _check_printf(fmt: str, args: Any) -> None:
    """Refuse `fmt % args` when what it would make could exceed MAX_VALUE_CHARS.

    Counts every conversion's width and precision, the `*` ones included, and each use
    of a value: `("%(a)s" * 20000) % {"a": text}` writes `text` 20,000 times.
    """
    size = len(fmt)
    keyed = 0
    for spec in _PRINTF_SPEC.finditer(fmt):
        if spec["kind"] == "%":
            continue
        keyed += spec["key"] is not None
        for part in (spec["width"], spec["precision"]):
            if part and part != "*":
                if len(part) > 6 or int(part) > MAX_VALUE_CHARS:
                    raise BudgetExceeded(_WIDE)
                size += int(part)
    if "*" in fmt:
        for arg in args if isinstance(args, tuple) else (args,):
            if isinstance(arg, int) and not isinstance(arg, bool):
                if abs(arg) > MAX_VALUE_CHARS:
                    raise BudgetExceeded(_WIDE)
                size += abs(arg)
    size += text_size(args)
    if keyed and isinstance(args, dict):
        size += keyed * max((text_size(value) for value in args.values()), default=0)
    if size > MAX_VALUE_CHARS:
        raise BudgetExceeded(_LONG)


def _check_format_spec(spec: str) -> None:
    """Refuse a str.format field whose width or precision is beyond the limit.

    Called with the spec as it is used, after nested fields (`{:>{}}`) are filled in.
    """
    for digits in _NUMBER_IN_SPEC.findall(spec):
        if len(digits) > 6 or int(digits) > MAX_VALUE_CHARS:
            raise BudgetExceeded(_WIDE)


_NUMBER_IN_SPEC: Final = re.compile(r"\d+")


class _MeteredFormatter(Formatter):
    """str.format that checks each field's spec and counts the text it makes as it goes.

    The widths of a format string can come from its arguments (`"{:>{}}".format(x, n)`)
    and one argument can be written many times (`("{0}" * 20000).format(text)`), so
    neither can be judged from the format string and the arguments before it runs.
    """

    made = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """Format with a fresh count of the text made."""
        self.made = 0  # the literal text is at most the format string, checked before
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        """Format one field after checking its spec; refuse once the total is too long."""
        _check_format_spec(format_spec)
        text = super().format_field(value, format_spec)
        self.made += len(text)
        if self.made > MAX_VALUE_CHARS:
            raise BudgetExceeded(_LONG)
        return text


class _BudgetedFormatter(_MeteredFormatter, SandboxedFormatter):
    """The sandbox's formatter of `str.format`, metered."""


class _BudgetedEscapeFormatter(_MeteredFormatter, SandboxedEscapeFormatter):
    """The sandbox's formatter of `Markup.format`, metered."""


# -- operators -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "**" and _is_number(left) and _is_number(right):
        if abs(right) > MAX_EXPONENT:
            raise BudgetExceeded(f"`**` with an exponent above {MAX_EXPONENT} is not allowed")
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left).bit_length() * right * _DIGITS_PER_BIT > MAX_NUMBER_DIGITS + 1:
                raise BudgetExceeded(
                    f"`**` would make a number of more than {MAX_NUMBER_DIGITS} digits"
                )
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if (left.bit_length() + right.bit_length()) * _DIGITS_PER_BIT > MAX_NUMBER_DIGITS + 1:
                raise BudgetExceeded(
                    f"`*` would make a number of more than {MAX_NUMBER_DIGITS} digits"
                )
        elif isinstance(right, int) and not isinstance(left, int | float):
            _check_repeat(left, right)
        elif isinstance(left, int) and not isinstance(right, int | float):
            _check_repeat(right, left)
    elif operator == "+" and not (_is_number(left) and _is_number(right)):
        if text_size(left) + text_size(right) > MAX_VALUE_CHARS:
            raise BudgetExceeded(f"`+` would make text longer than {MAX_VALUE_CHARS:,} characters")
    elif operator == "%" and isinstance(left, str):
        try:
            _check_printf(left, right)
        except BudgetExceeded as exc:
            raise BudgetExceeded(f"`%` formatting {exc.reason}") from None


def _check_repeat(sequence: Any, times: int) -> None:
    if times > 0 and text_size(sequence) * times > MAX_VALUE_CHARS:
        raise BudgetExceeded(
            f"repeating with `*` would make text longer than {MAX_VALUE_CHARS:,} characters"
        )


# -- filters and methods ---------------------------------------------------------------


def _growth(value: Any, per_unit: int, units: int) -> None:
    """Refuse when `units` insertions of `per_unit` characters would exceed a value's size."""
    if text_size(value) + per_unit * units > MAX_VALUE_CHARS:
        raise BudgetExceeded(f"would make text longer than {MAX_VALUE_CHARS:,} characters")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _check_replace(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    old, new = _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new")
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        text = value if isinstance(value, str) else str(value)[: MAX_VALUE_CHARS + 1]
        count = len(text) + 1 if old == "" else text.count(old)
        _growth(text, len(new) - len(old), count)


def _check_indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width")
    per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
    _growth(value, per_line, _as_text(value).count("\n") + 1)


def _check_wordwrap(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    wrap = _arg(args, kwargs, 2, "wrapstring")
    if isinstance(wrap, str):
        _growth(value, len(wrap), len(_as_text(value)))


def _check_urlize(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    extra = sum(
        len(kwargs.get(k) or "") for k in ("target", "rel") if isinstance(kwargs.get(k), str)
    )
    _growth(value, extra + 40, len(_as_text(value)) // 4)


def _check_join(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    glue = _arg(args, kwargs, 0, "d")
    if isinstance(glue, str) and isinstance(value, list | tuple | str):
        _growth(value, len(glue), len(value))


def _check_widths(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and arg > MAX_VALUE_CHARS:
            raise BudgetExceeded(f"with a width above {MAX_VALUE_CHARS:,} is not allowed")


def _check_tojson(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    indent = _arg(args, kwargs, 0, "indent")
    if isinstance(indent, int) and indent > 8:
        raise BudgetExceeded("with an indent above 8 is not allowed")


def _check_format_filter(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # The filter is `value % args`, or `value % kwargs` with keyword arguments.
    _check_printf(_as_text(value), dict(kwargs) if kwargs else tuple(args))


_Check = Callable[[Any, tuple[Any, ...], dict[str, Any]], None]

# Filters that can make text much longer than what they are given, with the check that
# refuses before they run. The others make at most a few times their input (escape,
# urlencode); what they make is checked after.
_FILTER_CHECKS: Final[dict[str, _Check]] = {
    "replace": _check_replace,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "urlize": _check_urlize,
    "join": _check_join,
    "center": _check_widths,
    "truncate": _check_widths,
    "batch": _check_widths,
    "slice": _check_widths,
    "tojson": _check_tojson,
    "format": _check_format_filter,
}


def _expandtabs(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    size = _arg(args, kwargs, 0, "tabsize")
    _growth(value, size if isinstance(size, int) else 8, _as_text(value).count("\t"))


def _check_translate(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    table = _arg(args, kwargs, 0, "table")
    longest = (
        max((text_size(v) for v in table.values()), default=0) if isinstance(table, dict) else 1
    )
    _growth(value, longest, len(_as_text(value)))


# Methods of str, list, int... that can make much more than they are given.
_METHOD_CHECKS: Final[dict[str, _Check]] = {
    "replace": _check_replace,
    "join": _check_join,
    "center": _check_widths,
    "ljust": _check_widths,
    "rjust": _check_widths,
    "zfill": _check_widths,
    "to_bytes": _check_widths,
    "expandtabs": _expandtabs,
    "translate": _check_translate,
}


def _budgeted_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    passes = 1 if _PassArg.from_obj(func) is not None else 0
    what = f"the `{name}` filter"

    @functools.wraps(func)
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        _meter().tick()
        value = args[passes]
        if type(value) is not str:
            _check_size(value, what)
        if check is not None:
            try:
                check(value, args[passes + 1 :], kwargs)
            except BudgetExceeded as exc:
                raise BudgetExceeded(f"{what} {exc.reason}") from None
        return _made(func(*args, **kwargs), what)

    return budgeted


# -- code generation -------------------------------------------------------------------


def _is_budgeted_iter(node: nodes.Node) -> bool:
    """Whether `node` is the wrapper `prepare` puts around a loop's iterable.

    Jinja2 allows no custom node types, so the wrapper is a call of an environment
    attribute, a node the parser never makes from template text.
    """
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.EnvironmentAttribute)
        and node.node.name == "budget_iter"
    )


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja2's code generator that folds nothing and routes output and `~` via the budget."""

    _output_frame: Frame

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # Jinja2 evaluates every constant-looking output expression at compile time, even
        # with the optimizer off; only literal text may be.
        if not isinstance(node, nodes.TemplateData | nodes.Const):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        self._output_frame = frame
        super().visit_Output(node, frame)

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        # Text written straight out is counted by domain.templates.render_text as it
        # streams; text kept in a buffer (a macro, `{% set %}` block, loop of `caller`)
        # is charged here, or a loop could fill memory before anything streams.
        literal = super()._output_const_repr(group)
        if self._output_frame.buffer is None:
            return literal
        return f"environment.budget_output({literal})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.buffer is None:
            self.write("environment.budget_text(")
        else:
            self.write("environment.budget_output(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.budget_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        # Jinja2 writes slices as Python slices, past the sandbox; each one copies.
        self.write("environment.budget_slice(")
        self.visit(node.node, frame)
        self.write(", slice(")
        for index, part in enumerate((node.arg.start, node.arg.stop, node.arg.step)):
            self.write(", " if index else "")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write("))")

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if not _is_budgeted_iter(node):
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        self.write("environment.budget_iter(")
        self.visit(node.args[0], frame)
        self.write(")")


class VariableFinder(_BudgetedCodeGenerator):
    """`jinja2.meta.find_undeclared_variables` without constant folding.

    Jinja2's own finder always runs the optimizer, which evaluated `{{ 9**10000000 }}`
    while a template was only being checked.
    """

    def __init__(self, environment: Any) -> None:
        super().__init__(environment, "<introspection>", "<introspection>", optimized=False)
        self.undeclared: set[str] = set()

    def write(self, x: str) -> None:
        """Write nothing: only the names are wanted."""

    def enter_frame(self, frame: Frame) -> None:
        """Remember the names a frame resolves from the context."""
        super().enter_frame(frame)
        for action, param in frame.symbols.loads.values():
            if action == "resolve" and param not in self.environment.globals:
                self.undeclared.add(param)


class Unsupported(SecurityError):
    """A tag the sandbox does not offer; `lineno` says where."""

    def __init__(self, what: str, lineno: int) -> None:
        super().__init__(f"{what} is not supported in email templates")
        self.lineno = lineno


def prepare(template: nodes.Template) -> nodes.Template:
    """Count every loop's items against the budget; refuse what cannot be budgeted.

    `{% autoescape %}` is refused: its blocks switch output and `~` to Markup joins that
    the budgeted code generator does not write.
    """
    for node in template.find_all((nodes.EvalContextModifier, nodes.ScopedEvalContextModifier)):
        raise Unsupported("{% autoescape %}", node.lineno)
    for loop in template.find_all(nodes.For):
        if not _is_budgeted_iter(loop.iter):
            wrapper = nodes.EnvironmentAttribute("budget_iter", lineno=loop.iter.lineno)
            loop.iter = nodes.Call(wrapper, [loop.iter], [], None, None, lineno=loop.iter.lineno)
    return template


# -- the environment -------------------------------------------------------------------


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with a budget of steps, time, text and depth per render."""

    code_generator_class = _BudgetedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, **options)
        # lorem ipsum of any length, in one call that no step could interrupt
        self.globals.pop("lipsum", None)
        self.filters = {name: _budgeted_filter(name, func) for name, func in self.filters.items()}

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map` through a formatter that meters every field.

        The same as Jinja2's own (which builds its formatter inside this method), with
        `_MeteredFormatter` in place of the sandbox's formatter.
        """
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        owner: Any = value.__self__
        if not isinstance(owner, str):
            return None
        text_type: type[str] = type(owner)
        is_format_map = value.__name__ == "format_map"
        escape = getattr(owner, "escape", None)  # Markup (from the `escape` filter)
        formatter: SandboxedFormatter = (
            _BudgetedEscapeFormatter(self, escape=escape)
            if escape is not None and hasattr(owner, "__html__")
            else _BudgetedFormatter(self)
        )

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            return text_type(formatter.vformat(owner, args, kwargs))

        return update_wrapper(wrapper, value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Run an operator after checking what it would make."""
        _meter().tick()
        _check_binop(operator, left, right)
        return _made(super().call_binop(context, operator, left, right), f"`{operator}`")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Call a macro (counting its depth) or a method (checking what it would make)."""
        meter = _meter()
        meter.tick()
        if isinstance(__obj, Macro | LoopContext | BlockReference):
            if isinstance(__obj, LoopContext) and args:
                args = (__self.budget_iter(args[0]), *args[1:])
            meter.depth += 1
            try:
                if meter.depth > MAX_DEPTH:
                    raise BudgetExceeded(
                        f"macros, blocks or recursive loops nest more than {MAX_DEPTH} deep"
                        " (does a macro call itself?)"
                    )
                return super().call(__context, __obj, *args, **kwargs)
            finally:
                meter.depth -= 1
        name = getattr(__obj, "__name__", "call")
        what = f"`{name}()`"
        # str.format reaches here as the sandbox's wrapper around the bound method.
        formats = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        try:
            if name in ("format", "format_map") and isinstance(formats, str):
                # Each field is checked as it is formatted (_MeteredFormatter); this
                # bounds the work before the first one.
                if text_size(formats) + text_size((*args, *kwargs.values())) > MAX_VALUE_CHARS:
                    raise BudgetExceeded(_LONG)
                return _made(super().call(__context, __obj, *args, **kwargs), what)
            if isinstance(__obj, types.BuiltinMethodType) and name in _METHOD_CHECKS:
                if name == "join" and args:
                    if not isinstance(args[0], list | tuple | str):
                        args = (list(__self.budget_iter(args[0])), *args[1:])
                    _check_join(args[0], (__obj.__self__,), {})
                else:
                    _METHOD_CHECKS[name](__obj.__self__, args, kwargs)
        except BudgetExceeded as exc:
            if exc.exhausted:
                raise
            raise BudgetExceeded(f"{what} {exc.reason}") from None
        return _made(super().call(__context, __obj, *args, **kwargs), what)

    def budget_iter(self, iterable: Any) -> Iterator[Any]:
        """Yield the items of a loop, one step each."""
        meter = _meter()
        for item in iterable:
            meter.tick()
            yield item

    def budget_text(self, value: Any) -> str:
        """Turn one output expression written straight out into text.

        The hot path of every render: a string passes as it is (render_text counts the
        text as it streams); anything else is measured before it becomes text, since the
        text of a list can be far longer than the list.
        """
        kind = type(value)
        if kind is str:
            text: str = value  # known to be a str: no cast() call on the hot path
            return text
        if kind is not int and kind not in _SCALARS:
            _check_size(value, "the output")
        return str(value)

    def budget_output(self, value: Any) -> str:
        """Turn one output expression kept in a buffer into text, charged to the budget."""
        text = self.budget_text(value)
        if len(text) > MAX_VALUE_CHARS:
            raise BudgetExceeded(
                f"the output would make text longer than {MAX_VALUE_CHARS:,} characters"
            )
        meter = _METER.get()
        meter.chars_left -= len(text)
        if meter.chars_left < 0:
            meter.charge(0)
        return text

    def budget_concat(self, values: tuple[Any, ...]) -> str:
        """Join `a ~ b ~ ...` within the budget."""
        _meter().tick()
        if sum(text_size(value) for value in values) > MAX_VALUE_CHARS:
            raise BudgetExceeded(f"`~` would make text longer than {MAX_VALUE_CHARS:,} characters")
        text: str = _made("".join(map(str, values)), "`~`")
        return text

    def budget_slice(self, value: Any, part: slice) -> Any:
        """Slice a value (a copy) within the budget."""
        _meter().tick()
        return _made(value[part], "a slice")
