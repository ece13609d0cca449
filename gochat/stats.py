"""Plain counters the hot path bumps; exporters read them when asked.

Incrementing an int attribute costs nanoseconds, so counting every delivery
is free; a metrics endpoint turns these into Prometheus samples at scrape
time instead of the fan-out loop calling into a metrics library.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    """Totals since start. No user, lobby or address is ever a key here."""

    connections_accepted: int = 0
    connections_refused: int = 0
    logins: int = 0
    messages: int = 0
    deliveries: int = 0
    rate_limited: int = 0
    flood_disconnects: int = 0
    sendq_disconnects: int = 0
    disconnects: Counter[str] = field(default_factory=Counter)


AI_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class DurationHistogram:
    """Plain-number histogram for code that must not import a metrics library.

    `observe()` costs a bisect and two additions. `counts[i]` is the number of
    observations <= `buckets[i]` and > the bucket before; `counts[-1]` holds
    those above the last bound. The collector turns it into cumulative buckets.
    """

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: Sequence[float] = AI_BUCKETS) -> None:
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)
