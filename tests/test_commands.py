"""Commands at the unit level: the names /create, /join and the name prompt accept,
the /create forms, the command table and its handlers, without sockets."""

from __future__ import annotations

import asyncio
import string

import bcrypt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat import commands
from gochat.changes import LobbySaved
from gochat.chat import ChatCore
from gochat.clients import Client
from gochat.command_table import Args, Cost, Phase, Registry, Who
from gochat.commands import CREATE_FORMS, REGISTRY, create_words, help_list
from gochat.errors import UsageError, UserError
from gochat.names import (
    RESERVED_USER_NAMES,
    lobby_name,
    name_key,
    name_problem,
    user_name_problem,
)
from gochat.ratelimit import GuessLimiter, MessageLimiter
from gochat.render import ANSI_TEXT, HELP_WIDTH, PLAIN_TEXT, help_lines, render
from gochat.server import ChatServer

from .conftest import FakeClock, test_config

# --- names ----------------------------------------------------------------------

ALLOWED = string.ascii_letters + string.digits + "_-"


@given(st.text(max_size=25))
def test_a_name_is_2_to_20_letters_digits_underscores_or_dashes(name):
    """Exactly the names of 2-20 characters from A-Z a-z 0-9 _ - are accepted."""
    ok = 2 <= len(name) <= 20 and all(ch in ALLOWED for ch in name)
    assert (name_problem(name) is None) is ok


@given(st.text(ALLOWED, min_size=2, max_size=20))
def test_every_well_formed_name_is_accepted(name):
    assert name_problem(name) is None


def test_a_refused_name_says_what_is_allowed():
    """The answer names the thing being named and the rule, in the user's words."""
    rule = "must be 2-20 characters: letters, digits, _ or -."
    assert name_problem("x") == f"Name {rule}"
    assert name_problem("a" * 21) == f"Name {rule}"
    assert name_problem("bad name") == f"Name {rule}"
    assert name_problem("é-lan") == f"Name {rule}"
    assert name_problem("", "Lobby name") == f"Lobby name {rule}"


def test_reserved_user_names_are_refused_in_any_case():
    """'Admin', 'ROX', 'system'... could pass for the server speaking: refused."""
    assert user_name_problem("admin") == "The name 'admin' is reserved. Pick another."
    assert user_name_problem("ROX") == "The name 'ROX' is reserved. Pick another."
    assert all(user_name_problem(name.upper()) is not None for name in RESERVED_USER_NAMES)


def test_a_malformed_user_name_gets_the_format_rule_not_reserved():
    """A name that breaks the format is told the format (even if its letters are reserved)."""
    assert user_name_problem("a") == "Name must be 2-20 characters: letters, digits, _ or -."
    assert user_name_problem("root!") == "Name must be 2-20 characters: letters, digits, _ or -."


def test_ordinary_user_names_pass():
    assert user_name_problem("alice") is None
    assert user_name_problem("Admin2") is None  # only the exact reserved words
    assert user_name_problem("rox_fan") is None


def test_lobby_name_drops_one_leading_hash():
    """'#music' is typed by IRC habit and means 'music'; only one '#' is removed."""
    assert lobby_name("#music") == "music"
    assert lobby_name("music") == "music"
    assert lobby_name("##music") == "#music"
    assert lobby_name("mu#sic") == "mu#sic"
    assert lobby_name("#") == ""


@pytest.mark.parametrize(("a", "b"), [("Alice", "alice"), ("BOB", "bob"), ("Straße", "STRASSE")])
def test_name_identity_ignores_case(a, b):
    assert name_key(a) == name_key(b)


# --- the command table and its handlers, with a stand-in for the session --------------


