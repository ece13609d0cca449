"""Tests for gochat.wire: line splitting, telnet stripping, text hygiene, sniffing."""

from __future__ import annotations

import itertools
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat.wire import LineReader, LineTooLong, clean_text, decode_line, encode, sniff_foreign

BIDI = {
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
}


def feed_all(reader: LineReader, chunks: list[bytes]) -> list[bytes | LineTooLong]:
    out: list[bytes | LineTooLong] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


def bytewise(data: bytes, limit: int = 8192) -> list[bytes | LineTooLong]:
    reader = LineReader(limit)
    return feed_all(reader, [data[i : i + 1] for i in range(len(data))])


# --- line endings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"a\nb\n", b"a\r\nb\n", b"a\rb\n", b"a\r\x00b\n", b"a\r\nb\r\n", b"a\rb\r"],
    ids=["lf", "crlf", "lone-cr", "cr-nul", "crlf-both", "cr-both"],
)
def test_line_end_variants(data: bytes) -> None:
    """Every line-end form (LF, CRLF, lone CR, CR NUL) ends a line exactly once."""
    assert LineReader().feed(data) == [b"a", b"b"]
    assert bytewise(data) == [b"a", b"b"]


def test_blank_lines_are_kept() -> None:
    """Consecutive LFs are empty lines, not swallowed."""
    assert LineReader().feed(b"\n\n") == [b"", b""]
    assert LineReader().feed(b"\r\n\r\n") == [b"", b""]
    assert LineReader().feed(b"\r\r") == [b"", b""]


def test_cr_then_lf_in_next_feed() -> None:
    """A CR at the end of one feed and its LF at the start of the next make one line end."""
    reader = LineReader()
    assert reader.feed(b"hello\r") == [b"hello"]
    assert reader.feed(b"\nworld\n") == [b"world"]


def test_cr_then_nul_in_next_feed() -> None:
    """A CR NUL split across feeds is one line end, the NUL is swallowed."""
    reader = LineReader()
    assert reader.feed(b"hello\r") == [b"hello"]
    assert reader.feed(b"\x00") == []
    assert reader.feed(b"x\n") == [b"x"]


def test_cr_swallows_only_one_lf() -> None:
    """CR LF LF is one line end followed by an empty line."""
    assert LineReader().feed(b"a\r\n\nb\n") == [b"a", b"", b"b"]


def test_partial_line_is_buffered() -> None:
    """An unterminated line is held until its line end arrives."""
    reader = LineReader()
    assert reader.feed(b"hel") == []
    assert reader.buffered == 3
    assert reader.feed(b"lo\nwo") == [b"hello"]
    assert reader.buffered == 2


def test_lines_are_not_decoded() -> None:
    """feed returns raw bytes; UTF-8 is left for decode_line."""
    assert LineReader().feed("héllo\n".encode()) == ["héllo".encode()]


# --- telnet ----------------------------------------------------------------------


def test_iac_negotiation_removed() -> None:
    """IAC WILL/WONT/DO/DONT <opt> are removed as three bytes."""
    data = b"a\xff\xfb\x01b\xff\xfc\x03c\xff\xfd\x18d\xff\xfe\x22e\n"
    assert LineReader().feed(data) == [b"abcde"]


def test_iac_two_byte_commands_removed() -> None:
    """IAC NOP / GA / AYT / IP are removed as two bytes."""
    assert LineReader().feed(b"a\xff\xf1b\xff\xf9c\xff\xf6d\xff\xf4e\n") == [b"abcde"]


def test_iac_iac_is_literal_ff() -> None:
    """IAC IAC is an escaped 0xFF data byte, kept in the line."""
    assert LineReader().feed(b"a\xff\xffb\n") == [b"a\xffb"]
    assert decode_line(b"a\xffb") == "a\ufffdb"


def test_iac_iac_then_command_byte_is_data() -> None:
    """The byte after IAC IAC is plain data, not a telnet command."""
    assert LineReader().feed(b"\xff\xff\xfd\n") == [b"\xff\xfd"]


