"""Tests for gochat.frontends.json_codec: requests in, event lines out, no socket."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat.command_table import Args
from gochat.commands import REGISTRY, help_list
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
    Level,
    LobbyInfo,
    LobbyList,
    Member,
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
from gochat.frontends.json_codec import (
    ERROR_CODES,
    MAX_DEPTH,
    MAX_ID_CHARS,
    MAX_STRING_BYTES,
    PROTOCOL,
    Request,
    RequestError,
    decode_request,
    encode_error,
    encode_event,
    encode_hello,
    encode_ok,
    with_seq,
)
from gochat.markdown import Span, render_markdown
from gochat.wire import clean_text

from .conftest import ROOT

COMMANDS = {c.name: c for c in REGISTRY if c.offered_in("json")}


def decode(line: bytes) -> Request | RequestError:
    return decode_request(line, lambda name: REGISTRY.get(name, "json"))


def R(cmd: str, args: dict[str, str | int] | None = None, request_id: Any = None) -> Request:
    """The request a line naming `cmd` with `args` should decode to."""
    return Request(REGISTRY[cmd], Args(args or {}), request_id)


HOSTILE = "a\x1b[2J\x1b]52;c;aGk=\x07b\x9b31m\u202ec\x00d\x7fe\u2028f"
# Raw bytes that must never reach a terminal from a JSON line: C0 (but the final LF), DEL,
# C1 encoded as UTF-8, bidi controls, and U+2028/U+2029 (line breaks to some splitters).
UNSAFE_OUT = re.compile(
    "[\x00-\x1f\x7f\x80-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
UNSAFE_VALUE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def req(obj: Any) -> Request | RequestError:
    return decode(json.dumps(obj).encode())


def refused(line: bytes | dict[str, Any], code: str) -> RequestError:
    result = decode(line) if isinstance(line, bytes) else req(line)
    assert isinstance(result, RequestError), result
    assert result.code == code, result
    assert result.code in ERROR_CODES
    return result


def line_object(line: bytes) -> dict[str, Any]:
    """A server line is one UTF-8 JSON object, one LF at the end, no unsafe raw character."""
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    text = line.decode("utf-8")
    assert UNSAFE_OUT.search(text[:-1]) is None, text
    obj = json.loads(text)
    assert isinstance(obj, dict)
    return obj


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


# --- requests: the good ones ------------------------------------------------------


def test_say_with_id() -> None:
    """A well-formed command yields its name, its arguments and its id."""
    assert req({"cmd": "say", "text": "hello", "id": 7}) == R("say", {"text": "hello"}, 7)
    assert req({"id": "abc", "cmd": "ping"}) == R("ping", {}, "abc")


def test_optional_arguments_may_be_left_out_null_or_empty() -> None:
    """An optional argument that is absent, null or blank is simply not there."""
    for password in ({}, {"password": None}, {"password": "  "}):
        result = req({"cmd": "join", "lobby": "dev", **password})
        assert result == R("join", {"lobby": "dev"})
    result = req({"cmd": "create", "name": "dev", "password": "pw", "description": "a b"})
    assert isinstance(result, Request)
    assert result.args.text("password") == "pw"
    assert result.args.text("description") == "a b"
    assert result.args.text("missing", "x") == "x"


def test_integer_argument() -> None:
    """history's n is an integer from 1; Request.number reads it."""
    result = req({"cmd": "history", "n": 5})
    assert isinstance(result, Request)
    assert result.args.number("n") == 5
    assert result.args.text("n") == ""
    history = req({"cmd": "history"})
    assert isinstance(history, Request)
    assert history.args.number("n") is None


def test_whitespace_around_the_object_is_fine() -> None:
    """JSON allows whitespace around a value, and a stray CR from a CRLF client is whitespace."""
    assert decode(b'  {"cmd":"ping"} \r') == R("ping", {})


# --- requests: cleaning -----------------------------------------------------------


def test_escape_sequences_sent_as_json_escapes_are_removed() -> None:
    r"""\u001b in JSON is an ESC after parsing: it is cleaned like a text user's bytes."""
    line = b'{"cmd":"say","text":"hi \\u001b[2J\\u001b]52;c;aGk=\\u0007there \\u009b31m\\u202ex"}'
    result = decode(line)
    assert result == R("say", {"text": "hi there x"})


