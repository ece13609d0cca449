"""Rate limits as pure objects: they are told the time, they never read a clock.

That keeps them testable without sleeping (tests pass any `now`) and keeps the
policy in one place: the front end asks, the limiter answers.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from enum import Enum


class SlidingWindow:
    """At most `limit` events in any `window` seconds; `limit == 0` means no limit.

    The times are a short list made on the first event, not a deque: a deque
    allocates a 64-slot block (about 760 bytes) however small its maxlen, and
    every connection has a window, so idle users paid for it. With a handful of
    stamps, dropping the oldest from the front of a list is as cheap.
    """

    __slots__ = ("_stamps", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._stamps: list[float] | None = None  # oldest first, at most `limit`

    def wait_time(self, now: float) -> float:
        """Seconds until one more event is allowed (0.0 = allowed now)."""
        stamps = self._stamps
        if self.limit == 0 or stamps is None or len(stamps) < self.limit:
            return 0.0
        return max(0.0, stamps[0] + self.window - now)

    def try_acquire(self, now: float) -> float:
        """Record an event if allowed and return 0.0, else return the wait in seconds."""
        wait = self.wait_time(now)
        if wait == 0.0 and self.limit:
            stamps = self._stamps
            if stamps is None:
                self._stamps = [now]
            else:
                if len(stamps) >= self.limit:
                    del stamps[0]
                stamps.append(now)
        return wait

    def idle(self, now: float) -> bool:
        """No event within the last window: this window can be forgotten."""
        stamps = self._stamps
        return not stamps or stamps[-1] + self.window <= now

    def refund(self) -> None:
        """Forget the newest event (it did not happen after all)."""
        if self._stamps:
            self._stamps.pop()


class Verdict(Enum):
    """What the front end does with a line that would spend the budget."""

    SEND = "send"
    REFUSE_WITH_NOTICE = "notice"  # refused; tell the user how long to wait
    REFUSE_SILENTLY = "silent"  # refused; told less than NOTICE_INTERVAL ago, stay quiet
    DISCONNECT = "disconnect"  # kept sending far past the limit: a flood, not a paste


NOTICE_INTERVAL = 1.0
"""Seconds between two "Wait N seconds" answers to one refused sender."""


@dataclass(slots=True)
class MessageLimiter:
    """The per-user message budget plus the flood policy on top of it.

    A refused line gets the wait as an answer, at most once per NOTICE_INTERVAL
    (an answer per line would let a flooder amplify its own traffic). A paste is
    not an attack: its excess is refused, not punished. Only a sender that goes
    on far past the budget, more than `flood_lines` refusals within one window,
    is disconnected.

    A line is charged when it is checked; `refund` gives the charge back when
    the command then fails, so only what reaches other people spends the budget.
    """

    window: SlidingWindow
    flood_lines: int
    _refused: int = 0
    _refusing_since: float = -math.inf
    _next_notice: float = -math.inf

    @classmethod
    def create(cls, limit: int, window: float, flood_factor: int) -> MessageLimiter:
        """`limit` lines per `window`; a flood is `flood_factor` times `limit` refusals."""
        return cls(SlidingWindow(limit, window), flood_factor * limit)

    def check(self, now: float) -> tuple[Verdict, int]:
        """Judge one line at `now`: (verdict, whole seconds to wait)."""
        wait = self.window.try_acquire(now)
        if wait == 0.0:
            return Verdict.SEND, 0
        if now - self._refusing_since >= self.window.window:
            self._refused, self._refusing_since = 0, now
        self._refused += 1
        seconds = max(1, math.ceil(wait))
        if self._refused > self.flood_lines:
            return Verdict.DISCONNECT, seconds
        if now >= self._next_notice:
            self._next_notice = now + NOTICE_INTERVAL
            return Verdict.REFUSE_WITH_NOTICE, seconds
        return Verdict.REFUSE_SILENTLY, seconds

    def refund(self) -> None:
        """Give back the charge of the last line sent: its command was refused."""
        self.window.refund()


def wait_phrase(seconds: float) -> str:
    """'Wait 1 second.', 'Wait 7 seconds.': whole seconds, rounded up, never 0."""
    whole = max(1, math.ceil(seconds))
    return f"Wait {whole} second{'s' if whole != 1 else ''}."


def ip_key(address: str) -> str:
    """The key connections are counted under: the address, or its /64 for IPv6.

    One IPv6 customer usually holds a whole /64, so counting single addresses
    would give them 2**64 slots.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class ConnectionCounter:
    """Connections per IP key and in total, with caps (0 = unlimited).

    Keys whose count drops to zero are deleted, so a scan from many addresses
    leaves nothing behind.
    """

    __slots__ = ("_per_key", "per_ip_cap", "total", "total_cap")

    def __init__(self, per_ip_cap: int, total_cap: int) -> None:
        self.per_ip_cap = per_ip_cap
        self.total_cap = total_cap
        self.total = 0
        self._per_key: dict[str, int] = {}

    def acquire(self, key: str) -> str | None:
        """Count a new connection; return None, or why it is refused ("total" / "ip")."""
        if self.total_cap and self.total >= self.total_cap:
            return "total"
        count = self._per_key.get(key, 0)
        if self.per_ip_cap and count >= self.per_ip_cap:
            return "ip"
        self._per_key[key] = count + 1
        self.total += 1
        return None

    def release(self, key: str) -> None:
        count = self._per_key.get(key, 0)
        if count <= 1:
            self._per_key.pop(key, None)
        else:
            self._per_key[key] = count - 1
        self.total = max(0, self.total - 1)

    def count(self, key: str) -> int:
        return self._per_key.get(key, 0)

    @property
    def keys(self) -> int:
        """How many distinct IP keys hold connections (leak check for tests)."""
        return len(self._per_key)


