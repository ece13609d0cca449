"""Finding readers that have stopped: nothing taken for GOCHAT_STALL_TIMEOUT while output waits.

A stopped reader is not told apart by how much waits for it: the kernel's
own send buffer, autotuned, takes megabytes before our transport holds a
byte, and a reader 200 ms behind a burst holds as much. What tells it apart
is progress. Every look (a few a second) asks each connection that had
output, or still has some waiting, how many bytes wait for it now and how
many it was handed since; if the waiting bytes did not go down by anything
the reader took, the clock runs, and at the timeout the connection is dropped.
Idle connections cost one attribute read per look, and so do those handed
less than LEAST bytes since they were last asked (a presence line a second in
a big lobby would otherwise cost an ioctl per member per look): what they are
handed adds up until it is worth asking.

Sans-IO: `StallWatch.look` takes the connections and the time and returns
those to drop; the server's chore calls it, the connection measures itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Watched(Protocol):
    """A connection as the watch sees it (transport.Connection)."""

    @property
    def written(self) -> int:
        """Bytes handed to its transport since the last look (reset by `progress`)."""

    def progress(self) -> tuple[int, int]:
        """(bytes waiting for the reader now, bytes handed over since the last look)."""


LEAST = 4096  # bytes handed to a connection before it is worth asking how it reads


class StallWatch:
    """Keeps, for each reader with output waiting, how much waited and since when."""

    __slots__ = ("least", "suspects", "timeout")

    def __init__(self, timeout: float, least: int = LEAST) -> None:
        self.timeout = timeout
        self.least = least
        self.suspects: dict[Watched, tuple[int, float]] = {}  # waiting bytes, no progress since

    def look(self, connections: Iterable[Watched], now: float) -> list[Watched]:
        """Look at every connection once; return those stopped for the timeout."""
        suspects = self.suspects
        stopped = []
        for connection in connections:
            if connection.written < self.least and connection not in suspects:
                continue  # little for it since it was last asked, nothing waiting then
            waiting, handed = connection.progress()
            if waiting == 0:
                suspects.pop(connection, None)
                continue
            seen = suspects.get(connection)
            if seen is None or seen[0] + handed > waiting:  # new, or the reader took some
                suspects[connection] = (waiting, now)
            elif now - seen[1] >= self.timeout:
                stopped.append(connection)
                del suspects[connection]
            else:
                suspects[connection] = (waiting, seen[1])
        return stopped

    def forget(self, connection: Watched) -> None:
        """The connection is gone."""
        self.suspects.pop(connection, None)