def test_hostile_strings_are_cleaned_in_every_argument() -> None:
    """Every string argument goes through clean_text; newlines become spaces."""
    result = req({"cmd": "create", "name": "r\x1b[31moom", "description": "one\ntwo\r\nthree"})
    assert result == R("create", {"name": "room", "description": "one two three"})
    result = req({"cmd": "msg", "to": "bob", "text": HOSTILE})
    assert isinstance(result, Request)
    assert UNSAFE_VALUE.search(result.args.text("text")) is None
    assert result.args.text("text") == clean_text(HOSTILE)


def test_lone_surrogate_becomes_replacement_character() -> None:
    r"""A lone \ud800 cannot be encoded as UTF-8 later; it becomes U+FFFD at the door."""
    result = decode(b'{"cmd":"say","text":"a\\ud800b"}')
    assert result == R("say", {"text": "a\ufffdb"})
    pair = decode(b'{"cmd":"say","text":"\\ud83d\\ude00"}')
    assert pair == R("say", {"text": "\U0001f600"})


@given(st.text(max_size=200))
def test_no_control_character_survives_in_any_argument(text: str) -> None:
    """Whatever string a JSON user sends, the argument holds no control or bidi character."""
    result = req({"cmd": "say", "text": text})
    if isinstance(result, Request):
        assert UNSAFE_VALUE.search(result.args.text("text")) is None
        assert "\n" not in result.args.text("text")
        result.args.text("text").encode("utf-8")  # no lone surrogate left
    else:
        assert result.code == "bad_argument"  # nothing left after cleaning
        assert not clean_text(text.replace("\n", " ").replace("\r", " ")).strip()


# --- requests: every refusal --------------------------------------------------------


def test_bad_json() -> None:
    """Invalid UTF-8, broken JSON, NaN/Infinity and a repeated key are bad_json."""
    refused(b'{"cmd":"say","text":"\xff"}', "bad_json")
    refused(b'{"cmd":"ping"', "bad_json")
    refused(b"", "bad_json")
    refused(b"hello", "bad_json")
    refused(b'{"cmd":"history","n":NaN}', "bad_json")
    refused(b'{"cmd":"history","n":-Infinity}', "bad_json")
    error = refused(b'{"cmd":"say","cmd":"quit"}', "bad_json")
    assert "'cmd'" in error.text


def test_huge_number_is_bad_json_not_a_crash() -> None:
    """An integer past Python's digit limit is refused, not an exception."""
    refused(b'{"cmd":"history","n":' + b"9" * 5000 + b"}", "bad_json")


@pytest.mark.parametrize("line", [b"[]", b'"cmd"', b"42", b"null", b"true", b'[{"cmd":"ping"}]'])
def test_not_an_object(line: bytes) -> None:
    """Valid JSON that is not an object gets not_an_object."""
    refused(line, "not_an_object")


def test_too_deep() -> None:
    """More than MAX_DEPTH levels of arrays/objects is refused before parsing."""
    assert MAX_DEPTH == 4
    refused({"cmd": "ping", "x": [[[[1]]]]}, "too_deep")
    refused({"cmd": "ping", "x": {"a": {"b": {"c": {}}}}}, "too_deep")
    # Exactly four levels parse (and fail later, on the unknown argument).
    refused({"cmd": "ping", "x": [[[1]]]}, "bad_argument")


def test_brackets_inside_strings_do_not_count() -> None:
    """Brackets in strings, even after escaped quotes, are text, not nesting."""
    text = '\\"[[[[[[{{{{{ \\\\'
    assert req({"cmd": "say", "text": text}) == R("say", {"text": text})


