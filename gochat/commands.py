"""The command table: every command of every front end, declared once, and its handler.

`/help` and JSON `help` are generated from this table, a wrong call gets the
entry's usage, and the JSON front end checks requests against the same
arguments, so no two dialects can disagree. The front end checks the phase,
the rights (`check_allowed`), the budget and the arguments from the entry
before the handler runs; a handler gets typed `Args` and only does the work,
with the domain rules in the core. A handler may be a coroutine function
(bcrypt runs off the loop); the front end then holds the user's later lines
until it finishes, so order is kept.
"""

from __future__ import annotations

import asyncio

import bcrypt

from gochat import profiles
from gochat.command_table import Args, Command, Context, Cost, Phase, Registry, Value, Who
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
from gochat.names import lobby_name
from gochat.ratelimit import wait_phrase
from gochat.render import TextMode, text_mode
from gochat.rox import NOT_AVAILABLE

NO_PASSWORD_WORDS = frozenset({"no-pass", "nopass", "none", "-"})
NO_DESCRIPTION = "No description"
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer would be silently truncated or refused
HISTORY_DEFAULT = 20  # /history without n
HISTORY_MAX = 200  # most lines /history shows (the ring holds this many)
JSON_ONLY = frozenset({"json"})
TEXT_ONLY = frozenset({"text"})

REGISTRY = Registry()
command = REGISTRY.command


def help_list(*, ai: bool, registry: Registry = REGISTRY) -> HelpList:
    """/help from the table, for every dialect (each renders what it offers).

    Without AI the `needs_ai` commands are left out: listing commands that only
    answer "not available" would mislead a new user.
    """
    return HelpList(
        tuple(
            CommandHelp(
                c.usage,
                c.summary,
                c.name,
                tuple((a.name, a.type_name, a.required) for a in c.args),
                c.phase.value,
                tuple(sorted(c.dialects)),
            )
            for c in registry
            if ai or not c.needs_ai
        ),
        CREATE_FORMS,
    )


def check_allowed(ctx: Context, command: Command) -> None:
    """Refuse `command` (a `UserError`) if this server or the user's rights do not allow it."""
    if command.needs_ai and not ctx.server.assistant.enabled:
        raise UserError(NOT_AVAILABLE, code="unavailable")
    if command.who is Who.LOBBY_OWNER:
        ctx.core.check_owner(ctx.client, command.guards)


@command("login", "name:word password?:word", "log in", phase=Phase.LOGIN, dialects=JSON_ONLY)
def _login(ctx: Context, args: Args) -> None:
    ctx.log_in(args.text("name"))


@command("help", "", "list the commands", phase=Phase.ANY)
def _help(ctx: Context, args: Args) -> None:
    send(help_list(ai=ctx.server.assistant.enabled), ctx.client)


@command("users", "", "who is in your lobby", cost=Cost.LOOKUP)
def _users(ctx: Context, args: Args) -> None:
    lobby = ctx.core.lobby_of(ctx.client)
    members = tuple(Member(c.name, c.picture) for c in lobby.members.values())
    send(MemberList(lobby.name, members, ctx.client.name), ctx.client)


@command("lobbies", "", "list lobbies: access, members, creator, description", cost=Cost.LOOKUP)
def _lobbies(ctx: Context, args: Args) -> None:
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
    current = ctx.core.current(ctx.client)
    yours = current.name if current is not None else None
    send(LobbyList(lobbies, yours, ctx.server.assistant.enabled), ctx.client)


CREATE_FORMS = (
    ("/create NAME", "public lobby, no description"),
    ("/create NAME WORD", "public lobby, WORD is its description"),
    ("/create NAME - DESCRIPTION...", "public lobby (- or no-pass)"),
    ("/create NAME PASSWORD DESCRIPTION...", "private lobby (3 or more words)"),
)
"""The forms /help spells out: which words make a lobby public and which private."""


def create_words(rest: str) -> Args:
    """`/create` words -> name, password (private) and description, by the forms above.

    Two words are a name and a one-word description, as in go-chat-server: a
    password needs a description after it, so `/create music Jazz` is public.
    JSON names its arguments, so none of this guessing applies there.
    """
    parts = rest.split(maxsplit=2)
    if not parts:
        raise UsageError()
    values: dict[str, Value] = {"name": parts[0]}
    if len(parts) == 2 and parts[1].lower() not in NO_PASSWORD_WORDS:
        values["description"] = parts[1]
    elif len(parts) == 3:
        if parts[1].lower() not in NO_PASSWORD_WORDS:
            values["password"] = parts[1]
        values["description"] = parts[2]
    return Args(values)


@command(
    "create",
    "name:word password?:word description?:text",
    "create a lobby and join it (see the forms below)",
    cost=Cost.MESSAGE,
    syntax="<name> [password|-] [description]",
    words=create_words,
)
async def _create(ctx: Context, args: Args) -> None:
    name = lobby_name(args.text("name"))
    description = args.text("description") or NO_DESCRIPTION
    ctx.core.check_new_lobby(name, description)  # before bcrypt spends its time
    password = args.optional("password")
    password_hash = None
    if password is not None:
        secret = _password_bytes(password)
        rounds = ctx.core.config.bcrypt_rounds
        password_hash = await asyncio.to_thread(bcrypt.hashpw, secret, bcrypt.gensalt(rounds))
        if not ctx.active:
            return
    ctx.core.create_lobby(ctx.client, name, description, password_hash)


