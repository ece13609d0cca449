"""Output and flow control: how a connection hands bytes to its transport, and what it
does when its reader falls behind.

One write per connection per loop turn (the Outbox); when the transport holds
more than TRANSPORT_HIGH, further output waits in a backlog where the policy
of gochat.backlog applies (the oldest chat lines skipped past the soft cap, a
reset past the hard cap), and gochat.stalls asks `progress` to find a reader
that stopped. A base of `transport.Connection`, which adds the connection's
life (admission, TLS, timers, closing) around it.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Callable
from typing import Protocol

from gochat.backlog import Backlog, OutputBudget
from gochat.config import Config
from gochat.sockets import kernel_unsent

log = logging.getLogger("gochat.transport")

TRANSPORT_HIGH = 64 * 1024
"""Bytes the transport may hold before further output waits in the connection's backlog:
what sits in the transport can no longer be skipped, what waits in the backlog can."""


class FlowHost(Protocol):
    """What output needs of the server (transport.Host has it)."""

    @property
    def config(self) -> Config: ...

    @property
    def output_budget(self) -> OutputBudget:
        """What every connection's backlog counts against (GOCHAT_OUTPUT_BUDGET)."""


class FlowFront(Protocol):
    """What output needs of the front end (transport.FrontEnd has it)."""

    def skipped(self, lobby: str, count: int) -> bytes: ...

    def who(self) -> str: ...

    def closing(self, reason: str, *, abort: bool) -> None: ...


class Flow:
    """A connection's output side (mixed into transport.Connection, which holds the slots)."""

    __slots__ = ("backlog", "outbox", "stamp", "written")

    server: FlowHost
    front: FlowFront
    transport: asyncio.Transport | None
    closed: bool

    def start_output(self) -> None:
        # This turn's output; None between turns: an idle connection then holds no list
        # (72 bytes each, times every idle user), and a busy one makes one per turn.
        self.outbox: list[bytes] | None = None
        self.backlog: Backlog | None = None  # set while the reader is behind (gochat.backlog)
        self.stamp: Callable[[bytes], bytes] | None = None  # per-line framing (JSON: seq)
        self.written = 0  # bytes handed to the transport since gochat.stalls last looked

    @abstractmethod
    def queued(self) -> None:
        """The outbox got its first line this turn: have it flushed at the turn's end."""

    @abstractmethod
    def close(self, *, abort: bool = False) -> None: ...

    # -- the transport's flow control (asyncio.Protocol) -----------------------------

    def pause_writing(self) -> None:
        """The transport holds more than TRANSPORT_HIGH: keep further output in a backlog,
        where a slow reader's oldest chat lines can still be skipped (gochat.backlog)."""
        if self.closed or self.transport is None:
            return
        if self.backlog is None:
            self.backlog = Backlog(self.server.output_budget)
        self.backlog.paused = True

    def resume_writing(self) -> None:
        """The reader took enough to bring the transport under its low mark: hand it more."""
        backlog = self.backlog
        if backlog is None or self.closed:
            return
        backlog.paused = False
        self._drain(backlog)

    def write(self, data: bytes, lobby: str | None = None, /) -> None:
        """Queue `data`; the server writes each connection's queue once per loop turn.

        One write per connection per loop turn instead of one per line: each write
        is a send() system call, by far the largest cost of a delivery, and a
        backlog after any stall goes out in one piece instead of line by line.
        `lobby` marks a chat line, which a reader far behind may skip.
        """
        backlog = self.backlog
        if backlog is not None:
            self._behind(backlog, data, lobby)
            return
        outbox = self.outbox
        if outbox is None:
            self.outbox = [data]
            self.queued()
        else:
            outbox.append(data)

    def flush(self) -> None:
        """Hand this turn's output to the transport in one write (never waits)."""
        outbox = self.outbox
        if outbox is None:
            return
        self.outbox = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            data = self._framed(outbox)
            self.written += len(data)
            transport.write(data)

    def _framed(self, lines: list[bytes]) -> bytes:
        stamp = self.stamp
        if stamp is not None:
            lines = [stamp(line) for line in lines]
        return lines[0] if len(lines) == 1 else b"".join(lines)

    # -- a reader behind (the policy is gochat.backlog's) --------------------------

    def _behind(self, backlog: Backlog, data: bytes, lobby: str | None) -> None:
        config = self.server.config
        backlog.add(data, lobby, config.sendq_bytes)
        budget = self.server.output_budget
        if budget.over:
            budget.trim()
        transport = self.transport
        unsent = backlog.kept + (transport.get_write_buffer_size() if transport else 0)
        if unsent > config.sendq_hard:
            self._drop("SendQ exceeded", f"{unsent} bytes unsent")
        elif not backlog.paused:
            self._drain(backlog)

    def _drain(self, backlog: Backlog) -> None:
        """Hand the transport what it takes without pausing; flowing again once all is out."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        while not backlog.paused and not backlog.empty:
            room = TRANSPORT_HIGH + 1 - transport.get_write_buffer_size()
            data = self._framed(backlog.take(room, self.front.skipped))
            self.written += len(data)
            transport.write(data)  # may pause writing again
        if backlog.empty and not backlog.paused:
            self._forget_backlog()

    def progress(self) -> tuple[int, int]:
        """(bytes waiting for the reader now, bytes handed to the transport since the
        last call): what gochat.stalls judges a stopped reader by. The backlog is not
        counted: skipping from it is not the reader taking anything."""
        handed, self.written = self.written, 0
        transport = self.transport
        if transport is None or self.closed:
            return 0, handed
        waiting = transport.get_write_buffer_size()
        return waiting + kernel_unsent(transport.get_extra_info("socket")), handed

    def drop_stalled(self, seconds: float) -> None:
        """gochat.stalls found this reader took nothing for `seconds` while output waited."""
        if not self.closed:
            self._drop("stalled", f"nothing read for {seconds:g} s")

    def _drop(self, reason: str, detail: str) -> None:
        """A stopped reader or one past the hard cap: reset it; the user leaves in `lost`."""
        log.warning("%s for %s (%s); dropping", reason, self.front.who(), detail)
        self.front.closing(reason, abort=True)
        self.close(abort=True)

    def _forget_backlog(self) -> None:
        backlog, self.backlog = self.backlog, None
        if backlog is not None:
            backlog.close()

    def send_the_rest(self, transport: asyncio.Transport) -> None:
        """Closing politely while behind: what waits goes out too, the goodbye last."""
        self.flush()
        backlog = self.backlog
        if backlog is not None:
            rest = backlog.take(backlog.size + (1 << 30), self.front.skipped)
            transport.write(self._framed(rest))
            self._forget_backlog()