class Journal:
    """A sink of the core's changes that records which lobbies were stored."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def take(self, change, audience=None) -> None:
        if isinstance(change, LobbySaved):
            self.saved.append(change.lobby.name)


class Ctx:
    """What a handler gets from its session (commands.Context), with an inbox for output."""

    def __init__(self, core: ChatCore, server, name: str, ip: str = "10.0.0.1") -> None:
        self.core = core
        self.server = server
        self.chunks: list[bytes] = []
        self.client = Client(
            name, self.write, limiter=MessageLimiter.create(5, 10, 30), mode=PLAIN_TEXT
        )
        assert core.login(self.client)
        self.ip_key = ip
        self.active = True
        self.quits: list[tuple[str, str]] = []
        self.now = 0.0

    def quit(self, reason: str, farewell: str) -> None:
        self.quits.append((reason, farewell))

    def write(self, data: bytes, lobby: str | None = None) -> None:
        self.chunks.append(data)

    def monotonic(self) -> float:
        return self.now

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    def clear(self) -> None:
        self.chunks.clear()

    dialect = "text"

    def log_in(self, name: str) -> None:
        self.core.log_in(self.client, name)

    async def run(self, line: str) -> None:
        """Run `/name args` as the text front end does once budgets have passed."""
        name, _, rest = line.removeprefix("/").partition(" ")
        command = REGISTRY.get(name, "text")
        commands.check_allowed(self, command)
        result = command.handler(self, command.read_words(rest.strip()))
        if asyncio.iscoroutine(result):
            await result


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_server(clock: FakeClock, **settings) -> ChatServer:
    """A real server, not started: its core, its Rox and its guess limiter are real."""
    server = ChatServer(test_config(**settings), clock=clock)
    server.lobby_guesses = GuessLimiter(per_source=2, per_target=3, window=60.0)  # small limits
    return server


@pytest.fixture
def server(clock: FakeClock) -> ChatServer:
    return make_server(clock)  # no AI key: Rox is off


@pytest.fixture
def core(server: ChatServer) -> ChatCore:
    return server.core


@pytest.fixture
def alice(core, server) -> Ctx:
    return Ctx(core, server, "alice")


@pytest.fixture
def bob(core, server) -> Ctx:
    return Ctx(core, server, "bob", ip="10.0.0.2")


def test_registry_defaults_are_the_lenient_ones():
    """A command declared without options is free, for anyone, after login, everywhere."""
    registry = Registry()

    @registry.command("ping", "text?:text", "answer pong")
    def ping(ctx, args):
        return None

    command = registry.get("PING")
    assert command is not None and command.handler is ping
    assert (command.name, command.summary, command.usage) == ("ping", "answer pong", "/ping [text]")
    assert (command.min_args, command.cost, command.phase, command.who, command.needs_ai) == (
        0,
        Cost.FREE,
        Phase.CHAT,
        Who.ANYONE,
        False,
    )
    assert command.offered_in("text") and command.offered_in("json")
    assert registry.get("pong") is None


def test_registry_keeps_every_option_and_the_declaration_order():
    registry = Registry()
    for name in ("b", "a", "c"):
        registry.command(
            name,
            "x:word y:int",
            "s",
            cost=Cost.LOOKUP,
            phase=Phase.ANY,
            needs_ai=True,
            dialects=frozenset({"json"}),
        )(lambda ctx, args: None)
    assert [c.name for c in registry] == ["b", "a", "c"]
    command = registry["a"]
    assert (command.min_args, command.cost, command.phase, command.needs_ai) == (
        2,
        Cost.LOOKUP,
        Phase.ANY,
        True,
    )
    assert command.usage == "/a <x> <y>"
    assert registry.get("a", "text") is None and registry.get("a", "json") is command


def test_an_argument_spec_must_name_a_known_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        Registry().command("x", "a:float", "s")(lambda ctx, args: None)


@pytest.mark.parametrize(
    ("spec", "rest", "expected"),
    [
        ("a:word b?:word", "one two three", {"a": "one", "b": "two"}),
        ("a:word b?:word", "one", {"a": "one"}),
        ("a:word t:text", "bob  hello  there", {"a": "bob", "t": "hello  there"}),
        ("n?:int", "", {}),
        ("n?:int", "12 more", {"n": 12}),
    ],
)
def test_text_words_are_read_by_the_declared_arguments(spec, rest, expected):
    registry = Registry()
    registry.command("x", spec, "s")(lambda ctx, args: None)
    assert registry["x"].read_words(rest) == Args(expected)


@pytest.mark.parametrize(("spec", "rest"), [("a:word", ""), ("n?:int", "0"), ("n:int", "x")])
def test_a_wrong_text_call_is_a_usage_error(spec, rest):
    registry = Registry()
    registry.command("x", spec, "s")(lambda ctx, args: None)
    with pytest.raises(UsageError):
        registry["x"].read_words(rest)


def test_which_commands_spend_which_budget():
    """Speaking and changing state spend the message budget; listings the lookup budget."""
    limited = {c.name for c in REGISTRY if c.cost is Cost.MESSAGE}
    lookups = {c.name for c in REGISTRY if c.cost is Cost.LOOKUP}
    assert limited == {"create", "join", "msg", "tag", "ai", "setai", "say"}
    assert lookups == {"users", "lobbies", "history"}
    assert {c.name for c in REGISTRY if c.needs_ai} == {"ai", "setai"}
    assert {c.name for c in REGISTRY if c.who is Who.LOBBY_OWNER} == {"setai"}
    assert {c.name: c.min_args for c in REGISTRY if c.min_args} == {
        "login": 1,
        "create": 1,
        "join": 1,
        "msg": 2,
        "tag": 2,
        "sp": 1,
        "color": 1,
        "ai": 1,
        "setai": 1,
        "say": 1,
    }


def test_each_dialect_offers_its_commands():
    """The text front end has the name prompt and plain lines for login and say; JSON has
    no ANSI colour to switch."""
    json_only = {c.name for c in REGISTRY if not c.offered_in("text")}
    text_only = {c.name for c in REGISTRY if not c.offered_in("json")}
    assert (json_only, text_only) == ({"login", "say", "ping"}, {"color"})


@pytest.mark.parametrize("ai", [False, True])
def test_help_lists_every_command_in_one_column_within_80(ai):
    """/help: summaries line up in one column; a usage too wide for it has the summary below."""
    help = help_list(ai=ai)
    assert render(help, False).decode().startswith("Commands\r\n")
    all_lines = help_lines(help)
    assert all(len(line) <= HELP_WIDTH for line in all_lines)
    shown = [c for c in REGISTRY if (ai or not c.needs_ai) and c.offered_in("text")]
    column = 2 + max(len(c.usage) for c in shown if len(c.usage) <= 24) + 2
    lines = list(all_lines)
    for c in shown:
        line = lines.pop(0)
        in_column = f"  {c.usage:<{column - 4}}  {c.summary}"
        if len(c.usage) <= 24 and len(in_column) <= HELP_WIDTH:
            assert line == in_column
        else:
            assert line == f"  {c.usage}"
            below = []
            while lines[0].startswith("      "):
                below.append(lines.pop(0).strip())
            assert " ".join(below) == c.summary
    assert ("/ai <question>" in "\n".join(all_lines)) is ai
    assert lines[0] == "  Lobbies:"
    form_width = max(len(form) for form, _ in CREATE_FORMS)
    assert lines[1 : 1 + len(CREATE_FORMS)] == [
        f"    {form:<{form_width}}  {what}" for form, what in CREATE_FORMS
    ]
    assert lines[-1] == "  Any other line is said to your lobby (start it with // to say '/...')."
    assert len(lines) == 2 + len(CREATE_FORMS)


def layout(*entries: tuple[str, str, str]) -> tuple[str, ...]:
    registry = Registry()
    for name, args, summary in entries:
        registry.command(name, "", summary, syntax=args)(lambda ctx, args: None)
    lines = help_lines(help_list(ai=True, registry=registry))
    return tuple(lines[: -2 - len(CREATE_FORMS)])


def test_help_a_usage_of_24_columns_stays_in_the_column():
    usage_24 = ("abcdef", "<" + "x" * 14 + ">", "fits")  # "/abcdef <xxxxxxxxxxxxxx>": 24
    assert layout(usage_24, ("b", "", "short")) == (
        "  /abcdef <xxxxxxxxxxxxxx>  fits",
        "  /b                        short",
    )


def test_help_a_longer_usage_gets_its_own_line():
    """A usage past 24 columns does not widen the column: its summary goes below it."""
    assert layout(("abcdefg", "<" + "x" * 14 + ">", "too wide"), ("b", "", "short")) == (
        "  /abcdefg <xxxxxxxxxxxxxx>",
        "      too wide",
        "  /b  short",
    )


def test_help_with_only_long_usages():
    assert layout(("abcdefghijklmnopqrstuvwxyz", "", "long")) == (
        "  /abcdefghijklmnopqrstuvwxyz",
        "      long",
    )


def test_help_a_line_of_exactly_80_stays_whole_one_of_81_wraps():
    exact = "s" * (HELP_WIDTH - 2 - 2 - 2)  # "  /a  " + summary = 80
    assert layout(("a", "", exact)) == (f"  /a  {exact}",)
    words = " ".join(["word"] * 30)  # 149 characters: two lines below the usage
    lines = layout(("a", "", words))
    assert lines[0] == "  /a"
    assert len(lines) == 3
    assert all(line.startswith("      word") for line in lines[1:])
    assert all(len(line) <= HELP_WIDTH for line in lines)
    assert len(lines[1]) > HELP_WIDTH - 5  # filled to 80 columns, not a narrower default
    assert " ".join(line.strip() for line in lines[1:]) == words


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("music", ("music", None, "No description")),
        ("#music", ("music", None, "No description")),
        ("music Jazz", ("music", None, "Jazz")),
        ("music - Jazz and blues", ("music", None, "Jazz and blues")),
        ("music no-pass Jazz", ("music", None, "Jazz")),
        ("music NOPASS Jazz", ("music", None, "Jazz")),
        ("music none", ("music", None, "No description")),
        ("music -", ("music", None, "No description")),
        ("music s3cret Jazz and blues", ("music", "s3cret", "Jazz and blues")),
        ("music   s3cret   Jazz  and blues", ("music", "s3cret", "Jazz  and blues")),
    ],
)
def test_create_forms(args, expected):
    """The /create forms /help lists: two words are public, three or more private."""
    name, password, description = expected
    read = create_words(args)
    assert commands.lobby_name(read.text("name")) == name
    assert (read.optional("password"), read.text("description") or "No description") == (
        password,
        description,
    )


async def test_create_public_lobby_moves_the_creator(alice, bob, core):
    await alice.run("/create #music Jazz")
    lobby = core.lobbies.get("music")
    assert lobby is not None and not lobby.private
    assert (lobby.creator, lobby.description) == ("alice", "Jazz")
    assert core.current(alice.client) is lobby
    assert "Lobby #music created (public)." in alice.text
    assert "alice went to #music" in bob.text


async def test_create_private_lobby_stores_a_bcrypt_hash(alice, core):
    await alice.run("/create vault s3cret the safe")
    lobby = core.lobbies.get("vault")
    assert lobby.private and lobby.description == "the safe"
    assert bcrypt.checkpw(b"s3cret", lobby.password_hash)
    assert not bcrypt.checkpw(b"S3CRET", lobby.password_hash)
    assert lobby.password_hash.startswith(b"$2b$04$")  # GOCHAT_BCRYPT_ROUNDS=4 in tests


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("/create x", "Lobby name must be 2-20 characters: letters, digits, _ or -."),
        ("/create general", "Lobby #general already exists. Use /join general."),
        ("/create GENERAL - x", "Lobby #general already exists. Use /join general."),
        (f"/create music - {'d' * 201}", "Description too long (the limit is 200 characters)."),
        (f"/create music {'p' * 73} d", "Password too long (the limit is 72 bytes)."),
        (f"/create music {'é' * 37} d", "Password too long (the limit is 72 bytes)."),
    ],
)
async def test_create_refusals(alice, core, line, answer):
    with pytest.raises(UserError) as refused:
        await alice.run(line)
    assert str(refused.value) == answer
    assert core.lobbies.get("music") is None
    assert core.current(alice.client) is core.lobbies.general


async def test_create_limits_are_inclusive(alice, core):
    """A 200-character description and a 72-byte password are accepted."""
    await alice.run(f"/create music - {'d' * 200}")
    assert core.lobbies.get("music").description == "d" * 200
    await alice.run(f"/create vault {'p' * 72} d")
    assert bcrypt.checkpw(b"p" * 72, core.lobbies.get("vault").password_hash)


def during_bcrypt(monkeypatch, what):
    """Run `what` while the handler's bcrypt call is in flight (it is then done inline)."""

    async def to_thread(func, *args):
        what()
        return func(*args)

    monkeypatch.setattr(commands.asyncio, "to_thread", to_thread)


