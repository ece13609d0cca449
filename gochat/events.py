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
    """A line said in a lobby (kind "chat"), a tag ("tag") or an AI answer ("ai")."""

    lobby: str
    sender: str
    picture: str
    text: str
    timestamp: float
    kind: str = "chat"
    tagged: str | None = None


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


@dataclass(frozen=True, slots=True)
class Presence:
    """Someone arrived in or left a lobby; `action` reads after the name."""

    name: str
    picture: str
    lobby: str
    action: str
    arriving: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """A one-line message from the server to one user (or a lobby)."""

    text: str
    level: Level = Level.INFO


@dataclass(frozen=True, slots=True)
class Farewell:
    """The last line a connection gets before it is closed (no prompt after it)."""

    text: str


@dataclass(frozen=True, slots=True)
class Block:
    """A titled list of lines: /help, /users, /lobbies, /sp list."""

    title: str
    lines: tuple[str, ...]


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


Event = (
    ChatMessage
    | DirectMessage
    | TagNotice
    | Presence
    | Notice
    | Farewell
    | Block
    | Replay
    | Raw
    | AIThinking
    | AIQuestion
    | AIAnswer
)
