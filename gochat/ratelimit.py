"""Rate limits as pure objects: they are told the time, they never read a clock.

That keeps them testable without sleeping (tests pass any `now`) and keeps the
policy in one place: the session asks, the limiter answers.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from dataclasses import dataclass
from enum import Enum


class SlidingWindow:
    """At most `limit` events in any `window` seconds; `limit == 0` means no limit."""

    __slots__ = ("_stamps", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque(maxlen=limit or 1)

    def wait_time(self, now: float) -> float:
        """Seconds until one more event is allowed (0.0 = allowed now)."""
        if self.limit == 0 or len(self._stamps) < self.limit:
            return 0.0
        return max(0.0, self._stamps[0] + self.window - now)

    def try_acquire(self, now: float) -> float:
        """Record an event if allowed and return 0.0, else return the wait in seconds."""
        wait = self.wait_time(now)
        if wait == 0.0 and self.limit:
            self._stamps.append(now)
        return wait


class Verdict(Enum):
    """What the session does with a message line."""

    SEND = "send"
    REFUSE_WITH_NOTICE = "notice"  # refused; tell the user once per window
    REFUSE_SILENTLY = "silent"  # refused; already told, stay quiet
    DISCONNECT = "disconnect"  # kept flooding past the hard threshold


@dataclass(slots=True)
class MessageLimiter:
    """The per-user message budget plus the flood policy on top of it.

    A refused sender is told once per window (not once per line, which would
    let a flooder amplify its own traffic); one that keeps sending past
    `flood_lines` refusals within a window is disconnected.
    """

    window: SlidingWindow
    flood_lines: int
    _refused: int = 0
    _quiet_until: float = 0.0

    @classmethod
    def create(cls, limit: int, window: float, flood_lines: int) -> MessageLimiter:
        return cls(SlidingWindow(limit, window), flood_lines)

    def check(self, now: float) -> tuple[Verdict, int]:
        """Judge one message at `now`: (verdict, whole seconds to wait)."""
        wait = self.window.try_acquire(now)
        if wait == 0.0:
            if now >= self._quiet_until:
                self._refused = 0
            return Verdict.SEND, 0
        self._refused += 1
        seconds = max(1, math.ceil(wait))
        if self._refused > self.flood_lines:
            return Verdict.DISCONNECT, seconds
        if now >= self._quiet_until:
            self._quiet_until = now + wait
            return Verdict.REFUSE_WITH_NOTICE, seconds
        return Verdict.REFUSE_SILENTLY, seconds


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