@pytest.mark.timeout(10)
@pytest.mark.parametrize("unit", [b"[", b"{", b'{"a":', b'["[",', b"[]", b'"\\"', b'"\\\\"['])
def test_huge_hostile_nesting_is_refused_without_recursion(unit: bytes) -> None:
    """A MiB of brackets (or of strings that look like brackets) is refused, never recursed."""
    line = unit * (2**20 // len(unit))
    result = decode(line)
    assert isinstance(result, RequestError)
    assert result.code in {"too_deep", "bad_json"}
    if unit in (b"[", b"{", b'{"a":', b'["[",'):
        assert result.code == "too_deep"


def test_bad_request_cmd() -> None:
    """A missing or non-string cmd is bad_request, with the id echoed."""
    assert refused({"text": "hi", "id": 1}, "bad_request").id == 1
    refused({"cmd": 5}, "bad_request")
    refused({"cmd": None}, "bad_request")
    refused({"cmd": ["say"]}, "bad_request")


@pytest.mark.parametrize(
    "bad_id",
    [True, False, 1.5, [], {}, "x" * (MAX_ID_CHARS + 1), "a\x1bb", 2**53, -(2**60)],
    ids=["true", "false", "float", "list", "dict", "long", "control", "2**53", "-2**60"],
)
def test_bad_id(bad_id: object) -> None:
    """An id is a printable string of at most 64 characters or a safe integer; a bool is not."""
    error = refused({"cmd": "ping", "id": bad_id}, "bad_request")
    assert error.id is None


@pytest.mark.parametrize("good_id", [0, -1, 2**53 - 1, "", "x" * MAX_ID_CHARS, "é-1"])
def test_good_id(good_id: str | int) -> None:
    """The id is given back exactly."""
    assert req({"cmd": "ping", "id": good_id}) == R("ping", {}, good_id)


def test_unknown_command_echoes_id_and_names_it_cleanly() -> None:
    """An unknown cmd gets unknown_command; its name is quoted, cleaned and cut short."""
    error = refused({"cmd": "shout", "id": "q1"}, "unknown_command")
    assert error.id == "q1"
    assert "'shout'" in error.text
    error = refused({"cmd": "\x1b[2J" + "x" * 500}, "unknown_command")
    assert "\x1b" not in error.text
    assert len(error.text) < 100
    refused({"cmd": "SAY"}, "unknown_command")  # names are exact


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        ({"cmd": "say"}, "text"),
        ({"cmd": "say", "text": None}, "text"),
        ({"cmd": "say", "text": 5}, "text"),
        ({"cmd": "say", "text": ["hi"]}, "text"),
        ({"cmd": "say", "text": " \x1b[2J\t"}, "text"),
        ({"cmd": "say", "text": "hi", "txt": "typo"}, "txt"),
        ({"cmd": "ping", "extra": 1}, "extra"),
        ({"cmd": "history", "n": "5"}, "n"),
        ({"cmd": "history", "n": True}, "n"),
        ({"cmd": "history", "n": 2.0}, "n"),
        ({"cmd": "history", "n": 0}, "n"),
        ({"cmd": "msg", "to": "bob smith", "text": "hi"}, "to"),
        ({"cmd": "join", "lobby": "dev", "password": "two words"}, "password"),
        ({"cmd": "login"}, "name"),
        ({"cmd": "login", "name": {"first": "al"}}, "name"),
    ],
)
def test_bad_argument(obj: dict[str, Any], named: str) -> None:
    """Missing, null, mistyped, empty, unknown or multi-word arguments: bad_argument, named."""
    obj["id"] = 9
    error = refused(obj, "bad_argument")
    assert named in error.text
    assert error.text.startswith(obj["cmd"] + ":")
    assert error.id == 9


