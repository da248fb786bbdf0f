"""Find and drop the text of an HTML email that a person reading it would not see.

Hidden text is how instructions are slipped past a reader to a model that reads the HTML
as text: a `display:none` div, white text on a white page, a 1px font, a comment. It is
dropped from the lxml tree before the tree becomes text, and counted (characters, never
the text) so the parsed email can say it happened.

What counts as hidden:
- HTML comments are all dropped, but counted only when they read as prose (at least
  `_PROSE_WORDS` words) or as instructions to a model: a marker such as "<!-- end of
  AOLMsgPart_0_4d68 -->" or Outlook's conditional `<!--[if mso]>` is layout, and AOL's
  reply in tests/corpus was flagged for one before this rule;
- elements with the `hidden` attribute, `display:none`, `visibility:hidden|collapse`,
  `opacity:0`, a font size of at most 1px (0, 1px, 1pt, 0.1em, 10 %), `clip: rect(0 0 0 0)`,
  a text indent or position of -999px or beyond (moved off the page), or a width, height
  or max-height of at most 1px with `overflow:hidden`, or `transform: scale(0)` (also
  scaleX(0) / scaleY(0));
- elements a `<style>` block hides by any of those rules through a simple selector: a
  class (`.h`), an id (`#h`) or an element name (`span`), alone or in a comma list. Other
  selectors (descendants, attributes, pseudo-classes) are not matched: this is not a
  browser. A selector that an `@media` block shows again (mobile-only text hidden on the
  desktop) is not hidden, and an inline style overrides the sheet as it would in a browser;
- text whose colour is transparent or within 24 of its background on every RGB channel
  (white on white, #fefefe on #ffffff). The background is the nearest `background-color`,
  `background` or `bgcolor` above the text, white when none is set (as mail clients draw
  it); a background image makes the background unknown, and unknown is never "the same".

`<head>` (with its `<title>`), `<style>` (once read for the rules above), `<script>` and
`<template>` are dropped without being counted: every HTML email has a head and a style
sheet, and a flag raised on every message tells nobody anything. Marketing mail often
hides a "preheader" line in a display:none span; it is dropped and counted like any hidden
text, which is right: the reader does not see it, so the model should not read it either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import lxml.etree
import lxml.html
import tinycss2
import tinycss2.ast

from domain.safety import looks_like_injection

_RGB = tuple[int, int, int]
_WHITE: Final[_RGB] = (255, 255, 255)
_BLACK: Final[_RGB] = (0, 0, 0)
_TRANSPARENT: Final = "transparent"
# Two colours closer than this on every channel read as one.
_SAME_COLOUR: Final = 24
_DROPPED_TAGS: Final = frozenset({"head", "style", "script", "template"})
_PROSE_WORDS: Final = 8

_NAMED: Final[dict[str, _RGB]] = {
    "white": _WHITE,
    "black": _BLACK,
    "snow": (255, 250, 250),
    "ivory": (255, 255, 240),
    "whitesmoke": (245, 245, 245),
    "ghostwhite": (248, 248, 255),
    "floralwhite": (255, 250, 240),
    "mintcream": (245, 255, 250),
    "azure": (240, 255, 255),
    "aliceblue": (240, 248, 255),
    "seashell": (255, 245, 238),
    "linen": (250, 240, 230),
    "gainsboro": (220, 220, 220),
    "lightgray": (211, 211, 211),
    "lightgrey": (211, 211, 211),
    "silver": (192, 192, 192),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "navy": (0, 0, 128),
}
_HEX = re.compile(r"#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})\b")
_FUNCTION = re.compile(r"rgba?\(\s*([^)]*)\)")
_LENGTH = re.compile(r"^(-?\d*\.?\d+)\s*(px|pt|em|rem|%|)?$")
_SCALE = re.compile(r"scale[xy]?\(([^)]*)\)")
# The selectors a `<style>` rule is applied through: `.class`, `#id` or `tag`.
_SIMPLE_SELECTOR = re.compile(r"([.#]?)(-?[A-Za-z_][\w-]*)")


@dataclass(frozen=True)
class HiddenText:
    """What was dropped from one HTML document."""

    characters: int = 0
    reads_like_instructions: bool = False


def _colour(value: str | None) -> _RGB | str | None:
    """Parse a CSS colour: an RGB triple, "transparent", or None when unknown."""
    if not value:
        return None
    value = value.strip().lower()
    if value in ("transparent", "rgba(0,0,0,0)"):
        return _TRANSPARENT
    if value in _NAMED:
        return _NAMED[value]
    match = _HEX.fullmatch(value) or _HEX.match(value)
    if match:
        digits = match.group(1)
        if len(digits) in (3, 4):
            digits = "".join(d * 2 for d in digits)
        if len(digits) == 8 and digits[6:] == "00":
            return _TRANSPARENT
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    match = _FUNCTION.match(value)
    if match:
        parts = [p.strip() for p in re.split(r"[,\s/]+", match.group(1)) if p.strip()]
        try:
            channels = [
                round(float(p[:-1]) * 2.55) if p.endswith("%") else round(float(p))
                for p in parts[:3]
            ]
            alpha = float(parts[3].rstrip("%")) if len(parts) > 3 else 1.0
        except ValueError:
            return None
        if len(channels) != 3:
            return None
        if alpha <= 0:
            return _TRANSPARENT
        r, g, b = (min(255, max(0, c)) for c in channels)
        return (r, g, b)
    return None


def _declarations(style: str | None) -> dict[str, str]:
    if not style:
        return {}
    found: dict[str, str] = {}
    for declaration in style.split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            value = value.lower().replace("!important", "").strip()
            found[name.strip().lower()] = value
    return found


def _length_px(value: str | None) -> float | None:
    """A CSS length in px (pt, em and % roughly converted); None when not a plain length."""
    if value is None:
        return None
    match = _LENGTH.match(value.strip())
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2) or "px"
    return {"px": 1.0, "pt": 4 / 3, "em": 16.0, "rem": 16.0, "%": 0.16}[unit] * number


def _tiny(value: str | None) -> bool:
    size = _length_px(value)
    return size is not None and size <= 1.6  # 1px, 1pt (1.33px), 0.1em, 10 %


def _scaled_to_nothing(transform: str | None) -> bool:
    """`scale(0)`, `scale(0, 1)`, `scaleX(0)`: the element is drawn with no width or height."""
    for match in _SCALE.finditer(transform or ""):
        for factor in re.split(r"[,\s]+", match.group(1).strip()):
            try:
                if factor and float(factor.rstrip("%")) == 0:
                    return True
            except ValueError:
                continue
    return False


def _hidden_by_style(element: lxml.html.HtmlElement, style: dict[str, str]) -> bool:
    if element.get("hidden") is not None:
        return True
    return _hides(style)


def _hides(style: dict[str, str]) -> bool:
    """Whether these declarations (inline or from a style sheet) hide what they apply to."""
    if not style:
        return False
    if _scaled_to_nothing(style.get("transform")):
        return True
    if style.get("display") == "none" or style.get("visibility") in ("hidden", "collapse"):
        return True
    try:
        if "opacity" in style and float(style["opacity"].rstrip("%")) <= 0:
            return True
    except ValueError:
        pass
    if _tiny(style.get("font-size")):
        return True
    clip = style.get("clip", "").replace(" ", "").replace("px", "")
    if clip in ("rect(0,0,0,0)", "rect(0000)"):
        return True
    for offset in ("text-indent", "left", "top", "margin-left"):
        distance = _length_px(style.get(offset))
        if distance is not None and distance <= -999:
            return True
    if "hidden" in style.get("overflow", ""):
        for size in ("width", "height", "max-height", "max-width"):
            length = _length_px(style.get(size))
            if length is not None and length <= 1:
                return True
    return False


@dataclass(frozen=True)
class _StyleSheet:
    """The rules of an email's `<style>` blocks that hide what they select, by selector."""

    classes: dict[str, dict[str, str]]
    ids: dict[str, dict[str, str]]
    tags: dict[str, dict[str, str]]

    def declarations(self, element: lxml.html.HtmlElement, tag: str) -> dict[str, str]:
        """The hiding declarations the sheet gives `element`, element < class < id."""
        found: dict[str, str] = dict(self.tags.get(tag, {}))
        for name in (element.get("class") or "").split():
            found.update(self.classes.get(name, {}))
        element_id = element.get("id")
        if element_id:
            found.update(self.ids.get(element_id, {}))
        return found


