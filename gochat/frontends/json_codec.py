"""The JSON lines dialect, sans-IO: request lines in, event lines out (protocol 1).

Pure functions, no I/O: the JSON front end frames input with `wire.LineReader`
(whose cap is GOCHAT_MAX_LINE_BYTES; a longer line is its `line_too_long`),
hands each line to `decode_request` and writes what the `encode_*` functions
return, each passed through `with_seq` for that connection. docs/protocol.md
is the client author's view of the same rules.

Limits are checked before or while parsing, never after: nesting is counted
on the raw bytes (brackets outside strings) before `json.loads` runs, so a
line of 64 KiB of `[` costs one scan and cannot reach the parser's recursion;
NaN/Infinity are refused; a duplicate key is refused rather than silently
overwritten; a string argument over MAX_STRING_BYTES is refused.

Cleaning happens here, at the door, as the text front end's happens in
`wire.decode_line`: every string argument goes through `wire.clean_text`
(a JSON `\\u001b` escape would otherwise bring an ESC past the byte-level
cleaning), newlines become spaces (a text user cannot send one either) and
lone surrogates become U+FFFD. Outgoing strings are cleaned once more per
event (lines of multi-line text separately), so the bytes one encode makes
can be shared by every JSON recipient and hold no control character but the
final newline.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from gochat.command_table import Args, Command, Value
from gochat.events import (
    AIAnswer,
    AIQuestion,
    AIThinking,
    ChatMessage,
    CommandHelp,
    DirectMessage,
    Event,
    Farewell,
    HelpList,
    LobbyInfo,
    LobbyList,
    Member,
    MemberList,
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
from gochat.markdown import Span, plain_text
from gochat.wire import clean_text

PROTOCOL = 1
MAX_DEPTH = 4  # nesting of arrays/objects in a request line; the top-level object is 1
MAX_STRING_BYTES = 8192  # UTF-8 bytes in one string argument (before cleaning)
MAX_ID_CHARS = 64  # characters in a string "id"
MAX_ID_INT = 2**53 - 1  # an integer "id" stays exact in every JSON implementation
MAX_INT_ARG = 2**31 - 1

Id = str | int
DIALECT = "json"

ERROR_CODES: dict[str, str] = {
    "bad_json": "the line is not valid UTF-8 JSON (or uses NaN/Infinity, or repeats a key)",
    "not_an_object": "the line is valid JSON but not an object",
    "too_deep": f"arrays/objects nested deeper than {MAX_DEPTH}",
    "line_too_long": "the line passed the line cap; it was discarded",
    "bad_request": 'no string "cmd", or an "id" that is not a short string or an integer',
    "unknown_command": '"cmd" names no command',
    "bad_argument": "an argument is missing, unknown, empty or of the wrong type (text names it)",
    "too_long": "a string argument, or a message, is longer than its limit",
    "not_logged_in": "the command needs a login first",
    "already_logged_in": "login was sent on a connection that is logged in",
    "bad_name": "the name is not a valid user name",
    "name_taken": "someone online already uses that name",
    "rate_limited": "over the message or lookup budget; retry after retry_after seconds",
    "not_found": "no such user or lobby",
    "wrong_password": "wrong password for a private lobby",
    "unavailable": "the AI assistant is not configured on this server",
    "forbidden": "the command is not yours to run here (e.g. setai outside your own lobby)",
    "refused": "the server refused the command; text says why",
    "internal": "a server bug; it has been logged (try again or report it)",
}
"""Stable error codes and what they mean; a code is never renamed within a protocol version."""


# --- requests ---------------------------------------------------------------------


Commands = Callable[[str], Command | None]
"""The command table as the decoder sees it: a name -> the command the JSON dialect offers."""


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed command: `args` holds only its declared arguments, strings cleaned."""

    command: Command
    args: Args
    id: Id | None = None


@dataclass(frozen=True, slots=True)
class RequestError:
    """A refused line: one `error` object answers it (`id` echoed as "re" when it was read)."""

    code: str
    text: str
    id: Id | None = None

    def encode(self) -> bytes:
        return encode_error(self.code, self.text, re=self.id)


class _DuplicateKey(ValueError):
    pass


# A string, closing quote optional (an unterminated one runs to the end, scanned once).
_STRING_RE = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _too_deep(line: bytes) -> bool:
    """Brackets outside strings nest deeper than MAX_DEPTH: strings are cut out and the
    other bytes deleted at C speed, then only the brackets are counted, before parsing."""
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return False
    if b'"' in line:
        line = _STRING_RE.sub(b"", line)
    depth = 0
    for byte in line.translate(None, _NOT_BRACKETS):
        if byte == 0x5B or byte == 0x7B:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(Counter(key for key, _ in pairs).most_common(1)[0][0])
    return obj