def test_too_long_counts_utf8_bytes() -> None:
    """A string argument over MAX_STRING_BYTES UTF-8 bytes is too_long, even in fewer chars."""
    assert isinstance(req({"cmd": "say", "text": "x" * MAX_STRING_BYTES}), Request)
    assert refused({"cmd": "say", "text": "x" * (MAX_STRING_BYTES + 1)}, "too_long")
    euros = "€" * (MAX_STRING_BYTES // 3 + 1)  # fewer characters than the cap, more bytes
    assert len(euros) < MAX_STRING_BYTES
    error = refused({"cmd": "say", "text": euros, "id": "e"}, "too_long")
    assert error.id == "e"
    assert "text" in error.text


def test_request_error_encodes_with_re() -> None:
    """A RequestError becomes one error line carrying its id as re."""
    error = refused({"cmd": "nope", "id": 3}, "unknown_command")
    assert line_object(error.encode()) == {
        "type": "error",
        "code": "unknown_command",
        "text": error.text,
        "re": 3,
    }


# --- requests: properties -------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decode_never_raises_on_bytes(data: bytes) -> None:
    """Any bytes give a Request or a RequestError with a known code."""
    result = decode(data)
    assert isinstance(result, Request | RequestError)
    if isinstance(result, RequestError):
        assert result.code in ERROR_CODES


JSONISH = st.text(alphabet='[]{}",:\\ 0123456789.-eEtrufalsn cmdidsayxu\x1b', max_size=200)


@settings(max_examples=300)
@given(JSONISH)
def test_decode_never_raises_on_json_like_text(text: str) -> None:
    """Text made of JSON's own characters (the tricky kind) never raises either."""
    result = decode(text.encode())
    assert isinstance(result, Request | RequestError)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\', max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_depth_limit_is_exact(value: Any) -> None:
    """too_deep exactly when the object nests deeper than MAX_DEPTH, whatever the strings hold."""
    result = req({"cmd": "ping", "x": value})
    assert isinstance(result, RequestError)
    expected = "too_deep" if 1 + depth(value) > MAX_DEPTH else "bad_argument"
    assert result.code == expected


WORD = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=20
).filter(lambda s: clean_text(s) == s and len(s.split()) == 1 and s.strip() == s)
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), max_size=80
).filter(lambda s: clean_text(s) == s and s.strip() == s and s != "")
IDS = (
    st.none()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(max_size=MAX_ID_CHARS).filter(str.isprintable)
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], Request]:
    schema = draw(st.sampled_from(list(COMMANDS.values())))
    args: dict[str, str | int] = {}
    for arg in schema.args:
        if not arg.required and draw(st.booleans()):
            continue
        if arg.kind == "int":
            args[arg.name] = draw(st.integers(1, 2**31 - 1))
        else:
            args[arg.name] = draw(WORD if arg.kind == "word" else TEXT)
    request_id = draw(IDS)
    obj: dict[str, Any] = {"cmd": schema.name, **args}
    if request_id is not None:
        obj["id"] = request_id
    return obj, R(schema.name, args, request_id)


@given(requests(), st.booleans())
def test_valid_requests_round_trip(case: tuple[dict[str, Any], Request], ascii_only: bool) -> None:
    """Any request built from the schema decodes to exactly what was sent, ASCII-escaped or not."""
    obj, expected = case
    line = json.dumps(obj, ensure_ascii=ascii_only).encode()
    assert decode(line) == expected


def test_schema_matches_the_issue() -> None:
    """The commands and their arguments are the ones promised to client authors."""
    spec = {
        name: [(a.name, a.kind, a.required) for a in schema.args]
        for name, schema in COMMANDS.items()
    }
    assert spec == {
        "login": [("name", "word", True), ("password", "word", False)],
        "say": [("text", "text", True)],
        "join": [("lobby", "word", True), ("password", "word", False)],
        "create": [
            ("name", "word", True),
            ("password", "word", False),
            ("description", "text", False),
        ],
        "msg": [("to", "word", True), ("text", "text", True)],
        "tag": [("to", "word", True), ("text", "text", True)],
        "users": [],
        "lobbies": [],
        "history": [("n", "int", False)],
        "ai": [("question", "text", True)],
        "setai": [("prompt", "text", True)],
        "sp": [("picture", "word", True)],
        "help": [],
        "quit": [],
        "ping": [],
    }
    assert COMMANDS["login"].phase.value == "login"
    assert {n for n, s in COMMANDS.items() if s.phase.value == "any"} == {"help", "quit", "ping"}


# --- lines out ------------------------------------------------------------------------