def _rule_declarations(content: list[tinycss2.ast.Node] | None) -> dict[str, str]:
    declarations: dict[str, str] = {}
    for item in tinycss2.parse_blocks_contents(content or [], skip_whitespace=True):
        if isinstance(item, tinycss2.ast.Declaration):
            value = tinycss2.serialize(item.value).strip().lower()
            declarations[item.lower_name] = value
    return declarations


def _selectors(prelude: list[tinycss2.ast.Node]) -> list[tuple[str, str]]:
    """The simple selectors of a rule's comma list as (kind, name); others are skipped."""
    found: list[tuple[str, str]] = []
    for selector in tinycss2.serialize(prelude).split(","):
        match = _SIMPLE_SELECTOR.fullmatch(selector.strip())
        if match:
            kind, name = match.groups()
            found.append((kind, name if kind else name.lower()))
    return found


def _style_sheet(root: lxml.html.HtmlElement) -> _StyleSheet:
    """Read the `<style>` blocks for rules that hide a class, an id or an element."""
    hidden: dict[tuple[str, str], dict[str, str]] = {}
    in_media: list[tuple[list[tuple[str, str]], dict[str, str]]] = []
    for style in root.iter("style"):
        css = style.text_content()
        rules = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
        for rule in rules:
            if isinstance(rule, tinycss2.ast.QualifiedRule):
                declarations = _rule_declarations(rule.content)
                if _hides(declarations):
                    for selector in _selectors(rule.prelude):
                        hidden.setdefault(selector, {}).update(declarations)
            elif isinstance(rule, tinycss2.ast.AtRule) and rule.lower_at_keyword == "media":
                inner = tinycss2.parse_rule_list(
                    rule.content or [], skip_comments=True, skip_whitespace=True
                )
                for nested in inner:
                    if isinstance(nested, tinycss2.ast.QualifiedRule):
                        declarations = _rule_declarations(nested.content)
                        in_media.append((_selectors(nested.prelude), declarations))
    # Shown again on some screen: an @media rule sets a hiding property to a visible value.
    shown = {
        selector
        for selectors, declarations in in_media
        if not _hides(declarations)
        for selector in selectors
        if selector in hidden and declarations.keys() & hidden[selector].keys()
    }
    sheet = _StyleSheet(classes={}, ids={}, tags={})
    by_kind = {".": sheet.classes, "#": sheet.ids, "": sheet.tags}
    for (kind, name), declarations in hidden.items():
        if (kind, name) not in shown:
            by_kind[kind][name] = declarations
    return sheet