def test_iac_option_lf_does_not_end_line() -> None:
    """IAC DO 10 and IAC WILL 13 carry LF/CR as option bytes, which must not end a line."""
    assert LineReader().feed(b"ab\xff\xfd\x0acd\n") == [b"abcd"]
    assert LineReader().feed(b"ab\xff\xfb\x0dcd\n") == [b"abcd"]
    assert bytewise(b"ab\xff\xfd\x0acd\xff\xfb\x0d\n") == [b"abcd"]


def test_subnegotiation_removed_with_lf_inside() -> None:
    """IAC SB ... IAC SE is removed whole, even with LF, CR and IAC IAC inside."""
    data = b"ab\xff\xfa\x18\x00\n\r\xff\xff\x01\xff\xf0cd\n"
    assert LineReader().feed(data) == [b"abcd"]
    assert bytewise(data) == [b"abcd"]


def test_iac_split_across_feeds() -> None:
    """Telnet state carries over when a sequence is split at any byte."""
    data = b"ab\xff\xfd\x0acd\xff\xfa\x18\x01\n\xff\xf0ef\xff\xf1gh\xff\xffij\n"
    expected = [b"abcdefgh\xffij"]
    for cut in range(1, len(data)):
        assert feed_all(LineReader(), [data[:cut], data[cut:]]) == expected, cut


def test_long_subnegotiation_is_not_buffered() -> None:
    """A never-closed SB is discarded as it comes, without growing the buffer."""
    reader = LineReader(64)
    assert reader.feed(b"hi\xff\xfa\x18") == []
    for _ in range(100):
        assert reader.feed(b"x" * 1000 + b"\n") == []
    assert reader.buffered == 2
    assert reader.feed(b"\xff\xf0 there\n") == [b"hi there"]


def test_cr_then_telnet_command_then_lf() -> None:
    """Telnet commands are invisible to line splitting, so CR IAC NOP LF is one line end."""
    assert feed_all(LineReader(), [b"a\r", b"\xff\xf1", b"\nb\n"]) == [b"a", b"b"]


# --- cap -------------------------------------------------------------------------


def test_overlong_line_yields_one_marker_then_normal_line() -> None:
    """A line over the cap gives exactly one LineTooLong; the next line is normal."""
    data = b"x" * 50 + b"\nok\n"
    assert LineReader(16).feed(data) == [LineTooLong(16), b"ok"]
    assert bytewise(data, 16) == [LineTooLong(16), b"ok"]


def test_overlong_marker_emitted_before_newline() -> None:
    """LineTooLong comes as soon as the cap is passed, not at the line end."""
    reader = LineReader(16)
    assert reader.feed(b"x" * 16) == []
    assert reader.feed(b"x") == [LineTooLong(16)]
    assert reader.feed(b"x" * 100) == []
    assert reader.feed(b"\r") == []
    assert reader.feed(b"\nnext\n") == [b"next"]


def test_exactly_cap_line_accepted() -> None:
    """A line of exactly max_line_bytes is delivered whole."""
    line = b"y" * 16
    assert LineReader(16).feed(line + b"\r\n") == [line]
    assert bytewise(line + b"\r\n", 16) == [line]


def test_cap_counts_content_not_terminator_or_telnet() -> None:
    """Telnet bytes and the line end do not count against the cap."""
    assert LineReader(4).feed(b"ab\xff\xfb\x01cd\r\n") == [b"abcd"]


def test_megabyte_without_newline_stays_bounded() -> None:
    """1 MB without a line end never buffers more than the cap."""
    reader = LineReader(8192)
    out: list[bytes | LineTooLong] = []
    for _ in range(256):
        out.extend(reader.feed(b"z" * 4096))
        assert reader.buffered <= 8192
    assert out == [LineTooLong(8192)]
    big = LineReader(8192)
    assert big.feed(b"z" * (1 << 20)) == [LineTooLong(8192)]
    assert big.buffered == 0
    assert big.feed(b"tail\nnext\n") == [b"next"]


