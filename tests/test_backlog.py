"""Flow control without sockets (gochat.backlog): a slow reader loses its oldest chat
lines, never a DM or an answer, and is told how many it missed, per lobby; the budget
over all readers trims the largest backlogs first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gochat.backlog import TRIM_TO, Backlog, OutputBudget


def said(lobby: str, count: int) -> bytes:
    return f"[{count} skipped in {lobby}]".encode()


def line(n: int, size: int = 100) -> bytes:
    return f"{n:05d}".encode().ljust(size, b".")


def test_under_the_soft_cap_nothing_is_skipped() -> None:
    backlog = Backlog()
    for n in range(10):
        backlog.add(line(n), "general", soft_cap=1000)
    assert backlog.size == 1000 and not backlog.skipped
    assert backlog.take(10_000, said) == [line(n) for n in range(10)]
    assert backlog.empty and backlog.size == 0


def test_past_the_soft_cap_the_oldest_chat_lines_go_and_are_counted() -> None:
    backlog = Backlog()
    for n in range(11):  # the eleventh passes 1000 bytes
        backlog.add(line(n), "general", soft_cap=1000)
    kept = int(1000 * TRIM_TO) // 100  # trimmed to 750 bytes: the newest 7 lines
    assert backlog.skipped == {"general": 11 - kept}
    out = backlog.take(10_000, said)
    assert out[0] == said("general", 11 - kept)
    assert out[1:] == [line(n) for n in range(11 - kept, 11)]
    assert not backlog.skipped


def test_dms_and_answers_are_never_skipped() -> None:
    """Lines without a lobby (a DM, a notice, a command's answer) stay, in order."""
    backlog = Backlog()
    backlog.add(b"dm-1", None, soft_cap=300)
    for n in range(5):
        backlog.add(line(n), "general", soft_cap=300)
    backlog.add(b"dm-2", None, soft_cap=300)
    assert backlog.kept == 8
    out = backlog.take(10_000, said)
    assert out[0].startswith(b"[") and b"dm-1" in out and b"dm-2" in out
    assert out.index(b"dm-1") < out.index(b"dm-2")
    assert backlog.size == backlog.kept == 0


def test_skips_are_told_per_lobby() -> None:
    backlog = Backlog()
    for n in range(20):
        backlog.add(line(n), "general" if n % 2 else "dev", soft_cap=1000)
    out = backlog.take(10_000, said)
    told = [o for o in out if o.startswith(b"[")]
    assert len(told) == 2 and sum(int(o.split()[0][1:]) for o in told) == 20 - len(out) + 2


def test_take_hands_about_room_bytes_and_at_least_one_line() -> None:
    backlog = Backlog()
    for n in range(10):
        backlog.add(line(n), "general", soft_cap=10_000)
    assert backlog.take(250, said) == [line(0), line(1), line(2)]  # reaches 250 with the third
    assert backlog.take(0, said) == [line(3)]  # at least one: the drain always moves
    assert len(backlog) == 6 and backlog.size == 600


def test_the_budget_trims_the_largest_backlogs_first() -> None:
    budget = OutputBudget(limit=2000)
    big, small = Backlog(budget), Backlog(budget)
    for n in range(15):
        big.add(line(n), "general", soft_cap=100_000)
    for n in range(5):
        small.add(line(n), "general", soft_cap=100_000)
    assert budget.total == 2000 and not budget.over
    small.add(line(5), "general", soft_cap=100_000)
    assert budget.over
    freed = budget.trim()
    assert budget.total <= int(2000 * TRIM_TO) and freed == 2100 - budget.total
    assert big.skipped and not small.skipped  # the largest paid first
    big.close()
    small.close()
    assert budget.total == 0 and not budget.backlogs


@given(
    st.lists(st.tuples(st.integers(1, 400), st.sampled_from(["a", "b", None])), max_size=200),
    st.integers(200, 5000),
)
def test_nothing_but_chat_lines_is_ever_lost(lines: list[tuple[int, str | None]], cap: int) -> None:
    """Whatever arrives: every line without a lobby comes out, in order; every chat line
    comes out or is counted as skipped; the chat lines waiting stay within the cap."""
    backlog = Backlog()
    for n, (size, lobby) in enumerate(lines):
        backlog.add(line(n, size + 5), lobby, soft_cap=cap)
        assert backlog.size - backlog.kept <= cap
    out: list[bytes] = []
    told: dict[str, int] = {}

    def count(lobby: str, skipped: int) -> bytes:
        told[lobby] = told.get(lobby, 0) + skipped
        return b"#"

    while not backlog.empty:
        out.extend(backlog.take(300, count))
    numbers = [int(o[:5]) for o in out if o != b"#"]
    assert numbers == sorted(numbers)
    kept = [n for n, (_, lobby) in enumerate(lines) if lobby is None]
    assert [n for n in numbers if lines[n][1] is None] == kept
    for lobby in ("a", "b"):
        sent = sum(1 for _, where in lines if where == lobby)
        arrived = sum(1 for n in numbers if lines[n][1] == lobby)
        assert arrived + told.get(lobby, 0) == sent
