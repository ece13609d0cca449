"""A small HTTP client for /healthz and /metrics that shows exactly what came back."""

from __future__ import annotations

import asyncio
import json

from prometheus_client.parser import text_string_to_metric_families


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self):
        return json.loads(self.body)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = {}
        for family in text_string_to_metric_families(self.body.decode()):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found


async def http(port: int, request: bytes, timeout: float = 5.0) -> Response:
    """Send raw request bytes, read until the server closes, parse the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return Response(raw)


async def get(port: int, path: str, method: str = "GET") -> Response:
    return await http(port, f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]
