"""One log line a minute for the connections, instead of one per connection.

A login storm of 10,000 users used to write 30,000 INFO lines (connect,
login, disconnect) and spend a good part of each login formatting them. Each
connection's lines are DEBUG now; at INFO the server says, once a minute and
at shutdown, how many came, logged in and left, and why they left. The
counts come from `stats.Counters`, which the hot path bumps anyway.
"""

from __future__ import annotations

from collections import Counter

from gochat.stats import Counters

EVERY = 60.0  # seconds between two activity lines


class Activity:
    """Remembers the counters at the last line, to report what changed since."""

    __slots__ = ("accepted", "disconnects", "logins", "refused")

    def __init__(self, counters: Counters) -> None:
        self.disconnects: Counter[str] = Counter()
        self._remember(counters)

    def _remember(self, counters: Counters) -> None:
        self.accepted = counters.connections_accepted
        self.refused = counters.connections_refused
        self.logins = counters.logins
        self.disconnects = Counter(counters.disconnects)

    def line(self, counters: Counters) -> str | None:
        """What happened since the last call, in one line; None if nothing did."""
        accepted = counters.connections_accepted - self.accepted
        refused = counters.connections_refused - self.refused
        logins = counters.logins - self.logins
        gone = counters.disconnects - self.disconnects
        self._remember(counters)
        if not (accepted or refused or logins or gone):
            return None
        parts = [f"{accepted} connections", f"{refused} refused", f"{logins} logins"]
        total = sum(gone.values())
        why = ", ".join(f"{reason} {n}" for reason, n in gone.most_common())
        parts.append(f"{total} disconnects" + (f" ({why})" if why else ""))
        return "activity: " + ", ".join(parts)
