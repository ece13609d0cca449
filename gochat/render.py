"""Events to bytes, once per output mode.

Two modes: ANSI (colours plus the go-chat-server prompt redraw: clear the
line, print, reprint "> ") and plain (no escape sequence at all, for NO_COLOR,
logs and bots). All text inside events was sanitised on the way in, so the
only escape sequences in the output are the ones written here.
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Iterable
from datetime import datetime, tzinfo
from functools import singledispatch

from gochat.events import (
    AIAnswer,
    AIQuestion,
    AIThinking,
    ChatMessage,
    DirectMessage,
    Event,
    Farewell,
    HelpList,
    Level,
    LobbyList,
    MemberList,
    Move,
    Notice,
    PictureList,
    Presence,
    PresenceBatch,
    Raw,
    Replay,
    Skipped,
    TagNotice,
    Welcome,
)
from gochat.markdown import Line
from gochat.wire import encode

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
BLUE = "\x1b[34m"
MAGENTA = "\x1b[35m"
CYAN = "\x1b[36m"
CLEAR_LINE = "\r\x1b[K"
PROMPT = "> "

NAME_COLOURS = (
    "\x1b[91m",
    "\x1b[92m",
    "\x1b[93m",
    "\x1b[94m",
    "\x1b[95m",
    "\x1b[96m",
    "\x1b[31m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[34m",
    "\x1b[35m",
    "\x1b[36m",
)
LEVEL_STYLE = {
    Level.INFO: (CYAN, "ℹ"),
    Level.SUCCESS: (GREEN, "✔"),
    Level.WARN: (YELLOW, "⚠"),
    Level.ERROR: (RED, "✖"),
}


_zone: tzinfo | None = None  # None: the system's local time


def set_timezone(zone: tzinfo | None) -> None:
    """The zone chat times are shown in (GOCHAT_TIMEZONE), for the whole process."""
    global _zone
    _zone = zone


def clock_time(timestamp: float, now: float | None = None) -> str:
    """'14:03', or '2026-11-30 14:03' for a time on an earlier day than `now`."""
    when = datetime.fromtimestamp(timestamp, _zone)
    if now is not None and datetime.fromtimestamp(now, _zone).date() != when.date():
        return when.strftime("%Y-%m-%d %H:%M")
    return when.strftime("%H:%M")


class Style:
    """Colour codes for one mode: real ones for ANSI, empty strings for plain."""

    __slots__ = ("colour",)

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text

    def name(self, name: str) -> str:
        if not self.colour:
            return name
        colour = NAME_COLOURS[zlib.crc32(name.lower().encode()) % len(NAME_COLOURS)]
        return f"{BOLD}{colour}{name}{RESET}"


ANSI = Style(True)
PLAIN = Style(False)


@singledispatch
def _text(event: Event, s: Style) -> str:
    raise TypeError(f"no renderer for {type(event).__name__}")


def _message_lines(event: ChatMessage, s: Style, when: str) -> str:
    text = event.text
    if event.tagged:
        mention = "@" + event.tagged
        text = text.replace(mention, s(BOLD + YELLOW, mention), 1)
    if event.kind == "ai":
        head = f"{event.picture} {s(BOLD + MAGENTA, event.sender)} {s(DIM, f'[{when}]')}"
        body = "\n".join("  " + line for line in text.split("\n"))
        return f"{head}\n{body}\n"
    head = f"{event.picture} {s.name(event.sender)} {s(DIM, f'[{when}]')}"
    return f"{head}\n  ╰─> {text}\n"


@_text.register
def _(event: ChatMessage, s: Style) -> str:
    return _message_lines(event, s, clock_time(event.timestamp))


@_text.register
def _(event: DirectMessage, s: Style) -> str:
    label = s(BOLD + MAGENTA, "[DM]")
    route = f"{s.name(event.sender)} → {s.name(event.recipient)}"
    return f"{label} {event.picture} {route}: {event.text}\n"


@_text.register
def _(event: TagNotice, s: Style) -> str:
    bell = s(BOLD + YELLOW, "🔔")
    return f"{bell} {s.name(event.sender)} tagged you in #{event.lobby}: {event.text}\n"


def presence_phrase(event: Presence) -> str:
    """What follows the name: 'joined the chat', 'went to #dev', 'joined from #general'."""
    if event.move is Move.CONNECTED:
        return "joined the chat"
    if event.move is Move.DISCONNECTED:
        return "left the chat"
    if event.move is Move.DEPARTED:
        return f"went to #{event.other}" if event.other else "left"
    return f"joined from #{event.other}" if event.other else "joined"


@_text.register
def _(event: Presence, s: Style) -> str:
    colour = GREEN if event.arriving else DIM
    sign = "→" if event.arriving else "←"
    return s(colour, f"{sign} {event.picture} {event.name} {presence_phrase(event)}") + "\n"


BATCH_NAMES = 5  # names a coalesced presence line spells out; the rest are counted


def _people(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:BATCH_NAMES])
    more = len(names) - BATCH_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


@_text.register
def _(event: PresenceBatch, s: Style) -> str:
    lines = []
    for names, sign, colour, did in (
        (event.arrived, "→", GREEN, "joined"),
        (event.departed, "←", DIM, "left"),
    ):
        if names:
            who = "person" if len(names) == 1 else "people"
            text = f"{sign} {len(names)} {who} {did} #{event.lobby}: {_people(names)}"
            lines.append(s(colour, text) + "\n")
    return "".join(lines)


@_text.register
def _(event: Notice, s: Style) -> str:
    colour, symbol = LEVEL_STYLE[event.level]
    return s(colour, f"{symbol} {event.text}") + "\n"


@_text.register
def _(event: Welcome, s: Style) -> str:
    colour, symbol = LEVEL_STYLE[Level.SUCCESS]
    text = f"Welcome, {event.name}! You are in #{event.lobby}. Type /help for commands."
    return s(colour, f"{symbol} {text}") + "\n"


@_text.register
def _(event: Skipped, s: Style) -> str:
    colour, symbol = LEVEL_STYLE[Level.WARN]
    lines = "message" if event.count == 1 else "messages"
    text = f"{event.count} {lines} skipped in #{event.lobby}; /history to catch up"
    return s(colour, f"{symbol} {text}") + "\n"


def _titled(s: Style, title: str, lines: Iterable[str]) -> str:
    return "\n".join([s(BOLD + CYAN, title), *lines]) + "\n"


@_text.register
def _(event: MemberList, s: Style) -> str:
    lines = [
        f"  {m.picture} {m.name}{' (you)' if m.name == event.you else ''}" for m in event.members
    ]
    return _titled(s, f"Users in #{event.lobby} ({len(lines)})", lines)


@_text.register
def _(event: LobbyList, s: Style) -> str:
    lines = []
    for lobby in event.lobbies:
        here = "*" if lobby.name == event.yours else " "
        access = "private" if lobby.private else "public"
        ai = f"{'custom AI' if lobby.custom_ai else 'default AI':<10}  " if event.ai else ""
        lines.append(
            f" {here}#{lobby.name:<20} {access:<7} {lobby.online:>4} online  "
            f"{ai}by {lobby.creator}  {lobby.description}"
        )
    return _titled(s, f"Lobbies ({len(lines)}; * = yours)", lines)


@_text.register
def _(event: HelpList, s: Style) -> str:
    return _titled(s, "Commands", help_lines(event))


@_text.register
def _(event: PictureList, s: Style) -> str:
    items = [f"{picture} {name:<10}" for name, picture in event.pictures]
    rows = ["  " + "  ".join(items[i : i + 5]) for i in range(0, len(items), 5)]
    return _titled(s, f"Profile pictures ({len(items)}): /sp <name>", rows)


HELP_WIDTH = 80  # an nc or telnet user's terminal
HELP_USAGE_COLUMN = 24  # a longer usage gets a line of its own, its summary below
HELP_BELOW = "      "  # the indent of a summary under its usage


def help_lines(event: HelpList) -> list[str]:
    """/help as text, every line within HELP_WIDTH columns.

    A usage too long for the column, or a summary too long for its line, puts
    the summary on the next line rather than widening the column for everyone.
    """
    commands = [c for c in event.commands if "text" in c.dialects]
    width = max((len(c.usage) for c in commands if len(c.usage) <= HELP_USAGE_COLUMN), default=0)
    lines = []
    for c in commands:
        line = f"  {c.usage:<{width}}  {c.summary}"
        if len(c.usage) <= width and len(line) <= HELP_WIDTH:
            lines.append(line)
            continue
        lines.append(f"  {c.usage}")
        lines.extend(
            textwrap.wrap(
                c.summary, HELP_WIDTH, initial_indent=HELP_BELOW, subsequent_indent=HELP_BELOW
            )
        )
    lines.append("  Lobbies:")
    form_width = max((len(form) for form, _ in event.forms), default=0)
    lines.extend(f"    {form:<{form_width}}  {what}" for form, what in event.forms)
    lines.append("  Any other line is said to your lobby (start it with // to say '/...').")
    return lines


@_text.register
def _(event: Replay, s: Style) -> str:
    if not event.entries:
        return ""
    parts = [s(DIM, f"── recent messages in #{event.lobby} ──") + "\n"]
    for entry in event.entries:
        parts.append(_message_lines(entry, s, clock_time(entry.timestamp, event.now)))
    parts.append(s(DIM, "── end of history ──") + "\n")
    return "".join(parts)


ITALIC = "\x1b[3m"
SPAN_STYLE = {
    "bold": BOLD,
    "italic": ITALIC,
    "code": CYAN,
    "heading": BOLD + CYAN,
    "marker": YELLOW,
    "quote": DIM,
}
AI_THINKING = "[AI] Thinking..."


def _spans(line: Line, s: Style) -> str:
    return "".join(
        s(SPAN_STYLE[span.style], span.text) if span.style else span.text for span in line
    )


@_text.register
def _(event: AIThinking, s: Style) -> str:
    return s(DIM + MAGENTA, AI_THINKING) + "\n"


@_text.register
def _(event: AIQuestion, s: Style) -> str:
    return f"{event.picture} {s.name(event.asker)} {s(MAGENTA, 'asked AI:')} {event.question}\n"


@_text.register
def _(event: AIAnswer, s: Style) -> str:
    """The head line, then the answer indented two columns (80 in all, see markdown.WIDTH)."""
    head = s(BOLD + MAGENTA, f"[AI Response to {event.asker}]")
    body = "".join(("  " + _spans(line, s) if line else "") + "\n" for line in event.lines)
    return f"{head}\n{body}"


def render(event: Event, colour: bool, *, prompt: bool = True) -> bytes:
    """The bytes one recipient in the given mode receives for `event`.

    In colour, the line is cleared first and the "> " chat prompt redrawn after
    (unless `prompt` is off: at the name prompt there is no chat prompt yet).
    """
    if isinstance(event, Raw):
        return encode(event.text)
    if isinstance(event, Farewell):
        return encode(CLEAR_LINE + ANSI(YELLOW, event.text) + "\n" if colour else event.text + "\n")
    text = _text(event, ANSI if colour else PLAIN)
    if not text:
        return b""
    if colour:
        return encode(CLEAR_LINE + text + (PROMPT if prompt else ""))
    return encode(text)


class TextMode:
    """The text front end's output: ANSI (colour and the prompt redraw) or plain."""

    __slots__ = ("colour",)

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def render(self, event: Event) -> bytes:
        return render(event, self.colour)

    def __repr__(self) -> str:
        return f"<TextMode {'ANSI' if self.colour else 'plain'}>"


ANSI_TEXT = TextMode(True)
PLAIN_TEXT = TextMode(False)


def text_mode(colour: bool) -> TextMode:
    """One shared mode object per choice, so delivery renders each once."""
    return ANSI_TEXT if colour else PLAIN_TEXT