def test_overlong_complete_lines_in_one_chunk() -> None:
    """Over-cap lines inside a single chunk each become one marker among normal lines."""
    data = b"a\n" + b"b" * 9 + b"\nc\n" + b"d" * 20 + b"\r\n"
    assert LineReader(8).feed(data) == [b"a", LineTooLong(8), b"c", LineTooLong(8)]


def test_invalid_cap_rejected() -> None:
    """A non-positive cap is a programming error."""
    with pytest.raises(ValueError):
        LineReader(0)


# --- clean_text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x1b[2Jb", "ab"),
        ("a\x1b[1;31mred\x1b[0mb", "aredb"),
        ("a\x1b[?25lb", "ab"),
        ("a\x1b]0;pwned\x07b", "ab"),
        ("a\x1b]52;c;aGVsbG8=\x1b\\b", "ab"),
        ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
        ("a\x1bP1$tx\x1b\\b", "ab"),
        ("a\x1b_apc payload\x1b\\b", "ab"),
        ("a\x1b^pm\x1b\\b", "ab"),
        ("a\x1bXsos\x1b\\b", "ab"),
        ("a\x9b31mb", "ab"),
        ("a\x9d0;title\x9cb", "ab"),
        ("a\x9d0;title\x07b", "ab"),
        ("a\x90dcs\x9cb", "ab"),
        ("a\x9fapc\x9cb", "ab"),
        ("a\x1b(0b", "ab"),
        ("a\x1b(Bb", "ab"),
        ("a\x1b=b", "ab"),
        ("a\x1b7b\x1b8", "ab"),
        ("a\x1bcb", "ab"),
        ("a\x1b#8b", "ab"),
        ("ab\x1b", "ab"),
        ("a\x1b]0;unterminated title", "a"),
        ("a\x1bPunterminated dcs", "a"),
    ],
    ids=lambda v: v.encode("unicode_escape").decode() if isinstance(v, str) else None,
)
def test_clean_text_removes_escape_sequences(raw: str, expected: str) -> None:
    """Each escape family (CSI, OSC, DCS/SOS/PM/APC, 8-bit C1, nF/Fp/Fs) is removed whole."""
    assert clean_text(raw) == expected


def test_clean_text_spec_example() -> None:
    """The combined OSC 52 / CSI / C1 CSI / bidi example from the spec."""
    raw = "hi \x1b]52;c;aGVsbG8=\x07there \x1b[2Jyou \x9b31m\u202eok"
    assert clean_text(raw) == "hi there you ok"


def test_clean_text_osc_stops_at_stray_escape() -> None:
    """An ESC inside an OSC that is not ST starts its own sequence (as in xterm)."""
    assert clean_text("a\x1b]0;t\x1b[2Jb") == "ab"


def test_clean_text_bidi_removed() -> None:
    """Bidi embedding/override/isolate controls and LRM/RLM are dropped."""
    assert clean_text("a\u202ab\u202bc\u202cd\u202de\u202ef\u2066g\u2067h\u2068i\u2069j") == (
        "abcdefghij"
    )
    assert clean_text("x\u200ey\u200fz") == "xyz"


def test_clean_text_c0_del_c1_removed() -> None:
    """NUL, other C0 controls, DEL and stray C1 controls are dropped."""
    assert clean_text("a\x00b\x07c\x08d\x7fe\x85f\x8dg\x9ch\r\ni") == "abcdefghi"


def test_clean_text_tab_becomes_space() -> None:
    """A tab turns into exactly one space."""
    assert clean_text("a\tb\t\tc") == "a b  c"


def test_clean_text_keeps_emoji_cjk_accents() -> None:
    """ZWJ emoji, CJK, accented and combining characters survive untouched."""
    for text in ("👩‍💻", "héllo 日本", "e\u0301", "🏳️‍🌈 flag", "plain ascii ~!"):
        assert clean_text(text) == text
    assert clean_text("\x1b[1m👩‍💻\x1b[0m 日本") == "👩‍💻 日本"


