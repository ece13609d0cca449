"""The command table: one entry per command with its usage, summary and handler.

`/help` is generated from this table and a wrong call gets the entry's usage,
so the two can never disagree. The front end checks argument counts and the
rate limit from the entry before the handler runs; handlers only do the work.
A handler may be a coroutine function (bcrypt runs off the loop); the front end
then holds the user's later lines until it finishes, so order is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import bcrypt

from gochat import profiles
from gochat.errors import UsageError, UserError
from gochat.events import (
    CommandHelp,
    HelpList,
    Level,
    LobbyInfo,
    LobbyList,
    Member,
    MemberList,
    PictureList,
    Replay,
)
from gochat.fanout import send
from gochat.names import lobby_name, name_problem
from gochat.ratelimit import wait_phrase
from gochat.render import TextMode, text_mode

if TYPE_CHECKING:
    from gochat.chat import ChatCore
    from gochat.clients import Client
    from gochat.ratelimit import GuessLimiter

NO_PASSWORD_WORDS = frozenset({"no-pass", "nopass", "none", "-"})
NO_DESCRIPTION = "No description"
MAX_DESCRIPTION = 200
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer would be silently truncated or refused
HISTORY_DEFAULT = 20  # /history without n
HISTORY_MAX = 200  # most lines /history shows (the ring holds this many)


class Assistant(Protocol):
    """Rox as the commands see it (gochat.rox.Rox)."""

    @property
    def enabled(self) -> bool: ...

    def ask(self, client: Client, question: str) -> None: ...

    def set_persona(self, client: Client, prompt: str) -> bool: ...


class Services(Protocol):
    """What handlers use of the server beyond the core (gochat.server.ChatServer)."""

    @property
    def assistant(self) -> Assistant: ...

    @property
    def lobby_guesses(self) -> GuessLimiter: ...


class Context(Protocol):
    """What a handler may use: the core, its own client and its connection."""

    @property
    def core(self) -> ChatCore: ...

    @property
    def server(self) -> Services: ...

    @property
    def client(self) -> Client: ...

    @property
    def ip_key(self) -> str:
        """Where the connection comes from, as connections are counted (IPv6: its /64)."""

    @property
    def active(self) -> bool: ...

    def quit(self, reason: str, farewell: str) -> None: ...

    def monotonic(self) -> float: ...


Handler = Callable[[Context, str], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Command:
    """One command: `/name args`, what it does, and how strictly it is checked."""

    name: str
    args: str
    summary: str
    handler: Handler
    min_args: int = 0
    rate_limited: bool = False  # spends the user's message budget (it speaks or changes state)
    lookup: bool = False  # read-only, but its cost grows with the server: the lookup budget
    needs_ai: bool = False  # only useful with an AI key: /help leaves it out without one

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()


class Registry:
    """Commands by name, in the order /help lists them."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(
        self,
        name: str,
        args: str,
        summary: str,
        *,
        min_args: int = 0,
        rate_limited: bool = False,
        lookup: bool = False,
        needs_ai: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._commands[name] = Command(
                name, args, summary, handler, min_args, rate_limited, lookup, needs_ai
            )
            return handler

        return register

    def get(self, name: str) -> Command | None:
        return self._commands.get(name.lower())

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())


REGISTRY = Registry()
command = REGISTRY.command


def help_list(*, ai: bool, registry: Registry = REGISTRY) -> HelpList:
    """/help from the table. Without AI the `needs_ai` commands are left out:
    listing commands that only answer "not available" would mislead a new user."""
    return HelpList(
        tuple(CommandHelp(c.usage, c.summary) for c in registry if ai or not c.needs_ai),
        CREATE_FORMS,
    )


@command("help", "", "list the commands")
def _help(ctx: Context, args: str) -> None:
    send(help_list(ai=ctx.server.assistant.enabled), ctx.client)


@command("users", "", "who is in your lobby", lookup=True)
def _users(ctx: Context, args: str) -> None:
    lobby = ctx.client.lobby
    if lobby is None:
        raise UserError("You are not in a lobby.")
    members = tuple(Member(c.name, c.picture) for c in lobby.members.values())
    send(MemberList(lobby.name, members, ctx.client.name), ctx.client)


