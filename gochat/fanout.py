"""Delivery: render an event once per output mode and hand the same bytes to everyone.

Nothing here awaits. `Client.write` is a non-blocking transport write; a
recipient that cannot keep up is dropped by its own connection's send-queue
cap, never waited for.
"""

from __future__ import annotations

from collections.abc import Iterable

from gochat.clients import Client, OutputMode
from gochat.events import AIAnswer, AIQuestion, ChatMessage, Event


def deliver(event: Event, recipients: Iterable[Client]) -> int:
    """Send `event` to every recipient; return how many it was written to.

    Rendered once per output mode (text ANSI, text plain, JSON...); recipients
    in a row that share a mode, the common case, cost one identity check each.
    """
    rendered: dict[OutputMode, bytes] = {}
    last_mode: OutputMode | None = None
    data = b""
    count = 0
    lobby = chat_lobby(event)
    for client in recipients:
        mode = client.mode
        if mode is not last_mode:
            cached = rendered.get(mode)
            if cached is None:
                cached = rendered[mode] = mode.render(event)
            last_mode, data = mode, cached
        client.write(data, lobby)
        count += 1
    return count


def chat_lobby(event: Event) -> str | None:
    """The lobby of a chat line, which a reader far behind may skip (gochat.backlog);
    None for everything else (DMs, notices, presence, answers), which is never skipped."""
    if isinstance(event, (ChatMessage, AIQuestion, AIAnswer)):
        return event.lobby
    return None


def send(event: Event, client: Client) -> None:
    """Send `event` to one client."""
    client.write(client.mode.render(event))