async def test_create_by_a_user_who_left_during_the_hash_does_nothing(alice, core, monkeypatch):
    """The session closed while bcrypt ran: no lobby is made for a gone user."""
    during_bcrypt(monkeypatch, lambda: setattr(alice, "active", False))
    await alice.run("/create vault s3cret d")
    assert core.lobbies.get("vault") is None


async def test_join_public_lobby(alice, bob, core):
    await bob.run("/create music Jazz")
    alice.clear()
    await alice.run("/join #Music")
    assert core.current(alice.client) is core.lobbies.get("music")
    assert "You are now in #music: Jazz" in alice.text


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/join nowhere", "Lobby #nowhere not found. Type /lobbies to see them."),
        ("/join general", "You are already in #general."),
    ],
)
async def test_join_refusals(alice, line, error):
    with pytest.raises(UserError) as refused:
        await alice.run(line)
    assert str(refused.value) == error
    assert not isinstance(refused.value, UsageError)


async def test_join_of_a_bare_hash_is_a_usage_error(alice):
    with pytest.raises(UsageError) as refused:
        await alice.run("/join #")
    assert refused.value.detail == "name the lobby, e.g. /join general"


async def test_join_private_lobby_needs_the_password(alice, bob, core):
    await bob.run("/create vault s3cret d")
    with pytest.raises(UserError, match=r"^#vault is private: /join vault <password>$"):
        await alice.run("/join vault")
    with pytest.raises(UserError, match=r"^Wrong password for #vault\.$"):
        await alice.run("/join vault S3CRET")
    assert core.current(alice.client) is core.lobbies.general
    await alice.run("/join vault s3cret")
    assert core.current(alice.client) is core.lobbies.get("vault")