T = 1_700_000_000.123456
MESSAGE = ChatMessage("general", "bob", "🐱", "hi @al", T, "tag", "al")
SAMPLES: dict[type, tuple[Event, dict[str, Any]]] = {
    ChatMessage: (
        MESSAGE,
        {"type": "message", "lobby": "general", "from": "bob", "picture": "🐱"}
        | {"text": "hi @al", "ts": 1_700_000_000.123, "kind": "tag", "tagged": "al"},
    ),
    DirectMessage: (
        DirectMessage("bob", "🐱", "al", "psst", T),
        {"type": "dm", "from": "bob", "to": "al", "picture": "🐱", "text": "psst"}
        | {"ts": 1_700_000_000.123},
    ),
    TagNotice: (
        TagNotice("bob", "general", "hi @al"),
        {"type": "tagged", "from": "bob", "lobby": "general", "text": "hi @al"},
    ),
    Presence: (
        Presence("al", "🐶", "dev", Move.ARRIVED, "general"),
        {"type": "presence", "name": "al", "picture": "🐶", "lobby": "dev"}
        | {"move": "arrived", "other": "general"},
    ),
    Notice: (
        Notice("You are now in #dev", Level.SUCCESS),
        {"type": "notice", "text": "You are now in #dev", "level": "success"},
    ),
    Farewell: (Farewell("Goodbye!"), {"type": "farewell", "text": "Goodbye!"}),
    Skipped: (Skipped("general", 12), {"type": "skipped", "lobby": "general", "count": 12}),
    PresenceBatch: (
        PresenceBatch("general", ("al", "bo"), ("cy",)),
        {"type": "presence_batch", "lobby": "general", "arrived": ["al", "bo"]}
        | {"departed": ["cy"]},
    ),
    Welcome: (
        Welcome("al", "general", "🐶"),
        {"type": "welcome", "name": "al", "lobby": "general", "picture": "🐶"},
    ),
    MemberList: (
        MemberList("dev", (Member("al", "🐶"), Member("bob", "🐱")), "al"),
        {
            "type": "members",
            "lobby": "dev",
            "members": [{"name": "al", "picture": "🐶"}, {"name": "bob", "picture": "🐱"}],
            "you": "al",
        },
    ),
    LobbyList: (
        LobbyList((LobbyInfo("general", False, 3, "server", "Main", True),), "general", False),
        {
            "type": "lobbies",
            "lobbies": [
                {"name": "general", "private": False, "online": 3, "creator": "server"}
                | {"description": "Main", "custom_ai": True}
            ],
            "yours": "general",
            "ai": False,
        },
    ),
    HelpList: (
        HelpList(
            (
                CommandHelp("/users", "who is in your lobby", "users"),
                CommandHelp("/ping", "ok", "ping", (), "any", ("json",)),
            ),
            (("/create NAME", "x"),),
        ),
        {
            "type": "help",
            "commands": [{"usage": "/users", "summary": "who is in your lobby"}],
            "json": [
                {"cmd": "users", "args": [], "summary": "who is in your lobby", "when": "chat"},
                {"cmd": "ping", "args": [], "summary": "ok", "when": "any"},
            ],
        },
    ),
    PictureList: (
        PictureList((("cat", "🐱"), ("dog", "🐶"))),
        {
            "type": "pictures",
            "pictures": [{"name": "cat", "picture": "🐱"}, {"name": "dog", "picture": "🐶"}],
        },
    ),
    Replay: (
        Replay("general", (MESSAGE, ChatMessage("general", "al", "🐶", "yo", 1.0)), T + 60),
        {
            "type": "history",
            "lobby": "general",
            "messages": [
                {"lobby": "general", "from": "bob", "picture": "🐱", "text": "hi @al"}
                | {"ts": 1_700_000_000.123, "kind": "tag", "tagged": "al"},
                {"lobby": "general", "from": "al", "picture": "🐶", "text": "yo"}
                | {"ts": 1.0, "kind": "chat"},
            ],
            "now": 1_700_000_060.123,
        },
    ),
    AIThinking: (AIThinking(), {"type": "ai_thinking"}),
    AIQuestion: (
        AIQuestion("general", "al", "🐶", "why?"),
        {"type": "ai_question", "lobby": "general", "asker": "al", "picture": "🐶"}
        | {"question": "why?"},
    ),
    AIAnswer: (
        AIAnswer("general", "al", ((Span("Because", "bold"), Span(" so.")), (), (Span("- x"),))),
        {
            "type": "ai_answer",
            "lobby": "general",
            "asker": "al",
            "text": "Because so.\n\n- x",
            "lines": [
                [{"text": "Because", "style": "bold"}, {"text": " so.", "style": ""}],
                [],
                [{"text": "- x", "style": ""}],
            ],
        },
    ),
}


def test_every_event_type_has_a_sample() -> None:
    """Each member of the Event union is covered here (Raw has no JSON form)."""
    assert set(SAMPLES) | {Raw} == set(typing.get_args(Event))


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda k: k.__name__)
def test_event_encoding(kind: type) -> None:
    """Each event is one line with exactly the documented fields."""
    event, expected = SAMPLES[kind]
    line = encode_event(event)
    assert line is not None
    obj = line_object(line)
    assert obj == expected