def _constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _shown(value: str) -> str:
    """A client's string quoted in an error text: cleaned and cut short."""
    cleaned = clean_text(_SURROGATE_RE.sub("\ufffd", value))
    return repr(cleaned if len(cleaned) <= 32 else cleaned[:32] + "…")


def decode_request(line: bytes, commands: Commands) -> Request | RequestError:
    """One request line (without its newline) -> a `Request`, or the `RequestError` answering it.

    `commands` finds a command by name (gochat.commands' table, JSON's offer).
    Never raises, whatever the bytes.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return RequestError("bad_json", "The line is not valid UTF-8.")
    if _too_deep(line):
        return RequestError("too_deep", f"Nested deeper than {MAX_DEPTH} levels.")
    try:
        obj = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _DuplicateKey as exc:
        return RequestError("bad_json", f"Key {_shown(str(exc))} appears twice.")
    except (ValueError, RecursionError):
        return RequestError("bad_json", "The line is not valid JSON.")
    if not isinstance(obj, dict):
        return RequestError("not_an_object", 'A request is a JSON object, like {"cmd":"ping"}.')
    raw_id = obj.pop("id", None)
    request_id: Id | None = None
    short = isinstance(raw_id, str) and len(raw_id) <= MAX_ID_CHARS and raw_id.isprintable()
    if short or (type(raw_id) is int and abs(raw_id) <= MAX_ID_INT):
        request_id = raw_id
    elif raw_id is not None:
        return RequestError(
            "bad_request",
            f'"id" must be a printable string of at most {MAX_ID_CHARS} characters '
            f"or an integer of at most {MAX_ID_INT} in size.",
        )
    cmd = obj.pop("cmd", None)
    if not isinstance(cmd, str):
        return RequestError("bad_request", 'A request needs "cmd", a string.', request_id)
    command = commands(cmd) if cmd == cmd.lower() else None
    if command is None:
        return RequestError(
            "unknown_command", f"Unknown command {_shown(cmd)}; send help.", request_id
        )
    return _arguments(command, obj, request_id)


def _arguments(
    command: Command, given: dict[str, object], request_id: Id | None
) -> Request | RequestError:
    def refuse(text: str, code: str = "bad_argument") -> RequestError:
        return RequestError(code, f"{command.name}: {text}", request_id)

    for key in given:
        if command.arg(key) is None:
            names = ", ".join(a.name for a in command.args) or "none"
            return refuse(f"unknown argument {_shown(key)} (arguments: {names}).")
    args: dict[str, Value] = {}
    for arg in command.args:
        value = given.get(arg.name)
        if value is None:
            if arg.required:
                return refuse(f"{arg.name} ({arg.type_name}) is required.")
            continue
        if arg.kind == "int":
            if type(value) is not int:
                return refuse(f"{arg.name} must be an integer.")
            if not 1 <= value <= MAX_INT_ARG:
                return refuse(f"{arg.name} must be from 1 to {MAX_INT_ARG}.")
            args[arg.name] = value
            continue
        if not isinstance(value, str):
            return refuse(f"{arg.name} must be a string.")
        if len(value) > MAX_STRING_BYTES or (
            4 * len(value) > MAX_STRING_BYTES
            and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES
        ):
            return refuse(f"{arg.name} is over {MAX_STRING_BYTES} bytes.", "too_long")
        cleaned = _clean_argument(value)
        if not cleaned:
            if arg.required:
                return refuse(f"{arg.name} is empty.")
            continue
        if arg.kind == "word" and len(cleaned.split(maxsplit=1)) > 1:
            return refuse(f"{arg.name} must be one word, without spaces.")
        args[arg.name] = cleaned
    return Request(command, Args(args), request_id)


def _clean_argument(value: str) -> str:
    """`wire.decode_line`'s cleaning for one JSON string; newlines -> spaces, lone surrogates."""
    if not value.isprintable():
        if "\n" in value or "\r" in value:
            value = value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        value = clean_text(_SURROGATE_RE.sub("\ufffd", value))
    return value.strip()


# --- lines out ----------------------------------------------------------------------

_LINE_SEPARATORS_RE = re.compile("[\u2028\u2029]")


def _line(fields: dict[str, object]) -> bytes:
    """One object as one line: None values left out, compact, UTF-8, U+2028/U+2029 escaped
    (some splitters break lines there). Strings are already clean; json.dumps escapes C0."""
    obj = {key: value for key, value in fields.items() if value is not None}
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        text = _LINE_SEPARATORS_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8", "replace") + b"\n"


def _safe(text: str) -> str:
    """Event text made safe for a terminal a JSON client may print to; newlines kept."""
    if text.isprintable():
        return text
    if "\n" in text:
        return "\n".join(clean_text(part) for part in text.split("\n"))
    return clean_text(text)


