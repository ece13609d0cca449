"""How Rox's answers are read and its failures worded, as pure functions.

Whatever goes wrong at the model (timeout, 429, 5xx, a refused key, a retired
model, an unreadable reply, an empty answer) becomes one line for the asker,
a short category for the rest of the lobby, a metrics label, and a detail for
the operator's log; the exception's text never reaches a user and the API key
never reaches the log. An answer is cleaned line by line with `wire.clean_text`
before anything else sees it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gochat.markdown import cell_width
from gochat.wire import clean_text

if TYPE_CHECKING:
    from google.genai import errors, types

    from gochat.config import Config

MAX_ANSWER_CHARS = 4000
"""Longer answers are cut: a lobby is not a place for an essay."""

ANSWER_TIMEOUT = "[AI] Rox took too long to answer (limit {seconds:g} s). Try again later."
ANSWER_QUOTA = "[AI] Rox is over its quota right now. Try again in a minute."
ANSWER_SERVER = "[AI] The AI service is having trouble. Try again later."
ANSWER_KEY = "[AI] Rox is misconfigured on this server (API key refused); the operator was told."
ANSWER_MODEL = "[AI] Rox's model is not available on this server; the operator was told."
ANSWER_REFUSED = "[AI] The AI service refused that request. Try rephrasing."
ANSWER_UNREADABLE = "[AI] The AI service sent a reply Rox could not read. Try again later."
ANSWER_UNREACHABLE = "[AI] Rox could not reach the AI service. Try again later."
ANSWER_TOO_LONG = "[AI] Rox ran out of room before finishing its answer. Ask for a shorter one."
"""MAX_TOKENS: the output cap (thinking counts against it) ran out, whatever the question's size."""
ANSWER_BLOCKED = "[AI] Rox won't answer that one."
ANSWER_EMPTY = "[AI] Rox had nothing to say. Try rephrasing."
ANSWER_BUG = "[AI] Something went wrong on our side; it has been logged."

OUTCOMES = {
    ANSWER_QUOTA: "quota",
    ANSWER_SERVER: "server_error",
    ANSWER_KEY: "key_refused",
    ANSWER_MODEL: "model_missing",
    ANSWER_REFUSED: "refused",
    ANSWER_UNREADABLE: "unreadable",
    ANSWER_UNREACHABLE: "unreachable",
    ANSWER_TOO_LONG: "too_long",
    ANSWER_BLOCKED: "blocked",
    ANSWER_EMPTY: "empty",
    ANSWER_BUG: "error",
}
"""The metrics label for each failure line; a timeout is "timeout", success "ok"."""

LOBBY_FAILED = "Rox could not answer {asker}'s question ({reason})."
"""What the rest of the lobby, who saw the question, learns of a failure."""
FAILURE_REASONS = {
    "timeout": "timed out",
    "quota": "over quota",
    "server_error": "AI service error",
    "key_refused": "misconfigured",
    "model_missing": "misconfigured",
    "refused": "request refused",
    "unreadable": "unreadable reply",
    "unreachable": "AI service unreachable",
    "too_long": "ran out of room",
    "blocked": "declined",
    "empty": "empty answer",
    "error": "internal error",
}
"""A short category per metrics label: the lobby never sees an exception's text."""


class EmptyAnswer(Exception):
    """The model replied without any text (e.g. finish reason MAX_TOKENS or SAFETY).

    `thinking` is how many output tokens the model spent thinking, when it says:
    the operator needs it to see why a short question ran out of tokens.
    """

    def __init__(self, reason: str, thinking: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.thinking = thinking


def answer_text(response: types.GenerateContentResponse) -> str:
    """The answer, cleaned line by line and capped; EmptyAnswer if nothing is left."""
    raw = response.text
    if raw is None or not raw.strip():
        usage = response.usage_metadata
        thinking = usage.thoughts_token_count if usage is not None else None
        raise EmptyAnswer(_why_empty(response), thinking)
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(clean_text(line.replace("\t", "    ")) for line in raw.split("\n")).strip()
    if not text:
        raise EmptyAnswer("only control characters")
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS].rstrip() + " …"
    return text


def _why_empty(response: types.GenerateContentResponse) -> str:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return f"prompt blocked ({_enum_name(feedback.block_reason)})"
    if response.candidates:
        reason = response.candidates[0].finish_reason
        if reason is not None:
            return _enum_name(reason)
    return "no candidates"


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def describe_failure(exc: BaseException, config: Config) -> tuple[str, str, int]:
    """(line for the asker, detail for the log, log level) for a failed AI call."""
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return (
            ANSWER_TIMEOUT.format(seconds=config.ai_timeout),
            f"timed out after {config.ai_timeout:g} s ({type(exc).__name__})",
            logging.WARNING,
        )
    if isinstance(exc, EmptyAnswer):
        reason = exc.reason
        if reason == "MAX_TOKENS":
            user = ANSWER_TOO_LONG
            spent = f"; {exc.thinking} spent thinking" if exc.thinking else ""
            reason += f" (GOCHAT_AI_MAX_OUTPUT_TOKENS={config.ai_max_output_tokens}{spent})"
        elif "block" in reason or reason in {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"}:
            user = ANSWER_BLOCKED
        else:
            user = ANSWER_EMPTY
        return user, f"empty answer: {reason}", logging.WARNING
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return _describe_api_error(exc, config)
    if isinstance(exc, ValueError):  # json.JSONDecodeError, pydantic's ValidationError
        return ANSWER_UNREADABLE, f"unreadable reply ({type(exc).__name__})", logging.WARNING
    if isinstance(exc, OSError) or any(
        word in type(exc).__name__ for word in ("Connect", "Network", "Transport", "Protocol")
    ):
        return ANSWER_UNREACHABLE, f"cannot reach the API ({type(exc).__name__})", logging.WARNING
    return ANSWER_BUG, f"bug: unexpected {type(exc).__name__}", logging.ERROR


def _describe_api_error(exc: errors.APIError, config: Config) -> tuple[str, str, int]:
    code = exc.code or 0
    status = exc.status or ""
    message = shorten(str(exc.message or ""), 200)
    detail = f"HTTP {code} {status}: {message}".rstrip(": ")
    details = str(exc.details)
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return ANSWER_QUOTA, f"rate limited or out of quota ({detail})", logging.WARNING
    if code == 404:
        return (
            ANSWER_MODEL,
            f"model {config.ai_model!r} not found ({detail}); it may have been retired: "
            "set GOCHAT_AI_MODEL to a current Gemini model",
            logging.ERROR,
        )
    if code in (401, 403) or "API_KEY" in details or "API key" in message:
        return (
            ANSWER_KEY,
            f"the API key was refused ({detail}); check GEMINI_API_KEY",
            logging.ERROR,
        )
    if code >= 500:
        return ANSWER_SERVER, f"server error ({detail})", logging.WARNING
    return ANSWER_REFUSED, f"request refused ({detail})", logging.WARNING


def redact(text: str, secret: str) -> str:
    """Never log the key, even if an error message echoes it."""
    return text.replace(secret, "[redacted]") if secret else text


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` columns with an ellipsis."""
    if cell_width(text) <= width:
        return text
    used = 0
    for end, char in enumerate(text):
        used += cell_width(char)
        if used > width - 1:
            return text[:end].rstrip() + "…"
    return text
