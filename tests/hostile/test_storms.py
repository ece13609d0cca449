"""Storms over real sockets: hundreds leaving at once, and SIGTERM in the middle of it.

Told one by one, N people leaving a lobby is N*N lines and a loop busy for the
whole of it, with SIGTERM waiting behind; coalesced (gochat.delivery), those
still there get a line or two, and the daemon stops as promptly as when idle.
Not timed: the figures are bench's; this checks the behaviour.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from ..conftest import wait_until
from .test_shutdown import GOODBYE, Reader, _connect, start_daemon

CLIENTS = 300
LEAVING = 250


async def test_a_departure_storm_is_a_few_lines_and_sigterm_still_acts(tmp_path: Path):
    proc, log, port = await start_daemon(tmp_path)
    loop = asyncio.get_running_loop()
    try:
        readers: list[Reader] = []
        for start in range(0, CLIENTS, 50):
            readers += await asyncio.gather(
                *(_connect(loop, port, i) for i in range(start, start + 50))
            )
        await asyncio.gather(*(asyncio.wait_for(r.welcomed.wait(), 20) for r in readers))
        leave, stay = readers[: LEAVING - 1] + readers[-1:], readers[LEAVING - 1 : -1]
        watcher = stay[0]
        # A line from the last to arrive: presence waiting in #general goes out before it.
        assert readers[-1].transport is not None
        readers[-1].transport.write(b"marker-5d1c\r\n")
        await wait_until(lambda: b"marker-5d1c" in watcher.tail, what="the marker")
        watcher.tail.clear()
        for reader in leave:  # all at once: each close is a departure from #general
            assert reader.transport is not None
            reader.transport.abort()

        def told() -> int:
            single = len(re.findall(rb"u\d{4} left the chat", watcher.tail))
            batched = sum(int(n) for n in re.findall(rb"(\d+) people left #general", watcher.tail))
            return single + batched

        await wait_until(lambda: told() == LEAVING, 20, f"{LEAVING} departures told")
        lines = watcher.tail.count(b"\r\n")
        assert lines < LEAVING // 5, f"{lines} lines for {LEAVING} departures"
        # A second storm, and SIGTERM right behind it: the goodbye reaches everyone left.
        more = [await _connect(loop, port, i) for i in range(CLIENTS, CLIENTS + 50)]
        await asyncio.gather(*(asyncio.wait_for(r.welcomed.wait(), 20) for r in more))
        for reader in more:
            assert reader.transport is not None
            reader.transport.abort()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        await asyncio.gather(*(asyncio.wait_for(r.closed, 10) for r in stay))
        assert code == 0, log.read_text()[-3000:]
        assert [GOODBYE in r.tail for r in stay] == [True] * len(stay)
        assert "Traceback" not in log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