async def test_wrong_passwords_are_limited_right_ones_are_not(alice, bob, core, server):
    """Two wrong guesses from one address, then a wait; the right one never counts."""
    await bob.run("/create vault s3cret d")
    for _ in range(2):
        with pytest.raises(UserError, match="Wrong password"):
            await alice.run("/join vault guess")
    alice.now = 10.0
    with pytest.raises(UserError) as refused:
        await alice.run("/join vault s3cret")
    assert str(refused.value) == "Too many wrong passwords for #vault. Wait 50 seconds."
    alice.now = 60.0
    for _ in range(3):  # right passwords, again and again: never limited
        await alice.run("/join vault s3cret")
        await alice.run("/join general")
    assert server.lobby_guesses.try_attempt("vault", "10.0.0.1", 60.0) == 0.0


async def test_join_counts_guesses_per_lobby_key_and_address(alice, bob, core, server):
    await bob.run("/create vault s3cret d")
    with pytest.raises(UserError, match="Wrong password"):
        await alice.run("/join VAULT guess")
    with pytest.raises(UserError, match="Wrong password"):
        await alice.run("/join vault guess")
    assert server.lobby_guesses.try_attempt("vault", "10.0.0.1", 0.0) > 0
    assert server.lobby_guesses.try_attempt("vault", "10.0.0.2", 0.0) == 0.0


