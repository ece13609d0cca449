"""Delivery: render an event once per output mode and hand the same bytes to everyone.

Nothing here awaits. `Client.write` is a non-blocking transport write; a
recipient that cannot keep up is dropped by its own connection's send-queue
cap, never waited for.
"""

from __future__ import annotations

from collections.abc import Iterable

from gochat.clients import Client
from gochat.events import Event
from gochat.render import render


def deliver(event: Event, recipients: Iterable[Client]) -> int:
    """Send `event` to every recipient; return how many it was written to."""
    plain: bytes | None = None
    ansi: bytes | None = None
    count = 0
    for client in recipients:
        if client.colour:
            if ansi is None:
                ansi = render(event, True)
            client.write(ansi)
        else:
            if plain is None:
                plain = render(event, False)
            client.write(plain)
        count += 1
    return count


def send(event: Event, client: Client) -> None:
    """Send `event` to one client."""
    client.write(render(event, client.colour))