def test_optional_event_fields_are_left_out() -> None:
    """None fields (no tag, no other lobby, no lobby of yours) are absent, not null."""
    message = line_object(encode_event(ChatMessage("g", "bob", "🐱", "x", 1.0)) or b"")
    assert "tagged" not in message
    presence = line_object(encode_event(Presence("al", "🐶", "g", Move.CONNECTED)) or b"")
    assert presence["move"] == "connected"
    assert "other" not in presence
    lobbies = line_object(encode_event(LobbyList((), None, True)) or b"")
    assert lobbies == {"type": "lobbies", "lobbies": [], "ai": True}


def test_raw_has_no_json_form() -> None:
    """Banner and prompts are for terminals: JSON clients get nothing."""
    assert encode_event(Raw("Enter your username: ")) is None


def test_help_lists_json_commands_with_arguments() -> None:
    """help lists the JSON commands; ai/setai only when the server has the assistant."""
    for ai in (False, True):
        obj = line_object(encode_event(help_list(ai=ai)) or b"")
        commands = {c["cmd"]: c for c in obj["json"]}
        assert {"login", "say", "join", "create", "msg", "quit", "ping"} <= set(commands)
        assert ("ai" in commands) is ai
        assert ("setai" in commands) is ai
        assert "color" not in commands  # no ANSI on the JSON port
        assert commands["join"]["args"] == [
            {"name": "lobby", "type": "string", "required": True},
            {"name": "password", "type": "string", "required": False},
        ]
        assert commands["history"]["args"][0]["type"] == "integer"
        assert commands["login"]["when"] == "login"


HOSTILE_EVENTS: list[Event] = [
    ChatMessage("general", "bob", "🐱", HOSTILE, 1.0),
    ChatMessage("general", "Rox", "🤖", f"line one\n{HOSTILE}\nline three", 1.0, "ai", "al"),
    DirectMessage("bob", "🐱", "al", HOSTILE, 1.0),
    TagNotice("bob", "general", HOSTILE),
    Notice(HOSTILE, Level.ERROR),
    Farewell(HOSTILE),
    LobbyList((LobbyInfo("x", True, 1, "bob", HOSTILE, False),), None, True),
    AIQuestion("general", "al", "🐶", HOSTILE),
    AIAnswer("general", "al", ((Span(HOSTILE, "code"),), (Span("ok"),))),
    Replay("general", (ChatMessage("general", "bob", "🐱", HOSTILE, 1.0),), 2.0),
]


@pytest.mark.parametrize("event", HOSTILE_EVENTS, ids=lambda e: type(e).__name__)
def test_hostile_event_text_never_reaches_the_wire(event: Event) -> None:
    """No raw or JSON-escaped control character, escape sequence or bidi control survives."""
    line = encode_event(event)
    assert line is not None
    obj = line_object(line)
    for value in strings(obj):
        assert UNSAFE_VALUE.search(value) is None, value
        assert "\x1b" not in value


def test_multi_line_text_keeps_its_newlines() -> None:
    """An AI message's lines stay lines (escaped as \\n inside the one JSON line)."""
    line = encode_event(ChatMessage("g", "Rox", "🤖", "one\ntwo", 1.0, "ai", "al"))
    assert line is not None
    assert b"one\\ntwo" in line
    assert line_object(line)["text"] == "one\ntwo"


def test_line_separators_are_escaped_on_the_wire() -> None:
    """U+2028/U+2029 (legal in JSON) go out as \\u escapes, so line splitters cannot break."""
    line = encode_event(Notice("a\u2028b\u2029c"))
    assert line is not None
    assert "\u2028".encode() not in line
    assert line_object(line)["text"] == "a\u2028b\u2029c"


def test_lone_surrogate_in_an_event_does_not_crash_encoding() -> None:
    """Bytes are shared by every recipient: a bad code point must not raise for all of them."""
    line = encode_event(Notice("a\ud800b"))
    assert line is not None
    assert line_object(line)["text"] in {"a?b", "a\ufffdb"}


def test_ai_answer_from_markdown() -> None:
    """The plain text is the visible text of the styled lines."""
    lines = render_markdown("**Hi** there\n\n- one\n- two")
    obj = line_object(encode_event(AIAnswer("g", "al", lines)) or b"")
    assert obj["text"] == "Hi there\n\n• one\n• two"
    assert obj["lines"][0][0] == {"text": "Hi", "style": "bold"}


