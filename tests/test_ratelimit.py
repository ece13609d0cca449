"""Rate limits with an injected clock: no sleeping, any time we like."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gochat.ratelimit import ConnectionCounter, MessageLimiter, SlidingWindow, Verdict, ip_key


def test_five_per_ten_seconds():
    """The sixth message inside ten seconds waits for the oldest to age out."""
    window = SlidingWindow(5, 10.0)
    for t in range(5):
        assert window.try_acquire(float(t)) == 0.0
    assert window.try_acquire(5.0) == 5.0
    assert window.try_acquire(10.0) == 0.0


def test_zero_disables_the_limit():
    """GOCHAT_RATE_MESSAGES=0 means no limit at all."""
    window = SlidingWindow(0, 10.0)
    assert all(window.try_acquire(0.0) == 0.0 for _ in range(10_000))


def test_one_notice_per_window_then_flood_disconnect():
    """A refused sender is told once per window and dropped past the flood threshold."""
    limiter = MessageLimiter.create(5, 10.0, flood_lines=3)
    verdicts = [limiter.check(0.0)[0] for _ in range(9)]
    assert verdicts[:5] == [Verdict.SEND] * 5
    assert verdicts[5] is Verdict.REFUSE_WITH_NOTICE
    assert verdicts[6:8] == [Verdict.REFUSE_SILENTLY] * 2
    assert verdicts[8] is Verdict.DISCONNECT


def test_limit_resets_after_the_window():
    """After the window passes, messages flow again and the notice can repeat."""
    limiter = MessageLimiter.create(2, 10.0, flood_lines=30)
    assert limiter.check(0.0)[0] is Verdict.SEND
    assert limiter.check(0.0)[0] is Verdict.SEND
    verdict, wait = limiter.check(1.0)
    assert verdict is Verdict.REFUSE_WITH_NOTICE and wait == 9
    assert limiter.check(10.0)[0] is Verdict.SEND
    assert limiter.check(10.0)[0] is Verdict.SEND
    assert limiter.check(10.5)[0] is Verdict.REFUSE_WITH_NOTICE


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 10),
    window=st.floats(0.5, 20.0),
    gaps=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=200),
)
def test_never_more_than_limit_in_any_window(limit, window, gaps):
    """Whatever the arrival times, no window of that length holds more than `limit` sends."""
    sw = SlidingWindow(limit, window)
    now = 0.0
    accepted: list[float] = []
    for gap in gaps:
        now += gap
        if sw.try_acquire(now) == 0.0:
            accepted.append(now)
    for i, start in enumerate(accepted):
        inside = [t for t in accepted[i:] if t < start + window]
        assert len(inside) <= limit


def test_ipv6_counted_per_64():
    """Two addresses in one IPv6 /64 share a key; IPv4 and mapped IPv4 are per address."""
    assert ip_key("2001:db8::1") == ip_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert ip_key("2001:db8:0:1::1") != ip_key("2001:db8::1")
    assert ip_key("::ffff:127.0.0.1") == "127.0.0.1"
    assert ip_key("127.0.0.2") == "127.0.0.2"


def test_connection_counter_caps_and_forgets():
    """Per-IP and total caps refuse with a reason; released keys leave nothing behind."""
    counter = ConnectionCounter(per_ip_cap=2, total_cap=3)
    assert counter.acquire("a") is None
    assert counter.acquire("a") is None
    assert counter.acquire("a") == "ip"
    assert counter.acquire("b") is None
    assert counter.acquire("c") == "total"
    for key in ("a", "a", "b"):
        counter.release(key)
    assert counter.total == 0 and counter.keys == 0