async def test_join_a_lobby_removed_during_the_check(alice, bob, core, clock, monkeypatch):
    await bob.run("/create vault s3cret d")
    await bob.run("/join general")

    def remove_vault():
        clock.advance(10 * 24 * 3600)
        assert [lobby.name for lobby in core.prune_lobbies()] == ["vault"]

    during_bcrypt(monkeypatch, remove_vault)
    with pytest.raises(UserError, match=r"^Lobby #vault no longer exists\.$"):
        await alice.run("/join vault s3cret")
    assert core.current(alice.client) is core.lobbies.general


async def test_join_by_a_user_who_left_during_the_check_does_nothing(alice, bob, core, monkeypatch):
    await bob.run("/create vault s3cret d")
    during_bcrypt(monkeypatch, lambda: setattr(alice, "active", False))
    await alice.run("/join vault s3cret")
    assert core.current(alice.client) is core.lobbies.general


async def test_join_twice_at_once_moves_once(alice, bob, core):
    """Two /join lines for one private lobby: the second finds the user there already."""
    await bob.run("/create vault s3cret d")
    await asyncio.gather(alice.run("/join vault s3cret"), alice.run("/join vault s3cret"))
    assert core.current(alice.client) is core.lobbies.get("vault")
    assert bob.text.count("alice joined from #general") == 1


async def test_users_lists_the_lobby_and_marks_you(alice, bob):
    alice.clear()
    await alice.run("/users")
    assert alice.text == "Users in #general (2)\n  🙂 alice (you)\n  🙂 bob\n".replace("\n", "\r\n")


async def test_lobbies_lists_access_members_creator_and_description(alice, bob, core, server):
    await bob.run("/create vault s3cret the safe")
    alice.clear()
    await alice.run("/lobbies")
    lines = alice.text.split("\r\n")
    assert lines[0] == "Lobbies (2; * = yours)"
    assert lines[1] == " *#general              public     1 online  by server  " + (
        core.lobbies.general.description
    )
    assert lines[2] == "  #vault                private    1 online  by bob  the safe"


async def test_lobbies_show_the_ai_column_when_rox_is_on(clock):
    server = make_server(clock, ai_api_key="test-key")
    alice, bob = Ctx(server.core, server, "alice"), Ctx(server.core, server, "bob")
    await bob.run("/create vault s3cret the safe")
    await bob.run("/setai a pirate")
    alice.clear()
    await alice.run("/lobbies")
    lines = alice.text.split("\r\n")
    assert lines[1].startswith(" *#general              public     1 online  default AI  by ")
    assert lines[2] == "  #vault                private    1 online  custom AI   by bob  the safe"