def test_clean_text_ascii_fast_path_returns_same_object() -> None:
    """Printable ASCII is returned as-is, without copying."""
    text = "hello world " * 5
    assert clean_text(text) is text


# --- decode_line / encode --------------------------------------------------------


def test_decode_line_invalid_utf8_becomes_replacement() -> None:
    """Invalid UTF-8 decodes to U+FFFD instead of raising."""
    assert decode_line(b"a\xc3b\xffc") == "a\ufffdb\ufffdc"
    assert decode_line("héllo".encode()) == "héllo"


def test_decode_line_cleans() -> None:
    """decode_line removes escapes and controls, including C1 arriving as UTF-8."""
    assert decode_line(b"\x1b[31mred\x1b[0m\x00") == "red"
    assert decode_line("a\u009b2Jb".encode()) == "ab"


def test_encode_crlf() -> None:
    """Bare LF becomes CRLF, existing CRLF is not doubled, text is UTF-8."""
    assert encode("a\nb") == b"a\r\nb"
    assert encode("a\r\nb\n") == b"a\r\nb\r\n"
    assert encode("\n\n") == b"\r\n\r\n"
    assert encode("héllo") == "héllo".encode()
    assert encode("no newline") == b"no newline"


def test_encode_never_raises_on_surrogates() -> None:
    """A lone surrogate is replaced, not allowed to break a write."""
    assert encode("a\udcffb") == b"a?b"


# --- sniff_foreign ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "tls"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", "http"),
        (b"POST /api HTTP/1.1\r\n", "http"),
        (b"HEAD / HTTP/1.0\r\n", "http"),
        (b"CONNECT example.com:443 HTTP/1.1\r\n", "http"),
        (b"OPTIONS * HTTP/1.1\r\n", "http"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "ssh"),
        (b"alice\r\n", None),
        (b"GETTING started\n", None),
        (b"get / http/1.1\r\n", None),
        (b"\x16", None),
        (b"", None),
    ],
)
def test_sniff_foreign(first: bytes, expected: str | None) -> None:
    """TLS, HTTP and SSH openings are recognised; chat input is not."""
    assert sniff_foreign(first) == expected


# --- properties ------------------------------------------------------------------

FRAGMENTS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xff\xff",
    b"\xff\xfd\x01",
    b"\xff\xfd\x0a",
    b"\xff\xfb\x0d",
    b"\xff\xfa\x18\x01\xff\xf0",
    b"\xff\xfa",
    b"\xff\xf0",
    b"\x1b[2J",
    b"\x1b]52;c;aGk=\x07",
    b"\x1b",
    b"\xc2\x9b",
    b"\xc3",
    b"\xa9",
    b"\xe2\x80\xae",
    "👩‍💻".encode(),
    b"hello",
    b"\t",
    b"x" * 40,
    b"y" * 200,
]

stream = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)),
    max_size=40,
).map(b"".join)


@st.composite
def split_stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