@command("lobbies", "", "list lobbies: access, members, creator, description", lookup=True)
def _lobbies(ctx: Context, args: str) -> None:
    lobbies = tuple(
        LobbyInfo(
            lobby.name,
            lobby.private,
            len(lobby.members),
            lobby.creator,
            lobby.description,
            lobby.persona is not None,
        )
        for lobby in ctx.core.lobbies
    )
    yours = ctx.client.lobby.name if ctx.client.lobby is not None else None
    send(LobbyList(lobbies, yours, ctx.server.assistant.enabled), ctx.client)


@command(
    "create",
    "<name> [password|-] [description]",
    "create a lobby and join it (see the forms below)",
    min_args=1,
    rate_limited=True,
)
async def _create(ctx: Context, args: str) -> None:
    name, password, description = create_arguments(args)
    problem = name_problem(name, "Lobby name")
    if problem:
        raise UserError(problem, code="bad_name")
    existing = ctx.core.lobbies.get(name)
    if existing is not None:
        raise UserError(f"Lobby #{existing.name} already exists. Use /join {existing.name}.")
    if len(description) > MAX_DESCRIPTION:
        raise UserError(
            f"Description too long (the limit is {MAX_DESCRIPTION} characters).", code="too_long"
        )
    password_hash = None
    if password is not None:
        secret = _password_bytes(password)
        rounds = ctx.core.config.bcrypt_rounds
        password_hash = await asyncio.to_thread(bcrypt.hashpw, secret, bcrypt.gensalt(rounds))
        if not ctx.active:
            return
    ctx.core.create_lobby(ctx.client, name, description, password_hash)


CREATE_FORMS = (
    ("/create NAME", "public lobby, no description"),
    ("/create NAME WORD", "public lobby, WORD is its description"),
    ("/create NAME - DESCRIPTION...", "public lobby (- or no-pass)"),
    ("/create NAME PASSWORD DESCRIPTION...", "private lobby (3 or more words)"),
)
"""The forms /help spells out: which words make a lobby public and which private."""


def create_arguments(args: str) -> tuple[str, str | None, str]:
    """`/create` words -> (name, password or None, description).

    Two words are a name and a one-word description, as in go-chat-server: a
    password needs a description after it, so `/create music Jazz` is public.
    """
    parts = args.split(maxsplit=2)
    name = lobby_name(parts[0])
    if len(parts) == 1:
        return name, None, NO_DESCRIPTION
    if parts[1].lower() in NO_PASSWORD_WORDS:
        return name, None, parts[2] if len(parts) > 2 else NO_DESCRIPTION
    if len(parts) == 2:
        return name, None, parts[1]
    return name, parts[1], parts[2]


@command("join", "<name> [password]", "move to another lobby", min_args=1, rate_limited=True)
async def _join(ctx: Context, args: str) -> None:
    parts = args.split(maxsplit=1)
    wanted = lobby_name(parts[0])
    lobby = ctx.core.lobbies.get(wanted)
    if lobby is None:
        if not wanted:
            raise UsageError("name the lobby, e.g. /join general")
        raise UserError(f"Lobby #{wanted} not found. Type /lobbies to see them.", code="not_found")
    if lobby is ctx.client.lobby:
        raise UserError(f"You are already in #{lobby.name}.")
    if lobby.password_hash is not None:
        if len(parts) < 2:
            raise UserError(f"#{lobby.name} is private: /join {lobby.name} <password>")
        guesses, source = ctx.server.lobby_guesses, ctx.ip_key
        wait = guesses.try_attempt(lobby.key, source, ctx.monotonic())
        if wait:
            raise UserError(f"Too many wrong passwords for #{lobby.name}. {wait_phrase(wait)}")
        secret = _password_bytes(parts[1])
        ok = await asyncio.to_thread(bcrypt.checkpw, secret, lobby.password_hash)
        if not ctx.active:
            return
        if not ok:
            raise UserError(f"Wrong password for #{lobby.name}.", code="wrong_password")
        guesses.succeeded(lobby.key, source)
        if ctx.core.lobbies.get(lobby.name) is not lobby:
            raise UserError(f"Lobby #{lobby.name} no longer exists.")
        if lobby is ctx.client.lobby:
            return
    ctx.core.move(ctx.client, lobby)


