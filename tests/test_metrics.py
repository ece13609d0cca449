"""/metrics and /healthz read the real journal, store and assistant.

Every test runs a real chat server with the metrics listener on port 0 and
scrapes it over HTTP. The store is the real SQLite store; when it has to fail,
a subclass refuses writes with the error SQLite itself raises, so the journal's
real retry path runs. The assistant is the real Rox, talking to
tests/fake_gemini.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence

import pytest

from gochat import rox_failures
from gochat.store import Op
from gochat.store.sqlite import SQLiteStore

from . import fake_gemini as fg
from .conftest import ChatClient, wait_until
from .http_client import get, value

METRICS = "127.0.0.1:0"
KEY = "test-key-0123456789"


# -- the store ------------------------------------------------------------------------


class DownSQLiteStore(SQLiteStore):
    """The real SQLite store, down for its first `down_for` writes.

    A refused write raises what SQLite raises when the disk fails. The write after
    them waits at `gate`, in flight, so a scrape sees a steady state; once `gate`
    is set it (and every later write) goes to the database as usual.
    """

    def __init__(self, path: str, down_for: int) -> None:
        super().__init__(path)
        self.down_for = down_for
        self.refused = 0
        self.gate = asyncio.Event()
        self.waiting = False

    async def write(self, ops: Sequence[Op], touched: Mapping[str, float] | None = None) -> None:
        if self.refused < self.down_for:
            self.refused += 1
            raise sqlite3.OperationalError("disk I/O error")
        self.waiting = True
        await self.gate.wait()
        self.waiting = False
        await super().write(ops, touched)


async def test_a_failing_store_degrades_health_until_it_recovers(make_server, tmp_path):
    """While writes fail: degraded, store down, errors counted, writes queued.
    Once the store takes them: ok, up, and `written` is what reached the database."""
    path = str(tmp_path / "down.db")
    store = DownSQLiteStore(path, down_for=2)
    server = await make_server(metrics_addr=METRICS, store=store, flush_ms=1)
    port = server.ports["metrics"]
    journal = server.journal
    assert journal is not None
    client = await ChatClient.connect(server.ports["plain"])
    try:
        await client.login("dora")
        for i in range(3):
            await client.send(f"line {i}")
            await client.expect(f"line {i}")
        await wait_until(lambda: store.waiting, what="two refused writes and a third held")

        health = await get(port, "/healthz")
        assert health.status == 200  # a liveness check: a restart would not fix the store
        body = health.json()
        assert body["status"] == "degraded"
        assert body["store"] == {"state": "failing", "backend": "sqlite", "queue_depth": 3}
        samples = (await get(port, "/metrics")).samples()
        assert value(samples, "gochat_store_up") == 0
        assert value(samples, "gochat_store_flush_errors_total") == 2
        assert value(samples, "gochat_store_queue_depth") == 3
        assert value(samples, "gochat_store_writes_total") == 0
        assert value(samples, "gochat_store_flush_duration_seconds_count") == 0

        store.gate.set()
        await wait_until(
            lambda: journal.healthy and journal.pending == 0, what="the store to catch up"
        )
        body = (await get(port, "/healthz")).json()
        assert body["status"] == "ok"
        assert body["store"]["state"] == "ok"
        assert body["store"]["queue_depth"] == 0
        assert body["store"]["last_flush_seconds"] >= 0
        samples = (await get(port, "/metrics")).samples()
        assert value(samples, "gochat_store_up") == 1
        assert value(samples, "gochat_store_flush_errors_total") == 2  # a total: never reset
        assert value(samples, "gochat_store_queue_depth") == 0
        assert value(samples, "gochat_store_writes_total") == 3
        assert value(samples, "gochat_store_flush_duration_seconds_count") == journal.commits
        stored = await store.recent_messages("general", 10)
        assert [m.body for m in stored] == ["line 0", "line 1", "line 2"]
    finally:
        store.gate.set()
        await client.close()


async def test_without_a_store_health_says_off(make_server):
    """GOCHAT_DB=none: store "off", up (nothing is failing), nothing queued or written."""
    server = await make_server(metrics_addr=METRICS)
    assert server.journal is None
    port = server.ports["metrics"]
    body = (await get(port, "/healthz")).json()
    assert body["status"] == "ok"
    assert body["store"] == {"state": "off"}
    samples = (await get(port, "/metrics")).samples()
    assert value(samples, "gochat_store_up") == 1
    assert value(samples, "gochat_store_queue_depth") == 0
    assert value(samples, "gochat_store_writes_total") == 0
    assert value(samples, "gochat_store_flush_errors_total") == 0


# -- the assistant --------------------------------------------------------------------


@pytest.fixture
def fake():
    server = fg.FakeGemini().start()
    yield server
    server.close()


async def test_ai_outcomes_durations_and_in_flight(make_server, fake):
    """A real answer, a real 429 and a held question, as Rox counted them."""
    server = await make_server(
        metrics_addr=METRICS, ai_api_key=KEY, ai_base_url=fake.url, ai_timeout=5.0
    )
    port = server.ports["metrics"]
    bob = await ChatClient.connect(server.ports["plain"])
    try:
        await bob.login("bob")
        await bob.send("/ai first?")
        await bob.expect("[AI Response to bob]")
        await bob.expect("• two")
        fake.next(fg.RATE_LIMITED)
        await bob.send("/ai second?")
        await bob.expect(rox_failures.ANSWER_QUOTA)
        await wait_until(lambda: server.assistant.in_flight == 0, what="both tasks to finish")

        samples = (await get(port, "/metrics")).samples()
        assert value(samples, "gochat_ai_enabled") == 1
        assert value(samples, "gochat_ai_requests_total", outcome="ok") == 1
        assert value(samples, "gochat_ai_requests_total", outcome="quota") == 1
        assert value(samples, "gochat_ai_request_duration_seconds_count") == 2
        assert value(samples, "gochat_ai_request_duration_seconds_bucket", le="+Inf") == 2
        assert value(samples, "gochat_ai_request_duration_seconds_sum") > 0
        assert value(samples, "gochat_ai_in_flight") == 0

        fake.next(fg.SLOW)
        await bob.send("/ai third?")
        await wait_until(lambda: len(fake.requests) == 3, what="the third question at the model")
        assert value((await get(port, "/metrics")).samples(), "gochat_ai_in_flight") == 1
        assert (await get(port, "/healthz")).json()["ai"] == {"state": "enabled", "in_flight": 1}
        fake.release()
        await bob.expect("[AI Response to bob]")
        await bob.expect("• two")
        await wait_until(lambda: server.assistant.in_flight == 0, what="the task to finish")

        samples = (await get(port, "/metrics")).samples()
        assert value(samples, "gochat_ai_requests_total", outcome="ok") == 2
        assert value(samples, "gochat_ai_requests_total", outcome="quota") == 1
        assert value(samples, "gochat_ai_request_duration_seconds_count") == 3
        assert value(samples, "gochat_ai_in_flight") == 0
        assert (await get(port, "/healthz")).json()["ai"] == {"state": "enabled", "in_flight": 0}
    finally:
        await bob.close()


async def test_ai_off_is_disabled_and_silent(make_server):
    """No key: disabled, nothing in flight, no outcomes, an empty duration histogram."""
    server = await make_server(metrics_addr=METRICS)
    port = server.ports["metrics"]
    assert (await get(port, "/healthz")).json()["ai"] == {"state": "disabled", "in_flight": 0}
    samples = (await get(port, "/metrics")).samples()
    assert value(samples, "gochat_ai_enabled") == 0
    assert not [key for key in samples if key[0] == "gochat_ai_requests_total"]
    assert value(samples, "gochat_ai_request_duration_seconds_count") == 0
