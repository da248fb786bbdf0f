"""Spot text that tries to instruct a language model (prompt injection).

This is a flag for humans, never a filter: text that matches is still passed to the
model as quoted data, and the card says it looked like instructions. The phrases are
chosen to catch the usual attacks ("ignore previous instructions", "you are now a
...", "system prompt", "disregard the above and ...") without flagging ordinary
business email ("you are now on our approved vendor list", "please disregard the
above email, I attached the wrong file", "this is an automated system message").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

# Only the first part of a long text is examined: injections sit in what a person
# wrote, and this keeps the check linear and cheap on huge bodies.
MAX_CHECKED_CHARS: Final = 50_000

# Characters that render as nothing and are used to split trigger words.
_INVISIBLE: Final = dict.fromkeys(
    map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"),
    None,
)

# Cyrillic and Greek letters that look like Latin ones ("ignоre" with a Cyrillic o).
_LOOKALIKES: Final = str.maketrans(
    {
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "і": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ո": "n",
        "α": "a",
        "ε": "e",
        "ι": "i",
        "ο": "o",
        "ρ": "p",
        "υ": "u",
        "ν": "v",
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "`": "'",
    }
)

# Digits and symbols used in place of letters; applied only to the squeezed form below.
_LEET: Final = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a"})

_VERB = r"(?:ignore|disregard|forget|override|bypass)"
# "my"/"our" are left out on purpose: "please disregard my previous instructions about
# the lockbox" is a client correcting themselves, not an attack.
_QUALIFIER = (
    r"(?:all|any|every|each|of|the|your|these|those|previous|prior|preceding|above|earlier"
    r"|foregoing|former|original|initial|system|other|current|existing|given)"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|commands"
    r"|constraints|programming|guardrails|restrictions)"
)
_ABOVE = r"(?:above|previous|preceding|prior|earlier|foregoing)"
_DIRECTIVE = (
    r"(?:instead|now|from\s+now|you|write|reply|respond|say|tell|output|print|send|act"
    r"|answer|draft|include|insert|add|do)"
)
_MODEL_NOUN = r"(?:assistant|ai|a\.i\.|model|bot|chatbot|gpt|llm|claude|persona|language\s+model)"

_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    re.compile(pattern, re.MULTILINE)
    for pattern in (
        # ignore previous instructions / disregard all prior rules / override your prompt
        rf"\b{_VERB}\s+(?:{_QUALIFIER}\s+){{0,4}}{_RULES}\b",
        # disregard the above, and instead ... / ignore everything above. You ...
        rf"\b{_VERB}\s+(?:all\s+|everything\s+)?(?:of\s+)?(?:the\s+|what\s+(?:is|was)\s+)?"
        rf"{_ABOVE}(?:\s+\w+)?\s*(?:[,.;:!\-]+\s*|\s+)(?:and\s+)?(?:then\s+)?{_DIRECTIVE}\b",
        # forget everything you were told / forget all of the above
        r"\bforget\s+(?:everything|all)\s+(?:(?:of\s+)?(?:the\s+)?above|before"
        r"|you(?:'ve|\s+have)?\s+(?:been\s+told|were\s+told|learned|know))",
        # you are now a helpful assistant / you're now DAN / you are now in developer mode
        rf"\byou(?:\s+are|'re)\s+now\s+(?:a\s+|an\s+|the\s+|my\s+)?(?:[\w-]+\s+){{0,3}}"
        rf"{_MODEL_NOUN}\b",
        r"\byou(?:\s+are|'re)\s+now\s+(?:in|operating\s+in|running\s+in)\s+[\w-]+\s+mode\b",
        r"\byou(?:\s+are|'re)\s+(?:now\s+)?(?:no\s+longer\s+bound|unrestricted|unfiltered"
        r"|jailbroken|dan)\b",
        # system prompt, your hidden instructions, reveal your prompt
        r"\bsystem[\s_-]*prompts?\b",
        r"\b(?:your|the)\s+(?:initial|original|hidden|secret|real|true)\s+"
        r"(?:prompt|instructions)\b",
        r"\b(?:reveal|print|show|repeat|output|leak|display)\s+(?:me\s+)?(?:your|the)\s+"
        r"(?:system\s+)?(?:prompt|instructions)\b",
        r"\b(?:jailbreak|developer\s+mode|dan\s+mode|do\s+anything\s+now)\b",
        # role markers and chat-template tokens that try to open a new turn
        r"^\s*(?:system|assistant|human)\s*:",
        r"<\s*/?\s*(?:system|instructions?|assistant|human|user|contact_data|history"
        r"|template|campaign)\s*>",
        r"\[/?inst\]|<<\s*/?sys\s*>>|<\|im_(?:start|end)\|>",
    )
)

# Squeezed phrases (letters only) that catch "i.g.n.o.r.e previous instructions",
# "ignore-previous-instructions" and "1gn0re prev1ous instruct10ns". Kept long so
# that word junctions in ordinary text cannot produce them.
_SQUEEZED: Final = (
    "ignorepreviousinstructions",
    "ignoreallpreviousinstructions",
    "ignoreallinstructions",
    "ignoreyourinstructions",
    "ignoretheaboveinstructions",
    "ignoreallpriorinstructions",
    "ignorepriorinstructions",
    "disregardpreviousinstructions",
    "disregardallpreviousinstructions",
    "disregardyourinstructions",
    "disregardtheaboveinstructions",
    "disregardallpriorinstructions",
    "forgetallpreviousinstructions",
    "forgetyourinstructions",
    "revealyoursystemprompt",
)


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text[:MAX_CHECKED_CHARS]).translate(_INVISIBLE)
    text = text.casefold().translate(_LOOKALIKES)
    return re.sub(r"[^\S\n]+", " ", text)


def looks_like_injection(text: str) -> bool:
    """Return True when `text` reads like instructions aimed at a language model."""
    if not text:
        return False
    normalized = _normalize(text)
    if any(pattern.search(normalized) for pattern in _PATTERNS):
        return True
    squeezed = re.sub(r"[^a-z]", "", normalized.translate(_LEET))
    return any(phrase in squeezed for phrase in _SQUEEZED)


# --- invisible characters -------------------------------------------------------------------

# Characters a reader cannot see but a model reads: zero-width spaces and joiners, the word
# joiner and invisible operators, the BOM, the soft hyphen; Unicode "tag" characters (U+E0000
# to U+E007F, which spell hidden ASCII: "ASCII smuggling"); and the supplementary variation
# selectors (U+E0100 to U+E01EF), which can carry a byte each after any visible character.
# The joiners also shape emoji and some scripts (ZWNJ in Persian); dropping them changes how a
# word is drawn, never what it says, which is all a classifier needs.
_ZERO_WIDTH: Final = frozenset(
    [0x00AD, 0x034F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064]
    + [0xFEFF]
    + list(range(0xE0000, 0xE0080))
    + list(range(0xE0100, 0xE01F0))
)
# Bidirectional controls: marks, embeddings, overrides and isolates. They reorder what a
# reader sees ("Trojan Source"), so the text a person reads and the one a model reads differ.
_BIDI: Final = frozenset(
    [0x061C, 0x200E, 0x200F] + list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A))
)
_INVISIBLE_PATTERN: Final = re.compile(
    "[" + "".join(re.escape(chr(code)) for code in sorted(_ZERO_WIDTH | _BIDI)) + "]"
)


@dataclass(frozen=True)
class CleanedText:
    """Text with its invisible characters removed, and how many of each kind went."""

    text: str
    zero_width: int = 0
    bidi: int = 0

    @property
    def notes(self) -> tuple[str, ...]:
        """Say what was removed (counts only, never the text)."""
        notes = []
        if self.zero_width:
            notes.append(f"{self.zero_width} zero-width or invisible characters removed")
        if self.bidi:
            notes.append(f"{self.bidi} bidirectional control characters removed")
        return tuple(notes)


def remove_invisible_characters(text: str) -> CleanedText:
    """Remove zero-width, tag and bidirectional control characters, counting them."""
    zero_width = bidi = 0
    for match in _INVISIBLE_PATTERN.finditer(text):
        if ord(match.group()) in _BIDI:
            bidi += 1
        else:
            zero_width += 1
    if not zero_width and not bidi:
        return CleanedText(text)
    return CleanedText(_INVISIBLE_PATTERN.sub("", text), zero_width=zero_width, bidi=bidi)
