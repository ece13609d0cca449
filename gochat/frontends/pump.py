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

from abc import ABC, abstractmethod
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


class _Unframed:
    """Input bytes not split into lines yet (see FEED_BYTES)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


Item = bytes | LineTooLong | _Unframed


class LinePump(ABC):
    """Frames a connection's bytes into lines and hands them on, in order and in turn.

    A base of `lines.LineFrontEnd` rather than an object it owns: an idle
    connection then pays for two slots, not for one more object and a bound
    method (about 150 bytes each, times every idle user).
    """

    __slots__ = ("held", "reader")

    link: Reading

    def start_lines(self, max_line_bytes: int) -> None:
        self.reader = LineReader(max_line_bytes)
        self.held: deque[Item] | None = None

    # -- what the owner provides ---------------------------------------------------

    @property
    @abstractmethod
    def active(self) -> bool:
        """Not closed: a closed owner handles nothing more."""

    @property
    @abstractmethod
    def busy(self) -> bool:
        """A command is running: later lines wait for it."""

    @abstractmethod
    def handle_line(self, line: bytes) -> None: ...

    @abstractmethod
    def line_too_long(self, limit: int) -> None: ...

    @abstractmethod
    def input_ended(self) -> None:
        """Every line is handled and the peer has closed its side."""

    @abstractmethod
    def later(self, callback: Callable[[], None]) -> None:
        """Call `callback` in a later turn of the loop (loop.call_soon)."""

    # -- the pump -------------------------------------------------------------------

    @property
    def lines_idle(self) -> bool:
        """No line is waiting."""
        return self.held is None

    def feed(self, data: bytes) -> None:
        if self.held is None and len(data) <= FEED_BYTES:
            self._process(self.reader.feed(data))
            return
        chunks = [_Unframed(data[i : i + FEED_BYTES]) for i in range(0, len(data), FEED_BYTES)]
        if self.held is not None:
            self.held.extend(chunks)
            return
        self._process(deque(chunks))

    def resume_lines(self) -> None:
        """Handle held lines; read again once none are left and no command is running."""
        if not self.active or self.busy:
            return
        held, self.held = self.held, None
        if held:
            self._process(held)
        if self.held is None and not self.busy and self.active:
            if self.link.eof:
                self.input_ended()
            else:
                self.link.resume_reading()

    def _process(self, items: list[bytes | LineTooLong] | deque[Item]) -> None:
        """Handle lines in order; hold the rest while a command runs or the turn is used up."""
        queue: deque[Item] = items if isinstance(items, deque) else deque(items)
        budget = LINES_PER_TURN
        while queue:
            if not self.active:
                return
            if budget == 0:
                self._hold(queue)
                self.later(self.resume_lines)
                return
            item = queue.popleft()
            if isinstance(item, _Unframed):
                queue.extendleft(reversed(self.reader.feed(item.data)))
                continue
            budget -= 1
            if isinstance(item, LineTooLong):
                self.line_too_long(item.limit)
                continue
            self.handle_line(item)
            if self.busy and self.active:  # (the line may have closed the connection)
                self._hold(queue)
                return

    def _hold(self, queue: deque[Item]) -> None:
        """Keep unhandled lines; stop reading until they are done (order kept, memory bounded)."""
        self.held = queue
        self.link.pause_reading()
