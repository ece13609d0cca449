"""Operator logs: one line per event on stderr, sanitised like user text.

User-supplied text reaches log lines (names, reasons, at DEBUG message
bodies); the filter runs every formatted message through `clean_text`, so a
log viewer's terminal is as safe as a chat user's.

Two formats (`GOCHAT_LOG_FORMAT`): `text`, and `json` with one object per line
(ts, level, logger, msg, and exc when there is a traceback). Under systemd
(`JOURNAL_STREAM` names our stderr) every line starts with its `<N>` syslog
priority so journald keeps the level, and text lines drop the timestamp,
which journald records itself.

The Gemini SDK and its HTTP client log at INFO on every `/ai` ("AFC is
enabled ...", "HTTP Request: POST ..."): noise to an operator reading gochat's
own lines, so below DEBUG they only get through from WARNING up.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from gochat.wire import clean_text

QUIET_LOGGERS = ("google_genai", "httpx", "httpcore", "httpx2", "httpcore2")
"""Third-party loggers held to WARNING unless the level is DEBUG (google-genai
uses httpx, or since 2.x the httpx2 fork, which logs under its own names)."""


class _Sanitise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = clean_text(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


def syslog_priority(levelno: int) -> int:
    """The `<N>` journald understands: DEBUG 7, INFO 6, WARNING 4, ERROR 3, CRITICAL 2."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _clean_lines(text: str) -> str:
    """A traceback keeps its line breaks; each line is cleaned like a message."""
    return "\n".join(clean_text(line) for line in text.splitlines())


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg`; under journald `<N>LEVEL logger: msg` on every line."""

    def __init__(self, journal: bool = False) -> None:
        if journal:
            super().__init__("%(levelname)s %(name)s: %(message)s")
        else:
            super().__init__(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        self.journal = journal

    def formatException(self, ei: Any) -> str:
        return _clean_lines(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, and exc when present."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        exc = ""
        if record.exc_info:
            exc = self.formatException(record.exc_info)
        elif record.exc_text:
            exc = record.exc_text
        if record.stack_info:
            exc = (exc + "\n" if exc else "") + self.formatStack(record.stack_info)
        if exc:
            entry["exc"] = _clean_lines(exc)
        line = json.dumps(entry, ensure_ascii=False)
        return f"<{syslog_priority(record.levelno)}>{line}" if self.journal else line


def journal_stream(stream: TextIO) -> bool:
    """True when systemd's JOURNAL_STREAM (`dev:inode`) names this very stream.

    Checking the inode, as systemd.exec(5) advises, keeps a child process or a
    command piped by hand inside a unit from writing `<N>` prefixes to a terminal.
    """
    dev, sep, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def setup_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    stream = sys.stderr if stream is None else stream
    journal = journal_stream(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(journal) if fmt == "json" else TextFormatter(journal))
    handler.addFilter(_Sanitise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # A logger's own level decides for its records, so WARNING must not let
    # through what a stricter root level (ERROR) would have dropped.
    quiet = logging.NOTSET if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
