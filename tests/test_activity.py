"""gochat.activity: one line for many connections, saying what changed since the last."""

from __future__ import annotations

from gochat.activity import Activity
from gochat.stats import Counters


def test_one_line_counts_what_happened_since_the_last() -> None:
    counters = Counters()
    counters.connections_accepted = 3  # before the server's Activity existed: not reported
    activity = Activity(counters)
    assert activity.line(counters) is None  # nothing since: no line at all
    counters.connections_accepted += 10
    counters.connections_refused += 1
    counters.logins += 8
    counters.disconnects["quit"] += 5
    counters.disconnects["idle timeout"] += 2
    assert activity.line(counters) == (
        "activity: 10 connections, 1 refused, 8 logins, 7 disconnects (quit 5, idle timeout 2)"
    )
    counters.logins += 1
    assert activity.line(counters) == (
        "activity: 0 connections, 0 refused, 1 logins, 0 disconnects"
    )
    assert activity.line(counters) is None
