"""/healthz and /metrics over a tiny HTTP server on the chat's own event loop.

Nothing here runs on the chat path. The core bumps plain ints (`stats.Counters`)
and the assistant and the store journal keep their own plain numbers; a custom
collector reads all of them only when Prometheus scrapes. Each server has its
own `CollectorRegistry`, so several servers in one process (tests) never mix.

The HTTP side is deliberately small: one request per connection, GET or HEAD,
a bounded request head, a read timeout, `Connection: close`, a cap on
connections at once. It binds loopback unless `GOCHAT_METRICS_ADDR` names
another host, and it has no authentication: keep it off the internet.

What the collector reads:

- `server.assistant` (`gochat.rox.Rox`): `enabled`, `in_flight`, `outcomes`
  (finished questions by outcome, a fixed small set of keys) and `durations`
  (seconds per request at the model).
- `server.journal` (`gochat.journal.Journal`, None when GOCHAT_DB=none):
  `pending`, `written`, `dropped`, `healthy`, `flush_errors`,
  `last_flush_seconds`, `flush_durations` and its store's `backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from gochat import __version__
from gochat.config import format_host_port, parse_host_port

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from gochat.chat import ChatCore
    from gochat.config import Config
    from gochat.journal import Journal
    from gochat.rox import Rox
    from gochat.stats import DurationHistogram
    from gochat.transport import Connection

log = logging.getLogger("gochat.metrics")

MAX_REQUEST_HEAD = 8192
"""Bytes of request line plus headers; past it the answer is 431 and a close."""
MAX_HEADER_LINES = 64
READ_TIMEOUT = 5.0
"""Seconds a client has to send its request, and again to take the answer."""
MAX_CLIENTS = 32
"""HTTP connections at once; more are closed unanswered."""


COUNTERS = (
    ("connections_accepted", "Connections admitted since start."),
    ("connections_refused", "Connections refused by the per-IP or total cap."),
    ("logins", "Users who picked a name and entered the chat."),
    ("messages", "Chat messages accepted from users."),
    ("deliveries", "Lines delivered to recipients (one message to ten people is ten)."),
    ("rate_limited", "Messages refused by the per-user rate limit."),
    ("flood_disconnects", "Users disconnected for flooding past the rate limit."),
    ("sendq_disconnects", "Clients dropped because their unsent output passed the send-queue cap."),
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


def ai_state(server: Source) -> dict[str, object]:
    assistant = server.assistant
    return {
        "state": "enabled" if assistant.enabled else "disabled",
        "in_flight": assistant.in_flight,
    }


def store_state(journal: Journal | None) -> dict[str, object]:
    if journal is None:
        return {"state": "off"}
    state: dict[str, object] = {
        "state": "ok" if journal.healthy else "failing",
        "backend": journal.store.backend,
        "queue_depth": journal.pending,
    }
    if journal.last_flush_seconds is not None:
        state["last_flush_seconds"] = round(journal.last_flush_seconds, 6)
    return state


def health(server: Source) -> dict[str, object]:
    """The /healthz document. "degraded" still answers 200: it is a liveness check."""
    store = store_state(server.journal)
    return {
        "status": "degraded" if store["state"] == "failing" else "ok",
        "version": __version__,
        "uptime_seconds": round(uptime(server), 3),
        "connections": len(server.sessions),
        "clients": len(server.core.clients),
        "lobbies": len(server.core.lobbies),
        "store": store,
        "ai": ai_state(server),
    }


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


# -- HTTP -----------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class MetricsServer:
    """The HTTP listener for /healthz and /metrics."""

    def __init__(self, server: Source) -> None:
        self.server = server
        self.host, self.port = parse_host_port(server.config.metrics_addr)
        self.registry = build_registry(server)
        self._listener: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Bind; return the port (useful when configured as 0). Raises OSError."""
        self._listener = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_REQUEST_HEAD, reuse_address=True
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        address = format_host_port(self.host, self.port)
        log.info("metrics on http://%s/metrics and /healthz", address)
        return self.port

    async def close(self) -> None:
        if self._listener is None:
            return
        self._listener.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listener.wait_closed(), 1.0)
        self._listener = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_CLIENTS:
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    method, path = await _read_request(reader)
                status, content_type, body = self.respond(method, path)
                head_only = method == "HEAD"
            except _BadRequest as exc:
                status, content_type, body = _error(exc.status)
                head_only = False
            except TimeoutError:
                status, content_type, body = _error(408)
                head_only = False
            extra = "Allow: GET, HEAD\r\n" if status == 405 else ""
            head = (
                f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Cache-Control: no-store\r\n{extra}"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(head if head_only else head + body)
            async with asyncio.timeout(READ_TIMEOUT):
                await writer.drain()
            writer.close()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
        except Exception:
            log.exception("metrics request failed")
            writer.transport.abort()
        finally:
            self._writers.discard(writer)

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return _error(405)
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if route == "/healthz":
            body = json.dumps(health(self.server)).encode() + b"\n"
            return 200, "application/json", body
        return _error(404)


def _error(status: int) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", f"{status} {REASONS[status]}\n".encode()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Read the request line and headers (bounded); return method and target."""
    total = 0
    lines: list[bytes] = []
    while True:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise _BadRequest(431) from None
        if not line.endswith(b"\n"):
            raise _BadRequest(400)  # closed before the blank line
        total += len(line)
        if total > MAX_REQUEST_HEAD or len(lines) > MAX_HEADER_LINES:
            raise _BadRequest(431)
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue  # RFC 9112: ignore blank lines before the request line
            break
        lines.append(line)
    parts = lines[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(400)
    method, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise _BadRequest(400)
    return method, target
