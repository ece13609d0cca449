"""The journal: the chat core's non-blocking way to write to the store.

The journal is one of the core's sinks (gochat.changes): of what the core
emits it keeps lobby messages, DMs and lobby changes, and only appends them to
an in-memory queue (a deque append, no I/O, no await). A writer task commits
what has queued up in one transaction, at most every GOCHAT_FLUSH_MS, so
after a crash at most that window is lost.

If the store is slow or down, chat goes on: the queue grows up to
GOCHAT_STORE_QUEUE_MAX (past it the oldest messages are dropped, lobby
changes never), failed writes are retried with backoff, and the operator log
says what is wrong. `close` (at shutdown) writes everything still queued,
within GOCHAT_STORE_CLOSE_TIMEOUT.

At start, `open_journal` connects, migrates and fills every lobby's history
ring from the store, so replay and /history read memory, never the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from gochat.changes import Audience, Emitted, LobbyDeleted, LobbySaved, LobbyTouched
from gochat.events import ChatMessage, DirectMessage
from gochat.names import name_key
from gochat.records import Pending, hydrate, lobby_record, to_op
from gochat.stats import FLUSH_BUCKETS, DurationHistogram
from gochat.store import DeleteLobby, LobbyRecord, Store, StoreError, store_for

if TYPE_CHECKING:
    from gochat.chat import ChatCore
    from gochat.config import Config
    from gochat.lobbies import Lobby

log = logging.getLogger("gochat.store")

BATCH_MAX = 5000  # queued writes committed in one transaction
MIN_BACKOFF = 0.2  # seconds before the first retry of a failed write
MAX_BACKOFF = 10.0
PRUNE_EVERY = 300.0  # seconds between retention passes
DROP_LOG_EVERY = 10.0  # at most one "queue full" warning per this many seconds


class Journal:
    """Queued, batched, retried writes to one store. Owned by the event loop."""

    def __init__(
        self, store: Store, config: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval = config.flush_ms / 1000
        self.queue_max = config.store_queue_max
        self.store_dms = config.store_dms
        self.history_max = config.history_max
        self.history_days = config.history_days
        self.close_timeout = config.store_close_timeout
        self._queue: deque[Pending] = deque()
        self._pinned: list[Pending] = []  # lobby changes pushed out of a full queue
        self._inflight = 0
        self._touched: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_drop_log = -DROP_LOG_EVERY
        self._dropped_logged = 0
        self.dropped = 0  # messages lost because the queue was full
        self.written = 0  # operations committed
        self.commits = 0  # successful transactions
        self.failures = 0  # failed attempts since the last good write
        self.flush_errors = 0  # failed attempts since start (never reset)
        self.last_flush_seconds: float | None = None
        self.flush_durations = DurationHistogram(FLUSH_BUCKETS)

    # -- the core's side: never blocks ----------------------------------------------

    def take(self, item: Emitted, audience: Audience) -> None:
        """What the core emitted (gochat.changes): queue what outlives the process."""
        match item:
            case ChatMessage():
                self.message(item)
            case DirectMessage():
                self.direct(item)
            case LobbySaved(lobby=lobby):
                self.lobby_saved(lobby)
            case LobbyTouched(lobby=lobby):
                self.lobby_touched(lobby)
            case LobbyDeleted(name=name):
                self.lobby_deleted(name)

    def message(self, message: ChatMessage) -> None:
        """A line said in a lobby (chat, tag, ai, system)."""
        self._push(message)

    def direct(self, message: DirectMessage) -> None:
        """A DM; kept only when GOCHAT_STORE_DMS is on."""
        if self.store_dms:
            self._push(message)

    def lobby_saved(self, lobby: Lobby) -> None:
        """A lobby was created or changed (persona, password): store it as it is now."""
        self._push(lobby_record(lobby))

    def lobby_touched(self, lobby: Lobby) -> None:
        """Someone came or went: remember the lobby's last activity (coalesced)."""
        self._touched[lobby.key] = lobby.last_active
        if not self._wake.is_set():
            self._wake.set()

    def lobby_deleted(self, name: str) -> None:
        """A lobby is gone: delete it and its history."""
        self._push(DeleteLobby(name_key(name)))

    def _push(self, item: Pending) -> None:
        queue = self._queue
        queue.append(item)
        if len(queue) > self.queue_max:
            self._overflow()
        if not self._wake.is_set():
            self._wake.set()

    def _overflow(self) -> None:
        queue = self._queue
        dropped = self.dropped
        while len(queue) > self.queue_max:
            item = queue.popleft()
            if isinstance(item, LobbyRecord | DeleteLobby):
                self._pinned.append(item)  # older than all that is queued: order is kept
            else:
                self.dropped += 1
        now = time.monotonic()
        if self.dropped > dropped and now - self._last_drop_log >= DROP_LOG_EVERY:
            self._last_drop_log = now
            self._log_drops()

    def _log_drops(self) -> None:
        log.warning(
            "store: write queue full (%d); dropped %d oldest messages (%d in all) "
            "because %s is slow or down",
            self.queue_max,
            self.dropped - self._dropped_logged,
            self.dropped,
            self.store.description,
        )
        self._dropped_logged = self.dropped

    @property
    def pending(self) -> int:
        """Writes not yet committed (queued plus in flight)."""
        return len(self._queue) + len(self._pinned) + self._inflight

    @property
    def healthy(self) -> bool:
        """False from a failed write until the next good one."""
        return self.failures == 0

    # -- the writer task ---------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gochat-journal")

    def _has_work(self) -> bool:
        return bool(self._queue or self._pinned or self._touched)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_commit = -self.interval
        next_prune = loop.time()
        backoff = 0.0
        while True:
            closing = self._closing.is_set()
            if not closing and loop.time() >= next_prune:
                await self._prune()
                next_prune = loop.time() + PRUNE_EVERY
            if not self._has_work():
                # Read the flag afresh: close() may have set it (and _wake) while the
                # prune above was awaited; clearing _wake then would sleep until the next
                # prune (PRUNE_EVERY, 5 minutes).
                if self._closing.is_set():
                    return
                self._wake.clear()
                await _wait(self._wake, next_prune - loop.time())
                continue
            if not closing:
                await _wait(self._closing, last_commit + self.interval - loop.time())
            error = await self._flush()
            last_commit = loop.time()
            if error is None:
                backoff = 0.0
                continue
            backoff = min(MAX_BACKOFF, max(MIN_BACKOFF, backoff * 2))
            log.error(
                "store: write to %s failed (attempt %d): %s; %d writes waiting, retry in %.1f s",
                self.store.description,
                self.failures,
                _describe(error),
                self.pending,
                backoff,
            )
            await asyncio.sleep(backoff)

    async def _flush(self) -> Exception | None:
        """Commit one batch; on failure put it back at the front of the queue."""
        batch = self._pinned
        self._pinned = []
        queue = self._queue
        for _ in range(min(len(queue), max(0, BATCH_MAX - len(batch)))):
            batch.append(queue.popleft())
        touched, self._touched = self._touched, {}
        self._inflight = len(batch)
        started = time.perf_counter()
        try:
            await self.store.write([to_op(item) for item in batch], touched)
        except Exception as exc:
            self.flush_errors += 1
            self._inflight = 0
            queue.extendleft(reversed(batch))
            for key, when in touched.items():
                if when > self._touched.get(key, when - 1):
                    self._touched[key] = when
            if len(queue) > self.queue_max:
                self._overflow()
            self.failures += 1
            return exc
        self.last_flush_seconds = elapsed = time.perf_counter() - started
        self.flush_durations.observe(elapsed)
        self._inflight = 0
        self.written += len(batch)
        self.commits += 1
        if self.dropped > self._dropped_logged:
            self._log_drops()  # the drops since the last (rate-limited) warning
        if self.failures:
            log.warning(
                "store: writes to %s work again after %d failed attempts",
                self.store.description,
                self.failures,
            )
            self.failures = 0
        return None

    async def _prune(self) -> None:
        """Apply GOCHAT_HISTORY_MAX and GOCHAT_HISTORY_DAYS; a failure waits for next time."""
        if self.history_max <= 0 and self.history_days <= 0:
            return
        before = self.clock() - self.history_days * 86400 if self.history_days > 0 else None
        try:
            deleted = await self.store.prune(max_per_lobby=self.history_max, before=before)
        except Exception as exc:
            log.warning("store: pruning old history failed: %s", _describe(exc))
            return
        if deleted:
            log.info("store: pruned %d old messages", deleted)

    async def flushed(self) -> None:
        """Wait until everything queued so far is committed (for tests and tools)."""
        while self.pending or self._touched:
            self._wake.set()
            await asyncio.sleep(self.interval / 4 or 0.001)

    async def close(self) -> None:
        """Write what is still queued (bounded by the close timeout), then close the store."""
        task = self._task
        if task is not None and not task.done():  # a second close has nothing to wait for
            self._closing.set()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), self.close_timeout)
            except TimeoutError:
                log.error(
                    "store: %d writes lost: %s did not take them within %g s",
                    self.pending,
                    self.store.description,
                    self.close_timeout,
                )
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            except Exception as exc:
                log.error("store: writer failed: %s", _describe(exc))
            else:
                log.info("store: all writes saved to %s", self.store.description)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.close(), 5.0)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for `event` at most `seconds`."""
    if seconds <= 0 or event.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def open_journal(
    config: Config, core: ChatCore, store: Store | None = None
) -> Journal | None:
    """Open the store (GOCHAT_DB, or `store`), fill the lobbies from it, start writing.

    None when GOCHAT_DB=none. Raises StoreError when the store cannot be used.
    """
    if store is None:
        store = store_for(config.db)
        if store is None:
            log.info("store: off (GOCHAT_DB=%s); history is kept in memory only", config.db)
            return None
    await store.open()
    try:
        lobbies, messages = await hydrate(core.lobbies, store)
    except Exception as exc:
        await store.close()
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot read {store.description}: {_describe(exc)}") from None
    core.restore_ids()
    log.info(
        "store: %s, %d lobbies and %d recent messages loaded",
        store.description,
        lobbies,
        messages,
    )
    journal = Journal(store, config, clock=core.clock)
    core.sinks.append(journal)
    journal.start()
    return journal
