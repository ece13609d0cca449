"""gochat.stalls without sockets: a reader whose waiting bytes never go down is dropped
at the timeout, one that takes anything is not, and idle connections are not even asked."""

from __future__ import annotations

from gochat.stalls import StallWatch


class Reader:
    """A connection as the watch sees it: output handed to it, bytes it has taken."""

    def __init__(self) -> None:
        self.written = 0
        self.waiting = 0
        self.asked = 0

    def hand(self, n: int) -> None:
        self.written += n
        self.waiting += n

    def take(self, n: int) -> None:
        self.waiting -= n

    def progress(self) -> tuple[int, int]:
        self.asked += 1
        handed, self.written = self.written, 0
        return self.waiting, handed


def test_a_stopped_reader_is_found_at_the_timeout_and_not_before() -> None:
    watch = StallWatch(timeout=15, least=1)  # every byte worth a look, for this test
    stopped = Reader()
    stopped.hand(1000)
    assert watch.look([stopped], now=0) == []
    stopped.hand(500)  # more output, nothing taken: still no progress
    assert watch.look([stopped], now=14.9) == []
    assert watch.look([stopped], now=15) == [stopped]


def test_a_slow_reader_that_takes_anything_is_never_found() -> None:
    watch = StallWatch(timeout=15, least=1)
    slow = Reader()
    for second in range(0, 120, 5):
        slow.hand(10_000)
        slow.take(9_000)  # always behind, more and more so, but reading
        assert watch.look([slow], now=second) == []
    assert slow.waiting == 24 * 1000  # further behind at every look


def test_a_reader_that_catches_up_is_forgotten() -> None:
    watch = StallWatch(timeout=15, least=1)
    reader = Reader()
    reader.hand(1000)
    watch.look([reader], now=0)
    reader.take(1000)
    assert watch.look([reader], now=20) == [] and not watch.suspects


def test_idle_connections_are_not_asked() -> None:
    """No output since the last look and nothing waiting then: one attribute read."""
    watch = StallWatch(timeout=15)
    idle = [Reader() for _ in range(100)]
    busy = Reader()
    busy.hand(10_000)
    watch.look([*idle, busy], now=0)
    assert sum(r.asked for r in idle) == 0 and busy.asked == 1


def test_small_output_adds_up_until_it_is_worth_asking() -> None:
    """A presence line a second costs no ioctl per member per look; a reader that stopped
    is still found once what it was handed passes LEAST bytes."""
    watch = StallWatch(timeout=15, least=4096)
    stopped = Reader()
    second = 0
    while not stopped.asked:
        stopped.hand(100)
        assert watch.look([stopped], now=second) == []
        second += 1
    assert second == 41  # 41 x 100 bytes: the first look past 4096
    while watch.look([stopped], now=second) == []:
        stopped.hand(100)
        second += 1
    assert second - 40 >= 15  # found a full stall timeout after it was first asked