@command("msg", "<user> <text>", "send a private message", min_args=2, rate_limited=True)
def _msg(ctx: Context, args: str) -> None:
    target, text = args.split(maxsplit=1)
    ctx.core.direct(ctx.client, target.removeprefix("@"), text)


@command(
    "tag",
    "<user> <text>",
    "say to your lobby with @user highlighted",
    min_args=2,
    rate_limited=True,
)
def _tag(ctx: Context, args: str) -> None:
    target, text = args.split(maxsplit=1)
    ctx.core.tag(ctx.client, target.removeprefix("@"), text)


@command("sp", "<name>|list|default", "set your profile picture", min_args=1)
def _sp(ctx: Context, args: str) -> None:
    choice = args.split()[0].lower()
    if choice == "list":
        send(PictureList(tuple(profiles.PICTURES.items())), ctx.client)
        return
    picture = profiles.DEFAULT_PICTURE if choice == "default" else profiles.lookup(choice)
    if picture is None:
        raise UserError(
            f"No picture called {choice!r}. Type /sp list to see them.", code="not_found"
        )
    ctx.core.set_picture(ctx.client, picture)
    ctx.core.tell(ctx.client, f"Your profile picture is now {picture}", Level.SUCCESS)


@command("color", "on|off", "switch ANSI colour for this connection", min_args=1)
def _color(ctx: Context, args: str) -> None:
    choice = args.split()[0].lower()
    if choice not in {"on", "off"}:
        raise UsageError()
    if not isinstance(ctx.client.mode, TextMode):
        raise UserError("Colour is a setting of the text front end.")
    ctx.client.mode = text_mode(choice == "on")
    ctx.core.tell(ctx.client, f"Colour {choice}.", Level.SUCCESS)


@command(
    "ai",
    "<question>",
    "ask Rox, the AI assistant (your lobby sees it)",
    min_args=1,
    rate_limited=True,
    needs_ai=True,
)
def _ai(ctx: Context, args: str) -> None:
    # Returns at once: the answer is a server task, so this user keeps reading.
    ctx.server.assistant.ask(ctx.client, args)


@command(
    "setai",
    "<prompt>|reset",
    "set Rox's persona in your own lobby (reset = default)",
    min_args=1,
    rate_limited=True,
    needs_ai=True,
)
def _setai(ctx: Context, args: str) -> None:
    changed = ctx.server.assistant.set_persona(ctx.client, args)
    if changed and ctx.client.lobby is not None:
        ctx.core.lobby_changed(ctx.client.lobby)  # the persona outlives a restart


@command(
    "history",
    "[n]",
    f"show your lobby's last n messages (default {HISTORY_DEFAULT}, max {HISTORY_MAX})",
    lookup=True,
)
def _history(ctx: Context, args: str) -> None:
    lobby = ctx.client.lobby
    if lobby is None:
        raise UserError("You are not in a lobby.")
    wanted = HISTORY_DEFAULT
    if args:
        word = args.split()[0]
        if not word.isdigit() or int(word) < 1:
            raise UsageError(f"n is a number from 1 to {HISTORY_MAX}")
        wanted = min(int(word), HISTORY_MAX)
    entries = tuple(lobby.history)[-wanted:]
    if not entries:
        ctx.core.tell(ctx.client, f"No messages in #{lobby.name} yet.")
        return
    send(Replay(lobby.name, entries, ctx.core.clock()), ctx.client)


@command("quit", "", "leave the server")
def _quit(ctx: Context, args: str) -> None:
    ctx.quit("quit", "Goodbye! Thanks for chatting.")


def _password_bytes(password: str) -> bytes:
    secret = password.encode()
    if len(secret) > MAX_PASSWORD_BYTES:
        raise UserError(
            f"Password too long (the limit is {MAX_PASSWORD_BYTES} bytes).", code="too_long"
        )
    return secret
