"""Flow control, sans-IO: what a connection does with output its reader has not taken yet.

Bytes queued are the wrong signal for dropping someone: a reader 200 ms
behind a burst holds as many as one that stopped reading. So a connection
whose transport is full keeps its further output here, line by line, with
the lobby of each chat line, and the rules are:

- a reader that keeps draining is never dropped for lag: past the soft cap
  (GOCHAT_SENDQ_BYTES) its oldest chat lines are dropped, and one line per
  lobby says how many ("N messages skipped"), where they were;
- what is not a chat line (a DM, a notice, an answer to a command) is never
  skipped; if it alone passes the hard cap (GOCHAT_SENDQ_HARD), the reader
  is dropped;
- a reader that drains nothing for GOCHAT_STALL_TIMEOUT is dropped
  (gochat.stalls sees that);
- all backlogs together stay under GOCHAT_OUTPUT_BUDGET: past it, the
  largest are trimmed first (`OutputBudget`).

Nothing here does I/O or reads a clock, so the policy is tested with a fake
transport that drains slowly and one that stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Skipped = dict[str, int]
"""Chat lines skipped, by lobby, since the reader last got a line."""

TRIM_TO = 0.75  # a backlog over its cap is trimmed to this share of it, not to the cap
"""Trimming to just under the cap would trim again at the next line; a margin
makes it once per burst."""


class Backlog:
    """One connection's output that waits for its transport, oldest first."""

    __slots__ = ("budget", "items", "kept", "paused", "size", "skipped")

    def __init__(self, budget: OutputBudget | None = None) -> None:
        self.paused = False  # the transport is over its high mark: nothing more goes to it
        self.items: deque[tuple[bytes, str | None]] = deque()  # (line, lobby of a chat line)
        self.size = 0  # bytes in `items`
        self.kept = 0  # of which never skipped (not chat lines)
        self.skipped: Skipped = {}
        self.budget = budget
        if budget is not None:
            budget.backlogs.add(self)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def empty(self) -> bool:
        return not self.items and not self.skipped

    def add(self, data: bytes, lobby: str | None, soft_cap: int) -> None:
        """Queue one line (`lobby` set: a chat line that may be skipped); keep the soft cap."""
        self.items.append((data, lobby))
        self._grew(len(data), 0 if lobby is not None else len(data))
        if self.size - self.kept > soft_cap:
            self.trim(int(soft_cap * TRIM_TO))

    def trim(self, target: int) -> int:
        """Skip the oldest chat lines until their bytes are at most `target`; return bytes freed."""
        droppable = self.size - self.kept
        if droppable <= target:
            return 0
        freed = 0
        kept: deque[tuple[bytes, str | None]] = deque()
        skipped = self.skipped
        for data, lobby in self.items:
            if lobby is not None and droppable - freed > target:
                freed += len(data)
                skipped[lobby] = skipped.get(lobby, 0) + 1
            else:
                kept.append((data, lobby))
        self.items = kept
        self._grew(-freed, 0)
        return freed

    def take(self, room: int, say_skipped: Callable[[str, int], bytes]) -> list[bytes]:
        """The lines to hand the transport now: about `room` bytes (at least one line).

        Skipped lines are told first, one line per lobby in the reader's dialect
        (`say_skipped(lobby, count)`).
        """
        out: list[bytes] = []
        if self.skipped:
            for where, count in self.skipped.items():
                out.append(say_skipped(where, count))
                room -= len(out[-1])
            self.skipped = {}
        items = self.items
        taken = kept = 0
        while items and (room > 0 or not out):
            data, lobby = items.popleft()
            out.append(data)
            taken += len(data)
            if lobby is None:
                kept += len(data)
            room -= len(data)
        self._grew(-taken, -kept)
        return out

    def close(self) -> None:
        """The connection is gone or flowing again: give its bytes back to the budget."""
        self._grew(-self.size, -self.kept)
        self.items.clear()
        if self.budget is not None:
            self.budget.backlogs.discard(self)

    def _grew(self, delta: int, kept_delta: int) -> None:
        self.size += delta
        self.kept += kept_delta
        if self.budget is not None:
            self.budget.total += delta


class OutputBudget:
    """All backlogs of one server, kept under one total (GOCHAT_OUTPUT_BUDGET)."""

    __slots__ = ("backlogs", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.backlogs: set[Backlog] = set()

    @property
    def over(self) -> bool:
        return self.total > self.limit

    def trim(self) -> int:
        """Past the limit, skip chat lines from the largest backlogs first; bytes freed."""
        freed = 0
        if not self.over:
            return 0
        target = int(self.limit * TRIM_TO)
        for backlog in sorted(self.backlogs, key=lambda b: b.size - b.kept, reverse=True):
            if self.total <= target:
                break
            droppable = backlog.size - backlog.kept
            freed += backlog.trim(max(0, droppable - (self.total - target)))
        return freed
