"""Scenario 1: fuzzing the wire with everything a hostile byte stream can hold.

tests/test_wire.py already checks that raw lines are split-invariant and that
one-shot decoded lines are clean. These properties go further: the whole
input pipeline (LineReader -> decode_line) under arbitrary splits, byte by
byte, with multi-byte characters cut across reads, every line-end mix, telnet
commands injected anywhere, oversize lines at any cap, and the last step an
honest user sees, the rendered bytes.
"""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gochat.events import ChatMessage, DirectMessage, LobbyInfo, LobbyList, TagNotice
from gochat.render import render
from gochat.wire import LineReader, LineTooLong, clean_text, decode_line, sniff_foreign

from .support import SERVER_ESCAPES, UNSAFE

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every escape-sequence family, 7-bit and 8-bit (raw C1 bytes and UTF-8 encoded
# C1), telnet pieces, line ends and broken UTF-8.
HOSTILE_FRAGMENTS = [
    b"\x1b[2J",  # CSI
    b"\x1b[38;5;196m",
    b"\x1b[?1049h",
    b"\x1b]0;pwned\x07",  # OSC title, BEL-terminated
    b"\x1b]52;c;ZXZpbA==\x1b\\",  # OSC 52 clipboard, ST-terminated
    b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    b"\x1bP+q544e\x1b\\",  # DCS
    b"\x1bX sos \x1b\\",  # SOS
    b"\x1b^ pm \x1b\\",  # PM
    b"\x1b_ apc \x1b\\",  # APC
    b"\x1b(0",  # nF (charset)
    b"\x1b7",  # Fp (save cursor)
    b"\x1bD",  # Fe (index)
    b"\x1bc",  # Fs (full reset)
    b"\x1b",
    b"\x9b2J",  # raw 8-bit CSI (invalid UTF-8 -> U+FFFD)
    b"\x9d0;t\x9c",
    "\x9b31m".encode(),  # UTF-8 encoded C1 CSI
    "\x9d52;c;x\x9c".encode(),
    "\x90q\x9c".encode(),
    b"\x00",
    b"\x07",
    b"\x08\x08\x08",
    b"\x7f",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\x00",
    b"\xff",
    b"\xff\xff",
    b"\xff\xfb\x01",
    b"\xff\xfd\x0a",
    b"\xff\xfe\x0d",
    b"\xff\xfa\x18\x00xterm\xff\xf0",
    b"\xff\xfa\x1f\n\r\xff\xff",
    b"\xff\xf0",
    b"\xff\xf4",
    b"\xc3",
    b"\xa9",
    b"\xe2\x80",
    b"\xf0\x9f\x91",
    b"\xed\xa0\x80",  # UTF-8 encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xc0\xaf",  # overlong
    "\u202e\u2066\u200e\u061c".encode(),
    "👩‍💻 日本語 é".encode(),
    b"\t",
    b"hello",
    b"/join ",
    b"x" * 50,
]

hostile_bytes = st.lists(
    st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.binary(max_size=16)),
    max_size=60,
).map(b"".join)


@st.composite
def chunked(draw: st.DrawFn, data_strategy: st.SearchStrategy[bytes] = hostile_bytes) -> tuple:
    data = draw(data_strategy)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


def pipeline(chunks: list[bytes], limit: int) -> list[str | LineTooLong]:
    """What the session sees: decoded lines and over-cap markers."""
    reader = LineReader(limit)
    out: list[str | LineTooLong] = []
    for chunk in chunks:
        for item in reader.feed(chunk):
            out.append(item if isinstance(item, LineTooLong) else decode_line(item))
        assert reader.buffered <= limit
    return out


def assert_safe_line(text: str, limit: int) -> None:
    assert "\x1b" not in text
    assert UNSAFE.search(text) is None, repr(text)
    assert len(text) <= limit  # U+FFFD stands for at least one byte


@FUZZ
@given(chunked(), st.sampled_from([1, 2, 7, 64, 512, 8192]))
@example((b"a\xe2\x80", [b"a\xe2", b"\x80"]), 8192)
def test_decoded_pipeline_split_invariant_and_safe(case: tuple, limit: int) -> None:
    """Hostile bytes, any split: never raises, same decoded lines, all clean and capped."""
    data, chunks = case
    whole = pipeline([data], limit)
    assert pipeline(chunks, limit) == whole
    assert pipeline([data[i : i + 1] for i in range(len(data))], limit) == whole
    for item in whole:
        if isinstance(item, LineTooLong):
            assert item.limit == limit
        else:
            assert_safe_line(item, limit)


@FUZZ
@given(st.binary(max_size=3000), st.integers(1, 40))
def test_random_bytes_in_random_chunks(data: bytes, step: int) -> None:
    """Uniformly random bytes in fixed-size reads give the one-shot result."""
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    assert pipeline(chunks, 256) == pipeline([data], 256)


line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00\x85\u2028\u2029"),
    max_size=40,
)


