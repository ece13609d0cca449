"""What is said: lobby lines, tags, DMs and Rox's answers, with their ids (a part of the core).

`Speech` is one half of `chat.ChatCore`, kept apart because it is one job:
the rules for a line (its length, who it reaches, what a tag adds) and the
ids that order lines across the server. It holds no state of its own but the
last id, and reaches the rest (`emit`, where users are) through the core.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from gochat.changes import Audience, Emitted, InLobby, ToUsers
from gochat.clients import Client, ClientManager
from gochat.errors import UserError
from gochat.events import ChatMessage, DirectMessage, TagNotice
from gochat.lobbies import Lobby, LobbyManager
from gochat.stats import Counters

if TYPE_CHECKING:
    from collections.abc import Callable

    from gochat.config import Config

log = logging.getLogger("gochat.chat")


class Speech:
    """Saying things: the core's message rules (mixed into `chat.ChatCore`)."""

    if TYPE_CHECKING:  # what the core provides
        config: Config
        clock: Callable[[], float]
        clients: ClientManager
        lobbies: LobbyManager
        counters: Counters
        _last_id: int

        def emit(self, item: Emitted, audience: Audience = None) -> None: ...

        def lobby_of(self, client: Client) -> Lobby: ...

        @staticmethod
        def is_in(client: Client, lobby: Lobby) -> bool: ...

    def message_id(self, timestamp: float) -> int:
        """A new message's id: its time in microseconds, made unique and increasing.

        Ids follow time, so those given after a restart continue those restored
        from the store (`restore_ids`) without storing a counter.
        """
        self._last_id = max(self._last_id + 1, int(timestamp * 1_000_000))
        return self._last_id

    def restore_ids(self) -> None:
        """Give the history read from the store its ids, oldest first, as they were given."""
        every = sorted(
            (
                (m.timestamp, lobby, i)
                for lobby in self.lobbies
                for i, m in enumerate(lobby.history)
            ),
            key=lambda item: item[0],
        )
        for timestamp, lobby, i in every:
            message = lobby.history[i]
            if message.id is None:
                lobby.history[i] = replace(message, id=self.message_id(timestamp))

    def record(self, lobby: Lobby, message: ChatMessage) -> ChatMessage:
        """Add `message` to `lobby`'s history and the store, with an id; the caller delivers
        it in its own form (Rox's answer is an `AIAnswer`)."""
        message = replace(message, id=self.message_id(message.timestamp))
        lobby.history.append(message)
        lobby.last_active = message.timestamp
        self.emit(message)
        return message

    def check_length(self, text: str) -> None:
        limit = self.config.max_message
        if len(text) > limit:
            raise UserError(
                f"Message too long ({len(text)} characters; the limit is {limit}).", code="too_long"
            )

    def say(self, client: Client, text: str) -> ChatMessage:
        """Post `text` to the sender's current lobby, sender included."""
        self.check_length(text)
        return self._post(client, self.lobby_of(client), text, None)

    def _post(self, client: Client, lobby: Lobby, text: str, tagged: str | None) -> ChatMessage:
        now = self.clock()
        message = ChatMessage(
            lobby.name,
            client.name,
            client.picture,
            text,
            now,
            "tag" if tagged else "chat",
            tagged,
            self.message_id(now),
        )
        lobby.history.append(message)
        lobby.last_active = now
        self.counters.messages += 1
        self.emit(message, InLobby(lobby.key))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("#%s <%s> %s", lobby.name, client.name, text)
        return message

    def direct(self, client: Client, target_name: str, text: str) -> None:
        """A private message, shown to both sides."""
        self.check_length(text)
        target = self._find(target_name)
        if target is client:
            raise UserError("You can't send a DM to yourself.")
        event = DirectMessage(client.name, client.picture, target.name, text, self.clock())
        self.emit(event, ToUsers((client.key, target.key)))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("DM <%s> -> <%s> %s", client.name, target.name, text)

    def tag(self, client: Client, target_name: str, text: str) -> None:
        """A lobby message with @target highlighted; a target elsewhere gets a heads-up.

        A target in the lobby sees the highlighted line itself: a second, bell line
        would only repeat it. The length limit is the user's text, not the prefix.
        """
        self.check_length(text)
        target = self._find(target_name)
        if target is client:
            raise UserError("You can't tag yourself.")
        lobby = self.lobby_of(client)
        self._post(client, lobby, f"@{target.name} {text}", target.name)
        if not self.is_in(target, lobby):
            self.emit(TagNotice(client.name, lobby.name, text), ToUsers((target.key,)))

    def _find(self, name: str) -> Client:
        target = self.clients.get(name)
        if target is None:
            raise UserError("User not found.", code="not_found")
        return target
