"""The shape of a command, declared once for every front end.

A `Command` says what a front end must know before the handler runs: its
arguments with their types, which budget it spends, in which phase of a
session it may be sent, who may run it and which dialects offer it. The text
front end reads `/name words` into `Args` with `read_words`, the JSON front end
checks a request's named values against the same `Arg`s, and (later) the IRC
front end maps its verbs onto the same calls; `/help`, JSON `help` and JSON
error codes come from these declarations, so no dialect can disagree with
another about what a command takes.

This module holds only the declarations; `gochat.commands` holds the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Literal, Protocol, cast

from gochat.errors import UsageError

if TYPE_CHECKING:
    from gochat.chat import ChatCore
    from gochat.clients import Client
    from gochat.ratelimit import GuessLimiter

Kind = Literal["word", "text", "int"]
Value = str | int

DIALECTS = frozenset({"text", "json"})
"""Every front end a command may be offered in."""


@dataclass(frozen=True, slots=True)
class Arg:
    """A named argument: a "word" (no whitespace), "text" (the rest) or an "int" (from 1)."""

    name: str
    kind: Kind = "word"
    required: bool = True

    @property
    def type_name(self) -> str:
        """The JSON type a client sends."""
        return "integer" if self.kind == "int" else "string"

    @property
    def shown(self) -> str:
        return f"<{self.name}>" if self.required else f"[{self.name}]"


def arguments(spec: str) -> tuple[Arg, ...]:
    """ "name:word password?:word description?:text" -> the `Arg`s, in order."""
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        if kind not in ("word", "text", "int"):
            raise ValueError(f"argument {name!r}: unknown kind {kind!r}")
        out.append(Arg(name.rstrip("?"), cast(Kind, kind), not name.endswith("?")))
    return tuple(out)


class Args:
    """A command's arguments by name, already checked against its `Arg`s."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Value] | None = None) -> None:
        self._values = values or {}

    def text(self, name: str, default: str = "") -> str:
        value = self._values.get(name, default)
        return value if isinstance(value, str) else default

    def optional(self, name: str) -> str | None:
        value = self._values.get(name)
        return value if isinstance(value, str) else None

    def number(self, name: str) -> int | None:
        value = self._values.get(name)
        return value if isinstance(value, int) else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Args) and other._values == self._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"Args({self._values!r})"


class Cost(Enum):
    """Which budget a command spends before it runs (refused commands get it back)."""

    FREE = "free"
    MESSAGE = "message"  # it speaks or changes state: the user's message budget
    LOOKUP = "lookup"  # read-only, but its cost grows with the server: the lookup budget


class Phase(Enum):
    """When in a session a command may be sent."""

    LOGIN = "login"  # only before logging in
    CHAT = "chat"  # only after
    ANY = "any"


class Who(Enum):
    """Who may run a command; the core checks it before the handler runs."""

    ANYONE = "anyone"
    LOBBY_OWNER = "lobby owner"  # the account that created the user's current lobby


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
    """What a handler may use: the core, its own client and its connection (a front end)."""

    @property
    def core(self) -> ChatCore: ...

    @property
    def server(self) -> Services: ...

    @property
    def client(self) -> Client: ...

    @property
    def dialect(self) -> str:
        """Which front end runs the command ("text", "json"): /help lists what it offers."""

    @property
    def ip_key(self) -> str:
        """Where the connection comes from, as connections are counted (IPv6: its /64)."""

    @property
    def active(self) -> bool: ...

    def log_in(self, name: str) -> None:
        """Take `name` and join the chat; a refusal is a `UserError` (bad_name, name_taken)."""

    def quit(self, reason: str, farewell: str) -> None: ...

    def monotonic(self) -> float: ...


Handler = Callable[[Context, Args], Awaitable[None] | None]
WordReader = Callable[[str], Args]


@dataclass(frozen=True, slots=True)
class Command:
    """One command: what it takes, what it costs, who may run it, and its handler."""

    name: str
    args: tuple[Arg, ...]
    summary: str
    handler: Handler
    cost: Cost = Cost.FREE
    phase: Phase = Phase.CHAT
    who: Who = Who.ANYONE
    guards: str = ""  # what `who` protects, in the refusal: "Rox's persona"
    needs_ai: bool = False  # only useful with an AI key: /help leaves it out without one
    dialects: frozenset[str] = DIALECTS
    syntax: str | None = None  # the text usage of the arguments, when not <a> [b]
    words: WordReader | None = None  # how the text front end reads them, when not word by word

    @property
    def usage(self) -> str:
        shown = self.syntax if self.syntax is not None else " ".join(a.shown for a in self.args)
        return f"/{self.name} {shown}".rstrip()

    @property
    def min_args(self) -> int:
        return sum(1 for arg in self.args if arg.required)

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)

    def offered_in(self, dialect: str) -> bool:
        return dialect in self.dialects

    def read_words(self, rest: str) -> Args:
        """The text after `/name` -> `Args`; a wrong call raises `UsageError`.

        Each argument is one word, except a "text" one, which takes the rest of
        the line; words past the last argument are ignored, as they always were.
        """
        if self.words is not None:
            return self.words(rest)
        values: dict[str, Value] = {}
        for arg in self.args:
            if not rest:
                if arg.required:
                    raise UsageError()
                break
            if arg.kind == "text":
                values[arg.name], rest = rest, ""
                continue
            word, _, rest = rest.partition(" ")
            rest = rest.lstrip()
            if arg.kind == "int":
                if not word.isdigit() or int(word) < 1:
                    raise UsageError(f"{arg.name} is a whole number, at least 1")
                values[arg.name] = int(word)
            else:
                values[arg.name] = word
        return Args(values)


class Registry:
    """Commands by name, in the order /help lists them."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(
        self,
        name: str,
        spec: str,
        summary: str,
        *,
        cost: Cost = Cost.FREE,
        phase: Phase = Phase.CHAT,
        who: Who = Who.ANYONE,
        guards: str = "",
        needs_ai: bool = False,
        dialects: frozenset[str] = DIALECTS,
        syntax: str | None = None,
        words: WordReader | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated function as the handler of `name` (`spec`: see `arguments`)."""

        def register(handler: Handler) -> Handler:
            self._commands[name] = Command(
                name,
                arguments(spec),
                summary,
                handler,
                cost,
                phase,
                who,
                guards,
                needs_ai,
                dialects,
                syntax,
                words,
            )
            return handler

        return register

    def get(self, name: str, dialect: str | None = None) -> Command | None:
        """The command called `name` (any case), if `dialect` offers it (None: any)."""
        command = self._commands.get(name.lower())
        if command is None or (dialect is not None and not command.offered_in(dialect)):
            return None
        return command

    def __getitem__(self, name: str) -> Command:
        return self._commands[name]

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())