@FUZZ
@given(st.lists(line_text, min_size=1, max_size=8))
def test_multibyte_characters_split_at_every_byte(lines: list[str]) -> None:
    """A character cut between two reads decodes exactly as if it had arrived whole."""
    data = b"".join(line.encode() + b"\r\n" for line in lines)
    expected = [clean_text(line) for line in lines]
    for cut in range(len(data) + 1):
        assert pipeline([data[:cut], data[cut:]], 8192) == expected


plain_line = st.binary(max_size=20).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").replace(b"\xff", b"")
)


@FUZZ
@given(
    st.lists(
        st.tuples(plain_line, st.sampled_from([b"\n", b"\r\n", b"\r\x00", b"\r"])),
        min_size=1,
        max_size=15,
    ),
    st.data(),
)
def test_line_end_mixes(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    """LF, CRLF, CR NUL and lone CR in any mix each end exactly one line."""
    pairs = [list(p) for p in pairs]
    for here, after in itertools.pairwise(pairs):
        # A lone CR, then an empty line ended by LF, *is* CRLF: not a case of two line ends.
        if here[1] == b"\r" and after[0] == b"" and after[1] == b"\n":
            here[1] = b"\r\n"
    stream = b"".join(line + end for line, end in pairs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]
    reader = LineReader(8192)
    got = [item for chunk in chunks for item in reader.feed(chunk)]
    assert got == [line for line, _ in pairs]


telnet_command = st.one_of(
    st.tuples(st.integers(251, 254), st.integers(0, 255)).map(lambda t: bytes([255, *t])),
    st.integers(240, 249).map(lambda c: bytes([255, c])),
    st.binary(max_size=30).map(
        lambda b: b"\xff\xfa" + b.replace(b"\xff", b"\xff\xff") + b"\xff\xf0"
    ),
)


@FUZZ
@given(
    st.binary(max_size=80).map(lambda b: b.replace(b"\xff", b"")),
    st.lists(st.tuples(st.integers(0, 80), telnet_command), max_size=8),
    st.data(),
)
def test_telnet_commands_anywhere_are_invisible(
    text: bytes, inserts: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    """Telnet commands injected anywhere (even inside CR LF or a character) change nothing."""
    noisy = text
    for pos, command in sorted(inserts, reverse=True):
        pos = min(pos, len(text))
        noisy = noisy[:pos] + command + noisy[pos:]
    noisy += b"\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(noisy)), max_size=10)))
    chunks = [noisy[a:b] for a, b in itertools.pairwise([0, *cuts, len(noisy)])]
    reader = LineReader(8192)
    got = [item for chunk in chunks for item in reader.feed(chunk)]
    assert got == LineReader(8192).feed(text + b"\n")


@FUZZ
@given(st.integers(1, 300), st.integers(0, 700), st.data())
def test_oversize_line_one_marker_then_recovery(limit: int, size: int, data: st.DataObject) -> None:
    """Past the cap: exactly one marker, nothing of the long line, and the next line intact."""
    stream = b"y" * size + b"\r\nok\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]
    expected: list[object] = [LineTooLong(limit) if size > limit else b"y" * size]
    if limit >= 2:
        expected.append(b"ok")
    else:
        expected.append(LineTooLong(limit))
    reader = LineReader(limit)
    got = []
    for chunk in chunks:
        got.extend(reader.feed(chunk))
        assert reader.buffered <= limit
    assert got == expected


def _only_server_escapes(data: bytes, colour: bool) -> None:
    text = data.decode("utf-8")  # the server never sends invalid UTF-8
    if colour:
        text = SERVER_ESCAPES.sub("", text)
    assert "\x1b" not in text, repr(text)
    assert UNSAFE.search(text) is None, repr(text)
    # CR appears only as part of CR LF or as the ANSI "clear line" prefix.
    assert re.search(r"\r(?!\n)", text) is None or colour


@FUZZ
@given(hostile_bytes, st.booleans())
def test_what_an_honest_user_receives_is_safe(data: bytes, colour: bool) -> None:
    """Attacker bytes, decoded and rendered as a message, DM, tag or lobby listing, are inert."""
    text = decode_line(data.replace(b"\r", b"").replace(b"\n", b""))
    events = [
        ChatMessage("general", "mallory", "🙂", text, 0.0),
        ChatMessage("general", "mallory", "🙂", f"@alice {text}", 0.0, "tag", "alice"),
        DirectMessage("mallory", "🙂", "alice", text, 0.0),
        TagNotice("mallory", "general", text),
        LobbyList((LobbyInfo("evil", False, 1, "mallory", text, True),), "evil", True),
    ]
    for event in events:
        _only_server_escapes(render(event, colour), colour)


@FUZZ
@given(st.binary(max_size=64))
def test_sniff_foreign_never_raises(data: bytes) -> None:
    """Whatever the first read holds, sniffing answers one of four things."""
    assert sniff_foreign(data) in {None, "tls", "http", "ssh"}
