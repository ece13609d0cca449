"""What happened, as plain values: the core emits these, the renderer turns them into bytes.

Events carry no per-recipient state, so one event rendered once per output
mode serves every recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gochat.markdown import Line


class Level(Enum):
    """How a notice is coloured: info, good news, a warning, or a refusal."""

    INFO = "info"
    SUCCESS = "success"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A line said in a lobby (kind "chat"), a tag ("tag") or an AI answer ("ai").

    `id` grows with every message on the server (the core gives it; see
    `ChatCore.message_id`), so a client can tell what it has already seen.
    """

    lobby: str
    sender: str
    picture: str
    text: str
    timestamp: float
    kind: str = "chat"
    tagged: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A private message, shown the same way to sender and recipient."""

    sender: str
    picture: str
    recipient: str
    text: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class TagNotice:
    """The private heads-up a tagged user gets."""

    sender: str
    lobby: str
    text: str


class Move(Enum):
    """What a presence event reports; the front end words it."""

    CONNECTED = "connected"  # logged in (to the server's first lobby)
    DISCONNECTED = "disconnected"  # left the server
    ARRIVED = "arrived"  # came into this lobby (`other`: from where, if anywhere)
    DEPARTED = "departed"  # left this lobby (for `other`, if it was a move)


@dataclass(frozen=True, slots=True)
class Presence:
    """Someone arrived in or left `lobby`; `other` is the lobby on the other side of a move."""

    name: str
    picture: str
    lobby: str
    move: Move
    other: str | None = None

    @property
    def arriving(self) -> bool:
        return self.move in (Move.CONNECTED, Move.ARRIVED)


@dataclass(frozen=True, slots=True)
class PresenceBatch:
    """Many arrived in or left `lobby` at once (a storm, a big lobby): one event for all,
    instead of one line per person to every member (gochat.delivery)."""

    lobby: str
    arrived: tuple[str, ...]
    departed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """A one-line message from the server to one user (or a lobby)."""

    text: str
    level: Level = Level.INFO


@dataclass(frozen=True, slots=True)
class Welcome:
    """Logged in as `name`, now in `lobby` (the result of a login, for every front end)."""

    name: str
    lobby: str
    picture: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A slow reader's oldest chat lines in `lobby` were dropped, `count` of them
    (gochat.backlog): said where they were, so the reader knows to catch up."""

    lobby: str
    count: int


@dataclass(frozen=True, slots=True)
class Farewell:
    """The last line a connection gets before it is closed (no prompt after it)."""

    text: str


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    picture: str


@dataclass(frozen=True, slots=True)
class MemberList:
    """/users: who is in `lobby`, in the order they came; `you` is the one who asked."""

    lobby: str
    members: tuple[Member, ...]
    you: str


@dataclass(frozen=True, slots=True)
class LobbyInfo:
    name: str
    private: bool
    online: int
    creator: str
    description: str
    custom_ai: bool


@dataclass(frozen=True, slots=True)
class LobbyList:
    """/lobbies: every lobby; `yours` is the asker's, `ai` whether the server has Rox."""

    lobbies: tuple[LobbyInfo, ...]
    yours: str | None
    ai: bool


@dataclass(frozen=True, slots=True)
class CommandHelp:
    """One command as /help and JSON `help` show it (from gochat.commands' table)."""

    usage: str  # the text front end's form: /name <arg> [arg]
    summary: str
    name: str = ""
    args: tuple[tuple[str, str, bool], ...] = ()  # (name, JSON type, required)
    when: str = "chat"  # the session phase: login, chat or any
    dialects: tuple[str, ...] = ("text", "json")  # the front ends that offer it


@dataclass(frozen=True, slots=True)
class HelpList:
    """/help: the commands this server offers, and the /create forms spelled out."""

    commands: tuple[CommandHelp, ...]
    forms: tuple[tuple[str, str], ...]  # (form, what it makes)


@dataclass(frozen=True, slots=True)
class PictureList:
    """/sp list: (name, picture) pairs in the order they are offered."""

    pictures: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Replay:
    """Recent history shown on login and join, with times relative to `now`."""

    lobby: str
    entries: tuple[ChatMessage, ...]
    now: float


@dataclass(frozen=True, slots=True)
class Raw:
    """Text sent as it is (banner, prompt) with no prompt redraw around it."""

    text: str


@dataclass(frozen=True, slots=True)
class AIThinking:
    """The asker's private note that Rox is working on their question."""


@dataclass(frozen=True, slots=True)
class AIQuestion:
    """Everyone in the lobby sees what was asked: `<asker> asked AI: <question>`."""

    lobby: str
    asker: str
    picture: str
    question: str


@dataclass(frozen=True, slots=True)
class AIAnswer:
    """Rox's answer, already cleaned and laid out as styled lines (see gochat.markdown)."""

    lobby: str
    asker: str
    lines: tuple[Line, ...]
    id: int | None = None  # the id of the message it is kept as (ChatMessage kind "ai")


Event = (
    ChatMessage
    | DirectMessage
    | TagNotice
    | Presence
    | PresenceBatch
    | Notice
    | Welcome
    | Skipped
    | Farewell
    | MemberList
    | LobbyList
    | HelpList
    | PictureList
    | Replay
    | Raw
    | AIThinking
    | AIQuestion
    | AIAnswer
)