async def test_history_shows_the_last_n(alice, bob, core, clock):
    for i in range(30):
        core.say(bob.client, f"line {i}")
    alice.clear()
    await alice.run("/history")
    assert "line 9\r\n" not in alice.text
    assert all(f"line {i}\r\n" in alice.text for i in range(10, 30))
    alice.clear()
    await alice.run("/history 3")
    assert [f"line {i}\r\n" in alice.text for i in (26, 27, 28, 29)] == [False, True, True, True]
    alice.clear()
    await alice.run("/history 1")
    assert "line 29\r\n" in alice.text and "line 28\r\n" not in alice.text


async def test_history_at_most_200(alice, bob, core):
    for i in range(250):
        core.say(bob.client, f"line {i}")
    alice.clear()
    await alice.run("/history 1000")
    assert "line 49\r\n" not in alice.text
    assert "line 50\r\n" in alice.text and "line 249\r\n" in alice.text


@pytest.mark.parametrize("n", ["0", "-1", "x", "1.5"])
async def test_history_needs_a_positive_whole_number(alice, n):
    with pytest.raises(UsageError) as refused:
        await alice.run(f"/history {n}")
    assert refused.value.detail == "n is a whole number, at least 1"


async def test_history_of_a_quiet_lobby(alice):
    alice.clear()
    await alice.run("/history")
    assert alice.text.endswith(" No messages in #general yet.\r\n")
    assert "recent messages" not in alice.text


async def test_sp_sets_lists_and_resets_the_picture(alice):
    await alice.run("/sp CAT")
    assert alice.client.picture == "🐱"
    assert "Your profile picture is now 🐱" in alice.text
    await alice.run("/sp default")
    assert alice.client.picture == "🙂"
    alice.clear()
    await alice.run("/sp list")
    lines = alice.text.split("\r\n")
    assert lines[0].startswith("Profile pictures (") and lines[0].endswith("): /sp <name>")
    assert "🐱 cat" in alice.text
    with pytest.raises(UserError, match=r"^No picture called 'nosuch'\. Type /sp list"):
        await alice.run("/sp NoSuch")


async def test_color_on_and_off(alice):
    await alice.run("/color ON")
    assert alice.client.mode is ANSI_TEXT
    await alice.run("/color off")
    assert alice.client.mode is PLAIN_TEXT
    assert "Colour off." in alice.text
    with pytest.raises(UsageError):
        await alice.run("/color maybe")


async def test_msg_and_tag_accept_an_at_sign(alice, bob):
    await alice.run("/msg @bob psst, over here")
    assert "alice → bob: psst, over here" in bob.text
    await alice.run("/tag @bob look")
    assert "@bob look" in bob.text


async def test_ai_without_a_key_is_not_available(alice):
    with pytest.raises(UserError, match="AI is not available on this server"):
        await alice.run("/ai what is   jazz?")
    with pytest.raises(UserError, match="AI is not available on this server"):
        await alice.run("/setai a pirate")


async def test_setai_goes_to_rox_and_is_stored(clock):
    server = make_server(clock, ai_api_key="test-key")
    alice, bob = Ctx(server.core, server, "alice"), Ctx(server.core, server, "bob")
    journal = Journal()
    server.core.sinks.append(journal)
    await alice.run("/create music Jazz")
    await bob.run("/join music")
    journal.saved.clear()
    await alice.run("/setai a pirate")
    assert server.core.lobbies.get("music").persona == "a pirate"
    assert "alice gave Rox a new persona in #music: a pirate" in bob.text
    assert journal.saved == ["music"]  # the persona outlives a restart
    await alice.run("/setai reset")
    assert journal.saved == ["music", "music"]
    await alice.run("/setai reset")  # already the default: nothing changes, nothing stored
    assert journal.saved == ["music", "music"]


async def test_quit_says_goodbye(alice):
    await alice.run("/quit")
    assert alice.quits == [("quit", "Goodbye! Thanks for chatting.")]


async def test_help_goes_to_the_asker(alice, bob, server):
    alice.clear()
    bob.clear()
    await alice.run("/help")
    assert alice.text.startswith("Commands\r\n")
    assert "/ai <question>" not in alice.text
    assert bob.text == ""
    with_ai = make_server(FakeClock(), ai_api_key="test-key")
    carol = Ctx(with_ai.core, with_ai, "carol")
    carol.clear()
    await carol.run("/help")
    assert "/ai <question>" in carol.text