@command(
    "join",
    "lobby:word password?:word",
    "move to another lobby",
    cost=Cost.MESSAGE,
    syntax="<name> [password]",
)
async def _join(ctx: Context, args: Args) -> None:
    lobby = ctx.core.lobby_to_join(ctx.client, args.text("lobby"))
    if lobby.password_hash is not None:
        password = args.optional("password")
        if password is None:
            raise UserError(f"#{lobby.name} is private: /join {lobby.name} <password>")
        guesses, source = ctx.server.lobby_guesses, ctx.ip_key
        wait = guesses.try_attempt(lobby.key, source, ctx.monotonic())
        if wait:
            raise UserError(f"Too many wrong passwords for #{lobby.name}. {wait_phrase(wait)}")
        secret = _password_bytes(password)
        ok = await asyncio.to_thread(bcrypt.checkpw, secret, lobby.password_hash)
        if not ctx.active:
            return
        if not ok:
            raise UserError(f"Wrong password for #{lobby.name}.", code="wrong_password")
        guesses.succeeded(lobby.key, source)
        if ctx.core.lobbies.get(lobby.name) is not lobby:
            raise UserError(f"Lobby #{lobby.name} no longer exists.")
        if ctx.core.is_in(ctx.client, lobby):
            return
    ctx.core.move(ctx.client, lobby)


@command(
    "msg",
    "to:word text:text",
    "send a private message",
    cost=Cost.MESSAGE,
    syntax="<user> <text>",
)
def _msg(ctx: Context, args: Args) -> None:
    ctx.core.direct(ctx.client, args.text("to").removeprefix("@"), args.text("text"))


@command(
    "tag",
    "to:word text:text",
    "say to your lobby with @user highlighted",
    cost=Cost.MESSAGE,
    syntax="<user> <text>",
)
def _tag(ctx: Context, args: Args) -> None:
    ctx.core.tag(ctx.client, args.text("to").removeprefix("@"), args.text("text"))


@command("sp", "picture:word", "set your profile picture", syntax="<name>|list|default")
def _sp(ctx: Context, args: Args) -> None:
    choice = args.text("picture").lower()
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


@command(
    "color",
    "choice:word",
    "switch ANSI colour for this connection",
    syntax="on|off",
    dialects=TEXT_ONLY,
)
def _color(ctx: Context, args: Args) -> None:
    choice = args.text("choice").lower()
    if choice not in {"on", "off"}:
        raise UsageError()
    if not isinstance(ctx.client.mode, TextMode):
        raise UserError("Colour is a setting of the text front end.")
    ctx.client.mode = text_mode(choice == "on")
    ctx.core.tell(ctx.client, f"Colour {choice}.", Level.SUCCESS)


@command(
    "ai",
    "question:text",
    "ask Rox, the AI assistant (your lobby sees it)",
    cost=Cost.MESSAGE,
    needs_ai=True,
)
def _ai(ctx: Context, args: Args) -> None:
    # Returns at once: the answer is a server task, so this user keeps reading.
    ctx.server.assistant.ask(ctx.client, args.text("question"))


@command(
    "setai",
    "prompt:text",
    "set Rox's persona in your own lobby (reset = default)",
    cost=Cost.MESSAGE,
    who=Who.LOBBY_OWNER,
    guards="Rox's persona",
    needs_ai=True,
    syntax="<prompt>|reset",
)
def _setai(ctx: Context, args: Args) -> None:
    changed = ctx.server.assistant.set_persona(ctx.client, args.text("prompt"))
    lobby = ctx.core.current(ctx.client)
    if changed and lobby is not None:
        ctx.core.lobby_changed(lobby)  # the persona outlives a restart


@command(
    "history",
    "n?:int",
    f"show your lobby's last n messages (default {HISTORY_DEFAULT}, max {HISTORY_MAX})",
    cost=Cost.LOOKUP,
)
def _history(ctx: Context, args: Args) -> None:
    lobby = ctx.core.lobby_of(ctx.client)
    wanted = min(args.number("n") or HISTORY_DEFAULT, HISTORY_MAX)
    entries = tuple(lobby.history)[-wanted:]
    if not entries:
        ctx.core.tell(ctx.client, f"No messages in #{lobby.name} yet.")
        return
    send(Replay(lobby.name, entries, ctx.core.clock()), ctx.client)


@command("quit", "", "leave the server", phase=Phase.ANY)
def _quit(ctx: Context, args: Args) -> None:
    ctx.quit("quit", "Goodbye! Thanks for chatting.")


@command("say", "text:text", "say text to your lobby", cost=Cost.MESSAGE, dialects=JSON_ONLY)
def _say(ctx: Context, args: Args) -> None:
    """What the text front end does with a line that is not a command."""
    ctx.core.say(ctx.client, args.text("text"))


@command("ping", "", "answered with ok", phase=Phase.ANY, dialects=JSON_ONLY)
def _ping(ctx: Context, args: Args) -> None:
    """Nothing to do: the front end's acknowledgement is the answer."""


def _password_bytes(password: str) -> bytes:
    secret = password.encode()
    if len(secret) > MAX_PASSWORD_BYTES:
        raise UserError(
            f"Password too long (the limit is {MAX_PASSWORD_BYTES} bytes).", code="too_long"
        )
    return secret
