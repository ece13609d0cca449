"""Rate limits with an injected clock: no sleeping, any time we like."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gochat.ratelimit import (
    ConnectionCounter,
    GuessLimiter,
    MessageLimiter,
    SlidingWindow,
    Verdict,
    ip_key,
    wait_phrase,
)


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


def test_refusals_answered_once_a_second_then_flood_disconnect():
    """Refused lines get the wait at most once a second; past factor x limit: disconnect."""
    limiter = MessageLimiter.create(5, 10.0, flood_factor=2)
    verdicts = [limiter.check(0.0)[0] for _ in range(15)]
    assert verdicts[:5] == [Verdict.SEND] * 5
    assert verdicts[5] is Verdict.REFUSE_WITH_NOTICE
    assert verdicts[6:15] == [Verdict.REFUSE_SILENTLY] * 9  # 10 refused: a paste, not a flood
    assert limiter.check(0.5)[0] is Verdict.DISCONNECT  # the 11th refusal in the window


def test_refused_lines_are_answered_again_after_a_second():
    """While limited, a user typing slowly gets the wait as the answer to each line."""
    limiter = MessageLimiter.create(1, 10.0, flood_factor=20)
    assert limiter.check(0.0) == (Verdict.SEND, 0)
    assert limiter.check(1.0) == (Verdict.REFUSE_WITH_NOTICE, 9)
    assert limiter.check(1.5) == (Verdict.REFUSE_SILENTLY, 9)
    assert limiter.check(2.0) == (Verdict.REFUSE_WITH_NOTICE, 8)
    assert limiter.check(9.5) == (Verdict.REFUSE_WITH_NOTICE, 1)


def test_flood_count_starts_again_each_window():
    """Refusals spread over many windows never add up to a flood."""
    limiter = MessageLimiter.create(1, 10.0, flood_factor=2)
    for start in range(0, 200, 10):
        assert limiter.check(float(start))[0] is Verdict.SEND
        verdicts = {limiter.check(float(start + i))[0] for i in range(1, 3)}
        assert Verdict.DISCONNECT not in verdicts


def test_refund_gives_the_charge_back():
    """A refused command's charge is returned: the budget is as if it never ran."""
    limiter = MessageLimiter.create(2, 10.0, flood_factor=20)
    for _ in range(10):
        assert limiter.check(0.0)[0] is Verdict.SEND
        limiter.refund()
    assert limiter.check(0.0)[0] is Verdict.SEND
    assert limiter.check(0.0)[0] is Verdict.SEND
    assert limiter.check(0.0)[0] is Verdict.REFUSE_WITH_NOTICE


def test_wait_phrase_says_second_or_seconds():
    """'Wait 1 second.', never 'Wait 1 seconds.'; never 'Wait 0'."""
    assert wait_phrase(0.2) == "Wait 1 second."
    assert wait_phrase(1.0) == "Wait 1 second."
    assert wait_phrase(1.01) == "Wait 2 seconds."
    assert wait_phrase(9.4) == "Wait 10 seconds."


def test_limit_resets_after_the_window():
    """After the window passes, messages flow again and the notice can repeat."""
    limiter = MessageLimiter.create(2, 10.0, flood_factor=15)
    assert limiter.check(0.0)[0] is Verdict.SEND
    assert limiter.check(0.0)[0] is Verdict.SEND
    verdict, wait = limiter.check(1.0)
    assert verdict is Verdict.REFUSE_WITH_NOTICE and wait == 9
    assert limiter.check(10.0)[0] is Verdict.SEND
    assert limiter.check(10.0)[0] is Verdict.SEND
    assert limiter.check(10.5)[0] is Verdict.REFUSE_WITH_NOTICE


