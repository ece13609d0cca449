"""What Rox remembers in each lobby, and what it is told with a question.

Kept apart from gochat.rox so the memory rules (how many turns, when a
lobby's conversation is forgotten, which chat lines go along as context) can
be read and changed without the model call and its failures around them.
Nothing here touches the SDK or the network.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gochat.chat import ChatCore
    from gochat.config import Config
    from gochat.lobbies import Lobby


@dataclass
class Conversation:
    """One lobby's exchanges with Rox, oldest first, as (role, text) turns."""

    lobby: Lobby
    turns: deque[tuple[str, str]]
    last_question: float = 0.0


class Conversations:
    """Every lobby's conversation with Rox, dropped when idle or when its lobby is gone."""

    def __init__(self, config: Config, core: ChatCore) -> None:
        self.config = config
        self.core = core
        self._by_lobby: dict[str, Conversation] = {}

    def current(self, lobby: Lobby, now: float) -> Conversation:
        """This lobby's conversation; a fresh one after the idle time or for a new lobby."""
        idle = self.config.ai_history_minutes * 60
        for key, stale in list(self._by_lobby.items()):
            if (
                now - stale.last_question > idle
                or self.core.lobbies.get(stale.lobby.name) is not stale.lobby
            ):
                del self._by_lobby[key]
        conversation = self._by_lobby.get(lobby.key)
        if conversation is None or conversation.lobby is not lobby:
            turns = self.config.ai_history_turns // 2 * 2  # whole question/answer pairs
            conversation = Conversation(lobby, deque(maxlen=turns), now)
            self._by_lobby[lobby.key] = conversation
        return conversation

    def forget(self, lobby: Lobby) -> None:
        """Start the lobby over (a new persona should not answer from the old one's turns)."""
        self._by_lobby.pop(lobby.key, None)


def context_lines(lobby: Lobby, wanted: int) -> list[str]:
    """The lobby's last chat lines (Rox's own answers are in the conversation already)."""
    if wanted <= 0:
        return []
    picked: list[str] = []
    for message in reversed(lobby.history):
        if message.kind == "ai":
            continue
        picked.append(f"{message.sender}: {message.text}")
        if len(picked) >= wanted:
            break
    picked.reverse()
    return picked


def user_turn(asker: str, question: str, context: list[str], lobby: str) -> str:
    """The user turn: who asks what, after the lobby's recent chat when there is any."""
    ask = f"{asker} asks: {question}"
    if not context:
        return ask
    lines = "\n".join(context)
    return f"Recent chat in #{lobby} (oldest first):\n{lines}\n\n{ask}"