def _background(
    element: lxml.html.HtmlElement, style: dict[str, str], inherited: _RGB | None
) -> _RGB | None:
    """The background the element's text is drawn on; None when it cannot be known."""
    if element.get("background") or "url(" in style.get("background", ""):
        return None
    if "background-image" in style and style["background-image"] != "none":
        return None
    for value in (style.get("background-color"), style.get("background"), element.get("bgcolor")):
        if value:
            colour = _colour(value.split()[0] if value.startswith("#") else value)
            if colour == _TRANSPARENT:
                return inherited
            if isinstance(colour, tuple):
                return colour
            return None  # a background we cannot read: unknown, never "the same"
    return inherited


def _text_colour(
    element: lxml.html.HtmlElement, style: dict[str, str], inherited: _RGB | str | None
) -> _RGB | str | None:
    value = style.get("color") or (element.get("color") if element.tag == "font" else None)
    if not value:
        return inherited
    return _colour(value)


def _invisible(colour: _RGB | str | None, background: _RGB | None) -> bool:
    if colour == _TRANSPARENT:
        return True
    if not isinstance(colour, tuple) or background is None:
        return False
    return all(abs(a - b) <= _SAME_COLOUR for a, b in zip(colour, background, strict=True))


def _counted_comment(comment: str) -> bool:
    text = comment.strip()
    if text.startswith("[if") or text.startswith("<![endif]") or text.endswith("<![endif]"):
        return False
    words = sum(1 for word in text.split() if any(c.isalpha() for c in word))
    return words >= _PROSE_WORDS or looks_like_injection(text)


def drop_hidden_text(root: lxml.html.HtmlElement) -> HiddenText:
    """Remove hidden text from the tree in place; return how much went."""
    removed: list[str] = []
    for comment in list(root.iter(lxml.etree.Comment)):
        text = comment.text or ""
        if text.strip() and _counted_comment(text):
            removed.append(text.strip())
        _drop(comment)
    sheet = _style_sheet(root)
    to_drop: list[lxml.html.HtmlElement] = []
    # (element, its background, its text colour, whether that colour is invisible on it)
    stack: list[tuple[lxml.html.HtmlElement, _RGB | None, _RGB | str | None, bool]] = [
        (root, _WHITE, _BLACK, False)
    ]
    while stack:
        element, background, colour, invisible = stack.pop()
        tag = element.tag
        if not isinstance(tag, str):
            continue
        # Most elements carry no attribute: they inherit everything and need no parsing.
        if element.attrib or tag in _DROPPED_TAGS or tag in sheet.tags:
            if tag.lower() in _DROPPED_TAGS:
                to_drop.append(element)
                continue
            style = _declarations(element.get("style"))
            # The sheet's hiding rules, overridden by the element's own style.
            from_sheet = sheet.declarations(element, tag)
            if _hidden_by_style(element, {**from_sheet, **style} if from_sheet else style):
                text = element.text_content().strip()
                if text:
                    removed.append(text)
                to_drop.append(element)
                continue
            new_background = _background(element, style, background)
            new_colour = _text_colour(element, style, colour)
            if new_background != background or new_colour != colour:
                background, colour = new_background, new_colour
                invisible = _invisible(colour, background)
        if invisible:
            # Only the text drawn in this colour goes: a child may set a visible colour.
            if element.text and element.text.strip():
                removed.append(element.text.strip())
                element.text = None
            for child in element:
                if child.tail and child.tail.strip():
                    removed.append(child.tail.strip())
                    child.tail = None
        stack.extend((child, background, colour, invisible) for child in element)
    for element in to_drop:
        _drop(element)
    hidden = " ".join(removed)
    return HiddenText(
        characters=sum(len(piece) for piece in removed),
        reads_like_instructions=bool(hidden) and looks_like_injection(hidden),
    )


def _drop(node: lxml.etree._Element) -> None:
    """Remove a node and keep its tail (the text after it belongs to its parent)."""
    parent = node.getparent()
    if parent is None:
        return
    tail = node.tail
    previous = node.getprevious()
    parent.remove(node)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