def test_guesses_limited_per_source_and_per_target_across_connections():
    """5 failures per (lobby, IP) and 20 per lobby a window; a right guess costs nothing."""
    guesses = GuessLimiter(per_source=5, per_target=20, window=60.0)
    for _ in range(5):
        assert guesses.try_attempt("vault", "10.0.0.1", 0.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.1", 1.0) == 59.0
    assert guesses.try_attempt("den", "10.0.0.1", 1.0) == 0.0  # another lobby: its own count
    for source in range(2, 5):  # three more addresses, five failures each: 20 in all
        for _ in range(5):
            assert guesses.try_attempt("vault", f"10.0.0.{source}", 2.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.9", 3.0) == 57.0  # the lobby's own cap
    assert guesses.try_attempt("vault", "10.0.0.9", 60.0) == 0.0
    guesses.succeeded("vault", "10.0.0.9")
    assert guesses.try_attempt("vault", "10.0.0.9", 60.0) == 0.0


def test_guess_windows_are_forgotten():
    """Windows with no recent attempt are dropped: a spray leaves nothing behind."""
    guesses = GuessLimiter(per_source=5, per_target=1000, window=60.0)
    for i in range(500):
        guesses.try_attempt(f"lobby{i % 7}", f"10.0.{i // 250}.{i % 250}", 0.0)
    assert len(guesses) == 507
    guesses.try_attempt("vault", "10.9.9.9", 61.0)
    assert len(guesses) == 2


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


# --- mutation-testing follow-ups (scripts/mutation) ---------------------------------


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 6),
    window=st.integers(1, 30),
    gaps=st.lists(st.integers(0, 12), min_size=1, max_size=60),
)
def test_the_wait_is_exact(limit, window, gaps):
    """A refused event is told the wait: allowed after exactly that long, not a moment before.

    Also: an event is refused only when `limit` events were accepted within the last
    window (the limiter never refuses what the rule allows). Whole-second times keep
    the arithmetic exact.
    """
    sw = SlidingWindow(limit, float(window))
    now = 0
    accepted: list[int] = []
    for gap in gaps:
        now += gap
        wait = sw.try_acquire(float(now))
        recent = [t for t in accepted if t > now - window]
        if wait == 0.0:
            assert len(recent) < limit
            accepted.append(now)
        else:
            assert len(recent) >= limit
            assert wait == sorted(recent)[-limit] + window - now
            assert sw.wait_time(now + wait) == 0.0
            assert sw.wait_time(now + wait - 0.5) > 0.0


def test_a_window_of_one():
    """GOCHAT_RATE_MESSAGES=1: one event per window, the next exactly a window later."""
    sw = SlidingWindow(1, 10.0)
    assert sw.try_acquire(0.0) == 0.0
    assert sw.try_acquire(3.0) == 7.0
    assert sw.try_acquire(10.0) == 0.0
    assert sw.try_acquire(19.0) == 1.0


def test_an_idle_window_is_one_whose_last_event_is_a_window_old():
    sw = SlidingWindow(3, 10.0)
    assert sw.idle(0.0)
    for t in (0.0, 1.0, 5.0):
        sw.try_acquire(t)
    assert not sw.idle(14.0)  # the event at 5.0 still counts until 15.0
    assert sw.idle(15.0)


def test_refusals_a_window_apart_are_counted_afresh():
    """The flood count restarts a full window after the first refusal, not later."""
    limiter = MessageLimiter.create(2, 10.0, flood_factor=1)  # > 2 refusals in a window: flood
    assert limiter.check(0.0)[0] is Verdict.SEND
    assert limiter.check(0.0)[0] is Verdict.SEND
    assert limiter.check(1.0)[0] is Verdict.REFUSE_WITH_NOTICE  # the window's first refusal
    assert limiter.check(10.0)[0] is Verdict.SEND
    assert limiter.check(10.0)[0] is Verdict.SEND
    assert limiter.check(11.0)[0] is Verdict.REFUSE_WITH_NOTICE  # 10 s later: a new count
    assert limiter.check(11.0)[0] is Verdict.REFUSE_SILENTLY
    assert limiter.check(11.0)[0] is Verdict.DISCONNECT  # the third in this window


def test_a_sent_line_waits_nothing():
    limiter = MessageLimiter.create(3, 10.0, flood_factor=2)
    assert limiter.check(0.0) == (Verdict.SEND, 0)


