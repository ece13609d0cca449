"""Who is connected and logged in: the Client record and the name registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from gochat.names import name_key
from gochat.profiles import DEFAULT_PICTURE
from gochat.ratelimit import MessageLimiter

if TYPE_CHECKING:
    from gochat.events import Event


class OutputMode(Protocol):
    """How one kind of recipient sees events (text with ANSI, plain text, JSON lines).

    Delivery renders an event once per mode and hands every recipient in that
    mode the same bytes, so a mode must hold nothing about one recipient.
    """

    def render(self, event: Event) -> bytes: ...


class Writer(Protocol):
    """Where a client's bytes go (transport.Connection.write): never blocks.

    `lobby` marks a chat line said in that lobby: a reader that falls far
    behind may skip it (gochat.backlog); anything else is never skipped.
    """

    def __call__(self, data: bytes, lobby: str | None = None, /) -> None: ...


def _discard(data: bytes, lobby: str | None = None, /) -> None:
    """The writer of a client that is gone: output to it is dropped."""


class Client:
    """One logged-in user as the chat core sees them.

    `write` is the connection's non-blocking write (transport.write), stored
    as a bound method so fan-out is one call per recipient; after the
    connection closes it becomes a no-op, so a stale reference never raises.
    """

    __slots__ = (
        "address",
        "current",
        "key",
        "limiter",
        "mode",
        "name",
        "others",
        "picture",
        "write",
    )

    def __init__(
        self,
        name: str,
        write: Writer,
        *,
        limiter: MessageLimiter,
        mode: OutputMode,
        address: str = "",
    ) -> None:
        self.name = name
        self.key = name_key(name)
        self.write = write
        self.mode = mode
        self.picture = DEFAULT_PICTURE
        self.limiter = limiter
        self.address = address
        # Where the user is, by lobby key (the core's LobbyManager holds the lobbies):
        self.current: str | None = None  # where their plain lines go (text: their one lobby)
        self.others: tuple[str, ...] = ()  # any other lobbies they are in, oldest first
        # (most users are in one lobby: the empty tuple is shared, so it costs them nothing)

    @property
    def lobby_keys(self) -> tuple[str, ...]:
        """Every lobby the user is in, the current one last."""
        current = self.current
        return self.others if current is None else (*self.others, current)

    def rename(self, name: str) -> None:
        """Set the name chosen at the prompt (only before the client is registered)."""
        self.name = name
        self.key = name_key(name)

    def detach(self) -> None:
        """Stop all further output to this client."""
        self.write = _discard

    def __repr__(self) -> str:
        return f"<Client {self.name}>"


class ClientManager:
    """Logged-in clients by case-folded name."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[str, Client] = {}

    def add(self, client: Client) -> bool:
        """Register `client`; False if the name is taken (case-insensitively)."""
        if client.key in self._by_key:
            return False
        self._by_key[client.key] = client
        return True

    def remove(self, client: Client) -> None:
        if self._by_key.get(client.key) is client:
            del self._by_key[client.key]

    def get(self, name: str) -> Client | None:
        return self._by_key.get(name_key(name))

    def by_key(self, key: str) -> Client | None:
        """The client whose case-folded name is `key` (no folding: the hot path)."""
        return self._by_key.get(key)

    def __contains__(self, name: str) -> bool:
        return name_key(name) in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Client]:
        return iter(list(self._by_key.values()))