def with_seq(line: bytes, seq: int) -> bytes:
    """`line` (from an encode function) with "seq":N first; no re-encoding."""
    return b'{"seq":%d,%s' % (seq, line[1:])


def encode_hello(version: str, *, max_line_bytes: int | None = None) -> bytes:
    """The first line of every session."""
    hello = {"type": "hello", "server": "gochat", "version": _safe(version), "protocol": PROTOCOL}
    return _line(hello | {"max_line_bytes": max_line_bytes})


def encode_ok(re: Id | None = None) -> bytes:
    """A command finished; "re" is the request's id (absent when it had none)."""
    return _line({"type": "ok", "re": re})


def encode_error(
    code: str, text: str, *, re: Id | None = None, retry_after: float | None = None
) -> bytes:
    """An error object; `code` is one of ERROR_CODES, `retry_after` seconds (tenths, rounded up)."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    wait = None if retry_after is None else max(0.1, math.ceil(retry_after * 10 - 1e-9) / 10)
    return _line(
        {"type": "error", "code": code, "text": _safe(text), "retry_after": wait, "re": re}
    )


def encode_event(event: Event) -> bytes | None:
    """The line every JSON recipient of `event` gets (no per-connection data), or None."""
    if isinstance(event, Raw):
        return None  # banner and prompts are for terminals
    if isinstance(event, HelpList):
        shown = tuple(c for c in event.commands if "text" in c.dialects)
        return _line({"type": "help", "commands": _value(shown), "json": json_help(event)})
    if isinstance(event, PictureList):
        pictures = [{"name": _safe(n), "picture": _safe(p)} for n, p in event.pictures]
        return _line({"type": "pictures", "pictures": pictures})
    obj = _fields(event)
    if isinstance(event, AIAnswer):
        obj["text"] = _safe(plain_text(event.lines))
        obj["lines"] = [[_fields(span) for span in line] for line in event.lines]
    return _line(obj)


def _shapes(shapes: dict[type, str]) -> dict[type, tuple[str | None, tuple[tuple[str, str], ...]]]:
    """Specs "type: key key=attribute ..." -> (type, ((key, attribute), ...)).

    A spec without "type:" is for values nested in events (a member, a lobby, a span).
    """
    out = {}
    for cls, spec in shapes.items():
        kind, _, keys = spec.rpartition(":")
        pairs = tuple((k, a or k) for k, _, a in (key.partition("=") for key in keys.split()))
        out[cls] = (kind or None, pairs)
    return out


_SHAPES = _shapes(
    {
        ChatMessage: "message: id lobby from=sender picture text ts=timestamp kind tagged",
        DirectMessage: "dm: from=sender to=recipient picture text ts=timestamp",
        TagNotice: "tagged: from=sender lobby text",
        Presence: "presence: name picture lobby move other",
        PresenceBatch: "presence_batch: lobby arrived departed",
        Notice: "notice: text level",
        Welcome: "welcome: name lobby picture",
        Skipped: "skipped: lobby count",
        Farewell: "farewell: text",
        MemberList: "members: lobby members you",
        Member: "name picture",
        LobbyList: "lobbies: lobbies yours ai",
        LobbyInfo: "name private online creator description custom_ai",
        CommandHelp: "usage summary",
        Replay: "history: lobby messages=entries now",
        AIThinking: "ai_thinking:",
        AIQuestion: "ai_question: lobby asker picture question",
        AIAnswer: "ai_answer: id lobby asker",
        Span: "text style",
    }
)
"""Wire names of each event's fields, in order; a None value is left out of the line."""


def _fields(value: object, *, typed: bool = True) -> dict[str, object]:
    kind, pairs = _SHAPES[type(value)]
    obj: dict[str, object] = {"type": kind} if typed and kind else {}
    obj.update((key, _value(getattr(value, attribute))) for key, attribute in pairs)
    return {key: item for key, item in obj.items() if item is not None}


def _value(value: object) -> object:
    if isinstance(value, str):
        return _safe(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return round(value, 3)  # times: seconds since the epoch, to the millisecond
    if isinstance(value, tuple):
        return [_value(item) for item in value]
    if type(value) in _SHAPES:
        return _fields(value, typed=False)
    return value


def json_help(event: HelpList) -> list[dict[str, object]]:
    """The commands JSON offers, as `help` lists them: name, arguments, summary, phase."""
    return [
        {
            "cmd": c.name,
            "args": [{"name": n, "type": t, "required": r} for n, t, r in c.args],
            "summary": _safe(c.summary),
            "when": c.when,
        }
        for c in event.commands
        if DIALECT in c.dialects
    ]
