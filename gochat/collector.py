"""Prometheus samples from the server's plain numbers, computed only when scraped.

Nothing here runs on the chat path. The core bumps plain ints (`stats.Counters`)
and the assistant and the store journal keep their own plain numbers; a custom
collector reads all of them only when Prometheus scrapes. Each server has its
own `CollectorRegistry`, so several servers in one process (tests) never mix.
The HTTP endpoint that serves them is `gochat.metrics`.

What the collector reads:

- `server.assistant` (`gochat.rox.Rox`): `enabled`, `in_flight`, `outcomes`
  (finished questions by outcome, a fixed small set of keys) and `durations`
  (seconds per request at the model).
- `server.journal` (`gochat.journal.Journal`, None when GOCHAT_DB=none):
  `pending`, `written`, `dropped`, `healthy`, `flush_errors`,
  `last_flush_seconds`, `flush_durations` and its store's `backend`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gochat import __version__

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from gochat.chat import ChatCore
    from gochat.config import Config
    from gochat.journal import Journal
    from gochat.rox import Rox
    from gochat.stats import DurationHistogram
    from gochat.transport import Connection


COUNTERS = (
    ("connections_accepted", "Connections admitted since start."),
    ("connections_refused", "Connections refused by the per-IP or total cap."),
    ("logins", "Users who picked a name and entered the chat."),
    ("messages", "Chat messages accepted from users."),
    ("deliveries", "Lines delivered to recipients (one message to ten people is ten)."),
    ("rate_limited", "Messages refused by the per-user rate limit."),
    ("flood_disconnects", "Users disconnected for flooding past the rate limit."),
    (
        "sendq_disconnects",
        "Readers dropped for their output: stopped (GOCHAT_STALL_TIMEOUT) or past the hard cap.",
    ),
)


# -- reading the server ---------------------------------------------------------


class Source(Protocol):
    """What the endpoint reads (gochat.server.ChatServer): plain numbers, no internals."""

    @property
    def config(self) -> Config: ...

    @property
    def core(self) -> ChatCore: ...

    @property
    def assistant(self) -> Rox: ...

    @property
    def journal(self) -> Journal | None: ...

    @property
    def sessions(self) -> Collection[Connection]: ...

    @property
    def ports(self) -> Mapping[str, int]: ...

    @property
    def started_at(self) -> float | None: ...

    @property
    def started_wall(self) -> float: ...

    def monotonic(self) -> float: ...


def connections_by_listener(server: Source) -> dict[str, int]:
    """Open connections per chat listener; every bound listener appears, even at 0."""
    counts = {name: 0 for name in server.ports if name != "metrics"}
    for session in list(server.sessions):
        counts[session.listener] = counts.get(session.listener, 0) + 1
    return counts


def uptime(server: Source) -> float:
    started = server.started_at
    if started is None:
        return 0.0
    return max(0.0, server.monotonic() - started)


def _histogram(name: str, doc: str, source: DurationHistogram | None) -> HistogramMetricFamily:
    """A DurationHistogram as a Prometheus histogram (empty when there is none)."""
    family = HistogramMetricFamily(name, doc, unit="seconds")
    if source is None:
        return family
    running = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(source.buckets, source.counts, strict=False):
        running += count
        buckets.append((repr(bound), running))
    running += source.counts[-1]
    buckets.append(("+Inf", running))
    family.add_metric([], buckets, source.sum)
    return family


class GochatCollector(Collector):
    """Reads counters and state at scrape time; the chat path never calls it."""

    def __init__(self, server: Source) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        server = self.server
        yield from self._server(server)
        yield from self._counters(server)
        yield from self._assistant(server)
        yield from self._journal(server)

    def _server(self, server: Source) -> Iterator[Metric]:
        info = GaugeMetricFamily("gochat_build_info", "gochat version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "gochat_start_time_seconds",
            "When the server started, seconds since the epoch.",
            value=server.started_wall,
        )
        yield GaugeMetricFamily(
            "gochat_uptime_seconds", "Seconds since the server started.", value=uptime(server)
        )
        by_listener = GaugeMetricFamily(
            "gochat_connections", "Open connections by listener.", labels=["listener"]
        )
        for listener, count in sorted(connections_by_listener(server).items()):
            by_listener.add_metric([listener], count)
        yield by_listener
        yield GaugeMetricFamily(
            "gochat_clients", "Users logged in.", value=len(server.core.clients)
        )
        yield GaugeMetricFamily("gochat_lobbies", "Lobbies.", value=len(server.core.lobbies))

    def _counters(self, server: Source) -> Iterator[Metric]:
        counters = server.core.counters
        for name, doc in COUNTERS:
            yield CounterMetricFamily(f"gochat_{name}", doc, value=getattr(counters, name))
        reasons = CounterMetricFamily(
            "gochat_disconnects", "Connections closed, by reason.", labels=["reason"]
        )
        for reason, count in sorted(dict(counters.disconnects).items()):
            reasons.add_metric([reason], count)
        yield reasons

    def _assistant(self, server: Source) -> Iterator[Metric]:
        assistant = server.assistant
        yield GaugeMetricFamily(
            "gochat_ai_enabled",
            "1 when the AI assistant is configured.",
            value=1 if assistant.enabled else 0,
        )
        yield GaugeMetricFamily(
            "gochat_ai_in_flight",
            "AI questions asked and not yet answered.",
            value=assistant.in_flight,
        )
        requests = CounterMetricFamily(
            "gochat_ai_requests", "AI requests by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(assistant.outcomes.items()):
            requests.add_metric([outcome], count)
        yield requests
        yield _histogram(
            "gochat_ai_request_duration",
            "Seconds from sending an AI request to its answer or failure.",
            assistant.durations,
        )

    def _journal(self, server: Source) -> Iterator[Metric]:
        journal = server.journal
        yield GaugeMetricFamily(
            "gochat_store_queue_depth",
            "Writes waiting for the store's writer (queued plus in flight).",
            value=journal.pending if journal is not None else 0,
        )
        yield GaugeMetricFamily(
            "gochat_store_up",
            "1 while store writes succeed (or there is no store), 0 while they fail.",
            value=1 if journal is None or journal.healthy else 0,
        )
        yield CounterMetricFamily(
            "gochat_store_writes",
            "Store operations committed.",
            value=journal.written if journal is not None else 0,
        )
        yield CounterMetricFamily(
            "gochat_store_dropped",
            "Messages dropped because the store queue was full.",
            value=journal.dropped if journal is not None else 0,
        )
        yield GaugeMetricFamily(
            "gochat_store_last_flush_seconds",
            "How long the store's last flush took.",
            value=(journal.last_flush_seconds if journal is not None else None) or 0.0,
        )
        yield _histogram(
            "gochat_store_flush_duration",
            "Seconds each store flush took.",
            journal.flush_durations if journal is not None else None,
        )
        yield CounterMetricFamily(
            "gochat_store_flush_errors",
            "Store flushes that failed.",
            value=journal.flush_errors if journal is not None else 0,
        )


def build_registry(server: Source) -> CollectorRegistry:
    """A private registry: this server's collector plus process, GC and platform metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GochatCollector(server))
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