def has_unsafe(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" or ch in BIDI for ch in text)


@settings(max_examples=300, deadline=None)
@given(split_stream(), st.sampled_from([1, 3, 16, 64, 8192]))
def test_feed_is_split_invariant_and_bounded(case: tuple[bytes, list[bytes]], limit: int) -> None:
    """Any split gives the one-shot result, lines never exceed the cap, buffer stays bounded."""
    data, chunks = case
    expected = LineReader(limit).feed(data)
    reader = LineReader(limit)
    got: list[bytes | LineTooLong] = []
    for chunk in chunks:
        got.extend(reader.feed(chunk))
        assert reader.buffered <= limit
    assert got == expected
    assert bytewise(data, limit) == expected
    for item in expected:
        if isinstance(item, LineTooLong):
            assert item.limit == limit
        else:
            assert len(item) <= limit


@settings(max_examples=300, deadline=None)
@given(stream)
def test_decoded_lines_are_safe(data: bytes) -> None:
    """Every decoded line is free of Cc characters, ESC and bidi controls."""
    for item in LineReader(64).feed(data + b"\n"):
        if isinstance(item, bytes):
            text = decode_line(item)
            assert "\x1b" not in text
            assert not has_unsafe(text)


text_fragments = st.sampled_from(
    [
        "\x1b",
        "\x1b[",
        "\x1b]",
        "\x1bP",
        "\x1b\\",
        "\x07",
        "\x9b",
        "\x9c",
        "\x9d",
        "\x90",
        "\t",
        "\u202e",
        "\u2066",
        "\u200d",
        "👩‍💻",
        "日本",
        "[2J",
        "0;t",
        "\x7f",
        "\x00",
    ]
)
texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(text_fragments, st.text(max_size=4)), max_size=25).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_clean_text_idempotent_and_safe(text: str) -> None:
    """clean_text output has no Cc, ESC or bidi control, and cleaning it again changes nothing."""
    once = clean_text(text)
    assert not has_unsafe(once)
    assert clean_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_encode_roundtrips_through_reader(text: str) -> None:
    """encode'd text read back by LineReader splits exactly on the original newlines."""
    lines = text.replace("\r", "").split("\n")
    payload = encode("\n".join(lines) + "\n")
    got = LineReader(1 << 16).feed(payload)
    assert got == [line.encode("utf-8", "replace") for line in lines]


# --- mutation-testing follow-ups (scripts/mutation) ---------------------------------


def test_default_cap_is_8_kib() -> None:
    """LineReader() takes lines of up to 8192 bytes (GOCHAT's documented line cap)."""
    assert LineReader().feed(b"x" * 8192 + b"\n") == [b"x" * 8192]
    assert LineReader().feed(b"x" * 8193 + b"\n") == [LineTooLong(8192)]


def test_invalid_cap_message() -> None:
    with pytest.raises(ValueError, match=r"^max_line_bytes must be positive$"):
        LineReader(0)
    assert LineReader(1).feed(b"a\nbc\n") == [b"a", LineTooLong(1)]


@pytest.mark.parametrize(
    "data",
    [b"a\r\x00\nb\n", b"a\r\x00\r\nb\n", b"a\n\r\x00b\n"],
    ids=["crnul-lf", "crnul-crlf", "lf-crnul"],
)
def test_cr_nul_next_to_lf_ends_two_lines(data: bytes) -> None:
    """CR NUL and a following LF are two line ends (a blank line between), whatever the split."""
    expected = [b"a", b"", b"b"]
    assert LineReader().feed(data) == expected
    assert bytewise(data) == expected


def test_cr_lf_split_then_blank_line() -> None:
    """CR, then its LF alone in the next read, then another LF: one line, then a blank one."""
    reader = LineReader()
    assert reader.feed(b"a\r") == [b"a"]
    assert reader.feed(b"\n") == []
    assert reader.feed(b"\n") == [b""]
    assert reader.feed(b"b\n") == [b"b"]


def test_line_completed_across_reads_is_capped() -> None:
    """A line whose end arrives in a later read is measured whole: 3 + 6 bytes > 8."""
    reader = LineReader(8)
    assert reader.feed(b"abc") == []
    assert reader.feed(b"defghi\nok\n") == [LineTooLong(8), b"ok"]
    reader = LineReader(8)
    assert reader.feed(b"abc") == []
    assert reader.feed(b"defgh\n") == [b"abcdefgh"]  # exactly 8


def test_lines_of_exactly_the_cap_among_overlong_ones() -> None:
    """Within one read, an exact-cap line stays a line even next to an overlong one."""
    assert LineReader(4).feed(b"a\nabcd\nabcde\nabcd\nz") == [
        b"a",
        b"abcd",
        LineTooLong(4),
        b"abcd",
    ]


def test_cr_nul_without_lf_in_one_read() -> None:
    """A telnet client's CR NUL line ends, several in one read and no LF anywhere."""
    assert LineReader().feed(b"a\r\x00b\r\x00") == [b"a", b"b"]
    assert LineReader().feed(b"a\r\x00\r\x00b\r") == [b"a", b"", b"b"]
