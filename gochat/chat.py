"""The chat core: who is where, what was said, who hears it.

It does no I/O and never awaits. The sessions drive it; it emits events
through `fanout`, which writes without blocking. Slow work (bcrypt) happens
in the command layer before the core is called.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gochat.changes import Change, LobbyDeleted, LobbySaved, LobbyTouched, Sink
from gochat.clients import Client, ClientManager
from gochat.config import Config
from gochat.errors import UsageError, UserError
from gochat.events import (
    ChatMessage,
    DirectMessage,
    Level,
    Move,
    Notice,
    Presence,
    Replay,
    TagNotice,
    Welcome,
)
from gochat.fanout import deliver, send
from gochat.lobbies import Lobby, LobbyManager
from gochat.names import lobby_name, name_problem, user_name_problem
from gochat.render import set_timezone
from gochat.stats import Counters

log = logging.getLogger("gochat.chat")

HISTORY_RING = 200
MAX_DESCRIPTION = 200
MAX_LOBBIES = 500  # lobbies at once: each costs memory (and a row in the store) until pruned


class ChatCore:
    """All chat state. Owned by the event loop; no locks."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        set_timezone(config.zone)  # process-wide: one server per process shows one zone
        self.clients = ClientManager()
        self.counters = Counters()
        self.lobbies = LobbyManager(now=clock(), history_size=max(config.replay_max, HISTORY_RING))
        self.sinks: list[Sink] = []  # who keeps what changes: the journal, when there is a store
        self.closing = False  # set at shutdown: everyone leaves, nobody is told about it

    def announce(self, change: Change) -> None:
        """Hand `change` to every sink (each one queues; none blocks)."""
        for sink in self.sinks:
            sink.take(change)

    # -- one user -------------------------------------------------------------

    def tell(self, client: Client, text: str, level: Level = Level.INFO) -> None:
        send(Notice(text, level), client)

    def log_in(self, client: Client, name: str) -> None:
        """Give `client` the name `name` and put them in general, or refuse (a `UserError`)."""
        problem = user_name_problem(name)
        if problem is not None:
            raise UserError(problem, code="bad_name")
        if name in self.clients:
            raise UserError(f"The name {name!r} is taken. Pick another.", code="name_taken")
        client.rename(name)
        self.login(client)

    def login(self, client: Client) -> bool:
        """Register `client` (named already) and put them in general; False if the name is taken."""
        if not self.clients.add(client):
            return False
        self.counters.logins += 1
        log.info("login %s from %s", client.name, client.address)
        general = self.lobbies.general
        send(Welcome(client.name, general.name, client.picture), client)
        self._arrive(client, general, Move.CONNECTED)
        return True

    def logout(self, client: Client, reason: str) -> None:
        """Forget `client`; tell their lobby. Safe to call twice."""
        if self.clients.get(client.name) is not client:
            return
        self.clients.remove(client)
        lobby = client.lobby
        if lobby is not None:
            if self.closing:  # N users leaving would otherwise send N*N "left" notices
                lobby.members.pop(client.key, None)
            else:
                self._depart(client, lobby, Move.DISCONNECTED)
        client.lobby = None
        log.info("logout %s (%s)", client.name, reason)

    def set_picture(self, client: Client, picture: str) -> None:
        client.picture = picture

    # -- lobbies ------------------------------------------------------------------

    def move(self, client: Client, lobby: Lobby) -> None:
        """Take `client` from their lobby to `lobby`, announcing it in both."""
        old = client.lobby
        if old is lobby:
            raise UserError(f"You are already in #{lobby.name}.")
        if old is not None:
            self._depart(client, old, Move.DEPARTED, lobby.name)
        self.tell(client, f"You are now in #{lobby.name}: {lobby.description}")
        self._arrive(client, lobby, Move.ARRIVED, old.name if old else None)

    def lobby_to_join(self, client: Client, wanted: str) -> Lobby:
        """The lobby `wanted` names (a leading # is IRC habit), if `client` may move there."""
        name = lobby_name(wanted)
        if not name:
            raise UsageError("name the lobby, e.g. /join general")
        lobby = self.lobbies.get(name)
        if lobby is None:
            raise UserError(
                f"Lobby #{name} not found. Type /lobbies to see them.", code="not_found"
            )
        if lobby is client.lobby:
            raise UserError(f"You are already in #{lobby.name}.")
        return lobby

    def check_new_lobby(self, name: str, description: str) -> None:
        """Refuse a lobby that could not be created (checked again when it is)."""
        problem = name_problem(name, "Lobby name")
        if problem:
            raise UserError(problem, code="bad_name")
        existing = self.lobbies.get(name)
        if existing is not None:
            raise UserError(f"Lobby #{existing.name} already exists. Use /join {existing.name}.")
        if len(description) > MAX_DESCRIPTION:
            raise UserError(
                f"Description too long (the limit is {MAX_DESCRIPTION} characters).",
                code="too_long",
            )
        if len(self.lobbies) >= MAX_LOBBIES:
            raise UserError(f"The server holds at most {MAX_LOBBIES} lobbies; join one of them.")

    def check_owner(self, client: Client, guards: str) -> Lobby:
        """`client`'s lobby, if they created it; else why not (`guards`: what is protected)."""
        lobby = self.lobby_of(client)
        if lobby is self.lobbies.general:
            raise UserError(
                f"{guards} in #{lobby.name} can't be changed; create a lobby for your own.",
                code="forbidden",
            )
        if self.clients.get(lobby.creator) is not client:
            raise UserError(
                f"Only {lobby.creator}, who created #{lobby.name}, can change {guards} here.",
                code="forbidden",
            )
        return lobby

    def create_lobby(
        self, client: Client, name: str, description: str, password_hash: bytes | None
    ) -> Lobby:
        """Create a lobby owned by `client` and move them into it."""
        self.check_new_lobby(name, description)
        lobby = self.lobbies.add(
            name,
            creator=client.name,
            description=description,
            password_hash=password_hash,
            now=self.clock(),
        )
        log.info(
            "lobby %s created by %s (%s)",
            lobby.name,
            client.name,
            "private" if lobby.private else "public",
        )
        self.announce(LobbySaved(lobby))
        if lobby.private:
            created = (
                f"Lobby #{lobby.name} created (private: /join {lobby.name} <password>). "
                "For a public one with a description: /create NAME - DESCRIPTION"
            )
        else:
            created = f"Lobby #{lobby.name} created (public)."
        self.tell(client, created, Level.SUCCESS)
        self.move(client, lobby)
        return lobby

    def prune_lobbies(self) -> list[Lobby]:
        """Remove lobbies that have been empty and idle for the configured time."""
        removed = self.lobbies.remove_idle(self.clock(), self.config.lobby_idle_minutes * 60)
        for lobby in removed:
            log.info("lobby %s removed after inactivity", lobby.name)
            self.announce(LobbyDeleted(lobby.name))
        return removed

    def touch_occupied(self) -> None:
        """Mark every lobby with members as active now (at shutdown, for the store)."""
        now = self.clock()
        for lobby in self.lobbies:
            if lobby.members:
                lobby.last_active = now
                self.announce(LobbyTouched(lobby))

    def lobby_changed(self, lobby: Lobby) -> None:
        """Store `lobby` as it is now (after a persona or other setting changed)."""
        self.announce(LobbySaved(lobby))

    def record(self, lobby: Lobby, message: ChatMessage) -> None:
        """Add `message` to `lobby`'s history and the store (delivery is the caller's)."""
        lobby.history.append(message)
        lobby.last_active = message.timestamp
        self.announce(message)

    def _arrive(self, client: Client, lobby: Lobby, move: Move, other: str | None = None) -> None:
        now = self.clock()
        deliver(
            Presence(client.name, client.picture, lobby.name, move, other), lobby.members.values()
        )
        lobby.members[client.key] = client
        lobby.last_active = now
        client.lobby = lobby
        self.announce(LobbyTouched(lobby))
        recent = lobby.recent(now, self.config.replay_minutes * 60, self.config.replay_max)
        if recent:
            send(Replay(lobby.name, recent, now), client)

    def _depart(self, client: Client, lobby: Lobby, move: Move, other: str | None = None) -> None:
        lobby.members.pop(client.key, None)
        lobby.last_active = self.clock()
        self.announce(LobbyTouched(lobby))
        deliver(
            Presence(client.name, client.picture, lobby.name, move, other), lobby.members.values()
        )

    # -- messages -----------------------------------------------------------------

    def check_length(self, text: str) -> None:
        limit = self.config.max_message
        if len(text) > limit:
            raise UserError(
                f"Message too long ({len(text)} characters; the limit is {limit}).", code="too_long"
            )

    def say(self, client: Client, text: str) -> ChatMessage:
        """Post `text` to the sender's lobby, sender included."""
        self.check_length(text)
        return self._post(client, self.lobby_of(client), text, None)

    def _post(self, client: Client, lobby: Lobby, text: str, tagged: str | None) -> ChatMessage:
        now = self.clock()
        message = ChatMessage(
            lobby.name, client.name, client.picture, text, now, "tag" if tagged else "chat", tagged
        )
        lobby.history.append(message)
        lobby.last_active = now
        self.announce(message)
        counters = self.counters
        counters.messages += 1
        counters.deliveries += deliver(message, lobby.members.values())
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
        deliver(event, (client, target))
        self.announce(event)
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
        if target.lobby is not lobby:
            send(TagNotice(client.name, lobby.name, text), target)

    def _find(self, name: str) -> Client:
        target = self.clients.get(name)
        if target is None:
            raise UserError("User not found.", code="not_found")
        return target

    @staticmethod
    def lobby_of(client: Client) -> Lobby:
        """The lobby `client` speaks in, or a refusal."""
        if client.lobby is None:
            raise UserError("You are not in a lobby.")
        return client.lobby