class GuessLimiter:
    """Password attempts per (target, IP key) and per target, across connections.

    Counting per connection lets a guesser reconnect and go on at once. Each
    attempt is charged before the slow check runs (so parallel connections
    cannot all slip through while bcrypt works) and refunded when it succeeds:
    in effect, failures are what is counted. Windows that empty are forgotten,
    so memory follows recent guessing, not every address ever seen.
    """

    __slots__ = ("_by_source", "_by_target", "_next_sweep", "per_source", "per_target", "window")

    def __init__(self, per_source: int, per_target: int, window: float) -> None:
        self.per_source = per_source
        self.per_target = per_target
        self.window = window
        self._by_source: dict[tuple[str, str], SlidingWindow] = {}
        self._by_target: dict[str, SlidingWindow] = {}
        self._next_sweep = -math.inf

    def try_attempt(self, target: str, source: str, now: float) -> float:
        """Charge one attempt and return 0.0, or return the seconds to wait (nothing charged)."""
        self._forget_idle(now)
        by_source = self._by_source.get((target, source))
        by_target = self._by_target.get(target)
        wait = max(
            by_source.wait_time(now) if by_source else 0.0,
            by_target.wait_time(now) if by_target else 0.0,
        )
        if wait:
            return wait
        if by_source is None:
            by_source = self._by_source[target, source] = SlidingWindow(
                self.per_source, self.window
            )
        if by_target is None:
            by_target = self._by_target[target] = SlidingWindow(self.per_target, self.window)
        by_source.try_acquire(now)
        by_target.try_acquire(now)
        return 0.0

    def succeeded(self, target: str, source: str) -> None:
        """The attempt was right: it does not count against anyone."""
        for window in (self._by_source.get((target, source)), self._by_target.get(target)):
            if window is not None:
                window.refund()

    def _forget_idle(self, now: float) -> None:
        """Drop windows with no attempt left in them, at most once per window."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        for source in [key for key, w in self._by_source.items() if w.idle(now)]:
            del self._by_source[source]
        for target in [key for key, w in self._by_target.items() if w.idle(now)]:
            del self._by_target[target]

    def __len__(self) -> int:
        """Windows held (a leak check for tests)."""
        return len(self._by_source) + len(self._by_target)