def test_guess_limits_hold_with_a_limit_of_one():
    """One wrong password per source, two per lobby; the wait names the oldest failure."""
    guesses = GuessLimiter(per_source=1, per_target=2, window=60.0)
    assert guesses.try_attempt("vault", "10.0.0.1", 0.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.1", 10.0) == 50.0
    assert guesses.try_attempt("vault", "10.0.0.2", 20.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.3", 30.0) == 30.0  # the lobby's cap
    assert guesses.try_attempt("vault", "10.0.0.1", 60.0) == 0.0


def test_right_passwords_never_count():
    """A member who knows the password can join as often as they like."""
    guesses = GuessLimiter(per_source=2, per_target=3, window=60.0)
    for i in range(10):
        assert guesses.try_attempt("vault", "10.0.0.1", float(i)) == 0.0
        guesses.succeeded("vault", "10.0.0.1")
    assert guesses.try_attempt("vault", "10.0.0.1", 10.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.1", 10.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.1", 10.0) == 60.0  # two wrong: wait


def test_recent_failures_survive_the_sweep():
    """Forgetting idle windows never forgets failures that still count."""
    guesses = GuessLimiter(per_source=3, per_target=100, window=60.0)
    guesses.try_attempt("other", "10.0.0.9", 0.0)  # the sweep runs at 0, then from 60 on
    for t in (1.0, 2.0, 50.0):
        assert guesses.try_attempt("vault", "10.0.0.1", t) == 0.0
    # At 65 the failures at 1 and 2 have aged out, the one at 50 has not: two more, no third.
    assert guesses.try_attempt("vault", "10.0.0.1", 65.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.1", 65.0) == 0.0
    assert guesses.try_attempt("vault", "10.0.0.1", 65.0) == 45.0


def test_guessing_is_forgotten_a_window_after_it_stops():
    """A window after the last attempt, nothing of the earlier guessing is held."""
    guesses = GuessLimiter(per_source=5, per_target=100, window=60.0)
    guesses.try_attempt("vault", "10.0.0.1", 0.0)
    guesses.try_attempt("den", "10.0.0.2", 0.0)
    assert len(guesses) == 4
    guesses.try_attempt("attic", "10.0.0.3", 60.0)
    assert len(guesses) == 2


def test_ipv6_with_a_zone_is_keyed_by_its_64():
    """A link-local peer ('fe80::1%eth0') is counted under its /64 like any IPv6 address."""
    assert ip_key("fe80::1%eth0") == ip_key("fe80::2%eth0") == "fe80::/64"
    assert ip_key("not an address") == "not an address"


def test_connection_counter_counts_each_connection():
    """Releasing one of two connections from an address leaves the other counted."""
    counter = ConnectionCounter(per_ip_cap=2, total_cap=0)
    assert counter.acquire("a") is None
    assert counter.acquire("a") is None
    assert counter.count("a") == 2 and counter.total == 2
    counter.release("a")
    assert counter.count("a") == 1 and counter.total == 1
    assert counter.acquire("a") is None
    assert counter.acquire("a") == "ip"
    assert counter.count("b") == 0


def test_connection_counter_zero_caps_mean_unlimited():
    counter = ConnectionCounter(per_ip_cap=0, total_cap=0)
    assert all(counter.acquire("a") is None for _ in range(1000))
    assert counter.total == 1000 and counter.count("a") == 1000 and counter.keys == 1


def test_connection_counter_total_cap_is_exact():
    """total_cap=3 admits exactly three connections, whatever their addresses."""
    counter = ConnectionCounter(per_ip_cap=0, total_cap=3)
    assert [counter.acquire(k) for k in "abcd"] == [None, None, None, "total"]
    counter.release("a")
    assert counter.acquire("d") is None
    assert counter.total == 3


def test_releasing_more_than_was_acquired_stays_at_zero():
    counter = ConnectionCounter(per_ip_cap=2, total_cap=2)
    counter.release("a")
    assert counter.total == 0 and counter.keys == 0
    assert counter.acquire("a") is None
    assert counter.acquire("b") is None
    assert counter.acquire("c") == "total"
