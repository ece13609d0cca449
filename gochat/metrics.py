"""/healthz and /metrics over a tiny HTTP server on the chat's own event loop.

The samples themselves come from `gochat.collector`, read at scrape time; what
is here is the endpoint, and it is deliberately small: one request per
connection, GET or HEAD, a bounded request head, a read timeout,
`Connection: close`, a cap on connections at once. It binds loopback unless
`GOCHAT_METRICS_ADDR` names another host, and it has no authentication: keep
it off the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gochat import __version__
from gochat.collector import Source, build_registry, uptime
from gochat.envparse import format_host_port, parse_host_port

if TYPE_CHECKING:
    from gochat.journal import Journal

log = logging.getLogger("gochat.metrics")

MAX_REQUEST_HEAD = 8192
"""Bytes of request line plus headers; past it the answer is 431 and a close."""
MAX_HEADER_LINES = 64
READ_TIMEOUT = 5.0
"""Seconds a client has to send its request, and again to take the answer."""
MAX_CLIENTS = 32
"""HTTP connections at once; more are closed unanswered."""


# -- /healthz -------------------------------------------------------------------


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