def test_event_bytes_are_shareable() -> None:
    """The same event always encodes to the same bytes (no per-connection data inside)."""
    for event, _ in SAMPLES.values():
        assert encode_event(event) == encode_event(event)
        assert b'"seq"' not in (encode_event(event) or b"")


# --- seq, hello, welcome, ok, error ---------------------------------------------------


@given(st.integers(0, 2**63), st.sampled_from([e for e, _ in SAMPLES.values()]))
def test_with_seq_inserts_seq_first(seq: int, event: Event) -> None:
    """with_seq adds "seq" as the first key of the same object, without re-encoding."""
    line = encode_event(event)
    assert line is not None
    numbered = with_seq(line, seq)
    assert numbered.startswith(b'{"seq":%d,' % seq)
    obj = line_object(numbered)
    assert obj.pop("seq") == seq
    assert obj == json.loads(line)


def test_with_seq_on_replies() -> None:
    """Replies are numbered like events."""
    assert with_seq(encode_ok(), 1) == b'{"seq":1,"type":"ok"}\n'
    assert with_seq(encode_ok("a"), 2) == b'{"seq":2,"type":"ok","re":"a"}\n'


def test_hello() -> None:
    """The first line names the server, its version and the protocol number."""
    assert line_object(encode_hello("0.1.0")) == {
        "type": "hello",
        "server": "gochat",
        "version": "0.1.0",
        "protocol": PROTOCOL,
    }
    assert line_object(encode_hello("0.1.0", max_line_bytes=8192))["max_line_bytes"] == 8192


def test_welcome() -> None:
    """A successful login's result."""
    assert line_object(encode_event(Welcome("alice", "general", "🐱")) or b"") == {
        "type": "welcome",
        "name": "alice",
        "lobby": "general",
        "picture": "🐱",
    }


def test_ok() -> None:
    """ok echoes the id as re; with no id there is no re."""
    assert encode_ok() == b'{"type":"ok"}\n'
    assert encode_ok(0) == b'{"type":"ok","re":0}\n'
    assert encode_ok("x") == b'{"type":"ok","re":"x"}\n'


def test_error_with_retry_after() -> None:
    """retry_after is in seconds, rounded up to a tenth, never 0."""
    obj = line_object(encode_error("rate_limited", "Rate limited!", re=4, retry_after=4.21))
    assert obj == {
        "type": "error",
        "code": "rate_limited",
        "text": "Rate limited!",
        "retry_after": 4.3,
        "re": 4,
    }
    assert line_object(encode_error("rate_limited", "x", retry_after=4.2))["retry_after"] == 4.2
    assert line_object(encode_error("rate_limited", "x", retry_after=0))["retry_after"] == 0.1
    assert "re" not in line_object(encode_error("internal", "x"))


def test_error_text_is_cleaned() -> None:
    """Error text from the core (it may quote the user) is cleaned too."""
    assert line_object(encode_error("refused", HOSTILE))["text"] == clean_text(HOSTILE)


def test_error_codes_are_stable_and_known() -> None:
    """The codes the issue promises exist; an unknown code is a bug, not a line."""
    promised = {
        "name_taken",
        "bad_name",
        "not_logged_in",
        "already_logged_in",
        "rate_limited",
        "refused",
        "forbidden",
        "not_found",
        "wrong_password",
        "unavailable",
        "too_long",
        "bad_json",
        "not_an_object",
        "too_deep",
        "bad_request",
        "unknown_command",
        "bad_argument",
        "line_too_long",
        "internal",
    }
    assert set(ERROR_CODES) == promised
    assert all(meaning for meaning in ERROR_CODES.values())
    with pytest.raises(ValueError, match="unknown error code"):
        encode_error("oops", "x")


def test_error_codes_are_all_in_the_protocol_document() -> None:
    """docs/protocol.md lists every code (client authors read the table, not the source)."""
    doc = (Path(ROOT) / "docs" / "protocol.md").read_text(encoding="utf-8")
    for code in ERROR_CODES:
        assert f"`{code}`" in doc, code
    for name in COMMANDS:
        assert f'"cmd":"{name}"' in doc, name
