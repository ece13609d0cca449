"""Sans-IO protocol edge: bytes from a raw TCP client in, safe text out, and back.

Clients are nc, telnet, socat and ``openssl s_client``, so the input is whatever a
terminal produces: LF, CRLF, CR NUL or a lone CR as line ends, telnet IAC
negotiation interleaved with the text, invalid UTF-8, and terminal escape
sequences that, if relayed, would let one user move another user's cursor,
retitle their window or write to their clipboard (OSC 52). This module turns
that stream into plain lines and plain text, and knows nothing of sockets or
asyncio so it can be tested and fuzzed byte by byte.

The common case (UTF-8 text, LF or CRLF, no telnet, no control characters) is
kept on C-speed paths: ``bytes.find``/``split``/``replace``, ``str.isprintable``
and precompiled regexes behind cheap membership pre-checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LineReader",
    "LineTooLong",
    "clean_text",
    "decode_line",
    "encode",
    "sniff_foreign",
]


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """Emitted once for a line that passed the cap.

    The rest of that line, up to the next line end, is discarded. A marker
    rather than an exception so the front end can warn the user and keep reading:
    one oversized paste must not cost the connection.
    """

    limit: int


# --- telnet ------------------------------------------------------------------

_IAC = 0xFF
_SB = 250
_SE = 240
_WILL = 251
_DONT = 254

# Telnet parser states. Kept as small ints: they are compared on every feed.
_T_DATA = 0  # plain data
_T_IAC = 1  # saw IAC, waiting for the command byte
_T_OPT = 2  # saw IAC WILL/WONT/DO/DONT, waiting for the option byte
_T_SB = 3  # inside IAC SB ... (content discarded, never buffered)
_T_SB_IAC = 4  # inside SB, saw IAC: SE ends it, anything else stays inside

# State after "IAC <byte>": negotiation verbs wait for their option byte, SB
# opens a subnegotiation, anything else (IAC itself, NOP, GA, AYT, IP, a stray
# SE, ...) is complete in two bytes.
_AFTER_IAC: tuple[int, ...] = tuple(
    _T_OPT if _WILL <= byte <= _DONT else _T_SB if byte == _SB else _T_DATA for byte in range(256)
)

_CR = 0x0D
_LF = 0x0A
_NUL = 0x00

# CR followed by LF or NUL is one line end; a lone CR or LF is one line end too.
_LINE_END_RE = re.compile(rb"\r[\n\x00]?|\n")


def _split_lines(data: bytes) -> list[bytes]:
    """Split on every line-end form; the last element is the unterminated rest.

    ``bytes.splitlines`` already knows LF, CRLF and lone CR (and nothing else),
    so only CR NUL needs help, and only input mixing CR, LF and NUL pays for
    the regex.
    """
    if b"\r" not in data:
        return data.split(b"\n")
    if b"\x00" in data:
        if b"\n" in data:
            return _LINE_END_RE.split(data)
        # CR NUL -> CR is safe only when no LF can sit between them (CR LF NUL).
        data = data.replace(b"\r\x00", b"\r")
    pieces = data.splitlines()
    if data[-1] == _LF or data[-1] == _CR:
        pieces.append(b"")  # splitlines drops the empty rest after a final line end
    return pieces


class LineReader:
    """Incremental splitter of a raw client byte stream into lines.

    Two layers, applied in this order so that telnet option bytes (``IAC DO 10``
    carries a literal LF) are removed before anything looks for line ends:

    1. a telnet state machine drops IAC commands, negotiations and
       subnegotiations and turns ``IAC IAC`` into a data byte 0xFF;
    2. a line splitter that understands LF, CRLF, CR NUL and lone CR, and
       enforces the per-line byte cap without ever buffering past it.

    Both layers keep their state between ``feed`` calls, so any split of the
    input (one call, byte by byte, anything in between) yields the same list.
    """

    __slots__ = ("_after_cr", "_buf", "_discarding", "_limit", "_telnet")

    def __init__(self, max_line_bytes: int = 8192) -> None:
        """Create a reader that accepts lines of at most ``max_line_bytes`` bytes."""
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self._limit = max_line_bytes
        self._buf = bytearray()  # start of the current, unterminated line
        self._discarding = False  # over the cap: drop bytes until the next line end
        self._after_cr = False  # last line ended in CR: swallow one LF or NUL
        self._telnet = _T_DATA

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line; never above ``max_line_bytes``."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """Consume ``data`` and return the lines it completed, terminators removed.

        Lines are returned undecoded (see ``decode_line``). A line that grows past
        the cap produces one ``LineTooLong`` as soon as the cap is passed.
        """
        if self._telnet != _T_DATA or b"\xff" in data:
            data = self._strip_telnet(data)
        if not data:
            return []
        if self._after_cr:
            # The CR already ended the line; its LF/NUL partner may arrive late.
            self._after_cr = False
            if data[0] == _LF or data[0] == _NUL:
                data = data[1:]
                if not data:
                    return []
        self._after_cr = data[-1] == _CR
        return self._collect(_split_lines(data))

    def _collect(self, pieces: list[bytes]) -> list[bytes | LineTooLong]:
        """Join split pieces with the carried-over partial line and apply the cap."""
        limit = self._limit
        out: list[bytes | LineTooLong] = []
        rest = pieces[-1]
        if len(pieces) > 1:
            self._finish_first(pieces[0], out)
            middle = pieces[1:-1]
            if middle:
                if max(map(len, middle)) <= limit:
                    out.extend(middle)
                else:
                    out.extend(p if len(p) <= limit else LineTooLong(limit) for p in middle)
        if self._discarding:
            return out
        if len(self._buf) + len(rest) > limit:
            out.append(LineTooLong(limit))
            self._discarding = True
            self._buf.clear()
        else:
            self._buf += rest
        return out

    def _finish_first(self, piece: bytes, out: list[bytes | LineTooLong]) -> None:
        """Complete the line that was pending before this feed (or drop it if over cap)."""
        if self._discarding:
            # The line end we were waiting for; LineTooLong was already emitted.
            self._discarding = False
            return
        if self._buf:
            if len(self._buf) + len(piece) > self._limit:
                out.append(LineTooLong(self._limit))
            else:
                out.append(bytes(self._buf) + piece)
            self._buf.clear()
        elif len(piece) > self._limit:
            out.append(LineTooLong(self._limit))
        else:
            out.append(piece)

    def _strip_telnet(self, data: bytes) -> bytes:
        """Remove telnet commands from ``data``, carrying parser state across calls.

        Plain runs are copied with ``find`` + slicing; only the few bytes of each
        IAC sequence are looked at one by one. Subnegotiation content is skipped,
        never stored, however long it is: a client that opens ``IAC SB`` and never
        closes it just has its input discarded, without costing memory.
        """
        out = bytearray()
        state = self._telnet
        pos = 0
        end = len(data)
        while pos < end:
            if state == _T_DATA:
                nxt = data.find(b"\xff", pos)
                if nxt < 0:
                    out += data[pos:]
                    break
                out += data[pos:nxt]
                pos = nxt + 1
                state = _T_IAC
            elif state == _T_SB:
                nxt = data.find(b"\xff", pos)
                if nxt < 0:
                    break
                pos = nxt + 1
                state = _T_SB_IAC
            elif state == _T_IAC:
                byte = data[pos]
                pos += 1
                if byte == _IAC:
                    out.append(_IAC)  # IAC IAC: an escaped data byte 0xFF
                state = _AFTER_IAC[byte]
            elif state == _T_OPT:
                pos += 1  # the option byte, whatever it is (even 10 or 13)
                state = _T_DATA
            else:  # _T_SB_IAC: IAC SE closes; IAC IAC (escaped 0xFF) or junk stays inside
                state = _T_DATA if data[pos] == _SE else _T_SB
                pos += 1
        self._telnet = state
        return bytes(out)


# --- text hygiene ---------------------------------------------------------------

# Terminal control sequences, 7-bit (ESC-introduced) and 8-bit (C1 code point).
# Order matters: the generic "ESC + final" branch would also match "ESC [".
# String sequences stop at their terminator, at end of text, or just before an
# ESC that is not part of ST (which then starts a sequence of its own, as in
# xterm), so nothing can hide an escape inside an unterminated string.
_ESC_SEQ_RE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: BEL or ST
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS SOS PM APC
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # nF / Fp / Fe / Fs escapes, and a lone ESC
)

# Characters that introduce a sequence handled by _ESC_SEQ_RE.
_INTRODUCER_RE = re.compile(r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]")

# Bidi controls: they reorder what other people's terminals display (a
# "Trojan Source" style spoof), so they go too. ZWJ (U+200D) is kept: emoji need it.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))

# Everything that goes after escape removal: all of Cc (C0, DEL, C1) + bidi.
_DROP_TABLE: dict[int, str | None] = {
    cp: None for cp in (*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI)
}
_DROP_TABLE[0x09] = " "  # a tab is spacing the sender meant; keep it as one space

_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """Make ``text`` safe to write to someone else's terminal.

    Escape sequences are removed whole (not just their ESC, which would leave
    ``[2J`` litter), then every remaining control character and bidi control.
    The result contains no ESC and no Cc character, so cleaning is idempotent.
    """
    if text.isascii():
        if text.isprintable():  # ASCII printable == 0x20..0x7E: nothing to do
            return text
        if "\x1b" in text:
            text = _ESC_SEQ_RE.sub("", text)
        return text.translate(_DROP_TABLE)
    if _UNSAFE_RE.search(text) is None:
        return text
    if _INTRODUCER_RE.search(text) is not None:
        text = _ESC_SEQ_RE.sub("", text)
    return text.translate(_DROP_TABLE)


def decode_line(raw: bytes) -> str:
    """Decode one line from ``LineReader`` as UTF-8 (invalid bytes become U+FFFD) and clean it."""
    return clean_text(raw.decode("utf-8", "replace"))


def encode(text: str) -> bytes:
    """Encode outgoing text as UTF-8 with CRLF line ends, as telnet clients expect.

    An existing CRLF stays CRLF (never CR CR LF). Unencodable code points (lone
    surrogates) become "?" rather than raising in the middle of a write.
    """
    if "\n" in text:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode("utf-8", "replace")


# "PRI" is the start of the HTTP/2 connection preface "PRI * HTTP/2.0".
_HTTP_METHODS = tuple(
    method + b" "
    for method in (
        b"GET",
        b"POST",
        b"HEAD",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"CONNECT",
        b"PATCH",
        b"PRI",
    )
)


def sniff_foreign(first_bytes: bytes) -> str | None:
    """Recognise a client that speaks TLS, HTTP or SSH to the plain-text port.

    Such clients would otherwise get a nickname prompt they can't read; naming
    the protocol lets the server answer with a useful hint and hang up.
    Returns ``"tls"``, ``"http"``, ``"ssh"`` or ``None``.
    """
    if first_bytes.startswith(b"\x16\x03"):
        return "tls"
    if first_bytes.startswith(b"SSH-"):
        return "ssh"
    if first_bytes.startswith(_HTTP_METHODS):
        return "http"
    return None
