"""The line pump: one connection's input, framed into lines, handled in order and in turn.

Three promises live here, for every line-based dialect: lines are handled in
the order they came, even while a command waits on bcrypt (later lines are
held and reading pauses, so memory stays bounded); no connection handles more
than LINES_PER_TURN lines before the others get a turn; and a big read is
split into lines only when its turn comes (raw bytes are compact, lines are
not: 256 KiB of one-byte lines would be megabytes of objects). Sans-IO: the
pump asks its link to pause or resume reading and its owner to handle lines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from gochat.wire import LineReader, LineTooLong

LINES_PER_TURN = 32  # lines handled per connection before other connections get a turn
FEED_BYTES = 2048  # a big read is split into lines this many bytes at a time, in turn


class Reading(Protocol):
    """The connection as the pump sees it (transport.Connection)."""

    @property
    def eof(self) -> bool: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class LineHandler(Protocol):
    """Who the lines are for (a `lines.LineFrontEnd`)."""

    @property
    def active(self) -> bool:
        """Not closed: a closed owner handles nothing more."""

    @property
    def busy(self) -> bool:
        """A command is running: later lines wait for it."""

    def handle_line(self, line: bytes) -> None: ...

    def line_too_long(self, limit: int) -> None: ...

    def input_ended(self) -> None:
        """Every line is handled and the peer has closed its side."""


class _Unframed:
    """Input bytes not split into lines yet (see FEED_BYTES)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


Item = bytes | LineTooLong | _Unframed


class LinePump:
    """Frames one connection's bytes into lines and hands them on, in order and in turn."""

    __slots__ = ("held", "link", "owner", "reader", "soon")

    def __init__(
        self,
        owner: LineHandler,
        link: Reading,
        max_line_bytes: int,
        soon: Callable[[Callable[[], None]], object],
    ) -> None:
        self.owner = owner
        self.link = link
        self.reader = LineReader(max_line_bytes)
        self.soon = soon  # loop.call_soon: a later turn of the loop
        self.held: deque[Item] | None = None

    @property
    def idle(self) -> bool:
        """No line is waiting."""
        return self.held is None

    def receive(self, data: bytes) -> None:
        if self.held is None and len(data) <= FEED_BYTES:
            self._process(self.reader.feed(data))
            return
        chunks = [_Unframed(data[i : i + FEED_BYTES]) for i in range(0, len(data), FEED_BYTES)]
        if self.held is not None:
            self.held.extend(chunks)
            return
        self._process(deque(chunks))

    def resume(self) -> None:
        """Handle held lines; read again once none are left and no command is running."""
        owner = self.owner
        if not owner.active or owner.busy:
            return
        held, self.held = self.held, None
        if held:
            self._process(held)
        if self.held is None and not owner.busy and owner.active:
            if self.link.eof:
                owner.input_ended()
            else:
                self.link.resume_reading()

    def _process(self, items: list[bytes | LineTooLong] | deque[Item]) -> None:
        """Handle lines in order; hold the rest while a command runs or the turn is used up."""
        owner = self.owner
        queue: deque[Item] = items if isinstance(items, deque) else deque(items)
        budget = LINES_PER_TURN
        while queue:
            if not owner.active:
                return
            if budget == 0:
                self._hold(queue)
                self.soon(self.resume)
                return
            item = queue.popleft()
            if isinstance(item, _Unframed):
                queue.extendleft(reversed(self.reader.feed(item.data)))
                continue
            budget -= 1
            if isinstance(item, LineTooLong):
                owner.line_too_long(item.limit)
                continue
            owner.handle_line(item)
            if owner.busy and owner.active:  # (the line may have closed the connection)
                self._hold(queue)
                return

    def _hold(self, queue: deque[Item]) -> None:
        """Keep unhandled lines; stop reading until they are done (order kept, memory bounded)."""
        self.held = queue
        self.link.pause_reading()
