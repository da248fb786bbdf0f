"""The regular expressions of user rules, on RE2 (`google-re2`, module `re2`).

RE2 runs in time linear in the text whatever the pattern (no backtracking), so a rule like
`(a+)+$` cannot stall the inbound pipeline. What it gives up for that is refused when a
rule is created, with RE2's own reason and a sentence saying what it means: backreferences
(`\\1`), look-around (`(?=`, `(?!`, `(?<=`, `(?<!`), and patterns whose compiled program does
not fit the memory budget below.

Three bounds keep a rule's cost fixed: a pattern may compile to at most
`MAX_PROGRAM_SIZE` RE2 instructions (the time of a search that falls back to RE2's NFA grows
with the text times the program), each pattern may use `MAX_MEM_BYTES` (its program and its
DFA cache; past the cache RE2 falls back to its NFA, slower but still linear), and a subject
is searched on its first `MAX_TEXT_CHARS` characters (RFC 5322 limits a header line to 998
characters; a longer subject is folded or hostile). domain/rules.py also caps the sum of the
programs of one organization's regex rules, so its rules together cost a bounded time.

Measured on this project's 2-core machine (`python -m bench rules`): a hostile rule at these
bounds takes about 0.7 ms on a 1,000-character subject, an ordinary one about 1.5 µs on a
real subject; `(a+)+$` answers a 100 kB subject in 0.2 ms.
"""

from __future__ import annotations

from typing import Any, Final

import re2

from domain.errors import InvalidInput

#: Memory one compiled pattern may use (RE2's default is 8 MiB; a subject rule needs far
#: less, and an organization may have hundreds of rules in memory).
MAX_MEM_BYTES: Final = 1 << 20
#: Subjects are searched on their first 1,000 characters (the domain cuts them there too):
#: RFC 5322 limits a header line to 998, and a real subject is under 100.
MAX_TEXT_CHARS: Final = 1_000
#: RE2 instructions a pattern may compile to: `order #?\\d{4,}` is 17, `[a-z]{500}` about 500.
MAX_PROGRAM_SIZE: Final = 1_000

_SYNTAX = "https://github.com/google/re2/wiki/Syntax"


class Re2Pattern:
    """One compiled RE2 pattern."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled

    @property
    def program_size(self) -> int:
        """The RE2 instructions the pattern compiled to (what a search costs per character)."""
        return int(self._compiled.programsize)

    def search(self, text: str) -> bool:
        """Tell whether the pattern occurs in the first MAX_TEXT_CHARS characters of text."""
        return self._compiled.search(text[:MAX_TEXT_CHARS]) is not None


class Re2Engine:
    """Compiles rule patterns with RE2 under a memory budget."""

    def __init__(self, *, max_mem: int = MAX_MEM_BYTES) -> None:
        self._max_mem = max_mem

    def compile(self, pattern: str) -> Re2Pattern:
        """Compile a pattern; raise InvalidInput with RE2's reason when it refuses it."""
        options = re2.Options()
        options.max_mem = self._max_mem
        options.never_capture = True  # rules only ask whether a subject matches
        options.log_errors = False  # the reason goes to the person, not to stderr
        try:
            compiled = re2.compile(pattern, options=options)
        except re2.error as exc:
            raise InvalidInput(_in_words(pattern, _reason(exc)), field="pattern") from None
        size = int(compiled.programsize)
        if size > MAX_PROGRAM_SIZE:
            raise InvalidInput(
                _in_words(
                    pattern,
                    f"its compiled program has {size:,} instructions, more than the "
                    f"{MAX_PROGRAM_SIZE:,} a rule may use",
                    hint="use fewer or smaller repetitions",
                ),
                field="pattern",
            )
        return Re2Pattern(compiled)


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip() or "unknown error"


def _in_words(pattern: str, reason: str, *, hint: str | None = None) -> str:
    """RE2's reason, and what it means for the person who wrote the pattern."""
    hint = hint or _hint(reason)
    tail = f" ({hint})" if hint else ""
    return (
        f"RE2 cannot compile the pattern {_as_typed(pattern)}: {reason}{tail}. "
        f"Rules use RE2 syntax: {_SYNTAX}"
    )


def _as_typed(pattern: str, limit: int = 80) -> str:
    """A pattern quoted as the person typed it: `'(a)\\1'`, not repr's `'(a)\\\\1'`; only
    characters that do not print (a newline, a tab) are shown escaped."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in pattern[:limit])
    return f"'{shown}'"


def _hint(reason: str) -> str | None:
    if _is_backreference(reason):
        return "RE2 has no backreferences such as \\1; match the text itself instead"
    if reason.endswith(("(?=", "(?!", "(?<=", "(?<!")):
        return "RE2 has no look-ahead or look-behind; match the text itself instead"
    if "pattern too large" in reason:
        return (
            f"the pattern needs more than the {MAX_MEM_BYTES // 1024} KiB a rule may use; "
            "use fewer or smaller repetitions"
        )
    if reason.startswith("invalid repetition size"):
        return "a repetition count may be at most 1000, nested counts included"
    return None


def _is_backreference(reason: str) -> bool:
    """`\\1`, `\\k<name>` and `(?P=name)` are refused as these reasons."""
    escape = reason.removeprefix("invalid escape sequence: \\")
    if escape != reason:
        return escape[:1].isdigit() or escape == "k"
    return reason.endswith("(?P")
