"""The chat core: who is where, what was said, who hears it.

It does no I/O and never awaits, and it knows no front end. What happens is
emitted, with its audience, to the sinks (gochat.changes): local delivery
renders it for this process's users, the journal keeps what outlives them.
Slow work (bcrypt) happens in the command layer before the core is called.

A user may be in several lobbies at once (an IRC client joins many); one of
them is current, where their plain lines go. The text and JSON front ends use
`move`, which keeps exactly one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gochat.changes import (
    Audience,
    Emitted,
    InLobby,
    LobbyDeleted,
    LobbySaved,
    LobbyTouched,
    Sink,
)
from gochat.clients import Client, ClientManager
from gochat.config import Config
from gochat.delivery import LocalDelivery
from gochat.errors import UsageError, UserError
from gochat.events import (
    Level,
    Move,
    Notice,
    Presence,
    Replay,
    Welcome,
)
from gochat.fanout import send
from gochat.lobbies import Lobby, LobbyManager
from gochat.names import lobby_name, name_problem, user_name_problem
from gochat.render import set_timezone
from gochat.speech import Speech
from gochat.stats import Counters

log = logging.getLogger("gochat.chat")

HISTORY_RING = 200
MAX_DESCRIPTION = 200
MAX_LOBBIES = 500  # lobbies at once: each costs memory (and a row in the store) until pruned


class ChatCore(Speech):
    """All chat state. Owned by the event loop; no locks. (What is said: `Speech`.)"""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        set_timezone(config.zone)  # process-wide: one server per process shows one zone
        self.clients = ClientManager()
        self.counters = Counters()
        self.lobbies = LobbyManager(now=clock(), history_size=max(config.replay_max, HISTORY_RING))
        # Who hears what the core emits: this process's users first; the journal when
        # there is a store (and later a link to other processes) are added by the server.
        self.delivery = LocalDelivery(
            self.clients, self.lobbies, self.counters, config.presence_batch
        )
        self.sinks: list[Sink] = [self.delivery]
        self.closing = False  # set at shutdown: everyone leaves, nobody is told about it
        self._last_id = 0

    def emit(self, item: Emitted, audience: Audience = None) -> None:
        """Hand `item` to every sink (each delivers or queues; none blocks)."""
        for sink in self.sinks:
            sink.take(item, audience)

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
        log.debug("login %s from %s", client.name, client.address)
        general = self.lobbies.general
        send(Welcome(client.name, general.name, client.picture), client)
        self._arrive(client, general, Move.CONNECTED)
        return True

    def logout(self, client: Client, reason: str) -> None:
        """Forget `client`; tell each of their lobbies. Safe to call twice."""
        if self.clients.get(client.name) is not client:
            return
        self.clients.remove(client)
        for lobby in self.lobbies_of(client):
            if self.closing:  # N users leaving would otherwise send N*N "left" notices
                lobby.members.pop(client.key, None)
            else:
                self._depart(client, lobby, Move.DISCONNECTED)
        client.others = ()
        client.current = None
        log.debug("logout %s (%s)", client.name, reason)

    def set_picture(self, client: Client, picture: str) -> None:
        client.picture = picture

    # -- where users are ------------------------------------------------------------

    def current(self, client: Client) -> Lobby | None:
        """The lobby `client`'s plain lines go to, if any."""
        key = client.current
        return None if key is None else self.lobbies.by_key(key)

    def lobby_of(self, client: Client) -> Lobby:
        """The lobby `client` speaks in, or a refusal."""
        lobby = self.current(client)
        if lobby is None:
            raise UserError("You are not in a lobby.")
        return lobby

    def lobbies_of(self, client: Client) -> list[Lobby]:
        """Every lobby `client` is in, in the order they came."""
        found = (self.lobbies.by_key(key) for key in client.lobby_keys)
        return [lobby for lobby in found if lobby is not None]

    @staticmethod
    def is_in(client: Client, lobby: Lobby) -> bool:
        return lobby.members.get(client.key) is client

    def join(self, client: Client, lobby: Lobby) -> None:
        """Add `lobby` to `client`'s lobbies and make it current (several at once: IRC)."""
        if self.is_in(client, lobby):
            raise UserError(f"You are already in #{lobby.name}.")
        self._arrive(client, lobby, Move.ARRIVED)

    def part(self, client: Client, lobby: Lobby) -> None:
        """Take `client` out of `lobby`; their current lobby becomes the last one left."""
        if not self.is_in(client, lobby):
            raise UserError(f"You are not in #{lobby.name}.")
        self._depart(client, lobby, Move.DEPARTED)

    def move(self, client: Client, lobby: Lobby) -> None:
        """Take `client` from their current lobby to `lobby`, announcing it in both."""
        if self.is_in(client, lobby):
            raise UserError(f"You are already in #{lobby.name}.")
        old = self.current(client)
        if old is not None:
            self._depart(client, old, Move.DEPARTED, lobby.name)
        self.tell(client, f"You are now in #{lobby.name}: {lobby.description}")
        self._arrive(client, lobby, Move.ARRIVED, old.name if old else None)

    def _arrive(self, client: Client, lobby: Lobby, move: Move, other: str | None = None) -> None:
        now = self.clock()
        self.emit(
            Presence(client.name, client.picture, lobby.name, move, other), InLobby(lobby.key)
        )
        lobby.members[client.key] = client
        lobby.last_active = now
        if client.current is not None:
            client.others += (client.current,)
        client.current = lobby.key
        self.emit(LobbyTouched(lobby))
        recent = lobby.recent(now, self.config.replay_minutes * 60, self.config.replay_max)
        if recent:
            send(Replay(lobby.name, recent, now), client)

    def _depart(self, client: Client, lobby: Lobby, move: Move, other: str | None = None) -> None:
        lobby.members.pop(client.key, None)
        lobby.last_active = self.clock()
        if client.current == lobby.key:
            others = client.others
            client.current, client.others = (others[-1], others[:-1]) if others else (None, ())
        elif lobby.key in client.others:
            client.others = tuple(key for key in client.others if key != lobby.key)
        self.emit(LobbyTouched(lobby))
        self.emit(
            Presence(client.name, client.picture, lobby.name, move, other), InLobby(lobby.key)
        )

    # -- lobbies ------------------------------------------------------------------

    def lobby_to_join(self, client: Client, wanted: str) -> Lobby:
        """The lobby `wanted` names (a leading # is IRC habit), if `client` may go there."""
        name = lobby_name(wanted)
        if not name:
            raise UsageError("name the lobby, e.g. /join general")
        lobby = self.lobbies.get(name)
        if lobby is None:
            raise UserError(
                f"Lobby #{name} not found. Type /lobbies to see them.", code="not_found"
            )
        if self.is_in(client, lobby):
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
        self.emit(LobbySaved(lobby))
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
            self.emit(LobbyDeleted(lobby.name))
        return removed

    def touch_occupied(self) -> None:
        """Mark every lobby with members as active now (at shutdown, for the store)."""
        now = self.clock()
        for lobby in self.lobbies:
            if lobby.members:
                lobby.last_active = now
                self.emit(LobbyTouched(lobby))

    def lobby_changed(self, lobby: Lobby) -> None:
        """Store `lobby` as it is now (after a persona or other setting changed)."""
        self.emit(LobbySaved(lobby))
