"""Light Markdown to terminal lines: what a model writes, made readable in nc or telnet.

The model answers in Markdown whether asked to or not. This module turns the
common part of it (``**bold**``, ``*italic*``, `` `code` ``, fenced code,
headings, bullet and numbered lists, quotes, links) into lines of styled
spans, wrapped to a column width. It emits no escape sequence: a span only
names its style, and the renderer adds colour in ANSI mode and nothing in
plain mode, so the visible text (and its wrapping) is the same in both.

Input must already be clean (``wire.clean_text`` per line): this module
trusts that no control character is left.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["WIDTH", "Line", "Span", "cell_width", "plain_text", "render_markdown"]

WIDTH = 78
"""Text columns of an answer: with the renderer's two-space indent, 80 in all."""

BULLET = "• "
RULE = "─" * 20
QUOTE = "│ "
CODE_INDENT = "  "
TAB = "    "


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text in one style: "", "bold", "italic", "code", "heading", "marker", "quote"."""

    text: str
    style: str = ""


Line = tuple[Span, ...]

_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET_RE = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBER_RE = re.compile(r"^(\s*)(\d{1,3})[.)]\s+(.*)$")
_QUOTE_RE = re.compile(r"^\s*>\s?(.*)$")
_RULE_RE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_INLINE_RE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<bold>[^*]+?)\*\*"
    r"|__(?P<bold2>[^_]+?)__"
    r"|(?<![\w*])\*(?P<italic>[^\s*](?:[^*]*[^\s*])?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic2>[^\s_](?:[^_]*[^\s_])?)_(?![\w_])"
    r"|\[(?P<label>[^\]]+)\]\((?P<url>[^)\s]+)\)"
)


def cell_width(text: str) -> int:
    """Terminal columns `text` takes: wide (East Asian, emoji) 2, combining and joiners 0."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char) or char in "\u200d\ufe0e\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def render_markdown(text: str, width: int = WIDTH) -> tuple[Line, ...]:
    """Lines of styled spans, none wider than `width` columns; blank runs collapsed."""
    width = max(width, 20)
    out: list[Line] = []
    in_code = False
    for raw in text.split("\n"):
        line = raw.replace("\t", TAB).rstrip()
        if _FENCE_RE.match(line):
            in_code = not in_code
            continue
        if in_code:
            out.extend(_hard_wrap(line, "code", width, CODE_INDENT))
        elif not line.strip():
            out.append(())
        elif _RULE_RE.match(line):
            out.append((Span(RULE[:width], "quote"),))
        elif match := _HEADING_RE.match(line):
            spans = [Span(s.text, "heading") for s in _inline(match.group(1))]
            out.extend(_wrap(spans, width, [], []))
        elif match := _BULLET_RE.match(line):
            indent = " " * min(len(match.group(1)), 8)
            marker = [Span(indent), Span(BULLET, "marker")]
            out.extend(_wrap(_inline(match.group(2)), width, marker, [Span(indent + "  ")]))
        elif match := _NUMBER_RE.match(line):
            indent = " " * min(len(match.group(1)), 8)
            number = f"{match.group(2)}. "
            marker = [Span(indent), Span(number, "marker")]
            hang = [Span(indent + " " * len(number))]
            out.extend(_wrap(_inline(match.group(3)), width, marker, hang))
        elif match := _QUOTE_RE.match(line):
            bar = [Span(QUOTE, "quote")]
            spans = [Span(s.text, s.style or "quote") for s in _inline(match.group(1))]
            out.extend(_wrap(spans, width, bar, bar))
        else:
            out.extend(_wrap(_inline(line.strip()), width, [], []))
    return _trim_blank(out)


def plain_text(lines: tuple[Line, ...]) -> str:
    """The visible text of rendered lines, joined with newlines (for history and logs)."""
    return "\n".join("".join(span.text for span in line) for line in lines)


def _inline(text: str) -> list[Span]:
    spans: list[Span] = []
    pos = 0
    for match in _INLINE_RE.finditer(text):
        if match.start() > pos:
            spans.append(Span(text[pos : match.start()]))
        kind = match.lastgroup
        if kind == "code":
            spans.append(Span(match.group("code"), "code"))
        elif kind in ("bold", "bold2"):
            spans.append(Span(match.group(kind), "bold"))
        elif kind in ("italic", "italic2"):
            spans.append(Span(match.group(kind), "italic"))
        else:
            label, url = match.group("label"), match.group("url")
            spans.append(Span(label, "bold"))
            if url != label:
                spans.append(Span(f" ({url})"))
        pos = match.end()
    if pos < len(text):
        spans.append(Span(text[pos:]))
    return spans


def _words(spans: list[Span]) -> list[list[Span]]:
    """Split spans at spaces into words; a word keeps the styles of its pieces."""
    words: list[list[Span]] = []
    current: list[Span] = []
    for span in spans:
        pieces = span.text.split(" ")
        for i, piece in enumerate(pieces):
            if i > 0 and current:
                words.append(current)
                current = []
            if piece:
                current.append(Span(piece, span.style))
    if current:
        words.append(current)
    return words


def _wrap(spans: list[Span], width: int, first: list[Span], rest: list[Span]) -> list[Line]:
    """Greedy word wrap; `first` prefixes the first line, `rest` the others."""
    lines: list[Line] = []
    prefix = first
    line: list[Span] = list(prefix)
    used = budget_start = sum(cell_width(s.text) for s in prefix)
    for word in _words(spans):
        size = sum(cell_width(s.text) for s in word)
        if used > budget_start and used + 1 + size <= width:
            line.append(Span(" "))
            line.extend(word)
            used += 1 + size
            continue
        if used > budget_start:
            lines.append(_merge(line))
            prefix = rest
            line = list(prefix)
            used = budget_start = sum(cell_width(s.text) for s in prefix)
        if used + size <= width:
            line.extend(word)
            used += size
            continue
        for piece in word:  # longer than a whole line: cut it
            for chunk in _cut(piece.text, width - used, width - budget_start):
                if used + cell_width(chunk) > width and used > budget_start:
                    lines.append(_merge(line))
                    line = list(rest)
                    used = budget_start = sum(cell_width(s.text) for s in rest)
                line.append(Span(chunk, piece.style))
                used += cell_width(chunk)
    if used > budget_start or not lines:
        lines.append(_merge(line))
    return lines


def _cut(text: str, first: int, size: int) -> list[str]:
    """Chunks of `text`: the first at most `first` columns, the rest at most `size`."""
    chunks: list[str] = []
    limit = max(first, 1)
    current = ""
    used = 0
    for char in text:
        w = cell_width(char)
        if used + w > limit and current:
            chunks.append(current)
            current, used, limit = "", 0, max(size, 1)
        current += char
        used += w
    if current:
        chunks.append(current)
    return chunks


def _hard_wrap(text: str, style: str, width: int, indent: str) -> list[Line]:
    """Code lines keep their spacing; only a line wider than the screen is cut."""
    if not text:
        return [()]
    size = width - len(indent)
    return [(Span(indent), Span(chunk, style)) for chunk in _cut(text, size, size)]


def _merge(spans: list[Span]) -> Line:
    """Join neighbouring spans of one style; drop empty ones and trailing spaces."""
    merged: list[Span] = []
    for span in spans:
        if not span.text:
            continue
        if merged and merged[-1].style == span.style:
            merged[-1] = Span(merged[-1].text + span.text, span.style)
        else:
            merged.append(span)
    while merged and merged[-1].style == "" and not merged[-1].text.strip():
        merged.pop()
    return tuple(merged)


def _trim_blank(lines: list[Line]) -> tuple[Line, ...]:
    out: list[Line] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return tuple(out)
